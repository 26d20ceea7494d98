"""Read back the numbers of an SR written by :mod:`mre_core.outputs.sr` (tests, the worklist and audits).

:func:`read_sr_summary` walks the TID 1500 tree and returns the study value, stage, slices used and
per-slice measurements, so a round trip through bytes can be checked against the result that made it.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import SegmentationStorage

from mre_core.outputs.sr import (
    ALGORITHM_NAME,
    ALGORITHM_VERSION,
    AREA,
    AREA_WEIGHTED_MEAN,
    DERIVATION,
    ELASTICITY,
    EXCLUDED,
    FIBROSIS_STAGE,
    IMAGING_MEASUREMENTS,
    MEAN,
    MEAN_OF_SLICE_MEANS,
    MEASUREMENT_GROUP,
    MEDIAN,
    METHOD,
    NO_VALUE_REASON,
    QC_FLAG,
    SD,
    SEG_FRAME,
    SEG_SOURCE,
    SIGNIFICANT_FIBROSIS,
    SLICES_USED,
    STAGE_CODES,
    YES,
    code_key,
)


def _name(item: Dataset) -> tuple[str, str]:
    seq = item.get("ConceptNameCodeSequence")
    return (str(seq[0].CodingSchemeDesignator), str(seq[0].CodeValue)) if seq else ("", "")


def _children(item: Dataset, name: tuple[str, str] | None = None) -> list[Dataset]:
    return [c for c in item.get("ContentSequence", []) if name is None or _name(c) == name]


def _number(item: Dataset) -> float | None:
    measured = item.get("MeasuredValueSequence")
    if not measured:
        return None
    value = measured[0].get("FloatingPointValue", measured[0].get("NumericValue"))
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _code_of(item: Dataset, name: tuple[str, str]) -> tuple[str, str] | None:
    """(scheme, value) of the first CODE child called ``name``."""
    for c in _children(item, name):
        if c.get("ValueType") == "CODE" and c.get("ConceptCodeSequence"):
            return (str(c.ConceptCodeSequence[0].CodingSchemeDesignator), str(c.ConceptCodeSequence[0].CodeValue))
    return None


def _measure(group: Dataset, name: Any, derivation: Any = None, method: Any = None) -> float | None:
    for item in _children(group, code_key(name)):
        if item.get("ValueType") != "NUM":
            continue
        if derivation is not None and _code_of(item, DERIVATION) != code_key(derivation):
            continue
        if method is not None and _code_of(item, METHOD) != code_key(method):
            continue
        return _number(item)
    return None


def _texts(group: Dataset, name: Any) -> list[str]:
    return [str(c.TextValue) for c in _children(group, code_key(name)) if c.get("ValueType") == "TEXT"]


def _yes(group: Dataset, name: Any) -> bool | None:
    code = _code_of(group, code_key(name))
    return None if code is None else code == code_key(YES)


def _uid(item: Dataset) -> str:
    return str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)


def _read_slice(group: Dataset) -> dict[str, Any]:
    seg_frame, source = _children(group, SEG_FRAME)[0], _children(group, SEG_SOURCE)
    frames = seg_frame.ReferencedSOPSequence[0].get("ReferencedFrameNumber")
    return {
        "sop_uid": _uid(source[0]) if source else "",
        "seg_sop_uid": _uid(seg_frame),
        "seg_frame": int((frames[0] if isinstance(frames, MultiValue) else frames) or 0),
        "mean_kpa": _measure(group, ELASTICITY, derivation=MEAN),
        "median_kpa": _measure(group, ELASTICITY, derivation=MEDIAN),
        "sd_kpa": _measure(group, ELASTICITY, derivation=SD),
        "area_cm2": _measure(group, AREA),
        "excluded": bool(_yes(group, EXCLUDED)),
        "qc_flags": [t.split(":", 1)[0] for t in _texts(group, QC_FLAG)],
    }


def _evidence_seg_uid(ds: Dataset) -> str:
    """The first Segmentation listed as evidence (also found when no slice group references it)."""
    for key in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in ds.get(key, []):
            for series in study.get("ReferencedSeriesSequence", []):
                for ref in series.get("ReferencedSOPSequence", []):
                    if str(ref.ReferencedSOPClassUID) == SegmentationStorage:
                        return str(ref.ReferencedSOPInstanceUID)
    return ""


def _as_dataset(source: str | Path | bytes | Dataset) -> Dataset:
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (bytes, bytearray)):
        return pydicom.dcmread(io.BytesIO(source))
    return pydicom.dcmread(Path(source))


def read_sr_summary(source: str | Path | bytes | Dataset) -> dict[str, Any]:
    """The key facts of an SR written by :func:`build_sr` (file path, bytes or dataset).

    Returns
    -------
    dict
        ``stiffness_kpa`` and ``stiffness_kpa_area_weighted`` (kPa, ``None`` without a value),
        ``stage`` (``"F0"``..``"F4"`` or ``""``), ``significant_fibrosis`` (bool or ``None``),
        ``n_slices_used`` (int), ``model``, ``model_sha256``, ``seg_sop_uid``, ``source_sop_uids``
        (slices with an ROI), ``slices`` (per-slice dicts: kPa statistics, ``area_cm2``, ``excluded``),
        ``qc_flags`` (flag values), ``no_value_reason``, ``patient_id``, ``study_uid``, ``sop_uid``,
        ``verification_flag``, ``completion_flag``, ``preliminary_flag``, ``verifying_observer``.

    Raises
    ------
    ValueError
        If the document is not a TID 1500 report with a study measurement group.
    """
    ds = _as_dataset(source)
    containers = _children(ds, IMAGING_MEASUREMENTS)
    groups = _children(containers[0], MEASUREMENT_GROUP) if containers else []
    study = [g for g in groups if not _children(g, SEG_FRAME)]
    if not study:
        raise ValueError(f"SR {ds.get('SOPInstanceUID', '?')}: no study measurement group; not an MRE Liver Review SR")
    g = study[0]
    stages = {code_key(code): s.label for s, code in STAGE_CODES.items()}
    slices = [_read_slice(s) for s in groups if _children(s, SEG_FRAME)]
    observers = ds.get("VerifyingObserverSequence") or []
    return {
        "stiffness_kpa": _measure(g, ELASTICITY, method=MEAN_OF_SLICE_MEANS),
        "stiffness_kpa_area_weighted": _measure(g, ELASTICITY, method=AREA_WEIGHTED_MEAN),
        "stage": stages.get(_code_of(g, code_key(FIBROSIS_STAGE)) or ("", ""), ""),
        "significant_fibrosis": _yes(g, SIGNIFICANT_FIBROSIS),
        "n_slices_used": int(_measure(g, SLICES_USED) or 0),
        "model": next((str(c.TextValue) for c in _children(g, ALGORITHM_NAME)), ""),
        "model_sha256": next((str(c.TextValue) for c in _children(g, ALGORITHM_VERSION)), ""),
        "seg_sop_uid": slices[0]["seg_sop_uid"] if slices else _evidence_seg_uid(ds),
        "source_sop_uids": [s["sop_uid"] for s in slices],
        "slices": slices,
        "qc_flags": [t.split(":", 1)[0] for t in _texts(g, QC_FLAG)],
        "no_value_reason": " ".join(_texts(g, NO_VALUE_REASON)),
        "patient_id": str(ds.get("PatientID", "")),
        "study_uid": str(ds.get("StudyInstanceUID", "")),
        "sop_uid": str(ds.get("SOPInstanceUID", "")),
        "verification_flag": str(ds.get("VerificationFlag", "")),
        "completion_flag": str(ds.get("CompletionFlag", "")),
        "preliminary_flag": str(ds.get("PreliminaryFlag", "")),
        "verifying_observer": str(observers[0].VerifyingObserverName) if observers else "",
    }
