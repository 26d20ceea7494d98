"""A registry of named, cited rules that recognise the ROLE of a DICOM series in an MRE exam.

Each :class:`Rule` is pure data: a tuple of :class:`Predicate` ``(tag, op, value)`` triples
combined with ``"all"`` or ``"any"``, the :class:`SeriesRole` and :class:`ValueUnit` it
assigns, one line of prose and a ``source`` citation. No lambdas, so a test, a log line and
a docs table can print every rule (:func:`rules_table`). :data:`RULES` is ordered most
specific first and the colour-save rule comes before every vendor rule;
:func:`match_series` returns the first rule that matches the header of a series' first
instance, :func:`matching_rules` all of them (more than one means an ambiguity worth a log
line).

The rule data lives in :mod:`mre_core.io.vendor_rule_table`. Facts come from Resoundant's own
series sorter ``Resoundant/hepsort_rules`` (``rules/rules_mre.py``: GE private sequence tag
(0019,109C), Siemens SequenceName/ImageType, Philips ImageType, MMDI 3D ImageType, Canon
ImageComments), Mayo's GE parser ``MengYinMayo/HepatosplenicMRE`` (stiffness in Pa,
confidence 0-999, raw series = phase half then magnitude half), ``batmanlab/mre_ai``
(GE ``elastogram``/``stgry`` vs ``elastogram mask``/``stgrym``) and the project issue (MMDI 2D
output series, Siemens kPa x 100, a working assumption). Keyword heuristics on free-text
descriptions are *not* here: they are a separate fallback; only documented vendor names are.

Importable without torch: stdlib and pydicom only.

Examples
--------
>>> header = {"SeriesDescription": "Stiffness", "ImageType": ["DERIVED", "SECONDARY", "PROCESSED"]}
>>> match = match_series(header)
>>> match.rule.name, match.role.value, match.unit.value
('mmdi.stiffness', 'stiffness', 'pa')
>>> match_series({"SeriesDescription": "T2 SSFSE", "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"]}) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from mre_core.io.vendor_rule_table import RULE_SPECS

__all__ = [
    "OPS", "RULES", "Predicate", "Rule", "RuleMatch", "SeriesRole", "ValueUnit",
    "get_rule", "match_series", "matching_rules", "rules_table",
]


class SeriesRole(str, Enum):
    """What a series is in an MRE exam."""

    STIFFNESS = "stiffness"  #: gray stiffness map, measurable
    MASKED_STIFFNESS = "masked_stiffness"  #: stiffness with low-confidence pixels removed (GE mask)
    HATCHED_STIFFNESS = "hatched_stiffness"  #: Siemens gray elastogram, 95 % confidence area cross-hatched
    CONFIDENCE_MAP = "confidence_map"  #: separate confidence map (per mille or percent)
    WAVE = "wave"  #: wave images, shear wave, phase difference
    MAGNITUDE = "magnitude"
    PHASE = "phase"  #: raw phase
    RAW_PHASE_MAGNITUDE = "raw_phase_magnitude"  #: GE mixed series: first half phase, second half magnitude
    COLOUR_SAVE = "colour_save"  #: RGB screen save, not measurable
    OTHER = "other"  #: recognised MRE series of no use here


class ValueUnit(str, Enum):
    """What one stored pixel value means."""

    PA = "pa"
    KPA = "kpa"
    KPA_X100 = "kpa_x100"  #: stored = kPa x 100 (Siemens; a working assumption of this project)
    PER_MILLE = "per_mille"
    PERCENT = "percent"
    MILLIRADIAN = "milliradian"
    UNITLESS = "unitless"
    UNKNOWN = "unknown"


#: the closed set of predicate operators
OPS = ("equals", "any_of", "contains", "word", "regex", "present", "absent", "gte", "lte")
_PRIVATE_TAG = re.compile(r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$")


def _tag_number(tag: str) -> int | None:
    """``"(0019,109C)"`` → ``0x0019109C``; a keyword → None."""
    m = _PRIVATE_TAG.match(tag)
    return int(m.group(1) + m.group(2), 16) if m else None


def _raw_value(header: Any, tag: str) -> Any:
    """The value of ``tag`` in a pydicom Dataset or a plain dict, or None when missing."""
    number = _tag_number(tag)
    if not isinstance(header, Dataset) and isinstance(header, Mapping):  # a plain dict
        keys = (tag, tag.upper(), number) if number is not None else (tag,)
        value = next((header[k] for k in keys if k in header), None)
    else:
        value = header.get(number if number is not None else tag)
    return value.value if isinstance(value, DataElement) else value


def _elements(value: Any) -> list[Any]:
    """A DICOM value as a list of non-empty elements (multi-valued, backslash-joined or bytes)."""
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("latin-1").strip("\x00 ")
    if isinstance(value, str):
        parts: list[Any] = value.split("\\")
    elif isinstance(value, Iterable):
        parts = [p for v in value for p in _elements(v)]
    else:
        parts = [value]
    return [p for p in parts if not (isinstance(p, str) and not p.strip())]


def _text(v: Any) -> str:
    return str(v).strip().casefold()


def _tokens(v: Any) -> str:
    """Lower-case words separated by single spaces, padded: ``"M_SE"`` → ``" m se "``."""
    return " " + " ".join(re.split(r"[^0-9a-z]+", _text(v))).strip() + " "


def _number(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _equal(element: Any, wanted: Any) -> bool:
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        return _number(element) == float(wanted)
    return _text(element) == _text(wanted)


def _alternatives(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _element_test(op: str, element: Any, value: Any) -> bool:
    """One element against the predicate value (``present``/``absent`` are handled before)."""
    if op == "equals":
        return _equal(element, value)
    if op == "any_of":
        return any(_equal(element, v) for v in value)
    if op == "contains":
        return any(_text(v) in _text(element) for v in _alternatives(value))
    if op == "word":
        return any(_tokens(v) in _tokens(element) for v in _alternatives(value))
    if op == "regex":
        return re.search(value, str(element), re.IGNORECASE) is not None
    number = _number(element)
    if number is None:
        return False
    return number >= float(value) if op == "gte" else number <= float(value)


@dataclass(frozen=True)
class Predicate:
    """One test on one DICOM element: ``(tag, op, value)``, optionally negated.

    Parameters
    ----------
    tag : str
        A DICOM keyword (``"ImageType"``) or a tag as ``"(0019,109C)"`` (private tags are read
        by number, whatever their private creator).
    op : str
        One of :data:`OPS`. String comparisons ignore case and surrounding spaces; a
        multi-valued element matches when any element does. ``equals``: element equals
        ``value`` (numerically when ``value`` is a number); ``any_of``: equals one of a tuple;
        ``contains``: substring (``value`` a string or a tuple of alternatives); ``word``:
        whole words, so ``"mag"`` does not match ``"image"`` and ``"stgry"`` not
        ``"stgrym"`` (string or tuple); ``regex``: :func:`re.search`, case-insensitive;
        ``present``/``absent``: the element has / has not a non-empty value; ``gte``/``lte``:
        numeric element ``>=``/``<=`` value.
    value : Any
        The operand (None for ``present``/``absent``).
    negate : bool
        Invert the result (a missing tag then passes).
    """

    tag: str
    op: str
    value: Any = None
    negate: bool = False

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"predicate op {self.op!r} not in {OPS}")
        if _tag_number(self.tag) is None and tag_for_keyword(self.tag) is None:
            raise ValueError(f"predicate tag {self.tag!r} is neither a DICOM keyword nor '(gggg,eeee)'")
        if self.op == "any_of" and not isinstance(self.value, tuple):
            raise ValueError("any_of needs a tuple value")
        if self.op in ("gte", "lte") and _number(self.value) is None:
            raise ValueError(f"{self.op} needs a numeric value")

    def test(self, header: Any) -> bool:
        """True when the header passes; never raises (a missing tag fails, except ``absent``)."""
        try:
            elements = _elements(_raw_value(header, self.tag))
            if self.op in ("present", "absent"):
                result = bool(elements) == (self.op == "present")
            else:
                result = any(_element_test(self.op, e, self.value) for e in elements)
        except Exception:  # noqa: BLE001 - a malformed header never breaks sorting
            return False
        return result != self.negate

    def describe(self) -> str:
        """E.g. ``"SeriesDescription not word ('mask', 'stgrym')"``."""
        op = f"not {self.op}" if self.negate else self.op
        return f"{self.tag} {op}" if self.op in ("present", "absent") else f"{self.tag} {op} {self.value!r}"


@dataclass(frozen=True)
class Rule:
    """A named, cited rule: predicates → series role and value unit.

    Parameters
    ----------
    name : str
        Unique, ``vendor.thing`` (e.g. ``"mmdi.stiffness"``).
    vendor : str
        ``"GE"``, ``"Siemens"``, ``"Philips"``, ``"Canon"``, ``"Resoundant MMDI"`` or ``"any"``.
    recognises : str
        One line of prose.
    predicates : tuple of Predicate
        Manufacturer checks are predicates like any other.
    role : SeriesRole
    unit : ValueUnit
    source : str
        Where the facts come from (public repository + file, vendor document or paper).
    criteria : {"all", "any"}
        How the predicates combine.
    """

    name: str
    vendor: str
    recognises: str
    predicates: tuple[Predicate, ...]
    role: SeriesRole
    unit: ValueUnit
    source: str
    criteria: str = "all"

    def __post_init__(self) -> None:
        if self.criteria not in ("all", "any"):
            raise ValueError(f"rule {self.name}: criteria must be 'all' or 'any'")
        if not self.predicates or not self.name or not self.source.strip():
            raise ValueError(f"rule {self.name!r}: needs a name, predicates and a source")

    def matches(self, header: Any) -> bool:
        """True when the header passes all (or any) predicates."""
        results = (p.test(header) for p in self.predicates)
        return all(results) if self.criteria == "all" else any(results)

    def describe_predicates(self) -> str:
        """The predicates joined by AND / OR."""
        return f" {'AND' if self.criteria == 'all' else 'OR'} ".join(p.describe() for p in self.predicates)


@dataclass(frozen=True)
class RuleMatch:
    """A rule that matched a series header."""

    rule: Rule

    @property
    def role(self) -> SeriesRole:
        return self.rule.role

    @property
    def unit(self) -> ValueUnit:
        return self.rule.unit

    def describe(self) -> str:
        """One log line: ``rule mmdi.stiffness (Resoundant MMDI): ... -> role stiffness, unit pa [...]``."""
        r = self.rule
        return (f"rule {r.name} ({r.vendor}): {r.recognises} -> role {r.role.value}, unit {r.unit.value} "
                f"[{r.describe_predicates()}]")


def _predicate(spec: Sequence[Any]) -> Predicate:
    """``(tag, op, value)`` with ``op`` optionally ``"not <op>"`` → :class:`Predicate`."""
    tag, op, value = (*spec, None)[:3]
    negate = op.startswith("not ")
    return Predicate(tag, op[4:] if negate else op, value, negate)


def _build_rules(specs: Iterable[Mapping[str, Any]]) -> tuple[Rule, ...]:
    """The rule table as :class:`Rule` objects; names must be unique."""
    rules = tuple(
        Rule(name=s["name"], vendor=s["vendor"], recognises=s["recognises"],
             predicates=tuple(_predicate(p) for p in s["predicates"]), role=SeriesRole(s["role"]),
             unit=ValueUnit(s["unit"]), source=s["source"], criteria=s.get("criteria", "all"))
        for s in specs)
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate rule names: {duplicates}")
    return rules


#: every rule, in match order (most specific first; colour save first)
RULES: tuple[Rule, ...] = _build_rules(RULE_SPECS)


def matching_rules(header: Any, rules: Sequence[Rule] = RULES) -> list[RuleMatch]:
    """Every rule that matches ``header``, in rule order (more than one: an ambiguity to log).

    Parameters
    ----------
    header : pydicom.Dataset or dict
        The first instance of a series (pixel data not needed); a dict maps keywords (or
        ``"(gggg,eeee)"`` / int tags) to values.
    rules : sequence of Rule
        Defaults to :data:`RULES`.
    """
    return [RuleMatch(r) for r in rules if r.matches(header)]


def match_series(header: Any, rules: Sequence[Rule] = RULES) -> RuleMatch | None:
    """The first rule that matches ``header``, or None (see :func:`matching_rules`)."""
    return next((RuleMatch(r) for r in rules if r.matches(header)), None)


def get_rule(name: str, rules: Sequence[Rule] = RULES) -> Rule:
    """The rule called ``name``; KeyError when there is none."""
    for rule in rules:
        if rule.name == name:
            return rule
    raise KeyError(name)


def rules_table(rules: Sequence[Rule] = RULES) -> list[dict[str, str]]:
    """One dict per rule, in match order, for documentation tables.

    Keys: ``order``, ``name``, ``vendor``, ``role``, ``unit``, ``criteria``, ``predicates``,
    ``recognises``, ``source``.
    """
    return [{"order": str(i), "name": r.name, "vendor": r.vendor, "role": r.role.value, "unit": r.unit.value,
             "criteria": r.criteria, "predicates": r.describe_predicates(), "recognises": r.recognises,
             "source": r.source} for i, r in enumerate(rules, start=1)]
