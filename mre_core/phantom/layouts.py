"""Layout corpus: phantom MRE studies written the way real scanners and post-processing write them.

``python -m mre_core phantom --layout NAME --out DIR`` writes ``DIR/dicom/<patient>/...`` in one of the
documented vendor layouts of :data:`LAYOUTS` (``--layout all`` cycles through them), with the truth in the
generator's format (``DIR/truth/<patient>.npz`` keyed by the SOP Instance UIDs of the series that must
be measured, ``cohort.csv``, ``slices.csv``). ``cohort.csv`` adds the columns a reader test checks:
``layout``, ``expected_series_description``, ``expected_series_number``, ``expected_unit``,
``expected_kpa_per_unit`` (kPa per stored value after RescaleSlope/Intercept), ``expected_confidence``,
``expected_selector`` and, for a confidence-map layout, the confidence series and its threshold.
The facts behind each layout and which of them are assumptions: :data:`FACTS`. Header variants:
:mod:`mre_core.phantom.layout_headers`. Anatomy and fields: :mod:`.anatomy`, :mod:`.fields`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from dataclasses import fields as dc_fields
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from mre_core.analysis.staging import PAPER_TABLE, FibrosisStage, stage
from mre_core.phantom import anatomy as pa
from mre_core.phantom import fields as pf
from mre_core.phantom.layout_headers import (
    Exam,
    HeaderVariant,
    LayoutSeries,
    VariantMix,
    classic_datasets,
    enhanced_dataset,
    make_exam,
    sample_variant,
)
from mre_core.phantom.study import PhantomParams, StudyTruth, pick
from mre_core.phantom.writers import color_image, magnitude_image, wave_image, write_datasets

HEPSORT, MAYO, BATMAN = ("Resoundant/hepsort_rules rules/rules_mre.py", "MengYinMayo/HepatosplenicMRE functions/io",
                         "batmanlab/mre_ai")
#: per layout: the facts used, their sources, and what is assumed
FACTS: dict[str, str] = {
    "ge_mrtouch": f"(0019,109C)='MR-Touch' marks the acquisition, DERIVED = on-scanner recon, RGB excluded "
                  f"({HEPSORT}); raw series = phase first half, magnitude second half ({HEPSORT} "
                  f"MRE_SECONDARY_LABELING, {MAYO} mre_readWaveMagSeries); WW 6283 = 2*pi*1000 mrad default ({MAYO}); "
                  f"stiffness in Pa ({MAYO} mre_buildMATFile); 'elastogram'/'stgry' and masked 'elastogram mask'/"
                  f"'stgrym', 'wave images' ({BATMAN}); processed wave xx05, DERIVED\\SECONDARY\\PROCESSED, signed, "
                  f"WC~0 WW~10000, 'SCREEN' in colour ImageType ({MAYO}). Assumed: other series-number offsets, "
                  f"colour-bar look, (0019,109C) also on the derived series (hepsort's DERIVED/RGB exclusions "
                  f"imply it).",
    "mmdi_ge": f"series 'Stiffness'/'Confidence'/'Shear Wave' DERIVED\\SECONDARY\\PROCESSED, stiffness Pa, WC/WW "
            f"4000/8000, confidence 0-999 per mille WC/WW 950/100, region >= 950, 32766 burned-in text (issue "
            f"brief); confidence stored 0-999 (/1000) and Pa ({MAYO} mre_buildMATFile, isConf, isStiff WC "
            f"1000-15000); numbering root, root*10000+100/105/107 ({MAYO} normalizeEPIFamilyRoles). Assumed: MMDI "
            f"keeps the scanner's Manufacturer (so a Siemens-site 'Stiffness' is Pa, not kPa x100), one file per "
            f"slice, Siemens raw phase 0-4095 with RescaleSlope 2 / Intercept -4096.",
    "siemens_ve11": f"SequenceName 'epiMR'/'greMR', magnitude M / phase P PRIMARY, wave images 'WV' ({HEPSORT}); gray "
                    f"elastogram with cross-hatched 95 % area stored kPa x100 (project working assumption, "
                    f"docs/DATA_FORMATS.md). Assumed: exact ImageType values 3-5, series names.",
    "siemens_xa_enhanced": f"'ELASTO' in ImageType with ComplexImageComponent MAGNITUDE / PHASE for raw XA data "
                           f"({HEPSORT} *_xa61 rules); Enhanced MR Image Storage (PS3.3 A.36.2). Assumed: the "
                           f"elastogram is DERIVED\\PRIMARY\\ELASTO\\MASKED, ComplexImageComponent MAGNITUDE (a "
                           f"hepsort-style rule alone would call it magnitude), zero-filled, kPa x100, Manufacturer "
                           f"'Siemens Healthineers' or 'SIEMENS'.",
    "philips": f"phase ORIGINAL + 'P' + 'MRE', magnitude 'M' with 'M_FFE'/'M_SE' ({HEPSORT}; its rules test "
               f"ImageType per instance). Assumed (no public source found): magnitude and phase images share one "
               f"series (common Philips practice), stiffness stored in Pa with RescaleSlope 0.001 (modality LUT "
               f"gives kPa), zero-filled.",
    "canon": f"ImageComments 'Magnitude'/'Stiffness'/'PhaseDiff' ({HEPSORT} RULES_CANON_MRE, commented out there); "
             f"Manufacturer 'CANON_MEC' (issue brief). Assumed: one SeriesDescription for all three series, stiffness "
             f"kPa x100 without rescale, zero-filled.",
}
FACTS["mmdi_siemens"] = FACTS["mmdi_ge"]
PI_MRAD = 3141
#: cohort.csv columns that only some layouts fill
EXPECTED_DEFAULTS = dict(expected_confidence_series_description="", expected_confidence_series_number="",
                         expected_confidence_unit="", confidence_threshold="", annotation_value="")


@dataclass(frozen=True)
class LayoutOptions:
    """What to force for one study (None: drawn from the seed) and the variant probabilities."""

    n_slices: int | None = None
    rows: int | None = None
    stage: FibrosisStage | None = None
    split: str = "test"
    deidentify: str | None = None  #: "none", "absent", "empty"
    uid_root: str | None = None  #: a key of layout_headers.UID_ROOTS
    iop_noise: bool | None = None
    slice_location_only: bool | None = None
    raw_without_description: bool | None = None
    implicit_vr: bool | None = None
    mix: VariantMix = field(default_factory=VariantMix)

    def forced_variant(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dc_fields(HeaderVariant)}


@dataclass(frozen=True, eq=False)
class Built:
    """What a layout function returns: its series, which one is measured and how to read it."""

    series: list[LayoutSeries]
    measured: int  #: SeriesNumber of the series that must be measured
    kpa: np.ndarray  #: [n, rows, cols] the measured series' values as kPa (slice order)
    confidence: np.ndarray  #: [n, rows, cols] bool, true confidence region
    expected: dict[str, Any]
    exclude: np.ndarray | None = None  #: [rows, cols] burned-in annotation pixels (never confident)
    frame_numbers: np.ndarray | None = None  #: multi-frame: frame (1-based) of each slice


def _simulate(rng: np.random.Generator, n: int, rows: int, st: FibrosisStage, image_fraction: float | None,
              spacing_mm: float) -> dict[str, Any]:
    """Anatomy and fields as in :mod:`.study`; ``image_fraction``: confidence threshold set so the region covers
    about that fraction of the image (MMDI); otherwise a fraction of the liver as in the generator."""
    p = PhantomParams()
    fp = p.fields
    liver_kpa = float(rng.uniform(*PAPER_TABLE.stage_range_kpa(st, p.kpa_ceiling, p.kpa_floor)))
    anat = pa.sample_anatomy(rng, (rows, 256), fp, cirrhotic=st is FibrosisStage.F4)
    acq = pf.sample_acquisition(rng, anat, fp)
    lut = pf.tissue_kpa_table(rng, fp)
    levels = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
    z_rel = (np.arange(n) - rng.uniform(0.3, 0.7) * (n - 1)) * spacing_mm
    labels = [pa.slice_labels(anat, float(level), rng) for level in levels]
    amps = [pf.wave_amplitude(lab, acq, float(z), rng, fp) for lab, z in zip(labels, z_rel)]
    livers = [pa.liver_mask(lab) for lab in labels]
    target = image_fraction if image_fraction is not None else acq.liver_confidence
    for _ in range(5):  # widen the region until the expert finds an ROI
        if image_fraction is not None:
            thr = float(np.quantile(np.concatenate([a.ravel() for a in amps]), 1 - target))
        else:
            thr = pf.confidence_threshold(amps, livers, target)
        conf = [pf.confidence_region(a, lab, thr) for a, lab in zip(amps, labels)]
        rois = [pf.expert_roi(lab, c, fp) for lab, c in zip(labels, conf)]
        if any(r.any() for r in rois):
            break
        target = min(0.15 if image_fraction is not None else 0.95, target + (0.03 if image_fraction else 0.15))
    true = [pf.true_stiffness_kpa(lab, liver_kpa, lut, rng, fp) for lab in labels]
    est = [pf.measured_stiffness_kpa(t, lab, a, thr, liver_kpa, acq, rng, fp) for t, lab, a in zip(true, labels, amps)]
    return dict(labels=np.stack(labels), amp=np.stack(amps), conf=np.stack(conf), roi=np.stack(rois),
                true=np.stack(true), est=np.stack(est), driver=acq.driver_xy_mm, thr=thr, liver_kpa=liver_kpa,
                freq=fp.drive_frequency_hz)


# --- pixel helpers ---------------------------------------------------------------------------------------------

def _stored(kpa: np.ndarray, per_kpa: float, top: int, dtype: type) -> np.ndarray:
    out = np.clip(np.rint(kpa * per_kpa), 0, top).astype(dtype)
    out[(kpa > 0) & (out == 0)] = 1  # every body pixel with a value stores >= 1
    return out


def _waves(rng: np.random.Generator, sim: dict, exam: Exam, n_off: int) -> tuple[np.ndarray, list[int], list[int]]:
    """Normalised wave images (-1..1), their slice and phase-offset index; slice-major order."""
    slices = [k for k in range(len(exam.z_mm)) for _ in range(n_off)]
    offs = [j % n_off for j in range(len(slices))]
    w = np.stack([wave_image(sim["true"][k], sim["amp"][k], sim["driver"], o / n_off, sim["freq"], exam.spacing_mm,
                             rng) for k, o in zip(slices, offs)])
    return w, slices, offs


def _phase_rad(rng: np.random.Generator, sim: dict, waves: np.ndarray, slices: list[int]) -> np.ndarray:
    """Wrapped phase (rad): smooth background phase + wave; uniform noise outside the body."""
    bg = [1.5 * pa.smooth_field(rng, waves.shape[1:], 40.0) for _ in range(int(sim["labels"].shape[0]))]
    phi = np.angle(np.exp(1j * (np.stack([bg[k] for k in slices]) + 2.2 * waves)))
    body = sim["labels"][slices] > 0
    return np.where(body, phi, rng.uniform(-np.pi, np.pi, phi.shape)).astype(np.float32)


def _mags(rng: np.random.Generator, sim: dict, exam: Exam, slices: list[int]) -> np.ndarray:
    return np.stack([magnitude_image(sim["labels"][k], rng, exam.spacing_mm) for k in slices])


def _colour(kpa: np.ndarray) -> np.ndarray:
    """RGB screen save: jet colour elastogram (0-8 kPa) with a colour bar at the right edge."""
    out = np.stack([color_image(k) for k in kpa])
    r = out.shape[1]
    bar = np.linspace(8.0, 0.01, int(0.6 * r))[:, None] * np.ones((1, 6))
    out[:, int(0.2 * r):int(0.2 * r) + bar.shape[0], -10:-4] = color_image(bar)
    return out


def _per_image(slices: list[int], offs: list[int] | None = None, n_off: int = 1, **extra: Any) -> tuple[dict, ...]:
    rows = []
    for j, _ in enumerate(slices):
        d = dict(extra)
        if offs is not None:
            d.update(TriggerTime=round(1000 / 60 * offs[j] / n_off, 2), TemporalPositionIdentifier=offs[j] + 1,
                     NumberOfTemporalPositions=n_off)
        rows.append(d)
    return tuple(rows)


def _acq(seq: str, protocol: str, scanning: str = "GR", te: float = 20.0) -> dict[str, Any]:
    return dict(ScanningSequence=scanning, SequenceVariant="SP", ScanOptions="", MRAcquisitionType="2D",
                EchoTrainLength=1,
                SequenceName=seq, RepetitionTime=50.0 if scanning == "GR" else 1000.0, EchoTime=te, FlipAngle=25.0,
                ProtocolName=protocol, PatientPosition="HFS", BodyPartExamined="LIVER")


def _by_slice(s: LayoutSeries, exam: Exam) -> tuple[str, ...]:
    uids = s.sop_uids(exam)
    return tuple(uids[s.slices.index(k)] for k in range(len(exam.z_mm)))


# --- the layouts -----------------------------------------------------------------------------------------------

def _ge_raw(rng: np.random.Generator, sim: dict, exam: Exam, number: int) -> LayoutSeries:
    """MR-Touch acquisition: 4 phase offsets per slice, phase (mrad) first half, magnitude second half."""
    w, slices, offs = _waves(rng, sim, exam, 4)
    phase = np.clip(np.rint(_phase_rad(rng, sim, w, slices) * 1000), -PI_MRAD, PI_MRAD).astype(np.int16)
    mags = _mags(rng, sim, exam, slices).astype(np.int16)
    per = (_per_image(slices, offs, 4, WindowCenter=0, WindowWidth=6283)
           + _per_image(slices, offs, 4, WindowCenter=500, WindowWidth=1000))
    desc = str(rng.choice(["MR Touch", "MRE MR-Touch 60Hz", "Ax MR Elastography"]))
    return LayoutSeries(number, desc, ("ORIGINAL", "PRIMARY", "OTHER"), np.concatenate([phase, mags]),
                        tuple(slices + slices), "raw_phase_magnitude", raw=True,
                        attrs=_acq("mre_gre", "MR Touch Liver"),
                        private=GE_PRIVATE, per_image=per, minutes=2)


GE_PRIVATE = ((0x0019, "GEMS_ACQU_01", 0x9C, "LO", "MR-Touch"),)  #: (0019,109C) under creator (0019,0010)
GE_NAMES = (("Elastogram", "Elastogram Mask"), ("stgry", "stgrym"), ("MR Touch elastogram", "MR Touch elastogram mask"))


def ge_mrtouch(rng: np.random.Generator, sim: dict, exam: Exam) -> Built:
    n, N = len(exam.z_mm), int(rng.integers(5, 13))
    signed = bool(rng.uniform() < 0.5)
    full = _stored(sim["est"], 1000.0, 32000 if signed else 65000, np.int16 if signed else np.uint16)
    masked = np.where(sim["conf"], full, 0).astype(full.dtype)
    w, ws, wo = _waves(rng, sim, exam, 4)
    gray, mask = GE_NAMES[int(rng.integers(len(GE_NAMES)))]
    k = list(range(n))
    derived = dict(attrs=_acq("mre_gre", "MR Touch Liver"), private=GE_PRIVATE)
    itype = ("DERIVED", "SECONDARY", "PROCESSED")
    series = [
        _ge_raw(rng, sim, exam, N),
        LayoutSeries(N * 100 + 1, gray, itype, full, tuple(k), "stiffness", window=(4000, 8000), minutes=3, **derived),
        LayoutSeries(N * 100 + 2, mask, itype, masked, tuple(k), "masked_stiffness", window=(4000, 8000), minutes=3,
                     **derived),
        LayoutSeries(N * 100 + 3, f"Color {gray}", ("DERIVED", "SECONDARY", "SCREEN SAVE"), _colour(sim["est"]),
                     tuple(k), "colour", minutes=3, **derived),
        LayoutSeries(N * 100 + 4, f"Color {mask}", ("DERIVED", "SECONDARY", "SCREEN SAVE"),
                     _colour(np.where(sim["conf"], sim["est"], 0)), tuple(k), "colour", minutes=3, **derived),
        LayoutSeries(N * 100 + 5, str(rng.choice(["Wave Images", "wave images"])), itype,
                     np.rint(4000 * w).astype(np.int16), tuple(ws), "wave", window=(0, 10000), minutes=3,
                     per_image=_per_image(ws, wo, 4), **derived)]
    return Built(series, N * 100 + 2, masked / 1000.0, sim["conf"].copy(), dict(
        expected_series_description=mask, expected_unit="Pa", expected_kpa_per_unit=0.001,
        expected_confidence="paired_series", expected_selector=f"GE masked elastogram '{mask}' paired with '{gray}'"))


def _annotation(rng: np.random.Generator, sim: dict, rows: int, cols: int) -> np.ndarray:
    """Burned-in text pixels: a label in a corner and one short piece on the body (liver half of the time)."""
    canvas = np.zeros((rows, cols), np.uint8)
    text = str(rng.choice(["MMDI 60Hz", "Resoundant MMDI", "kPa 0-8", "MRE 60 Hz"]))
    cv2.putText(canvas, text, (3, 11) if rng.uniform() < 0.5 else (3, rows - 4), cv2.FONT_HERSHEY_PLAIN, 0.8, 255, 1)
    mid = sim["labels"][len(sim["labels"]) // 2]
    where = pa.liver_mask(mid) if rng.uniform() < 0.5 else mid > 0
    ys, xs = np.nonzero(where)
    j = int(rng.integers(len(ys)))
    cv2.putText(canvas, str(rng.choice(["R", "A", "1", "+"])), (int(xs[j]) - 4, int(ys[j]) + 5),
                cv2.FONT_HERSHEY_PLAIN, 0.9, 255, 1)
    return canvas > 0


def _siemens_raw(rng: np.random.Generator, sim: dict, exam: Exam, number: int, seq: str,
                 desc: str) -> list[LayoutSeries]:
    """Siemens magnitude (M) and phase (P, 0-4095 with RescaleSlope 2 / Intercept -4096), 4 offsets for phase."""
    n = len(exam.z_mm)
    w, slices, offs = _waves(rng, sim, exam, 4)
    phase = np.clip(np.rint((_phase_rad(rng, sim, w, slices) / np.pi) * 2048 + 2048), 0, 4095).astype(np.uint16)
    acq = _acq(seq, desc, "EP" if "epi" in seq else "GR")
    return [LayoutSeries(number, f"{desc}_MAG", ("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
                         _mags(rng, sim, exam, list(range(n))), tuple(range(n)), "magnitude", raw=True, bits_stored=12,
                         window=(500, 1000), attrs=acq, minutes=2),
            LayoutSeries(number + 1, f"{desc}_PHASE", ("ORIGINAL", "PRIMARY", "P", "ND"), phase, tuple(slices), "phase",
                         raw=True, bits_stored=12, window=(0, 8192), rescale=(2.0, -4096.0), attrs=acq,
                         per_image=_per_image(slices, offs, 4), minutes=2)]


def _mmdi(rng: np.random.Generator, sim: dict, exam: Exam, site: str) -> Built:
    n, rows, cols = len(exam.z_mm), exam.rows, exam.cols
    root = int(rng.integers(4, 10))
    if site == "ge":
        raw = [_ge_raw(rng, sim, exam, root)]
    else:
        seq = str(rng.choice(["*epiMR2d1_64", "*epiMR2d1_96", "*greMR2d1"]))
        raw = _siemens_raw(rng, sim, exam, root - 1, seq, str(rng.choice(["MRE_tra", "ep2d_MRE_tra", "gre_MRE_tra"])))
    text = _annotation(rng, sim, rows, cols)
    stiff = _stored(sim["est"], 1000.0, 32000, np.int16)
    stiff[:, text] = 32766
    ratio = np.log(np.maximum(sim["amp"], 1e-6) / max(sim["thr"], 1e-6))
    base = 950 + 120 * ratio + 15 * rng.standard_normal(sim["amp"].shape)
    conf = sim["conf"]
    pm = np.where(conf, np.clip(base, 950, 999), np.clip(base, 0, 949))
    pm = np.where(sim["labels"] > 0, np.rint(pm), 0).astype(np.int16)
    w, _, _ = _waves(rng, sim, exam, 1)
    k, itype = tuple(range(n)), ("DERIVED", "SECONDARY", "PROCESSED")
    attrs = dict(raw[0].attrs)
    attrs.pop("SequenceName", None)
    series = raw + [
        LayoutSeries(root * 10000 + 100, "Stiffness", itype, stiff, k, "stiffness", window=(4000, 8000), attrs=attrs,
                     minutes=6),
        LayoutSeries(root * 10000 + 105, "Shear Wave", itype, np.rint(14000 * np.clip(w, -1, 1)).astype(np.int16), k,
                     "wave", window=(0, 28000), attrs=attrs, minutes=6),
        LayoutSeries(root * 10000 + 107, "Confidence", itype, pm, k, "confidence_map", window=(950, 100), attrs=attrs,
                     minutes=6)]
    kpa = np.where(text, 0, stiff) / 1000.0
    return Built(series, root * 10000 + 100, kpa, conf & ~text[None], dict(
        expected_series_description="Stiffness", expected_unit="Pa", expected_kpa_per_unit=0.001,
        expected_confidence="confidence_map", expected_confidence_series_description="Confidence",
        expected_confidence_series_number=root * 10000 + 107, expected_confidence_unit="per mille",
        confidence_threshold=950, annotation_value=32766,
        expected_selector="MMDI 'Stiffness' (Pa) where 'Confidence' >= 950 at the same slice position, "
                          "excluding 32766 annotation pixels"), exclude=text)


def _hatch(rng: np.random.Generator, stored: np.ndarray, body: np.ndarray, conf: np.ndarray, value: int) -> np.ndarray:
    """Diagonal cross-hatch (period 6-10 px) burned into the low-confidence body (docs/DATA_FORMATS.md)."""
    period = int(rng.integers(6, 11))
    a, b = (int(v) for v in rng.integers(0, period, 2))
    yy, xx = np.mgrid[: stored.shape[1], : stored.shape[2]]
    lines = ((xx + yy + a) % period == 0) | ((xx - yy + b) % period == 0)
    out = stored.copy()
    out[out == value] -= 1
    out[body & ~conf & lines[None]] = value
    return out


def siemens_ve11(rng: np.random.Generator, sim: dict, exam: Exam) -> Built:
    n, base = len(exam.z_mm), int(rng.integers(3, 20))
    seq = str(rng.choice(["*epiMR2d1_64", "*epiMR2d1_96"]))
    raw = _siemens_raw(rng, sim, exam, base, seq, "ep2d_mre_tra")
    hatch_value = int(rng.choice([800, 1000, 4095]))
    gray = _hatch(rng, _stored(sim["est"], 100.0, 4094, np.uint16), sim["labels"] > 0, sim["conf"], hatch_value)
    w, ws, wo = _waves(rng, sim, exam, 4)
    k, acq = tuple(range(n)), raw[0].attrs
    desc = str(rng.choice(["ep2d_mre_tra_Elastogram_Conf95", "MRE_ELASTOGRAM_CONF95",
                           "Gray elastogram 95% confidence"]))
    colour_kpa = np.where(gray == hatch_value, 8.0, gray / 100.0)
    series = raw + [
        LayoutSeries(base + 2, "ep2d_mre_tra_Wave", ("DERIVED", "PRIMARY", "WV", "P", "ND"),
                     np.clip(2048 + 1800 * w, 0, 4095).astype(np.uint16), tuple(ws), "wave", bits_stored=12,
                     window=(2048, 4096), attrs=acq, per_image=_per_image(ws, wo, 4), minutes=3),
        LayoutSeries(base + 3, desc, ("DERIVED", "PRIMARY", "ELASTOGRAM", "ND"), gray, k, "hatched_stiffness",
                     bits_stored=12, window=(400, 800), rescale=(1.0, 0.0), attrs=acq, minutes=3),
        LayoutSeries(base + 4, "ep2d_mre_tra_Elastogram_Color", ("DERIVED", "SECONDARY", "ELASTOGRAM", "COLOR"),
                     _colour(colour_kpa), k, "colour", attrs=acq, minutes=3)]
    return Built(series, base + 3, np.where(gray == hatch_value, 0, gray) / 100.0, sim["conf"].copy(), dict(
        expected_series_description=desc, expected_unit="kPa x100", expected_kpa_per_unit=0.01,
        expected_confidence="cross_hatch", hatch_stored=hatch_value,
        expected_selector="Siemens DERIVED elastogram of an epiMR sequence with burned-in cross-hatch"))


def siemens_xa_enhanced(rng: np.random.Generator, sim: dict, exam: Exam) -> Built:
    n, base = len(exam.z_mm), int(rng.integers(3, 20))
    w, ws, wo = _waves(rng, sim, exam, 4)
    phase = np.clip(np.rint((_phase_rad(rng, sim, w, ws) / np.pi) * 2048 + 2048), 0, 4095).astype(np.uint16)
    order = list(range(n))[::-1] if rng.uniform() < 0.5 else list(range(n))  # frame order of the elastogram
    elasto = np.where(sim["conf"], _stored(sim["est"], 100.0, 4095, np.uint16), 0).astype(np.uint16)
    mf = dict(_multiframe=True, _pulse_sequence="epiMR2d")
    series = [
        LayoutSeries(base, "MRE_tra_MAG", ("ORIGINAL", "PRIMARY", "ELASTO", "NONE"),
                     _mags(rng, sim, exam, list(range(n))), tuple(range(n)), "magnitude", raw=True, bits_stored=12,
                     window=(500, 1000), attrs=mf, minutes=2),
        LayoutSeries(base + 1, "MRE_tra_PHASE", ("ORIGINAL", "PRIMARY", "ELASTO", "NONE"), phase, tuple(ws), "phase",
                     raw=True, bits_stored=12, window=(0, 8192), rescale=(2.0, -4096.0), attrs=mf,
                     per_image=tuple(dict(_temporal=o + 1) for o in wo), minutes=2),
        LayoutSeries(base + 2, "MRE_tra_Elastogram", ("DERIVED", "PRIMARY", "ELASTO", "MASKED"), elasto[order],
                     tuple(order), "stiffness", bits_stored=12, window=(400, 800), attrs=mf, minutes=3)]
    frames = np.array([order.index(k) + 1 for k in range(n)])
    return Built(series, base + 2, elasto / 100.0, sim["conf"].copy(), dict(
        expected_series_description="MRE_tra_Elastogram", expected_unit="kPa x100", expected_kpa_per_unit=0.01,
        expected_confidence="zero_fill", expected_selector="Enhanced MR frames, ImageType DERIVED + ELASTO"),
        frame_numbers=frames)


def philips(rng: np.random.Generator, sim: dict, exam: Exam) -> Built:
    """Magnitude and phase images in ONE acquisition series (per-image ImageType and rescale), stiffness apart."""
    n, base = len(exam.z_mm), int(rng.integers(3, 30)) * 100 + 1
    se = bool(rng.uniform() < 0.5)
    flav = ("M_SE", "M", "SE") if se else ("M_FFE", "M", "FFE")
    acq = _acq("SEEPI" if se else "FFE", "MRE_liver", "SE" if se else "GR")
    w, ws, wo = _waves(rng, sim, exam, 4)
    phase = np.clip(np.rint((_phase_rad(rng, sim, w, ws) + np.pi) / (2 * np.pi) * 4095), 0, 4095).astype(np.uint16)
    stiff = np.where(sim["conf"], _stored(sim["est"], 1000.0, 65000, np.uint16), 0).astype(np.uint16)
    k = tuple(range(n))
    mag_attrs = dict(ImageType=["ORIGINAL", "PRIMARY", *flav], RescaleIntercept=0.0, RescaleSlope=1.72,
                     RescaleType="normalized", WindowCenter=500, WindowWidth=1000)
    phs_attrs = dict(ImageType=["ORIGINAL", "PRIMARY", "P", "MRE", flav[2]], RescaleIntercept=round(-np.pi, 6),
                     RescaleSlope=round(2 * np.pi / 4095, 8), RescaleType="radians", WindowCenter=0, WindowWidth=6.28)
    per = tuple(dict(mag_attrs) for _ in k) + tuple({**phs_attrs, **d} for d in _per_image(ws, wo, 4))
    series = [
        LayoutSeries(base, "MRE_liver", ("ORIGINAL", "PRIMARY", *flav), np.concatenate([_mags(rng, sim, exam, list(k)),
                     phase]), k + tuple(ws), "raw_magnitude_phase", raw=True, bits_stored=12, attrs=acq, per_image=per,
                     minutes=2),
        LayoutSeries(base + 1, "MRE_liver_stiffness", ("DERIVED", "PRIMARY", "MRE", "STIFFNESS"), stiff, k, "stiffness",
                     window=(4.0, 8.0), rescale=(0.001, 0.0), attrs=acq, minutes=3)]
    return Built(series, base + 1, stiff / 1000.0, sim["conf"].copy(), dict(
        expected_series_description="MRE_liver_stiffness", expected_unit="kPa", expected_kpa_per_unit=1.0,
        expected_confidence="zero_fill", expected_selector="Philips DERIVED MRE stiffness; RescaleSlope 0.001 -> kPa"))


def canon(rng: np.random.Generator, sim: dict, exam: Exam) -> Built:
    n, base = len(exam.z_mm), int(rng.integers(3, 15))
    desc, acq = "MRE_SE-EPI_60Hz", _acq("SE_EPI", "MRE_SE-EPI_60Hz", "SE")
    w, ws, wo = _waves(rng, sim, exam, 4)
    stiff = np.where(sim["conf"], _stored(sim["est"], 100.0, 4095, np.uint16), 0).astype(np.uint16)
    k = tuple(range(n))
    series = [
        LayoutSeries(base, desc, ("ORIGINAL", "PRIMARY", "OTHER"), _mags(rng, sim, exam, list(k)), k, "magnitude",
                     raw=True, bits_stored=12, window=(500, 1000), attrs=dict(acq, ImageComments="Magnitude"),
                     minutes=2),
        LayoutSeries(base + 1, desc, ("ORIGINAL", "PRIMARY", "OTHER"), np.rint(_phase_rad(rng, sim, w, ws) * 1000)
                     .astype(np.int16), tuple(ws), "wave", raw=True, window=(0, 6283),
                     attrs=dict(acq, ImageComments="PhaseDiff"), per_image=_per_image(ws, wo, 4), minutes=2),
        LayoutSeries(base + 2, desc, ("DERIVED", "SECONDARY", "OTHER"), stiff, k, "stiffness", bits_stored=12,
                     window=(400, 800), attrs=dict(acq, ImageComments="Stiffness"), minutes=3)]
    return Built(series, base + 2, stiff / 100.0, sim["conf"].copy(), dict(
        expected_series_description=desc, expected_unit="kPa x100", expected_kpa_per_unit=0.01,
        expected_confidence="zero_fill", expected_selector="Canon series with ImageComments 'Stiffness'"))


#: name -> (layout function, vendor, vendor UID root key, GE-style Implicit VR allowed)
LAYOUTS: dict[str, tuple[Callable[..., Built], str, str, bool]] = {
    "ge_mrtouch": (ge_mrtouch, "ge", "ge", True), "mmdi_ge": (partial(_mmdi, site="ge"), "ge", "ge", True),
    "mmdi_siemens": (partial(_mmdi, site="siemens"), "siemens", "siemens", False),
    "siemens_ve11": (siemens_ve11, "siemens", "siemens", False),
    "siemens_xa_enhanced": (siemens_xa_enhanced, "siemens", "siemens", False),
    "philips": (philips, "philips", "philips", False), "canon": (canon, "canon", "canon", False)}
@dataclass(frozen=True, eq=False)
class LayoutStudy:
    """One generated layout study: the exam, its series, the truth and its cohort row."""

    layout: str
    exam: Exam
    series: tuple[LayoutSeries, ...]
    truth: StudyTruth
    row: dict[str, Any]
    frame_numbers: np.ndarray | None = None

    def datasets(self) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for s in self.series:
            if s.attrs.get("_multiframe"):
                temporal = tuple(d["_temporal"] for d in s.per_image) if s.per_image else None
                out.append(enhanced_dataset(self.exam, s, "UNKNOWN", "PHASE" if s.role == "phase" else "MAGNITUDE",
                                            temporal))
            else:
                out.extend(classic_datasets(self.exam, s))
        return out

    def slice_rows(self) -> list[dict[str, Any]]:
        t, rows = self.truth, []
        for i, uid in enumerate(t.sop_uids):
            liver = int(t.liver_mask[i].sum())
            rows.append(dict(patient_id=self.exam.label, sop_uid=uid, slice_index=i,
                             manual_kpa=round(float(t.manual_kpa[i]), 4), expert_roi_pixels=int(t.expert_roi[i].sum()),
                             liver_pixels=liver, confidence_fraction_of_liver=round(
                                 (t.confidence[i] & t.liver_mask[i]).sum() / max(liver, 1), 4),
                             frame_number=int(self.frame_numbers[i]) if self.frame_numbers is not None else ""))
        return rows


def generate_layout_study(layout: str, seed: int, index: int, opts: LayoutOptions | None = None) -> LayoutStudy:
    """One study in ``layout``; a pure function of ``(layout, seed, index, opts)`` (same seed, same bytes)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    opts = opts or LayoutOptions()
    rng = np.random.default_rng([int(seed), 3, list(LAYOUTS).index(layout), int(index)])
    p = PhantomParams()
    st = opts.stage if opts.stage is not None else FibrosisStage(pick(rng, p.stage_mix))
    n = opts.n_slices or int(pick(rng, p.slices_mix))
    rows = opts.rows or (256 if LAYOUTS[layout][1] in ("ge", "philips") else int(pick(rng, p.rows_mix)))
    _, vendor, root, implicit = LAYOUTS[layout]
    variant = sample_variant(rng, root, opts.mix, implicit, opts.forced_variant())
    exam = make_exam(rng, f"P{index + 1:04d}", f"{layout}:{index}", "siemens_xa" if "xa" in layout else vendor,
                     variant, n, rows, p.fields.pixel_spacing_mm)
    sim = _simulate(rng, n, rows, st, rng.uniform(0.05, 0.13) if layout.startswith("mmdi") else None,
                    exam.slice_spacing_mm)
    built = LAYOUTS[layout][0](rng, sim, exam)
    measured = next(s for s in built.series if s.number == built.measured)
    roi = sim["roi"] & ~(built.exclude if built.exclude is not None else np.zeros((rows, exam.cols), bool))[None]
    manual = np.array([built.kpa[i][roi[i]].mean() if roi[i].any() else np.nan for i in range(n)], np.float32)
    uids = (measured.sop_uids(exam) * n) if built.frame_numbers is not None else _by_slice(measured, exam)
    truth = StudyTruth(tuple(uids), pa.liver_mask(sim["labels"]), roi, sim["true"], built.confidence, sim["labels"],
                       manual)
    liver = truth.liver_mask
    mean = truth.study_manual_kpa
    v = exam.variant
    row = dict(patient_id=exam.label, study_uid=exam.study_uid, series_uid=measured.series_uid(exam),
               split=opts.split, vendor=LAYOUTS[layout][1], encoding=built.expected["expected_confidence"],
               rows=rows, cols=exam.cols, n_slices=n, true_kpa=round(sim["liver_kpa"], 4), true_stage=stage(
                   sim["liver_kpa"]).stage.label, manual_kpa=round(mean, 4) if math.isfinite(mean) else math.nan,
               manual_stage=stage(mean).stage.label if math.isfinite(mean) else "",
               age=int(exam.patient["PatientAge"][:3]), sex=exam.patient["PatientSex"],
               hatch_stored=built.expected.get("hatch_stored", ""), rescale_slope=(measured.rescale or (1.0,))[0],
               liver_confidence_fraction=round(float((truth.confidence & liver).sum() / max(int(liver.sum()), 1)), 4),
               layout=layout, expected_series_number=built.measured, multiframe=built.frame_numbers is not None,
               image_confidence_fraction=round(float(truth.confidence.mean()), 4),
               **{**EXPECTED_DEFAULTS, **{k: val for k, val in built.expected.items() if k != "hatch_stored"}},
               **{f.name: getattr(v, f.name) for f in dc_fields(v)})
    return LayoutStudy(layout, exam, tuple(built.series), truth, row, built.frame_numbers)


def write_layout_study(study: LayoutStudy, out_dir: Path) -> list[Path]:
    """``out_dir/dicom/<patient>/...`` and ``out_dir/truth/<patient>.npz`` (plus ``frame_numbers`` if multi-frame)."""
    out_dir = Path(out_dir)
    paths = write_datasets(out_dir / "dicom" / study.exam.label, study.datasets())
    truth_path = out_dir / "truth" / f"{study.exam.label}.npz"
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    arrays = study.truth.npz_arrays()
    if study.frame_numbers is not None:
        arrays["frame_numbers"] = study.frame_numbers.astype(np.int32)
    np.savez_compressed(truth_path, **arrays)
    return [*paths, truth_path]


def generate_layout_cohort(out_dir: Path, layout: str, n_patients: int, seed: int = 0,
                           opts: LayoutOptions | None = None) -> pd.DataFrame:
    """Write ``n_patients`` studies in ``layout`` (``"all"``: the layouts in turn), ``cohort.csv``, ``slices.csv``."""
    names = list(LAYOUTS) if layout == "all" else [layout]
    out_dir = Path(out_dir)
    rows, slices = [], []
    for i in range(n_patients):
        study = generate_layout_study(names[i % len(names)], seed, i, opts)
        write_layout_study(study, out_dir)
        rows.append(study.row)
        slices.extend(study.slice_rows())
    cohort = pd.DataFrame(rows)
    cohort.to_csv(out_dir / "cohort.csv", index=False)
    pd.DataFrame(slices).to_csv(out_dir / "slices.csv", index=False)
    return cohort
