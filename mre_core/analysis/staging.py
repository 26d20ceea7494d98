"""Fibrosis staging: cited cut-off tables and ``stage()``.

Pure data and arithmetic: importing this module does not import torch or pydicom,
so the tables can be listed instantly (by the app, the CLI and the docs).

A :class:`StagingTable` holds the *lower bound* (kPa, inclusive) of F1, F2, F3 and
F4. A liver stiffness below the F1 bound is F0. Each bound carries its source, so
the app can show where every number comes from.

>>> from mre_core.analysis.staging import stage, PAPER_TABLE
>>> stage(2.79, PAPER_TABLE).stage.label, stage(2.80, PAPER_TABLE).stage.label
('F1', 'F2')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum


class FibrosisStage(IntEnum):
    """METAVIR-style fibrosis stage read from liver stiffness."""

    F0 = 0  #: no fibrosis
    F1 = 1  #: portal fibrosis without septa
    F2 = 2  #: significant fibrosis (few septa)
    F3 = 3  #: advanced fibrosis (numerous septa, no cirrhosis)
    F4 = 4  #: cirrhosis

    @property
    def label(self) -> str:
        """``"F0"`` … ``"F4"``."""
        return self.name


@dataclass(frozen=True)
class Cutoff:
    """Lower bound of one stage, in kPa, and where the number comes from."""

    stage: FibrosisStage
    lower_kpa: float
    source: str


@dataclass(frozen=True)
class StagingTable:
    """Lower bounds (kPa, inclusive) of F1..F4, each with its source.

    Parameters
    ----------
    name:
        Short identifier (``"paper"``, ``"rdes149"``, ``"custom"``).
    title:
        Human-readable title for the app and reports.
    cutoffs:
        Exactly four :class:`Cutoff` for F1, F2, F3, F4 in increasing kPa.
    """

    name: str
    title: str
    cutoffs: tuple[Cutoff, Cutoff, Cutoff, Cutoff]

    def __post_init__(self) -> None:
        stages = [c.stage for c in self.cutoffs]
        if stages != [FibrosisStage.F1, FibrosisStage.F2, FibrosisStage.F3, FibrosisStage.F4]:
            raise ValueError(f"staging table {self.name!r}: cut-offs must be F1, F2, F3, F4 in order, got {stages}")
        bounds = [c.lower_kpa for c in self.cutoffs]
        if any(not math.isfinite(b) or b <= 0 for b in bounds) or bounds != sorted(set(bounds)):
            raise ValueError(
                f"staging table {self.name!r}: lower bounds must be positive and strictly increasing, got {bounds}"
            )

    @property
    def bounds_kpa(self) -> tuple[float, float, float, float]:
        """Lower bounds of F1, F2, F3, F4 in kPa."""
        return tuple(c.lower_kpa for c in self.cutoffs)  # type: ignore[return-value]

    @property
    def significant_kpa(self) -> float:
        """Lower bound of F2 (significant fibrosis), kPa."""
        return self.cutoffs[1].lower_kpa

    def stage_range_kpa(self, s: FibrosisStage, ceiling_kpa: float = 9.0, floor_kpa: float = 1.5) -> tuple[float, float]:
        """The ``[low, high)`` kPa interval of stage ``s`` (F0 starts at ``floor_kpa``, F4 ends at ``ceiling_kpa``)."""
        edges = (floor_kpa, *self.bounds_kpa, ceiling_kpa)
        return float(edges[int(s)]), float(edges[int(s) + 1])

    def with_bounds(self, f1: float, f2: float, f3: float, f4: float, source: str = "user-edited") -> StagingTable:
        """A copy with new bounds (kPa); unchanged bounds keep their source."""
        new = []
        for c, b in zip(self.cutoffs, (f1, f2, f3, f4)):
            new.append(c if b == c.lower_kpa else Cutoff(c.stage, float(b), source))
        return StagingTable("custom", f"{self.title} (edited)", tuple(new))  # type: ignore[arg-type]


_PAPER = "Su, Shih & Xu, JMIR Med Inform 2025;13:e80351 (after Wu WP et al., PLoS One 2015;10:e0140068): F2 >= 2.8 kPa"
_RDES = "ACR/RSNA RadElement RDES149 / Mayo reading table"

#: Default table. F2 is the paper's; the paper does not print F1/F3/F4, so those come
#: from the RDES149/Mayo reading table (upper limit of normal 2.5 kPa; 4-5 kPa "stage 3-4";
#: > 5 kPa cirrhosis). Edit them in Settings if your centre has validated cut-offs.
PAPER_TABLE = StagingTable(
    name="paper",
    title="Paper (F2 >= 2.8 kPa) with RDES149 bounds for F1/F3/F4",
    cutoffs=(
        Cutoff(FibrosisStage.F1, 2.5, f"{_RDES}: < 2.5 kPa normal (paper does not give F1)"),
        Cutoff(FibrosisStage.F2, 2.8, _PAPER),
        Cutoff(FibrosisStage.F3, 4.0, f"{_RDES}: 4-5 kPa stage 3-4 (paper does not give F3)"),
        Cutoff(FibrosisStage.F4, 5.0, f"{_RDES}: > 5 kPa cirrhosis (paper does not give F4)"),
    ),
)

#: Alternative table read straight from RDES149/Mayo: 2.9-3.5 stage 1-2, 3.5-4 stage 2-3,
#: 4-5 stage 3-4, > 5 cirrhosis (lower end of each band taken as the stage's lower bound).
RDES149_TABLE = StagingTable(
    name="rdes149",
    title="RDES149 / Mayo reading table",
    cutoffs=(
        Cutoff(FibrosisStage.F1, 2.9, f"{_RDES}: 2.9-3.5 kPa stage 1-2"),
        Cutoff(FibrosisStage.F2, 3.5, f"{_RDES}: 3.5-4 kPa stage 2-3"),
        Cutoff(FibrosisStage.F3, 4.0, f"{_RDES}: 4-5 kPa stage 3-4"),
        Cutoff(FibrosisStage.F4, 5.0, f"{_RDES}: > 5 kPa cirrhosis"),
    ),
)

TABLES: dict[str, StagingTable] = {t.name: t for t in (PAPER_TABLE, RDES149_TABLE)}


def get_table(name: str) -> StagingTable:
    """Look a table up by name; the error lists the valid names."""
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown staging table {name!r}; choose one of {sorted(TABLES)}") from None


@dataclass(frozen=True)
class StageResult:
    """A stiffness value staged against a table."""

    stiffness_kpa: float
    stage: FibrosisStage
    significant_fibrosis: bool  #: stage >= F2
    table: str


#: Stiffness is staged at the precision it is reported with (0.001 kPa), so a value shown as
#: "2.800 kPa" is F2 even when float32 arithmetic left it at 2.79999995.
STAGING_DECIMALS = 3


def stage(stiffness_kpa: float, table: StagingTable = PAPER_TABLE) -> StageResult:
    """Stage one liver stiffness (kPa); bounds are inclusive lower bounds.

    The value is rounded to ``STAGING_DECIMALS`` (0.001 kPa) before it is compared.

    Raises
    ------
    ValueError
        If ``stiffness_kpa`` is not a finite, non-negative number.
    """
    if not isinstance(stiffness_kpa, (int, float)) or not math.isfinite(stiffness_kpa) or stiffness_kpa < 0:
        raise ValueError(f"cannot stage stiffness {stiffness_kpa!r} kPa: need a finite value >= 0")
    s = FibrosisStage.F0
    value = round(float(stiffness_kpa), STAGING_DECIMALS)
    for c in table.cutoffs:
        if value >= c.lower_kpa:
            s = c.stage
    return StageResult(float(stiffness_kpa), s, s >= FibrosisStage.F2, table.name)
