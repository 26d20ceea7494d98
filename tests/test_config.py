from pathlib import Path

import pytest

from mre_core.analysis.staging import RDES149_TABLE
from mre_core.config import Settings


def test_settings_read_mre_env_vars_then_overrides():
    env = {"MRE_DEVICE": "cpu", "MRE_MIN_ROI_AREA_CM2": "3.5", "MRE_STAGING": "rdes149",
           "MRE_WEIGHTS_DIR": "/tmp/w", "MRE_PLAUSIBLE_KPA": "0.8,15"}
    s = Settings.from_env(env, min_slices=4)
    assert s.device == "cpu" and s.min_roi_area_cm2 == 3.5 and s.staging is RDES149_TABLE
    assert s.weights_dir == Path("/tmp/w") and s.plausible_kpa == (0.8, 15.0) and s.min_slices == 4


def test_none_overrides_leave_env_values_alone():
    assert Settings.from_env({"MRE_DEVICE": "cpu"}, device=None).device == "cpu"


@pytest.mark.parametrize("kwargs, match", [
    ({"device": "tpu"}, "device"),
    ({"profile": "philips"}, "profile"),
    ({"profile": "custom"}, "custom_kpa_per_unit"),
    ({"mask_threshold": 1.5}, "mask_threshold"),
])
def test_invalid_settings_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Settings(**kwargs)


def test_bad_number_in_env_is_reported_with_its_variable():
    with pytest.raises(ValueError, match="MRE_MAX_FILE_MB"):
        Settings.from_env({"MRE_MAX_FILE_MB": "lots"})


def test_max_file_bytes_is_mebibytes():
    assert Settings(max_file_mb=2).max_file_bytes == 2 * 1024 * 1024
