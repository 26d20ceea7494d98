"""Scanner-side MRE inversion: first harmonic, band-pass, local algebraic Helmholtz inversion, confidence.

Mirrors what vendor MRE software does with four phase-offset wave images (Manduca et al. 2021):

1. **First temporal harmonic** ``U = (1/2) sum_k phi_k e^{-i 2 pi k/4}`` (FFT along the offsets; for
   ``phi_k = s Re(u e^{i 2 pi k/4})`` this gives exactly ``U = s u``).
2. **Band-pass**: normalised (mask-aware) Gaussian low-pass ``sigma_lp`` and a low-cut that subtracts
   the normalised Gaussian smooth at ``sigma_lc``. Both are linear shift-invariant in the interior, so
   a locally plane wave keeps its wavenumber (the ratio ``lap U / U`` is unbiased); near the body
   edge the normalisation truncates the support, which produces realistic edge artefacts.
3. **Local AHI** (Oliphant et al. 2001): in a homogeneous patch ``G* lap U = -rho w^2 U``; the
   least-squares estimate over a Gaussian window ``W`` is
   ``G* = -rho w^2 sum_W conj(L) U / sum_W |L|^2`` with ``L`` the 5-point Laplacian (1/m^2) of the
   band-passed field. The elastogram is ``|G*|`` in kPa, clipped, 0 outside the body.
4. **Confidence** (per mille):
   ``C = 1000 * (R^2)^p * SNR^2 / (SNR^2 + kappa^2)`` where
   ``R^2 = |sum_W conj(L) U|^2 / (sum_W |L|^2 sum_W |U|^2)`` in [0, 1] is the coherence of the local
   Helmholtz fit (1 = measured Laplacian exactly proportional to the field, i.e. zero residual;
   the relative residual of the fit is ``1 - R^2``), and ``SNR = rms_W(U_bp) / (g sigma_n)`` is the
   local band-passed wave amplitude over the noise std left after the band-pass: ``sigma_n`` is the
   local noise std of the raw harmonic, estimated from the data with Immerkaer's (1996) 3x3 noise
   operator, and ``g = 1 / (2 sqrt(pi) sigma_lp[px])`` the noise gain of the Gaussian low-pass.
   ``SNR^2 / (SNR^2 + kappa^2)`` is the signal fraction of the local power for ``kappa = 1``;
   ``kappa`` (default 5) and ``p`` (default 2) set how strict the region is. The 95 % confidence
   region is ``C >= 950``: it needs at least ``R^2 >= 0.975`` and ``SNR >= 4.4 kappa``.

References
----------
Oliphant TE, et al. Complex-valued stiffness reconstruction for magnetic resonance elastography by
algebraic inversion of the differential equation. Magn Reson Med 2001;45:299-310.
Manduca A, et al. MR elastography: principles, guidelines, and terminology. Magn Reson Med 2021;85:2377-2390.
Immerkaer J. Fast noise variance estimation. Comput Vis Image Underst 1996;64:300-302.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi

__all__ = [
    "Inversion",
    "bandpass",
    "confidence",
    "first_harmonic",
    "invert",
    "laplacian",
    "local_ahi",
    "noise_std",
]

_IMMERKAER = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


@dataclass(frozen=True, eq=False)
class Inversion:
    """Inversion output.

    Attributes
    ----------
    stiffness_kpa : float32[H, W]
        ``|G*|`` (kPa), clipped, 0 outside the body.
    confidence_permille : int16[H, W]
        0-1000, 0 outside the body.
    modulus_kpa : complex64[H, W]
        Unclipped complex ``G*`` estimate (kPa), 0 outside the body.
    wave_field : complex64[H, W]
        Band-passed first harmonic (rad).
    """

    stiffness_kpa: np.ndarray
    confidence_permille: np.ndarray
    modulus_kpa: np.ndarray
    wave_field: np.ndarray


def first_harmonic(wave_images: np.ndarray) -> np.ndarray:
    """``U = (1/2) FFT_k(phi_k)[1]``: complex128[H, W] from float[4, H, W] (N offsets, any N >= 3)."""
    w = np.asarray(wave_images, dtype=np.float64)
    return np.fft.fft(w, axis=0)[1] * (2.0 / w.shape[0])


def _masked_smooth(field: np.ndarray, weight: np.ndarray, sigma_px: float) -> np.ndarray:
    """Normalised convolution ``g*(w f) / g*(w)``; 0 where the smoothed weight vanishes."""
    num = ndi.gaussian_filter(field * weight, sigma_px, mode="constant")
    den = ndi.gaussian_filter(weight, sigma_px, mode="constant")
    return np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0)


def bandpass(field: np.ndarray, body: np.ndarray, pixel_spacing_mm: float, lowpass_sigma_mm: float,
             lowcut_sigma_mm: float) -> np.ndarray:
    """Mask-aware Gaussian band-pass of a complex field (complex128[H, W], same units)."""
    m = np.asarray(body, np.float64)
    low = _masked_smooth(field, m, lowpass_sigma_mm / pixel_spacing_mm)
    if lowcut_sigma_mm <= 0:
        return low
    return low - _masked_smooth(low, m, lowcut_sigma_mm / pixel_spacing_mm)


def laplacian(field: np.ndarray, pixel_spacing_mm: float) -> np.ndarray:
    """5-point Laplacian in 1/m^2 (edge values replicated at the image border)."""
    f = np.pad(field, 1, mode="edge")
    lap = f[:-2, 1:-1] + f[2:, 1:-1] + f[1:-1, :-2] + f[1:-1, 2:] - 4.0 * f[1:-1, 1:-1]
    return lap / (pixel_spacing_mm * 1e-3) ** 2


def local_ahi(field: np.ndarray, lap: np.ndarray, body: np.ndarray, window_sigma_px: float, omega: float,
              density_kg_m3: float) -> tuple[np.ndarray, np.ndarray]:
    """Windowed least-squares ``G* = -rho w^2 <conj(L) U> / <|L|^2>`` (Pa) and fit coherence ``R^2``.

    Returns
    -------
    modulus_pa : complex128[H, W]
    coherence : float64[H, W]
        ``|<conj(L) U>|^2 / (<|L|^2> <|U|^2>)`` in [0, 1].
    """
    m = np.asarray(body, np.float64)
    cross = ndi.gaussian_filter(m * np.conj(lap) * field, window_sigma_px, mode="constant")
    ll = ndi.gaussian_filter(m * np.abs(lap) ** 2, window_sigma_px, mode="constant")
    uu = ndi.gaussian_filter(m * np.abs(field) ** 2, window_sigma_px, mode="constant")
    tiny = np.finfo(np.float64).tiny
    modulus = -density_kg_m3 * omega**2 * cross / np.maximum(ll, tiny)
    coherence = np.abs(cross) ** 2 / np.maximum(ll * uu, tiny)
    return modulus, np.clip(coherence, 0.0, 1.0)


def noise_std(field: np.ndarray, body: np.ndarray, sigma_px: float) -> np.ndarray:
    """Local noise std of a complex field (Immerkaer operator, norm 6), float64[H, W].

    Only pixels whose 3x3 neighbourhood lies in the body contribute; the local mean square of the
    operator output is smoothed with a Gaussian of ``sigma_px``; the global median fills gaps.
    """
    inner = ndi.binary_erosion(body, np.ones((3, 3), bool)).astype(np.float64)
    resp = ndi.convolve(field.real, _IMMERKAER, mode="nearest") + 1j * ndi.convolve(field.imag, _IMMERKAER,
                                                                                     mode="nearest")
    var = _masked_smooth(np.abs(resp) ** 2 / 36.0, inner, sigma_px)
    fill = float(np.median(var[inner > 0])) if inner.any() else 1.0
    var = np.where(var > 0, var, fill)
    return np.sqrt(np.maximum(var, 1e-30))


def confidence(coherence: np.ndarray, wave_snr: np.ndarray, snr_knee: float, fit_power: float) -> np.ndarray:
    """``1000 (R^2)^p SNR^2 / (SNR^2 + kappa^2)`` (float64[H, W], 0-1000)."""
    amp = wave_snr**2 / (wave_snr**2 + snr_knee**2)
    return 1000.0 * coherence**fit_power * amp


def invert(wave_images: np.ndarray, body: np.ndarray, pixel_spacing_mm: float, *, frequency_hz: float = 60.0,
           density_kg_m3: float = 1000.0, lowpass_sigma_mm: float = 3.0, lowcut_sigma_mm: float = 25.0,
           window_sigma_mm: float = 5.0, stiffness_range_kpa: tuple[float, float] = (0.1, 15.0),
           confidence_snr_knee: float = 5.0, confidence_fit_power: float = 2.0) -> Inversion:
    """Elastogram and confidence map from float[N, H, W] phase-offset wave images (rad); see module doc.

    Parameters
    ----------
    wave_images : float[N, H, W]
        N >= 3 equally spaced phase offsets over one period (rad).
    body : bool[H, W]
        Region to invert (the whole body section; not only the liver).
    pixel_spacing_mm : float
    frequency_hz, density_kg_m3 : float
    lowpass_sigma_mm, lowcut_sigma_mm, window_sigma_mm : float
        Band-pass and AHI window widths (Gaussian sigmas, mm).
    stiffness_range_kpa : (float, float)
        Clip range of the stored elastogram.
    confidence_snr_knee, confidence_fit_power : float
        ``kappa`` and ``p`` of the confidence formula.

    Returns
    -------
    Inversion
    """
    body = np.asarray(body, bool)
    omega = 2.0 * np.pi * frequency_hz
    raw = first_harmonic(wave_images)
    u = bandpass(raw, body, pixel_spacing_mm, lowpass_sigma_mm, lowcut_sigma_mm)
    lap = laplacian(u, pixel_spacing_mm)
    win = window_sigma_mm / pixel_spacing_mm
    modulus, coherence = local_ahi(u, lap, body, win, omega, density_kg_m3)
    amp = np.sqrt(_masked_smooth(np.abs(u) ** 2, body.astype(np.float64), win))
    gain = 1.0 / (2.0 * np.sqrt(np.pi) * max(lowpass_sigma_mm / pixel_spacing_mm, 0.5))
    snr = amp / (gain * noise_std(raw, body, 2.0 * win))
    conf = confidence(coherence, snr, confidence_snr_knee, confidence_fit_power)
    lo, hi = stiffness_range_kpa
    stiff = np.clip(np.abs(modulus) / 1e3, lo, hi)
    stiff = np.where(body & np.isfinite(stiff), stiff, 0.0)
    conf = np.where(body & np.isfinite(conf), np.rint(conf), 0.0)
    return Inversion(stiffness_kpa=stiff.astype(np.float32), confidence_permille=conf.astype(np.int16),
                     modulus_kpa=np.where(body, modulus / 1e3, 0).astype(np.complex64),
                     wave_field=u.astype(np.complex64))
