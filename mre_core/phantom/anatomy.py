"""Synthetic anatomy, stiffness and wave-confidence fields for the MRE phantom.

Pure numpy (with ``scipy.ndimage`` and OpenCV for resampling); no pydicom. Every
function takes its random generator explicitly, so a study is a pure function of
its seed. Coordinates are millimetres on the axial image grid: ``x`` grows to the
image right (patient left), ``y`` grows down (posterior); the origin is the image
centre. The tunables live in :class:`FieldParams`.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> anat = sample_anatomy(rng, (204, 256), FieldParams(), cirrhotic=False)
>>> labels = slice_labels(anat, 0.5, rng)
>>> bool((labels == Tissue.LIVER).any() and (labels == Tissue.SPLEEN).any())
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import cv2
import numpy as np
from scipy import ndimage as ndi


class Tissue(IntEnum):
    """Label of one pixel of the phantom's tissue map."""

    BACKGROUND = 0  #: air outside the body
    FAT = 1  #: subcutaneous fat
    MUSCLE = 2  #: abdominal wall, paraspinal and psoas muscles
    VISCERA = 3  #: intra-abdominal fat and mesentery
    LIVER = 4  #: liver parenchyma
    LIVER_VESSEL = 5  #: portal / hepatic vein cross-section inside the liver
    GALLBLADDER = 6  #: fluid-filled gallbladder in its fossa
    SPLEEN = 7
    KIDNEY = 8
    BOWEL = 9  #: stomach and bowel loops (wall and fluid content)
    GAS = 10  #: bowel gas: no MR signal, no stiffness value
    BONE = 11  #: vertebra
    GREAT_VESSEL = 12  #: aorta and inferior vena cava


@dataclass(frozen=True)
class FieldParams:
    """Tunables of the anatomy and field models (ranges are sampled uniformly).

    Stiffness in kPa, lengths in mm. Defaults follow the MRE literature where a
    value exists (spleen 4-6 kPa, muscle 2-4 kPa, fat 1-2 kPa) and were tuned by eye
    against published confidence maps elsewhere.
    """

    pixel_spacing_mm: float = 400.0 / 256  #: 400 mm field of view on 256 columns
    drive_frequency_hz: float = 60.0  #: Resoundant driver frequency
    fat_kpa: tuple[float, float] = (1.0, 2.0)
    muscle_kpa: tuple[float, float] = (2.0, 4.0)
    viscera_kpa: tuple[float, float] = (1.3, 2.4)
    spleen_kpa: tuple[float, float] = (4.0, 6.0)
    kidney_kpa: tuple[float, float] = (2.5, 4.5)
    bowel_kpa: tuple[float, float] = (1.5, 4.5)
    bone_kpa: tuple[float, float] = (6.0, 10.0)
    vessel_kpa: tuple[float, float] = (0.8, 1.5)  #: liver vessels and great vessels
    gallbladder_kpa: tuple[float, float] = (0.3, 0.8)  #: fluid: (almost) no shear stiffness
    liver_heterogeneity: float = 0.10  #: relative SD of the smooth liver texture
    texture_scale_mm: float = 12.0  #: correlation length of tissue texture
    inversion_blur_mm: float = 2.0  #: resolution of the stiffness inversion (Gaussian sigma)
    hot_edge_gain: tuple[float, float] = (0.15, 0.45)  #: edge overshoot, fraction of liver kPa
    hot_edge_width_mm: float = 3.0
    ripple_amplitude: tuple[float, float] = (0.02, 0.07)  #: relative ripple in the estimate
    noise_rel: float = 0.03  #: relative estimate noise where waves are strong
    low_amplitude_noise_gain: float = 2.5  #: extra noise where amplitude is below threshold
    scanner_bias_sd: float = 0.04  #: per-patient multiplicative bias of the estimate
    amplitude_decay_mm: tuple[float, float] = (70.0, 140.0)  #: wave attenuation length
    amplitude_texture: float = 0.25  #: log-SD of smooth amplitude variation
    boundary_drop: float = 0.45  #: amplitude loss at tissue boundaries (fraction)
    boundary_width_mm: float = 2.5
    dropouts: tuple[int, int] = (0, 3)  #: number of random amplitude dropouts per slice
    liver_confidence: tuple[float, float] = (0.35, 0.85)  #: sampled target fraction of liver
    roi_edge_margin_mm: float = 5.0  #: expert stays this far inside the liver edge
    roi_vessel_margin_mm: float = 3.0  #: ... and this far from vessels and gallbladder
    roi_confidence_margin_mm: float = 1.5  #: ... and this far inside the confidence region
    roi_min_piece_mm2: float = 200.0  #: smaller ROI pieces are not drawn
    roi_max_pieces: int = 3


@dataclass(frozen=True)
class Blob:
    """A rotated superellipse with Fourier-perturbed radius (mm, radians)."""

    cx: float
    cy: float
    ax: float
    ay: float
    angle: float = 0.0
    power: float = 2.0
    harmonics: tuple[tuple[int, float, float], ...] = ()  #: (order, amplitude, phase)

    def scaled(self, s: float, dx: float = 0.0, dy: float = 0.0, sy: float | None = None) -> Blob:
        """A copy scaled by ``s`` (``sy`` along y if given) and shifted by ``dx, dy`` mm."""
        return Blob(self.cx + dx, self.cy + dy, self.ax * s, self.ay * (s if sy is None else sy),
                    self.angle, self.power, self.harmonics)

    def mask(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean mask of the blob on the mm grids ``x, y``."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        u = (c * dx + s * dy) / max(self.ax, 1e-3)
        v = (-s * dx + c * dy) / max(self.ay, 1e-3)
        rho = (np.abs(u) ** self.power + np.abs(v) ** self.power) ** (1.0 / self.power)
        radius = np.ones_like(rho)
        if self.harmonics:
            theta = np.arctan2(v, u)
            for order, amp, phase in self.harmonics:
                radius += amp * np.cos(order * theta + phase)
        return rho <= radius


@dataclass(frozen=True)
class PatientAnatomy:
    """Per-patient anatomy; :func:`slice_labels` renders it at a slice level."""

    shape: tuple[int, int]
    spacing_mm: float
    body: Blob
    body_post_ratio: float  #: posterior semi-axis / anterior semi-axis
    fat_mm: float
    muscle_mm: float
    spine: tuple[float, float, float]  #: vertebral body centre x, y and radius (mm)
    aorta: tuple[float, float, float]
    ivc: tuple[float, float, float]
    liver_right: Blob
    liver_left: Blob
    liver_low_scale: float  #: right-lobe scale at the lowest slice (1 at the highest)
    liver_drift: tuple[float, float]  #: liver centre shift (mm) from lowest to highest slice
    spleen: Blob
    stomach: Blob
    kidney_level: float  #: kidneys appear below this slice level
    gallbladder: Blob | None
    gallbladder_level: float
    vessels: tuple[tuple[float, float, float, float, float, float, float], ...]
    #: per vessel: u, v (lobe coords), radius mm, elongation, angle, du, dv (drift per level)
    n_bowel_loops: int


def mm_grid(shape: tuple[int, int], spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """x (columns) and y (rows) coordinates in mm of every pixel centre, origin at the image centre."""
    rows, cols = shape
    y = (np.arange(rows, dtype=np.float32) - rows / 2 + 0.5) * spacing_mm
    x = (np.arange(cols, dtype=np.float32) - cols / 2 + 0.5) * spacing_mm
    return np.meshgrid(x, y)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-SD random field smooth over ``scale_px`` pixels, float32 ``shape``.

    White noise on a coarse grid, upsampled with bicubic interpolation (fast, and smooth).
    """
    scale = max(scale_px, 1.0)
    coarse = (int(math.ceil(shape[0] / scale)) + 3, int(math.ceil(shape[1] / scale)) + 3)
    low = rng.standard_normal(coarse).astype(np.float32)
    big = cv2.resize(low, (int(coarse[1] * scale), int(coarse[0] * scale)), interpolation=cv2.INTER_CUBIC)
    off = int(scale)
    out = big[off:off + shape[0], off:off + shape[1]]
    return (out - out.mean()) / max(float(out.std()), 1e-6)


def _harmonics(rng: np.random.Generator, orders: range, max_amp: float) -> tuple[tuple[int, float, float], ...]:
    return tuple((k, float(rng.uniform(0, max_amp)), float(rng.uniform(0, 2 * math.pi))) for k in orders)


def sample_anatomy(rng: np.random.Generator, shape: tuple[int, int], fp: FieldParams, cirrhotic: bool) -> PatientAnatomy:
    """Sample one patient's anatomy (sizes, positions, shapes); ``cirrhotic`` enlarges the spleen."""
    u = rng.uniform
    half_h = shape[0] * fp.pixel_spacing_mm / 2
    a, b = u(125, 180), u(78, min(115.0, half_h - 40))
    body = Blob(u(-8, 8), u(-12, 4), a, b, u(-0.05, 0.05), u(2.1, 2.8), _harmonics(rng, range(2, 5), 0.03))
    post = u(0.95, min(1.1, (half_h - 6 - body.cy) / b))
    fat, muscle = u(6, 35), u(6, 12)
    ac, bc = a - fat - muscle, b - fat - muscle  # abdominal cavity semi-axes
    spine_y = body.cy + b * post - fat - u(50, 65)
    spine = (body.cx + u(-4, 4), spine_y, u(16, 21))
    right = Blob(body.cx - ac * u(0.4, 0.55), body.cy - bc * u(-0.05, 0.12), ac * u(0.55, 0.72), bc * u(0.85, 1.1),
                 u(-0.3, 0.3), u(1.8, 2.8), _harmonics(rng, range(2, 6), 0.06))
    left = Blob(body.cx + ac * u(-0.1, 0.2), body.cy - bc * u(0.35, 0.55), ac * u(0.3, 0.5) * u(0.5, 1.0),
                bc * u(0.18, 0.3), u(-0.4, 0.2), 2.0, _harmonics(rng, range(2, 4), 0.08))
    splenomegaly = u(1.15, 1.45) if cirrhotic else 1.0
    spleen = Blob(body.cx + ac * u(0.6, 0.75), body.cy + bc * u(0.15, 0.4), ac * u(0.15, 0.24) * splenomegaly,
                  bc * u(0.38, 0.55) * splenomegaly, u(0.4, 1.0), u(1.8, 2.4), _harmonics(rng, range(2, 4), 0.08))
    stomach = Blob(body.cx + ac * u(0.15, 0.4), body.cy - bc * u(0.1, 0.4), u(20, 40), u(15, 30), u(-0.5, 0.5))
    gb = None
    if u() < 0.6:
        ang = right.angle + u(-0.9, -0.2)
        gb = Blob(right.cx + right.ax * 0.85 * math.cos(ang), right.cy + right.ay * 0.85 * math.sin(ang),
                  u(10, 18), u(7, 13), u(-0.6, 0.6))
    vessels = []
    for _ in range(int(rng.integers(2, 7))):
        r, t = u(0.1, 0.7), u(0, 2 * math.pi)
        vessels.append((r * math.cos(t), r * math.sin(t), u(3.0, 8.0), u(1.0, 2.2), u(0, math.pi),
                        rng.normal(0, 0.15), rng.normal(0, 0.15)))
    return PatientAnatomy(
        shape, fp.pixel_spacing_mm, body, post, fat, muscle, spine,
        (spine[0] + u(12, 24), spine_y - u(22, 30), u(9, 13)), (spine[0] - u(18, 30), spine_y - u(22, 32), u(8, 12)),
        right, left, u(0.65, 0.9), (rng.normal(0, 6), rng.normal(0, 6)), spleen, stomach,
        u(0.2, 0.6), gb, u(0.35, 0.8), tuple(vessels), int(rng.integers(3, 9)),
    )


def slice_labels(anat: PatientAnatomy, level: float, rng: np.random.Generator) -> np.ndarray:
    """Render the tissue label map (uint8 ``shape``) at ``level`` (0 lowest slice, 1 highest)."""
    x, y = mm_grid(anat.shape, anat.spacing_mm)
    sp = anat.spacing_mm
    cy = anat.body.cy
    body = anat.body.mask(x, np.where(y > cy, cy + (y - cy) / anat.body_post_ratio, y))
    labels = np.where(body, Tissue.FAT, Tissue.BACKGROUND).astype(np.uint8)
    depth = ndi.distance_transform_edt(body) * sp
    fat_mm = anat.fat_mm * (1 + 0.25 * smooth_field(rng, anat.shape, 40.0))
    labels[body & (depth >= fat_mm)] = Tissue.MUSCLE
    cavity = body & (depth >= fat_mm + anat.muscle_mm)
    labels[cavity] = Tissue.VISCERA
    liver = _liver_mask(anat, level, x, y, rng) & cavity
    labels[liver] = Tissue.LIVER
    spleen = anat.spleen.scaled(0.55 + 0.45 * level).mask(x, y) & cavity & ~liver
    labels[spleen] = Tissue.SPLEEN
    if level > 0.3:
        _paint_bowel(labels, anat.stomach.scaled(0.6 + 0.4 * level), x, y, rng.uniform() < 0.5, Tissue.VISCERA)
    for _ in range(anat.n_bowel_loops + int(4 * (1 - level))):
        cx, cy = rng.uniform(-1, 1) * anat.body.ax * 0.6, rng.uniform(-1, 0.4) * anat.body.ay * 0.7
        r = rng.uniform(7, 16)
        loop = Blob(cx + anat.body.cx, cy + anat.body.cy, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, math.pi))
        _paint_bowel(labels, loop, x, y, rng.uniform() < 0.3, Tissue.VISCERA)
    sx, sy, sr = anat.spine
    if level < anat.kidney_level:
        k = min(1.0, 0.4 + (anat.kidney_level - level) / 0.3)
        for side in (-1, 1):
            kid = Blob(sx + side * 58, sy + 8, 17 * k, 26 * k, side * 0.4)
            labels[kid.mask(x, y) & cavity] = Tissue.KIDNEY
    psoas = 8 + 10 * (1 - level)
    for side in (-1, 1):
        labels[Blob(sx + side * (sr + psoas * 0.8), sy, psoas, psoas * 1.1).mask(x, y) & cavity] = Tissue.MUSCLE
        labels[Blob(sx + side * 30, sy + sr + 22, 22, 28).mask(x, y) & body & (depth >= fat_mm)] = Tissue.MUSCLE
    labels[Blob(sx, sy, sr, sr * 0.9).mask(x, y) | Blob(sx, sy + sr + 14, 6, 16).mask(x, y)] = Tissue.BONE
    for cx, cy, r in (anat.aorta, anat.ivc):
        labels[Blob(cx, cy, r, r * 0.85).mask(x, y)] = Tissue.GREAT_VESSEL
    if anat.gallbladder is not None and level < anat.gallbladder_level:
        gb = anat.gallbladder.scaled(0.7 + 0.3 * (anat.gallbladder_level - level) / anat.gallbladder_level)
        soft = np.isin(labels, (Tissue.LIVER, Tissue.VISCERA, Tissue.BOWEL))
        labels[gb.mask(x, y) & soft] = Tissue.GALLBLADDER
    _paint_vessels(labels, anat, level, x, y)
    _drop_liver_crumbs(labels)
    return labels


def _liver_mask(anat: PatientAnatomy, level: float, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    scale = anat.liver_low_scale + (1 - anat.liver_low_scale) * level
    dx, dy = anat.liver_drift[0] * level + rng.normal(0, 1.5), anat.liver_drift[1] * level + rng.normal(0, 1.5)
    right = anat.liver_right.scaled(scale, dx, dy).mask(x, y)
    left_scale = float(np.clip(level + 0.15, 0.0, 1.0))
    left = anat.liver_left.scaled(left_scale, dx, dy).mask(x, y) if left_scale > 0.2 else np.zeros_like(right)
    smooth = cv2.GaussianBlur((right | left).astype(np.float32), (0, 0), 2.0)
    return smooth > 0.5


def _paint_bowel(labels: np.ndarray, loop: Blob, x: np.ndarray, y: np.ndarray, gas: bool, onto: int) -> None:
    where = loop.mask(x, y) & (labels == onto)
    labels[where] = Tissue.BOWEL
    if gas:
        lumen = loop.scaled(0.7).mask(x, y) & (y < loop.cy + 0.2 * loop.ay) & where
        labels[lumen] = Tissue.GAS


def _paint_vessels(labels: np.ndarray, anat: PatientAnatomy, level: float, x: np.ndarray, y: np.ndarray) -> None:
    lobe = anat.liver_right.scaled(anat.liver_low_scale + (1 - anat.liver_low_scale) * level)
    c, s = math.cos(lobe.angle), math.sin(lobe.angle)
    liver = labels == Tissue.LIVER
    for u, v, r, elong, ang, du, dv in anat.vessels:
        lu, lv = (u + du * level) * lobe.ax, (v + dv * level) * lobe.ay
        cx, cy = lobe.cx + c * lu - s * lv, lobe.cy + s * lu + c * lv
        labels[Blob(cx, cy, r * elong, r, ang).mask(x, y) & liver] = Tissue.LIVER_VESSEL


def _drop_liver_crumbs(labels: np.ndarray, min_pixels: int = 60) -> None:
    liver = np.isin(labels, (Tissue.LIVER, Tissue.LIVER_VESSEL))
    comp, n = ndi.label(liver)
    if n > 1:
        sizes = np.bincount(comp.ravel())
        small = np.isin(comp, np.flatnonzero(sizes < min_pixels)) & liver
        labels[small] = Tissue.VISCERA


def liver_mask(labels: np.ndarray) -> np.ndarray:
    """The liver as an expert outlines it: parenchyma plus the vessels inside it (bool)."""
    return np.isin(labels, (Tissue.LIVER, Tissue.LIVER_VESSEL))
