"""``import-rois`` from the command line: one line per read and per refused file, exit codes, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mre_core.store.labels import labelled_studies
from mre_core.store.results import Store
from tests.workflow.test_import_rois import _elastograms, _rect, _write_seg

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: object, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MRE_DB_URL": f"sqlite:///{tmp_path / 'env_default.sqlite'}"}  # never the one used below
    cmd = [sys.executable, "-m", "mre_core.workflow.import_rois", *map(str, args),
           "--db-url", f"sqlite:///{tmp_path / 'results.sqlite'}", "--inbox-dir", str(tmp_path / "inbox")]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mre_core.phantom.cohort import write_demo_study

    return write_demo_study(tmp_path_factory.mktemp("phantom"), seed=8, n_slices=3)


def test_the_cli_imports_the_reads_and_names_each_file_it_refuses(study: Path, tmp_path: Path) -> None:
    reads = tmp_path / "reads"
    images = _elastograms(study)
    _write_seg(reads / "liver.dcm", images[:2], np.stack([_rect(60, 120, 70, 150)] * 2), reader=None)
    (reads / "notes.txt").write_text("not DICOM")

    done = _cli(study, reads, "--reader", "Dr X", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("imported reads/liver.dcm: seg 'Liver ROI' by Dr X") for line in lines)
    assert "not imported reads/notes.txt: not a DICOM file (no DICM preamble and no readable dataset)" in lines
    assert "Traceback" not in done.stdout + done.stderr
    (found,) = labelled_studies(Store(f"sqlite:///{tmp_path / 'results.sqlite'}"))
    assert found.reader == "Dr X" and len(found.rois) == 2

    refused = _cli(reads / "notes.txt", tmp_path=tmp_path)
    assert refused.returncode == 1
    assert "not imported notes.txt: not a DICOM file" in refused.stdout and "Traceback" not in refused.stderr
