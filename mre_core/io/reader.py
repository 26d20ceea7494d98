"""Read DICOM elastograms: files, folders, zips, uploads → :class:`ReadResult`.

Steps: expand the sources into files (folders recursively, zip members in memory), refuse
oversized files before reading them, parse each file and validate it (MR, grayscale,
PixelSpacing, pixel data), group by patient → study → series, recognise each series'
role from its description keywords and pixel statistics, pick one elastogram-with-
confidence series per study, then convert stored values to kPa (modality LUT + vendor
profile) and read the confidence region (:mod:`mre_core.io.confidence`).

Every input file ends up either in an :class:`Elastogram` (``source``; for GE-style pairs
the full map's files are listed in ``StudyInput.meta["paired_full_map_sources"]``) or in
``ReadResult.skipped`` with a reason a user can act on. A problem with one file never
stops the batch.

Series recognition and the choice of the elastogram are in :mod:`mre_core.io.series`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag

from mre_core.config import Settings
from mre_core.io.elastogram import (
    ReadResult,
    SkippedFile,
)
from mre_core.io.series import ParsedSlice, build_studies
from mre_core.io.sources import DicomInputError, Source, expand_source
from mre_core.io.units import profile_note, to_kpa  # noqa: F401 (to_kpa re-exported: part of the reader API)

logger = logging.getLogger(__name__)

_IMAGE_CLASSES = {"1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.2",
                  "1.2.840.10008.5.1.4.1.1.7"}  # MR, enhanced MR, CT, secondary capture


# ---------------------------------------------------------------- public API


def read_inputs(sources: Sequence[Source] | Source, settings: Settings,
                progress: Callable[[int, int], None] | None = None) -> ReadResult:
    """Read files, folders (recursive), zips and uploaded ``(name, bytes)`` pairs.

    Parameters
    ----------
    sources : sequence of path, str or (name, bytes)
        What to read; a single source is accepted too.
    settings : Settings
        Uses ``profile``, ``custom_kpa_per_unit`` and ``max_file_bytes``.
    progress : callable(done, total), optional
        Called after each file is parsed.

    Returns
    -------
    ReadResult
        One :class:`StudyInput` per study with a usable elastogram series; every other
        file in ``skipped`` with its reason.
    """
    if isinstance(sources, (str, Path)) or (isinstance(sources, tuple) and len(sources) == 2
                                            and isinstance(sources[1], (bytes, bytearray))):
        sources = [sources]  # type: ignore[list-item]
    skipped: list[SkippedFile] = []
    slices: list[ParsedSlice] = []
    seen: set[str] = set()
    with ExitStack() as stack:
        items = [it for src in sources for it in expand_source(src, settings.max_file_bytes, stack)]
        for done, item in enumerate(items, start=1):
            if isinstance(item, SkippedFile):
                skipped.append(item)
            else:
                label, read = item
                try:
                    parsed = _parse(label, read())
                    if parsed[0].sop_uid in seen:
                        raise DicomInputError("duplicate SOPInstanceUID: the same image was given twice")
                    seen.update(s.sop_uid for s in parsed)
                    slices.extend(parsed)
                except DicomInputError as err:
                    skipped.append(_skipped(label, err))
                except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch
                    logger.exception("unexpected error reading %s", label)
                    skipped.append(SkippedFile(label, f"unreadable file ({type(err).__name__}: {err})"))
            if progress is not None:
                progress(done, len(items))
    studies = build_studies(slices, settings, skipped)
    skipped = group_by_series(skipped)
    for s in skipped:
        logger.info("skipped %s", s.describe())
    return ReadResult(studies=tuple(studies), skipped=tuple(skipped))


def _skipped(label: str, err: DicomInputError) -> SkippedFile:
    ds = err.header
    if not isinstance(ds, Dataset) or not ds.get("SeriesInstanceUID"):
        return SkippedFile(label, str(err))
    return SkippedFile(label, str(err), series_uid=str(ds.SeriesInstanceUID),
                       series_number=str(ds.get("SeriesNumber", "") or ""),
                       series_description=str(ds.get("SeriesDescription", "") or ""), role=err.role,
                       rule="file check", files=(label,))


def group_by_series(skipped: list[SkippedFile]) -> list[SkippedFile]:
    """Merge the entries of one series left out for one reason into a single entry (files kept)."""
    out: list[SkippedFile] = []
    index: dict[tuple[str, str], int] = {}
    for s in skipped:
        key = (s.series_uid, s.reason)
        if not s.series_uid or key not in index:
            index[key] = len(out)
            out.append(s)
            continue
        first = out[index[key]]
        out[index[key]] = replace(first, files=(*first.files, *(s.files or (s.file,))))
    return out


# ---------------------------------------------------------------- one file


def _parse(label: str, data: bytes) -> list[ParsedSlice]:
    """One file → its slices (one, or one per frame of an Enhanced MR multi-frame image)."""
    ds = _read_dataset(data)
    media_class = str(getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", ""))
    if "PixelData" not in ds and ("Rows" in ds or media_class in _IMAGE_CLASSES):
        raise DicomInputError("truncated file: an image header without its pixel data; copy or export it again")
    if "PixelData" not in ds:
        raise DicomInputError("DICOM file without pixel data (e.g. a report or presentation state): not an image")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if int(ds.get("SamplesPerPixel", 1)) != 1 or not photometric.startswith("MONO"):
        raise DicomInputError("colour screen save (RGB): stiffness cannot be read "
                              "from display colours; export the gray-scale stiffness series", ds, "colour_save")
    modality = str(ds.get("Modality", ""))
    if modality != "MR":
        raise DicomInputError(f"{modality or 'unknown-modality'} image: only MR elastograms are analysed", ds, "other")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return _parse_frames(label, ds)
    spacing = ds.get("PixelSpacing")
    if not spacing or len(spacing) != 2 or min(float(v) for v in spacing) <= 0:
        raise DicomInputError("missing PixelSpacing: cannot measure ROI area; export with geometry")
    stored = _decode(ds)
    if not np.any(stored):
        raise DicomInputError("all-zero image: no stiffness values (empty or failed reconstruction)")
    del ds.PixelData
    return [ParsedSlice(label, ds, stored, str(ds.get("SOPInstanceUID", label)), int(ds.get("InstanceNumber", 0) or 0),
                        _position_mm(ds), (float(spacing[0]), float(spacing[1])))]


def _frame_sequence(ds: Dataset, index: int, sequence: str) -> DicomSequence | None:
    """The functional-group sequence ``sequence`` of frame ``index`` (all its items): per-frame first, else shared.

    DICOM PS3.3 C.7.6.16 (Multi-frame Functional Groups Module): a functional group macro sits either in
    the Shared Functional Groups Sequence (one item, for every frame) or in each item of the Per-frame
    Functional Groups Sequence, so the per-frame item is looked at first.
    """
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for groups in ([per[index]] if index < len(per) else []) + list(shared[:1]):
        if sequence in groups and groups[sequence].value:
            return groups[sequence].value
    return None


def _frame_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The functional-group item ``sequence`` of frame ``index``: per-frame first, else shared."""
    items = _frame_sequence(ds, index, sequence)
    return items[0] if items else None


#: the top-level elements of a frame's header that :func:`_frame_header` sets from the functional groups
_RESCALE_TAGS = ((Tag(0x00281053), "DS"), (Tag(0x00281052), "DS"), (Tag(0x00281054), "LO"))  # slope, intercept, type
_RWVM_TAG = Tag(0x00409096)  # RealWorldValueMappingSequence
_MODALITY_LUT_TAG = Tag(0x00283000)  # ModalityLUTSequence


def _frame_values(ds: Dataset, index: int) -> tuple[tuple[object, object, object] | None, DicomSequence | None]:
    """(rescale, RWVM) of frame ``index`` from the functional groups, None where the groups hold none.

    ``rescale`` is (slope, intercept, type) of the frame's Pixel Value Transformation macro
    (DICOM PS3.3 C.7.6.16.2.9: PixelValueTransformationSequence, one item with RescaleSlope,
    RescaleIntercept, RescaleType) when the item holds a slope or an intercept (a missing one reads as
    1 / 0, as :func:`mre_core.io.series._rescale` reads it); RWVM is the frame's Real World Value
    Mapping macro (PS3.3 C.7.6.16.2.11: RealWorldValueMappingSequence, one or more items).
    """
    rescale = None
    item = _frame_item(ds, index, "PixelValueTransformationSequence")
    if item is not None and ("RescaleSlope" in item or "RescaleIntercept" in item):
        rescale = (item.get("RescaleSlope") if item.get("RescaleSlope") not in (None, "") else 1.0,
                   item.get("RescaleIntercept") if item.get("RescaleIntercept") not in (None, "") else 0.0,
                   item.get("RescaleType") or None)
    return rescale, _frame_sequence(ds, index, "RealWorldValueMappingSequence")


def _frame_header(ds: Dataset, rescale: tuple[object, object, object] | None, rwvm: DicomSequence | None) -> Dataset:
    """The header of one frame: ``ds`` itself when its functional groups hold no values for the stored-value
    conversion, else a shallow copy of ``ds`` with the frame's values at the top level.

    :func:`~mre_core.io.units.to_kpa` reads RescaleSlope/RescaleIntercept and RealWorldValueMappingSequence
    at the top level of a header; in the Enhanced MR IOD they live in the functional groups (PS3.3
    C.7.6.16.2.9 Pixel Value Transformation, C.7.6.16.2.11 Real World Value Mapping; see
    :func:`_frame_values`). Where the groups hold them they replace any top-level value: the functional
    group is what the IOD defines for the frame (a top-level ModalityLUTSequence, which would take
    precedence over a rescale in the modality LUT step, is dropped along with a RescaleType the
    frame's item does not have). Where they hold none, the top level is kept as it is.

    The copy is ``copy.copy`` with its own element dictionary: pydicom's shallow copy (``Dataset.copy``,
    ``copy.copy``, ``Dataset(ds)``) shares the element dictionary of the original, and setting an existing
    keyword changes the shared DataElement in place, so only new DataElement objects are put into the copy.
    Every other element (and the file meta) is the original's (an element pydicom has not decoded yet is
    decoded separately in each copy, to an equal value): series recognition, grouping, the confidence-map
    pairing, vendor rules and meta tags read the same values as from ``ds``.
    """
    if rescale is None and rwvm is None:
        return ds
    if rescale is not None and ("RescaleSlope" in ds or "RescaleIntercept" in ds):
        top = (ds.get("RescaleSlope"), ds.get("RescaleIntercept"))
        if _as_float(top[0], 1.0) != _as_float(rescale[0], 1.0) or _as_float(top[1], 0.0) != _as_float(rescale[1], 0.0):
            logger.info("%s: top-level rescale (slope %s, intercept %s) differs from the functional groups' (%s, %s); "
                        "the functional group is used", ds.get("SOPInstanceUID", "?"), *top, *rescale[:2])
    if rwvm is not None and ds.get("RealWorldValueMappingSequence"):
        logger.info("%s: RealWorldValueMappingSequence both at the top level and in the functional groups; "
                    "the functional group is used", ds.get("SOPInstanceUID", "?"))
    header = copy.copy(ds)
    header._dict = dict(ds._dict)  # noqa: SLF001 - see the docstring: the shallow copy shares this dict
    if rescale is not None:
        for (tag, vr), value in zip(_RESCALE_TAGS, rescale):
            if value is not None:
                header[tag] = DataElement(tag, vr, value)
            elif tag in header:
                del header[tag]
        if _MODALITY_LUT_TAG in header:
            del header[_MODALITY_LUT_TAG]
    if rwvm is not None:
        header[_RWVM_TAG] = DataElement(_RWVM_TAG, "SQ", DicomSequence(list(rwvm)))
    return header


def _as_float(value: object, default: float) -> float:
    try:
        return default if value in (None, "") else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _parse_frames(label: str, ds: Dataset) -> list[ParsedSlice]:
    """An Enhanced MR multi-frame image → one slice per frame, geometry from the functional groups.

    Each slice is keyed ``<SOPInstanceUID>#<frame>`` (frames counted from 1, as ReferencedFrameNumber
    counts them) and keeps the whole header (its SOP Instance UID is the file's); where the functional
    groups hold the frame's stored-value conversion (Pixel Value Transformation, Real World Value
    Mapping) the header is a copy with those values at the top level (:func:`_frame_header`; per-frame
    group first, else shared, else the file's top level; the group wins over the top level). Frames
    with the same values share one header.
    """
    stack = _decode(ds)
    if stack.ndim != 3:
        raise DicomInputError(f"multi-frame image whose pixel data has shape {stack.shape}: cannot split it into frames")
    del ds.PixelData
    uid, out = str(ds.get("SOPInstanceUID", label)), []
    headers: dict[tuple[object, ...], Dataset] = {}
    for i in range(stack.shape[0]):
        measures, plane = _frame_item(ds, i, "PixelMeasuresSequence"), _frame_item(ds, i, "PlanePositionSequence")
        orient = _frame_item(ds, i, "PlaneOrientationSequence")
        spacing = measures.get("PixelSpacing") if measures is not None else None
        if not spacing or len(spacing) != 2 or min(float(v) for v in spacing) <= 0:
            raise DicomInputError(f"frame {i + 1}: no PixelSpacing in the functional groups; export with geometry")
        geometry = Dataset()
        if plane is not None and orient is not None:
            geometry.ImagePositionPatient = plane.get("ImagePositionPatient")
            geometry.ImageOrientationPatient = orient.get("ImageOrientationPatient")
        if not np.any(stack[i]):
            continue  # an empty frame holds no stiffness; the others are still read
        rescale, rwvm = _frame_values(ds, i)
        key = (None if rescale is None else tuple(None if v is None else str(v) for v in rescale),
               None if rwvm is None else id(rwvm))
        if key not in headers:
            headers[key] = _frame_header(ds, rescale, rwvm)
        out.append(ParsedSlice(f"{label}#{i + 1}", headers[key], np.asarray(stack[i]), f"{uid}#{i + 1}", i + 1,
                               _position_mm(geometry), (float(spacing[0]), float(spacing[1])), frame_number=i + 1))
    if not out:
        raise DicomInputError("all frames are zero: no stiffness values (empty or failed reconstruction)")
    return out


@contextlib.contextmanager
def _quiet_pydicom(quiet: bool) -> Iterator[None]:
    """Silence pydicom's VR warnings while probing bytes that may not be DICOM at all."""
    if not quiet:
        yield
        return
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _read_dataset(data: bytes) -> Dataset:
    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    try:
        with _quiet_pydicom(not preamble):
            ds = pydicom.dcmread(io.BytesIO(data), force=not preamble)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        if preamble:
            raise DicomInputError(f"truncated or corrupt DICOM file ({err}): copy or export it again") from None
        raise DicomInputError("not a DICOM file (no DICM preamble and no readable dataset)") from None
    if not preamble:
        try:
            ok = any(t in ds for t in ("SOPClassUID", "Modality")) and bool(ds.get("SOPInstanceUID"))
        except Exception:  # noqa: BLE001 - garbage parsed with force=True
            ok = False
        if not ok:
            raise DicomInputError("not a DICOM file (no DICM preamble and no readable dataset)")
    return ds


def _decode(ds: Dataset) -> np.ndarray:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        return np.asarray(ds.pixel_array)
    except Exception as err:  # noqa: BLE001 - decoder errors come in many types
        msg = str(err).split(" - ")[0]
        if any(k in msg.lower() for k in ("less than expected", "shorter", "truncat", "insufficient", "end of")):
            raise DicomInputError(f"truncated pixel data ({msg}): copy or export the file again") from None
        name = getattr(ts, "name", ts)
        raise DicomInputError(f"cannot decode pixel data ({name}): {msg}; install the pylibjpeg plugins "
                              "or export uncompressed") from None


def _position_mm(ds: Dataset) -> float:
    ipp, iop = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    if ipp is not None and iop is not None and len(ipp) == 3 and len(iop) == 6:
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        return float(np.dot(normal, np.asarray(ipp, float)))
    if ds.get("SliceLocation") is not None:
        return float(ds.SliceLocation)
    return float("nan")


# ---------------------------------------------------------------- series → studies


