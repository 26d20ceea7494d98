"""`analyze` writes the recorded studies.csv / slices.csv values and SEG pixels on a fixed phantom cohort.

The recording in ``tests/golden/analyze_cohort/`` was made with the flat-module layout (commit 70dd249)
by ``python -m mre_core phantom --out C --patients 4 --seed 7`` and ``python -m mre_core analyze C/dicom
--out O --device cpu`` with the shipped weights; it guards behaviour across refactors. Columns added
later are ignored; every recorded column must match (kPa to the 0.001 written, runtime excluded).

Regenerate only when a change of results is intended, and say why in the commit:
``.venv/bin/python -m tests.test_golden_analyze --update``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from mre_core.config import Settings
from mre_core.model.network import WeightsError, load_model
from mre_core.phantom.cohort import generate_cohort
from mre_core.workflow.batch import analyze_to_folder

GOLDEN = Path(__file__).parent / "golden" / "analyze_cohort"
VOLATILE = ("runtime_s",)


def _analyze(tmp: Path) -> Path:
    generate_cohort(tmp / "cohort", 4, seed=7, progress=False, workers=1)
    settings = Settings(device="cpu")
    model = load_model(settings.weights_dir, settings.model_name, "cpu")
    analyze_to_folder([tmp / "cohort" / "dicom"], tmp / "out", settings, model)
    return tmp / "out"


def _seg_frames(out: Path) -> dict[str, np.ndarray]:
    return {f.stem: pydicom.dcmread(f).pixel_array.astype(bool) for f in sorted((out / "seg").glob("*.dcm"))}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        load_model(Settings().weights_dir, Settings().model_name, "cpu")
    except WeightsError as exc:
        pytest.fail(f"shipped weights missing or corrupt: {exc}")
    return _analyze(tmp_path_factory.mktemp("golden_analyze"))


@pytest.mark.slow
@pytest.mark.parametrize("table", ["studies.csv", "slices.csv"])
def test_analyze_tables_match_the_recording(analysed: Path, table: str) -> None:
    want = pd.read_csv(GOLDEN / table, keep_default_na=False, dtype=str)
    got = pd.read_csv(analysed / table, keep_default_na=False, dtype=str)
    assert len(got) == len(want)
    missing = [c for c in want.columns if c not in got.columns]
    assert not missing, f"columns gone from {table}: {missing}"
    pd.testing.assert_frame_equal(got[list(want.columns)].reset_index(drop=True), want, check_dtype=False)


@pytest.mark.slow
def test_analyze_seg_pixels_match_the_recording(analysed: Path) -> None:
    got = _seg_frames(analysed)
    with np.load(GOLDEN / "seg_frames.npz") as z:
        want = {k: z[k] for k in z.files}
    names = sorted(k for k in want if not k.endswith("_shape"))
    assert sorted(got) == names
    for name in names:
        shape = tuple(int(n) for n in want[f"{name}_shape"])
        expected = np.unpackbits(want[name], count=int(np.prod(shape))).astype(bool).reshape(shape)
        assert got[name].shape == shape, name
        assert np.array_equal(got[name], expected), f"SEG {name}: {int((got[name] != expected).sum())} pixels differ"


def update() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = _analyze(Path(tmp))
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for table in ("studies.csv", "slices.csv"):
            df = pd.read_csv(out / table, keep_default_na=False, dtype=str)
            df.drop(columns=[c for c in VOLATILE if c in df]).to_csv(GOLDEN / table, index=False)
        frames = _seg_frames(out)
        packed = {k: np.packbits(v) for k, v in frames.items()} | {f"{k}_shape": np.array(v.shape) for k, v in frames.items()}
        np.savez_compressed(GOLDEN / "seg_frames.npz", **packed)


if __name__ == "__main__" and "--update" in sys.argv:
    update()
