"""Shear-wave physics for one MRE phantom slice: wave solve, acquisition, scanner-side inversion.

Real elastograms are the output of an inversion of measured wave images, not a picture of the
true stiffness. :func:`simulate_slice` turns a TRUE stiffness map into what a scanner stores:

1. **Wave solve** (:func:`solve_displacement`): the time-harmonic through-plane displacement
   ``u`` of a shear wave obeys the 2D scalar heterogeneous Helmholtz equation
   ``div(G* grad u) + rho w^2 u = 0`` (Muthupillai et al. 1995; Manduca et al. 2021). It is
   discretised with a 5-point finite-volume stencil (harmonic-mean face moduli) and solved with
   a sparse direct LU (SuperLU).
2. **Acquisition** (:func:`acquire`): four phase offsets ``t = kT/4`` give wave images
   ``phi_k = s * Re(u e^{i 2 pi k / 4})`` (``s`` = motion-encoding sensitivity, rad/um) plus MR
   noise, and a Rician magnitude image.
3. **Inversion** (:mod:`mre_core.phantom.inversion`): first temporal harmonic, band-pass,
   local algebraic Helmholtz inversion (AHI; Oliphant et al. 2001) and a 0-1000 confidence map.

Conventions
-----------
* Image axes: rows top->bottom = patient anterior->posterior; columns left->right = patient
  RIGHT->LEFT (radiological convention: the patient's right is on the image left).
* Time convention ``u(x, t) = Re(U(x) e^{+i w t})``, ``w = 2 pi f``.
* MRE "stiffness" is the magnitude of the complex shear modulus, ``|G*|`` (Manduca et al. 2021).
  ``stiffness_kpa`` inputs and outputs are ``|G*|`` in kPa; the solver uses
  ``G* = |G*| (1 + i eta) / sqrt(1 + eta^2)`` with the loss factor ``eta = G''/G'``.
  With ``e^{+iwt}`` and ``eta > 0`` waves decay as they travel.
* Displacement is in micrometres (through-plane component, a scalar).
* Outside ``body`` is air: it carries no unknowns and the body/air faces are traction-free
  (zero flux, the physical free-surface condition); the stored displacement there is 0.
* The driver is a Dirichlet condition ``u = A e^{i phi}`` on the ``driver`` pixels (the
  passive driver pad imposes the motion of the body wall under it).
* Where the body touches the image edge, the grid is padded with a perfectly matched layer
  (complex coordinate stretching ``s = 1 - i sigma / w``, quadratic profile) so waves leave the
  field of view instead of reflecting off the image border.

References
----------
Muthupillai R, et al. Magnetic resonance elastography by direct visualization of propagating
acoustic strain waves. Science 1995;269:1854-1857.
Oliphant TE, et al. Complex-valued stiffness reconstruction for magnetic resonance elastography
by algebraic inversion of the differential equation. Magn Reson Med 2001;45:299-310.
Manduca A, et al. MR elastography: principles, guidelines, and terminology. Magn Reson Med
2021;85:2377-2390.
Berenger JP. A perfectly matched layer for the absorption of electromagnetic waves.
J Comput Phys 1994;114:185-200.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mre_core.phantom.inversion import invert

__all__ = [
    "PhysicsParams",
    "SimulatedSlice",
    "acquire",
    "anterior_driver",
    "complex_modulus_pa",
    "shear_wavelength_mm",
    "simulate_slice",
    "solve_displacement",
]


@dataclass(frozen=True)
class PhysicsParams:
    """Settings of the wave solve, the acquisition and the inversion (units in the names).

    Attributes
    ----------
    frequency_hz : float
        Driver frequency (60 Hz: the clinical liver standard).
    density_kg_m3 : float
        Tissue density, ~water.
    loss_factor : float
        ``eta = G''/G'``; 0.25 is typical for liver at 60 Hz (damping ratio ~0.12).
    driver_amplitude_um, driver_phase_rad : float
        Dirichlet displacement ``A e^{i phi}`` imposed on the driver pixels.
    encoding_rad_per_um : float
        Motion-encoding sensitivity; 25 um x 0.08 rad/um = 2 rad at the driver, so the stored
        (unwrapped) phase stays within +-pi.
    snr : float
        Per-pixel magnitude SNR of unit intensity tissue at the given pixel spacing (noise std =
        1/snr per real/imag channel); the phase noise std is ~1/(snr * intensity) rad.
    lowpass_sigma_mm, lowcut_sigma_mm : float
        Gaussian low-pass, and Gaussian low-cut (field minus its smooth), of the band-pass filter.
    window_sigma_mm : float
        Gaussian window of the local AHI fit (about a fifth of a 2.5 kPa wavelength, 26 mm).
    stiffness_min_kpa, stiffness_max_kpa : float
        Clipping range of the stored elastogram.
    confidence_snr_knee : float
        ``kappa``: band-passed wave SNR at which the amplitude term of the confidence is 0.5. With
        ``p = 2``, 5 gives a 95 % region of ~10 % of a 300 x 220 mm abdomen at 1.7 mm pixels
        (~7 % at 2.6 mm) with an 80 mm right-anterior driver; raise it to shrink the region.
    confidence_fit_power : float
        ``p``: exponent on the local fit coherence ``R^2`` (larger: a stricter 95 % region).
    pml_width_mm, pml_reflection : float
        Absorbing layer width and target round-trip reflection (used only where the body touches
        the image edge).
    """

    frequency_hz: float = 60.0
    density_kg_m3: float = 1000.0
    loss_factor: float = 0.25
    driver_amplitude_um: float = 25.0
    driver_phase_rad: float = 0.0
    encoding_rad_per_um: float = 0.08
    snr: float = 30.0
    lowpass_sigma_mm: float = 3.0
    lowcut_sigma_mm: float = 25.0
    window_sigma_mm: float = 5.0
    stiffness_min_kpa: float = 0.1
    stiffness_max_kpa: float = 15.0
    confidence_snr_knee: float = 5.0
    confidence_fit_power: float = 2.0
    pml_width_mm: float = 30.0
    pml_reflection: float = 1e-3


@dataclass(frozen=True, eq=False)
class SimulatedSlice:
    """What a scanner stores for one slice, plus the true field.

    Attributes
    ----------
    wave_images : float32[4, H, W]
        Unwrapped phase (rad) at offsets t = 0, T/4, T/2, 3T/4.
    magnitude : float32[H, W]
        Magnitude image (arbitrary units, unit tissue ~1), Rician noise.
    stiffness_kpa : float32[H, W]
        Inverted elastogram ``|G*|`` in kPa, 0 outside the body.
    confidence_permille : int16[H, W]
        Inversion confidence 0-1000; the 95 % confidence region is ``>= 950``; 0 outside the body.
    displacement : complex64[H, W]
        True complex displacement (um), 0 outside the body.
    params : PhysicsParams
    pixel_spacing_mm : float
    """

    wave_images: np.ndarray
    magnitude: np.ndarray
    stiffness_kpa: np.ndarray
    confidence_permille: np.ndarray
    displacement: np.ndarray
    params: PhysicsParams = field(default_factory=PhysicsParams)
    pixel_spacing_mm: float = 1.7


def shear_wavelength_mm(stiffness_kpa: float, frequency_hz: float = 60.0, density_kg_m3: float = 1000.0,
                        loss_factor: float = 0.0) -> float:
    """Shear wavelength (mm) for ``|G*|`` in kPa: ``(1/f) sqrt(|G*|/rho) / cos(delta/2)``, tan(delta) = eta."""
    delta = np.arctan(loss_factor)
    return float(1e3 / frequency_hz * np.sqrt(stiffness_kpa * 1e3 / density_kg_m3) / np.cos(delta / 2))


def complex_modulus_pa(stiffness_kpa: np.ndarray, loss_factor: float) -> np.ndarray:
    """``G* = |G*| (1 + i eta) / sqrt(1 + eta^2)`` in Pa (complex128[H, W]) from ``|G*|`` in kPa."""
    mag = np.maximum(np.asarray(stiffness_kpa, dtype=np.float64), 1e-3) * 1e3
    return mag * (1.0 + 1j * loss_factor) / np.sqrt(1.0 + loss_factor**2)


def _edge_pads(body: np.ndarray, n: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """PML width (pixels) on each side where the body touches that image edge, else 0."""
    touch = (body[0].any(), body[-1].any(), body[:, 0].any(), body[:, -1].any())
    top, bottom, left, right = (n if t else 0 for t in touch)
    return (top, bottom), (left, right)


def _stretch_1d(length: int, pads: tuple[int, int], strength: float) -> np.ndarray:
    """PML stretch ``s = 1 - i a (d/n)^2`` along one padded axis (complex128[length])."""
    d = np.zeros(length)
    lo, hi = pads
    idx = np.arange(length)
    if lo:
        d = np.where(idx < lo, (lo - idx) / lo, d)
    if hi:
        d = np.where(idx >= length - hi, (idx - (length - hi - 1)) / hi, d)
    return 1.0 - 1j * strength * d**2


def _harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Harmonic mean of two (complex) face-adjacent coefficients."""
    return 2.0 * a * b / (a + b)


def _faces(body: np.ndarray, coef: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body-body faces along ``axis``: flat indices of both cells and the face coefficient."""
    flat = np.arange(body.size).reshape(body.shape)
    lo = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(None, -1))
    hi = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
    ok = body[lo] & body[hi]
    return flat[lo][ok], flat[hi][ok], _harmonic(coef[lo], coef[hi])[ok]


def _operator(gstar: np.ndarray, body: np.ndarray, s0: np.ndarray, s1: np.ndarray,
              mass: float) -> sp.csr_matrix:
    """Finite-volume matrix of ``div(G* grad u) + rho w^2 u`` (times h^2/G_ref) on all cells."""
    c0 = gstar * (s1[None, :] / s0[:, None])
    c1 = gstar * (s0[:, None] / s1[None, :])
    rows, cols, vals = [], [], []
    for axis, coef in ((0, c0), (1, c1)):
        a, b, f = _faces(body, coef, axis)
        rows += [a, b, a, b]
        cols += [b, a, a, b]
        vals += [f, f, -f, -f]
    diag = (mass * s0[:, None] * s1[None, :] * body).ravel()
    n = body.size
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    return sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n)).tocsr()


def _pml_strength(stiffness_kpa: np.ndarray, body: np.ndarray, width_m: float, omega: float,
                  density: float, reflection: float) -> float:
    """PML strength ``a`` for round-trip reflection R of the longest wave: ``3 ln(1/R) / (2 k L)``."""
    g_max = float(np.max(stiffness_kpa[body])) * 1e3 if body.any() else 1e3
    k_min = omega * np.sqrt(density / g_max)
    return float(min(3.0 * np.log(1.0 / reflection) / (2.0 * k_min * width_m), 20.0))


def solve_displacement(stiffness_kpa: np.ndarray, body: np.ndarray, driver: np.ndarray, pixel_spacing_mm: float,
                       params: PhysicsParams | None = None) -> np.ndarray:
    """Solve ``div(G* grad u) + rho w^2 u = 0`` on the body with ``u = A e^{i phi}`` on the driver.

    Parameters
    ----------
    stiffness_kpa : float32[H, W]
        True ``|G*|`` in kPa (only values inside ``body`` matter).
    body, driver : bool[H, W]
        Tissue mask and driver pixels (``driver`` is intersected with ``body``).
    pixel_spacing_mm : float
        Isotropic in-plane pixel spacing.
    params : PhysicsParams, optional
        Uses ``frequency_hz, density_kg_m3, loss_factor, driver_*, pml_*``.

    Returns
    -------
    complex64[H, W]
        Displacement in um (``e^{+iwt}`` convention), 0 outside the body.
    """
    p = params or PhysicsParams()
    body = np.asarray(body, bool)
    drv = np.asarray(driver, bool) & body
    h = pixel_spacing_mm * 1e-3
    omega = 2.0 * np.pi * p.frequency_hz
    n_pml = max(round(float(p.pml_width_mm / pixel_spacing_mm)), 4)
    pads = _edge_pads(body, n_pml)
    bp, dp = np.pad(body, pads, mode="edge"), np.pad(drv, pads, mode="constant")
    stiff = np.where(body, np.nan_to_num(np.asarray(stiffness_kpa, np.float64), nan=1.0), 1.0)
    gp = np.pad(complex_modulus_pa(stiff, p.loss_factor), pads, mode="edge")
    g_ref = float(np.median(np.abs(gp[bp]))) if bp.any() else 1e3
    a = _pml_strength(stiff, body, n_pml * h, omega, p.density_kg_m3, p.pml_reflection)
    s0, s1 = _stretch_1d(bp.shape[0], pads[0], a), _stretch_1d(bp.shape[1], pads[1], a)
    op = _operator(gp / g_ref, bp, s0, s1, p.density_kg_m3 * omega**2 * h**2 / g_ref)
    free, known = np.flatnonzero(bp & ~dp), np.flatnonzero(dp)
    u = np.zeros(bp.size, dtype=np.complex128)
    u[known] = p.driver_amplitude_um * np.exp(1j * p.driver_phase_rad)
    if free.size:
        rhs = -(op[free][:, known] @ u[known])
        lu = spla.splu(op[free][:, free].tocsc(), permc_spec="MMD_AT_PLUS_A")
        u[free] = lu.solve(rhs)
    u = u.reshape(bp.shape)[pads[0][0]:bp.shape[0] - pads[0][1], pads[1][0]:bp.shape[1] - pads[1][1]]
    return (u * body).astype(np.complex64)


def acquire(displacement_um: np.ndarray, body: np.ndarray, rng: np.random.Generator, params: PhysicsParams | None = None,
            intensity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Four-offset phase-contrast wave images and a magnitude image with MR noise.

    Each offset k is a complex MR image ``z_k = I + n_k`` (``n_k`` complex Gaussian, std ``1/snr`` per
    channel, drawn in the frame of the signal phase, which is statistically identical). The stored
    phase is ``s Re(u e^{i 2 pi k/4}) + angle(z_k)``: at high SNR the added phase noise is Gaussian
    with std ``1/(snr I)`` rad, at zero signal (air) it is uniform on (-pi, pi]. The magnitude is
    ``mean_k |z_k|`` (Rician).

    Parameters
    ----------
    displacement_um : complex[H, W]
    body : bool[H, W]
    rng : numpy.random.Generator
    params : PhysicsParams, optional
        Uses ``encoding_rad_per_um`` and ``snr``.
    intensity : float[H, W], optional
        Noise-free T2*-weighted tissue intensity (unit tissue ~1); default: blurred body mask.

    Returns
    -------
    wave_images : float32[4, H, W]
        Phase in radians (unwrapped signal plus noise).
    magnitude : float32[H, W]
    """
    p = params or PhysicsParams()
    body = np.asarray(body, bool)
    if intensity is None:
        intensity = ndi.gaussian_filter(body.astype(np.float64), 0.75)
    signal = np.clip(np.asarray(intensity, np.float64), 0.0, None) * body
    theta = 2.0 * np.pi * np.arange(4) / 4.0
    clean = p.encoding_rad_per_um * np.real(np.asarray(displacement_um)[None] * np.exp(1j * theta)[:, None, None])
    shape = (4,) + body.shape
    z = signal[None] + (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / p.snr
    wave = clean + np.angle(z)
    return wave.astype(np.float32), np.abs(z).mean(axis=0).astype(np.float32)


def anterior_driver(body: np.ndarray, side: Literal["right", "left", "center"] = "right", width_mm: float = 80.0,
                    pixel_spacing_mm: float = 1.7, depth_mm: float = 3.0, center_fraction: float = 0.3) -> np.ndarray:
    """Driver pixels: the anterior body wall over ``width_mm`` (left-right), ``depth_mm`` deep.

    Rows top->bottom are anterior->posterior, so the anterior wall is the first body pixel of
    each column. Columns run patient RIGHT->LEFT (radiological), so ``side="right"`` centres the
    driver ``center_fraction`` of the body width in from the image-LEFT body edge.

    Returns
    -------
    bool[H, W]
    """
    body = np.asarray(body, bool)
    cols = np.flatnonzero(body.any(axis=0))
    if cols.size == 0:
        return np.zeros_like(body)
    c_lo, c_hi = cols[0], cols[-1]
    frac = {"right": center_fraction, "left": 1.0 - center_fraction, "center": 0.5}[side]
    center = c_lo + frac * (c_hi - c_lo)
    in_width = np.abs(np.arange(body.shape[1]) - center) <= width_mm / (2.0 * pixel_spacing_mm)
    first = body.argmax(axis=0)
    depth = max(round(float(depth_mm / pixel_spacing_mm)), 1)
    rows = np.arange(body.shape[0])[:, None]
    return (rows >= first) & (rows < first + depth) & body & (in_width & body.any(axis=0))[None, :]


def simulate_slice(stiffness_kpa: np.ndarray, body: np.ndarray, driver: np.ndarray, pixel_spacing_mm: float,
                   rng: np.random.Generator, params: PhysicsParams | None = None,
                   intensity: np.ndarray | None = None) -> SimulatedSlice:
    """True stiffness -> wave solve -> 4-offset acquisition -> scanner inversion (see module doc).

    Parameters
    ----------
    stiffness_kpa : float32[H, W]
        True ``|G*|`` (kPa).
    body, driver : bool[H, W]
    pixel_spacing_mm : float
    rng : numpy.random.Generator
        The only source of randomness (noise).
    params : PhysicsParams, optional
    intensity : float[H, W], optional
        Noise-free magnitude (T2*-like tissue intensities); default: body mask.

    Returns
    -------
    SimulatedSlice
    """
    p = params or PhysicsParams()
    body = np.asarray(body, bool)
    u = solve_displacement(stiffness_kpa, body, driver, pixel_spacing_mm, p)
    wave, mag = acquire(u, body, rng, p, intensity)
    inv = invert(wave, body, pixel_spacing_mm, frequency_hz=p.frequency_hz, density_kg_m3=p.density_kg_m3,
                 lowpass_sigma_mm=p.lowpass_sigma_mm, lowcut_sigma_mm=p.lowcut_sigma_mm,
                 window_sigma_mm=p.window_sigma_mm, stiffness_range_kpa=(p.stiffness_min_kpa, p.stiffness_max_kpa),
                 confidence_snr_knee=p.confidence_snr_knee, confidence_fit_power=p.confidence_fit_power)
    return SimulatedSlice(wave_images=wave, magnitude=mag, stiffness_kpa=inv.stiffness_kpa,
                          confidence_permille=inv.confidence_permille, displacement=u, params=p,
                          pixel_spacing_mm=float(pixel_spacing_mm))
