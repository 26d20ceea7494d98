"""The header side of the layout corpus: study context, header variants, classic and enhanced MR files.

:mod:`mre_core.phantom.layouts` decides what series a vendor layout holds (:class:`LayoutSeries`,
stored pixels already encoded); this module turns them into pydicom datasets: one classic MR Image
Storage file per instance (:func:`classic_datasets`) or one Enhanced MR Image Storage multi-frame
file per series (:func:`enhanced_dataset`). Header variants (:class:`HeaderVariant`) model what real
exports look like after a PACS or a de-identifier: identifiers absent or empty, UIDs from several
roots, float noise in ImageOrientationPatient, SliceLocation as the only position, raw series
without SeriesDescription, Implicit VR. Everything is a pure function of its inputs (same seed,
same bytes); pixel data are never compressed here.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage, generate_uid

ENHANCED_MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"  #: Enhanced MR Image Storage
#: UID roots seen in exports: each vendor's registered root, a de-identifier's root, and UUID-derived 2.25
UID_ROOTS: dict[str, str | None] = {
    "ge": "1.2.840.113619.2.", "siemens": "1.3.12.2.1107.5.2.", "philips": "1.3.46.670589.11.",
    "canon": "1.2.392.200036.9116.2.", "pydicom": "1.2.826.0.1.3680043.8.498.", "uuid": None}
DEIDENTIFY_MODES = ("none", "absent", "empty")
#: removed (``absent``) or blanked (``empty``) by the de-identified variants
IDENTIFYING_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "StudyID", "AccessionNumber", "StudyDate",
                        "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime",
                        "FrameAcquisitionDateTime", "FrameReferenceDateTime")  # also inside functional groups
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(frozen=True)
class HeaderVariant:
    """How one study's headers deviate from a clean scanner export."""

    deidentify: str = "none"  #: "none", "absent" (identifiers removed) or "empty" (present, zero length)
    uid_root: str = "pydicom"  #: key of :data:`UID_ROOTS`
    iop_noise: bool = False  #: ImageOrientationPatient differs between slices in the 7th decimal
    slice_location_only: bool = False  #: classic files carry SliceLocation and no ImagePositionPatient
    raw_without_description: bool = False  #: acquisition series have no SeriesDescription
    implicit_vr: bool = False  #: Implicit VR Little Endian (GE exports)


@dataclass(frozen=True)
class VariantMix:
    """Probabilities of the header variants (per study)."""

    deidentify: tuple[tuple[str, float], ...] = (("none", 0.6), ("absent", 0.2), ("empty", 0.2))
    own_uid_root: float = 0.5  #: the vendor's root; otherwise one of the others
    iop_noise: float = 0.3
    slice_location_only: float = 0.2
    raw_without_description: float = 0.3
    implicit_vr: float = 0.3  #: only where the layout allows it


def sample_variant(rng: np.random.Generator, vendor_root: str, mix: VariantMix, allow_implicit: bool,
                   force: dict[str, Any] | None = None) -> HeaderVariant:
    """Draw a variant (always the same number of draws, so forcing one field leaves the rest unchanged)."""
    u = rng.uniform(size=6)
    modes = [m for m, _ in mix.deidentify]
    weights = np.cumsum([w for _, w in mix.deidentify]) / sum(w for _, w in mix.deidentify)
    others = [k for k in UID_ROOTS if k != vendor_root]
    root = vendor_root if u[1] < mix.own_uid_root else others[int(u[1] * 1e6) % len(others)]
    v = HeaderVariant(modes[int(np.searchsorted(weights, u[0]))], root, bool(u[2] < mix.iop_noise),
                      bool(u[3] < mix.slice_location_only), bool(u[4] < mix.raw_without_description),
                      bool(allow_implicit and u[5] < mix.implicit_vr))
    force = {k: val for k, val in (force or {}).items() if val is not None}
    if force.get("deidentify", "none") not in DEIDENTIFY_MODES or force.get("uid_root", "uuid") not in UID_ROOTS:
        raise ValueError(f"deidentify must be one of {DEIDENTIFY_MODES}, uid_root one of {sorted(UID_ROOTS)}")
    return replace(v, **force)


@dataclass(frozen=True, eq=False)
class Exam:
    """Everything shared by the series of one study (patient, equipment, geometry, variant)."""

    label: str  #: patient folder and truth file name (also the PatientID unless de-identified)
    key: str  #: entropy for every UID of the study
    variant: HeaderVariant
    equipment: dict[str, Any]  #: Manufacturer, ManufacturerModelName, SoftwareVersions, ... (classic headers)
    patient: dict[str, Any]  #: PatientName, PatientID, PatientBirthDate, PatientSex, PatientAge
    study: dict[str, Any]  #: StudyDate, StudyTime, StudyID, AccessionNumber, StudyDescription
    rows: int
    cols: int
    spacing_mm: float
    thickness_mm: float
    slice_spacing_mm: float
    z_mm: tuple[float, ...]  #: slice positions, ascending = slice order of the truth
    origin_xy_mm: tuple[float, float]
    iop: np.ndarray  #: [n_slices, 6] ImageOrientationPatient per slice
    naming: int = 0  #: file/folder naming style 0..2

    def uid(self, *parts: object) -> str:
        """A deterministic UID under the variant's root (2.25: a UUID made from the same hash)."""
        text = "|".join(map(str, (self.key, *parts)))
        root = UID_ROOTS[self.variant.uid_root]
        if root is None:
            return f"2.25.{uuid.UUID(bytes=hashlib.sha512(text.encode()).digest()[:16], version=4).int}"
        return generate_uid(root, entropy_srcs=[text])

    @property
    def study_uid(self) -> str:
        return self.uid("study")

    @property
    def frame_of_reference_uid(self) -> str:
        return self.uid("frame-of-reference")


def orientation_noise(rng: np.random.Generator, n: int, noisy: bool) -> np.ndarray:
    """Per-slice ImageOrientationPatient: exactly axial, or axial with 7th-decimal float noise."""
    noise = rng.integers(-3, 4, (n, 6)) * 1e-7  # always drawn: forcing the variant leaves the rest unchanged
    return np.round(np.tile(np.array(AXIAL), (n, 1)) + (noise if noisy else 0.0), 7)


#: per vendor: classic equipment attributes (a tuple: one value drawn per study)
EQUIPMENT = {
    "ge": dict(Manufacturer="GE MEDICAL SYSTEMS", ManufacturerModelName=("SIGNA Artist", "DISCOVERY MR750w",
                                                                           "Optima MR450w"), SoftwareVersions="29.1"),
    "siemens": dict(Manufacturer="SIEMENS", ManufacturerModelName=("MAGNETOM Aera", "MAGNETOM Skyra"),
                    SoftwareVersions="syngo MR E11"),
    "siemens_xa": dict(Manufacturer=("Siemens Healthineers", "SIEMENS"), ManufacturerModelName=("MAGNETOM Vida",
                       "MAGNETOM Sola"), SoftwareVersions="syngo MR XA60"),
    "philips": dict(Manufacturer=("Philips", "Philips Medical Systems"),
                    ManufacturerModelName=("Ingenia", "Achieva dStream"), SoftwareVersions="5.7.1"),
    "canon": dict(Manufacturer="CANON_MEC", ManufacturerModelName=("Vantage Orian", "Vantage Galan 3T"),
                  SoftwareVersions="V6.0")}


def make_exam(rng: np.random.Generator, label: str, key: str, equipment: str, variant: HeaderVariant, n: int,
              rows: int, spacing_mm: float) -> Exam:
    """Sample the patient, study, equipment and geometry of one exam (256 columns, axial, ascending z)."""
    eq = {k: (str(rng.choice(v)) if isinstance(v, tuple) else v) for k, v in EQUIPMENT[equipment].items()}
    eq.update(MagneticFieldStrength=float(rng.choice([1.5, 3.0])), InstitutionName="MRE Phantom Hospital",
              StationName=f"MR{int(rng.integers(1, 9))}", DeviceSerialNumber=str(int(rng.integers(10**5, 10**6))))
    age = int(np.clip(rng.normal(55, 12), 20, 88))
    date = str(np.datetime64("2018-01-01") + int(rng.integers(0, 1500))).replace("-", "")
    thickness = float(rng.choice([5.0, 6.0, 8.0, 10.0]))
    spacing = round(thickness * (1 + rng.uniform(0.0, 0.5)), 1)
    z0, sp = round(float(rng.uniform(-60, 20)), 1), spacing_mm
    return Exam(label, f"{key}:{int(rng.integers(2**62))}", variant, eq,
                dict(PatientName=f"PHANTOM^{label}", PatientID=label, PatientBirthDate=f"{int(date[:4]) - age}0615",
                     PatientSex=str(rng.choice(["M", "F"])), PatientAge=f"{age:03d}Y"),
                dict(StudyDate=date, StudyTime=f"{int(rng.integers(7, 18)):02d}{int(rng.integers(0, 60)):02d}00",
                     StudyID=str(int(rng.integers(1000, 99999))), AccessionNumber=f"A{int(rng.integers(10**6, 10**7))}",
                     StudyDescription=str(rng.choice(["MR Liver Elastography", "ABD MRE", "MRI ABDOMEN W/O"]))),
                rows, 256, sp, thickness, spacing, tuple(round(z0 + i * spacing, 2) for i in range(n)),
                ((-256 / 2 + 0.5) * sp, (-rows / 2 + 0.5) * sp), orientation_noise(rng, n, variant.iop_noise),
                int(rng.integers(0, 3)))


@dataclass(frozen=True, eq=False)
class LayoutSeries:
    """One series of a layout, ready to write. ``pixels`` is ``[n, rows, cols]`` (u)int16 or ``[n, rows, cols, 3]``
    uint8 RGB; ``slices[i]`` is the slice of image ``i``; ``per_image[i]`` extra attributes of image ``i``."""

    number: int
    description: str | None
    image_type: tuple[str, ...]
    pixels: np.ndarray
    slices: tuple[int, ...]
    role: str  #: what the series is (for the report and the tests), e.g. "raw_phase_magnitude", "stiffness"
    raw: bool = False  #: an acquisition series (loses its SeriesDescription in that variant)
    bits_stored: int | None = None  #: None: 16 (8 for RGB)
    window: tuple[float, float] | None = None
    rescale: tuple[float, float] | None = None  #: (slope, intercept); None: no Rescale attributes
    attrs: dict[str, Any] = field(default_factory=dict)  #: series-level attributes (keyword -> value)
    private: tuple[tuple[int, str, int, str, Any], ...] = ()  #: (group, creator, element offset, VR, value)
    per_image: tuple[dict[str, Any], ...] | None = None
    minutes: int = 0  #: SeriesTime offset from the study time

    def series_uid(self, exam: Exam) -> str:
        return exam.uid("series", self.number)

    def sop_uids(self, exam: Exam) -> tuple[str, ...]:
        if self.attrs.get("_multiframe"):
            return (exam.uid("sop", self.number, "mf"),)
        return tuple(exam.uid("sop", self.number, i) for i in range(len(self.slices)))


def _seq(**attrs: Any) -> Sequence:
    item = Dataset()
    for key, value in attrs.items():
        setattr(item, key, value)
    return Sequence([item])


def _time_plus(hhmmss: str, minutes: int) -> str:
    total = int(hhmmss[:2]) * 60 + int(hhmmss[2:4]) + minutes
    return f"{total // 60 % 24:02d}{total % 60:02d}{hhmmss[4:6]}"


def _deidentify(ds: Dataset, mode: str) -> None:
    if mode == "none":
        return
    for keyword in IDENTIFYING_KEYWORDS:
        if keyword in ds:
            if mode == "absent":
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, "")
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _deidentify(item, mode)


def _common(exam: Exam, s: LayoutSeries, sop_uid: str, sop_class: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if exam.variant.implicit_vr else ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(s.image_type)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    time = _time_plus(exam.study["StudyTime"], s.minutes)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = exam.study["StudyDate"]
    ds.StudyTime, ds.SeriesTime, ds.ContentTime = exam.study["StudyTime"], time, time
    ds.AccessionNumber = exam.study["AccessionNumber"]
    ds.Modality = "MR"
    for key, value in exam.equipment.items():
        setattr(ds, key, value)
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = exam.study["StudyDescription"]
    if s.description is not None and not (s.raw and exam.variant.raw_without_description):
        ds.SeriesDescription = s.description
    for key, value in exam.patient.items():
        setattr(ds, key, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = exam.study_uid, s.series_uid(exam)
    ds.StudyID = exam.study["StudyID"]
    ds.SeriesNumber = s.number
    ds.FrameOfReferenceUID = exam.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    for key, value in s.attrs.items():
        if not key.startswith("_"):
            setattr(ds, key, value)
    for group, creator, offset, vr, value in s.private:
        ds.private_block(group, creator, create=True).add_new(offset, vr, value)
    return ds


def _pixel_module(ds: Dataset, s: LayoutSeries, pixels: np.ndarray) -> None:
    rgb = pixels.dtype == np.uint8 and pixels.shape[-1] == 3
    if rgb:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
    else:
        bits = s.bits_stored or 16
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
        ds.PixelRepresentation = int(pixels.dtype == np.int16)
    ds.Rows, ds.Columns = (int(v) for v in (pixels.shape[-3:-1] if rgb else pixels.shape[-2:]))
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def folder_and_files(exam: Exam, s: LayoutSeries, sops: tuple[str, ...]) -> tuple[str, list[str]]:
    """Series folder and file names in one of three export styles (GE ``.MRDC``-like, ``IM####``, UID)."""
    safe = re.sub(r"[^A-Za-z0-9]+", "_", s.description or "").strip("_") or "noname"
    folder = (f"S{s.number:04d}_{safe}", f"SE{s.number}", f"{s.number:03d}-{safe}")[exam.naming]
    files = ([f"i{s.number:04d}{i + 1:04d}.MRDC.{i + 1}" for i in range(len(sops))],
             [f"IM{i + 1:04d}" for i in range(len(sops))], [f"MR.{uid}.dcm" for uid in sops])[exam.naming]
    return folder, files


def classic_datasets(exam: Exam, s: LayoutSeries) -> list[tuple[str, Dataset]]:
    """One MR Image Storage dataset per image of ``s``, with its path relative to the patient folder."""
    sops = s.sop_uids(exam)
    folder, files = folder_and_files(exam, s, sops)
    out = []
    for i, sop in enumerate(sops):
        ds = _common(exam, s, sop, MRImageStorage)
        ds.AcquisitionDate = exam.study["StudyDate"]
        ds.AcquisitionTime = ds.SeriesTime
        ds.AcquisitionNumber, ds.InstanceNumber = 1, i + 1
        k = s.slices[i]
        z = exam.z_mm[k]
        ds.ImageOrientationPatient = [float(v) for v in exam.iop[k]]
        if not exam.variant.slice_location_only:
            ds.ImagePositionPatient = [round(exam.origin_xy_mm[0], 4), round(exam.origin_xy_mm[1], 4), round(z, 4)]
        ds.SliceLocation = round(z, 4)
        ds.SliceThickness, ds.SpacingBetweenSlices = exam.thickness_mm, exam.slice_spacing_mm
        ds.PixelSpacing = [exam.spacing_mm, exam.spacing_mm]
        for key, value in (s.per_image[i] if s.per_image else {}).items():
            setattr(ds, key, value)
        _pixel_module(ds, s, s.pixels[i])
        if s.window is not None and ds.SamplesPerPixel == 1:
            ds.WindowCenter, ds.WindowWidth = s.window
        if s.rescale is not None:
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = s.rescale[1], s.rescale[0], "US"
        _deidentify(ds, exam.variant.deidentify)
        out.append((f"{folder}/{files[i]}", ds))
    return out


# --- Enhanced MR Image Storage (one multi-frame file per series) ---------------------------------------------------

def _mr_frame_groups(original: bool, contrast: str, component: str, image_type: tuple[str, ...],
                     echo_ms: float) -> dict[str, Sequence]:
    """Shared MR functional groups (frame type, and for ORIGINAL frames the acquisition groups)."""
    groups = {"MRImageFrameTypeSequence": _seq(
        FrameType=list(image_type), PixelPresentation="MONOCHROME", VolumetricProperties="VOLUME",
        VolumeBasedCalculationTechnique="NONE", ComplexImageComponent=component, AcquisitionContrast=contrast)}
    if original:
        groups.update(
            MRTimingAndRelatedParametersSequence=_seq(
                RepetitionTime=1000.0, FlipAngle=90.0, EchoTrainLength=1, RFEchoTrainLength=1,
                GradientEchoTrainLength=1, GradientOutputType="DB_DT", GradientOutput=20.0,
                SpecificAbsorptionRateSequence=_seq(SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                                                    SpecificAbsorptionRateValue=0.4),
                OperatingModeSequence=Sequence([_seq(OperatingModeType=t, OperatingMode="IEC_NORMAL")[0]
                                                for t in ("STATIC FIELD", "RF", "GRADIENT")])),
            MRFOVGeometrySequence=_seq(InPlanePhaseEncodingDirection="COLUMN", MRAcquisitionFrequencyEncodingSteps=96,
                                       MRAcquisitionPhaseEncodingStepsInPlane=96, PercentSampling=100.0,
                                       PercentPhaseFieldOfView=100.0),
            MREchoSequence=_seq(EffectiveEchoTime=echo_ms),
            MRModifierSequence=_seq(InversionRecovery="NO", FlowCompensation="NONE", T2Preparation="NO",
                                    SpectrallySelectedExcitation="NONE", SpatialPresaturation="NONE",
                                    PartialFourier="NO", ParallelAcquisition="NO"),
            MRImagingModifierSequence=_seq(MagnetizationTransfer="NONE", BloodSignalNulling="NO", Tagging="NONE",
                                           TransmitterFrequency=63.68, PixelBandwidth=2000.0),
            MRReceiveCoilSequence=_seq(ReceiveCoilName="Body18", ReceiveCoilManufacturerName="",
                                       ReceiveCoilType="MULTICOIL", QuadratureReceiveCoil="NO",
                                       MultiCoilDefinitionSequence=_seq(MultiCoilElementName="BO1",
                                                                        MultiCoilElementUsed="YES")),
            MRTransmitCoilSequence=_seq(TransmitCoilName="Body", TransmitCoilManufacturerName="",
                                        TransmitCoilType="BODY"),
            MRAveragesSequence=_seq(NumberOfAverages=1.0))
    return groups


def enhanced_dataset(exam: Exam, s: LayoutSeries, contrast: str = "UNKNOWN", component: str = "MAGNITUDE",
                     temporal: tuple[int, ...] | None = None) -> tuple[str, Dataset]:
    """One Enhanced MR Image Storage dataset holding every image of ``s`` as a frame.

    Shared groups: pixel measures, plane orientation, frame anatomy, VOI LUT, pixel value transformation,
    MR frame type (and the MR acquisition groups for ORIGINAL images); per frame: plane position and frame
    content (stack position = slice + 1, temporal position = ``temporal[i]``). The header variants that
    concern classic files (SliceLocation-only, per-slice orientation noise) do not apply.
    """
    (sop,) = s.sop_uids(exam)
    ds = _common(exam, s, sop, ENHANCED_MR_STORAGE)
    original = s.image_type[0] == "ORIGINAL"
    temporal = temporal or tuple(1 for _ in s.slices)
    stamp = exam.study["StudyDate"] + ds.SeriesTime
    ds.InstanceNumber, ds.AcquisitionNumber = 1, 1
    ds.AcquisitionDateTime = stamp
    ds.AcquisitionDuration = 20.0
    ds.ContentQualification, ds.ResonantNucleus, ds.KSpaceFiltering = "PRODUCT", "1H", "NONE"
    ds.MagneticFieldStrength = exam.equipment.get("MagneticFieldStrength", 1.5)
    ds.ApplicableSafetyStandardAgency, ds.PatientPosition = "IEC", "HFS"
    ds.PixelPresentation, ds.VolumetricProperties, ds.VolumeBasedCalculationTechnique = "MONOCHROME", "VOLUME", "NONE"
    ds.ComplexImageComponent, ds.AcquisitionContrast = component, contrast
    ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.AcquisitionContextSequence = Sequence()
    if original:
        ds.PulseSequenceName = str(s.attrs.get("_pulse_sequence", "epiMR2d"))[:16]
        ds.MRAcquisitionType, ds.EchoPulseSequence, ds.MultipleSpinEcho = "2D", "SPIN", "NO"
        ds.MultiPlanarExcitation, ds.PhaseContrast, ds.TimeOfFlightContrast = "NO", "NO", "NO"
        ds.SteadyStatePulseSequence, ds.EchoPlanarPulseSequence, ds.SaturationRecovery = "NONE", "YES", "NO"
        ds.SpectrallySelectedSuppression, ds.OversamplingPhase = "FAT", "NONE"
        ds.GeometryOfKSpaceTraversal, ds.RectilinearPhaseEncodeReordering = "RECTILINEAR", "LINEAR"
        ds.SegmentedKSpaceTraversal, ds.NumberOfKSpaceTrajectories = "SINGLE", 1
    dim_uid = exam.uid("dimension", s.number)
    ds.DimensionOrganizationSequence = _seq(DimensionOrganizationUID=dim_uid)
    ds.DimensionIndexSequence = Sequence([_seq(DimensionIndexPointer=Tag(p), FunctionalGroupPointer=Tag(0x00209111),
                                               DimensionOrganizationUID=dim_uid, DimensionDescriptionLabel=label)[0]
                                          for p, label in ((0x00209057, "In-Stack Position"),
                                                           (0x00209128, "Temporal Position"))])
    shared = Dataset()
    shared.PixelMeasuresSequence = _seq(PixelSpacing=[exam.spacing_mm, exam.spacing_mm],
                                        SliceThickness=exam.thickness_mm, SpacingBetweenSlices=exam.slice_spacing_mm)
    shared.PlaneOrientationSequence = _seq(ImageOrientationPatient=list(AXIAL))
    code = _seq(CodeValue="10200004", CodingSchemeDesignator="SCT", CodeMeaning="Liver")
    shared.FrameAnatomySequence = _seq(AnatomicRegionSequence=code, FrameLaterality="U")
    slope, intercept = s.rescale or (1.0, 0.0)
    shared.PixelValueTransformationSequence = _seq(RescaleIntercept=intercept, RescaleSlope=slope, RescaleType="US")
    if s.window is not None:
        shared.FrameVOILUTSequence = _seq(WindowCenter=s.window[0], WindowWidth=s.window[1])
    for key, value in _mr_frame_groups(original, contrast, component, s.image_type, 40.0).items():
        setattr(shared, key, value)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for i, k in enumerate(s.slices):
        frame = Dataset()
        x, y = exam.origin_xy_mm
        frame.PlanePositionSequence = _seq(ImagePositionPatient=[round(x, 4), round(y, 4), round(exam.z_mm[k], 4)])
        content = dict(StackID="1", InStackPositionNumber=k + 1, TemporalPositionIndex=temporal[i],
                       DimensionIndexValues=[k + 1, temporal[i]])
        if original:
            content.update(FrameAcquisitionDateTime=stamp, FrameReferenceDateTime=stamp,
                           FrameAcquisitionDuration=20000.0 / len(s.slices), FrameAcquisitionNumber=1)
        frame.FrameContentSequence = _seq(**content)
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = len(s.slices)
    _pixel_module(ds, s, s.pixels)
    _deidentify(ds, exam.variant.deidentify)
    folder, _ = folder_and_files(exam, s, (sop,))
    return f"{folder}/{s.number:04d}_enhanced.dcm", ds
