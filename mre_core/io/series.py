"""Group parsed slices into studies and series, recognise each series' role, pick the elastogram.

Series recognition (per study)
------------------------------
1. Role from SeriesDescription + ProtocolName + ImageType values (case-insensitive):
   ``elast``/``stiff``/``conf``/``95`` → elastogram; ``mag`` (not inside a word) or
   ImageType ``M`` → magnitude; ``wave``/``phase`` or ImageType ``P`` → wave; ``mre`` or
   ImageType ``MRE`` → elastogram; else unknown. Magnitude and wave series are skipped.
2. Pixels decide the marking: a cross-hatch (:func:`mre_core.io.confidence.find_hatch_value`,
   also accepted on an unknown-role series); zero holes inside the body's convex hull in
   at least half the slices (zero fill); a series named ``conf``/``95`` with >= 5 % zero
   pixels is zero fill, without zeros it is kept with encoding NONE (flagged downstream).
3. GE-style pair: a non-hatched elastogram series whose every slice is a masked copy of
   the slice at the same position in another elastogram series of the study
   (:func:`mre_core.io.confidence.is_masked_copy`) becomes a paired-series candidate, unless
   it is zero filled on its own and neither SourceImageSequence links it to the map nor do
   any of its non-zero pixels differ from the map (then it stays zero fill).
4. Best candidate: marked (pair/hatch) > zero fill > none, then a ``conf``/``95`` name,
   then more slices. Other candidates are reported as "another confidence series …".
Limits: zero fill confined to the body's edge is only recognised through the name; a
hatch drawn with lines thicker than 1 pixel falls back to a morphological closing; the
unknown-manufacturer unit guess is a median-value heuristic (see :func:`to_kpa`).
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from mre_core.config import Settings
from mre_core.io import confidence as conf
from mre_core.io.elastogram import (
    ConfidenceEncoding,
    Elastogram,
    ElastogramSeries,
    SkippedFile,
    StudyInput,
)
from mre_core.io.units import profile_note, to_kpa  # noqa: F401 (to_kpa re-exported: part of the reader API)

logger = logging.getLogger(__name__)


_STRONG = ("elast", "stiff", "conf", "95")
_CONF = ("conf", "95")
_META_TAGS = ("PatientName", "PatientAge", "PatientSex", "StudyDate", "StudyDescription",
              "AccessionNumber", "Manufacturer", "InstitutionName")


@dataclass(frozen=True)
class ParsedSlice:
    source: str
    header: Dataset
    stored: np.ndarray
    sop_uid: str
    instance_number: int
    position_mm: float
    pixel_spacing_mm: tuple[float, float]

    def key(self) -> tuple[str, str, str]:
        h = self.header
        return (str(h.get("PatientID", "") or "anonymous"), str(h.get("StudyInstanceUID", "")),
                str(h.get("SeriesInstanceUID", "")))

    def sort_key(self) -> tuple[int, float, int]:
        finite = bool(np.isfinite(self.position_mm))
        return (0 if finite else 1, self.position_mm if finite else 0.0, self.instance_number)


@dataclass(frozen=True)
class _Candidate:
    slices: tuple[ParsedSlice, ...]
    encoding: ConfidenceEncoding
    hatch_value: float | None = None
    full_map: tuple[ParsedSlice, ...] | None = None

    def rank(self) -> tuple[int, int, int]:
        marked = {ConfidenceEncoding.NONE: 0, ConfidenceEncoding.ZERO_FILL: 1}.get(self.encoding, 2)
        return (marked, int(any(k in _text(self.slices[0].header) for k in _CONF)), len(self.slices))


def _text(ds: Dataset) -> str:
    image_type = " ".join(str(t) for t in (ds.get("ImageType") or []))
    return f"{ds.get('SeriesDescription', '')} {ds.get('ProtocolName', '')} {image_type}".lower()


def series_role(ds: Dataset) -> str:
    """``elastogram``, ``magnitude``, ``wave`` or ``unknown`` from description and ImageType."""
    text, tokens = _text(ds), {str(t).upper() for t in (ds.get("ImageType") or [])}
    if any(k in text for k in _STRONG):
        return "elastogram"
    if re.search(r"(?<![a-z])mag", text) or "M" in tokens:
        return "magnitude"
    if "wave" in text or "phase" in text or "P" in tokens or "PHASE" in tokens:
        return "wave"
    if "mre" in text or "MRE" in tokens:
        return "elastogram"
    return "unknown"


def _group(slices: list[ParsedSlice]) -> dict[tuple[str, str], dict[str, list[ParsedSlice]]]:
    studies: dict[tuple[str, str], dict[str, list[ParsedSlice]]] = defaultdict(lambda: defaultdict(list))
    for s in slices:
        patient, study, series = s.key()
        studies[(patient, study)][series].append(s)
    return studies


def _drop_mixed_sizes(series: list[ParsedSlice], skipped: list[SkippedFile]) -> list[ParsedSlice]:
    sizes = Counter(s.stored.shape for s in series)
    if len(sizes) == 1:
        return series
    keep = sizes.most_common(1)[0][0]
    for s in series:
        if s.stored.shape != keep:
            skipped.append(SkippedFile(s.source, f"mixed-size series: this slice is {s.stored.shape[0]}x"
                                       f"{s.stored.shape[1]} but the series is {keep[0]}x{keep[1]}; "
                                       "re-export the series"))
    return [s for s in series if s.stored.shape == keep]


def _classify(series: list[ParsedSlice]) -> tuple[str, _Candidate | None]:
    """(role, candidate): a candidate when the series carries (or may carry) a confidence map."""
    head = series[0].header
    role = series_role(head)
    if role in ("magnitude", "wave"):
        return role, None
    stack = np.stack([s.stored for s in series])
    hatch = conf.find_hatch_value(stack)
    if hatch is not None:
        return "elastogram", _Candidate(tuple(series), ConfidenceEncoding.CROSS_HATCH, hatch)
    if role == "unknown":
        return role, None
    if sum(conf.has_zero_fill(s.stored) for s in series) * 2 >= len(series):
        return role, _Candidate(tuple(series), ConfidenceEncoding.ZERO_FILL)
    if any(k in _text(head) for k in _CONF):  # named a confidence map: its zeros are the marking
        zeros = float(np.mean(stack == 0))
        encoding = ConfidenceEncoding.ZERO_FILL if zeros >= 0.05 else ConfidenceEncoding.NONE
        return role, _Candidate(tuple(series), encoding)
    return "plain", None


def _find_full_map(masked: list[ParsedSlice], others: list[list[ParsedSlice]]) -> tuple[ParsedSlice, ...] | None:
    """The series of which ``masked`` is a confidence-masked copy, matched slice by slice."""
    def pos(s: ParsedSlice) -> object:
        return round(s.position_mm, 2) if np.isfinite(s.position_mm) else ("n", s.instance_number)
    for full in others:
        by_pos = {pos(s): s for s in full}
        matched = [by_pos.get(pos(m)) for m in masked]
        if all(f is not None and conf.is_masked_copy(f.stored, m.stored) for f, m in zip(matched, masked)):
            return tuple(f for f in matched if f is not None)
    return None


def _pair_needed(masked: list[ParsedSlice], full: tuple[ParsedSlice, ...]) -> bool:
    """A zero-filled series is read as a pair only when the data links the two series
    (SourceImageSequence) or the masked copy has non-zero pixels that differ from the map."""
    full_uids = {f.sop_uid for f in full}
    for m, f in zip(masked, full):
        refs = {str(r.get("ReferencedSOPInstanceUID", "")) for r in m.header.get("SourceImageSequence", [])}
        if refs & full_uids or np.any((m.stored != 0) & (m.stored != f.stored)):
            return True
    return False


def build_studies(slices: list[ParsedSlice], settings: Settings, skipped: list[SkippedFile]) -> list[StudyInput]:
    studies: list[StudyInput] = []
    for (patient, study_uid), by_series in _group(slices).items():
        try:
            study = _build_one(patient, study_uid, by_series, settings, skipped)
        except Exception as err:  # noqa: BLE001 - one bad study must not stop the batch
            logger.exception("study %s failed", study_uid)
            study = None
            for series in by_series.values():
                skipped.extend(SkippedFile(s.source, f"study could not be read ({err})") for s in series)
        if study is not None:
            studies.append(study)
    return studies


def _build_one(patient: str, study_uid: str, by_series: dict[str, list[ParsedSlice]], settings: Settings,
               skipped: list[SkippedFile]) -> StudyInput | None:
    classified: dict[str, tuple[str, _Candidate | None]] = {}
    series_slices: dict[str, list[ParsedSlice]] = {}
    for uid, raw in by_series.items():
        series = sorted(_drop_mixed_sizes(raw, skipped), key=ParsedSlice.sort_key)
        series_slices[uid] = series
        classified[uid] = _classify(series)
    hatch = ConfidenceEncoding.CROSS_HATCH
    pairable = [u for u, (r, c) in classified.items() if r == "plain" or (c is not None and c.encoding is not hatch)]
    candidates: list[_Candidate] = []
    for uid, (_, cand) in classified.items():
        if uid in pairable:
            full = _find_full_map(series_slices[uid], [series_slices[o] for o in pairable if o != uid])
            if full is not None and (cand is None or cand.encoding is not ConfidenceEncoding.ZERO_FILL
                                     or _pair_needed(series_slices[uid], full)):
                cand = _Candidate(tuple(series_slices[uid]), ConfidenceEncoding.PAIRED_SERIES, full_map=full)
        if cand is not None:
            candidates.append(cand)
    chosen = max(candidates, key=_Candidate.rank) if candidates else None
    used = {s.sop_uid for s in (chosen.full_map or ())} if chosen else set()
    for uid, (role, _) in classified.items():
        series = series_slices[uid]
        if chosen is not None and series[0].sop_uid in {s.sop_uid for s in chosen.slices}:
            continue
        if series[0].sop_uid in used:
            continue
        reason = _ignore_reason(role, series, chosen, candidates)
        skipped.extend(SkippedFile(s.source, reason) for s in series)
    if chosen is None:
        return None
    return _study_input(patient, study_uid, chosen, settings)


def _ignore_reason(role: str, series: list[ParsedSlice], chosen: _Candidate | None, candidates: list[_Candidate]) -> str:
    if any(c.slices[0].sop_uid == series[0].sop_uid for c in candidates) and chosen is not None:
        h = chosen.slices[0].header
        return (f"another confidence series of this study was analysed (series {h.get('SeriesNumber', '?')} "
                f"'{h.get('SeriesDescription', '')}', {chosen.encoding.value})")
    return {
        "magnitude": "magnitude images, not an elastogram",
        "wave": "wave (phase) images, not an elastogram",
        "plain": "elastogram without 95 % confidence map (no cross-hatch, no zero-filled areas, no masked "
                 "companion series): export the confidence-map series",
    }.get(role, "unrecognised series: no elastogram keyword in SeriesDescription/ProtocolName/ImageType and "
                "no confidence marking in the pixels")


def _study_input(patient: str, study_uid: str, cand: _Candidate, settings: Settings) -> StudyInput:
    head = cand.slices[0].header
    values = cand.full_map if cand.full_map is not None else cand.slices
    hint = np.stack([s.stored for s in values])
    if cand.hatch_value is not None:
        hint = np.where(hint == cand.hatch_value, 0, hint)
    period = None
    if cand.hatch_value is not None:
        period = conf.series_period(np.stack([s.stored for s in cand.slices]), cand.hatch_value)
    slices = tuple(_elastogram(s, i, cand, settings, hint, period) for i, s in enumerate(cand.slices))
    meta = {t: str(head.get(t, "")) for t in _META_TAGS}
    meta["unit_profile_source"] = profile_note(head, settings)
    if cand.hatch_value is not None:
        meta["hatch_value"] = f"{cand.hatch_value:g}"
    paired = None
    if cand.full_map is not None:
        paired = str(cand.full_map[0].header.get("SeriesInstanceUID", ""))
        meta["paired_full_map_sources"] = ";".join(s.source for s in cand.full_map)
    series = ElastogramSeries(series_uid=str(head.get("SeriesInstanceUID", "")),
                              description=str(head.get("SeriesDescription", "")),
                              manufacturer=str(head.get("Manufacturer", "")), slices=slices,
                              paired_series_uid=paired)
    return StudyInput(patient_id=patient, study_uid=study_uid, series=series, meta=meta)


def _elastogram(s: ParsedSlice, index: int, cand: _Candidate, settings: Settings, hint: np.ndarray,
                period: int | None) -> Elastogram:
    stored = s.stored if cand.full_map is None else cand.full_map[index].stored
    kpa, profile, per_unit = to_kpa(stored, s.header, settings, hint_values=hint)
    kpa = kpa.astype(np.float32)
    kpa[stored == 0] = np.nan
    if cand.encoding is ConfidenceEncoding.CROSS_HATCH and cand.hatch_value is not None:
        hatch = conf.decode_hatch(stored, cand.hatch_value, period_hint=period)
        kpa[hatch.hatch_pixels] = np.nan
        confidence = conf.body_mask(stored) & ~hatch.hatched_area
    elif cand.encoding is ConfidenceEncoding.PAIRED_SERIES:
        confidence = conf.decode_pair(stored, s.stored)
    else:
        confidence = conf.body_mask(stored)
    confidence &= np.isfinite(kpa)
    return Elastogram(kpa=kpa, confidence=confidence, pixel_spacing_mm=s.pixel_spacing_mm, sop_uid=s.sop_uid,
                      series_uid=str(s.header.get("SeriesInstanceUID", "")),
                      study_uid=str(s.header.get("StudyInstanceUID", "")),
                      patient_id=str(s.header.get("PatientID", "") or "anonymous"),
                      instance_number=s.instance_number, position_mm=s.position_mm, profile=profile,
                      kpa_per_unit=per_unit, encoding=cand.encoding, source=s.source, header=s.header)
