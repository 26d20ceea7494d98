"""Import existing reads: DICOM SEG and RTSTRUCT files of a reader's liver ROI, matched to the inbox's images.

``python -m mre_core import-rois PATH...`` walks files, folders (recursively) and zip archives
(:func:`mre_core.io.sources.expand_source`). Each file is one of:

an image
    (not a SEG or RTSTRUCT, with Study / Series / SOP Instance UIDs and pixel data): filed into the inbox as
    ``kept`` (:data:`mre_core.store.inbox.KEPT`, never analysed because of this), so a folder holding a site's
    exams and their reads is imported in one go. Images are filed before any read is matched.
a read
    a DICOM SEG (Segmentation, or Label Map Segmentation) or an RTSTRUCT whose referenced images are matched by
    SOP Instance UID to the inbox, and stored as reader ROIs (:func:`mre_core.store.labels.save_imported`).
anything else
    reported with the reason, as is every read that cannot be imported. One bad file never stops the others.

Rules for a read
    *Which ROI*: the only segment (ROI); else the one whose label says liver ROI ("liver" and "roi" in the
    label beats "liver" or the SNOMED CT code 10200004 Liver, which beats "roi"); a tie or nothing recognisable
    is refused, naming the labels. *Whose*: a segment of algorithm type ``AUTOMATIC`` (our own exports of
    unreviewed results, any model's output) is refused; ``MANUAL`` and ``SEMIAUTOMATIC`` (a reader drew or
    edited it) are imported. An RTSTRUCT ROI whose ROIGenerationAlgorithm is ``AUTOMATIC`` is refused the same
    way. *Reader*: the SEG's ContentCreatorName, the RTSTRUCT's OperatorsName or ReviewerName (a
    StructureSetLabel names no person), else ``--reader``, else refused. Person names are written
    "given family" ("Smith^Jo" → "Jo Smith", "Dr O^" → "Dr O"). *Read date*: ContentDate (SEG) or
    StructureSetDate (RTSTRUCT), else SeriesDate, else StudyDate, as ``YYYYMMDD``.
SEG frames
    Each frame's image is the ReferencedSOPInstanceUID of its DerivationImageSequence / SourceImageSequence
    (``<uid>#<frame>`` for a frame of a multi-frame image). Only when no frame names its image, and the object
    has one segment and exactly as many frames as ReferencedSeriesSequence lists instances, are frames paired
    with those instances: by ImagePositionPatient when every frame has a plane position (a frame at no stored
    image's position counts as a missing image), else frame *i* with instance *i*. A frame that is in the object but empty is a read ("no ROI on this slice") and is kept;
    an image the object has no frame for is not. FRACTIONAL frames are thresholded at half the maximum value.
RTSTRUCT contours
    CLOSED_PLANAR contours (patient mm) are mapped to pixels through the referenced image's ImagePositionPatient,
    ImageOrientationPatient and PixelSpacing and filled (``cv2.fillPoly``); several contours on one image are
    united. Holes (a contour inside another) are **not** supported: they are filled too. A contour without
    ContourImageSequence goes to the one referenced image whose plane it lies in. Contours more than
    ``max(1 mm, SliceThickness / 2)`` off their image's plane refuse the read. Multi-frame images are not
    supported for RTSTRUCT.
Matching
    A read whose images are all unknown is refused ("none in the store"); a partly matched one is imported for
    the images the store has, and the report names how many are missing. A mask whose shape is not the image's
    Rows × Columns refuses the read, naming both shapes. Importing a file again adds nothing.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import sqlalchemy as sa
from pydicom.dataset import Dataset

from mre_core.io.elastogram import SkippedFile
from mre_core.io.sources import expand_source
from mre_core.store.inbox import Inbox, InstanceKeys
from mre_core.store.labels import ReaderRoi, save_imported
from mre_core.store.results import Store
from mre_core.store.schema import inbox_instances

log = logging.getLogger(__name__)

SEG_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")  #: Segmentation, Label Map SEG
RTSTRUCT_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
LIVER_CODES = ("10200004", "T-62000")  #: SNOMED CT Liver (and its old SRT code)
NOT_READERS = "an algorithm's output, not a reader's ROI"
NOT_IN_STORE = "(send the study to the listener, upload it, or put its images beside the read)"


class ReadRefused(ValueError):
    """A file that cannot be imported as a reader ROI; the message is the reason, with what to do."""


@dataclass
class ImportedObject:
    """One SEG or RTSTRUCT imported: which study, whose read, how many images, and what was new."""

    file: str
    source: str
    source_sop_uid: str
    study_uid: str  #: several joined by ", " when one object labels images of several studies
    series_uid: str  #: likewise
    reader: str
    read_date: str
    n_images: int  #: images matched and stored (or already stored)
    added: int
    already: int
    label: str = ""
    missing: int = 0  #: referenced images the store does not have

    def describe(self) -> str:
        text = (f"imported {self.file}: {self.source} '{self.label}' by {self.reader}"
                f"{' on ' + self.read_date if self.read_date else ''}, {self.n_images} image(s) of study "
                f"{self.study_uid}: {self.added} added, {self.already} already there")
        return text + (f"; {self.missing} referenced image(s) not in the store {NOT_IN_STORE}" if self.missing else "")


@dataclass
class ImportReport:
    """What :func:`import_rois` did with every file."""

    imported: list[ImportedObject] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  #: (file, reason)
    images_filed: int = 0  #: image files filed into the inbox now
    images_already: int = 0  #: image files the inbox held already

    def describe(self) -> str:
        """One line per imported object and per file not imported, then a summary line."""
        lines = [o.describe() for o in self.imported] + [f"not imported {f}: {why}" for f, why in self.unmatched]
        added = sum(o.added for o in self.imported)
        lines.append(f"{len(self.imported)} read(s) imported ({added} image ROI(s) added); {self.images_filed} "
                     f"image(s) filed into the inbox ({self.images_already} already there); "
                     f"{len(self.unmatched)} file(s) not imported")
        return "\n".join(lines)


# ---------------------------------------------------------------------- the header of a stored image


@dataclass(frozen=True)
class _Image:
    """What matching needs of a referenced image, from its file in the inbox."""

    sop_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    study_date: str
    manufacturer: str
    rows: int
    cols: int
    n_frames: int
    position: np.ndarray | None  #: ImagePositionPatient, mm
    orientation: np.ndarray | None  #: ImageOrientationPatient (row then column direction cosines)
    spacing: tuple[float, float] | None  #: PixelSpacing (between rows, between columns), mm
    thickness_mm: float


def _floats(ds: Dataset, keyword: str, n: int) -> np.ndarray | None:
    try:
        values = np.asarray([float(v) for v in ds.get(keyword) or ()], dtype=float)
    except (TypeError, ValueError):
        return None
    return values if values.size == n else None


def _image(ds: Dataset) -> _Image:
    spacing = _floats(ds, "PixelSpacing", 2)
    try:
        thickness = float(ds.get("SliceThickness") or 0.0)
    except (TypeError, ValueError):
        thickness = 0.0
    return _Image(str(ds.SOPInstanceUID), str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")),
                  str(ds.get("PatientID", "") or ""), str(ds.get("StudyDate", "") or ""),
                  str(ds.get("Manufacturer", "") or ""), int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0),
                  int(ds.get("NumberOfFrames", 1) or 1), _floats(ds, "ImagePositionPatient", 3),
                  _floats(ds, "ImageOrientationPatient", 6),
                  None if spacing is None else (float(spacing[0]), float(spacing[1])), thickness)


def image_lookup(store: Store) -> Callable[[str], _Image | None]:
    """SOP Instance UID → the stored image's header (``None`` when the inbox lacks it or its file is gone)."""
    cache: dict[str, _Image | None] = {}

    def find(sop_uid: str) -> _Image | None:
        if sop_uid not in cache:
            with store.engine.connect() as conn:
                path = conn.execute(sa.select(inbox_instances.c.path)
                                    .where(inbox_instances.c.sop_uid == sop_uid)).scalar()
            try:
                cache[sop_uid] = None if path is None else _image(pydicom.dcmread(path, stop_before_pixels=True))
            except (OSError, ValueError, AttributeError, pydicom.errors.InvalidDicomError):
                cache[sop_uid] = None
        return cache[sop_uid]

    return find


# ---------------------------------------------------------------------- what a read says


def person_name(value: object) -> str:
    """A DICOM PN as "given family" text (first value, alphabetic group); "" when empty."""
    text = str(value or "").split("\\")[0].split("=")[0].strip()
    family, given, middle, prefix, suffix = (text.split("^") + [""] * 5)[:5]
    return " ".join(p.strip() for p in (prefix, given, middle, family, suffix) if p.strip())


def _date(ds: Dataset, *keywords: str) -> str:
    for k in keywords:
        digits = "".join(c for c in str(ds.get(k, "") or "") if c.isdigit())
        if len(digits) == 8:
            return digits
    return ""


def _reader(names: Sequence[object], default: str | None) -> str:
    for n in names:
        if person_name(n):
            return person_name(n)
    if default and default.strip():
        return default.strip()
    raise ReadRefused("no reader name in the object; pass --reader")


def choose(candidates: Sequence[tuple[int, str, bool]], what: str) -> int:
    """The number of the liver ROI among ``(number, label, coded as liver)``; :class:`ReadRefused` if none or
    several qualify."""
    if len(candidates) == 1:
        return candidates[0][0]
    labels = ", ".join(repr(label) for _, label, _ in candidates) or "none"
    if not candidates:
        raise ReadRefused(f"no {what}s in the object")

    def rank(label: str, liver_code: bool) -> int:
        liver, roi = liver_code or "liver" in label.lower(), "roi" in label.lower()
        return 3 if liver and roi else 2 if liver else 1 if roi else 0

    ranks = [rank(label, coded) for _, label, coded in candidates]
    top = max(ranks)
    best = [c for c, r in zip(candidates, ranks) if r == top]
    if top == 0:
        raise ReadRefused(f"{len(candidates)} {what}s, none recognisable as the liver ROI (labels: {labels})")
    if len(best) > 1:
        raise ReadRefused(f"{len(candidates)} {what}s, {len(best)} of them equally recognisable as the liver ROI "
                          f"(labels: {labels}): keep one per object")
    return best[0][0]


def _codes(item: Dataset) -> bool:
    return any(str(c.get("CodeValue", "")) in LIVER_CODES for c in item.get("SegmentedPropertyTypeCodeSequence") or [])


def _frame_group(ds: Dataset, index: int, keyword: str) -> Dataset | None:
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for groups in ([per[index]] if index < len(per) else []) + list(shared[:1]):
        if keyword in groups and groups[keyword].value:
            return groups[keyword].value[0]
    return None


def _frame_refs(ds: Dataset, index: int) -> set[tuple[str, int | None]]:
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    refs: set[tuple[str, int | None]] = set()
    for derivation in (per[index].get("DerivationImageSequence") or []) if index < len(per) else []:
        for src in derivation.get("SourceImageSequence") or []:
            frame = src.get("ReferencedFrameNumber")
            refs.add((str(src.ReferencedSOPInstanceUID), None if frame in (None, "") else int(frame)))
    return refs


def _series_refs(ds: Dataset) -> list[tuple[str, int | None]]:
    return [(str(i.ReferencedSOPInstanceUID), None) for s in ds.get("ReferencedSeriesSequence") or []
            for i in s.get("ReferencedInstanceSequence") or []]


@dataclass(frozen=True)
class _Read:
    """A read before matching: masks keyed by (referenced SOP UID, frame) or contours (mm) by the same key."""

    source: str
    sop_uid: str
    reader: str
    read_date: str
    label: str
    masks: dict[tuple[str, int | None], np.ndarray] = field(default_factory=dict)
    contours: list[tuple[tuple[str, int | None] | None, np.ndarray]] = field(default_factory=list)
    candidates: tuple[tuple[str, int | None], ...] = ()  #: images a contour / a frame without a reference may show
    unplaced: tuple[tuple[np.ndarray | None, np.ndarray], ...] = ()  #: SEG frames naming no image: (position, mask)


def seg_read(ds: Dataset, reader: str | None) -> _Read:
    """The liver-ROI segment of a SEG, frame masks keyed by their image (see the module docstring)."""
    segments = ds.get("SegmentSequence") or []
    number = choose([(int(s.SegmentNumber), str(s.get("SegmentLabel", "")), _codes(s)) for s in segments], "segment")
    segment = next(s for s in segments if int(s.SegmentNumber) == number)
    kind = str(segment.get("SegmentAlgorithmType", "")).upper()
    if kind == "AUTOMATIC":
        raise ReadRefused(f"segment '{segment.get('SegmentLabel', '')}' is AUTOMATIC: {NOT_READERS}")
    if kind not in ("MANUAL", "SEMIAUTOMATIC"):
        raise ReadRefused(f"segment '{segment.get('SegmentLabel', '')}' does not say who made it "
                          f"(SegmentAlgorithmType {kind or 'missing'}): not known to be a reader's ROI")
    pixels = np.asarray(ds.pixel_array)
    pixels = pixels.reshape((-1, *pixels.shape[-2:]))
    labelmap = str(ds.SOPClassUID) == SEG_CLASSES[1]
    if labelmap:
        frames = pixels == number
    elif str(ds.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL":
        frames = pixels >= 0.5 * float(ds.get("MaximumFractionalValue", 255) or 255)
    else:
        frames = pixels > 0
    reader_name = _reader([ds.get("ContentCreatorName")], reader)
    read_date = _date(ds, "ContentDate", "SeriesDate", "StudyDate")
    per_frame = [_frame_refs(ds, i) for i in range(len(frames))]
    if not any(per_frame):
        series = _series_refs(ds)
        if len(segments) != 1 or len(series) != len(frames):
            raise ReadRefused(f"the frames do not name their images (no DerivationImageSequence) and the "
                              f"{len(series)} referenced image(s) cannot be paired with the {len(frames)} frame(s)")
        positions = [_frame_position(ds, i) for i in range(len(frames))]
        return _Read("seg", str(ds.SOPInstanceUID), reader_name, read_date, str(segment.get("SegmentLabel", "")),
                     candidates=tuple(series), unplaced=tuple(zip(positions, frames)))
    masks: dict[tuple[str, int | None], np.ndarray] = {}
    for i, refs in enumerate(per_frame):
        if not labelmap:
            ident = _frame_group(ds, i, "SegmentIdentificationSequence")
            if ident is None or int(ident.ReferencedSegmentNumber) != number:
                continue
        if len(refs) != 1:
            raise ReadRefused(f"frame {i + 1} names {len(refs) or 'no'} source images: cannot place it")
        key = next(iter(refs))
        masks[key] = masks[key] | frames[i] if key in masks else frames[i].copy()
    return _Read("seg", str(ds.SOPInstanceUID), reader_name, read_date, str(segment.get("SegmentLabel", "")),
                 masks=masks)


def _frame_position(ds: Dataset, index: int) -> np.ndarray | None:
    plane = _frame_group(ds, index, "PlanePositionSequence")
    return None if plane is None else _floats(plane, "ImagePositionPatient", 3)


def _place_frames(read: _Read, find: Callable[[str], _Image | None]
                  ) -> tuple[dict[tuple[str, int | None], np.ndarray], set[tuple[str, int | None]]]:
    """Frames that name no image, paired with the referenced images: by ImagePositionPatient when every frame
    has one (a frame at no stored image's position counts as missing), else frame *i* with instance *i*."""
    if any(pos is None for pos, _ in read.unplaced):
        return {ref: mask for ref, (_, mask) in zip(read.candidates, read.unplaced)}, set()
    images = [(ref, find(ref[0])) for ref in read.candidates]
    masks: dict[tuple[str, int | None], np.ndarray] = {}
    missing: set[tuple[str, int | None]] = set()
    for i, (pos, mask) in enumerate(read.unplaced):
        hits = [ref for ref, image in images
                if image is not None and image.position is not None and np.allclose(image.position, pos, atol=0.05)]
        if len(hits) > 1:
            raise ReadRefused(f"frame {i + 1} names no image and {len(hits)} referenced images lie at its position")
        if hits:
            masks[hits[0]] = mask
        else:
            missing.add(("?", i))
    return masks, missing


def rtstruct_read(ds: Dataset, reader: str | None) -> _Read:
    """The liver ROI's closed planar contours of an RTSTRUCT, keyed by their image (see the module docstring)."""
    rois = ds.get("StructureSetROISequence") or []
    number = choose([(int(r.ROINumber), str(r.get("ROIName", "")), False) for r in rois], "ROI")
    roi = next(r for r in rois if int(r.ROINumber) == number)
    if str(roi.get("ROIGenerationAlgorithm", "")).upper() == "AUTOMATIC":
        raise ReadRefused(f"ROI '{roi.get('ROIName', '')}' was generated AUTOMATIC: {NOT_READERS}")
    contours: list[tuple[tuple[str, int | None] | None, np.ndarray]] = []
    for item in ds.get("ROIContourSequence") or []:
        if int(item.get("ReferencedROINumber", -1)) != number:
            continue
        for c in item.get("ContourSequence") or []:
            if str(c.get("ContourGeometricType", "")).upper() != "CLOSED_PLANAR":
                continue
            points = np.asarray([float(v) for v in c.get("ContourData") or ()], dtype=float).reshape(-1, 3)
            images = c.get("ContourImageSequence") or []
            frame = images[0].get("ReferencedFrameNumber") if images else None
            key = (str(images[0].ReferencedSOPInstanceUID), None if frame in (None, "") else int(frame)) \
                if images else None
            contours.append((key, points))
    if not contours:
        raise ReadRefused(f"ROI '{roi.get('ROIName', '')}' has no closed planar contours")
    candidates = tuple((str(i.ReferencedSOPInstanceUID), None)
                       for f in ds.get("ReferencedFrameOfReferenceSequence") or []
                       for st in f.get("RTReferencedStudySequence") or []
                       for se in st.get("RTReferencedSeriesSequence") or []
                       for i in se.get("ContourImageSequence") or [])
    names = [ds.get("OperatorsName"), ds.get("ReviewerName")]
    return _Read("rtstruct", str(ds.SOPInstanceUID), _reader(names, reader),
                 _date(ds, "StructureSetDate", "SeriesDate", "StudyDate"), str(roi.get("ROIName", "")),
                 contours=contours, candidates=candidates)


# ---------------------------------------------------------------------- contours → masks


def _plane_mm(points: np.ndarray, image: _Image) -> tuple[np.ndarray, np.ndarray]:
    """(column, row) pixel coordinates of patient-mm points, and their distances (mm) from the image plane."""
    if image.position is None or image.orientation is None or image.spacing is None:
        raise ReadRefused(f"image {image.sop_uid} has no ImagePositionPatient / ImageOrientationPatient / "
                          "PixelSpacing: its contours cannot be placed")
    rel = points - image.position
    row_dir, col_dir = image.orientation[:3], image.orientation[3:]
    cols = rel @ row_dir / image.spacing[1]
    rows = rel @ col_dir / image.spacing[0]
    return np.stack([cols, rows], axis=1), np.abs(rel @ np.cross(row_dir, col_dir))


def _tolerance_mm(image: _Image) -> float:
    return max(1.0, image.thickness_mm / 2)


def fill_contour(points_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A closed polygon of (column, row) pixel coordinates filled on a bool [rows, cols] grid (edge included)."""
    import cv2

    mask = np.zeros(shape, dtype=np.uint8)
    shift = 4  # sub-pixel vertices: 1/16 pixel
    pts = np.round(points_px * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=shift)
    return mask.astype(bool)


def _rasterise(read: _Read, find: Callable[[str], _Image | None]) -> tuple[dict[tuple[str, int | None], np.ndarray],
                                                                        set[tuple[str, int | None]]]:
    """RTSTRUCT contours → masks on their images; returns the masks and the references not in the store."""
    masks: dict[tuple[str, int | None], np.ndarray] = {}
    missing: set[tuple[str, int | None]] = set()
    for key, points in read.contours:
        if key is None:
            key = _plane_of(points, read.candidates, find)
        image = find(key[0])
        if image is None:
            missing.add(key)
            continue
        if image.n_frames > 1:
            raise ReadRefused(f"image {image.sop_uid} is a multi-frame image: RTSTRUCT contours on it are not "
                              "supported; import a SEG instead")
        px, off = _plane_mm(points, image)
        if off.size and off.max() > _tolerance_mm(image):
            raise ReadRefused(f"a contour lies {off.max():.1f} mm off the plane of image {image.sop_uid} it "
                              "references: the read does not fit the stored image")
        filled = fill_contour(px, (image.rows, image.cols))
        masks[key] = masks[key] | filled if key in masks else filled
    return masks, missing


def _plane_of(points: np.ndarray, candidates: Sequence[tuple[str, int | None]],
              find: Callable[[str], _Image | None]) -> tuple[str, int | None]:
    hits = []
    for key in candidates:
        image = find(key[0])
        if image is None or image.position is None or image.orientation is None or image.spacing is None:
            continue
        if _plane_mm(points, image)[1].max() <= _tolerance_mm(image):
            hits.append(key)
    if len(hits) != 1:
        raise ReadRefused(f"a contour names no image and lies in the plane of {len(hits)} stored referenced "
                          "images: cannot place it")
    return hits[0]


# ---------------------------------------------------------------------- matching and storing


def match(read: _Read, find: Callable[[str], _Image | None]) -> tuple[list[ReaderRoi], int]:
    """The read's ROIs on the stored images, and how many referenced images the store lacks."""
    if read.source == "rtstruct":
        masks, missing = _rasterise(read, find)
    elif read.unplaced:
        masks, missing = _place_frames(read, find)
    else:
        masks, missing = dict(read.masks), set()
    placed: dict[str, tuple[_Image, np.ndarray]] = {}
    for (sop, frame), mask in sorted(masks.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        image = find(sop)
        if image is None:
            missing.add((sop, frame))
            continue
        if mask.shape != (image.rows, image.cols):
            raise ReadRefused(f"the mask is {mask.shape[0]}×{mask.shape[1]} but image {sop} is "
                              f"{image.rows}×{image.cols}: not the image's grid")
        if image.n_frames > 1 and frame is None:
            raise ReadRefused(f"image {sop} has {image.n_frames} frames and the read does not say which one")
        key = f"{sop}#{frame}" if image.n_frames > 1 else sop  # frame 1 of a single-frame image is the image
        placed[key] = (image, placed[key][1] | mask if key in placed else mask)
    rois = [ReaderRoi(image.study_uid, image.series_uid, key, mask, image.patient_id, image.study_date,
                      image.manufacturer, read.reader, read.read_date, read.source, read.label)
            for key, (image, mask) in placed.items()]
    if not rois:
        raise ReadRefused(f"references {len(missing)} images, none in the store {NOT_IN_STORE}")
    return rois, len(missing)


def _import_one(file: str, ds: Dataset, store: Store, find: Callable[[str], _Image | None], imported_by: str,
                reader: str | None) -> ImportedObject:
    read = rtstruct_read(ds, reader) if _sop_class(ds) == RTSTRUCT_CLASS else seg_read(ds, reader)
    rois, missing = match(read, find)
    added, already = save_imported(store, rois, source_file=file, source_sop_uid=read.sop_uid,
                                   imported_by=imported_by)
    return ImportedObject(file, read.source, read.sop_uid, ", ".join(sorted({r.study_uid for r in rois})),
                          ", ".join(sorted({r.series_uid for r in rois})), read.reader, read.read_date, len(rois),
                          added, already, read.label, missing)


def _sop_class(ds: Dataset) -> str:
    return str(ds.get("SOPClassUID", "") or getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", ""))


def _dataset(data: bytes) -> Dataset:
    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=not preamble)
            ok = preamble or (bool(ds.get("SOPInstanceUID")) and ("SOPClassUID" in ds or "Modality" in ds))
    except Exception:  # noqa: BLE001 - garbage read with force=True fails in many ways
        ok = False
    if not ok:
        raise ReadRefused("not a DICOM file (no DICM preamble and no readable dataset)" if not preamble
                          else "truncated or corrupt DICOM file: copy or export it again")
    return ds


def import_rois(paths: Sequence[Path], store: Store, inbox: Inbox, *, imported_by: str, reader: str | None = None,
                max_file_bytes: int = 100 << 20) -> ImportReport:
    """File the images and import the SEG / RTSTRUCT reads found under ``paths`` (see the module docstring).

    ``reader`` names the reader of objects that name none; ``imported_by`` is who imports (the audit log's user).
    """
    report = ImportReport()
    reads: list[tuple[str, Dataset]] = []
    with ExitStack() as stack:
        for path in paths:
            for item in expand_source(path, max_file_bytes, stack):
                if isinstance(item, SkippedFile):
                    report.unmatched.append((item.file, item.reason))
                    continue
                label, read_bytes = item
                try:
                    data = read_bytes()
                    ds = _dataset(data)
                    if _sop_class(ds) in (*SEG_CLASSES, RTSTRUCT_CLASS):
                        reads.append((label, ds))
                    elif "PixelData" not in ds:
                        raise ReadRefused(f"a DICOM {ds.get('Modality', '') or 'non-image'} object without pixel "
                                          "data, neither an image nor a SEG / RTSTRUCT read")
                    elif inbox.add(InstanceKeys.from_dataset(ds), data, origin="import-rois", kept=True):
                        report.images_filed += 1
                    else:
                        report.images_already += 1
                except ValueError as exc:  # ReadRefused, DicomInputError, a missing UID
                    report.unmatched.append((label, str(exc)))
                except Exception as exc:  # noqa: BLE001 - one bad file never stops the others
                    log.exception("unexpected error reading %s", label)
                    report.unmatched.append((label, f"unreadable file ({type(exc).__name__}: {exc})"))
    find = image_lookup(store)
    for label, ds in reads:
        try:
            report.imported.append(_import_one(label, ds, store, find, imported_by, reader))
        except ReadRefused as exc:
            report.unmatched.append((label, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a malformed object: named, the others go on
            log.exception("unexpected error importing %s", label)
            what = "an RTSTRUCT" if _sop_class(ds) == RTSTRUCT_CLASS else "a SEG"
            first = (str(exc).splitlines() or [""])[0]
            report.unmatched.append((label, f"cannot be read as {what} ({type(exc).__name__}: {first})"))
    return report


# ---------------------------------------------------------------------- CLI: python -m mre_core import-rois


def configure_parser(p: argparse.ArgumentParser) -> None:
    """``import-rois PATH... [--reader NAME] [--db-url URL] [--inbox-dir DIR]``."""
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="SEG / RTSTRUCT files, folders (recursively) or zips; images among them are filed too")
    p.add_argument("--reader", default=None, metavar="NAME",
                   help="the reader of objects that name none (no ContentCreatorName / OperatorsName)")
    p.add_argument("--db-url", default=None, help="results store (default: MRE_DB_URL or the settings' store)")
    p.add_argument("--inbox-dir", type=Path, default=None, help="inbox folder (default: MRE_INBOX_DIR)")


def _cli_user() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


def run_cli(args: argparse.Namespace) -> int:
    """Import, print one line per object and per file not imported; 0 if anything was imported or filed."""
    from mre_core.config import Settings
    from mre_core.store.results import StoreError

    try:
        settings = Settings.from_env()
        store = Store(args.db_url or settings.db_url)
    except (StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        inbox = Inbox(store, args.inbox_dir or settings.inbox_dir)
        report = import_rois(args.paths, store, inbox, imported_by=_cli_user(), reader=args.reader,
                             max_file_bytes=settings.max_file_bytes)
    except sa.exc.SQLAlchemyError as exc:
        print(f"error: the results store {store.display_url} failed: {type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        store.dispose()
    print(report.describe())
    return 0 if report.imported or report.images_filed else 1


__all__ = ["ImportReport", "ImportedObject", "ReadRefused", "configure_parser", "fill_contour", "image_lookup",
           "import_rois", "match", "person_name", "rtstruct_read", "run_cli", "seg_read"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m mre_core import-rois", description=__doc__.splitlines()[0])
    configure_parser(parser)
    sys.exit(run_cli(parser.parse_args()))
