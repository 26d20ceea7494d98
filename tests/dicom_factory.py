"""Build small DICOM datasets in memory (or on disk) for the reader's tests.

Arrays are stored values: an elliptical body (stiffness x 100, Siemens style), a
"liver" with its own values, and a low-confidence region that the three encodings mark.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, SecondaryCaptureImageStorage, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def synthetic_slice(rows: int = 96, cols: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stored uint16 [rows, cols], body bool, low_confidence bool) with known truth.

    Body: ellipse of values 150-350; liver: ellipse of values 250-450 (kPa x 100);
    low confidence: a band across the lower-left of the body plus a disc on the right.
    """
    rng = np.random.default_rng(seed)
    ii, jj = np.indices((rows, cols))
    cy, cx = rows / 2, cols / 2
    body = ((ii - cy) / (0.45 * rows)) ** 2 + ((jj - cx) / (0.47 * cols)) ** 2 <= 1
    liver = ((ii - cy + 5) / (0.25 * rows)) ** 2 + ((jj - cx + 10) / (0.22 * cols)) ** 2 <= 1
    stored = np.where(body, rng.integers(150, 350, (rows, cols)), 0)
    stored = np.where(liver, rng.integers(250, 450, (rows, cols)), stored)
    low = body & ((ii + 0.6 * jj > 1.15 * rows) | ((ii - cy) ** 2 + (jj - 0.8 * cols) ** 2 < (0.12 * rows) ** 2))
    return stored.astype(np.uint16), body, low


def burn_hatch(stored: np.ndarray, low: np.ndarray, value: int, period: int,
               phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Cross-hatch (both diagonals, 1 px lines) of ``value`` burned into ``low``."""
    ii, jj = np.indices(stored.shape)
    lines = (((ii + jj - phase[0]) % period) == 0) | (((ii - jj - phase[1]) % period) == 0)
    out = stored.copy()
    out[low & lines] = value
    return out


def zero_fill(stored: np.ndarray, low: np.ndarray) -> np.ndarray:
    out = stored.copy()
    out[low] = 0
    return out


def mr_dataset(stored: np.ndarray, *, patient_id: str = "P1", study_uid: str | None = None,
               series_uid: str | None = None, description: str = "MRE_ELASTOGRAM_CONF95",
               image_type: str = "DERIVED\\PRIMARY\\MRE", manufacturer: str = "SIEMENS",
               instance_number: int = 1, z_mm: float = 0.0, series_number: int = 10,
               pixel_spacing: tuple[float, float] | None = (1.5625, 1.5625), modality: str = "MR",
               sop_class: str = MRImageStorage) -> Dataset:
    """A single-frame grayscale dataset (Explicit VR Little Endian) holding ``stored``."""
    stored = np.ascontiguousarray(stored, dtype=np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.Manufacturer = manufacturer
    ds.PatientID = patient_id
    ds.PatientName = f"Test^{patient_id}"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SeriesDescription = description
    ds.SeriesNumber = series_number
    ds.ImageType = image_type.split("\\")
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [-200.0, -200.0, z_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = z_mm
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = stored.tobytes()
    return ds


def rgb_dataset(rows: int = 32, cols: int = 32) -> Dataset:
    """A colour secondary capture (screenshot) of an elastogram."""
    ds = mr_dataset(np.ones((rows, cols)), description="Color elastogram", sop_class=SecondaryCaptureImageStorage)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.full((rows, cols, 3), 128, np.uint8).tobytes()
    return ds


def ct_dataset() -> Dataset:
    return mr_dataset(np.full((32, 32), 1000), modality="CT", sop_class=CT_IMAGE_STORAGE, description="Abdomen CT")


def to_bytes(ds: Dataset, transfer_syntax: str | None = None) -> bytes:
    """Encode ``ds`` (optionally compressed, e.g. RLE Lossless or JPEG-LS Lossless) as a Part 10 file."""
    if transfer_syntax is not None:
        ds = ds.copy()
        ds.compress(transfer_syntax)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write(ds: Dataset, path: Path, transfer_syntax: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_bytes(ds, transfer_syntax))
    return path


def series(arrays: list[np.ndarray], *, study_uid: str, z0: float = 0.0, dz: float = 10.0,
           **kwargs: object) -> list[Dataset]:
    """One series of slices at z0, z0+dz, … sharing a SeriesInstanceUID."""
    series_uid = generate_uid()
    return [mr_dataset(a, study_uid=study_uid, series_uid=series_uid, instance_number=i + 1,
                       z_mm=z0 + i * dz, **kwargs) for i, a in enumerate(arrays)]  # type: ignore[arg-type]
