"""DICOM SR of an analysed study: a TID 1500 Imaging Measurement Report, and its read-back.

Document tree (built with highdicom; one SR per study)::

    Imaging Measurement Report (TID 1500)
    ├─ language; observer: device "MRE Liver Review" (TID 1004, model name)
    ├─ procedure reported: MR elastography of liver            (private code)
    └─ Imaging Measurements
       ├─ study group (TID 1501), tracking id "liver stiffness (study)"
       │    finding Liver, site Liver, algorithm (TID 4019: model name, sha256), source images used
       │    Elasticity kPa, method "mean of slice means"           (only when finite)
       │    Elasticity kPa, method "area-weighted mean"            (only when finite)
       │    Number of slices used; fibrosis stage F0..F4; significant fibrosis Yes/No
       │    TEXT: staging cut-offs, one per QC flag, or why there is no value
       └─ per slice with a non-empty ROI (TID 1410 planar ROI group)
            referenced SEG frame (frame number only, see :func:`referenced_segmentation_frame`)
            + its source MR image
            Elasticity mean / median / SD (kPa), Area (cm2), excluded Yes/No, QC flags (TEXT)

A study without a usable slice gets no Elasticity and no stage, only the text saying why:
NaN is never written into a numeric item.

Codes: standard where DICOM/SNOMED/UCUM has one (Elasticity DCM 110830 from CID 7469; Mean,
Median, Standard Deviation, Area, Liver, Anatomical structure, Yes/No from SCT; UCUM ``kPa``,
``cm2``, ``{slices}``). There is none for MR elastography of the liver as a procedure, a fibrosis
stage read from MRE, or our two study-level averages: those are defined once, below, in the
private scheme :data:`PRIVATE_SCHEME` (``99MRELR``), declared in CodingSchemeIdentificationSequence.

Validation: dciodvfy (dicom3tools) reports no errors. Its only warning on a normal SR is
``Unrecognized defined term <99MRELR> for value 1 of attribute <Coding Scheme Designator>``, once
per occurrence of a private code (and once for the CodingSchemeIdentificationSequence item that
declares the scheme): dciodvfy knows the coding schemes of PS3.16 Table 8-1 and a fixed list of
well-known private ones, and warns on any other designator even when it is declared in
CodingSchemeIdentificationSequence (0008,0110) of the SOP Common module (PS3.3 C.12.1). A private
scheme (designator "99…", PS3.16 Section 8) is the standard's own way to carry concepts it has no
code for; each private code below was checked against the DCM, SCT,
LOINC and UCUM concepts of PS3.16 (as shipped with pydicom) and none has a standard equivalent.
A de-identified source adds dciodvfy's "needed to build DICOMDIR" warnings for the empty Patient
ID / Study Date / Study Time / Study ID, which are type 2 here and are left empty on purpose
(see :mod:`.seg`).

Flags: completion is COMPLETE (every measurement this software makes is in the document); an
automatic result is PRELIMINARY and UNVERIFIED; with ``verifying_observer`` (a signed-off review)
it is FINAL and VERIFIED.

:func:`read_sr_summary` walks the content tree with pydicom only, so it also reads SRs that
highdicom would refuse; it is what the DICOM listener tests use.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SegmentationStorage, generate_uid

from mre_core.analysis.pipeline import StudyResult
from mre_core.analysis.staging import STAGING_DECIMALS, FibrosisStage, StagingTable
from mre_core.analysis.stiffness import QcFlag, SliceResult
from mre_core.outputs.seg import SEG_MANUFACTURER, source_headers

SR_SERIES_NUMBER = 9902
SR_SERIES_DESCRIPTION = "Liver stiffness report (auto)"
SR_VERIFIED_SERIES_DESCRIPTION = "Liver stiffness report (reviewed)"
STUDY_TRACKING_ID = "liver stiffness (study)"
AREA_DECIMALS = 2  #: cm2 are written to 0.01 cm2 (1 mm2); kPa to STAGING_DECIMALS (0.001 kPa), as the CSV tables

PRIVATE_SCHEME = "99MRELR"  #: private coding scheme designator of MRE Liver Review


def _private(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, PRIVATE_SCHEME, meaning)


# ----------------------------------------------------------------- codes (all in one place)
ELASTICITY = codes.DCM.Elasticity  # 110830, CID 7469
KPA = codes.UCUM.Kilopascal
CM2 = codes.UCUM.SquareCentimeter
SLICES_UNIT = hd.sr.CodedConcept("{slices}", "UCUM", "slices")
AREA = codes.SCT.Area
MEAN, MEDIAN, SD = codes.SCT.Mean, codes.SCT.Median, codes.SCT.StandardDeviation
LIVER = codes.SCT.Liver
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
YES, NO = codes.SCT.Yes, codes.SCT.No

MRE_LIVER = _private("MRE-LIVER", "MR elastography of liver")
MEAN_OF_SLICE_MEANS = _private("MEAN-SLICE-MEANS", "Mean of slice mean stiffness")
AREA_WEIGHTED_MEAN = _private("AREA-WEIGHTED", "ROI-area-weighted mean of slice mean stiffness")
SLICES_USED = _private("N-SLICES-USED", "Number of slices used")
FIBROSIS_STAGE = _private("FIBROSIS-STAGE", "Liver fibrosis stage by MR elastography")
STAGE_CODES = {s: _private(f"STAGE-{s.label}", f"Fibrosis stage {s.label}") for s in FibrosisStage}
SIGNIFICANT_FIBROSIS = _private("SIGNIF-FIBROSIS", "Significant liver fibrosis (stage F2 or higher)")
STAGING_CUTOFFS = _private("STAGING-CUTOFFS", "Staging cut-offs")
QC_FLAG = _private("QC-FLAG", "Quality control flag")
READING_RULE = _private("READING-RULE", "How the input series was read")
NO_VALUE_REASON = _private("NO-VALUE-REASON", "Reason no stiffness value is reported")
EXCLUDED = _private("EXCLUDED", "Excluded from the study value")

_CODING_SCHEME = CodingSchemeIdentificationItem(
    PRIVATE_SCHEME, name="MRE Liver Review local codes", responsible_organization="MRE Liver Review"
)
# Content-item names the read-back looks for, as (scheme, value).
IMAGING_MEASUREMENTS = ("DCM", "126010")
MEASUREMENT_GROUP = ("DCM", "125007")
SEG_FRAME = ("DCM", "121214")
SEG_SOURCE = ("DCM", "121233")
ALGORITHM_NAME, ALGORITHM_VERSION = ("DCM", "111001"), ("DCM", "111003")
METHOD, DERIVATION = ("SCT", "370129005"), ("DCM", "121401")


class SrExportError(ValueError):
    """A DICOM SR cannot be built from a result and SEG; the message says what does not match."""


# --------------------------------------------------------------------------- building


def code_key(code: Any) -> tuple[str, str]:
    return (str(code.scheme_designator), str(code.value))


def _kpa(value: float) -> float:
    return round(float(value), STAGING_DECIMALS)


def _text(name: hd.sr.CodedConcept, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _yes_no(name: hd.sr.CodedConcept, flag: bool) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(name, YES if flag else NO)


def _person_name(name: str) -> str:
    """Free text as a DICOM PN: without a caret it becomes one (family) component, at most 64 characters."""
    name = name.strip().replace("\\", "/")
    return name if "^" in name else f"{name[:63]}^"


def _qc_texts(flags: tuple[QcFlag, ...], input_notes: tuple[str, ...] = ()) -> list[hd.sr.TextContentItem]:
    """One text item per flag; the input-unlike-training flag also says which descriptor (``input_notes``)."""
    def text(f: QcFlag) -> str:
        notes = f" ({'; '.join(input_notes)})" if f == QcFlag.INPUT_UNLIKE_TRAINING and input_notes else ""
        return f"{f.value}: {f.explanation}{notes}"
    return [_text(QC_FLAG, text(f)) for f in flags]


def cutoff_text(table: StagingTable) -> str:
    """The staging table as one line: name, title, each lower bound (kPa) with its source."""
    bounds = "; ".join(f"{c.stage.label} >= {c.lower_kpa:g} kPa ({c.source})" for c in table.cutoffs)
    return f"{table.name}: {table.title}. Lower bounds, inclusive: {bounds}"


def _algorithm(result: StudyResult) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=result.model_name[:64] or "unknown",
        version=result.model_sha256 or "unknown",
        family=codes.cid7162.ArtificialIntelligence,
        manufacturer=SEG_MANUFACTURER,
        parameters=[f"device={result.device}", f"staging_table={result.settings.staging.name}"],
    )


def _seg_frames_by_source(seg: Dataset) -> dict[str, int]:
    """SEG frame number (1-based) of each source SOP Instance UID, from the per-frame derivation."""
    frames: dict[str, int] = {}
    for number, item in enumerate(seg.get("PerFrameFunctionalGroupsSequence", []), start=1):
        for derivation in item.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                key = str(source.ReferencedSOPInstanceUID)
                if "ReferencedFrameNumber" in source:  # a frame of a multi-frame source: keyed as the reader keys it
                    key = f"{key}#{int(source.ReferencedFrameNumber)}"
                frames.setdefault(key, number)
    return frames


def _source_frame(sop_key: str) -> list[int] | None:
    """``[n]`` for a slice keyed ``<SOPInstanceUID>#<n>`` (a frame of a multi-frame source), else None."""
    return [int(sop_key.rsplit("#", 1)[1])] if "#" in sop_key else None


def referenced_segmentation_frame(seg: Dataset, frame: int, header: Dataset,
                                  source_frames: list[int] | None = None) -> hd.sr.ReferencedSegmentationFrame:
    """TID 1410 "Referenced Segmentation Frame" (DCM 121214) for SEG ``frame`` plus its "Source Image
    for Segmentation" (DCM 121233), with Referenced Frame Number only.

    highdicom's :class:`~highdicom.sr.ReferencedSegmentationFrame` always writes both Referenced
    Frame Number (0008,1160) and Referenced Segment Number (0062,000B) into the IMAGE item. In the
    Image Reference Macro of IMAGE content items (PS3.3 C.18.4, Table C.18.4-1, which includes the
    Image SOP Instance Reference Macro, Table 10-3) Referenced Segment Number is type 1C, "required
    if the Referenced SOP Instance is a Segmentation ... and Referenced Frame Number (0008,1160) is
    not present", and a conditional attribute shall not be present when its condition is not met
    (PS3.5 Section 7.4), which is dciodvfy's error. TID 1410 asks for a frame here, and a SEG frame
    belongs to exactly one segment (its SegmentIdentificationSequence, segment 1 for us), so the
    frame number alone identifies the region and the segment number is removed. highdicom reads the
    item back all the same (``referenced_segment_numbers`` is then None).
    """
    reference = hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, frame_number=frame, segment_number=1,
        source_image=hd.sr.SourceImageForSegmentation.from_source_image(header, referenced_frame_numbers=source_frames),
    )
    item = reference[0].ReferencedSOPSequence[0]
    if "ReferencedFrameNumber" in item and "ReferencedSegmentNumber" in item:
        del item.ReferencedSegmentNumber
    return reference


def _slice_group(s: SliceResult, header: Dataset, seg: Dataset, frame: int,
                 algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    st = s.stats
    values = ((st.mean_kpa, MEAN), (st.median_kpa, MEDIAN), (st.sd_kpa, SD))
    measurements = [hd.sr.Measurement(ELASTICITY, _kpa(v), KPA, derivation=d) for v, d in values if math.isfinite(v)]
    if math.isfinite(st.area_cm2):
        measurements.append(hd.sr.Measurement(AREA, round(float(st.area_cm2), AREA_DECIMALS), CM2))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(), identifier=f"liver ROI, slice #{s.instance_number}, z {s.position_mm:.1f} mm"),
        referenced_segment=referenced_segmentation_frame(seg, frame, header, _source_frame(s.sop_uid)),
        finding_type=LIVER,
        finding_category=ANATOMICAL_STRUCTURE, finding_sites=[hd.sr.FindingSite(LIVER)], algorithm_id=algorithm,
        measurements=measurements, qualitative_evaluations=[_yes_no(EXCLUDED, s.excluded)],
    )  # fmt: skip
    group[0].ContentSequence.extend(_qc_texts(s.qc_flags))
    return group


def _unique(headers: list[Dataset]) -> list[Dataset]:
    """One header per SOP instance (the frames of a multi-frame source share one)."""
    return list({str(h.SOPInstanceUID): h for h in headers}.values())


def _measurement_sources(used: list[tuple[Dataset, list[int] | None]]) -> list[hd.sr.SourceImageForMeasurementGroup]:
    """A source image reference per instance used; for a multi-frame source, with the frames used."""
    frames: dict[str, list[int]] = {}
    headers: dict[str, Dataset] = {}
    for header, frame in used:
        uid = str(header.SOPInstanceUID)
        headers[uid] = header
        frames.setdefault(uid, []).extend(frame or [])
    return [hd.sr.SourceImageForMeasurementGroup.from_source_image(headers[u], referenced_frame_numbers=frames[u] or None)
            for u in headers]


def _study_group(result: StudyResult, used_headers: list[tuple[Dataset, list[int] | None]],
                 algorithm: hd.sr.AlgorithmIdentification) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    stiff, staged, table = result.stiffness, result.stage, result.settings.staging
    measurements = [
        hd.sr.Measurement(ELASTICITY, _kpa(v), KPA, derivation=MEAN, method=m)
        for v, m in ((stiff.stiffness_kpa, MEAN_OF_SLICE_MEANS), (stiff.stiffness_kpa_area_weighted, AREA_WEIGHTED_MEAN))
        if math.isfinite(v)
    ]
    measurements.append(hd.sr.Measurement(SLICES_USED, int(stiff.n_slices_used), SLICES_UNIT))
    evaluations = []
    if staged is not None:
        evaluations = [hd.sr.QualitativeEvaluation(FIBROSIS_STAGE, STAGE_CODES[staged.stage]),
                       _yes_no(SIGNIFICANT_FIBROSIS, staged.significant_fibrosis)]
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=STUDY_TRACKING_ID),
        finding_type=LIVER, finding_category=ANATOMICAL_STRUCTURE, finding_sites=[hd.sr.FindingSite(LIVER)],
        algorithm_id=algorithm, measurements=measurements, qualitative_evaluations=evaluations,
        source_images=_measurement_sources(used_headers) or None,
    )  # fmt: skip
    texts = [_text(STAGING_CUTOFFS, f"{cutoff_text(table)}. Significant fibrosis: F2 >= {table.significant_kpa:g} kPa")]
    if not math.isfinite(stiff.stiffness_kpa):
        texts.append(_text(NO_VALUE_REASON, f"no usable ROI: {QcFlag.NO_USABLE_SLICE.explanation}"))
    series = result.study.series
    texts += [_text(READING_RULE, f"{what}: {rule}") for what, rule in
              (("series", series.series_rule), ("unit", series.unit_rule), ("confidence", series.confidence_rule))
              if rule]
    group[0].ContentSequence.extend(texts + _qc_texts(result.qc_flags, result.input_notes))
    return group


def build_sr(result: StudyResult, seg: Dataset, *, verifying_observer: str | None = None,
             verifying_organization: str | None = None) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 measurement report of ``result``, referencing ``seg`` and the source MR images.

    Comprehensive 3D SR, the SOP class highdicom's own TID 1500 examples use. Enhanced SR would
    hold today's content too (image references, no coordinates) but rules out a 3D ROI later;
    Comprehensive (2D) SR adds nothing we need.

    Parameters
    ----------
    result : StudyResult
    seg : highdicom.seg.Segmentation or pydicom Dataset
        The SEG of the same ROIs, from :func:`mre_core.outputs.seg.build_seg` (one frame per slice).
    verifying_observer : str, optional
        The reader who signed the review off, "Family^Given" or free text (then stored as a
        one-component name, "Dr Rita Reader^"); makes the SR VERIFIED and FINAL.
    verifying_organization : str, optional
        Required by DICOM with a verifier; default: the source's InstitutionName, else "not recorded".

    Raises
    ------
    SrExportError
        If the SEG belongs to another study or lacks a frame for a slice with an ROI.
    mre_core.outputs.seg.SegExportError
        If a slice has no usable DICOM header.
    """
    if str(seg.get("SOPClassUID", "")) != SegmentationStorage or seg.StudyInstanceUID != result.study_uid:
        raise SrExportError(f"study {result.study_uid}: the SEG given is not a Segmentation of this study; "
                            "build it with mre_core.outputs.seg.build_seg(result)")
    headers = source_headers(result)
    frames, algorithm = _seg_frames_by_source(seg), _algorithm(result)
    groups: list[Any] = []
    for s, header in zip(result.slices, headers):
        if not np.asarray(s.roi, dtype=bool).any():
            continue
        if s.sop_uid not in frames:
            raise SrExportError(f"slice {s.sop_uid}: no frame in SEG {seg.SOPInstanceUID}; rebuild the SEG")
        groups.append(_slice_group(s, header, seg, frames[s.sop_uid], algorithm))
    used = [(h, _source_frame(s.sop_uid)) for s, h in zip(result.slices, headers) if s.usable]
    groups.insert(0, _study_group(result, used, algorithm))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=[SEG_MANUFACTURER, result.model_sha256]), name=SEG_MANUFACTURER,
        manufacturer_name=SEG_MANUFACTURER, model_name=result.model_name[:64] or None)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(codes.DCM.Device, device)),
        procedure_reported=MRE_LIVER, imaging_measurements=groups, title=codes.cid7021.ImagingMeasurementReport,
    )  # fmt: skip
    verified = bool(verifying_observer and verifying_observer.strip())
    organization = verifying_organization or str(headers[0].get("InstitutionName", "") or "not recorded")
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*_unique(headers), seg], content=report[0], series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=SEG_MANUFACTURER, is_complete=True, is_final=verified, is_verified=verified,
        verifying_observer_name=_person_name(verifying_observer) if verified and verifying_observer else None,
        verifying_organization=organization if verified else None,
        series_description=SR_VERIFIED_SERIES_DESCRIPTION if verified else SR_SERIES_DESCRIPTION,
        manufacturer_model_name=result.model_name[:64] or None, coding_schemes=[_CODING_SCHEME],
    )  # fmt: skip
    # The report's own texts (QC sentences with dashes, the reader's comment, names) need more than the
    # source images' character set (often ISO_IR 100, which has no "—"): write the SR in UTF-8 (PS3.5 §6.1.2.5.3,
    # Defined Term "ISO_IR 192"); every value is held as text, so it is re-encoded, never garbled to "?".
    sr.SpecificCharacterSet = "ISO_IR 192"
    return sr


def sr_bytes(result: StudyResult, seg: Dataset, **kwargs: Any) -> bytes:
    """:func:`build_sr` written as a DICOM file (Part 10, with file meta) into bytes."""
    buffer = io.BytesIO()
    build_sr(result, seg, **kwargs).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_sr(result: StudyResult, seg: Dataset, path: Path, **kwargs: Any) -> Path:
    """Build the SR (:func:`build_sr`) and write it to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(sr_bytes(result, seg, **kwargs))
    return path



__all__ = ["SrExportError", "build_sr", "cutoff_text", "referenced_segmentation_frame", "sr_bytes", "write_sr"]
