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

import numpy as np
import pandas as pd

from mre_core.analysis.staging import FibrosisStage, stage
from mre_core.phantom import anatomy as pa
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
from mre_core.phantom.layout_series import (
    Built,
    by_slice,
    canon,
    ge_mrtouch,
    mmdi,
    philips,
    siemens_ve11,
    siemens_xa_enhanced,
    simulate_exam,
)
from mre_core.phantom.study import PhantomParams, StudyTruth, pick
from mre_core.phantom.writers import write_datasets

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


# --- pixel helpers ---------------------------------------------------------------------------------------------


# --- the layouts -----------------------------------------------------------------------------------------------


#: name -> (layout function, vendor, vendor UID root key, GE-style Implicit VR allowed)
LAYOUTS: dict[str, tuple[Callable[..., Built], str, str, bool]] = {
    "ge_mrtouch": (ge_mrtouch, "ge", "ge", True), "mmdi_ge": (partial(mmdi, site="ge"), "ge", "ge", True),
    "mmdi_siemens": (partial(mmdi, site="siemens"), "siemens", "siemens", False),
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
    sim = simulate_exam(rng, n, rows, st, rng.uniform(0.05, 0.13) if layout.startswith("mmdi") else None,
                    exam.slice_spacing_mm)
    built = LAYOUTS[layout][0](rng, sim, exam)
    measured = next(s for s in built.series if s.number == built.measured)
    roi = sim["roi"] & ~(built.exclude if built.exclude is not None else np.zeros((rows, exam.cols), bool))[None]
    manual = np.array([built.kpa[i][roi[i]].mean() if roi[i].any() else np.nan for i in range(n)], np.float32)
    uids = (measured.sop_uids(exam) * n) if built.frame_numbers is not None else by_slice(measured, exam)
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
