"""The phantom's legacy stiffness and wave-confidence fields (the multiplicative recipe).

Given a tissue map from :mod:`mre_core.phantom.anatomy`: per-tissue true stiffness, a relative
wave amplitude that decays from the driver, the 95 % confidence region it implies, the stiffness
a scanner would report (true stiffness with edge, ripple and bias artefacts) and the expert ROI.
Pure numpy; the random generator is always passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from mre_core.phantom.anatomy import FieldParams, PatientAnatomy, Tissue, liver_mask, mm_grid, smooth_field


def wavelength_mm(kpa: np.ndarray | float, frequency_hz: float) -> np.ndarray | float:
    """Shear wavelength (mm) for stiffness ``kpa`` (shear speed sqrt(mu/rho), rho = 1000 kg/m3)."""
    return np.sqrt(np.maximum(kpa, 0.05)) * 1000.0 / frequency_hz


@dataclass(frozen=True)
class Acquisition:
    """Per-patient wave and inversion character (driver position, decay, artefact strengths)."""

    driver_xy_mm: tuple[float, float]  #: acoustic driver on the anterior right body wall
    decay_mm: float
    edge_gain: float
    ripple: float
    ripple_phase: float
    bias: float  #: multiplicative scanner bias of the stiffness estimate
    liver_confidence: float  #: target fraction of liver inside the confidence region


def sample_acquisition(rng: np.random.Generator, anat: PatientAnatomy, fp: FieldParams) -> Acquisition:
    """Sample the driver position (image top-left of the body) and the artefact strengths."""
    b = anat.body
    t = rng.uniform(0.25, 0.6)
    driver = (b.cx - b.ax * t, b.cy - b.ay * math.sqrt(1 - t * t))
    return Acquisition(driver, rng.uniform(*fp.amplitude_decay_mm), rng.uniform(*fp.hot_edge_gain),
                       rng.uniform(*fp.ripple_amplitude), rng.uniform(0, 2 * math.pi),
                       1.0 + rng.normal(0, fp.scanner_bias_sd), rng.uniform(*fp.liver_confidence))


def tissue_kpa_table(rng: np.random.Generator, fp: FieldParams) -> np.ndarray:
    """Per-patient stiffness (kPa) of every :class:`Tissue` except the liver, float32 [13]."""
    lut = np.zeros(len(Tissue), np.float32)
    ranges = {Tissue.FAT: fp.fat_kpa, Tissue.MUSCLE: fp.muscle_kpa, Tissue.VISCERA: fp.viscera_kpa,
              Tissue.SPLEEN: fp.spleen_kpa, Tissue.KIDNEY: fp.kidney_kpa, Tissue.BOWEL: fp.bowel_kpa,
              Tissue.BONE: fp.bone_kpa, Tissue.LIVER_VESSEL: fp.vessel_kpa, Tissue.GREAT_VESSEL: fp.vessel_kpa,
              Tissue.GALLBLADDER: fp.gallbladder_kpa}
    for tissue, (low, high) in ranges.items():
        lut[tissue] = rng.uniform(low, high)
    return lut


def true_stiffness_kpa(labels: np.ndarray, liver_kpa: float, lut: np.ndarray, rng: np.random.Generator,
                       fp: FieldParams) -> np.ndarray:
    """True shear stiffness (kPa, float32): tissue values, liver with ~10 % smooth heterogeneity."""
    scale = fp.texture_scale_mm / fp.pixel_spacing_mm
    texture = smooth_field(rng, labels.shape, scale)
    out = lut[labels] * (1 + 0.05 * smooth_field(rng, labels.shape, scale))
    liver = labels == Tissue.LIVER
    out[liver] = liver_kpa * (1 + fp.liver_heterogeneity * texture[liver])
    vessel = labels == Tissue.LIVER_VESSEL  # vessels stay softer than the liver around them
    out[vessel] = np.minimum(out[vessel], 0.6 * liver_kpa)
    return np.maximum(out, 0).astype(np.float32)


_AMPLITUDE_LUT = np.ones(len(Tissue), np.float32)
_AMPLITUDE_LUT[[Tissue.BACKGROUND, Tissue.GAS]] = 0.0
_AMPLITUDE_LUT[[Tissue.BONE, Tissue.GALLBLADDER, Tissue.GREAT_VESSEL, Tissue.LIVER_VESSEL]] = (0.15, 0.25, 0.45, 0.65)
_AMPLITUDE_LUT[Tissue.BOWEL] = 0.75


def wave_amplitude(labels: np.ndarray, acq: Acquisition, z_mm: float, rng: np.random.Generator,
                   fp: FieldParams) -> np.ndarray:
    """Relative shear-wave amplitude (float32, 0 outside the body).

    Decays with distance from the driver, drops at tissue boundaries, vessels and fluid,
    varies smoothly, and has a few random dropouts.
    """
    sp = fp.pixel_spacing_mm
    x, y = mm_grid(labels.shape, sp)
    dist = np.sqrt((x - acq.driver_xy_mm[0]) ** 2 + (y - acq.driver_xy_mm[1]) ** 2 + z_mm**2)
    amp = np.exp(-dist / acq.decay_mm)
    amp *= cv2.GaussianBlur(_AMPLITUDE_LUT[labels], (0, 0), 1.5)
    edges = np.zeros(labels.shape, bool)
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edges[1:, :] |= labels[1:, :] != labels[:-1, :]
    amp *= 1 - fp.boundary_drop * np.exp(-ndi.distance_transform_edt(~edges) * sp / fp.boundary_width_mm)
    amp *= np.exp(fp.amplitude_texture * smooth_field(rng, labels.shape, 20.0))
    for _ in range(int(rng.integers(fp.dropouts[0], fp.dropouts[1] + 1))):
        cx, cy = rng.uniform(-120, 120), rng.uniform(-80, 80)
        sigma = rng.uniform(8, 25)
        amp *= 1 - rng.uniform(0.5, 0.9) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    amp[labels == Tissue.BACKGROUND] = 0
    return amp.astype(np.float32)


def confidence_threshold(amplitudes: list[np.ndarray], livers: list[np.ndarray], liver_fraction: float) -> float:
    """Amplitude threshold that puts ``liver_fraction`` of all liver pixels of a study above it."""
    values = np.concatenate([a[m] for a, m in zip(amplitudes, livers)])
    return float(np.quantile(values, 1 - liver_fraction)) if values.size else 0.0


def confidence_region(amplitude: np.ndarray, labels: np.ndarray, threshold: float, min_pixels: int = 40) -> np.ndarray:
    """95 % confidence region (bool): amplitude above threshold, cleaned of specks and pinholes."""
    valid = ~np.isin(labels, (Tissue.BACKGROUND, Tissue.GAS))
    conf = ndi.binary_opening((amplitude >= threshold) & valid, np.ones((3, 3), bool))
    conf = _drop_small(conf, min_pixels)
    holes = _drop_small(~conf & valid, min_pixels)
    return conf | (valid & ~conf & ~holes)


def _drop_small(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    comp, n = ndi.label(mask)
    if n == 0:
        return mask
    keep = np.bincount(comp.ravel()) >= min_pixels
    keep[0] = False
    return keep[comp]


def measured_stiffness_kpa(true_kpa: np.ndarray, labels: np.ndarray, amplitude: np.ndarray, threshold: float,
                           liver_kpa: float, acq: Acquisition, rng: np.random.Generator,
                           fp: FieldParams) -> np.ndarray:
    """The scanner's stiffness estimate (kPa, float32; 0 where there is no signal).

    The true map blurred by the inversion, plus hot edges along the liver boundary,
    wave ripples, noise that grows where the amplitude is low, and a per-patient bias.
    """
    sp = fp.pixel_spacing_mm
    valid = ~np.isin(labels, (Tissue.BACKGROUND, Tissue.GAS))
    sigma = fp.inversion_blur_mm / sp
    num = cv2.GaussianBlur(np.where(valid, true_kpa, 0).astype(np.float32), (0, 0), sigma)
    den = cv2.GaussianBlur(valid.astype(np.float32), (0, 0), sigma)
    est = num / np.maximum(den, 1e-3)
    liver = liver_mask(labels)
    to_edge = np.where(liver, ndi.distance_transform_edt(liver), ndi.distance_transform_edt(~liver)) * sp
    est += acq.edge_gain * liver_kpa * np.exp(-to_edge / fp.hot_edge_width_mm)
    x, y = mm_grid(labels.shape, sp)
    dist = np.hypot(x - acq.driver_xy_mm[0], y - acq.driver_xy_mm[1])
    est *= 1 + acq.ripple * np.sin(2 * np.pi * dist / (0.5 * wavelength_mm(liver_kpa, fp.drive_frequency_hz))
                                   + acq.ripple_phase)
    weak = np.clip(threshold / np.maximum(amplitude, 1e-4) - 1, 0, 4)
    est *= 1 + fp.noise_rel * (1 + fp.low_amplitude_noise_gain * weak) * smooth_field(rng, labels.shape, 2.0)
    est *= (1 + 0.15 * np.minimum(weak, 2)) * acq.bias
    return np.where(valid, np.maximum(est, 0.2), 0).astype(np.float32)


def expert_roi(labels: np.ndarray, confidence: np.ndarray, fp: FieldParams) -> np.ndarray:
    """The ROI a careful expert draws (bool): liver, confident, away from edges and vessels.

    Eroded ``roi_edge_margin_mm`` from the liver edge, ``roi_vessel_margin_mm`` from
    vessels and the gallbladder, smoothed, and only the ``roi_max_pieces`` largest
    pieces of at least ``roi_min_piece_mm2``. May be empty.
    """
    sp = fp.pixel_spacing_mm
    liver = liver_mask(labels)
    avoid = np.isin(labels, (Tissue.LIVER_VESSEL, Tissue.GALLBLADDER, Tissue.GREAT_VESSEL))
    clear = ndi.distance_transform_edt(~avoid) * sp >= fp.roi_vessel_margin_mm if avoid.any() else np.ones_like(liver)
    candidate = ((ndi.distance_transform_edt(liver) * sp >= fp.roi_edge_margin_mm) & clear
                 & (ndi.distance_transform_edt(confidence) * sp >= fp.roi_confidence_margin_mm))
    disk = np.hypot(*np.mgrid[-2:3, -2:3]) <= 2.0
    candidate = ndi.binary_opening(candidate, disk)
    comp, n = ndi.label(candidate)
    if n == 0:
        return candidate
    sizes = np.bincount(comp.ravel())[1:]
    order = np.argsort(sizes)[::-1][: fp.roi_max_pieces]
    keep = [i + 1 for i in order if sizes[i] * sp * sp >= fp.roi_min_piece_mm2]
    return np.isin(comp, keep)
