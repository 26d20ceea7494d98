"""The DICOM side of the MRE phantom: the series a scanner writes, and the files.

:mod:`mre_core.phantom.cohort` decides what a study contains (:class:`StudyHeader`, one
:class:`PhantomSeries` per series, stored pixel values already encoded); this module
holds the vendor-realistic naming (:data:`DESCRIPTIONS`, :data:`IMAGE_TYPES`), renders
the non-elastogram images (magnitude, wave) and turns everything into pydicom datasets
and files. Conventions follow ``docs/DATA_FORMATS.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_rescale
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, MRImageStorage, RLELossless
from scipy import ndimage as ndi

from mre_core.phantom.anatomy import Tissue, mm_grid, smooth_field
from mre_core.phantom.fields import wavelength_mm

TRANSFER_SYNTAXES = (str(ExplicitVRLittleEndian), str(RLELossless), str(JPEGLSLossless))


class SeriesRole(str, Enum):
    """What a series of an MRE exam is."""

    MAGNITUDE = "magnitude"  #: MR signal magnitude
    WAVE = "wave"  #: phase / wave images (1 or 4 phase offsets per slice)
    FULL_MAP = "full_map"  #: gray elastogram without confidence marking
    CONFIDENCE = "confidence"  #: gray elastogram with the 95 % confidence marking (analysed)
    COLOR = "color"  #: RGB colour elastogram (display only)


#: SeriesDescription variants per (vendor, role); one is picked per study.
DESCRIPTIONS: dict[tuple[str, SeriesRole], tuple[str, ...]] = {
    ("siemens", SeriesRole.MAGNITUDE): ("ep2d_mre_tra_Magnitude", "MRE_MAG", "MRE 4 slices_MAG"),
    ("siemens", SeriesRole.WAVE): ("ep2d_mre_tra_Wave", "MRE_WAVE", "Wave images", "ep2d_mre_tra_Phase"),
    ("siemens", SeriesRole.FULL_MAP): ("MRE_STIFFNESS", "Elastogram gray", "ep2d_mre_tra_Elastogram"),
    ("siemens", SeriesRole.CONFIDENCE): ("MRE_ELASTOGRAM_CONF95", "Gray elastogram with 95% confidence map",
                                         "Stiffness Conf", "ep2d_mre_tra_Elastogram_Conf95"),
    ("siemens", SeriesRole.COLOR): ("Color elastogram", "MRE_ELASTOGRAM_COLOR", "ep2d_mre_tra_Elastogram_Color"),
    ("ge", SeriesRole.MAGNITUDE): ("MRE Magnitude", "MR Touch MAG"),
    ("ge", SeriesRole.WAVE): ("MRE Wave Images", "MR Touch Wave", "Phase"),
    ("ge", SeriesRole.FULL_MAP): ("MRE Stiffness", "Elastogram gray", "MR Touch Stiffness"),
    ("ge", SeriesRole.CONFIDENCE): ("MRE Stiffness 95% Conf", "Stiffness Conf", "Elastogram 95% confidence masked"),
    ("ge", SeriesRole.COLOR): ("Color elastogram", "MR Touch Color Stiffness"),
}

#: ImageType per role (values 1-4).
IMAGE_TYPES: dict[SeriesRole, tuple[str, ...]] = {
    SeriesRole.MAGNITUDE: ("ORIGINAL", "PRIMARY", "M", "ND"),
    SeriesRole.WAVE: ("ORIGINAL", "PRIMARY", "P", "ND"),
    SeriesRole.FULL_MAP: ("DERIVED", "PRIMARY", "MRE", "ELASTOGRAM"),
    SeriesRole.CONFIDENCE: ("DERIVED", "PRIMARY", "MRE", "CONFIDENCE"),
    SeriesRole.COLOR: ("DERIVED", "SECONDARY", "MRE", "COLOR"),
}

_VENDOR_HEADER = {
    "siemens": dict(Manufacturer="SIEMENS", ManufacturerModelName="MAGNETOM Aera", SoftwareVersions="syngo MR E11",
                    MagneticFieldStrength=1.5, ProtocolName="ep2d_mre_tra", SequenceName="*epfid2d1_64"),
    "ge": dict(Manufacturer="GE MEDICAL SYSTEMS", ManufacturerModelName="SIGNA Artist", SoftwareVersions="29.1",
               MagneticFieldStrength=1.5, ProtocolName="MR Touch Liver", SequenceName="mre_gre"),
}

#: Gray magnitude signal (arbitrary units) per tissue: GRE, fat bright, liver darker.
_MAGNITUDE = np.array([0, 700, 230, 600, 320, 520, 480, 380, 420, 330, 15, 260, 600], np.float32)


@dataclass(frozen=True)
class StudyHeader:
    """Patient, study and geometry attributes shared by every series of one study."""

    vendor: str  #: "siemens" or "ge"
    patient_id: str
    patient_name: str
    patient_age_years: int
    patient_sex: str
    birth_date: str
    study_uid: str
    frame_of_reference_uid: str
    study_date: str
    study_time: str
    study_id: str
    accession: str
    rows: int
    cols: int
    pixel_spacing_mm: float
    slice_thickness_mm: float
    slice_spacing_mm: float
    z_mm: tuple[float, ...]  #: slice positions along the normal (ascending = slice order)
    origin_xy_mm: tuple[float, float]  #: patient x, y of the first (top-left) pixel centre


@dataclass(frozen=True, eq=False)
class PhantomSeries:
    """One series, ready to write: stored pixels and every per-series DICOM choice.

    ``pixels`` is ``[n_images, rows, cols]`` (uint16 or int16 stored values) or
    ``[n_images, rows, cols, 3]`` uint8 for RGB. ``slice_index[i]`` is the slice
    (position) of image ``i``.
    """

    role: SeriesRole
    description: str
    series_number: int
    series_uid: str
    sop_uids: tuple[str, ...]
    instance_numbers: tuple[int, ...]
    file_names: tuple[str, ...]
    folder: str
    slice_index: tuple[int, ...]
    pixels: np.ndarray
    bits_stored: int = 16
    rescale_slope: float | None = 1.0  #: None: no Rescale attributes written
    window: tuple[float, float] | None = None  #: (centre, width) in rescaled units
    transfer_syntax: str = str(ExplicitVRLittleEndian)
    rwvm_unit: str | None = None  #: UCUM unit of a RealWorldValueMapping item ("Pa")
    source_sop_uids: tuple[str, ...] | None = None  #: GE pair: the full map image of each image
    trigger_times_ms: tuple[float, ...] | None = None  #: wave images: phase offset times


def safe_name(text: str) -> str:
    """A folder-safe version of a series description."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def magnitude_image(labels: np.ndarray, rng: np.random.Generator, spacing_mm: float) -> np.ndarray:
    """Magnitude image (uint16, 12-bit): tissue signal, coil shading, blur and Rician noise."""
    depth = ndi.distance_transform_edt(labels != Tissue.BACKGROUND) * spacing_mm
    signal = _MAGNITUDE[labels] * (1 + 0.6 * np.exp(-depth / 50.0)) * (1 + 0.08 * smooth_field(rng, labels.shape, 30))
    signal = cv2.GaussianBlur(signal.astype(np.float32), (0, 0), 0.8)
    noise = rng.normal(0, 12, (2, *labels.shape))
    return np.clip(np.hypot(signal + noise[0], noise[1]), 0, 4095).astype(np.uint16)


def wave_image(true_kpa: np.ndarray, amplitude: np.ndarray, driver_xy_mm: tuple[float, float], offset: float,
               frequency_hz: float, spacing_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Normalised displacement (float32, -1..1): waves spreading from the driver, local wavelength."""
    x, y = mm_grid(true_kpa.shape, spacing_mm)
    lam = wavelength_mm(cv2.GaussianBlur(np.maximum(true_kpa, 0.3), (0, 0), 4.0), frequency_hz)
    phase = 2 * np.pi * (np.hypot(x - driver_xy_mm[0], y - driver_xy_mm[1]) / lam - offset)
    amp = amplitude / max(float(amplitude.max()), 1e-6)
    wave = amp * np.sin(phase) + 0.03 * rng.standard_normal(true_kpa.shape)
    noise = rng.uniform(-0.15, 0.15, true_kpa.shape)
    return np.where(amplitude > 0, wave, noise).astype(np.float32)


def color_image(kpa: np.ndarray, max_kpa: float = 8.0) -> np.ndarray:
    """RGB colour elastogram (uint8 [rows, cols, 3]): jet map of 0..``max_kpa``, black where 0."""
    gray = np.clip(kpa / max_kpa * 255, 0, 255).astype(np.uint8)
    rgb = cv2.applyColorMap(gray, cv2.COLORMAP_JET)[..., ::-1]
    return np.where((kpa > 0)[..., None], rgb, 0).astype(np.uint8)


def acquired_pixels(role: SeriesRole, vendor: str, f: dict[str, np.ndarray], slices: list[int], n_offsets: int,
                    frequency_hz: float, spacing_mm: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Stored pixels and per-series attributes of the magnitude or wave series.

    ``f`` holds the study's ``labels``, ``true`` (kPa), ``amp`` and ``driver`` arrays;
    ``slices[j]`` is the slice of image ``j`` (wave images repeat it per phase offset).
    """
    if role is SeriesRole.MAGNITUDE:
        return np.stack([magnitude_image(lab, rng, spacing_mm) for lab in f["labels"]]), dict(
            bits_stored=12, window=(500.0, 1000.0))
    offsets = [(j % n_offsets) / n_offsets for j in range(len(slices))]
    waves = np.stack([wave_image(f["true"][i], f["amp"][i], tuple(f["driver"]), o, frequency_hz, spacing_mm, rng)
                      for i, o in zip(slices, offsets)])
    siemens = vendor == "siemens"
    pixels = np.clip(2048 + 1800 * waves, 0, 4095).astype(np.uint16) if siemens else np.rint(2000 * waves).astype(np.int16)
    return pixels, dict(bits_stored=12 if siemens else 16, window=(2048.0 if siemens else 0.0, 4096.0),
                        trigger_times_ms=tuple(round(1000 / frequency_hz * o, 2) for o in offsets))


def folder_name(style: int, number: int, desc: str) -> str:
    """Series folder name in one of three export styles."""
    return (f"S{number:04d}_{safe_name(desc)}", f"SE{number}", f"{number:03d}-{safe_name(desc)}")[style]


def file_names(style: int, vendor: str, ext: str, header: StudyHeader, desc: str, number: int,
                sops: tuple[str, ...], index: np.ndarray) -> tuple[str, ...]:
    """File names of a series in one of three export styles (Siemens ``.IMA``, GE ``.MRDC``, UID, ``IM####``)."""
    if style == 1 and vendor == "siemens":  # Siemens export naming
        return tuple(f"{header.patient_id}.MR.{safe_name(desc).upper()}.{number:04d}.{i:04d}.IMA" for i in index)
    if style == 1:
        return tuple(f"i{number:04d}{i:04d}.MRDC.{i}" for i in index)
    if style == 2:
        return tuple(f"MR.{uid}{ext}" for uid in sops)
    return tuple(f"IM{i:04d}{ext}" for i in index)


def build_datasets(header: StudyHeader, series: PhantomSeries, series_time: str) -> list[tuple[str, Dataset]]:
    """One dataset per image of ``series`` with its path relative to the patient folder."""
    out = []
    for i, sop_uid in enumerate(series.sop_uids):
        ds = _base_dataset(header, series, sop_uid, series_time)
        z = header.z_mm[series.slice_index[i]]
        ds.InstanceNumber = series.instance_numbers[i]
        ds.ImagePositionPatient = [round(header.origin_xy_mm[0], 4), round(header.origin_xy_mm[1], 4), round(z, 4)]
        ds.SliceLocation = round(z, 4)
        if series.trigger_times_ms is not None:
            ds.TriggerTime = series.trigger_times_ms[i]
        if series.source_sop_uids is not None:
            ref = Dataset()
            ref.ReferencedSOPClassUID = MRImageStorage
            ref.ReferencedSOPInstanceUID = series.source_sop_uids[i]
            ds.SourceImageSequence = Sequence([ref])
            ds.DerivationDescription = "Stiffness map masked by 95% confidence map"
        _set_pixels(ds, series, series.pixels[i])
        out.append((f"{series.folder}/{series.file_names[i]}", ds))
    return out


def _base_dataset(header: StudyHeader, series: PhantomSeries, sop_uid: str, series_time: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(IMAGE_TYPES[series.role])
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = header.study_date
    ds.StudyTime = header.study_time
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = series_time
    ds.AccessionNumber = header.accession
    ds.Modality = "MR"
    ds.InstitutionName = "MRE Phantom Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "MR Liver Elastography"
    ds.SeriesDescription = series.description
    for key, value in _VENDOR_HEADER[header.vendor].items():
        setattr(ds, key, value)
    ds.PatientName = header.patient_name
    ds.PatientID = header.patient_id
    ds.PatientBirthDate = header.birth_date
    ds.PatientSex = header.patient_sex
    ds.PatientAge = f"{header.patient_age_years:03d}Y"
    ds.BodyPartExamined = "LIVER"
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "SP", "", "2D"
    ds.SliceThickness = header.slice_thickness_mm
    ds.SpacingBetweenSlices = header.slice_spacing_mm
    ds.RepetitionTime, ds.EchoTime, ds.FlipAngle = 50.0, 22.7, 25.0
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = header.study_uid
    ds.SeriesInstanceUID = series.series_uid
    ds.StudyID = header.study_id
    ds.SeriesNumber = series.series_number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = header.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Rows, ds.Columns = header.rows, header.cols
    ds.PixelSpacing = [header.pixel_spacing_mm, header.pixel_spacing_mm]
    return ds


def _set_pixels(ds: Dataset, series: PhantomSeries, pixels: np.ndarray) -> None:
    if pixels.ndim == 3:  # RGB
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        return
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, series.bits_stored, series.bits_stored - 1
    ds.PixelRepresentation = int(pixels.dtype == np.int16)
    if series.window is not None:
        ds.WindowCenter, ds.WindowWidth = series.window
    if series.rescale_slope is not None:
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, series.rescale_slope, "US"
    if series.rwvm_unit is not None:
        ds.RealWorldValueMappingSequence = Sequence([_rwvm_item(series.rwvm_unit, series.rescale_slope or 1.0)])
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    if series.transfer_syntax != str(ExplicitVRLittleEndian):
        ds.compress(series.transfer_syntax, pixels, generate_instance_uid=False)


def _rwvm_item(unit: str, slope: float) -> Dataset:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = unit, "UCUM", "Pascal" if unit == "Pa" else unit
    item = Dataset()
    item.LUTLabel = "STIFFNESS"
    item.LUTExplanation = f"Shear stiffness in {unit}"
    item.MeasurementUnitsCodeSequence = Sequence([code])
    item.RealWorldValueFirstValueMapped, item.RealWorldValueLastValueMapped = 0, 65535
    item.RealWorldValueIntercept, item.RealWorldValueSlope = 0.0, float(slope)
    return item


def write_datasets(patient_dir: Path, items: list[tuple[str, Dataset]]) -> list[Path]:
    """Save datasets under ``patient_dir`` (folders created); returns the file paths."""
    paths = []
    for rel, ds in items:
        path = patient_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def contact_sheet(dicom_root_or_cohort_dir: Path, png_path: Path, n_studies: int = 12) -> Path:
    """A PNG grid of confidence elastograms as a radiologist sees them (0-8 kPa gray window).

    One tile per study (the slice with the largest expert ROI when the truth is found,
    else the middle slice); with truth, a second panel outlines the liver (green) and
    the expert ROI (red). Accepts a cohort folder, its ``dicom/`` folder or one study folder.
    """
    root = Path(dicom_root_or_cohort_dir)
    dicom_root = root / "dicom" if (root / "dicom").is_dir() else root
    truth_dirs = [d / "truth" for d in (root, dicom_root.parent, dicom_root.parent.parent)]
    units = sorted(d for d in dicom_root.iterdir() if d.is_dir()) or [dicom_root]
    tiles = []
    for unit in units:
        tile = _study_tile(unit, truth_dirs)
        if tile is not None:
            tiles.append(tile)
        if len(tiles) == n_studies:
            break
    if not tiles:
        raise FileNotFoundError(f"no confidence elastogram series found under {root}")
    per_row = max(1, min(len(tiles), 1536 // tiles[0].shape[1]))
    blank = np.zeros_like(tiles[0])
    rows = [np.hstack((tiles + [blank] * per_row)[i:i + per_row]) for i in range(0, len(tiles), per_row)]
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(png_path), np.vstack(rows))
    return png_path


def _study_tile(unit: Path, truth_dirs: list[Path]) -> np.ndarray | None:
    headers = []
    for path in sorted(p for p in unit.rglob("*") if p.is_file()):
        try:
            headers.append((path, pydicom.dcmread(path, stop_before_pixels=True)))
        except (pydicom.errors.InvalidDicomError, OSError):
            continue
    conf = [(p, h) for p, h in headers if any(k in str(h.get("SeriesDescription", "")).lower() for k in ("conf", "95"))
            and int(h.get("SamplesPerPixel", 1)) == 1]
    if not conf:
        return None
    conf.sort(key=lambda ph: float(ph[1].ImagePositionPatient[2]))
    pid = str(conf[0][1].PatientID)
    truth_path = next((d / f"{pid}.npz" for d in truth_dirs if (d / f"{pid}.npz").is_file()), None)
    truth = dict(np.load(truth_path)) if truth_path else None
    index = len(conf) // 2
    if truth is not None:
        best = str(truth["sop_uids"][int(np.argmax(truth["expert_roi"].sum(axis=(1, 2))))])
        index = next((i for i, (_, h) in enumerate(conf) if h.SOPInstanceUID == best), index)
    ds = pydicom.dcmread(conf[index][0])
    per_kpa = 100.0 if "SIEMENS" in str(ds.get("Manufacturer", "")).upper() else 1000.0
    kpa = apply_rescale(ds.pixel_array, ds) / per_kpa
    gray = cv2.cvtColor(np.clip(kpa / 8.0 * 255, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    panels = [gray]
    if truth is not None:
        j = list(truth["sop_uids"]).index(ds.SOPInstanceUID)
        outlined = gray.copy()
        for mask, colour in ((truth["liver_mask"][j], (0, 200, 0)), (truth["expert_roi"][j], (0, 0, 255))):
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(outlined, contours, -1, colour, 1)
        panels.append(outlined)
    tile = np.zeros((256 + 16, 256 * len(panels), 3), np.uint8)
    tile[: kpa.shape[0], :] = np.hstack(panels)
    label = f"{pid} {ds.Manufacturer.split()[0]} {ds.SeriesDescription}"[:60]
    if truth is not None and np.isfinite(truth["manual_kpa"][j]):
        label += f" manual {truth['manual_kpa'][j]:.2f} kPa"
    cv2.putText(tile, label, (4, 256 + 12), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA)
    return tile
