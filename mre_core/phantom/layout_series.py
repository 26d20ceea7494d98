"""The series of each documented vendor layout, as pixels and header items (used by :mod:`mre_core.phantom.layouts`).

One builder per layout (``ge_mrtouch``, ``_mmdi``, ``siemens_ve11``, ``siemens_xa_enhanced``, ``philips``,
``canon``) turns one simulated exam into its series (raw, derived, colour, wave, confidence) with the values each
vendor stores; the facts and their sources are in :data:`mre_core.phantom.layouts.FACTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from mre_core.analysis.staging import PAPER_TABLE, FibrosisStage
from mre_core.phantom import anatomy as pa
from mre_core.phantom import fields as pf
from mre_core.phantom.layout_headers import (
    Exam,
    LayoutSeries,
)
from mre_core.phantom.study import PhantomParams
from mre_core.phantom.writers import color_image, magnitude_image, wave_image

PI_MRAD = 3141


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


def simulate_exam(rng: np.random.Generator, n: int, rows: int, st: FibrosisStage, image_fraction: float | None,
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


def by_slice(s: LayoutSeries, exam: Exam) -> tuple[str, ...]:
    uids = s.sop_uids(exam)
    return tuple(uids[s.slices.index(k)] for k in range(len(exam.z_mm)))


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


def mmdi(rng: np.random.Generator, sim: dict, exam: Exam, site: str) -> Built:
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
