import math

import pytest

from mre_core.analysis.staging import (
    PAPER_TABLE,
    RDES149_TABLE,
    Cutoff,
    FibrosisStage,
    StagingTable,
    get_table,
    stage,
)


@pytest.mark.parametrize(
    "kpa, expected",
    [(0.0, "F0"), (2.49, "F0"), (2.5, "F1"), (2.79, "F1"), (2.80, "F2"), (3.99, "F2"), (4.0, "F3"), (5.0, "F4"), (12.0, "F4")],
)
def test_paper_table_boundaries_are_inclusive_lower_bounds_in_kpa(kpa, expected):
    assert stage(kpa, PAPER_TABLE).stage.label == expected


def test_significant_fibrosis_starts_exactly_at_2_80_kpa():
    assert stage(2.79).significant_fibrosis is False
    assert stage(2.80).significant_fibrosis is True
    assert PAPER_TABLE.significant_kpa == 2.8


def test_every_cutoff_cites_a_source():
    for table in (PAPER_TABLE, RDES149_TABLE):
        assert all(len(c.source) > 20 for c in table.cutoffs)
    assert "e80351" in PAPER_TABLE.cutoffs[1].source


def test_rdes149_table_is_selectable_and_stages_differently():
    assert get_table("rdes149") is RDES149_TABLE
    assert stage(3.0, PAPER_TABLE).stage == FibrosisStage.F2
    assert stage(3.0, RDES149_TABLE).stage == FibrosisStage.F1


def test_unknown_table_error_lists_the_valid_names():
    with pytest.raises(KeyError, match="paper"):
        get_table("metavir-2099")


@pytest.mark.parametrize("bad", [float("nan"), -0.1, float("inf")])
def test_stage_refuses_non_finite_or_negative_values(bad):
    with pytest.raises(ValueError):
        stage(bad)


def test_table_rejects_unordered_bounds():
    c = PAPER_TABLE.cutoffs
    with pytest.raises(ValueError, match="increasing"):
        StagingTable("bad", "bad", (c[0], Cutoff(FibrosisStage.F2, 4.5, "x"), c[2], c[3]))


def test_with_bounds_keeps_sources_of_unchanged_cutoffs():
    edited = PAPER_TABLE.with_bounds(2.5, 3.0, 4.0, 5.0, source="local validation 2026")
    assert edited.cutoffs[0].source == PAPER_TABLE.cutoffs[0].source
    assert edited.cutoffs[1].source == "local validation 2026"
    assert stage(2.9, edited).stage == FibrosisStage.F1


def test_stage_range_covers_f0_floor_to_f4_ceiling():
    assert PAPER_TABLE.stage_range_kpa(FibrosisStage.F0) == (1.5, 2.5)
    assert PAPER_TABLE.stage_range_kpa(FibrosisStage.F4) == (5.0, 9.0)
    assert not math.isnan(PAPER_TABLE.stage_range_kpa(FibrosisStage.F2)[0])


def test_float32_2_80_kpa_is_staged_f2_at_reported_precision():
    import numpy as np
    value = float(np.float32(280) * np.float32(0.01))
    assert value < 2.8
    assert stage(value).stage == FibrosisStage.F2
    assert stage(2.7994).stage == FibrosisStage.F1
