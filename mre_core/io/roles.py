"""What a series is: its role by the vendor rules, a value guard for confidence maps, then a keyword fallback.

:func:`recognise` returns a :class:`SeriesRecognition`: the role (stiffness, masked or hatched stiffness,
confidence map, magnitude, wave, phase, raw, colour save, other; or the fallback's elastogram / magnitude / wave /
unknown), the rule that said so (a name from :mod:`mre_core.io.vendor_rules`, or ``"fallback: …"``) and the
rule's unit. A series recognised by the fallback raises the QC flag ``fallback_series_rule`` downstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from mre_core.io import confidence as conf
from mre_core.io.vendor_rules import SeriesRole, matching_rules

_STRONG = ("elast", "stiff", "conf", "95")


CONFIDENCE_WORDS = ("conf", "95")


@dataclass(frozen=True)
class SeriesRecognition:
    """What a series is, and which rule said so."""

    role: str  #: stiffness | masked_stiffness | hatched_stiffness | confidence_map | magnitude | wave | … | plain
    rule: str  #: vendor rule name, or "fallback: …"
    unit: str | None = None  #: the rule's unit (``ValueUnit`` value) when it names one
    also: tuple[str, ...] = ()  #: other rules that matched with a different role


def series_text(ds: Dataset) -> str:
    image_type = " ".join(str(t) for t in (ds.get("ImageType") or []))
    return f"{ds.get('SeriesDescription', '')} {ds.get('ProtocolName', '')} {image_type}".lower()


def series_role(ds: Dataset) -> str:
    """Keyword fallback: ``elastogram``, ``magnitude``, ``wave`` or ``unknown`` from description and ImageType.

    Used only when no vendor rule of :mod:`mre_core.io.vendor_rules` matches; a series chosen this
    way raises the ``fallback_series_rule`` QC flag.
    """
    text, tokens = series_text(ds), {str(t).upper() for t in (ds.get("ImageType") or [])}
    if any(k in text for k in _STRONG):
        return "elastogram"
    if re.search(r"(?<![a-z])mag", text) or "M" in tokens:
        return "magnitude"
    if "wave" in text or "phase" in text or "P" in tokens or "PHASE" in tokens:
        return "wave"
    if "mre" in text or "MRE" in tokens:
        return "elastogram"
    return "unknown"


MEASURABLE_ROLES = {SeriesRole.STIFFNESS.value, SeriesRole.MASKED_STIFFNESS.value, SeriesRole.HATCHED_STIFFNESS.value}


_CATCH_ALL = {"ge.mre.derived_other"}  #: rules that label "some other derived MRE series"; not an ambiguity


def recognise(head: Dataset, stack: np.ndarray) -> SeriesRecognition:
    """Role of a series from its first header and its stored values (any shape): the first matching vendor rule,
    else a value guard for confidence maps, else the keyword fallback."""
    matches = matching_rules(head)
    if matches:
        first = matches[0]
        also = tuple(m.rule.name for m in matches[1:] if m.role != first.role and m.rule.name not in _CATCH_ALL)
        return SeriesRecognition(first.role.value, first.rule.name, first.unit.value, also)
    named_stiffness = any(k in series_text(head) for k in ("elast", "stiff"))
    if not named_stiffness and (re.search(r"\bconfidence\b", series_text(head)) or conf.looks_like_confidence_map(stack)):
        return SeriesRecognition(SeriesRole.CONFIDENCE_MAP.value,
                                 "fallback: named or valued like a confidence map (0-1000 with a plateau near the top)")
    return SeriesRecognition(series_role(head), "fallback: keywords in SeriesDescription/ProtocolName/ImageType")
