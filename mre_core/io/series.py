"""Group parsed slices into studies and series, recognise each series' role, pick the elastogram.

Series recognition (per study)
------------------------------
1. Role from the named vendor rules of :mod:`mre_core.io.vendor_rules` (first match; another
   matching rule with a different role makes the choice *ambiguous*). Without a rule match, a
   value guard: a series named "confidence" (and not "elast"/"stiff") or whose values look like a
   per-mille/percent map (:func:`mre_core.io.confidence.looks_like_confidence_map`) is a confidence
   map and is **never measured as stiffness**. Otherwise the keyword fallback (:func:`mre_core.io.roles.series_role`):
   ``elast``/``stiff``/``conf``/``95`` → elastogram; ``mag`` or ImageType ``M`` → magnitude;
   ``wave``/``phase`` or ImageType ``P`` → wave; ``mre`` → elastogram; else unknown. A series chosen
   by the fallback raises the QC flag ``fallback_series_rule``.
2. Pixels decide the marking: a cross-hatch (:func:`mre_core.io.confidence.find_hatch_value`,
   also accepted on an unknown-role series); zero holes inside the body's convex hull in
   at least half the slices (zero fill); a masked-stiffness series or one named ``conf``/``95``
   with >= 5 % zero pixels is zero fill, without zeros it is kept with encoding NONE (flagged).
3. GE-style pair: a non-hatched elastogram series whose every slice is a masked copy of
   the slice at the same position in another elastogram series of the study
   (:func:`mre_core.io.confidence.is_masked_copy`) becomes a paired-series candidate, unless
   it is zero filled on its own and neither SourceImageSequence links it to the map nor do
   any of its non-zero pixels differ from the map (then it stays zero fill).
4. Separate confidence map (Resoundant MMDI "Confidence", 0-1000 per mille): a stiffness series
   without its own marking is paired slice by slice (position to 0.1 mm, same grid, same frame of
   reference) with a confidence-map series; the region is >= 950 ‰ (or >= 95 %).
5. Best candidate: marked (pair/hatch/map) > zero fill > none, then chosen by a rule > fallback,
   then a ``conf``/``95`` name, then more slices; a tie on the first two is an ambiguity (QC flag).
   Every series left out gets one reason naming the rule that recognised it.
6. Values: saturated stored values (burned-in annotation text, e.g. 32766 in MMDI maps) and zeros
   never carry stiffness. The unit comes from an explicit profile, an RWVM, the rule's unit, the
   manufacturer, or (fallback, flagged) the value range. Each result records ``series_rule``,
   ``unit_rule`` and ``confidence_rule``.
7. Magnitude (read only, after the choice): the study's magnitude series matching the analysed slices
   slice by slice (position to 0.1 mm, frame of reference, orientation and field of view) gives each
   slice its anatomical image, resampled bilinearly when only the grid differs
   (:func:`mre_core.io.magnitude.pair_magnitude`); the magnitude series stays in ``skipped`` as before, and nothing
   measured depends on it. The result records ``magnitude_rule``.
Limits: zero fill confined to the body's edge is only recognised through the name; a
hatch drawn with lines thicker than 1 pixel falls back to a morphological closing; the
unknown-manufacturer unit guess is a median-value heuristic (see :func:`to_kpa`).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any

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
from mre_core.io.roles import CONFIDENCE_WORDS, MEASURABLE_ROLES, SeriesRecognition, recognise, series_text
from mre_core.io.units import RULE_UNITS, profile_note, to_kpa
from mre_core.io.vendor_rules import SeriesRole

logger = logging.getLogger(__name__)


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
    frame_number: int | None = None  #: 1-based frame of an Enhanced MR multi-frame source, else None

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
    recognition: SeriesRecognition
    hatch_value: float | None = None
    full_map: tuple[ParsedSlice, ...] | None = None
    confidence_map: tuple[ParsedSlice, ...] | None = None
    confidence_scale: int = 1000

    def rank(self) -> tuple[int, int, int, int]:
        marked = {ConfidenceEncoding.NONE: 0, ConfidenceEncoding.ZERO_FILL: 1}.get(self.encoding, 2)
        by_rule = int(not self.recognition.rule.startswith("fallback"))
        return (marked, by_rule, int(any(k in series_text(self.slices[0].header) for k in CONFIDENCE_WORDS)), len(self.slices))


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


def _classify(series: list[ParsedSlice]) -> tuple[SeriesRecognition, _Candidate | None]:
    """(recognition, candidate): a candidate when the series is stiffness carrying (or maybe carrying) a marking."""
    rec = recognise(series[0].header, np.stack([s.stored for s in series]))
    if rec.role not in MEASURABLE_ROLES | {"elastogram", "unknown"}:
        return rec, None
    head = series[0].header
    stack = np.stack([s.stored for s in series])
    hatch = conf.find_hatch_value(stack)
    if hatch is not None:
        return rec, _Candidate(tuple(series), ConfidenceEncoding.CROSS_HATCH, rec, hatch)
    if rec.role == "unknown":
        return rec, None
    if sum(conf.has_zero_fill(s.stored) for s in series) * 2 >= len(series):
        return rec, _Candidate(tuple(series), ConfidenceEncoding.ZERO_FILL, rec)
    if rec.role == SeriesRole.MASKED_STIFFNESS.value or any(k in series_text(head) for k in CONFIDENCE_WORDS):
        zeros = float(np.mean(stack == 0))
        encoding = ConfidenceEncoding.ZERO_FILL if zeros >= 0.05 else ConfidenceEncoding.NONE
        return rec, _Candidate(tuple(series), encoding, rec)
    return replace(rec, role="plain"), None


def _position_key(s: ParsedSlice) -> object:
    return round(s.position_mm, 1) if np.isfinite(s.position_mm) else ("n", s.instance_number)


def _find_confidence_map(stiffness: list[ParsedSlice], maps: list[list[ParsedSlice]]) -> tuple[ParsedSlice, ...] | None:
    """The confidence-map series matching ``stiffness`` slice by slice (position, grid, frame of reference)."""
    frame = str(stiffness[0].header.get("FrameOfReferenceUID", ""))
    for series in maps:
        other = str(series[0].header.get("FrameOfReferenceUID", ""))
        if frame and other and frame != other:
            continue
        by_pos = {_position_key(s): s for s in series}
        matched = [by_pos.get(_position_key(s)) for s in stiffness]
        if all(m is not None and m.stored.shape == s.stored.shape for m, s in zip(matched, stiffness)):
            return tuple(m for m in matched if m is not None)
    return None


def _find_full_map(masked: list[ParsedSlice], others: list[list[ParsedSlice]]) -> tuple[ParsedSlice, ...] | None:
    """The series of which ``masked`` is a confidence-masked copy, matched slice by slice."""
    for full in others:
        by_pos = {_position_key(s): s for s in full}
        matched = [by_pos.get(_position_key(m)) for m in masked]
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
    classified: dict[str, tuple[SeriesRecognition, _Candidate | None]] = {}
    series_slices: dict[str, list[ParsedSlice]] = {}
    for uid, raw in by_series.items():
        series = sorted(_drop_mixed_sizes(raw, skipped), key=ParsedSlice.sort_key)
        series_slices[uid] = series
        classified[uid] = _classify(series)
    candidates = _candidates(classified, series_slices)
    chosen = max(candidates, key=_Candidate.rank) if candidates else None
    used = {s.sop_uid for s in (chosen.full_map or ()) + (chosen.confidence_map or ())} if chosen else set()
    for uid, (rec, _) in classified.items():
        series = series_slices[uid]
        if chosen is not None and series[0].sop_uid in {s.sop_uid for s in chosen.slices}:
            continue
        if series[0].sop_uid in used:
            continue
        head = series[0].header
        skipped.append(SkippedFile(series[0].source, _ignore_reason(rec, series, chosen, candidates),
                                   series_uid=uid, series_number=str(head.get("SeriesNumber", "") or ""),
                                   series_description=str(head.get("SeriesDescription", "") or ""),
                                   role=rec.role, rule=rec.rule, files=_files(series)))
    if chosen is None:
        return None
    ambiguous = [c for c in candidates if c is not chosen and c.rank()[:2] == chosen.rank()[:2]]
    magnitudes = [series_slices[u] for u, (r, _) in classified.items() if r.role == SeriesRole.MAGNITUDE.value]
    from mre_core.io.magnitude import safe_pair_magnitude  # magnitude.py builds on this module's ParsedSlice

    magnitude = safe_pair_magnitude(chosen.slices, magnitudes)
    return _study_input(patient, study_uid, chosen, settings, ambiguous, magnitude)


def _files(series: list[ParsedSlice]) -> tuple[str, ...]:
    """The files of a series, once each (the frames of a multi-frame file are one file)."""
    return tuple(dict.fromkeys(s.source.rsplit("#", 1)[0] if s.frame_number else s.source for s in series))


def _candidates(classified: dict[str, tuple[SeriesRecognition, _Candidate | None]],
                series_slices: dict[str, list[ParsedSlice]]) -> list[_Candidate]:
    """Every series that could be measured, with its marking: hatch, zero fill, masked pair or confidence map."""
    hatch = ConfidenceEncoding.CROSS_HATCH
    pairable = [u for u, (r, c) in classified.items() if r.role == "plain" or (c is not None and c.encoding is not hatch)]
    maps = [series_slices[u] for u, (r, _) in classified.items() if r.role == SeriesRole.CONFIDENCE_MAP.value]
    out: list[_Candidate] = []
    for uid, (rec, cand) in classified.items():
        series = series_slices[uid]
        if uid in pairable:
            full = _find_full_map(series, [series_slices[o] for o in pairable if o != uid])
            masked = rec.role == SeriesRole.MASKED_STIFFNESS.value  # a rule says it is the masked copy
            if full is not None and (cand is None or cand.encoding is not ConfidenceEncoding.ZERO_FILL
                                     or masked or _pair_needed(series, full)):
                cand = _Candidate(tuple(series), ConfidenceEncoding.PAIRED_SERIES, rec, full_map=full)
        if maps and (rec.role == SeriesRole.STIFFNESS.value or rec.role == "plain"
                     or (cand is not None and cand.encoding is ConfidenceEncoding.NONE)):
            cmap = _find_confidence_map(series, maps)
            if cmap is not None:
                scale = conf.confidence_scale(np.stack([s.stored for s in cmap]))
                cand = _Candidate(tuple(series), ConfidenceEncoding.CONFIDENCE_MAP, rec, confidence_map=cmap,
                                  confidence_scale=scale)
        if cand is not None:
            out.append(cand)
    return out


_ROLE_REASONS = {
    "magnitude": "magnitude images, not an elastogram",
    "wave": "wave (phase) images, not an elastogram",
    "phase": "raw phase images, not an elastogram",
    "raw_phase_magnitude": "raw MRE acquisition (phase and magnitude images), not an elastogram",
    "colour_save": "colour (RGB) screen save: stiffness cannot be read from display colours; export the "
                   "gray-scale stiffness series",
    "other": "derived MRE series that is not a gray stiffness map",
    "confidence_map": "confidence map: never measured as stiffness; no stiffness series at the same slice "
                      "positions was found to pair it with",
    "plain": "elastogram without 95 % confidence map (no cross-hatch, no zero-filled areas, no masked companion "
             "series, no confidence-map series): export the confidence-map series",
}


def _ignore_reason(rec: SeriesRecognition, series: list[ParsedSlice], chosen: _Candidate | None,
                   candidates: list[_Candidate]) -> str:
    """Why a series was not analysed (the rule that recognised it is recorded beside the reason)."""
    if any(c.slices[0].sop_uid == series[0].sop_uid for c in candidates) and chosen is not None:
        h = chosen.slices[0].header
        return (f"another confidence series of this study was analysed (series {h.get('SeriesNumber', '?')} "
                f"'{h.get('SeriesDescription', '')}', {chosen.encoding.value})")
    if rec.role == SeriesRole.CONFIDENCE_MAP.value and chosen is not None:
        return "confidence map not at the analysed series' slice positions: not used"
    default = ("unrecognised series: no vendor rule matched, no elastogram keyword in SeriesDescription/"
               "ProtocolName/ImageType and no confidence marking in the pixels")
    return _ROLE_REASONS.get(rec.role, default)


def _confidence_rule(cand: _Candidate) -> str:
    if cand.encoding is ConfidenceEncoding.CONFIDENCE_MAP and cand.confidence_map is not None:
        h = cand.confidence_map[0].header
        unit = "per mille, region >= 950" if cand.confidence_scale == 1000 else "percent, region >= 95"
        return (f"confidence-map series {h.get('SeriesNumber', '?')} '{h.get('SeriesDescription', '')}' "
                f"({unit}), paired by slice position")
    return {
        ConfidenceEncoding.CROSS_HATCH: "cross-hatch burned into the pixels (value {hatch})",
        ConfidenceEncoding.ZERO_FILL: "low-confidence pixels stored as 0 (zero fill)",
        ConfidenceEncoding.PAIRED_SERIES: "masked copy of a full stiffness map (pixels where both agree)",
        ConfidenceEncoding.NONE: "fallback: no marking found; every non-zero pixel treated as confident",
    }[cand.encoding].format(hatch=f"{cand.hatch_value:g}" if cand.hatch_value is not None else "?")


def _ingest_flags(cand: _Candidate, unit_rule: str, ambiguous: list[_Candidate]) -> tuple[str, ...]:
    flags = []
    if cand.recognition.rule.startswith("fallback"):
        flags.append("fallback_series_rule")
    if ambiguous or cand.recognition.also:
        flags.append("ambiguous_series")
    if unit_rule.startswith("fallback"):
        flags.append("fallback_unit")
    return tuple(flags)


def _study_input(patient: str, study_uid: str, cand: _Candidate, settings: Settings,
                 ambiguous: list[_Candidate], magnitude: Any = None) -> StudyInput:
    head = cand.slices[0].header
    values = cand.full_map if cand.full_map is not None else cand.slices
    hint = np.stack([s.stored for s in values])
    if cand.hatch_value is not None:
        hint = np.where(hint == cand.hatch_value, 0, hint)
    period = None
    if cand.hatch_value is not None:
        period = conf.series_period(np.stack([s.stored for s in cand.slices]), cand.hatch_value)
    rule_unit = cand.recognition.unit if cand.recognition.unit in RULE_UNITS else None
    slices = tuple(_elastogram(s, i, cand, settings, hint, period, rule_unit) for i, s in enumerate(cand.slices))
    from mre_core.io.magnitude import MagnitudePairing, with_magnitude

    magnitude = magnitude or MagnitudePairing()  # a MagnitudePairing (mre_core.io.magnitude)
    slices = with_magnitude(slices, magnitude)
    meta = {t: str(head.get(t, "")) for t in _META_TAGS}
    unit_rule = profile_note(head, settings, cand.recognition.rule, rule_unit)
    meta["unit_profile_source"] = unit_rule
    if cand.hatch_value is not None:
        meta["hatch_value"] = f"{cand.hatch_value:g}"
    if ambiguous:
        meta["other_candidate_series"] = "; ".join(
            f"{c.slices[0].header.get('SeriesNumber', '?')} '{c.slices[0].header.get('SeriesDescription', '')}'"
            for c in ambiguous)
    paired = None
    if cand.full_map is not None:
        paired = str(cand.full_map[0].header.get("SeriesInstanceUID", ""))
        meta["paired_full_map_sources"] = ";".join(s.source for s in cand.full_map)
    cmap_uid = None
    if cand.confidence_map is not None:
        cmap_uid = str(cand.confidence_map[0].header.get("SeriesInstanceUID", ""))
        meta["confidence_map_sources"] = ";".join(s.source for s in cand.confidence_map)
    series = ElastogramSeries(series_uid=str(head.get("SeriesInstanceUID", "")),
                              description=str(head.get("SeriesDescription", "")),
                              manufacturer=str(head.get("Manufacturer", "")), slices=slices,
                              paired_series_uid=paired, confidence_series_uid=cmap_uid,
                              series_rule=cand.recognition.rule, unit_rule=unit_rule,
                              confidence_rule=_confidence_rule(cand),
                              ingest_flags=_ingest_flags(cand, unit_rule, ambiguous),
                              magnitude_series_uid=magnitude.series_uid, magnitude_rule=magnitude.rule)
    return StudyInput(patient_id=patient, study_uid=study_uid, series=series, meta=meta)


def _elastogram(s: ParsedSlice, index: int, cand: _Candidate, settings: Settings, hint: np.ndarray,
                period: int | None, rule_unit: str | None) -> Elastogram:
    stored = s.stored if cand.full_map is None else cand.full_map[index].stored
    kpa, profile, per_unit = to_kpa(stored, s.header, settings, hint_values=hint, rule_unit=rule_unit)
    kpa = kpa.astype(np.float32)
    kpa[stored == 0] = np.nan
    bits, signed = int(s.header.get("BitsStored", 16) or 16), int(s.header.get("PixelRepresentation", 0) or 0) == 1
    kpa[conf.saturated_pixels(stored, bits, signed)] = np.nan  # burned-in annotation text, never a value
    if cand.encoding is ConfidenceEncoding.CROSS_HATCH and cand.hatch_value is not None:
        hatch = conf.decode_hatch(stored, cand.hatch_value, period_hint=period)
        kpa[hatch.hatch_pixels | (stored == cand.hatch_value)] = np.nan  # the hatch value is never a stiffness
        confidence = conf.body_mask(stored) & ~hatch.hatched_area
    elif cand.encoding is ConfidenceEncoding.PAIRED_SERIES:
        confidence = conf.decode_pair(stored, s.stored)
    elif cand.encoding is ConfidenceEncoding.CONFIDENCE_MAP and cand.confidence_map is not None:
        confidence = conf.confidence_map_region(cand.confidence_map[index].stored, cand.confidence_scale)
    else:
        confidence = conf.body_mask(stored)
    confidence &= np.isfinite(kpa)
    return Elastogram(kpa=kpa, confidence=confidence, pixel_spacing_mm=s.pixel_spacing_mm, sop_uid=s.sop_uid,
                      series_uid=str(s.header.get("SeriesInstanceUID", "")),
                      study_uid=str(s.header.get("StudyInstanceUID", "")),
                      patient_id=str(s.header.get("PatientID", "") or "anonymous"),
                      instance_number=s.instance_number, position_mm=s.position_mm, profile=profile,
                      kpa_per_unit=per_unit, encoding=cand.encoding, source=s.source, header=s.header,
                      frame_number=s.frame_number)
