"""DICOM SEG of the final ROI.

:func:`build_seg` / :func:`write_seg`: a BINARY Segmentation with one segment ("Liver ROI") and
**one frame per source slice**, empty ROIs included (``omit_empty_frames=False``), so a study whose
ROIs are all empty still gives a valid SEG whose frames are all zero. highdicom orders the frames
along the slice normal; each frame's DerivationImageSequence names the slice it was derived from,
and that, not the frame order, is what the SR (:mod:`.sr`) and the tests use to pair frames with
slices.

The source instances are referenced through ``Elastogram.header`` (a pydicom Dataset without
PixelData: highdicom only needs the metadata). Real exports, de-identified ones above all, lack or
blank attributes highdicom reads, so :func:`source_headers` hands highdicom *copies* of the headers
(the originals are never modified) prepared as follows.

Patient and study (copied by highdicom into the SEG and the SR)
    PatientID, PatientName, PatientBirthDate, PatientSex, StudyID, AccessionNumber, StudyDate,
    StudyTime, ReferringPhysicianName are type 2 in both objects: when absent they are added
    **empty** (present, zero length), when present but empty they stay empty. Nothing is invented:
    a de-identified exam gets an empty PatientID, never the reader's "anonymous" placeholder or a
    made-up identifier. A value DICOM cannot parse (a StudyDate "00000000", a PatientBirthDate
    "1970-01-01", a StudyTime "10:15", a PatientSex other than M/F/O) is blanked the same way,
    since highdicom would refuse it.
Instance identity
    SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID (type 1) name the image the SEG points at,
    so they are never made up: a header without one raises :class:`SegExportError`. UIDs are used
    exactly as found, whatever their root (scanner, PACS or de-identifier ``2.25.…`` roots may be
    mixed within one study). A missing SOPClassUID is taken from the file meta
    (MediaStorageSOPClassUID) when that is there.
FrameOfReferenceUID (type 1)
    Used as found. When *every* slice lacks it (some de-identifiers drop it), one UID is derived
    from the SeriesInstanceUID (the same every time, so a re-export gives the same value): it only
    says that the frames of this SEG share one patient coordinate system, which slices of one
    series do. Slices with *different* (or partly missing) frames of reference raise
    :class:`SegExportError` naming them: their positions cannot be compared.
ImageOrientationPatient (type 1)
    Must be on every slice. Slices whose direction cosines are all within
    :data:`ORIENTATION_TOLERANCE` (1e-4) of the first slice's are treated as parallel and all copies
    get the first slice's value, because highdicom compares orientations exactly and real exports
    differ in the 7th decimal (float noise written by the scanner or a de-identifier). Beyond the
    tolerance the series is genuinely not a stack of parallel slices and :class:`SegExportError`
    names the slices that differ.
ImagePositionPatient (type 1)
    Used as found. A slice with only SliceLocation gets a position derived from it along the slice
    normal (highdicom needs a position per frame: without one it treats the images as having no
    coordinate system and allows a single frame only, so a SEG "without plane positions" is not
    possible for a series). With a slice that has both, the missing ones are placed relative to it
    (``IPP_ref + (SliceLocation - SliceLocation_ref) * normal``), which only trusts SliceLocation
    as a relative offset; with none, ``SliceLocation * normal`` (the in-plane origin is then unknown
    and set to 0; the distance along the normal, which is what orders and separates the frames, is
    exact, and the frame ↔ slice link is the DerivationImageSequence anyway). A slice with neither
    raises :class:`SegExportError`; so do two slices at the same position.
Who made the ROI (Segment Algorithm Type, PS3.3 C.8.20.2)
    ``AUTOMATIC`` with the model as the algorithm (name, SHA-256, family *Artificial
    Intelligence*) when no slice's ROI was drawn by hand. When a reader drew (``manual_rois``:
    SOP UID → ``"edited"`` or ``"replaced"``, see :func:`segment_algorithm_type`): ``MANUAL``
    (no algorithm: the model made none of it) when the reader's own outline replaced the ROI on
    every slice, else ``SEMIAUTOMATIC`` (the model's ROI, edited or partly replaced by hand; the
    model stays the algorithm). The reader is named as the Content Creator's Name and in the
    Segment Description ("Drawn by hand by …", "Model ROI edited by hand by … on image(s) #…", by
    Instance Number), and the series description says "(manual)" or "(edited)".
SliceThickness (type 2 in MR, needed for the SEG's pixel measures)
    A missing or empty value gets the median slice gap.
Rows / Columns
    Must match the ROI grid, else :class:`SegExportError`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, TM, DSfloat

from mre_core.analysis.pipeline import StudyResult
from mre_core.io.elastogram import Elastogram
from mre_core.outputs.tables import elastograms_by_sop

SEG_MANUFACTURER = "MRE Liver Review"
SEG_SERIES_DESCRIPTION = "Liver ROI (auto)"
SEG_SERIES_DESCRIPTIONS = {"AUTOMATIC": SEG_SERIES_DESCRIPTION, "SEMIAUTOMATIC": "Liver ROI (edited)",
                           "MANUAL": "Liver ROI (manual)"}
SEG_SERIES_NUMBER = 9901
SEG_SEGMENT_LABEL = "Liver ROI"

#: Largest difference of any direction cosine (ImageOrientationPatient, unitless) between two slices
#: that still counts as "the same orientation". 1e-4 is ~0.006 degrees: across a 400 mm field of view
#: it moves the far edge of a slice by at most 0.04 mm, far below a pixel (~1.5 mm), so such slices
#: are parallel for every practical purpose; yet it is 1000x the noise seen in real exports (1e-7)
#: and catches any real obliquity change (1 degree is ~0.017).
ORIENTATION_TOLERANCE = 1e-4

#: Type-2 attributes highdicom copies from the source into the SEG and the SR; added empty when absent.
_TYPE2_SOURCE_ATTRIBUTES = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
    "AccessionNumber", "ReferringPhysicianName",
)  # fmt: skip
#: Type-2 attributes highdicom parses (DA/TM); blanked when their value does not parse.
_PARSED_SOURCE_ATTRIBUTES = (("PatientBirthDate", DA), ("StudyDate", DA), ("StudyTime", TM))
_PATIENT_SEX_VALUES = ("M", "F", "O")
#: Type-1 UIDs of the referenced instance: never invented.
_IDENTITY_ATTRIBUTES = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")


class SegExportError(ValueError):
    """A DICOM SEG cannot be built from a result; the message says what is missing."""


def _slice_gap_mm(result: StudyResult) -> float | None:
    positions = sorted({e.position_mm for e in result.study.series.slices if np.isfinite(e.position_mm)})
    gaps = np.diff(positions)
    return float(np.median(gaps)) if gaps.size and np.median(gaps) > 0 else None


def _vector(ds: Dataset, keyword: str, size: int) -> np.ndarray | None:
    """``keyword`` as a finite float vector of ``size`` values, or None (absent, empty or malformed)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        vector = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return vector if vector.shape == (size,) and np.all(np.isfinite(vector)) else None


def _scalar(ds: Dataset, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _ds_values(values: Sequence[float]) -> list[DSfloat]:
    """Floats as DS values that fit the 16-character limit."""
    return [DSfloat(round(float(v), 6), auto_format=True) for v in values]


def _label(elastogram: Elastogram) -> str:
    return f"#{elastogram.instance_number} ({elastogram.sop_uid})"


def seg_source_header(elastogram: Elastogram, slice_thickness_mm: float | None = None) -> Dataset:
    """A copy of the slice's header with what highdicom needs to reference it.

    Per slice (see the module docstring for each attribute): absent type-2 patient/study attributes
    are added empty, unparseable dates/times and a PatientSex other than M/F/O are blanked, a
    missing SOPClassUID is taken from the file meta, and a missing or empty SliceThickness gets
    ``slice_thickness_mm`` (the slice gap). Orientation, position and frame of reference need
    all slices and are settled by :func:`source_headers`. The original header is never modified.

    Raises
    ------
    SegExportError
        If there is no header, it lacks an instance UID, or it disagrees with the ROI's grid.
    """
    header = elastogram.header
    if not isinstance(header, Dataset):
        raise SegExportError(f"slice {elastogram.sop_uid}: no DICOM header kept by the reader; cannot build a SEG")
    ds = copy.deepcopy(header)
    if "PixelData" in ds:
        del ds.PixelData
    missing = [k for k in _IDENTITY_ATTRIBUTES if not str(ds.get(k, "") or "").strip()]
    if missing:
        raise SegExportError(f"slice {_label(elastogram)}: the header has no {', '.join(missing)}; a SEG must "
                             "reference the image by its UIDs, which are never invented")
    if not str(ds.get("SOPClassUID", "") or "").strip():
        media_class = getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID")
        if not media_class:
            raise SegExportError(f"slice {_label(elastogram)}: the header has no SOPClassUID")
        ds.SOPClassUID = media_class
    for keyword in _TYPE2_SOURCE_ATTRIBUTES:
        if keyword not in ds:
            setattr(ds, keyword, None)
    for keyword, parse in _PARSED_SOURCE_ATTRIBUTES:
        value = ds.get(keyword)
        if value not in (None, ""):
            try:
                parse(str(value))
            except (TypeError, ValueError):
                setattr(ds, keyword, None)
    if str(ds.get("PatientSex") or "") not in ("", *_PATIENT_SEX_VALUES):
        ds.PatientSex = None
    if ds.get("SliceThickness") in (None, "") and slice_thickness_mm:
        ds.SliceThickness = round(slice_thickness_mm, 4)
    if (int(ds.get("Rows", -1)), int(ds.get("Columns", -1))) != elastogram.shape:
        raise SegExportError(f"slice {elastogram.sop_uid}: header Rows/Columns differ from the pixel grid")
    return ds


def _settle_frame_of_reference(headers: list[Dataset], labels: list[str]) -> None:
    uids = [str(h.get("FrameOfReferenceUID", "") or "").strip() for h in headers]
    if not any(uids):
        uid = generate_uid(entropy_srcs=["MRE Liver Review frame of reference", str(headers[0].SeriesInstanceUID)])
        for h in headers:
            h.FrameOfReferenceUID = uid
        return
    odd = [label for label, uid in zip(labels, uids) if uid != uids[0]]
    if odd:
        raise SegExportError(f"slices {odd} have a FrameOfReferenceUID other than slice {labels[0]}'s "
                             f"({uids[0] or 'none'}): their positions are in different coordinate systems")


def _settle_orientation(headers: list[Dataset], labels: list[str]) -> np.ndarray:
    """Check that all slices are parallel (within :data:`ORIENTATION_TOLERANCE`) and give every copy
    the first slice's ImageOrientationPatient; return it as floats."""
    cosines = [_vector(h, "ImageOrientationPatient", 6) for h in headers]
    missing = [label for label, c in zip(labels, cosines) if c is None]
    if missing:
        raise SegExportError(f"slices {missing} have no usable ImageOrientationPatient: the SEG cannot place "
                             "their frames; export the series with its geometry")
    first = cosines[0]
    assert first is not None  # for mypy: checked above
    if np.linalg.norm(np.cross(first[:3], first[3:])) < 0.5:
        raise SegExportError(f"slice {labels[0]}: ImageOrientationPatient {first.tolist()} is not two "
                             "orthogonal unit vectors")
    differ = [(label, float(np.max(np.abs(c - first)))) for label, c in zip(labels, cosines)
              if c is not None and np.max(np.abs(c - first)) > ORIENTATION_TOLERANCE]
    if differ:
        worst = max(d for _, d in differ)
        raise SegExportError(
            f"slices {[label for label, _ in differ]} are not parallel to slice {labels[0]}: their "
            f"ImageOrientationPatient differs by up to {worst:.3g} (tolerance {ORIENTATION_TOLERANCE:g}); "
            "one SEG needs one orientation: export or analyse these slices as separate series")
    shared = copy.deepcopy(headers[0].ImageOrientationPatient)
    for h in headers[1:]:
        h.ImageOrientationPatient = copy.deepcopy(shared)
    return first


def _settle_positions(headers: list[Dataset], labels: list[str], cosines: np.ndarray) -> None:
    normal = np.cross(cosines[:3], cosines[3:])
    normal /= np.linalg.norm(normal)
    positions = [_vector(h, "ImagePositionPatient", 3) for h in headers]
    if any(p is None for p in positions):
        locations = [_scalar(h, "SliceLocation") for h in headers]
        lacking = [label for label, p, loc in zip(labels, positions, locations) if p is None and loc is None]
        if lacking:
            raise SegExportError(f"slices {lacking} have neither ImagePositionPatient nor SliceLocation: "
                                 "the SEG cannot place their frames")
        anchor = next((i for i, (p, loc) in enumerate(zip(positions, locations))
                       if p is not None and loc is not None), None)  # fmt: skip
        if anchor is None and any(p is not None for p in positions):
            raise SegExportError(f"slices {[lb for lb, p in zip(labels, positions) if p is None]} have only "
                                 "SliceLocation and no slice has both it and ImagePositionPatient: "
                                 "their positions cannot be related to the others'")
        for i, (h, p, loc) in enumerate(zip(headers, positions, locations)):
            if p is None and loc is not None:
                if anchor is None:
                    derived = loc * normal
                else:
                    ref_position, ref_location = positions[anchor], locations[anchor]
                    assert ref_position is not None and ref_location is not None  # for mypy
                    derived = ref_position + (loc - ref_location) * normal
                h.ImagePositionPatient = _ds_values(derived)
                positions[i] = np.asarray([float(v) for v in h.ImagePositionPatient])
    distances = [round(float(np.dot(normal, p)), 4) for p in positions if p is not None]
    seen: dict[float, str] = {}
    for label, d in zip(labels, distances):
        if d in seen:
            raise SegExportError(f"slices {seen[d]} and {label} are at the same position ({d:g} mm along the "
                                 "slice normal): one SEG frame per slice needs distinct positions")
        seen[d] = label


def source_headers(result: StudyResult) -> list[Dataset]:
    """The :func:`seg_source_header` of every slice, in slice order (also the SR's evidence), with
    one shared orientation, a position for every slice and one frame of reference (see the module
    docstring).

    Raises
    ------
    SegExportError
        If the study has no slices, a slice has no usable header, the slices are not parallel
        (beyond :data:`ORIENTATION_TOLERANCE`), a slice cannot be placed, or the slices are in
        different frames of reference. The message names the slices (#InstanceNumber (SOP UID)).
    """
    if not result.slices:
        raise SegExportError(f"study {result.study_uid}: no slices, nothing to segment")
    by_sop, gap = elastograms_by_sop(result), _slice_gap_mm(result)
    missing = [s.sop_uid for s in result.slices if s.sop_uid not in by_sop]
    if missing:
        raise SegExportError(f"study {result.study_uid}: slices {missing} are not in the elastogram series")
    elastograms = [by_sop[s.sop_uid] for s in result.slices]
    if is_multiframe(result):  # one Enhanced MR source: its functional groups place the frames
        header = seg_source_header(elastograms[0], gap)
        return [header for _ in elastograms]
    headers = [seg_source_header(e, gap) for e in elastograms]
    labels = [_label(e) for e in elastograms]
    try:
        _settle_frame_of_reference(headers, labels)
        cosines = _settle_orientation(headers, labels)
        _settle_positions(headers, labels, cosines)
    except SegExportError as err:
        raise SegExportError(f"study {result.study_uid}: {err}") from None
    return headers


def segment_algorithm_type(result: StudyResult, manual_rois: Mapping[str, str] | None = None
                           ) -> hd.seg.SegmentAlgorithmTypeValues:
    """``AUTOMATIC`` (nothing drawn by hand), ``MANUAL`` (every slice's ROI replaced by the reader's
    outline) or ``SEMIAUTOMATIC`` (the model's ROI edited, or replaced on some slices only)."""
    drawn = {sop: kind for sop, kind in (manual_rois or {}).items() if sop in {s.sop_uid for s in result.slices}}
    if not drawn:
        return hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    if all(drawn.get(s.sop_uid) == "replaced" for s in result.slices):
        return hd.seg.SegmentAlgorithmTypeValues.MANUAL
    return hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC


def _instance_numbers(result: StudyResult, sops: Sequence[str]) -> str:
    """``"#3, #4"``: the DICOM Instance Numbers of those slices (unambiguous, whatever the app's numbering)."""
    return ", ".join(f"#{s.instance_number}" for s in result.slices if s.sop_uid in set(sops))


def segment_description_text(result: StudyResult, manual_rois: Mapping[str, str] | None, reader: str) -> str | None:
    """The Segment Description (LO, ≤ 64 characters) of a ROI drawn by hand; ``None`` for an automatic one."""
    kind = segment_algorithm_type(result, manual_rois)
    if kind is hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC:
        return None
    who = reader.strip().replace("\\", "/") or "an unnamed reader"
    if kind is hd.seg.SegmentAlgorithmTypeValues.MANUAL:
        text = f"Drawn by hand by {who}"
    else:
        text = f"Model ROI edited by hand by {who} on image(s) {_instance_numbers(result, list(manual_rois or {}))}"
    return text if len(text) <= 64 else text[:61] + "..."


def _segment_description(result: StudyResult, manual_rois: Mapping[str, str] | None = None,
                         reader: str = "") -> hd.seg.SegmentDescription:
    kind = segment_algorithm_type(result, manual_rois)
    algorithm = None if kind is hd.seg.SegmentAlgorithmTypeValues.MANUAL else hd.AlgorithmIdentificationSequence(
        name=result.model_name[:64],
        version=result.model_sha256[:64] or "unknown",
        family=codes.cid7162.ArtificialIntelligence,
    )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=SEG_SEGMENT_LABEL,
        segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Liver,
        algorithm_type=kind,
        algorithm_identification=algorithm,
    )
    text = segment_description_text(result, manual_rois, reader)
    if text:
        description.SegmentDescription = text
    return description


def _person_name(name: str) -> str | None:
    """Free text as a DICOM PN (one family-name component, ≤ 64 characters); ``None`` when empty."""
    name = name.strip().replace("\\", "/")
    if not name:
        return None
    return name if "^" in name else f"{name[:63]}^"


def is_multiframe(result: StudyResult) -> bool:
    """True when every slice is a frame of one multi-frame (Enhanced MR) source instance."""
    slices = result.study.series.slices
    return bool(slices) and all(e.frame_number for e in slices) and len({e.header.SOPInstanceUID for e in slices}) == 1


def _seg_inputs(result: StudyResult) -> tuple[list[Dataset], np.ndarray]:
    """Source headers and the bool ROI stack, in slice order ([n, rows, cols]).

    For a multi-frame source: the one source header and a stack with one frame per source frame
    ([NumberOfFrames, rows, cols], frames without a slice all zero), as highdicom maps SEG frames
    to the source's frames one to one.
    """
    headers = source_headers(result)
    if is_multiframe(result):
        by_sop = elastograms_by_sop(result)
        header = headers[0]
        masks = np.zeros((int(header.NumberOfFrames), int(header.Rows), int(header.Columns)), dtype=bool)
        for s in result.slices:
            masks[by_sop[s.sop_uid].frame_number - 1] = np.asarray(s.roi, dtype=bool)
        return [header], masks
    masks = np.stack([np.asarray(s.roi, dtype=bool) for s in result.slices])
    return headers, masks


def build_seg(result: StudyResult, *, manual_rois: Mapping[str, str] | None = None,
              reader: str = "") -> hd.seg.Segmentation:
    """A BINARY DICOM SEG of the final ROI, one frame per source slice.

    Frames are kept for empty ROIs too, so every slice has a frame; a study whose ROIs are all
    empty gives a SEG whose frames are all zero, not an error. Each frame's
    DerivationImageSequence references its source slice.

    ``manual_rois`` (SOP UID → ``"edited"`` | ``"replaced"``) names the slices whose ROI a reader
    drew, and ``reader`` who: the segment is then ``SEMIAUTOMATIC`` or ``MANUAL`` and the reader
    is the content creator (see the module docstring). Without them the segment is ``AUTOMATIC``.

    Raises
    ------
    SegExportError
        If the source headers cannot be prepared (see :func:`source_headers`), or highdicom
        still refuses them (its message is kept).
    """
    headers, masks = _seg_inputs(result)
    by_hand = segment_algorithm_type(result, manual_rois) is not hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
    try:
        seg = hd.seg.Segmentation(
            source_images=headers,
            pixel_array=masks,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[_segment_description(result, manual_rois, reader)],
            series_instance_uid=generate_uid(),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer=SEG_MANUFACTURER,
            manufacturer_model_name=result.model_name[:64],
            software_versions=f"model sha256 {result.model_sha256[:16]}",
            device_serial_number="none",
            series_description=SEG_SERIES_DESCRIPTIONS[segment_algorithm_type(result, manual_rois).value],
            content_label="LIVER_ROI",
            content_description="Liver ROI inside the 95% confidence region",
            omit_empty_frames=False,
            content_creator_name=_person_name(reader) if by_hand else None,
        )
    except (ValueError, AttributeError) as err:
        raise SegExportError(f"study {result.study_uid}: highdicom cannot build the SEG: {err}") from err
    if by_hand and not reader.isascii():  # the reader's name needs more than the source's character set
        seg.SpecificCharacterSet = "ISO_IR 192"
    return seg


def write_seg(result: StudyResult, path: Path, *, manual_rois: Mapping[str, str] | None = None,
              reader: str = "") -> Path:
    """Build the SEG (:func:`build_seg`) and write it to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_seg(result, manual_rois=manual_rois, reader=reader).save_as(path, enforce_file_format=True)
    return path
