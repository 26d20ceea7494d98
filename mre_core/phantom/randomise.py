"""Domain randomisation of the physics phantom: documented ranges, one draw per patient, label-map edits.

:class:`RandomisationParams` holds every range (uniform unless stated); :func:`sample_draw` turns it
into one patient's concrete :class:`PatientDraw` (deterministic for the generator passed in);
:func:`modify_anatomy` and :func:`decorate_slice` apply the anatomy part of a draw to the tissue model
of :mod:`mre_core.phantom.anatomy` (organ sizes, lobes, fat, resections, fissures, ascites, an elastic
warp of the label map). The physics part (driver, damping, SNR, acquisition matrix, inversion settings,
confidence strictness) and the expert's ROI margins are used by :mod:`mre_core.phantom.physics_study`.

Pure numpy/scipy/OpenCV; no pydicom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
from scipy import ndimage as ndi

from mre_core.phantom.anatomy import Blob, PatientAnatomy, Tissue, liver_mask, mm_grid, smooth_field

Range = tuple[float, float]


@dataclass(frozen=True)
class RandomisationParams:
    """Ranges of the physics phantom's domain randomisation (mm, kPa, um, rad; uniform draws).

    Geometry / acquisition: ``fov_mm`` bounds the square field of view (the stored grid is always 256
    columns: pixel spacing = FOV / 256); the FOV is chosen to fit the body plus ``fov_margin_mm``
    (a fraction ``lateral_crop_probability`` of studies crop the flanks as small FOVs do).
    ``acq_matrix`` is the acquired frequency-encoding matrix, ``acq_phase_fraction`` the acquired
    phase lines relative to a square matrix; the k-space is truncated to it (zero-filled
    interpolation back to the stored grid) with a ``kspace_window_mix`` reconstruction window.
    ``stored_acquired_probability``: share of studies stored at the acquired matrix instead (square pixels,
    FOV / acquired columns: 1.2-7.5 mm for 64-256 over 300-480 mm), as scanners that do not interpolate the
    elastogram store it; 0 (default) keeps every study on the 256-column grid and leaves the draws of
    earlier cohorts unchanged.
    ``snr``: magnitude SNR of unit-intensity tissue per acquired voxel.
    """

    fov_mm: Range = (300.0, 480.0)
    fov_margin_mm: Range = (8.0, 90.0)
    lateral_crop_probability: float = 0.1
    acq_matrix: Range = (64.0, 256.0)
    acq_phase_fraction: Range = (0.5, 1.0)
    stored_acquired_probability: float = 0.0
    kspace_window_mix: tuple[tuple[str, float], ...] = (("none", 0.4), ("hamming", 0.3), ("tukey", 0.3))
    tukey_alpha: Range = (0.2, 0.8)
    snr: Range = (20.0, 80.0)
    # --- anatomy -------------------------------------------------------------------------------
    warp_sd_mm: Range = (1.0, 5.0)  #: SD of the smooth elastic displacement of the label map
    warp_scale_mm: Range = (35.0, 80.0)  #: its correlation length
    slice_warp_sd_mm: float = 1.0  #: extra per-slice warp
    liver_scale: Range = (0.82, 1.22)  #: right-lobe size (atrophy .. hepatomegaly)
    liver_shift_mm: float = 12.0  #: +- shift of the liver in x and y
    liver_rotation_rad: float = 0.35  #: +- rotation of the right lobe
    left_lobe_mix: tuple[tuple[str, float], ...] = (("normal", 0.45), ("big", 0.25), ("small", 0.22), ("absent", 0.08))
    left_lobe_big: Range = (1.2, 1.7)
    left_lobe_small: Range = (0.35, 0.7)
    resection_probability: float = 0.07  #: partial hepatectomy: a half-plane cut off the right lobe
    resection_fraction: Range = (0.15, 0.35)
    fissure_probability: float = 0.7  #: a fat-filled fissure between the right and left lobes
    fissure_depth_mm: Range = (8.0, 35.0)
    fissure_width_mm: Range = (1.5, 3.5)
    fat_mm: Range = (4.0, 40.0)  #: subcutaneous fat (the body grows with it); Beta(1.5, 3.5) within the range
    muscle_mm: Range = (5.0, 14.0)
    ascites_probability: float = 0.15  #: perihepatic fluid: no shear stiffness, carries no wave
    ascites_mm: Range = (3.0, 18.0)
    ascites_arc: Range = (0.35, 1.0)  #: fraction of the circle around the liver it covers
    splenomegaly_probability: float = 0.2  #: 0.6 for F4 livers
    spleen_scale: Range = (1.2, 1.7)
    liver_heterogeneity: Range = (0.04, 0.18)  #: relative SD of the true liver texture
    iron_overload_probability: float = 0.07  #: dark liver on the magnitude (low SNR, little confidence)
    fat_suppression_probability: float = 0.5
    # --- waves, inversion, confidence ------------------------------------------------------------
    driver_width_mm: Range = (60.0, 120.0)
    driver_center_fraction: Range = (0.12, 0.38)  #: driver centre, fraction of body width from the right flank
    driver_amplitude_um: Range = (10.0, 30.0)
    driver_z_decay_mm: Range = (60.0, 160.0)  #: amplitude e-fold distance off the driver's slice level
    loss_factor: Range = (0.10, 0.30)  #: damping eta = G''/G'
    lowpass_sigma_mm: Range = (2.0, 4.5)
    lowcut_sigma_mm: Range = (18.0, 35.0)
    window_sigma_mm: Range = (4.5, 9.0)
    confidence_snr_knee: Range = (3.5, 7.0)  #: larger: smaller 95 % region
    confidence_fit_power: Range = (1.5, 3.0)
    #: target share of the body section inside the 95 % region (log-uniform): the vendor's confidence scale is
    #: recalibrated per study, C' = 1000 (C / 1000)^g, so that C' >= 950 covers it ...
    confidence_coverage: Range = (0.04, 0.18)
    #: ... but never below this raw confidence: where the waves are too weak the region stays small or empty
    confidence_floor_permille: float = 300.0
    # --- expert ROI (published practice; see physics_study.expert_roi) ---------------------------
    roi_edge_mm: Range = (9.0, 12.0)
    roi_vessel_mm: Range = (5.0, 7.0)
    roi_gallbladder_mm: Range = (10.0, 15.0)
    roi_fissure_mm: Range = (8.0, 12.0)
    roi_confidence_erosion_mm: Range = (0.0, 2.0)
    roi_min_area_mm2: float = 100.0


@dataclass(frozen=True)
class PatientDraw:
    """One patient's concrete randomisation (see :class:`RandomisationParams` for the meaning)."""

    fov_mm: float
    acq_cols: int
    acq_phase_fraction: float
    kspace_window: str
    tukey_alpha: float
    snr: float
    warp_sd_mm: float
    warp_scale_mm: float
    liver_scale: float
    liver_shift_mm: tuple[float, float]
    liver_rotation_rad: float
    left_lobe: str
    left_lobe_scale: float
    resection: bool
    resection_angle_rad: float
    resection_fraction: float
    fissure: bool
    fissure_depth_mm: float
    fissure_width_mm: float
    fat_mm: float
    muscle_mm: float
    ascites: bool
    ascites_mm: float
    ascites_arc: tuple[float, float]  #: start angle (rad), arc length (rad)
    spleen_scale: float
    liver_heterogeneity: float
    iron_overload: bool
    fat_suppressed: bool
    driver_width_mm: float
    driver_center_fraction: float
    driver_amplitude_um: float
    driver_phase_rad: float
    driver_z_decay_mm: float
    loss_factor: float
    lowpass_sigma_mm: float
    lowcut_sigma_mm: float
    window_sigma_mm: float
    confidence_snr_knee: float
    confidence_fit_power: float
    confidence_coverage: float
    roi_edge_mm: float
    roi_vessel_mm: float
    roi_gallbladder_mm: float
    roi_fissure_mm: float
    roi_confidence_erosion_mm: float
    roi_min_area_mm2: float
    stored_at_acquired: bool = False  #: stored at the acquired matrix, not interpolated to 256 columns

    def acq_shape(self, rows: int, cols: int) -> tuple[int, int]:
        """Acquired (rows, cols) of k-space for a stored ``rows x cols`` grid (never above it)."""
        ac = int(min(cols, self.acq_cols))
        ar = int(np.clip(round(ac * self.acq_phase_fraction * rows / cols), 32, rows))
        return ar, ac


def _pick(rng: np.random.Generator, mix: tuple[tuple[str, float], ...]) -> str:
    w = np.array([p for _, p in mix], float)
    return mix[int(rng.choice(len(mix), p=w / w.sum()))][0]


def sample_draw(rng: np.random.Generator, rp: RandomisationParams, cirrhotic: bool) -> PatientDraw:
    """One patient's draw; the FOV is provisional until :func:`choose_fov` has seen the body."""
    u = lambda r: float(rng.uniform(*r))  # noqa: E731
    lobe = _pick(rng, rp.left_lobe_mix)
    lobe_scale = {"normal": u((0.85, 1.15)), "big": u(rp.left_lobe_big), "small": u(rp.left_lobe_small),
                  "absent": 0.0}[lobe]
    spleno = rng.uniform() < (0.6 if cirrhotic else rp.splenomegaly_probability)
    # acquired matrix: log-uniform, so 64-128 (the clinical norm) is as common as 128-256
    acq = int(round(math.exp(rng.uniform(math.log(rp.acq_matrix[0]), math.log(rp.acq_matrix[1]))) / 4) * 4)
    return PatientDraw(
        fov_mm=u(rp.fov_mm), acq_cols=acq, acq_phase_fraction=u(rp.acq_phase_fraction),
        kspace_window=_pick(rng, rp.kspace_window_mix), tukey_alpha=u(rp.tukey_alpha), snr=u(rp.snr),
        warp_sd_mm=u(rp.warp_sd_mm), warp_scale_mm=u(rp.warp_scale_mm), liver_scale=u(rp.liver_scale),
        liver_shift_mm=(u((-rp.liver_shift_mm, rp.liver_shift_mm)), u((-rp.liver_shift_mm, rp.liver_shift_mm))),
        liver_rotation_rad=u((-rp.liver_rotation_rad, rp.liver_rotation_rad)), left_lobe=lobe,
        left_lobe_scale=lobe_scale, resection=bool(rng.uniform() < rp.resection_probability),
        resection_angle_rad=u((math.pi * 0.6, math.pi * 1.4)), resection_fraction=u(rp.resection_fraction),
        fissure=bool(rng.uniform() < rp.fissure_probability), fissure_depth_mm=u(rp.fissure_depth_mm),
        fissure_width_mm=u(rp.fissure_width_mm),
        fat_mm=rp.fat_mm[0] + (rp.fat_mm[1] - rp.fat_mm[0]) * float(rng.beta(1.5, 3.5)),
        muscle_mm=u(rp.muscle_mm),
        ascites=bool(rng.uniform() < rp.ascites_probability), ascites_mm=u(rp.ascites_mm),
        ascites_arc=(u((0, 2 * math.pi)), 2 * math.pi * u(rp.ascites_arc)),
        spleen_scale=u(rp.spleen_scale) if spleno else 1.0, liver_heterogeneity=u(rp.liver_heterogeneity),
        iron_overload=bool(rng.uniform() < rp.iron_overload_probability),
        fat_suppressed=bool(rng.uniform() < rp.fat_suppression_probability),
        driver_width_mm=u(rp.driver_width_mm), driver_center_fraction=u(rp.driver_center_fraction),
        driver_amplitude_um=u(rp.driver_amplitude_um), driver_phase_rad=u((0, 2 * math.pi)),
        driver_z_decay_mm=u(rp.driver_z_decay_mm), loss_factor=u(rp.loss_factor),
        lowpass_sigma_mm=u(rp.lowpass_sigma_mm), lowcut_sigma_mm=u(rp.lowcut_sigma_mm),
        window_sigma_mm=u(rp.window_sigma_mm), confidence_snr_knee=u(rp.confidence_snr_knee),
        confidence_fit_power=u(rp.confidence_fit_power),
        confidence_coverage=math.exp(u((math.log(rp.confidence_coverage[0]), math.log(rp.confidence_coverage[1])))),
        roi_edge_mm=u(rp.roi_edge_mm),
        roi_vessel_mm=u(rp.roi_vessel_mm), roi_gallbladder_mm=u(rp.roi_gallbladder_mm),
        roi_fissure_mm=u(rp.roi_fissure_mm), roi_confidence_erosion_mm=u(rp.roi_confidence_erosion_mm),
        roi_min_area_mm2=rp.roi_min_area_mm2,
        # drawn last, and only when asked for: cohorts written without it keep every earlier draw
        stored_at_acquired=bool(rp.stored_acquired_probability > 0 and rng.uniform() < rp.stored_acquired_probability))


def modify_anatomy(anat: PatientAnatomy, d: PatientDraw) -> PatientAnatomy:
    """Apply the draw's liver size/position/rotation, left lobe, spleen and fat to a sampled anatomy.

    Fat changes grow the body (the abdominal cavity keeps its size), so organs are not squeezed.
    """
    dfat = (d.fat_mm - anat.fat_mm) + (d.muscle_mm - anat.muscle_mm)
    body = replace(anat.body, ax=anat.body.ax + dfat, ay=anat.body.ay + dfat)
    r = anat.liver_right
    right = replace(r.scaled(d.liver_scale, *d.liver_shift_mm), angle=r.angle + d.liver_rotation_rad)
    lf = anat.liver_left
    if d.left_lobe_scale > 0:  # a big left lobe also reaches further across the midline
        left = lf.scaled(d.left_lobe_scale, d.liver_shift_mm[0] + 0.5 * (d.left_lobe_scale - 1) * lf.ax,
                         d.liver_shift_mm[1], sy=math.sqrt(d.left_lobe_scale))
    else:
        left = lf.scaled(1e-3)
    spleen = anat.spleen.scaled(d.spleen_scale, 0.3 * (d.spleen_scale - 1) * anat.spleen.ax)
    return replace(anat, body=body, fat_mm=d.fat_mm, muscle_mm=d.muscle_mm, liver_right=right, liver_left=left,
                   spleen=spleen)


def body_extent_mm(anat: PatientAnatomy) -> tuple[float, float, float]:
    """Lateral width, most anterior y and most posterior y (mm, image-centre origin) of the body."""
    x, y = mm_grid((400, 400), 2.0)
    cy = anat.body.cy
    body = anat.body.mask(x, np.where(y > cy, cy + (y - cy) / anat.body_post_ratio, y))
    cols, rows = np.flatnonzero(body.any(axis=0)), np.flatnonzero(body.any(axis=1))
    return float((cols[-1] - cols[0] + 1) * 2.0), float(y[rows[0], 0]), float(y[rows[-1], 0])


def choose_fov(rng: np.random.Generator, anat: PatientAnatomy, rows: int, rp: RandomisationParams) -> float:
    """FOV (mm) as a technologist picks it: the body plus a margin, within ``rp.fov_mm``."""
    width, top, bottom = body_extent_mm(anat)
    if rng.uniform() < rp.lateral_crop_probability:
        lateral = width * rng.uniform(0.9, 0.98)
    else:
        lateral = width + rng.uniform(*rp.fov_margin_mm)
    ap = (2 * max(abs(top), abs(bottom)) + 16.0) * 256 / rows
    return float(np.clip(max(lateral, ap), *rp.fov_mm))


def right_lobe_blob(anat: PatientAnatomy, level: float) -> Blob:
    """The right-lobe outline at ``level`` as :func:`anatomy.slice_labels` draws it (without its jitter)."""
    scale = anat.liver_low_scale + (1 - anat.liver_low_scale) * level
    return anat.liver_right.scaled(scale, anat.liver_drift[0] * level, anat.liver_drift[1] * level)


def warp_field(rng: np.random.Generator, shape: tuple[int, int], spacing_mm: float, sd_mm: float,
               scale_mm: float) -> np.ndarray:
    """Smooth random displacement (pixels), float32 [2, H, W] (dx, dy)."""
    s = scale_mm / spacing_mm
    return np.stack([smooth_field(rng, shape, s), smooth_field(rng, shape, s)]) * (sd_mm / spacing_mm)


def warp(image: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Nearest-neighbour elastic warp of a label map or mask by ``field`` (keeps dtype and labels)."""
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]].astype(np.float32)
    src = image.astype(np.uint8)
    out = cv2.remap(src, xx + field[0], yy + field[1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0)
    return out.astype(image.dtype)


def resection_offset(liver: np.ndarray, spacing_mm: float, d: PatientDraw) -> float:
    """Offset (mm) of the resection plane that removes ``d.resection_fraction`` of this liver."""
    x, y = mm_grid(liver.shape, spacing_mm)
    proj = math.cos(d.resection_angle_rad) * x[liver] + math.sin(d.resection_angle_rad) * y[liver]
    return float(np.quantile(proj, 1 - d.resection_fraction)) if proj.size else math.inf


def decorate_slice(labels: np.ndarray, anat: PatientAnatomy, d: PatientDraw, level: float, field: np.ndarray,
                   resect_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fissure, resection, elastic warp and ascites on one rendered slice.

    Returns ``labels`` (uint8; ascites is labelled VISCERA), ``right_lobe`` (bool, part of the liver),
    ``fissure`` (bool: the right/left lobe interface line; empty without a left lobe) and ``fluid``
    (bool: ascites pixels).
    """
    sp = anat.spacing_mm
    x, y = mm_grid(labels.shape, sp)
    labels = labels.copy()
    liver = liver_mask(labels)
    right = liver & ndi.binary_dilation(right_lobe_blob(anat, level).mask(x, y), iterations=2)
    if d.fissure and (liver & ~right).any():
        interface = right & ndi.binary_dilation(liver & ~right)
        near = ndi.distance_transform_edt(~interface) * sp <= d.fissure_width_mm / 2
        shallow = ndi.distance_transform_edt(liver) * sp <= d.fissure_depth_mm
        labels[near & shallow & liver] = Tissue.VISCERA
    if d.resection:
        cut = math.cos(d.resection_angle_rad) * x + math.sin(d.resection_angle_rad) * y > resect_mm
        labels[cut & np.isin(labels, (Tissue.LIVER, Tissue.LIVER_VESSEL, Tissue.GALLBLADDER))] = Tissue.VISCERA
    labels = warp(labels, field)
    right = warp(right, field)
    _drop_crumbs(labels)
    fluid = _ascites(labels, d, sp) if d.ascites else np.zeros(labels.shape, bool)
    labels[fluid] = Tissue.VISCERA
    _drop_crumbs(labels)
    liver = liver_mask(labels)
    right &= liver
    left = liver & ~right
    fissure = right & ndi.binary_dilation(left) if left.any() else np.zeros_like(liver)
    return labels, right, fissure, fluid


def _ascites(labels: np.ndarray, d: PatientDraw, sp: float) -> np.ndarray:
    """Perihepatic fluid: a layer along the inner abdominal wall and around the liver, in one arc.

    It displaces the liver (liver pixels under the layer become fluid), so it can lie between the
    driver and the liver, where real ascites blocks the wave.
    """
    liver = liver_mask(labels)
    if not liver.any():
        return np.zeros_like(liver)
    wall = np.isin(labels, (Tissue.BACKGROUND, Tissue.FAT, Tissue.MUSCLE))
    near_wall = ndi.distance_transform_edt(~wall) * sp <= d.ascites_mm
    to_liver = ndi.distance_transform_edt(~liver) * sp
    ring = (to_liver <= d.ascites_mm) & ~liver
    cy, cx = (float(v.mean()) for v in np.nonzero(liver))
    yy, xx = np.mgrid[: liver.shape[0], : liver.shape[1]]
    ang = (np.arctan2(yy - cy, xx - cx) - d.ascites_arc[0]) % (2 * math.pi)
    soft = np.isin(labels, (Tissue.LIVER, Tissue.LIVER_VESSEL, Tissue.VISCERA, Tissue.BOWEL))
    return (near_wall | ring) & (to_liver <= d.ascites_mm + 20) & (ang <= d.ascites_arc[1]) & soft & ~wall


def _drop_crumbs(labels: np.ndarray, min_pixels: int = 60) -> None:
    """Liver pieces under ``min_pixels`` (left by cuts and warps) become intra-abdominal fat."""
    liver = liver_mask(labels)
    comp, n = ndi.label(liver)
    if n > 1:
        small = np.flatnonzero(np.bincount(comp.ravel()) < min_pixels)
        labels[np.isin(comp, small[small > 0])] = Tissue.VISCERA
