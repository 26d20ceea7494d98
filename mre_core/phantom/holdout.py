"""Hold-out phantom: an independently written MRE generator to test how the segmentation generalises.

Nothing here is shared with the training phantom (``anatomy``/``fields``/``study``/``writers``/
``physics``/``inversion``/``layouts``): its own anatomy (:mod:`.holdout_anatomy`), its own wave and
inversion model (below) and its own DICOM writer (:mod:`.holdout_dicom`).

Waves and inversion
    A driver patch on the anterior right body wall emits a shear wave at f = 60 Hz. Its phase is
    ω·T(x) with T the first-arrival travel time through the true stiffness (a Dijkstra eikonal
    solve on a 16-neighbour grid, slowness sqrt(ρ/G), ρ = 1000 kg/m³); its amplitude decays with
    the number of wavelengths travelled (loss factor η), geometric spreading and fluid
    (no shear waves in fluid). One to three weaker secondary waves from other wall segments add
    interference. Four phase offsets are "acquired" with phase noise ∝ 1/magnitude (capped like
    wrapped phase). The scanner-side processing is a local frequency estimation (LFE, Knutsson
    lognormal filter bank, ratio of adjacent-octave responses), stiffness = ρ·(f·λ)², computed on
    the acquisition matrix and interpolated to the display matrix, clipped to 0–12 kPa, over the
    whole body section. The confidence criterion: SNR of the first temporal harmonic against the
    noise-only second harmonic, and agreement of the LFE estimate with the phase-gradient
    wavenumber of the band-passed field; the 95 % region is its cleaned, thresholded map.

Expert ROI (truth), by published reading practice: inside the liver, at least 1 cm from the
liver edge, 5 mm from intrahepatic vessels (and cysts) and 1.5 cm from the gallbladder, inside
the 95 % confidence region, one large contiguous ROI per slice, right lobe first, then the left
lobe (the caudate never), empty when under 1 cm². Manual stiffness = mean of the stored map in
the ROI; the patient value is the ROI-area-weighted mean over slices. Sources:
Venkatesh SK, Ehman RL, "Magnetic resonance elastography of liver", Magn Reson Imaging Clin N Am
2014;22(3):433-446; Dzyubak B, Glaser K, Yin M, Talwalkar J, Chen J, Manduca A, Ehman RL, "Automated
liver stiffness measurements with magnetic resonance elastography", J Magn Reson Imaging
2013;38(2):371-379 (ALEC: ROI inside the confidence map, away from the liver edge); Hoodeshenas S,
Yin M, Venkatesh SK, "Magnetic resonance elastography of liver - current update", Top Magn Reson
Imaging 2018;27(5):319-333; the RSNA QIBA "MR Elastography of the Liver" profile (ROIs in the right
lobe away from the liver edge, large vessels and the gallbladder fossa, within the confidence map).
Patients whose exam gives no ROI on any slice (technical failure) are redrawn, as a study cohort
would exclude them; ``cohort.csv`` ``attempts`` counts the draws.
LFE: Knutsson H, Westin CF, Granlund G, ICIP 1994; Manduca A et al., Med Image Anal 2001;5:237-254.

Output (what :func:`mre_core.model.dataset.load_truth` and :mod:`mre_core.model.evaluate` read):
``DIR/dicom/<patient>/<series>/…``, ``DIR/truth/<patient>.npz`` keyed by the SOP Instance UIDs of
the series to analyse (GE pairs: the masked copy), ``DIR/cohort.csv``, ``DIR/slices.csv``; every
study is split "test", style "holdout".
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from mre_core.analysis.staging import PAPER_TABLE, FibrosisStage, stage
from mre_core.phantom.holdout_anatomy import FLUID, NO_SIGNAL, HTissue, render, sample_anatomy

FREQ_HZ = 60.0
RHO = 1000.0
MAX_KPA = 12.0
LAYOUTS = ("zero_fill", "cross_hatch", "paired_series")
#: stage mix of the hold-out cohort (every stage represented)
STAGE_MIX = ((FibrosisStage.F0, 0.22), (FibrosisStage.F1, 0.14), (FibrosisStage.F2, 0.2), (FibrosisStage.F3, 0.18),
             (FibrosisStage.F4, 0.26))
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1), (1, 2), (2, 1), (1, -2), (2, -1))


# ----------------------------------------------------------------------------------------------- waves
def _graph(passable: np.ndarray, cost: np.ndarray, spacing: float) -> tuple[object, np.ndarray]:
    """Undirected 16-neighbour grid graph over ``passable`` pixels; edge weight = length × mean cost."""
    h, w = passable.shape
    idx = -np.ones((h, w), np.int64)
    idx[passable] = np.arange(int(passable.sum()))
    r, c, wt = [], [], []
    for dy, dx in _OFFSETS:
        ys0, ys1 = slice(0, h - dy), slice(dy, h)
        xs0, xs1 = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        a, b = idx[ys0, xs0], idx[ys1, xs1]
        ok = (a >= 0) & (b >= 0)
        length = spacing * float(np.hypot(dy, dx))
        r.append(a[ok])
        c.append(b[ok])
        wt.append(length * 0.5 * (cost[ys0, xs0][ok] + cost[ys1, xs1][ok]))
    n = int(passable.sum())
    g = coo_matrix((np.concatenate(wt), (np.concatenate(r), np.concatenate(c))), shape=(n, n)).tocsr()
    return g, idx


def _geodesic(passable: np.ndarray, cost: np.ndarray, sources: np.ndarray, spacing: float) -> np.ndarray:
    g, idx = _graph(passable, cost, spacing)
    src = idx[sources & passable]
    out = np.full(passable.shape, np.inf)
    if src.size:
        d = dijkstra(g, directed=False, indices=src, min_only=True)
        out[passable] = d
    return out


def _wall_arc(body: np.ndarray, cy: float, cx: float, ang: float, half_width: float, spacing: float) -> np.ndarray:
    """Skin pixels (outer 2 pixels of the body) within an angular window around ``ang`` (image frame)."""
    body = ndi.binary_fill_holes(body)
    skin = body & ~ndi.binary_erosion(body, iterations=2)
    yy, xx = np.nonzero(skin)
    th = np.arctan2(yy - cy, xx - cx)
    dth = np.angle(np.exp(1j * (th - ang)))
    rad = np.hypot(yy - cy, xx - cx) * spacing
    sel = np.abs(dth) * np.maximum(rad, 1) < half_width
    out = np.zeros_like(body)
    out[yy[sel], xx[sel]] = True
    return out


@dataclass(frozen=True)
class Exam:
    """Acquisition quality of one exam (per patient)."""

    driver_angle: float  #: radians in the image frame (0 = image right, π/2 = posterior)
    driver_mm: float
    amp_rad: float  #: phase amplitude under the driver
    eta: float  #: loss factor (amplitude ∝ exp(-π η · wavelengths))
    noise_rad: float  #: phase noise at unit magnitude
    secondaries: tuple[tuple[float, float, float], ...]  #: angle, relative amplitude, phase
    n_offsets: int


def simulate_waves(kpa: np.ndarray, labels: np.ndarray, mag: np.ndarray, body: np.ndarray, spacing: float,
                   exam: Exam, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Phase-offset wave images [4, H, W] (radians, noisy) and the noise-free complex harmonic."""
    fluid = np.isin(labels, FLUID)
    passable = body & ~np.isin(labels, NO_SIGNAL)
    g = np.clip(kpa, 0.3, None) * 1e3
    slow = np.sqrt(RHO / g) * 1e-3  # s per mm
    att = np.pi * exam.eta * FREQ_HZ * slow + 0.12 * fluid  # nepers per mm
    cy, cx = (np.array(body.shape) - 1) / 2.0
    if body.any():
        yy, xx = np.nonzero(body)
        cy, cx = yy.mean(), xx.mean()
    u = np.zeros(body.shape, complex)
    waves = ((exam.driver_angle, 1.0, 0.0, exam.driver_mm),) + tuple((a, r, p, 70.0) for a, r, p in exam.secondaries)
    for ang, rel, ph, width in waves:
        src = _wall_arc(body, cy, cx, ang, width / 2, spacing) & passable
        if not src.any():
            continue
        t = _geodesic(passable, slow, src, spacing)
        n = _geodesic(passable, att, src, spacing)
        r = ndi.distance_transform_edt(~src, sampling=spacing)
        a = rel * exam.amp_rad * np.exp(-n) * (1 + r / 80.0) ** -0.5
        ok = np.isfinite(t) & np.isfinite(n)
        u[ok] += a[ok] * np.exp(1j * (2 * np.pi * FREQ_HZ * t[ok] + ph))
    u[fluid] *= 0.1
    u[~passable] = 0
    theta = 2 * np.pi * np.arange(4) / 4
    sigma = np.minimum(exam.noise_rad / np.maximum(mag, 0.02), 1.8)
    phases = np.real(u[None] * np.exp(-1j * theta)[:, None, None]) + rng.normal(0, 1, (4,) + u.shape) * sigma[None]
    return phases.astype(np.float32), u


def _lognormal_bank(shape: tuple[int, int], spacing: float, centers: np.ndarray) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0], d=spacing)
    fx = np.fft.fftfreq(shape[1], d=spacing)
    f = np.hypot(fy[:, None], fx[None, :])
    f[0, 0] = 1e-9
    return np.stack([np.exp(-np.log(f / c) ** 2 / (2 * np.log(2))) for c in centers])


def invert_lfe(phases: np.ndarray, mask: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """LFE stiffness (kPa) and a confidence score in [0, 1] from phase-offset images."""
    theta = 2 * np.pi * np.arange(phases.shape[0]) / phases.shape[0]
    u = (2.0 / phases.shape[0]) * np.tensordot(np.exp(1j * theta), phases, 1) * mask
    nyq = (phases * ((-1.0) ** np.arange(phases.shape[0]))[:, None, None]).mean(0) * mask
    pad = 24
    up = np.pad(u, pad)
    centers = 1.0 / np.array([12.0, 24.0, 48.0, 96.0, 192.0])  # cycles per mm
    bank = _lognormal_bank(up.shape, spacing, centers)
    q = np.fft.ifft2(np.fft.fft2(up)[None] * bank)[:, pad:-pad, pad:-pad]
    sm = 7.0 / spacing
    m = np.stack([ndi.gaussian_filter(np.abs(qi), sm) for qi in q])
    num = np.zeros(u.shape)
    den = np.full(u.shape, 1e-12)
    for i in range(len(centers) - 1):
        est = np.sqrt(centers[i] * centers[i + 1]) * m[i] / np.maximum(m[i + 1], 1e-12)
        wgt = m[i] * m[i + 1]
        num += wgt * est
        den += wgt
    nu = np.clip(num / den, 1.0 / 300, 1.0 / 8)  # cycles per mm
    kpa = RHO * (FREQ_HZ / (nu * 1e3)) ** 2 / 1e3
    # phase-gradient wavenumber of the band-passed field (consistency check)
    bp = q[1] + q[2] + q[3]
    gy, gx = np.gradient(bp, spacing)
    kx = ndi.gaussian_filter(np.imag(np.conj(bp) * gx), sm)
    ky = ndi.gaussian_filter(np.imag(np.conj(bp) * gy), sm)
    pw = ndi.gaussian_filter(np.abs(bp) ** 2, sm) + 1e-12
    nu_pg = np.hypot(kx, ky) / pw / (2 * np.pi)
    agree = np.abs(np.log(np.maximum(nu_pg, 1e-6) / nu))
    noise = np.sqrt(ndi.gaussian_filter(nyq ** 2, 2 * sm)) * 2.0 + 1e-6
    snr = ndi.gaussian_filter(np.abs(u), sm) / noise
    score = (1 / (1 + np.exp(-(snr - 5.0) * 1.2))) * (1 / (1 + np.exp((agree - 0.35) * 12)))
    return ndi.gaussian_filter(kpa, 3.0 / spacing), ndi.gaussian_filter(score * mask, 4.0 / spacing)


def _resize(a: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    return ndi.zoom(a, (shape[0] / a.shape[0], shape[1] / a.shape[1]), order=order, mode="nearest", grid_mode=True)


def _disk(radius_px: float) -> np.ndarray:
    r = max(1, round(radius_px))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return xx ** 2 + yy ** 2 <= radius_px ** 2 + 0.5


def clean_confidence(score: np.ndarray, body: np.ndarray, no_signal: np.ndarray, spacing: float) -> np.ndarray:
    conf = (score > 0.5) & body & ~no_signal
    conf = ndi.binary_opening(conf, _disk(3.0 / spacing))
    lab, n = ndi.label(conf)
    if n:
        area = ndi.sum(conf, lab, np.arange(1, n + 1)) * spacing ** 2
        conf = np.isin(lab, 1 + np.nonzero(area >= 300.0)[0])
    return conf & body & ~no_signal


def expert_roi(liver: np.ndarray, right: np.ndarray, left: np.ndarray, vessels: np.ndarray, gb: np.ndarray,
               conf: np.ndarray, parenchyma: np.ndarray, spacing: float) -> tuple[np.ndarray, str]:
    """One contiguous ROI by the published reading rule (see module docstring)."""
    edge = ndi.distance_transform_edt(liver, sampling=spacing) >= 10.0
    away_v = ndi.distance_transform_edt(~vessels, sampling=spacing) >= 5.0 if vessels.any() else np.ones_like(liver)
    away_g = ndi.distance_transform_edt(~gb, sampling=spacing) >= 15.0 if gb.any() else np.ones_like(liver)
    cand = edge & away_v & away_g & conf & parenchyma
    cand = ndi.binary_opening(cand, _disk(3.0 / spacing))
    min_px = 100.0 / spacing ** 2
    for lobe, name in ((right, "right"), (left, "left")):
        lab, n = ndi.label(cand & lobe)
        if n:
            sizes = ndi.sum(np.ones_like(lab), lab, np.arange(1, n + 1))
            best = int(np.argmax(sizes))
            if sizes[best] >= min_px:
                return lab == best + 1, name
    return np.zeros_like(liver), "none"


# ----------------------------------------------------------------------------------------------- one patient
@dataclass
class _Slice:
    z: float
    labels: np.ndarray
    true_kpa: np.ndarray
    liver: np.ndarray
    roi: np.ndarray
    lobe: str
    conf: np.ndarray
    stored: np.ndarray  #: full stiffness map as stored (uint16; kPa×100 Siemens, Pa GE)
    measured: np.ndarray  #: decoded stored values, kPa
    signal: np.ndarray
    body: np.ndarray
    mag: np.ndarray
    phases: np.ndarray


def _grid(h: int, w: int, sx: float, sy: float, bx: float, by: float) -> tuple[np.ndarray, np.ndarray]:
    r, c = np.mgrid[0:h, 0:w].astype(float)
    return (c - (w - 1) / 2) * sx - bx, (r - (h - 1) / 2) * sy - by


def _simulate(rng: np.random.Generator, stg: FibrosisStage, vendor: str) -> dict:
    u = rng.uniform
    lo, hi = PAPER_TABLE.stage_range_kpa(stg, ceiling_kpa=8.5, floor_kpa=1.7)
    liver_kpa = float(u(lo, hi - 0.01))
    an = sample_anatomy(rng, liver_kpa, int(stg))
    fovs = [f for f in (300, 320, 340, 360, 380, 400, 420, 440, 460, 480) if f >= 2 * an.a + 30] or [480]
    fov = float(fovs[min(len(fovs) - 1, int(rng.integers(0, 3)))])
    cols = int(rng.choice([c for c in (128, 160, 192, 224, 256) if 1.2 <= fov / c <= 3.5]))
    ps = fov / cols
    need = 2 * max(an.b_ant, an.b_post) + 40
    rows = int(min(cols, max(8 * np.ceil(need / ps / 8), 8 * round(cols * float(rng.choice([1, 0.875, 0.8, 0.75])) / 8))))
    acq_c = int(rng.choice([c for c in (64, 72, 80, 96, 112, 128) if c <= cols]))
    acq_r = round(acq_c * rows / cols)
    pa = fov / acq_c
    n = int(rng.choice([4, 5], p=[0.4, 0.6]))
    gap = float(rng.choice([5, 6, 7, 8, 10]))
    thick = float(rng.choice([t for t in (5, 6, 8, 10) if t <= gap]))
    zs = u(-5, 30) + (np.arange(n) - (n - 1) / 2) * gap
    bx, by = u(-10, 10, 2)
    poor = u() < 0.12
    exam = Exam(float(u(-2.65, -2.05)), float(u(70, 110)), float(u(1.5, 2.5)), float(u(0.05, 0.10)),
                float(u(0.028, 0.07) * (1.8 if poor else 1.0)),
                tuple((float(u(-np.pi, np.pi)), float(u(0.1, 0.4)), float(u(0, 2 * np.pi)))
                      for _ in range(int(rng.integers(1, 4)))), int(rng.choice([4, 1], p=[0.7, 0.3])))
    scale = 100.0 if vendor == "siemens" else 1000.0
    slices = []
    for z in zs:
        s = render(an, *_grid(rows, cols, ps, ps, bx, by), float(z), ps, rng)
        sa = render(an, *_grid(acq_r, acq_c, pa, rows * ps / acq_r, bx, by), float(z), pa, rng)
        ex = Exam(exam.driver_angle + float(u(-0.08, 0.08)), exam.driver_mm, exam.amp_rad * float(u(0.85, 1.1)),
                  exam.eta, exam.noise_rad, exam.secondaries, exam.n_offsets)
        ph, _ = simulate_waves(sa.true_kpa, sa.labels, sa.magnitude, sa.body, pa, ex, rng)
        sig_a = sa.body & (sa.magnitude > 0.06)
        kmeas, score = invert_lfe(ph, sig_a, pa)
        signal = (_resize(sig_a.astype(float), (rows, cols), 1) > 0.5) & s.body
        km = np.clip(_resize(kmeas, (rows, cols), 3), 0, MAX_KPA)
        stored = np.where(signal, np.clip(np.round(km * scale), 1, MAX_KPA * scale), 0).astype(np.uint16)
        measured = (stored / scale).astype(np.float32)
        conf = clean_confidence(_resize(score, (rows, cols), 1), s.body, ~signal, ps)
        roi, lobe = expert_roi(s.liver, s.right_lobe, s.left_lobe, s.vessels, s.gallbladder, conf,
                               s.labels == HTissue.LIVER, ps)
        mag = np.clip(_resize(sa.magnitude, (rows, cols), 3), 0, None) * 1400 + np.abs(rng.normal(0, 12, (rows, cols)))
        phd = np.stack([_resize(p, (rows, cols), 1) for p in ph])
        slices.append(_Slice(float(z), s.labels, np.where(signal, s.true_kpa, 0).astype(np.float32), s.liver, roi,
                             lobe, conf, stored, measured, signal, s.body, mag, phd))
    geo = {"fov": fov, "rows": rows, "cols": cols, "ps": ps, "acq": (acq_r, acq_c), "gap": gap, "thick": thick,
           "bx": bx, "by": by}
    return {"an": an, "liver_kpa": liver_kpa, "slices": slices, "geo": geo, "exam": exam}


def _plan(seed: int, n: int) -> list[tuple[FibrosisStage, str]]:
    """Stages in proportion to ``STAGE_MIX`` (largest remainder, shuffled); layouts cycle in a seeded order."""
    rng = np.random.default_rng([int(seed), 0x484F])
    w = np.array([p for _, p in STAGE_MIX])
    quota = w / w.sum() * n
    counts = np.floor(quota).astype(int)
    counts[np.argsort(-(quota - counts), kind="stable")[: n - counts.sum()]] += 1
    stages = [s for (s, _), c in zip(STAGE_MIX, counts) for _ in range(c)]
    stages = [stages[i] for i in rng.permutation(n)]
    order = [LAYOUTS[i] for i in rng.permutation(len(LAYOUTS))]
    return [(stages[i], order[i % len(order)]) for i in range(n)]


def _patient(job: tuple[Path, int, int, FibrosisStage, str]) -> tuple[dict, list[dict]]:
    """Simulate (retrying until one slice has an expert ROI), write DICOM and truth; the CSV rows."""
    from mre_core.phantom.holdout_dicom import write_npz, write_study

    out_dir, seed, index, stg, layout = job
    pid = f"HO{index + 1:04d}"
    vendor = "ge" if layout == "paired_series" else "siemens"
    for attempt in range(8):
        rng = np.random.default_rng([seed, index, attempt, 0x4D5245])
        sim = _simulate(rng, stg, vendor)
        if any(s.roi.any() for s in sim["slices"]):
            break
    sl = sim["slices"]
    info = write_study(out_dir, seed, index, pid, layout, sim, rng)
    per = np.array([s.measured[s.roi].mean() if s.roi.any() else np.nan for s in sl], np.float32)
    roi_px = np.concatenate([s.measured[s.roi] for s in sl])
    manual = float(roi_px.mean()) if roi_px.size else float("nan")
    write_npz(out_dir / "truth" / f"{pid}.npz", {
        "sop_uids": np.array(info["sop_uids"]), "liver_mask": np.stack([s.liver for s in sl]),
        "expert_roi": np.stack([s.roi for s in sl]), "true_kpa": np.stack([s.true_kpa for s in sl]),
        "confidence": np.stack([s.conf for s in sl]), "manual_kpa": per,
        "measured_kpa": np.stack([s.measured for s in sl]), "tissue_labels": np.stack([s.labels for s in sl]),
        "body_mask": np.stack([s.body for s in sl]), "slice_z_mm": np.array([s.z for s in sl])})
    body = sum(int(s.body.sum()) for s in sl)
    liver = sum(int(s.liver.sum()) for s in sl)
    an, geo = sim["an"], sim["geo"]
    row = {"patient_id": pid, "study_uid": info["study_uid"], "series_uid": info["series_uid"], "split": "test",
           "vendor": vendor, "encoding": layout, "rows": geo["rows"], "cols": geo["cols"], "n_slices": len(sl),
           "true_kpa": round(sim["liver_kpa"], 4), "true_stage": stage(sim["liver_kpa"], PAPER_TABLE).stage.label,
           "manual_kpa": round(manual, 4), "manual_stage": stage(manual, PAPER_TABLE).stage.label,
           "age": info["age"], "sex": info["sex"], "style": "holdout", "hatch_stored": info["hatch_stored"],
           "rescale_slope": 1.0, "liver_confidence_fraction": round(sum(int((s.conf & s.liver).sum()) for s in sl)
                                                                    / max(liver, 1), 4),
           "body_confidence_fraction": round(sum(int(s.conf.sum()) for s in sl) / max(body, 1), 4),
           "manual_kpa_slice_mean": round(float(np.nanmean(per)), 4), "pixel_spacing_mm": round(geo["ps"], 4),
           "acq_matrix": f"{geo['acq'][0]}x{geo['acq'][1]}", "liver_variant": an.variant,
           "ascites": an.ascites_mm > 0, "splenomegaly": an.splenomegaly, "deidentified": info["deidentified"],
           "attempts": attempt + 1}
    rows = [{"patient_id": pid, "sop_uid": info["sop_uids"][k], "slice_index": k,
             "manual_kpa": round(float(per[k]), 4) if np.isfinite(per[k]) else np.nan,
             "expert_roi_pixels": int(s.roi.sum()), "liver_pixels": int(s.liver.sum()),
             "confidence_fraction_of_liver": round(float((s.conf & s.liver).sum() / max(int(s.liver.sum()), 1)), 4),
             "roi_lobe": s.lobe, "style": "holdout"} for k, s in enumerate(sl)]
    return row, rows


def generate_holdout_cohort(out_dir: Path, n_patients: int, seed: int = 0, workers: int | None = None) -> pd.DataFrame:
    """Write a hold-out cohort (DICOM, truth, ``cohort.csv``, ``slices.csv``); returns the cohort table.

    Deterministic for a seed (same seed → same bytes); ``workers`` processes (default: CPU count,
    at most 4; fewer than 4 patients run in-process).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(out_dir, int(seed), i, stg, layout) for i, (stg, layout) in enumerate(_plan(seed, n_patients))]
    workers = workers or min(4, os.cpu_count() or 1)
    if workers > 1 and len(jobs) >= 4:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_patient, jobs))
    else:
        results = [_patient(j) for j in jobs]
    cohort = pd.DataFrame([r for r, _ in results])
    cohort.to_csv(out_dir / "cohort.csv", index=False)
    pd.DataFrame([row for _, rows in results for row in rows]).to_csv(out_dir / "slices.csv", index=False)
    return cohort
