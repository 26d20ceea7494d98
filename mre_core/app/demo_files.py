"""The demo's files: one phantom study and one phantom cohort, written once per demo folder, safely in parallel.

:func:`demo_study` and :func:`demo_cohort` write (or find) them under a root folder. Each holds an exclusive
lock (``fcntl.flock`` on ``<root>/.<name>.lock``) while it checks and writes, so two processes asking for the
same item never write into one folder at once: the second waits and then finds the files complete.

``python -m mre_core.app.serve`` (``make run``) gives the server a demo folder (``MRE_DEMO_DIR``) and starts
:func:`start_preparing`: a separate, lowest-priority (``nice 19``) process that writes the demo study and the
default demo cohort into it while the first pages load, so *Load demo study* and *Load demo cohort* analyse
files that are already on disk. Clicking before it is done simply waits for the item being written (or
writes it, if the preparation has not reached it). Only this module's light imports (no torch) are paid by
that process.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEMO_PATIENTS = 24  #: default size; 60 is the paper-like size (slower on CPU)
DEMO_COHORT_SEED = 7


@contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def demo_study(root: Path, seed: int = 0) -> Path:
    """A 5-slice phantom study under ``root`` (written once per seed); returns its DICOM folder."""
    from mre_core.phantom.cohort import write_demo_study

    folder = Path(root) / f"demo_study_{seed}"
    with _locked(Path(root), folder.name):
        marker = folder / ".dicom_folder"
        if marker.is_file() and Path(marker.read_text()).is_dir():
            return Path(marker.read_text())
        dicom = Path(write_demo_study(folder, seed=seed))
        marker.write_text(str(dicom))
    return dicom


def demo_cohort(root: Path, n_patients: int = DEMO_PATIENTS, seed: int = DEMO_COHORT_SEED, workers: int = 1) -> Path:
    """A phantom cohort folder (``cohort.csv``, ``dicom/<patient>/…``) under ``root``, written once."""
    from mre_core.phantom.cohort import generate_cohort

    folder = Path(root) / f"demo_cohort_{n_patients}_{seed}"
    with _locked(Path(root), folder.name):
        if not (folder / "cohort.csv").is_file():  # cohort.csv is written last: without it the folder is partial
            generate_cohort(folder, n_patients=n_patients, seed=seed, progress=False, workers=workers)
    return folder


def prepare(root: Path, n_patients: int = DEMO_PATIENTS) -> None:
    """Write the demo study and the demo cohort under ``root`` (what the demo buttons use by default)."""
    demo_study(root, seed=0)
    demo_cohort(root, n_patients)


def start_preparing(root: Path, n_patients: int = DEMO_PATIENTS) -> subprocess.Popen:
    """:func:`prepare` in a separate process at the lowest CPU priority (its output goes to ``<root>/prepare.log``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mre_core.app.demo_files", str(root), str(int(n_patients))]
    nice = shutil.which("nice")
    if nice:
        cmd = [nice, "-n", "19", *cmd]
    log = open(root / "prepare.log", "w")  # noqa: SIM115 - the child keeps it open
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    prepare(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else DEMO_PATIENTS)
