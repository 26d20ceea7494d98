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
                    s = _parse(label, read())
                    if s.sop_uid in seen:
                        raise DicomInputError("duplicate SOPInstanceUID: the same image was given twice")
                    seen.add(s.sop_uid)
                    slices.append(s)
                except DicomInputError as err:
                    skipped.append(SkippedFile(label, str(err)))
                except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch
                    logger.exception("unexpected error reading %s", label)
                    skipped.append(SkippedFile(label, f"unreadable file ({type(err).__name__}: {err})"))
            if progress is not None:
                progress(done, len(items))
    studies = build_studies(slices, settings, skipped)
    for s in skipped:
        logger.info("skipped %s: %s", s.file, s.reason)
    return ReadResult(studies=tuple(studies), skipped=tuple(skipped))


# ---------------------------------------------------------------- one file


def _parse(label: str, data: bytes) -> ParsedSlice:
    ds = _read_dataset(data)
    media_class = str(getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", ""))
    if "PixelData" not in ds and ("Rows" in ds or media_class in _IMAGE_CLASSES):
        raise DicomInputError("truncated file: an image header without its pixel data; copy or export it again")
    if "PixelData" not in ds:
        raise DicomInputError("DICOM file without pixel data (e.g. a report or presentation state): not an image")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if int(ds.get("SamplesPerPixel", 1)) != 1 or not photometric.startswith("MONO"):
        raise DicomInputError("RGB/colour image (secondary capture or screenshot): stiffness cannot be read "
                              "from display colours; export the gray-scale elastogram")
    modality = str(ds.get("Modality", ""))
    if modality != "MR":
        raise DicomInputError(f"{modality or 'unknown-modality'} image: only MR elastograms are analysed")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomInputError("multi-frame (enhanced) image: export the elastogram as single-frame images")
    spacing = ds.get("PixelSpacing")
    if not spacing or len(spacing) != 2 or min(float(v) for v in spacing) <= 0:
        raise DicomInputError("missing PixelSpacing: cannot measure ROI area; export with geometry")
    stored = _decode(ds)
    if not np.any(stored):
        raise DicomInputError("all-zero image: no stiffness values (empty or failed reconstruction)")
    del ds.PixelData
    return ParsedSlice(label, ds, stored, str(ds.get("SOPInstanceUID", label)), int(ds.get("InstanceNumber", 0) or 0),
                  _position_mm(ds), (float(spacing[0]), float(spacing[1])))


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


