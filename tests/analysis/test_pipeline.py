"""analyze_study on phantom studies, with a model whose output is known."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from mre_core.analysis.pipeline import analyze_study, measure_slice
from mre_core.analysis.stiffness import QcFlag
from mre_core.config import Settings
from mre_core.io.reader import read_inputs
from mre_core.model.network import load_model


def _files_by_sop_uid(folder) -> dict[str, pydicom.Dataset]:
    out = {}
    for path in folder.rglob("*"):
        if path.is_file():
            ds = pydicom.dcmread(path, force=True)
            out[str(ds.SOPInstanceUID)] = ds
    return out


def _independent_kpa(e, files) -> np.ndarray:
    """Stored value → kPa straight from the file with pydicom (not through dicom_io)."""
    ds = files[e.sop_uid]
    values = ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1) or 1) + float(
        getattr(ds, "RescaleIntercept", 0) or 0)
    return values * e.kpa_per_unit


@pytest.mark.parametrize("key", ["siemens_hatch", "siemens_zero", "ge_pair"])
def test_all_liver_model_reads_the_mean_of_the_confidence_region(key, phantom_studies, all_liver_weights):
    settings = Settings(weights_dir=all_liver_weights, model_name="all_liver", device="cpu", min_component_area_mm2=0)
    model = load_model(all_liver_weights, "all_liver", "cpu")
    study = read_inputs([phantom_studies[key]], settings).studies[0]
    result = analyze_study(study, model, settings)
    assert len(result.slices) == len(study.series.slices) >= 4
    files = _files_by_sop_uid(phantom_studies[key])
    for e, s in zip(study.series.slices, result.slices):
        assert np.array_equal(s.roi, e.confidence), "ROI must be exactly the confidence region"
        expected = _independent_kpa(e, files)[e.confidence].mean()
        assert s.stats.mean_kpa == pytest.approx(expected, rel=1e-5)
    means = [s.stats.mean_kpa for s in result.slices if s.usable]
    assert result.stiffness_kpa == pytest.approx(np.mean(means))
    assert result.stage is not None and result.stage.stiffness_kpa == pytest.approx(result.stiffness_kpa)
    assert set(result.timings_s) == {"preprocess", "model", "post", "stability", "stiffness"}


def test_all_background_model_gives_no_stage_and_explains_why(phantom_studies, tmp_path):
    from tests.conftest import _save_constant_model

    _save_constant_model(tmp_path, "nothing", -10.0)
    settings = Settings(device="cpu")
    study = read_inputs([phantom_studies["siemens_hatch"]], settings).studies[0]
    result = analyze_study(study, load_model(tmp_path, "nothing", "cpu"), settings)
    assert result.stage is None and np.isnan(result.stiffness_kpa)
    assert QcFlag.NO_USABLE_SLICE in result.qc_flags and QcFlag.EMPTY_ROI in result.qc_flags
    assert all(s.excluded for s in result.slices)


def test_small_roi_is_flagged_in_cm2(phantom_studies, all_liver_weights):
    settings = Settings(device="cpu")
    e = read_inputs([phantom_studies["siemens_zero"]], settings).studies[0].series.slices[0]
    roi = np.zeros(e.shape, bool)
    ys, xs = np.nonzero(e.confidence)
    roi[ys[:20], xs[:20]] = True  # 20 px x 2.44 mm² = 0.49 cm² < 2 cm²
    s = measure_slice(e, roi, roi, settings)
    assert QcFlag.SMALL_ROI in s.qc_flags and s.stats.area_cm2 == pytest.approx(20 * 1.5625**2 / 100)
