"""Training/evaluation data: phantom DICOM studies paired with their truth, as arrays.

The images go through the product's own reader (``dicom_io.read_inputs``) and input
builder (``preprocess.model_input``), so the network trains on exactly what it will see
at inference. Targets are the expert ROIs of the phantom truth (``truth/<id>.npz``),
matched to slices by SOP Instance UID, one channel per model output: ``"roi"`` (the expert ROI) and, for a
two-output model, ``"liver"`` (the truth liver mask). Splits are by patient, never by slice.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mre_core.analysis.preprocess import InputSpec, model_input, resize_bilinear
from mre_core.config import Settings
from mre_core.io.elastogram import StudyInput
from mre_core.io.reader import read_inputs


@dataclass(frozen=True)
class TruthSlice:
    sop_uid: str
    expert_roi: np.ndarray  #: bool [H, W]
    liver_mask: np.ndarray  #: bool [H, W]
    manual_kpa: float
    confidence: np.ndarray | None = None  #: bool [H, W], the true 95 % confidence region (when recorded)


@dataclass(frozen=True)
class PatientRecord:
    """One phantom patient: cohort.csv row and where its files are."""

    patient_id: str
    split: str
    row: dict[str, str]
    dicom_dir: Path
    truth_path: Path


def cohort_records(data_dir: Path, split: str | None = None) -> list[PatientRecord]:
    """Patients of a phantom cohort folder (optionally one split: ``train`` / ``test``)."""
    data_dir = Path(data_dir)
    path = data_dir / "cohort.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: make a cohort with `python -m mre_core phantom --out {data_dir}`")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = [PatientRecord(r["patient_id"], r["split"], r, data_dir / "dicom" / r["patient_id"],
                         data_dir / "truth" / f"{r['patient_id']}.npz") for r in rows]
    return [p for p in out if split is None or p.split == split]


def patient_split(patients: list[PatientRecord], val_fraction: float, seed: int) -> tuple[list[PatientRecord], list[PatientRecord]]:
    """Deterministic patient-level train/validation split."""
    order = np.random.default_rng(seed).permutation(len(patients))
    n_val = max(1, int(round(val_fraction * len(patients)))) if len(patients) > 1 else 0
    val = {int(i) for i in order[:n_val]}
    return [p for i, p in enumerate(patients) if i not in val], [p for i, p in enumerate(patients) if i in val]


def load_truth(path: Path) -> dict[str, TruthSlice]:
    """Truth slices of one patient keyed like the reader keys slices.

    The key is the SOP Instance UID, or ``<SOPInstanceUID>#<frame>`` for a frame of a multi-frame
    (Enhanced MR) source (``frame_numbers`` in the file), as :attr:`Elastogram.sop_uid` is.
    """
    with np.load(path, allow_pickle=False) as z:
        uids = [str(u) for u in z["sop_uids"]]
        if "frame_numbers" in z.files:
            uids = [f"{u}#{int(f)}" if int(f) > 0 else u for u, f in zip(uids, z["frame_numbers"])]
        conf = z["confidence"].astype(bool) if "confidence" in z.files else None
        return {u: TruthSlice(u, z["expert_roi"][i].astype(bool), z["liver_mask"][i].astype(bool),
                              float(z["manual_kpa"][i]), None if conf is None else conf[i])
                for i, u in enumerate(uids)}


def read_patient(record: PatientRecord, settings: Settings) -> StudyInput:
    """The patient's study through the product reader; an error if it does not read as one study."""
    read = read_inputs([record.dicom_dir], settings)
    if len(read.studies) != 1:
        reasons = "; ".join(f"{s.file}: {s.reason}" for s in read.skipped[:3])
        raise ValueError(f"{record.patient_id}: expected one study, found {len(read.studies)} ({reasons})")
    return read.studies[0]


@dataclass(frozen=True)
class ArrayDataset:
    """Slices as model inputs and targets on the model grid."""

    inputs: np.ndarray  #: float16 [N, C, S, S] in [0, 1]
    targets: np.ndarray  #: uint8 [N, K, S, S] (0/1), one channel per model output (``"roi"`` first)
    patient_ids: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


#: The truth mask behind each model output.
TARGET_MASKS = {"roi": "expert_roi", "liver": "liver_mask"}


def target_channels(truth: TruthSlice, outputs: tuple[str, ...], size: int) -> np.ndarray:
    """uint8 [len(outputs), size, size]: each output's truth mask, resized bilinearly to the model grid, > 0.5."""
    unknown = [o for o in outputs if o not in TARGET_MASKS]
    if unknown:
        raise ValueError(f"no truth mask for model output(s) {unknown}; known: {tuple(TARGET_MASKS)}")
    return np.stack([(resize_bilinear(getattr(truth, TARGET_MASKS[o]).astype(np.float32), size, size) > 0.5
                      ).astype(np.uint8) for o in outputs])


def build_arrays(records: list[PatientRecord], spec: InputSpec, settings: Settings,
                 outputs: tuple[str, ...] = ("roi",)) -> ArrayDataset:
    """Read every patient and stack model-grid inputs and targets (one channel per entry of ``outputs``)."""
    xs, ys, ids = [], [], []
    for rec in records:
        study = read_patient(rec, settings)
        truth = load_truth(rec.truth_path)
        slices = [e for e in study.series.slices if e.sop_uid in truth]
        if not slices:
            raise ValueError(f"{rec.patient_id}: no slice of the analysed series matches the truth file")
        xs.append(model_input(slices, spec).astype(np.float16))
        for e in slices:
            ys.append(target_channels(truth[e.sop_uid], tuple(outputs), spec.size))
            ids.append(rec.patient_id)
    return ArrayDataset(np.concatenate(xs), np.stack(ys), tuple(ids))


def cache_key(records: list[PatientRecord], spec: InputSpec, outputs: tuple[str, ...] = ("roi",)) -> str:
    """What a cache file must have been built from: the patient list, the input size and (beyond the single
    ROI output and the three default input channels, whose key predates both) the outputs and the channels."""
    key = f"{len(records)}:{records[0].patient_id if records else ''}:{records[-1].patient_id if records else ''}:{spec.size}"
    key = key if tuple(outputs) == ("roi",) else f"{key}:{','.join(outputs)}"
    return key if tuple(spec.channels) == InputSpec().channels else f"{key}:in={','.join(spec.channels)}"


def cached_arrays(records: list[PatientRecord], spec: InputSpec, settings: Settings, cache: Path,
                  outputs: tuple[str, ...] = ("roi",)) -> ArrayDataset:
    """``build_arrays`` with an ``.npz`` cache keyed by the patient list, input size and outputs."""
    cache = Path(cache)
    key = cache_key(records, spec, outputs)
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if (str(z["key"]) == key and z["targets"].shape[1] == len(outputs)
                    and z["inputs"].shape[1] == len(spec.channels)):
                return ArrayDataset(z["inputs"], z["targets"], tuple(str(p) for p in z["patient_ids"]))
    data = build_arrays(records, spec, settings, outputs)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, inputs=data.inputs, targets=data.targets, patient_ids=np.array(data.patient_ids), key=key)
    return data
