"""The demo's files: written once, completely, even when the background preparation and a click race."""

from __future__ import annotations

import filecmp
from pathlib import Path

from mre_core.app.demo_files import demo_cohort, demo_study, start_preparing


def _same_tree(a: Path, b: Path) -> bool:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return fa == fb and all(filecmp.cmp(a / f, b / f, shallow=False) for f in fa)


def test_the_background_preparation_and_a_click_never_write_one_folder_at_once(tmp_path: Path) -> None:
    raced, alone = tmp_path / "raced", tmp_path / "alone"
    child = start_preparing(raced, n_patients=6)
    study = demo_study(raced, seed=0)  # the page's click, while the preparation runs
    cohort = demo_cohort(raced, 6)
    assert child.wait(timeout=300) == 0, (raced / "prepare.log").read_text()
    assert (cohort / "cohort.csv").is_file() and study.is_dir()
    assert _same_tree(cohort, demo_cohort(alone, 6))  # complete and exactly what one writer alone writes
    assert _same_tree(study, demo_study(alone, seed=0))


def test_a_prepared_folder_is_used_as_it_is(tmp_path: Path) -> None:
    child = start_preparing(tmp_path, n_patients=6)
    assert child.wait(timeout=300) == 0, (tmp_path / "prepare.log").read_text()
    csv = tmp_path / "demo_cohort_6_7" / "cohort.csv"
    before = csv.stat().st_mtime_ns
    assert demo_cohort(tmp_path, 6) == csv.parent and csv.stat().st_mtime_ns == before
