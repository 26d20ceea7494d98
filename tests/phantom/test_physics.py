"""Physics checks of the MRE slice simulation: wave solve, acquisition, inversion, confidence.

Grids are <= 128 x 128 so the whole file runs in seconds on a small CPU.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.ndimage as ndi

from mre_core.phantom.inversion import first_harmonic, invert
from mre_core.phantom.physics import (
    PhysicsParams,
    SimulatedSlice,
    anterior_driver,
    shear_wavelength_mm,
    simulate_slice,
    solve_displacement,
)

N = 128


def _ellipse(shape: tuple[int, int], center: tuple[float, float], semi_rows: float, semi_cols: float) -> np.ndarray:
    r, c = np.mgrid[: shape[0], : shape[1]]
    return ((r - center[0]) / semi_rows) ** 2 + ((c - center[1]) / semi_cols) ** 2 <= 1.0


def _distance_mm(mask: np.ndarray, h: float) -> np.ndarray:
    """Euclidean distance (mm) of every pixel to the nearest pixel of ``mask``."""
    return ndi.distance_transform_edt(~mask) * h


@dataclasses.dataclass(frozen=True)
class Case:
    truth: np.ndarray
    body: np.ndarray
    driver: np.ndarray
    h: float
    params: PhysicsParams
    sim: SimulatedSlice


def _disc_case(truth_kpa: np.ndarray, h: float, params: PhysicsParams, seed: int = 0) -> Case:
    body = _ellipse((N, N), (N / 2, N / 2), 120 / h, 120 / h)
    driver = anterior_driver(body, "center", 80.0, h)
    sim = simulate_slice(truth_kpa.astype(np.float32), body, driver, h, np.random.default_rng(seed), params)
    return Case(truth_kpa, body, driver, h, params, sim)


@pytest.fixture(scope="module")
def homogeneous() -> Case:
    """3 kPa disc (240 mm), low damping, 2 mm pixels, driver centred on the anterior wall."""
    return _disc_case(np.full((N, N), 3.0), 2.0, PhysicsParams(loss_factor=0.05))


@pytest.fixture(scope="module")
def two_region() -> Case:
    """2 kPa disc with a 6 kPa inclusion of 90 mm diameter (> 2 shear wavelengths of 41 mm) under the driver."""
    h = 2.0
    inclusion = _ellipse((N, N), (N / 2 - 120 / h + 65 / h, N / 2), 45 / h, 45 / h)
    return _disc_case(np.where(inclusion, 6.0, 2.0), h, PhysicsParams())


@pytest.fixture(scope="module")
def abdomen() -> Case:
    """Default abdomen: 300 x 220 mm ellipse (LR x AP), driver 80 mm on the anterior RIGHT wall."""
    h = 2.6  # 333 mm field of view on 128 px (the 1.7 mm clinical grid needs 256 px)
    body = _ellipse((N, N), (N / 2, N / 2), 110 / h, 150 / h)
    liver = _ellipse((N, N), (N / 2 - 20 / h, N / 2 - 60 / h), 70 / h, 80 / h) & body
    truth = np.where(liver, 2.5, 2.0)
    driver = anterior_driver(body, "right", 80.0, h)
    params = PhysicsParams()
    sim = simulate_slice(truth.astype(np.float32), body, driver, h, np.random.default_rng(1), params)
    return Case(truth, body, driver, h, params, sim)


def _interior(case: Case, min_depth_mm: float, max_depth_mm: float, edge_mm: float) -> np.ndarray:
    """Body pixels between two distances from the driver and at least ``edge_mm`` inside the body."""
    d = _distance_mm(case.driver, case.h)
    inside = ndi.distance_transform_edt(case.body) * case.h >= edge_mm
    return inside & (d >= min_depth_mm) & (d <= max_depth_mm)


def test_homogeneous_wavelength_matches_dispersion(homogeneous: Case) -> None:
    u = homogeneous.sim.displacement.astype(np.complex128)
    h = homogeneous.h
    expected = shear_wavelength_mm(3.0, 60.0, 1000.0, homogeneous.params.loss_factor)  # (1/f) sqrt(G/rho) = 28.9 mm
    top = int(np.argmax(homogeneous.body[:, N // 2]))
    rows = np.arange(top + int(20 / h), top + int(100 / h))
    slopes = []
    for col in range(N // 2 - 3, N // 2 + 4):  # phase along depth under the centre of the driver
        phase = np.unwrap(np.angle(u[rows, col]))
        slopes.append(np.polyfit(rows * h, phase, 1)[0])
    measured = 2 * np.pi / abs(float(np.mean(slopes)))
    assert measured == pytest.approx(expected, rel=0.10)


def test_homogeneous_inversion_recovers_stiffness(homogeneous: Case) -> None:
    region = _interior(homogeneous, 15.0, 90.0, 20.0)
    median = float(np.median(homogeneous.sim.stiffness_kpa[region]))
    assert median == pytest.approx(3.0, rel=0.15)


def test_inclusion_reads_stiffer_than_background(two_region: Case) -> None:
    h = two_region.h
    inclusion = two_region.truth > 4.0
    to_edge = ndi.distance_transform_edt(inclusion) * h
    from_edge = ndi.distance_transform_edt(~inclusion) * h
    lit = _interior(two_region, 10.0, 130.0, 15.0)
    # Cores at >= 12 mm from the interface: twice the combined filter + window width (sqrt(3^2+5^2) ~ 6 mm),
    # so each median sees one tissue only.
    core = inclusion & (to_edge >= 12.0) & lit
    ring = ~inclusion & (from_edge >= 12.0) & (from_edge <= 40.0) & lit
    ratio = float(np.median(two_region.sim.stiffness_kpa[core]) / np.median(two_region.sim.stiffness_kpa[ring]))
    # True contrast is 6/2 = 3. With each region read within the +-20 % a local AHI achieves on
    # homogeneous tissue, the worst case is 3 * 0.8 / 1.2 = 2.0; anything below means the inversion
    # smeared the inclusion into its surroundings.
    assert ratio > 2.0


def test_wave_amplitude_decays_away_from_driver(abdomen: Case) -> None:
    d = _distance_mm(abdomen.driver, abdomen.h)
    amp = np.abs(abdomen.sim.displacement)
    near = float(np.mean(amp[abdomen.body & (d > 5) & (d <= 40)]))
    far = float(np.mean(amp[abdomen.body & (d >= 120) & (d <= 160)]))
    # Damping alone (eta=0.25, 2-2.5 kPa: e-fold ~34 mm) predicts far/near ~ exp(-100/34) = 0.05, geometric
    # spreading makes it smaller; 0.25 leaves room for reflections off the far body wall.
    assert far / near < 0.25


def test_confidence_higher_near_driver(abdomen: Case) -> None:
    d = _distance_mm(abdomen.driver, abdomen.h)
    conf = abdomen.sim.confidence_permille.astype(np.float64)
    near = float(np.mean(conf[abdomen.body & (d > 5) & (d <= 50)]))
    far = float(np.mean(conf[abdomen.body & (d >= 120)]))
    assert near > far + 300


def test_confidence_region_fraction_plausible(abdomen: Case) -> None:
    region = abdomen.sim.confidence_permille >= 950
    fraction = float(region[abdomen.body].mean())
    assert 0.02 <= fraction <= 0.40
    # The region lies on the patient's right (image left), where the driver is.
    cols = np.nonzero(region)[1]
    assert np.median(cols) < N / 2


def test_outputs_shapes_dtypes_and_finite(abdomen: Case) -> None:
    sim, body = abdomen.sim, abdomen.body
    assert sim.wave_images.shape == (4, N, N) and sim.wave_images.dtype == np.float32
    assert sim.magnitude.shape == (N, N) and sim.magnitude.dtype == np.float32
    assert sim.stiffness_kpa.dtype == np.float32 and sim.confidence_permille.dtype == np.int16
    assert sim.displacement.dtype == np.complex64
    assert np.isfinite(sim.wave_images).all() and np.isfinite(sim.magnitude).all()
    assert np.isfinite(sim.stiffness_kpa[body]).all() and np.isfinite(sim.displacement).all()
    p = abdomen.params
    assert sim.stiffness_kpa[body].min() >= p.stiffness_min_kpa and sim.stiffness_kpa[body].max() <= p.stiffness_max_kpa
    assert (sim.stiffness_kpa[~body] == 0).all() and (sim.confidence_permille[~body] == 0).all()
    assert sim.confidence_permille.min() >= 0 and sim.confidence_permille.max() <= 1000
    assert (sim.displacement[~body] == 0).all()
    assert np.abs(sim.displacement[abdomen.driver]) == pytest.approx(p.driver_amplitude_um)


def test_same_seed_identical_different_seed_differs(abdomen: Case) -> None:
    args = (abdomen.truth.astype(np.float32), abdomen.body, abdomen.driver, abdomen.h)
    again = simulate_slice(*args, np.random.default_rng(1), abdomen.params)
    other = simulate_slice(*args, np.random.default_rng(2), abdomen.params)
    for name in ("wave_images", "magnitude", "stiffness_kpa", "confidence_permille", "displacement"):
        assert np.array_equal(getattr(again, name), getattr(abdomen.sim, name)), name
    assert not np.array_equal(other.wave_images, abdomen.sim.wave_images)
    assert not np.array_equal(other.magnitude, abdomen.sim.magnitude)
    assert np.array_equal(other.displacement, abdomen.sim.displacement)  # the true field has no noise


def test_first_harmonic_recovers_field_exactly() -> None:
    rng = np.random.default_rng(3)
    u = rng.standard_normal((8, 9)) + 1j * rng.standard_normal((8, 9))
    theta = 2 * np.pi * np.arange(4) / 4
    waves = np.real(u[None] * np.exp(1j * theta)[:, None, None])
    np.testing.assert_allclose(first_harmonic(waves), u, atol=1e-12)


def test_noise_free_plane_wave_inverts_to_truth() -> None:
    h, g_kpa = 2.0, 4.0
    k = 2 * np.pi / shear_wavelength_mm(g_kpa)  # rad/mm, lossless
    r, c = np.mgrid[:64, :64] * h
    u = np.exp(-1j * k * (0.6 * r + 0.8 * c))
    waves = np.real(u[None] * np.exp(1j * 2 * np.pi * np.arange(4) / 4)[:, None, None])
    inv = invert(waves, np.ones((64, 64), bool), h)
    centre = inv.stiffness_kpa[20:44, 20:44]
    # 5-point Laplacian dispersion at kh = 0.4 overestimates |G*| by ~ (kh)^2/12 = 1.4 %.
    np.testing.assert_allclose(centre, g_kpa, rtol=0.03)


def test_anterior_driver_sits_on_right_anterior_wall() -> None:
    h = 2.5
    body = _ellipse((N, N), (N / 2, N / 2), 110 / h, 150 / h)
    drv = anterior_driver(body, "right", 80.0, h)
    rows, cols = np.nonzero(drv)
    assert drv.any() and not (drv & ~body).any()
    assert cols.max() < N / 2  # patient right = image left
    assert (cols.max() - cols.min() + 1) * h == pytest.approx(80.0, abs=2 * h)
    assert rows.max() < N / 2 - 60 / h  # anterior = top of the image
    mirrored = anterior_driver(body, "left", 80.0, h)
    assert np.nonzero(mirrored)[1].min() > N / 2


def test_body_touching_image_edge_is_absorbed_not_reflected() -> None:
    """A body filling the image behaves like a crop of a larger body (the PML absorbs)."""
    h, n = 2.0, 64
    params = PhysicsParams(loss_factor=0.1)

    def field(size: int, offset: int) -> np.ndarray:
        body = np.ones((size, size), bool)
        drv = np.zeros((size, size), bool)
        drv[offset + 29: offset + 35, offset + 29: offset + 35] = True
        return solve_displacement(np.full((size, size), 3.0, np.float32), body, drv, h, params)

    reference = field(3 * n, n)[n: 2 * n, n: 2 * n]
    cropped = field(n, 0)
    err = np.abs(cropped - reference).max() / np.abs(reference).max()
    assert err < 0.01  # without the PML the reflecting edge gives ~0.4 here
