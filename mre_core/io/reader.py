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
import io
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

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


def _frame_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The functional-group item ``sequence`` of frame ``index``: per-frame first, else shared."""
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for groups in ([per[index]] if index < len(per) else []) + list(shared[:1]):
        if sequence in groups and groups[sequence].value:
            return groups[sequence].value[0]
    return None


def _parse_frames(label: str, ds: Dataset) -> list[ParsedSlice]:
    """An Enhanced MR multi-frame image → one slice per frame, geometry from the functional groups.

    Each slice keeps the whole header (its SOP Instance UID is the file's) and is keyed
    ``<SOPInstanceUID>#<frame>`` (frames counted from 1, as ReferencedFrameNumber counts them).
    """
    stack = _decode(ds)
    if stack.ndim != 3:
        raise DicomInputError(f"multi-frame image whose pixel data has shape {stack.shape}: cannot split it into frames")
    del ds.PixelData
    uid, out = str(ds.get("SOPInstanceUID", label)), []
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
        out.append(ParsedSlice(f"{label}#{i + 1}", ds, np.asarray(stack[i]), f"{uid}#{i + 1}", i + 1,
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


