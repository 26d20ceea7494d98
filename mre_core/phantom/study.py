"""Synthetic liver MR elastography studies as DICOM, with known truth beside them.

Real MRE data is not public, so the demo, the tests, model training and evaluation all
run on these phantoms. A study is an axial upper-abdomen exam (4-5 slices) as a Siemens-
or GE-like scanner writes it: magnitude, wave, gray elastogram, elastogram with the 95 %
confidence marking (zero fill, cross-hatch or GE-style pair) and sometimes an RGB colour
elastogram. The truth (liver mask, expert ROI, true stiffness, confidence region, manual
read-out) is written to ``truth/<patient_id>.npz`` and two CSV tables, never into the
DICOM. File layout and encodings: ``docs/DATA_FORMATS.md``.

A study is a pure function of ``(seed, patient_index, spec)``: same seed, same bytes.

>>> study = generate_study(0, 0, StudySpec(n_slices=4))
>>> study.truth.liver_mask.shape, study.header.vendor
((4, 204, 256), 'siemens')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from mre_core.analysis.staging import PAPER_TABLE, FibrosisStage, stage
from mre_core.io.elastogram import ConfidenceEncoding
from mre_core.phantom import anatomy as pa
from mre_core.phantom import fields as pf
from mre_core.phantom.writers import (
    DESCRIPTIONS,
    TRANSFER_SYNTAXES,
    PhantomSeries,
    SeriesRole,
    StudyHeader,
    acquired_pixels,
    build_datasets,
    color_image,
    file_names,
    folder_name,
    write_datasets,
)

F = FibrosisStage
E = ConfidenceEncoding
UNITS_PER_KPA = {"siemens": 100.0, "ge": 1000.0}  #: stored (rescaled) units per kPa: kPa x 100, Pa
ExplicitVR = TRANSFER_SYNTAXES[0]


@dataclass(frozen=True)
class PhantomParams:
    """Cohort mix and DICOM variety of the phantom (probabilities per study)."""

    fields: pa.FieldParams = field(default_factory=pa.FieldParams)
    vendor_mix: tuple[tuple[str, float], ...] = (("siemens", 0.7), ("ge", 0.3))
    siemens_encodings: tuple[tuple[ConfidenceEncoding, float], ...] = ((E.CROSS_HATCH, 0.75), (E.ZERO_FILL, 0.25))
    ge_encodings: tuple[tuple[ConfidenceEncoding, float], ...] = ((E.PAIRED_SERIES, 0.75), (E.ZERO_FILL, 0.25))
    rows_mix: tuple[tuple[int, float], ...] = ((204, 0.7), (256, 0.3))
    slices_mix: tuple[tuple[int, float], ...] = ((4, 0.4), (5, 0.6))
    #: default stage prevalence (all stages well represented for training and tests)
    stage_mix: tuple[tuple[FibrosisStage, float], ...] = ((F.F0, .25), (F.F1, .15), (F.F2, .2), (F.F3, .15), (F.F4, .25))
    #: paper cohort (PAPER.md): >= F2 in 76 % of train (69/91), 52 % of test (118/228); means ~4.5 / ~3.7 kPa
    paper_train_mix: tuple[tuple[FibrosisStage, float], ...] = (
        (F.F0, .10), (F.F1, .14), (F.F2, .22), (F.F3, .24), (F.F4, .30))
    paper_test_mix: tuple[tuple[FibrosisStage, float], ...] = (
        (F.F0, .24), (F.F1, .24), (F.F2, .18), (F.F3, .16), (F.F4, .18))
    paper_split: tuple[int, int] = (91, 228)  #: train, test patients of the paper
    train_fraction: float = 0.3  #: otherwise: the first floor(30 %) of patients are "train"
    kpa_floor: float = 1.5  #: F0 starts here
    kpa_ceiling: float = 9.0  #: F4 ends here
    slice_thickness_mm: tuple[float, float] = (5.0, 10.0)
    slice_gap_fraction: tuple[float, float] = (0.0, 0.5)  #: gap between slices, fraction of thickness
    hatch_values: tuple[int, ...] = (800, 1000, 4095)  #: cross-hatch value (rescaled units), one per series
    hatch_period_px: tuple[int, int] = (6, 10)
    slope2_probability: float = 0.15  #: elastograms stored as value / 2 with RescaleSlope 2
    rescale_absent_probability: float = 0.2  #: slope 1 series written without Rescale attributes
    rwvm_probability: float = 0.5  #: GE elastograms carrying a RealWorldValueMapping (UCUM "Pa")
    color_probability: float = 0.5
    four_offsets_probability: float = 0.3  #: wave series with 4 phase offsets per slice
    no_extension_probability: float = 0.25
    shuffle_probability: float = 0.3  #: file names not in slice order
    descending_instance_probability: float = 0.5  #: InstanceNumber 1 = most superior slice
    transfer_syntax_mix: tuple[tuple[str, float], ...] = tuple(zip(TRANSFER_SYNTAXES, (0.6, 0.2, 0.2)))
    age_years: tuple[float, float] = (55.0, 12.0)  #: mean, SD
    male_fraction: float = 0.56


@dataclass(frozen=True)
class StudySpec:
    """What to generate for one patient; everything else is sampled from the seed."""

    vendor: str = "siemens"  #: "siemens" or "ge"
    encoding: ConfidenceEncoding = E.CROSS_HATCH
    stage: FibrosisStage = F.F2
    n_slices: int = 5
    rows: int = 204  #: 204 or 256 (columns are always 256)
    liver_kpa: float | None = None  #: None: uniform within the stage's range
    split: str = "test"
    params: PhantomParams = field(default_factory=PhantomParams)

    def __post_init__(self) -> None:
        if self.vendor not in UNITS_PER_KPA:
            raise ValueError(f"vendor must be one of {sorted(UNITS_PER_KPA)}, got {self.vendor!r}")
        if self.encoding not in (E.ZERO_FILL, E.CROSS_HATCH, E.PAIRED_SERIES):
            raise ValueError(f"encoding must be zero_fill, cross_hatch or paired_series, got {self.encoding!r}")
        if not 1 <= self.n_slices <= 12 or self.rows not in (204, 256):
            raise ValueError("n_slices must be 1..12 and rows 204 or 256")


@dataclass(frozen=True, eq=False)
class StudyTruth:
    """Known truth of one study, per slice in slice order (ascending position along the normal).

    Arrays are ``[n_slices, rows, cols]``: ``liver_mask``/``expert_roi``/``confidence`` bool,
    ``true_kpa`` float32 (kPa), ``tissue_labels`` uint8 (:class:`~mre_core.phantom.anatomy.Tissue`);
    ``manual_kpa`` float32 ``[n_slices]`` (NaN where the expert drew no ROI).
    """

    sop_uids: tuple[str, ...]
    liver_mask: np.ndarray
    expert_roi: np.ndarray
    true_kpa: np.ndarray
    confidence: np.ndarray
    tissue_labels: np.ndarray
    manual_kpa: np.ndarray

    @property
    def study_manual_kpa(self) -> float:
        """Mean of the slice manual values (kPa); NaN when no slice has an ROI."""
        values = self.manual_kpa[np.isfinite(self.manual_kpa)]
        return float(values.mean()) if values.size else math.nan

    def npz_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of ``truth/<patient_id>.npz``."""
        return dict(sop_uids=np.array(self.sop_uids), liver_mask=self.liver_mask, expert_roi=self.expert_roi,
                    true_kpa=self.true_kpa, confidence=self.confidence, manual_kpa=self.manual_kpa,
                    tissue_labels=self.tissue_labels)


@dataclass(frozen=True, eq=False)
class PhantomStudy:
    """One generated study in memory: header, series (stored pixels) and truth."""

    spec: StudySpec
    header: StudyHeader
    series: tuple[PhantomSeries, ...]
    series_times: tuple[str, ...]
    truth: StudyTruth
    liver_kpa: float  #: nominal true liver stiffness
    hatch_stored: int | None  #: the cross-hatch's stored value, if any

    @property
    def patient_id(self) -> str:
        return self.header.patient_id

    @property
    def confidence_series(self) -> PhantomSeries:
        """The series a reader must analyse (for GE pairs: the confidence-masked copy)."""
        return next(s for s in self.series if s.role is SeriesRole.CONFIDENCE)

    def datasets(self) -> list[tuple[str, Dataset]]:
        """Every image as ``(path relative to the patient folder, pydicom Dataset)``."""
        return [item for s, t in zip(self.series, self.series_times) for item in build_datasets(self.header, s, t)]

    def cohort_row(self) -> dict[str, Any]:
        """This study's row of ``cohort.csv``."""
        manual = self.truth.study_manual_kpa
        liver = self.truth.liver_mask
        conf = (self.truth.confidence & liver).sum() / max(int(liver.sum()), 1)
        conf_series = self.confidence_series
        return dict(
            patient_id=self.patient_id, study_uid=self.header.study_uid, series_uid=conf_series.series_uid,
            split=self.spec.split, vendor=self.spec.vendor, encoding=self.spec.encoding.value,
            rows=self.header.rows, cols=self.header.cols, n_slices=self.spec.n_slices,
            true_kpa=round(self.liver_kpa, 4), true_stage=stage(self.liver_kpa).stage.label,
            manual_kpa=round(manual, 4) if math.isfinite(manual) else math.nan,
            manual_stage=stage(manual).stage.label if math.isfinite(manual) else "",
            age=self.header.patient_age_years, sex=self.header.patient_sex,
            hatch_stored=self.hatch_stored if self.hatch_stored is not None else "",
            rescale_slope=conf_series.rescale_slope or 1.0, liver_confidence_fraction=round(float(conf), 4))

    def slice_rows(self) -> list[dict[str, Any]]:
        """This study's rows of ``slices.csv``."""
        t = self.truth
        rows = []
        for i, uid in enumerate(t.sop_uids):
            liver = int(t.liver_mask[i].sum())
            rows.append(dict(patient_id=self.patient_id, sop_uid=uid, slice_index=i,
                             manual_kpa=round(float(t.manual_kpa[i]), 4), expert_roi_pixels=int(t.expert_roi[i].sum()),
                             liver_pixels=liver,
                             confidence_fraction_of_liver=round((t.confidence[i] & t.liver_mask[i]).sum()
                                                                / max(liver, 1), 4)))
        return rows


def pick(rng: np.random.Generator, mix: tuple[tuple[Any, float], ...]) -> Any:
    weights = np.array([w for _, w in mix], float)
    return mix[int(rng.choice(len(mix), p=weights / weights.sum()))][0]


def _study_rng(seed_or_rng: int | np.random.Generator, patient_index: int) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng([int(seed_or_rng), 1, int(patient_index)])


def generate_study(seed_or_rng: int | np.random.Generator, patient_index: int, spec: StudySpec) -> PhantomStudy:
    """Generate one study in memory.

    Parameters
    ----------
    seed_or_rng:
        An int seed (the study is then a pure function of ``(seed, patient_index, spec)``)
        or a generator to draw from.
    patient_index:
        0-based index; the patient ID is ``P<index + 1:04d>``.
    spec:
        Vendor, encoding, stage, slices, rows (and optionally the exact liver kPa).
    """
    rng = _study_rng(seed_or_rng, patient_index)
    p = spec.params
    uid_key = ":".join(str(v) for v in (int(rng.integers(2**62)), spec.vendor, spec.encoding.value, int(spec.stage),
                                         spec.n_slices, spec.rows, spec.liver_kpa))
    liver_kpa = spec.liver_kpa
    if liver_kpa is None:
        liver_kpa = float(rng.uniform(*PAPER_TABLE.stage_range_kpa(spec.stage, p.kpa_ceiling, p.kpa_floor)))
    header = _sample_header(rng, spec, patient_index, uid_key)
    f = _simulate(rng, spec, liver_kpa, header.slice_spacing_mm)
    slope = 2.0 if rng.uniform() < p.slope2_probability else 1.0
    units, max_stored = UNITS_PER_KPA[spec.vendor], (4095 if spec.vendor == "siemens" else 65535)
    stored = np.clip(np.rint(f["est"] * units / slope), 0, max_stored - 1).astype(np.uint16)
    stored[(f["est"] > 0) & (stored == 0)] = 1
    hatch_stored = None
    if spec.encoding is E.CROSS_HATCH:
        hatch_stored = min(int(round(int(rng.choice(p.hatch_values)) / slope)), max_stored)
        stored[stored == hatch_stored] -= 1
    conf_px = _encode_confidence(rng, stored, f["labels"] != pa.Tissue.BACKGROUND, f["conf"], spec, hatch_stored)
    roi = f["roi"]
    manual = np.array([stored[i][roi[i]].mean() * slope / units if roi[i].any() else np.nan
                       for i in range(spec.n_slices)], np.float32)
    series = _make_series(rng, spec, header, uid_key, f, stored, conf_px, slope)
    conf_series = next(s for s in series if s.role is SeriesRole.CONFIDENCE)
    truth = StudyTruth(conf_series.sop_uids, pa.liver_mask(f["labels"]), roi, f["true"], f["conf"], f["labels"],
                       manual)
    times = tuple(_add_minutes(header.study_time, 2 + 3 * k) for k in range(len(series)))
    return PhantomStudy(spec, header, tuple(series), times, truth, liver_kpa, hatch_stored)


def _simulate(rng: np.random.Generator, spec: StudySpec, liver_kpa: float, spacing_mm: float) -> dict[str, np.ndarray]:
    """Anatomy, amplitude, confidence, expert ROI, true and measured stiffness for all slices."""
    fp = spec.params.fields
    anat = pa.sample_anatomy(rng, (spec.rows, 256), fp, cirrhotic=spec.stage is F.F4)
    acq = pf.sample_acquisition(rng, anat, fp)
    lut = pf.tissue_kpa_table(rng, fp)
    n = spec.n_slices
    levels = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
    z_rel = (np.arange(n) - rng.uniform(0.3, 0.7) * (n - 1)) * spacing_mm
    labels = [pa.slice_labels(anat, float(level), rng) for level in levels]
    amps = [pf.wave_amplitude(lab, acq, float(z), rng, fp) for lab, z in zip(labels, z_rel)]
    livers = [pa.liver_mask(lab) for lab in labels]
    target = acq.liver_confidence
    for _ in range(4):  # a study where the expert finds no ROI at all would be excluded: widen the region
        thr = pf.confidence_threshold(amps, livers, target)
        conf = [pf.confidence_region(a, lab, thr) for a, lab in zip(amps, labels)]
        rois = [pf.expert_roi(lab, c, fp) for lab, c in zip(labels, conf)]
        if any(r.any() for r in rois):
            break
        target = min(0.95, target + 0.15)
    true = [pf.true_stiffness_kpa(lab, liver_kpa, lut, rng, fp) for lab in labels]
    est = [pf.measured_stiffness_kpa(t, lab, a, thr, liver_kpa, acq, rng, fp) for t, lab, a in zip(true, labels, amps)]
    return dict(labels=np.stack(labels), amp=np.stack(amps), conf=np.stack(conf), roi=np.stack(rois),
                true=np.stack(true), est=np.stack(est), driver=np.array(acq.driver_xy_mm))


def _encode_confidence(rng: np.random.Generator, stored: np.ndarray, body: np.ndarray, conf: np.ndarray,
                       spec: StudySpec, hatch_stored: int | None) -> np.ndarray:
    """Stored pixels of the confidence series: zero fill / masked copy, or the cross-hatch burned in."""
    if hatch_stored is None:
        return np.where(conf, stored, 0).astype(stored.dtype)
    period = int(rng.integers(spec.params.hatch_period_px[0], spec.params.hatch_period_px[1] + 1))
    a, b = (int(v) for v in rng.integers(0, period, 2))
    yy, xx = np.mgrid[: stored.shape[1], : stored.shape[2]]
    lines = ((xx + yy + a) % period == 0) | ((xx - yy + b) % period == 0)
    out = stored.copy()
    out[body & ~conf & lines[None]] = hatch_stored
    return out


def _sample_header(rng: np.random.Generator, spec: StudySpec, index: int, uid_key: str) -> StudyHeader:
    p = spec.params
    age = int(np.clip(rng.normal(*p.age_years), 20, 88))
    date = np.datetime64("2018-01-01") + int(rng.integers(0, 1096))
    year = int(str(date)[:4])
    thickness = float(rng.choice(np.arange(p.slice_thickness_mm[0], p.slice_thickness_mm[1] + 0.1, 1.0)))
    spacing = round(thickness * (1 + rng.uniform(*p.slice_gap_fraction)), 1)
    z0 = round(float(rng.uniform(-60, 20)), 1)
    sp = p.fields.pixel_spacing_mm
    origin = ((-256 / 2 + 0.5) * sp, (-spec.rows / 2 + 0.5) * sp + round(float(rng.uniform(-30, 20)), 1))
    pid = f"P{index + 1:04d}"
    return StudyHeader(
        spec.vendor, pid, f"PHANTOM^{pid}", age, "M" if rng.uniform() < p.male_fraction else "F",
        f"{year - age}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
        generate_uid(entropy_srcs=[uid_key, "study"]), generate_uid(entropy_srcs=[uid_key, "frame"]),
        str(date).replace("-", ""), f"{int(rng.integers(7, 18)):02d}{int(rng.integers(0, 60)):02d}00",
        str(int(rng.integers(1000, 99999))), f"A{int(rng.integers(10**6, 10**7))}", spec.rows, 256, sp,
        thickness, spacing, tuple(round(z0 + i * spacing, 2) for i in range(spec.n_slices)), origin)


def _add_minutes(hhmmss: str, minutes: int) -> str:
    total = int(hhmmss[:2]) * 60 + int(hhmmss[2:4]) + minutes
    return f"{total // 60 % 24:02d}{total % 60:02d}{hhmmss[4:6]}"


def _make_series(rng: np.random.Generator, spec: StudySpec, header: StudyHeader, uid_key: str,
                 f: dict[str, np.ndarray], stored: np.ndarray, conf_px: np.ndarray, slope: float) -> list[PhantomSeries]:
    """All series of the study, with per-study naming, numbering, compression and rescale choices."""
    p, v, n = spec.params, spec.vendor, spec.n_slices
    roles = [SeriesRole.MAGNITUDE, SeriesRole.WAVE]
    if v == "siemens" or spec.encoding is E.PAIRED_SERIES:
        roles.append(SeriesRole.FULL_MAP)
    roles.append(SeriesRole.CONFIDENCE)
    if rng.uniform() < p.color_probability:
        roles.append(SeriesRole.COLOR)
    base = int(rng.integers(3, 20)) if v == "siemens" else int(rng.integers(3, 12)) * 100
    descending = rng.uniform() < p.descending_instance_probability
    shuffle = rng.uniform() < p.shuffle_probability
    ext = "" if rng.uniform() < p.no_extension_probability else ".dcm"
    naming, folder_style = int(rng.integers(0, 3)), int(rng.integers(0, 3))
    no_rescale = rng.uniform() < p.rescale_absent_probability
    rwvm = "Pa" if v == "ge" and rng.uniform() < p.rwvm_probability else None
    n_offsets = 4 if rng.uniform() < p.four_offsets_probability else 1
    units = UNITS_PER_KPA[v]
    elasto = dict(bits_stored=12 if v == "siemens" else 16, rwvm_unit=rwvm,
                  rescale_slope=None if (no_rescale and slope == 1.0) else slope,
                  window=(400.0, 800.0) if v == "siemens" else (4000.0, 8000.0))
    out: list[PhantomSeries] = []
    for k, role in enumerate(roles):
        number = base + k
        desc = str(rng.choice(DESCRIPTIONS[(v, role)]))
        slices = [i for i in range(n) for _ in range(n_offsets if role is SeriesRole.WAVE else 1)]
        sops = tuple(generate_uid(entropy_srcs=[uid_key, role.value, str(j)]) for j in range(len(slices)))
        order = np.argsort([(-s if descending else s) for s in slices], kind="stable")
        instance = np.empty(len(slices), int)
        instance[order] = np.arange(1, len(slices) + 1)
        file_index = rng.permutation(len(slices)) + 1 if shuffle else instance
        if role in (SeriesRole.MAGNITUDE, SeriesRole.WAVE):
            pixels, extra = acquired_pixels(role, v, f, slices, n_offsets, p.fields.drive_frequency_hz,
                                            header.pixel_spacing_mm, rng)
            extra["rescale_slope"] = None if no_rescale else 1.0
        elif role is SeriesRole.COLOR:
            pixels, extra = np.stack([color_image(s * slope / units) for s in stored]), dict(rescale_slope=None)
        else:
            pixels, extra = (conf_px if role is SeriesRole.CONFIDENCE else stored), dict(elasto)
            if role is SeriesRole.CONFIDENCE and spec.encoding is E.PAIRED_SERIES:
                extra["source_sop_uids"] = out[-1].sop_uids
        syntax = str(ExplicitVR) if role is SeriesRole.COLOR else pick(rng, p.transfer_syntax_mix)
        out.append(PhantomSeries(
            role, desc, number, generate_uid(entropy_srcs=[uid_key, "series", role.value]), sops,
            tuple(int(i) for i in instance), file_names(naming, v, ext, header, desc, number, sops, file_index),
            folder_name(folder_style, number, desc), tuple(slices), pixels, transfer_syntax=syntax, **extra))
    return out


def write_study(study: PhantomStudy, out_dir: Path) -> list[Path]:
    """Write the study's DICOM files to ``out_dir/dicom/<patient_id>/`` and its truth to
    ``out_dir/truth/<patient_id>.npz``; returns every path written (the npz last)."""
    out_dir = Path(out_dir)
    paths = write_datasets(out_dir / "dicom" / study.patient_id, study.datasets())
    truth_path = out_dir / "truth" / f"{study.patient_id}.npz"
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(truth_path, **study.truth.npz_arrays())
    return [*paths, truth_path]
