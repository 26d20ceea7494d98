"""Training-time augmentation of model-input batches (numpy + OpenCV), for ``train --augment``.

Inputs are the model's batches: ``x`` float32 ``[N, C, S, S]`` in [0, 1] (after the 400/800 window; the
channels of :class:`mre_core.analysis.preprocess.InputSpec`: windowed stiffness inside the confidence region,
the confidence region, windowed stiffness wherever known) and targets ``y`` ``[N, K, S, S]`` (uint8 or float,
0/1; one channel per model output, e.g. ROI and liver, all warped with the slice's one warp). Every random choice comes from the ``numpy.random.Generator`` passed in, so a batch is reproducible.

Why each transform (what varies between scanners, sites and patients, and what must not):

* **intensity scale / shift, gamma** of the stiffness channels: stiffness varies with the stage and the
  inversion's bias, so the liver must be found by shape and context, not brightness; only pixels that
  hold a value change (0 = no value stays 0);
* **Gaussian blur**: acquisition matrices of 64-256 interpolated to the stored grid, different inversion
  filters;
* **Gaussian noise**: low-SNR exams;
* **small elastic deformation** (one smooth field for image and target; bilinear for the image,
  nearest for the target): organ shapes vary beyond rigid motion;
* **small rotation / zoom / shift**: patient position and size.
* **a coarse stored grid** (``p_coarse_grid``): scanners store elastograms at the acquired matrix (64-128) or
  interpolated (256); every plane is area-averaged to a grid 0.35-1 times as fine and brought back bilinearly,
  as :func:`mre_core.analysis.preprocess.model_input` enlarges a coarse stored matrix. Drawn last.
* **the magnitude image** (``magnitude_channels``, when the model reads it) varies in ways stiffness does not:
  its intensities have no unit (contrast and **gamma**: T1/T2* weighting, sequence, scanner), the receive coils
  make a smooth **bias field** (multiplicative, a few cm to the whole section), low acquired matrices **blur** it,
  thermal noise makes it **Rician** (``sqrt((m + n1)^2 + n2^2)``: a noise floor in the background), tissue and
  flow give **texture**, and EPI readouts put an N/2 **ghost** half a field of view away along the phase
  direction. After them the plane is re-scaled by its percentiles as at inference
  (:func:`mre_core.analysis.preprocess.normalised_magnitude`). With probability ``p_magnitude_drop`` the plane is
  zeroed instead: what the model gets for an exam without a paired magnitude image.
* **No left-right flips and no reflections**: the liver lies on the patient's right (image left) in normal
  situs; a flip would teach the network livers that never occur.

The confidence channel(s) move with the geometry but keep their values; the confidence-masked stiffness
channel stays 0 outside the (moved) confidence region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mre_core.analysis.preprocess import normalised_magnitude

Range = tuple[float, float]

__all__ = ["Augmenter", "bias_field", "coarse_grid", "intensity_scale_shift", "gamma", "gaussian_blur", "gaussian_noise", "warp_maps",
           "elastic_field", "remap_pair"]


@dataclass(frozen=True)
class Augmenter:
    """Probabilities and ranges (uniform draws, per slice); sizes are fractions of the model grid ``S``."""

    p_intensity: float = 0.8
    scale: Range = (0.75, 1.35)  #: multiplies windowed stiffness
    shift: Range = (-0.04, 0.04)  #: added to windowed stiffness (0.04 = 0.32 kPa on the 0-8 kPa window)
    p_gamma: float = 0.3
    gamma: Range = (0.7, 1.5)
    p_blur: float = 0.25
    blur_sigma: Range = (0.001, 0.006)  #: Gaussian sigma, fraction of S (512: 0.5-3 px)
    p_noise: float = 0.3
    noise_sd: Range = (0.005, 0.03)
    p_elastic: float = 0.4
    elastic_sd: Range = (0.004, 0.012)  #: displacement SD, fraction of S (512: 2-6 px)
    elastic_scale: Range = (0.08, 0.2)  #: correlation length, fraction of S
    p_affine: float = 0.7
    rotation_deg: float = 10.0  #: +-
    zoom: Range = (0.9, 1.1)
    shift_frac: float = 0.06  #: +- fraction of S
    stiffness_channels: tuple[int, ...] = (0, 2)
    mask_channels: tuple[int, ...] = (1,)  #: binary inputs (the confidence region)
    masked_by: tuple[tuple[int, int], ...] = ((0, 1),)  #: (channel, mask channel): channel is 0 where mask is 0
    magnitude_channels: tuple[int, ...] = ()  #: planes holding the magnitude image (none: the default input)
    p_magnitude_drop: float = 0.25  #: magnitude plane zeroed (an exam without a paired magnitude image)
    magnitude_low: Range = (-0.1, 0.15)  #: new black level (contrast window), on the [0, 1] plane
    magnitude_high: Range = (0.7, 1.1)  #: new white level
    p_magnitude_gamma: float = 0.5
    magnitude_gamma: Range = (0.5, 2.0)
    p_bias: float = 0.5
    bias_log_sd: Range = (0.1, 0.45)  #: SD of the log of the multiplicative coil field
    bias_scale: Range = (0.3, 1.0)  #: its correlation length, fraction of S
    p_magnitude_blur: float = 0.3
    magnitude_blur_sigma: Range = (0.002, 0.01)  #: fraction of S (256: 0.5-2.6 px)
    p_rician: float = 0.5
    rician_sd: Range = (0.01, 0.1)
    p_texture: float = 0.3
    texture_sd: Range = (0.05, 0.2)  #: multiplicative, correlated over texture_sigma
    texture_sigma: Range = (0.004, 0.015)  #: fraction of S
    p_ghost: float = 0.2
    ghost_amplitude: Range = (0.05, 0.2)
    p_coarse_grid: float = 0.3
    coarse_grid: Range = (0.35, 1.0)  #: stored matrix / model grid (256: 90-256 stored pixels across)

    def __call__(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment a batch; returns new arrays (``x`` float32, ``y`` in its own dtype), shapes unchanged."""
        if x.ndim != 4 or y.ndim != 4 or x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
            raise ValueError(f"expected x [N, C, S, S] and y [N, K, S, S], got {x.shape} and {y.shape}")
        xo = np.empty(x.shape, np.float32)
        yo = np.empty_like(y)
        for i in range(x.shape[0]):
            xo[i], yo[i] = self.one(np.asarray(x[i], np.float32), y[i], rng)
        return xo, yo

    def one(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment one slice: ``x`` [C, S, S], ``y`` [K, S, S] (every target channel gets the same warp)."""
        u = lambda r: float(rng.uniform(*r))  # noqa: E731
        size = x.shape[-2:]
        s = float(min(size))
        affine = rng.uniform() < self.p_affine
        elastic = rng.uniform() < self.p_elastic
        x = x.copy()
        if affine or elastic:
            angle = u((-self.rotation_deg, self.rotation_deg)) if affine else 0.0
            zoom = u(self.zoom) if affine else 1.0
            shift = (u((-self.shift_frac, self.shift_frac)) * s, u((-self.shift_frac, self.shift_frac)) * s) \
                if affine else (0.0, 0.0)
            field = elastic_field(rng, size, u(self.elastic_sd) * s, u(self.elastic_scale) * s) if elastic else None
            mx, my = warp_maps(size, angle, zoom, shift, field)
            x, y = remap_pair(x, y, mx, my)
        stiff = [c for c in self.stiffness_channels if c < x.shape[0]]
        support = x[stiff] > 0
        if rng.uniform() < self.p_intensity:
            x[stiff] = intensity_scale_shift(x[stiff], u(self.scale), u(self.shift), support)
        if rng.uniform() < self.p_gamma:
            x[stiff] = gamma(x[stiff], u(self.gamma))
        if rng.uniform() < self.p_blur:
            x[stiff] = gaussian_blur(x[stiff], u(self.blur_sigma) * s)
        if rng.uniform() < self.p_noise:
            x[stiff] = gaussian_noise(x[stiff], u(self.noise_sd), rng, support)
        for c, m in self.masked_by:
            if c < x.shape[0] and m < x.shape[0]:
                x[c] = np.where(x[m] > 0, x[c], 0.0)
        for c in self.magnitude_channels:  # after the slice's other draws: its other planes are augmented as without
            if c < x.shape[0]:
                x[c] = self.magnitude(x[c], rng)
        if self.p_coarse_grid > 0 and rng.uniform() < self.p_coarse_grid:  # last: the earlier draws are unchanged
            x = coarse_grid(x, u(self.coarse_grid))
        return np.clip(x, 0.0, 1.0).astype(np.float32), y

    def magnitude(self, m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one magnitude plane [S, S] (module docstring: why each step); zeros when dropped."""
        if rng.uniform() < self.p_magnitude_drop or not m.any():
            return np.zeros_like(m, dtype=np.float32)
        u = lambda r: float(rng.uniform(*r))  # noqa: E731
        s = float(min(m.shape))
        m = m.astype(np.float32)
        low, high = u(self.magnitude_low), u(self.magnitude_high)
        m = np.clip((m - low) / max(high - low, 1e-3), 0.0, 1.0)
        if rng.uniform() < self.p_magnitude_gamma:
            m = gamma(m, u(self.magnitude_gamma))
        if rng.uniform() < self.p_bias:
            m = m * bias_field(rng, m.shape, u(self.bias_log_sd), u(self.bias_scale) * s)
        if rng.uniform() < self.p_texture:
            tex = gaussian_blur(rng.standard_normal(m.shape).astype(np.float32), u(self.texture_sigma) * s)
            tex = tex / max(float(tex.std()), 1e-6)
            m = m * np.clip(1.0 + u(self.texture_sd) * tex, 0.0, None)
        if rng.uniform() < self.p_ghost:
            axis = int(rng.integers(2))
            m = m + u(self.ghost_amplitude) * np.roll(m, m.shape[axis] // 2, axis=axis)
        if rng.uniform() < self.p_magnitude_blur:
            m = gaussian_blur(m, u(self.magnitude_blur_sigma) * s)
        if rng.uniform() < self.p_rician:
            sd = u(self.rician_sd)
            m = np.sqrt((m + rng.normal(0.0, sd, m.shape)) ** 2 + rng.normal(0.0, sd, m.shape) ** 2)
        return normalised_magnitude(m.astype(np.float32), m.shape)


def intensity_scale_shift(img: np.ndarray, scale: float, shift: float, support: np.ndarray | None = None) -> np.ndarray:
    """``clip(img * scale + shift, 0, 1)`` where ``support`` (default: ``img > 0``); 0 stays 0 elsewhere.

    >>> [round(v, 5) for v in intensity_scale_shift(np.array([0.0, 0.5], np.float32), 1.2, 0.1).tolist()]
    [0.0, 0.7]
    """
    support = img > 0 if support is None else support
    return np.where(support, np.clip(img * scale + shift, 0.0, 1.0), 0.0).astype(np.float32)


def gamma(img: np.ndarray, g: float) -> np.ndarray:
    """``img ** g`` on [0, 1] (0 and 1 are fixed points)."""
    return np.power(np.clip(img, 0.0, 1.0), g).astype(np.float32)


def gaussian_blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of each ``[..., H, W]`` plane (OpenCV, reflected borders)."""
    if sigma_px <= 0:
        return img.astype(np.float32)
    flat = img.reshape(-1, *img.shape[-2:]).astype(np.float32)
    out = np.stack([cv2.GaussianBlur(p, (0, 0), sigma_px) for p in flat])
    return out.reshape(img.shape)


def gaussian_noise(img: np.ndarray, sd: float, rng: np.random.Generator,
                   support: np.ndarray | None = None) -> np.ndarray:
    """Add one N(0, sd) field (the same for every plane, as the planes show one map) where ``support``."""
    support = img > 0 if support is None else support
    noise = rng.normal(0.0, sd, img.shape[-2:]).astype(np.float32)
    return np.where(support, np.clip(img + noise, 0.0, 1.0), img).astype(np.float32)


def coarse_grid(x: np.ndarray, factor: float) -> np.ndarray:
    """Every plane of ``x`` [C, S, S] as if stored on a grid ``factor`` times as fine (area-averaged down, then
    bilinear back up, as the model input is made from a coarse stored matrix)."""
    size = x.shape[-2:]
    small = (max(8, int(round(size[1] * factor))), max(8, int(round(size[0] * factor))))
    if small[0] >= size[1] and small[1] >= size[0]:
        return x.astype(np.float32)
    return np.stack([cv2.resize(cv2.resize(p.astype(np.float32), small, interpolation=cv2.INTER_AREA),
                                (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for p in x]).astype(np.float32)


def bias_field(rng: np.random.Generator, size: tuple[int, int], log_sd: float, scale_px: float) -> np.ndarray:
    """A smooth positive multiplicative field, float32 [H, W]: ``exp`` of a smooth Gaussian field with SD
    ``log_sd`` and correlation length about ``scale_px`` (a receive coil's sensitivity profile)."""
    h, w = size
    coarse = (max(2, int(math.ceil(h / scale_px)) + 1), max(2, int(math.ceil(w / scale_px)) + 1))
    low = rng.standard_normal(coarse).astype(np.float32)
    big = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    big = (big - big.mean()) / max(float(big.std()), 1e-6)
    return np.exp(log_sd * big).astype(np.float32)


def elastic_field(rng: np.random.Generator, size: tuple[int, int], sd_px: float, scale_px: float) -> np.ndarray:
    """Smooth random displacement, float32 [2, H, W] (dx, dy) in pixels with SD ``sd_px``."""
    h, w = size
    coarse = (max(2, int(math.ceil(h / scale_px)) + 1), max(2, int(math.ceil(w / scale_px)) + 1))
    out = []
    for _ in range(2):
        low = rng.standard_normal(coarse).astype(np.float32)
        big = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        out.append((big - big.mean()) / max(float(big.std()), 1e-6) * sd_px)
    return np.stack(out).astype(np.float32)


def warp_maps(size: tuple[int, int], angle_deg: float, zoom: float, shift_px: tuple[float, float],
              field: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates for :func:`cv2.remap`: rotation by ``angle_deg`` and ``zoom`` about the centre,
    a shift, plus an optional displacement ``field`` [2, H, W]. A proper rotation: never a reflection."""
    if zoom <= 0:
        raise ValueError("zoom must be positive (a negative zoom would flip the image)")
    h, w = size
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    a = math.radians(angle_deg)
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    dx, dy = xx - cx - shift_px[0], yy - cy - shift_px[1]
    mx = c * dx - s * dy + cx
    my = s * dx + c * dy + cy
    if field is not None:
        mx, my = mx + field[0], my + field[1]
    return mx.astype(np.float32), my.astype(np.float32)


def remap_pair(x: np.ndarray, y: np.ndarray, mx: np.ndarray, my: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``x`` [C, H, W] bilinearly and ``y`` [K, H, W] nearest-neighbour with the same maps (zeros outside)."""
    xs = [cv2.remap(p.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
          for p in x]
    ys = [cv2.remap(np.ascontiguousarray(p).astype(np.float32), mx, my, cv2.INTER_NEAREST,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0) for p in y]
    return np.stack(xs).astype(np.float32), np.stack(ys).astype(y.dtype)
