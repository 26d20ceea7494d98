"""A simulated site for the site-training loop: exams of a style the shipped model was not trained on, and a
reader's ROIs on them as DICOM SEG, the way a hospital's archive holds its past reads.

The exams come from the hold-out generator (:mod:`mre_core.phantom.holdout`: its own anatomy, wave simulation,
inversion and vendor layouts — Siemens zero/hatch and GE paired series). The "reader" is the generator's guideline
ROI (right lobe, about 1 cm inside the liver, clear of vessels and the gallbladder fossa, inside the 95 %
confidence region), written per patient as a ``MANUAL`` DICOM SEG that references the elastogram images by SOP
Instance UID, with the reader's name as Content Creator. Seeds at or above :data:`SITE_SEED_BASE` are used so a
simulated site never repeats the hold-out cohorts reported in docs/GENERALISATION.md (seeds below it).

Layout written: ``<out>/archive/dicom/<patient>/…`` (the exams), ``<out>/archive/truth/`` and ``cohort.csv`` (the
generator's truth, for checks), ``<out>/reads/<patient>_roi.dcm`` (one SEG per patient).
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from mre_core.phantom.holdout import generate_holdout_cohort

#: simulated sites use hold-out generator seeds from here on (the reported hold-out cohorts use lower seeds)
SITE_SEED_BASE = 9000


def _headers_by_sop(folder: Path) -> dict[str, Path]:
    out = {}
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file():
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - not DICOM: not an image of the exam
                continue
            out[str(ds.SOPInstanceUID)] = f
    return out


_COPIED_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
                 "StudyDate", "StudyTime", "ReferringPhysicianName")


def write_reader_seg(image_files: list[Path], masks: np.ndarray, out: Path, reader: str,
                     read_date: str = "20260301") -> Path:
    """A ``MANUAL`` binary SEG of one liver ROI per referenced image (``masks`` bool [n, rows, cols] in the order
    of ``image_files``), with ``reader`` as Content Creator and ``read_date`` as Content Date."""
    sources = [pydicom.dcmread(f) for f in image_files]
    for ds in sources:  # de-identified exams may lack Patient/Study module attributes a SEG copies (type 2: empty)
        for keyword in _COPIED_TYPE2:
            if keyword not in ds:
                setattr(ds, keyword, "")
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=np.asarray(masks, bool).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[hd.seg.SegmentDescription(
            segment_number=1, segment_label="Liver ROI", segmented_property_category=codes.SCT.Organ,
            segmented_property_type=codes.SCT.Liver, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)],
        series_instance_uid=generate_uid(), series_number=901, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="Simulated site reads", manufacturer_model_name="reader ROI", software_versions="1",
        device_serial_number="none", series_description="Liver ROI (reader)", content_label="LIVER_ROI",
        content_creator_name=reader if "^" in reader else f"{reader}^", omit_empty_frames=False,
    )
    seg.ContentDate = read_date
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out)
    return out


def generate_site(out_dir: Path, n_patients: int, seed: int = 0, reader: str = "Site Reader",
                  workers: int | None = 1) -> pd.DataFrame:
    """Write a simulated site (exams + one reader SEG per patient); returns the cohort table with a ``seg`` column.

    ``seed`` is offset by :data:`SITE_SEED_BASE`. Patients whose slices are frames of a multi-frame image are
    written without a SEG (``seg`` empty; the SEG writer here maps single-frame images only)."""
    out_dir = Path(out_dir)
    archive = out_dir / "archive"
    cohort = generate_holdout_cohort(archive, n_patients, seed=SITE_SEED_BASE + int(seed), workers=workers)
    segs = []
    for pid in cohort["patient_id"]:
        with np.load(archive / "truth" / f"{pid}.npz", allow_pickle=False) as z:
            sops = [str(u) for u in z["sop_uids"]]
            rois = z["expert_roi"].astype(bool)
        files = _headers_by_sop(archive / "dicom" / pid)
        if any(u not in files for u in sops):
            segs.append("")
            continue
        segs.append(str(write_reader_seg([files[u] for u in sops], rois, out_dir / "reads" / f"{pid}_roi.dcm",
                                         reader)))
    cohort = cohort.assign(seg=segs)
    cohort.to_csv(out_dir / "site.csv", index=False)
    return cohort


__all__ = ["SITE_SEED_BASE", "generate_site", "write_reader_seg"]
