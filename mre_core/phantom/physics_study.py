"""The physics phantom style: elastograms are inversion outputs of simulated shear waves.

Per slice: the tissue labels and TRUE stiffness of :mod:`.anatomy` / :mod:`.fields` (with the domain
randomisation of :mod:`.randomise`), a 60 Hz time-harmonic wave solve through the true stiffness from a
driver on the anterior right body wall (:func:`.physics.solve_displacement`, :func:`.physics.anterior_driver`),
an MR acquisition of four phase offsets on a truncated k-space (the acquired matrix, 64-256, zero-filled
back to the stored grid, with complex noise and a reconstruction window; a share
``RandomisationParams.stored_acquired_probability`` of studies is then stored at the acquired matrix itself, truth
included, as scanners that do not interpolate store it: :func:`stored_shape`), and the scanner-side inversion
(:func:`.inversion.invert`: local algebraic Helmholtz inversion and its 0-1000 confidence map). The stored
stiffness map is the inversion output over the whole body section; the 95 % confidence region is
``confidence >= 950``; the magnitude and wave series are the simulated magnitude and phase images. Studies
are :class:`~mre_core.phantom.study.PhantomStudy` objects written by the same
:func:`~mre_core.phantom.study.write_study` (DICOM layouts, ``truth/*.npz`` and ``cohort.csv`` unchanged).

The expert ROI follows published practice (:func:`expert_roi`). Fluid (ascites) is taken out of the wave
domain: it has no shear stiffness, so it carries no shear wave and decouples what lies behind it.

``python -m mre_core phantom --style physics --out DIR`` writes a cohort (:func:`generate_physics_cohort`).
A study is a pure function of ``(seed, patient_index, spec, params)``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy import ndimage as ndi

from mre_core.analysis.staging import PAPER_TABLE
from mre_core.phantom import anatomy as pa
from mre_core.phantom import fields as pf
from mre_core.phantom import randomise as rz
from mre_core.phantom import study as st
from mre_core.phantom.inversion import invert
from mre_core.phantom.physics import PhysicsParams, anterior_driver, solve_displacement
from mre_core.phantom.writers import SeriesRole

__all__ = ["PhysicsStudy", "generate_physics_study", "generate_physics_cohort", "expert_roi", "acquire_kspace",
           "RandomisationParams"]

RandomisationParams = rz.RandomisationParams
T = pa.Tissue
COLS = 256
#: noise-free magnitude (T2*-weighted MRE GRE/EPI, unit tissue ~1) per Tissue; fat is scaled by fat suppression
_INTENSITY = np.array([0, 1.0, 0.35, 0.9, 0.45, 0.7, 0.8, 0.55, 0.6, 0.5, 0.02, 0.2, 0.7], np.float32)
_FLUID_INTENSITY, _FLUID_KPA = 0.85, 0.1
MAX_DRIVER_UM = 35.0  #: x 0.08 rad/um = 2.8 rad: the phase stays unwrapped


@dataclass(frozen=True, eq=False)
class PhysicsStudy(st.PhantomStudy):
    """A :class:`PhantomStudy` with the patient's randomisation and the simulation cost."""

    draw: rz.PatientDraw | None = None
    simulation_seconds: float = 0.0  #: wall time of anatomy + wave solves + acquisition + inversion (not stored)

    def datasets(self) -> list:
        items = super().datasets()
        if self.draw is not None:  # the acquired matrix, as scanners record it
            ar, ac = self.draw.acq_shape(self.header.rows, self.header.cols)
            for _, ds in items:
                ds.AcquisitionMatrix = [ac, 0, 0, ar]
        return items

    def cohort_row(self) -> dict[str, Any]:
        row = super().cohort_row()
        if self.draw is not None:
            d = self.draw
            row.update(style="physics", fov_mm=round(d.fov_mm, 1), acq_matrix=d.acq_cols,
                       driver_amplitude_um=round(d.driver_amplitude_um, 2), loss_factor=round(d.loss_factor, 3),
                       snr=round(d.snr, 1), ascites=int(d.ascites), left_lobe=d.left_lobe, resection=int(d.resection),
                       stored_at_acquired=int(d.stored_at_acquired))
        return row


def acquire_kspace(displacement_um: np.ndarray, intensity: np.ndarray, rng: np.random.Generator,
                   acq_shape: tuple[int, int], snr: float, encoding_rad_per_um: float = 0.08,
                   window: str = "none", tukey_alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Four phase-offset images acquired on a truncated k-space and zero-filled to the input grid.

    Each offset k is the complex image ``I exp(i s Re(u e^{i 2 pi k/4}))``; its k-space is cut to the
    central ``acq_shape`` (the acquired matrix), complex Gaussian noise (std ``1/snr`` per channel per
    acquired voxel) is added, a reconstruction window (``none``/``hamming``/``tukey``) applied, and it is
    zero-padded back (sinc interpolation: blur and Gibbs ringing as on a scanner).

    Returns wave images float32[4, H, W] (phase, rad) and the magnitude float32[H, W] (mean over offsets).
    """
    h, w = intensity.shape
    ar, ac = min(acq_shape[0], h), min(acq_shape[1], w)
    r0, c0 = h // 2 - ar // 2, w // 2 - ac // 2
    win = np.outer(_window(ar, window, tukey_alpha), _window(ac, window, tukey_alpha))
    gain = math.sqrt(ar * ac / (h * w))
    theta = 2 * np.pi * np.arange(4) / 4
    waves, mags = [], []
    for t in theta:
        z = intensity * np.exp(1j * encoding_rad_per_um * np.real(displacement_um * np.exp(1j * t)))
        k = np.fft.fftshift(np.fft.fft2(z, norm="ortho"))[r0:r0 + ar, c0:c0 + ac] * gain
        k = (k + (rng.standard_normal((ar, ac)) + 1j * rng.standard_normal((ar, ac))) / snr) * win
        full = np.zeros((h, w), np.complex128)
        full[r0:r0 + ar, c0:c0 + ac] = k / gain
        img = np.fft.ifft2(np.fft.ifftshift(full), norm="ortho")
        waves.append(np.angle(img))
        mags.append(np.abs(img))
    return np.stack(waves).astype(np.float32), np.mean(mags, axis=0).astype(np.float32)


def _window(n: int, kind: str, alpha: float) -> np.ndarray:
    x = (np.arange(n) + 0.5) / n  # 0..1 across the acquired k-space
    if kind == "hamming":
        return 0.54 - 0.46 * np.cos(2 * np.pi * x)
    if kind == "tukey":
        edge = np.minimum(x, 1 - x) / max(alpha / 2, 1e-6)
        return np.where(edge >= 1, 1.0, 0.5 - 0.5 * np.cos(np.pi * np.clip(edge, 0, 1)))
    return np.ones(n)


def expert_roi(labels: np.ndarray, right_lobe: np.ndarray, fissure: np.ndarray, confidence: np.ndarray,
               spacing_mm: float, d: rz.PatientDraw) -> np.ndarray:
    """The ROI an expert draws by published practice (bool; may be empty).

    Rules (Venkatesh SK, Ehman RL. Magnetic resonance elastography of liver. Magn Reson Imaging Clin N Am
    2014;22:433-446; RSNA QIBA Profile "MR Elastography of the Liver" (stage 1/2, 2018-2022): ROI in the
    right lobe, well inside the liver, inside the 95 % confidence region, avoiding large vessels, the
    gallbladder fossa, fissures and the liver edge; Dzyubak B, et al. JMRI 2013;38:371-379 and JMRI
    2016;43:1055-1063 (ALEC): automated ROI = liver eroded ~1 cm from its edge, minus vessels, inside the
    confidence mask):

    * inside the liver outline, at least ``d.roi_edge_mm`` (9-12 mm, ~1 cm) from its edge (distance transform
      in mm);
    * at least ``d.roi_vessel_mm`` (5-7 mm) from intrahepatic and great vessels;
    * at least ``d.roi_gallbladder_mm`` (10-15 mm) from the gallbladder (its fossa) and
      ``d.roi_fissure_mm`` (8-12 mm) from the right/left lobe fissure;
    * inside the 95 % confidence region (eroded by 0-2 mm: readers stay off its ragged edge);
    * outlines smoothed (opening with a ~3 mm disk, so the result stays inside the eligible area);
    * ONE connected ROI: the largest eligible piece in the right lobe; the left lobe only when the right
      lobe has less than ``d.roi_min_area_mm2`` (1 cm^2) eligible; empty when neither has 1 cm^2.
    """
    sp = spacing_mm
    liver = pa.liver_mask(labels)
    ok = liver & (ndi.distance_transform_edt(liver) * sp >= d.roi_edge_mm)
    for mask, margin in ((np.isin(labels, (T.LIVER_VESSEL, T.GREAT_VESSEL)), d.roi_vessel_mm),
                         (labels == T.GALLBLADDER, d.roi_gallbladder_mm), (fissure, d.roi_fissure_mm)):
        if mask.any():
            ok &= ndi.distance_transform_edt(~mask) * sp >= margin
    ok &= confidence & (ndi.distance_transform_edt(confidence) * sp > d.roi_confidence_erosion_mm)
    r = max(1, int(round(1.5 / sp)))
    disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r
    ok = ndi.binary_opening(ok, disk)
    min_px = d.roi_min_area_mm2 / (sp * sp)
    for part in (ok & right_lobe, ok & ~right_lobe):
        comp, n = ndi.label(part)
        if n:
            sizes = np.bincount(comp.ravel())[1:]
            if sizes.max() >= min_px:
                return comp == int(np.argmax(sizes)) + 1
    return np.zeros_like(ok)


def confidence_region(confidence_permille: np.ndarray, body: np.ndarray, coverage: float,
                      floor_permille: float = 300.0) -> np.ndarray:
    """The 95 % confidence region of a study (bool, like ``confidence_permille``).

    The vendor's confidence scale is recalibrated per study, ``C' = 1000 (C / 1000)^g``, with ``g`` chosen so
    that ``C' >= 950`` covers ``coverage`` of the body section over all slices; ``g`` is capped so that the
    region never reaches below a raw confidence of ``floor_permille`` (weak waves keep a small region).
    Returns ``C' >= 950``, i.e. ``C >= t`` with ``t = 1000 (0.95)^(1/g)``.
    """
    values = confidence_permille[body]
    if not values.size:
        return np.zeros(confidence_permille.shape, bool)
    t = float(np.clip(np.quantile(values, 1 - coverage), floor_permille, 999.0))
    gamma = math.log(0.95) / math.log(t / 1000.0)
    calibrated = 1000.0 * (np.clip(confidence_permille, 0, 1000) / 1000.0) ** gamma
    return (calibrated >= 950.0 - 1e-6) & body & (confidence_permille > 0)


@dataclass
class _Slice:
    labels: np.ndarray
    right: np.ndarray
    fissure: np.ndarray
    fluid: np.ndarray
    true: np.ndarray
    u: np.ndarray  #: displacement for 1 um driver amplitude (linear in the amplitude)
    solve_body: np.ndarray
    driver: np.ndarray
    intensity: np.ndarray


def _render(rng: np.random.Generator, spec: st.StudySpec, d: rz.PatientDraw, rp: rz.RandomisationParams,
            liver_kpa: float) -> tuple[list[_Slice], pa.FieldParams]:
    """Anatomy, true stiffness and the wave solve of every slice."""
    rows, n = spec.rows, spec.n_slices
    fp0 = spec.params.fields
    anat = pa.sample_anatomy(rng, (rows, COLS), fp0, cirrhotic=spec.stage is st.F.F4)
    anat = rz.modify_anatomy(anat, d)
    fov = rz.choose_fov(rng, anat, rows, rp)
    sp = fov / COLS
    fp = replace(fp0, pixel_spacing_mm=sp, liver_heterogeneity=d.liver_heterogeneity)
    anat = replace(anat, shape=(rows, COLS), spacing_mm=sp)
    lut = pf.tissue_kpa_table(rng, fp)
    levels = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
    patient_field = rz.warp_field(rng, (rows, COLS), sp, d.warp_sd_mm, d.warp_scale_mm)
    raw = [pa.slice_labels(anat, float(level), rng) for level in levels]
    resect = rz.resection_offset(pa.liver_mask(raw[n // 2]), sp, d) if d.resection else math.inf
    fat_level = 0.3 if d.fat_suppressed else 1.0
    pp = PhysicsParams(loss_factor=d.loss_factor, driver_amplitude_um=1.0, driver_phase_rad=d.driver_phase_rad)
    out = []
    for lab, level in zip(raw, levels):
        fld = patient_field + rz.warp_field(rng, lab.shape, sp, rp.slice_warp_sd_mm, d.warp_scale_mm)
        labels, right, fissure, fluid = rz.decorate_slice(lab, anat, d, float(level), fld, resect)
        true = pf.true_stiffness_kpa(labels, liver_kpa, lut, rng, fp)
        true[fluid] = _FLUID_KPA
        solve_body = (labels != T.BACKGROUND) & (labels != T.GAS) & ~fluid
        driver = anterior_driver(solve_body, "right", d.driver_width_mm, sp, 3.0, d.driver_center_fraction)
        u = solve_displacement(true, solve_body, driver, sp, pp)
        out.append(_Slice(labels, right, fissure, fluid, true, u, solve_body, driver,
                          _intensity(labels, fluid, d, fat_level, rng, sp)))
    return out, fp


def _intensity(labels: np.ndarray, fluid: np.ndarray, d: rz.PatientDraw, fat_level: float,
               rng: np.random.Generator, sp: float) -> np.ndarray:
    """Noise-free magnitude: tissue signal, fat suppression, iron, coil shading, a smooth bias field."""
    table = _INTENSITY.copy()
    table[[T.FAT, T.VISCERA]] *= fat_level
    if d.iron_overload:
        table[[T.LIVER, T.LIVER_VESSEL]] *= 0.25
    img = table[labels]
    img[fluid] = _FLUID_INTENSITY
    depth = ndi.distance_transform_edt(labels != T.BACKGROUND) * sp
    img = img * (1 + 0.6 * np.exp(-depth / 50.0)) * (1 + 0.1 * pa.smooth_field(rng, labels.shape, 45.0 / sp))
    return ndi.gaussian_filter(img, 0.6).astype(np.float64)


def _measure(sl: _Slice, z_mm: float, d: rz.PatientDraw, rng: np.random.Generator, rows: int,
             sp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Acquisition + inversion of one slice ``z_mm`` off the driver's level: (kPa, per mille, waves, magnitude)."""
    amp = d.driver_amplitude_um * math.exp(-abs(z_mm) / d.driver_z_decay_mm)
    wave, mag = acquire_kspace(sl.u * amp, sl.intensity, rng, d.acq_shape(rows, COLS), d.snr,
                               window=d.kspace_window, tukey_alpha=d.tukey_alpha)
    inv_body = (sl.labels != T.BACKGROUND) & (sl.labels != T.GAS)
    inv = invert(wave, inv_body, sp, lowpass_sigma_mm=d.lowpass_sigma_mm, lowcut_sigma_mm=d.lowcut_sigma_mm,
                 window_sigma_mm=d.window_sigma_mm, confidence_snr_knee=d.confidence_snr_knee,
                 confidence_fit_power=d.confidence_fit_power)
    return inv.stiffness_kpa, inv.confidence_permille, wave, mag


def generate_physics_study(seed_or_rng: int | np.random.Generator, patient_index: int, spec: st.StudySpec,
                           params: rz.RandomisationParams | None = None) -> PhysicsStudy:
    """One physics-style study (pure function of ``(seed, patient_index, spec, params)``).

    ``spec`` gives the vendor, encoding, stage, slices and rows as for :func:`~.study.generate_study`;
    everything else (FOV, acquired matrix, anatomy, driver, damping, SNR, inversion, ROI margins) is drawn
    from ``params`` (default :class:`RandomisationParams`). The header's pixel spacing is FOV / 256 (FOV / the
    acquired columns for a study stored at its acquired matrix); the returned study's
    ``spec.params.fields.pixel_spacing_mm`` says the same.
    """
    rp = params or rz.RandomisationParams()
    rng = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(
        [int(seed_or_rng), 5, int(patient_index)])
    p = spec.params
    uid_key = ":".join(str(v) for v in (int(rng.integers(2**62)), "physics", spec.vendor, spec.encoding.value,
                                         int(spec.stage), spec.n_slices, spec.rows, spec.liver_kpa))
    liver_kpa = spec.liver_kpa
    if liver_kpa is None:
        liver_kpa = float(rng.uniform(*PAPER_TABLE.stage_range_kpa(spec.stage, p.kpa_ceiling, p.kpa_floor)))
    d = rz.sample_draw(rng, rp, cirrhotic=spec.stage is st.F.F4)
    t0 = time.perf_counter()
    slices, fp = _render(rng, spec, d, rp, liver_kpa)
    sp = fp.pixel_spacing_mm
    d = replace(d, fov_mm=sp * COLS)
    spec = replace(spec, params=replace(p, fields=fp))
    header = st._sample_header(rng, spec, patient_index, uid_key)
    n = spec.n_slices
    z_rel = (np.arange(n) - rng.uniform(0.3, 0.7) * (n - 1)) * header.slice_spacing_mm  # driver level at 0
    amplitude, snr, floor = d.driver_amplitude_um, d.snr, rp.confidence_floor_permille
    for _ in range(4):  # a study with no ROI at all is repeated: firmer driver contact, more averages
        dd = replace(d, driver_amplitude_um=amplitude, snr=snr)
        meas = [_measure(sl, float(z), dd, rng, spec.rows, sp) for sl, z in zip(slices, z_rel)]
        conf = confidence_region(np.stack([m[1] for m in meas]), np.stack([sl.labels > 0 for sl in slices]),
                                 d.confidence_coverage, floor)
        rois = np.stack([expert_roi(sl.labels, sl.right, sl.fissure, c, sp, d) for sl, c in zip(slices, conf)])
        if rois.any():
            break
        amplitude, snr, floor = min(amplitude * 1.25, MAX_DRIVER_UM), snr * 1.5, floor * 0.7
    d = dd
    if d.stored_at_acquired:  # the scanner stores what it acquired: everything, truth included, on that grid
        shape = stored_shape(d, spec.rows)
        slices = [_on_grid(sl, shape) for sl in slices]
        meas = [(_area(m[0], shape), _area(m[1], shape), np.stack([_area(w, shape) for w in m[2]]), _area(m[3], shape))
                for m in meas]
        conf = np.stack([_nearest(c, shape) for c in conf])
        sp = sp * COLS / shape[1]
        rois = np.stack([expert_roi(sl.labels, sl.right, sl.fissure, c, sp, d) for sl, c in zip(slices, conf)])
        fp = replace(fp, pixel_spacing_mm=sp)
        spec = replace(spec, params=replace(p, fields=fp))
        x0, y0 = header.origin_xy_mm
        old_sp = header.pixel_spacing_mm
        header = replace(header, rows=shape[0], cols=shape[1], pixel_spacing_mm=sp,
                         origin_xy_mm=(x0 + 0.5 * (sp - old_sp), y0 + 0.5 * (sp - old_sp)))
    seconds = time.perf_counter() - t0
    est = np.stack([m[0] for m in meas])
    labels = np.stack([sl.labels for sl in slices])
    units, max_stored = st.UNITS_PER_KPA[spec.vendor], (4095 if spec.vendor == "siemens" else 65535)
    slope = 2.0 if rng.uniform() < p.slope2_probability else 1.0
    stored = np.clip(np.rint(est * units / slope), 0, max_stored - 1).astype(np.uint16)
    stored[(est > 0) & (stored == 0)] = 1
    hatch_stored = None
    if spec.encoding is st.E.CROSS_HATCH:
        hatch_stored = min(int(round(int(rng.choice(p.hatch_values)) / slope)), max_stored)
        stored[stored == hatch_stored] -= 1
    conf_px = st._encode_confidence(rng, stored, labels != T.BACKGROUND, conf, spec, hatch_stored)
    manual = np.array([stored[i][rois[i]].mean() * slope / units if rois[i].any() else np.nan
                       for i in range(n)], np.float32)
    amp = np.stack([np.abs(sl.u) / max(float(np.abs(sl.u).max()), 1e-12) for sl in slices]).astype(np.float32)
    f = dict(labels=labels, true=np.stack([sl.true for sl in slices]), amp=amp,
             driver=np.array(_driver_xy(slices[n // 2].driver, sp)))
    series = st._make_series(rng, spec, header, uid_key, f, stored, conf_px, slope)
    series = [_with_simulated_pixels(s, spec.vendor, meas) for s in series]
    conf_series = next(s for s in series if s.role is SeriesRole.CONFIDENCE)
    truth = st.StudyTruth(conf_series.sop_uids, pa.liver_mask(labels), rois, f["true"], conf, labels, manual)
    times = tuple(st._add_minutes(header.study_time, 2 + 3 * k) for k in range(len(series)))
    return PhysicsStudy(spec, header, tuple(series), times, truth, liver_kpa, hatch_stored, draw=d,
                        simulation_seconds=seconds)


def stored_shape(d: rz.PatientDraw, rows: int) -> tuple[int, int]:
    """(rows, cols) of a study stored at its acquired matrix: the acquired columns, square pixels over the
    same field of view (the phase direction is interpolated to them, as scanners do).

    >>> from dataclasses import replace
    >>> d = rz.sample_draw(np.random.default_rng(0), rz.RandomisationParams(), False)
    >>> stored_shape(replace(d, acq_cols=96), 204)
    (76, 96)
    """
    cols = int(min(COLS, d.acq_cols))
    return max(8, int(round(rows * cols / COLS))), cols


def _area(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``img`` averaged onto ``shape`` (rows, cols): area-weighted, as a coarser voxel averages its tissue."""
    if np.iscomplexobj(img):
        return _area(img.real, shape) + 1j * _area(img.imag, shape)
    out = cv2.resize(np.asarray(img, np.float64), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return out.astype(img.dtype)


def _nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels or a mask on ``shape`` by nearest neighbour (dtype kept)."""
    out = cv2.resize(np.asarray(mask, np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return out.astype(mask.dtype)


def _on_grid(sl: _Slice, shape: tuple[int, int]) -> _Slice:
    """One slice's anatomy, true stiffness and wave field on the stored grid ``shape``."""
    return _Slice(_nearest(sl.labels, shape), _nearest(sl.right, shape), _nearest(sl.fissure, shape),
                  _nearest(sl.fluid, shape), _area(sl.true, shape), _area(sl.u, shape),
                  _nearest(sl.solve_body, shape), _nearest(sl.driver, shape), _area(sl.intensity, shape))


def _driver_xy(driver: np.ndarray, sp: float) -> tuple[float, float]:
    x, y = pa.mm_grid(driver.shape, sp)
    return (float(x[driver].mean()), float(y[driver].mean())) if driver.any() else (0.0, 0.0)


def _with_simulated_pixels(s, vendor: str, meas: list) -> Any:
    """Magnitude and wave series carry the simulated images (stored like the legacy writer stores them)."""
    if s.role is SeriesRole.MAGNITUDE:
        mag = np.stack([m[3] for m in meas])
        return replace(s, pixels=np.clip(np.rint(mag * 700.0), 0, 4095).astype(np.uint16))
    if s.role is SeriesRole.WAVE:
        per = len(s.slice_index) // max(len(meas), 1)
        phase = np.stack([meas[i][2][j % per * (4 // per)] for j, i in enumerate(s.slice_index)]) / np.pi
        if vendor == "siemens":
            return replace(s, pixels=np.clip(np.rint(2048 + 2047 * phase), 0, 4095).astype(np.uint16))
        return replace(s, pixels=np.rint(2000 * phase).astype(np.int16))
    return s


# ------------------------------------------------------------------------------------------------ cohort
def _generate_and_write(job: tuple[Path, int, int, st.StudySpec, rz.RandomisationParams | None]
                        ) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    out_dir, seed, index, spec, params = job
    study = generate_physics_study(seed, index, spec, params)
    st.write_study(study, out_dir)
    return study.cohort_row(), study.slice_rows(), study.simulation_seconds


_THREAD_LIMIT: list = []


def _one_blas_thread() -> None:
    """Pool initializer: one BLAS thread per worker (SuperLU calls BLAS; 2 workers x 2 threads thrash 2 cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed depends on it
        return
    _THREAD_LIMIT.append(threadpool_limits(limits=1))


def generate_physics_cohort(out_dir: Path, n_patients: int, seed: int = 0, like_paper: bool = False,
                            workers: int | None = None, progress: bool = True, stage_mix=None,
                            train_fraction: float | None = None, params: rz.RandomisationParams | None = None):
    """Plan (as :func:`~.cohort.plan_cohort`), simulate and write a physics-style cohort; returns ``cohort.csv``.

    Same files as the main style (``dicom/``, ``truth/``, ``cohort.csv`` with extra randomisation columns,
    ``slices.csv``), deterministic for a seed and ``params`` (default :class:`RandomisationParams`).
    ``workers`` processes (default: CPU count, at most 4).
    """
    from mre_core.phantom.cohort import _write_tables, cohort_params, plan_cohort, run_jobs

    out_dir = Path(out_dir)
    specs = plan_cohort(n_patients, seed, like_paper, stage_mix, cohort_params(train_fraction))
    jobs = [(out_dir, seed, i, s, params) for i, s in enumerate(specs)]
    results = run_jobs(_generate_and_write, jobs, workers, "physics phantom studies", progress,
                       initializer=_one_blas_thread)
    table = _write_tables(out_dir, [(r, rows) for r, rows, _ in results])
    table.attrs["simulation_seconds"] = [s for _, _, s in results]
    return table
