"""Hold-out phantom DICOM writer: Siemens-like and GE-like MRE series with its own pydicom code.

Independent of :mod:`mre_core.phantom.writers` (never imported, never read). One study per
patient; every series shares the slice positions, orientation ``1\\0\\0\\0\\1\\0`` and geometry.
UIDs are ``2.25.<name-based UUID>`` of the cohort seed, patient, series role and instance, so the same seed
writes the same bytes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/mre-liver-review/holdout-phantom")


def uid(*parts: object) -> str:
    """Deterministic ``2.25.<UUID>`` UID (name-based UUID v5 of ``parts``)."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, '|'.join(map(str, parts))).int}"


@dataclass
class Header:
    """Study-level attributes shared by all series of one patient."""

    seed: int
    patient: str
    vendor: str  #: "siemens" | "ge"
    study_uid: str
    frame_uid: str
    date: str
    time: str
    rows: int
    cols: int
    spacing: float
    thickness: float
    gap: float
    origin_xy: tuple[float, float]
    z: tuple[float, ...]  #: patient z of each slice (ascending)
    acq: tuple[int, int]
    patient_attrs: dict = field(default_factory=dict)  #: empty when de-identified
    model: str = ""
    field_t: float = 1.5
    station: str = ""
    institution: str | None = None
    position: str = "HFS"
    reverse_instances: bool = False
    naming: int = 0
    syntax: str = str(ExplicitVRLittleEndian)


@dataclass
class Series:
    role: str
    number: int
    description: str
    image_type: list[str]
    pixels: list[np.ndarray]  #: one per instance
    slice_of: list[int]  #: slice index per instance
    trigger_ms: list[float] | None = None
    window: tuple[float, float] | None = None
    signed: bool = False
    bits_stored: int = 12
    rgb: bool = False
    slope: float | None = None
    source: Series | None = None
    sop_uids: list[str] = field(default_factory=list)
    folder: str = ""


def _file_name(h: Header, s: Series, i: int, sop: str) -> str:
    if h.naming == 0:
        return f"IM{s.number:03d}{i + 1:04d}.dcm"
    if h.naming == 1:
        return f"MR.{sop}"
    if h.vendor == "siemens":
        return f"{h.patient}.MR.MRE_LIVER.{s.number:04d}.{i + 1:04d}.{h.date}.IMA"
    return f"i{s.number:03d}{i + 1:04d}.MRDC.{i + 1}"


def build_series(h: Header, s: Series) -> list[tuple[str, Dataset]]:
    """Datasets of one series (SOP UIDs assigned), in instance order, with their file names."""
    series_uid = uid(h.seed, h.patient, s.role, "series")
    n = len(s.pixels)
    order = list(range(n))
    out = []
    s.sop_uids = [uid(h.seed, h.patient, s.role, k) for k in range(n)]
    for k in order:
        k_slice = s.slice_of[k]
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = s.image_type
        ds.SOPClassUID = MR_STORAGE
        ds.SOPInstanceUID = s.sop_uids[k]
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = h.date
        ds.StudyTime = h.time
        t = int(h.time[:2]) * 3600 + int(h.time[2:4]) * 60 + int(h.time[4:6]) + 60 * s.number
        ds.SeriesTime = ds.ContentTime = f"{(t // 3600) % 24:02d}{(t // 60) % 60:02d}{t % 60:02d}.000000"
        ds.AccessionNumber = ""
        ds.Modality = "MR"
        ds.Manufacturer = "SIEMENS" if h.vendor == "siemens" else "GE MEDICAL SYSTEMS"
        if h.institution:
            ds.InstitutionName = h.institution
        ds.StationName = h.station
        ds.ManufacturerModelName = h.model
        ds.StudyDescription = "MR ABDOMEN ELASTOGRAPHY" if h.vendor == "ge" else "Abdomen^MRE_Liver"
        ds.SeriesDescription = s.description
        ds.ProtocolName = "MRE_Liver_tra" if h.vendor == "siemens" else "MR-Touch Liver"
        for key, value in h.patient_attrs.items():
            setattr(ds, key, value)
        ds.BodyPartExamined = "LIVER" if h.vendor == "ge" else "ABDOMEN"
        ds.ScanningSequence = "EP" if h.vendor == "siemens" else "GR"
        ds.SequenceVariant = "SK"
        ds.MRAcquisitionType = "2D"
        ds.SliceThickness = f"{h.thickness:g}"
        ds.SpacingBetweenSlices = f"{h.gap:g}"
        ds.RepetitionTime = "1000" if h.vendor == "siemens" else "50"
        ds.EchoTime = "47" if h.vendor == "siemens" else "20.1"
        ds.MagneticFieldStrength = f"{h.field_t:g}"
        ds.AcquisitionMatrix = [0, h.acq[1], h.acq[0], 0]
        ds.InPlanePhaseEncodingDirection = "COL"
        if s.trigger_ms is not None:
            ds.TriggerTime = f"{s.trigger_ms[k]:.2f}"
        ds.PatientPosition = h.position
        ds.StudyInstanceUID = h.study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = s.number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = (n - k) if h.reverse_instances else (k + 1)
        ds.ImagePositionPatient = [f"{h.origin_xy[0]:.4f}", f"{h.origin_xy[1]:.4f}", f"{h.z[k_slice]:.4f}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.FrameOfReferenceUID = h.frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{h.z[k_slice]:.4f}"
        px = s.pixels[k]
        ds.SamplesPerPixel = 3 if s.rgb else 1
        ds.PhotometricInterpretation = "RGB" if s.rgb else "MONOCHROME2"
        if s.rgb:
            ds.PlanarConfiguration = 0
        ds.Rows, ds.Columns = h.rows, h.cols
        ds.PixelSpacing = [f"{h.spacing:.6f}", f"{h.spacing:.6f}"]
        ds.BitsAllocated = 8 if s.rgb else 16
        ds.BitsStored = 8 if s.rgb else s.bits_stored
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if s.signed else 0
        if s.window and not s.rgb:
            ds.WindowCenter, ds.WindowWidth = f"{s.window[0]:g}", f"{s.window[1]:g}"
        if s.slope is not None and not s.rgb:
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", f"{s.slope:g}", "US"
        if s.source is not None:
            ref = Dataset()
            ref.ReferencedSOPClassUID = MR_STORAGE
            ref.ReferencedSOPInstanceUID = s.source.sop_uids[k]
            ds.SourceImageSequence = Sequence([ref])
            ds.DerivationDescription = "Stiffness masked by the 95% confidence map"
        dtype = np.uint8 if s.rgb else (np.int16 if s.signed else np.uint16)
        ds.PixelData = np.ascontiguousarray(px.astype(dtype)).tobytes()
        out.append((_file_name(h, s, k, s.sop_uids[k]), ds))
    return out


def write_series(h: Header, s: Series, patient_dir: Path) -> None:
    folder = patient_dir / s.folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, ds in build_series(h, s):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1599.1"
        meta.ImplementationVersionName = "MRE_HOLDOUT_1"
        syntax = h.syntax if not (s.rgb and h.syntax == str(RLELossless)) else str(ExplicitVRLittleEndian)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if syntax == str(RLELossless) else syntax
        ds.file_meta = meta
        ds.preamble = b"\0" * 128
        if syntax == str(RLELossless):
            ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
        ds.save_as(folder / name, enforce_file_format=True)


def colour_map(kpa: np.ndarray, signal: np.ndarray, vmax: float = 8.0) -> np.ndarray:
    """RGB display of a stiffness map (blue→cyan→yellow→red), black outside ``signal``."""
    t = np.clip(kpa / vmax, 0, 1)
    r = np.clip(2.5 * t - 1.0, 0, 1)
    g = np.clip(1.6 - np.abs(3.2 * t - 1.6), 0, 1)
    b = np.clip(1.4 - 2.5 * t, 0, 1)
    rgb = np.stack([r, g, b], -1) * signal[..., None]
    return np.round(rgb * 255).astype(np.uint8)


def read_pixels(path: Path) -> np.ndarray:
    """Stored pixel values of one file (tests and the contact sheet)."""
    return pydicom.dcmread(path).pixel_array


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so the same arrays give the same bytes."""
    import io
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


_SIEMENS_MODELS = (("MAGNETOM Aera", 1.5), ("MAGNETOM Sola", 1.5), ("MAGNETOM Skyra", 3.0), ("MAGNETOM Vida", 3.0))
_GE_MODELS = (("SIGNA Artist", 1.5), ("Optima MR450w", 1.5), ("Discovery MR750w", 3.0), ("SIGNA Premier", 3.0))
_SIEMENS_DESC = {"mag": ("MRE_tra_Magnitude", "gre_mre_tra_MAG", "MRE MAG"),
                 "wave": ("MRE_tra_Wave", "gre_mre_tra_P", "Wave Images"),
                 "zero_fill": ("MRE_tra_ELASTO_CONF95", "Elastogram Gray 95% Conf", "Stiffness_Conf_Masked"),
                 "cross_hatch": ("MRE_tra_ELASTO_GRAY_CONF", "Elastogram gray with confidence", "Stiffness 95 Conf"),
                 "colour": ("MRE_tra_ELASTO_COLOR", "Color Elastogram")}
_GE_DESC = (("Elastogram", "Elastogram Mask"), ("stgry", "stgrym"), ("MRE Stiffness", "MRE Stiffness 95% mask"))
_SYNTAXES = ((str(ExplicitVRLittleEndian), 0.6), ("1.2.840.10008.1.2", 0.2), (str(RLELossless), 0.2))


def _hatch(stored: np.ndarray, region: np.ndarray, value: int, period: int, a: int, b: int) -> np.ndarray:
    r, c = np.mgrid[0:stored.shape[0], 0:stored.shape[1]]
    lines = ((r + c + a) % period == 0) | ((r - c + b) % period == 0)
    return np.where(region & lines, value, stored).astype(np.uint16)


def write_study(out_dir: Path, seed: int, index: int, pid: str, layout: str, sim: dict,
                rng: np.random.Generator) -> dict:
    """Write one patient's series; returns the analysed series' UIDs and layout details."""
    sl, geo = sim["slices"], sim["geo"]
    vendor = "ge" if layout == "paired_series" else "siemens"
    u = rng.uniform
    age = int(rng.integers(24, 83)) if sim["liver_kpa"] < 5 else int(rng.integers(38, 83))
    sex = str(rng.choice(["M", "F"]))
    year, month, day = int(rng.integers(2015, 2025)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    deid = u() < 0.2
    attrs = {} if deid else {"PatientName": f"HOLDOUT^{pid}", "PatientID": str(int(rng.integers(10 ** 6, 10 ** 7))),
                             "PatientBirthDate": f"{year - age:04d}{int(rng.integers(1, 13)):02d}15",
                             "PatientSex": sex, "PatientAge": f"{age:03d}Y"}
    models = _SIEMENS_MODELS if vendor == "siemens" else _GE_MODELS
    model, field_t = models[int(rng.integers(len(models)))]
    syntax = _SYNTAXES[int(rng.choice(len(_SYNTAXES), p=[p for _, p in _SYNTAXES]))][0]
    ps, rows, cols = geo["ps"], geo["rows"], geo["cols"]
    tx, ty, tz = u(-6, 6), u(-6, 6), u(-90, 40)
    origin = (-(cols - 1) / 2 * ps - geo["bx"] + tx, -(rows - 1) / 2 * ps - geo["by"] + ty)
    h = Header(seed, pid, vendor, uid(seed, pid, "study"), uid(seed, pid, "frame"), f"{year:04d}{month:02d}{day:02d}",
               f"{int(rng.integers(7, 19)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}",
               rows, cols, ps, geo["thick"], geo["gap"], origin, tuple(float(s.z + tz) for s in sl), geo["acq"], attrs,
               model, field_t, f"MRC{int(rng.integers(10000, 99999))}" if vendor == "siemens" else f"GEMR{index % 7}",
               None if u() < 0.3 else "Holdout General Hospital", str(rng.choice(["HFS", "FFS"])), bool(u() < 0.5),
               int(rng.integers(3)), syntax)
    n = len(sl)
    n_off = sim["exam"].n_offsets
    base = int(rng.integers(2, 12)) if vendor == "siemens" else int(rng.integers(3, 9))
    mag = Series("mag", base, "", ["ORIGINAL", "PRIMARY", "M", "ND"],
                 [np.clip(np.round(s.mag), 0, 4095) for s in sl], list(range(n)), window=(600, 1200))
    if vendor == "siemens":
        wave_px = [np.clip(np.round((np.angle(np.exp(1j * s.phases[t])) / np.pi) * 2048 + 2048), 0, 4095)
                   for t in range(n_off) for s in sl]
    else:
        wave_px = [np.clip(np.round(s.phases[t] * 1000), -32000, 32000) for t in range(n_off) for s in sl]
    wave = Series("wave", base + 1, "", ["ORIGINAL", "PRIMARY", "P", "ND"], wave_px,
                  [k for _ in range(n_off) for k in range(n)],
                  trigger_ms=[t * 1000 / 60 / 4 for t in range(n_off) for _ in range(n)],
                  window=(0, 4000) if vendor == "ge" else (2048, 4096), signed=vendor == "ge",
                  bits_stored=16 if vendor == "ge" else 12)
    series, info = [mag, wave], {"vendor": vendor, "hatch_stored": "", "rescale_slope": 1.0, "deidentified": deid,
                                  "age": age, "sex": sex}
    slope = 1.0 if u() < 0.5 else None
    if vendor == "siemens":
        desc = _SIEMENS_DESC
        mag.description = desc["mag"][int(rng.integers(3))]
        wave.description = desc["wave"][int(rng.integers(3))]
        if layout == "zero_fill":
            px = [np.where(s.conf, s.stored, 0) for s in sl]
        else:
            value, period = int(rng.choice([1300, 1500, 2000, 4095])), int(rng.integers(5, 9))
            a, b = int(rng.integers(period)), int(rng.integers(period))
            px = [_hatch(s.stored, s.body & ~s.conf, value, period, a, b) for s in sl]
            info["hatch_stored"] = value
        itype = [["DERIVED", "PRIMARY", "MRE", "ELASTOGRAM"], ["DERIVED", "PRIMARY", "STIFFNESS", "CONF"]][
            int(rng.integers(2))]
        elast = Series("elast", base + 3, desc[layout][int(rng.integers(3))], itype, px, list(range(n)),
                       window=(400, 800) if u() < 0.6 else (500, 1000), slope=slope)
        series.append(elast)
        analysed = elast
    else:
        mag.description, wave.description = ("MR-Touch Magnitude", "MR-Touch Wave") if u() < 0.5 else ("mag", "ph")
        d_full, d_mask = _GE_DESC[int(rng.integers(len(_GE_DESC)))]
        full = Series("full", base + 4, d_full, ["DERIVED", "PRIMARY", "ELASTOGRAM"], [s.stored for s in sl],
                      list(range(n)), window=(4000, 8000), bits_stored=16, slope=slope)
        masked = Series("masked", base + 5, d_mask, ["DERIVED", "PRIMARY", "ELASTOGRAM", "MASKED"],
                        [np.where(s.conf, s.stored, 0) for s in sl], list(range(n)), window=(4000, 8000),
                        bits_stored=16, slope=slope, source=None)
        series += [full, masked]
        analysed = masked
        if u() < 0.5:
            masked.source = full
    if u() < 0.3:
        series.append(Series("colour", base + 8, "Color Elastogram" if vendor == "ge" else _SIEMENS_DESC["colour"][0],
                             ["DERIVED", "SECONDARY", "MRE", "COLOR"],
                             [colour_map(s.measured, s.signal) for s in sl], list(range(n)), rgb=True))
    nest = "DICOM/" if u() < 0.3 else ""
    for s in series:  # in order: the full map gets its SOP UIDs before the masked copy references them
        safe = "".join(ch if ch.isalnum() else "_" for ch in s.description)[:24]
        s.folder = f"{nest}{s.number:03d}_{safe}" if vendor == "siemens" else f"{nest}Ser{s.number:02d}"
        write_series(h, s, out_dir / "dicom" / pid)
    info.update(study_uid=h.study_uid, series_uid=uid(seed, pid, analysed.role, "series"),
                sop_uids=list(analysed.sop_uids))
    return info
