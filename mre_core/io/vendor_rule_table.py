"""The data of the MRE series-role rule registry (no code; built by :mod:`mre_core.io.vendor_rules`).

Each entry of :data:`RULE_SPECS` is one named rule: its predicates are ``(tag, op, value)``
triples (``op`` prefixed with ``"not "`` negates the test), ``role`` and ``unit`` are the
values of :class:`~mre_core.io.vendor_rules.SeriesRole` and
:class:`~mre_core.io.vendor_rules.ValueUnit`. The order is the match order: most specific
first, the colour-save rule before every vendor rule. ``source`` says where each fact comes
from; the repositories named there were read for their facts, no code was copied.
"""

from __future__ import annotations

from typing import Any

HEPSORT = "Resoundant/hepsort_rules rules/rules_mre.py"
MAYO_PARSE = "MengYinMayo/HepatosplenicMRE functions/io/mre_parseDICOMExam.m"
MAYO_MAT = "MengYinMayo/HepatosplenicMRE functions/io/mre_buildMATFile.m"
MAYO_WAVEMAG = "MengYinMayo/HepatosplenicMRE mre_readWaveMagSeries.m"
BATMAN = "batmanlab/mre_ai mre_ai/preprocessing.py"
ISSUE = "project issue 'vendor rule registry' (facts given by the issue, not found in a public source read)"
PAPER = "Su, Shih & Xu, JMIR Med Inform 2025;13:e80351 (doi:10.2196/80351)"
UNITS = "working assumption of this project (mre_core/units.py, docs/DATA_FORMATS.md), not a vendor statement"

#: PhotometricInterpretation values of colour (display-only) images
COLOUR_PHOTOMETRIC = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")

GE = ("Manufacturer", "word", "GE")
SIEMENS = ("Manufacturer", "word", "SIEMENS")
CANON = ("Manufacturer", "word", ("CANON", "TOSHIBA"))
GE_SEQUENCE = "(0019,109C)"  # GE private "internal pulse sequence name" (hepsort PRIVATE_TAGS['GESequence'])
MR_TOUCH = (GE_SEQUENCE, "equals", "MR-Touch")
EPIMRE = (GE_SEQUENCE, "equals", "epimre")
DERIVED_SECONDARY_PROCESSED = (
    ("ImageType", "equals", "DERIVED"),
    ("ImageType", "equals", "SECONDARY"),
    ("ImageType", "equals", "PROCESSED"),
)
NOT_CONFIDENCE = ("SeriesDescription", "not word", ("confidence", "conf"))
NOT_CONFIDENCE_COMMENT = ("ImageComments", "not word", ("confidence", "conf"))
SIEMENS_MRE_SEQUENCE = r"greMR|epiMR|epseM|WIP_e_"
GE_ONSCANNER_NAMES = r"^(PE|FE|SS|Stiffness|RGB|Storage|Loss|Divergence)"
MMDI3D = ("ImageType", "equals", "MMDI3D")

RULE_SPECS: tuple[dict[str, Any], ...] = (
    # --- colour first, every vendor -------------------------------------------------------------
    {"name": "any.colour_save", "vendor": "any", "criteria": "any",
     "recognises": "RGB/YBR/palette colour image or SamplesPerPixel >= 3: a screen save, never measured",
     "predicates": (("PhotometricInterpretation", "any_of", COLOUR_PHOTOMETRIC), ("SamplesPerPixel", "gte", 3)),
     "role": "colour_save", "unit": "unitless",
     "source": f"{HEPSORT} (every GE rule excludes PhotometricInterpretation RGB); "
               f"{MAYO_PARSE} classifySeries (SamplesPerPixel != 1 or RGB -> 'RGB_Visualization', skipped)"},
    # --- Resoundant MMDI 3D (ImageType carries MMDI3D) --------------------------------------------
    {"name": "mmdi3d.stiffness", "vendor": "Resoundant MMDI",
     "recognises": "MMDI 3D stiffness map (ImageType MMDI3D + STIFFNESS); unit not documented in the source",
     "predicates": (MMDI3D, ("ImageType", "equals", "STIFFNESS")), "role": "stiffness", "unit": "unknown",
     "source": f"{HEPSORT} RULES_3DMMDI '3vmre_stiff'"},
    {"name": "mmdi3d.confidence", "vendor": "Resoundant MMDI",
     "recognises": "MMDI 3D confidence map (ImageType MMDI3D + CONFIDENCE); scale not documented in the source",
     "predicates": (MMDI3D, ("ImageType", "equals", "CONFIDENCE")), "role": "confidence_map", "unit": "unknown",
     "source": f"{HEPSORT} RULES_3DMMDI '3vmre_conf'"},
    {"name": "mmdi3d.magnitude", "vendor": "Resoundant MMDI",
     "recognises": "MMDI 3D RMS magnitude (ImageType MMDI3D + MAGRMS)",
     "predicates": (MMDI3D, ("ImageType", "equals", "MAGRMS")), "role": "magnitude", "unit": "unitless",
     "source": f"{HEPSORT} RULES_3DMMDI '3vmre_mag'"},
    {"name": "mmdi3d.phase_difference", "vendor": "Resoundant MMDI",
     "recognises": "MMDI 3D through-plane phase difference (ImageType MMDI3D + PHSDIFFZ)",
     "predicates": (MMDI3D, ("ImageType", "equals", "PHSDIFFZ")), "role": "wave", "unit": "unknown",
     "source": f"{HEPSORT} RULES_3DMMDI '3vmre_phs_z'"},
    # --- Resoundant MMDI 2D / GE on-scanner recon names (DERIVED\SECONDARY\PROCESSED) -------------
    {"name": "mmdi.confidence", "vendor": "Resoundant MMDI",
     "recognises": "series 'Confidence', DERIVED\\SECONDARY\\PROCESSED: confidence 0-1000 per mille "
                   "(WC/WW 950/100, 95 % region = pixels >= 950)",
     "predicates": (("SeriesDescription", "equals", "Confidence"), *DERIVED_SECONDARY_PROCESSED),
     "role": "confidence_map", "unit": "per_mille",
     "source": f"{ISSUE}; {MAYO_PARSE} isConf (WindowCenter ~950, narrow WindowWidth); "
               f"{MAYO_MAT} (confidence stored 0-999, divided by 1000)"},
    {"name": "mmdi.stiffness", "vendor": "Resoundant MMDI",
     "recognises": "series 'Stiffness', DERIVED\\SECONDARY\\PROCESSED: signed 16-bit stiffness in Pa "
                   "(WC/WW 4000/8000, background 0); also GE on-scanner 'Stiffness'",
     "predicates": (("SeriesDescription", "equals", "Stiffness"), *DERIVED_SECONDARY_PROCESSED),
     "role": "stiffness", "unit": "pa",
     "source": f"{ISSUE}; {HEPSORT} (GE on-scanner recon names start 'Stiffness'); "
               f"{MAYO_MAT} (GE stores stiffness in Pa); {MAYO_PARSE} isStiff (WindowCenter 1000-15000)"},
    {"name": "mmdi.shear_wave", "vendor": "Resoundant MMDI",
     "recognises": "series 'Shear Wave', DERIVED: MMDI shear-wave images (about +-14000)",
     "predicates": (("SeriesDescription", "equals", "Shear Wave"), ("ImageType", "equals", "DERIVED")),
     "role": "wave", "unit": "unknown", "source": ISSUE},
    # --- GE MR-Touch: documented on-scanner names ------------------------------------------------
    {"name": "ge.elastogram_mask", "vendor": "GE",
     "recognises": "GE 'elastogram mask' / 'stgrym': stiffness in Pa with low-confidence pixels removed",
     "predicates": (GE, ("SeriesDescription", "word", ("elastogram mask", "stgrym")), NOT_CONFIDENCE),
     "role": "masked_stiffness", "unit": "pa",
     "source": f"{BATMAN} is_mre_mask (GE 'elastogram'+'mask' or 'stgrym'; loaded as 'elastMsk'); "
               f"{MAYO_MAT} (GE stiffness in Pa)"},
    {"name": "ge.elastogram", "vendor": "GE",
     "recognises": "GE 'elastogram' / 'stgry' (not the mask): gray stiffness map in Pa",
     "predicates": (GE, ("SeriesDescription", "word", ("elastogram", "stgry")),
                    ("SeriesDescription", "not word", ("mask", "stgrym")), NOT_CONFIDENCE),
     "role": "stiffness", "unit": "pa",
     "source": f"{BATMAN} is_mre ('elastogram' without 'mask', or 'stgry' without 'stgrym'); "
               f"{MAYO_MAT} (GE stiffness in Pa)"},
    {"name": "ge.wave_images", "vendor": "GE",
     "recognises": "GE 'wave images': processed wave series",
     "predicates": (GE, ("SeriesDescription", "word", "wave images")), "role": "wave", "unit": "unknown",
     "source": f"{BATMAN} is_wave ('wave images'); {MAYO_WAVEMAG} (processed wave: DERIVED, signed 16-bit)"},
    # --- GE private sequence name (0019,109C) ----------------------------------------------------
    {"name": "ge.mrtouch.raw", "vendor": "GE",
     "recognises": "GE MR-Touch acquisition (not DERIVED): first half phase (signed mrad, about +-3141), "
                   "second half magnitude",
     "predicates": (MR_TOUCH, ("ImageType", "not equals", "DERIVED")),
     "role": "raw_phase_magnitude", "unit": "milliradian",
     "source": f"{HEPSORT} 'ge_mre_mrtouch' + MRE_SECONDARY_LABELING (split in half: phase, magnitude); "
               f"{MAYO_WAVEMAG} (first half wave, second half magnitude); {BATMAN} split_image "
               f"(phase slices have negative pixels); milliradian range: {ISSUE}"},
    {"name": "ge.fgremre.raw", "vendor": "GE",
     "recognises": "Mayo GE GRE MRE (fgremre) acquisition, not SECONDARY: phase then magnitude halves",
     "predicates": ((GE_SEQUENCE, "contains", "fgremre"), ("ImageType", "not equals", "SECONDARY")),
     "role": "raw_phase_magnitude", "unit": "unknown", "source": f"{HEPSORT} 'mayo_ge_fgre_mre'"},
    {"name": "ge.epimre.magnitude", "vendor": "GE",
     "recognises": "Mayo GE EPI MRE (epimre) magnitude, ImageType MAG",
     "predicates": (EPIMRE, ("ImageType", "equals", "MAG"), ("SeriesDescription", "not regex", GE_ONSCANNER_NAMES)),
     "role": "magnitude", "unit": "unitless", "source": f"{HEPSORT} 'mayo_ge_epi_mre_mag'"},
    {"name": "ge.epimre.phase", "vendor": "GE",
     "recognises": "Mayo GE EPI MRE (epimre) phase, ImageType PHASE",
     "predicates": (EPIMRE, ("ImageType", "equals", "PHASE"), ("SeriesDescription", "not regex", GE_ONSCANNER_NAMES)),
     "role": "phase", "unit": "unknown", "source": f"{HEPSORT} 'mayo_ge_epi_mre_phs'"},
    {"name": "ge.mre.derived_other", "vendor": "GE",
     "recognises": "other DERIVED on-scanner MRE recon (e.g. PE, FE, SS, Storage, Loss): recognised, not used",
     "predicates": ((GE_SEQUENCE, "regex", r"MR-Touch|epimre|fgremre"), ("ImageType", "equals", "DERIVED")),
     "role": "other", "unit": "unknown",
     "source": f"{HEPSORT} 'mayo_ge_epi_mre_onscanner' (DERIVED\\SECONDARY -> 'mre_ge_other') and "
               f"'ge_mre_mrtouch' (DERIVED = on-scanner wave and elasto data); names: {ISSUE}"},
    # --- Siemens ---------------------------------------------------------------------------------
    {"name": "siemens.wave", "vendor": "Siemens",
     "recognises": "Siemens wave image (WV in ImageType)",
     "predicates": (SIEMENS, ("ImageType", "equals", "WV")), "role": "wave", "unit": "unknown",
     "source": f"{HEPSORT} (Siemens phase rules exclude 'WV' in ImageType); {ISSUE}"},
    {"name": "siemens.xa.elastogram", "vendor": "Siemens",
     "recognises": "Siemens XA MRE gray elastogram (ImageType DERIVED + ELASTO); the confidence marking is read "
                   "from the pixels; stored = kPa x 100",
     "predicates": (SIEMENS, ("ImageType", "equals", "DERIVED"), ("ImageType", "equals", "ELASTO")),
     "role": "stiffness", "unit": "kpa_x100",
     "source": f"ELASTO on XA MRE images: {HEPSORT} '*_xa61' rules; that a DERIVED ELASTO image is the "
               f"elastogram, and kPa x 100: {UNITS}"},
    {"name": "siemens.xa.magnitude", "vendor": "Siemens",
     "recognises": "Siemens XA MRE magnitude (ORIGINAL, ImageType ELASTO, ComplexImageComponent MAGNITUDE)",
     "predicates": (("ImageType", "equals", "ORIGINAL"), ("ImageType", "equals", "ELASTO"),
                    ("ComplexImageComponent", "equals", "MAGNITUDE")),
     "role": "magnitude", "unit": "unitless",
     "source": f"{HEPSORT} 'siemens_seepi_mre_mag_xa61' (ORIGINAL added here: raw acquisitions are ORIGINAL)"},
    {"name": "siemens.xa.phase", "vendor": "Siemens",
     "recognises": "Siemens XA MRE phase (ORIGINAL, ImageType ELASTO, ComplexImageComponent PHASE)",
     "predicates": (("ImageType", "equals", "ORIGINAL"), ("ImageType", "equals", "ELASTO"),
                    ("ComplexImageComponent", "equals", "PHASE")),
     "role": "phase", "unit": "unknown",
     "source": f"{HEPSORT} 'siemens_epi_mre_phs_xa61' (ORIGINAL added here: raw acquisitions are ORIGINAL)"},
    {"name": "siemens.syngo.hatched_stiffness", "vendor": "Siemens",
     "recognises": "Siemens gray DERIVED image of an MRE sequence, not a wave image: syngo MRE gray "
                   "elastogram, 95 % confidence area cross-hatched; stored = kPa x 100",
     "predicates": (SIEMENS, ("ImageType", "equals", "DERIVED"), ("ImageType", "not equals", "WV"),
                    ("SequenceName", "regex", SIEMENS_MRE_SEQUENCE)),
     "role": "hatched_stiffness", "unit": "kpa_x100",
     "source": f"{PAPER} (measured on syngo MRE gray elastograms with the 95 % confidence area); sequence "
               f"names from {HEPSORT}; header signature and kPa x 100: {UNITS}"},
    {"name": "siemens.gre.magnitude", "vendor": "Siemens",
     "recognises": "Siemens GRE MRE magnitude (PRIMARY, M, SequenceName greMR)",
     "predicates": (("ImageType", "equals", "PRIMARY"), ("ImageType", "equals", "M"),
                    ("SequenceName", "contains", "greMR")),
     "role": "magnitude", "unit": "unitless", "source": f"{HEPSORT} 'siemens_gre_mre_mag'"},
    {"name": "siemens.gre.phase", "vendor": "Siemens",
     "recognises": "Siemens GRE MRE phase (PRIMARY, P, not WV, SequenceName greMR)",
     "predicates": (("ImageType", "equals", "PRIMARY"), ("ImageType", "equals", "P"),
                    ("ImageType", "not equals", "WV"), ("SequenceName", "contains", "greMR")),
     "role": "phase", "unit": "unknown", "source": f"{HEPSORT} 'siemens_gre_mre_phs'"},
    {"name": "siemens.epi.magnitude", "vendor": "Siemens",
     "recognises": "Siemens SE-EPI MRE magnitude (PRIMARY, M, SequenceName epiMR/epseM, incl. WIP)",
     "predicates": (("ImageType", "equals", "PRIMARY"), ("ImageType", "equals", "M"),
                    ("SequenceName", "regex", r"epiMR|epseM")),
     "role": "magnitude", "unit": "unitless",
     "source": f"{HEPSORT} 'siemens_seepi_mre_mag', 'siemens_seepi_2dwip_mag', 'siemens_3dmre_wip_mag'"},
    {"name": "siemens.epi.phase", "vendor": "Siemens",
     "recognises": "Siemens SE-EPI MRE phase (PRIMARY, P, not WV, SequenceName epiMR/epseM/WIP_e_)",
     "predicates": (("ImageType", "equals", "PRIMARY"), ("ImageType", "equals", "P"),
                    ("ImageType", "not equals", "WV"), ("SequenceName", "regex", r"epiMR|epseM|WIP_e_")),
     "role": "phase", "unit": "unknown",
     "source": f"{HEPSORT} 'siemens_epi_mre_phs', 'siemens_seepi_2dwip_phs', 'siemens_3dmre_wip_phs'"},
    # --- Philips ---------------------------------------------------------------------------------
    {"name": "philips.phase", "vendor": "Philips",
     "recognises": "Philips MRE phase (ORIGINAL, P and MRE in ImageType; 2D and 3D)",
     "predicates": (("ImageType", "equals", "ORIGINAL"), ("ImageType", "equals", "P"),
                    ("ImageType", "equals", "MRE")),
     "role": "phase", "unit": "unknown", "source": f"{HEPSORT} 'philips_mre_phs', 'philips_3vmre_phs'"},
    # --- Canon (hepsort's Canon rules are written but commented out) ------------------------------
    {"name": "canon.stiffness", "vendor": "Canon",
     "recognises": "Canon/Toshiba SE-EPI MRE stiffness (ImageComments 'Stiffness'); unit not documented",
     "predicates": (CANON, ("ImageComments", "word", "Stiffness"), NOT_CONFIDENCE_COMMENT),
     "role": "stiffness", "unit": "unknown", "source": f"{HEPSORT} RULES_CANON_MRE 'canon_seepi_mre_stiff' (inactive)"},
    {"name": "canon.phase_difference", "vendor": "Canon",
     "recognises": "Canon/Toshiba SE-EPI MRE phase difference (ImageComments 'PhaseDiff')",
     "predicates": (CANON, ("ImageComments", "word", "PhaseDiff")), "role": "wave", "unit": "unknown",
     "source": f"{HEPSORT} RULES_CANON_MRE 'canon_seepi_mre_phs' (inactive)"},
    {"name": "canon.magnitude", "vendor": "Canon",
     "recognises": "Canon/Toshiba SE-EPI MRE magnitude (ImageComments 'Magnitude')",
     "predicates": (CANON, ("ImageComments", "word", "Magnitude")), "role": "magnitude", "unit": "unitless",
     "source": f"{HEPSORT} RULES_CANON_MRE 'canon_seepi_mre_mag' (inactive)"},
)
