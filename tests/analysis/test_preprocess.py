import numpy as np
import pytest

from mre_core.analysis.preprocess import InputSpec, model_input, resize_bilinear, to_native_grid, window_kpa
from mre_core.io.elastogram import ConfidenceEncoding, Elastogram, VendorProfile


def _elastogram(kpa: np.ndarray, confidence: np.ndarray) -> Elastogram:
    return Elastogram(kpa.astype(np.float32), confidence, (1.5625, 1.5625), "1.2", "1.3", "1.4", "P1", 1, 0.0,
                      VendorProfile.SIEMENS, 0.01, ConfidenceEncoding.ZERO_FILL, "x.dcm")


def test_window_is_the_papers_400_800_in_kpa():
    w = window_kpa(np.array([-1.0, 0.0, 2.0, 8.0, 9.0, np.nan]), 4.0, 8.0)
    assert w.tolist() == [0.0, 0.0, 0.25, 1.0, 1.0, 0.0] and w.dtype == np.float32


def test_model_input_is_512_square_three_channels_from_a_204_by_256_slice():
    kpa = np.full((204, 256), 4.0)
    conf = np.zeros((204, 256), bool)
    conf[50:150, 30:120] = True
    x = model_input([_elastogram(kpa, conf)] * 2, InputSpec())
    assert x.shape == (2, 3, 512, 512) and x.dtype == np.float32
    assert x[0, 1].max() == 1.0 and x[0, 0].max() == pytest.approx(0.5)
    assert x[0, 2].min() == pytest.approx(0.5)  # the whole map holds 4 kPa


@pytest.mark.parametrize("shape", [(204, 256), (256, 256), (192, 256)])
def test_mask_round_trip_to_512_and_back_is_exact_in_geometry(shape):
    rng = np.random.default_rng(0)
    mask = np.zeros(shape, bool)
    for _ in range(4):
        r, c = rng.integers(10, shape[0] - 40), rng.integers(10, shape[1] - 40)
        mask[r:r + rng.integers(5, 30), c:c + rng.integers(5, 30)] = True
    up = resize_bilinear(mask.astype(np.float32), 512, 512)
    back = to_native_grid(up, shape) > 0.5
    assert np.array_equal(back, mask)


def test_centroid_of_a_blob_is_preserved_through_the_round_trip():
    mask = np.zeros((204, 256), np.float32)
    mask[100:110, 200:212] = 1.0
    up = resize_bilinear(mask, 512, 512)
    rows, cols = np.nonzero(up > 0.5)
    assert rows.mean() * 204 / 512 + (204 / 512 - 1) / 2 == pytest.approx(104.5, abs=0.3)
    assert cols.mean() * 256 / 512 + (256 / 512 - 1) / 2 == pytest.approx(205.5, abs=0.3)
