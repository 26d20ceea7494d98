"""Training on a site's own reads: the split by patient, the arrays, the held-out comparison and the model card
(the paper's method, run by the site on its own exams and readers). The run itself — select from the store, split,
train, compare, register — is :func:`mre_core.workflow.site_training.train_from_store`; this module stays free of
the store.

The paper's accuracy came from its own hospital's annotated exams (PAPER.md: 91 patients, one gastroenterologist's
ROIs). A site has the same ingredients: the studies its readers reviewed in the app (drawn or edited ROIs, signed
off) and the reads it already has as DICOM SEG / RTSTRUCT (:mod:`mre_core.workflow.import_rois`). This module

1. selects labelled studies (:func:`mre_core.store.labels.labelled_studies`: date, scanner, reader filters);
2. splits them **by patient** into train / validation / held-out test (:func:`split_by_patient`), recorded in the
   run folder and in the registry. Every study held out by the model it is compared with (the active model) is
   forced into this run's test set, so training never sees a study the comparison is made on;
3. builds model inputs through the product's own reader and input builder, with the reader's ROI inside the 95 %
   confidence region as the target (the region the stiffness is read from);
4. fine-tunes from the active model (or trains from scratch) with :func:`mre_core.model.train.fit`;
5. evaluates the new model **and** the active one on the same held-out studies (:func:`compare_on_heldout`):
   Dice and IoU per slice of the network's output inside the confidence region (the paper's measure; overall and
   per reader stage) and Dice of the ROI the product measures after its guardrails, r, ICC, Bland–Altman,
   weighted kappa, F2 sensitivity
   and specificity, with 95 % CIs (bootstrap over patients for Dice/IoU, Wilson for proportions), and ROI safety
   against the reader's ROI (a site has no liver mask: share of automatic ROI pixels outside the reader's ROI,
   empty slices);
6. registers the new model (:func:`mre_core.store.models.register`) — not activated: an admin decides, and the
   registry refuses a model worse than the active one without a recorded override.

Training settings: a site has tens of studies, not the paper's 91 patients with 32 epochs of SGD at batch 32 (on a
few hundred slices that is a handful of optimiser steps per epoch). The defaults are those the shipped model was
fine-tuned with (its card's ``training.train_config``): AdamW lr 3e-4, weight decay 1e-4, batch 8, BCE + soft Dice,
cosine schedule, the full augmentation without left-right flips, input size of the starting model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mre_core.analysis.input_check import InputRange, describe, ranges_from_card, ranges_to_json, training_ranges
from mre_core.analysis.pipeline import analyze_study_keeping_probabilities, finish_study, measure_slice
from mre_core.analysis.preprocess import InputSpec, model_input, resize_bilinear
from mre_core.analysis.staging import stage
from mre_core.config import Settings
from mre_core.io.elastogram import Elastogram, StudyInput
from mre_core.io.reader import read_inputs
from mre_core.model.dataset import ArrayDataset
from mre_core.model.network import LoadedModel
from mre_core.model.train import TrainConfig, concat_datasets
from mre_core.stats.agreement import agreement, bootstrap_ci, dice, iou

SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class SiteTrainParams:
    """What an admin chooses on the Model page (or on the command line)."""

    date_from: str = ""  #: YYYYMMDD, inclusive; "" = no bound
    date_to: str = ""
    manufacturers: tuple[str, ...] = ()  #: case-insensitive substrings; () = all scanners
    readers: tuple[str, ...] = ()  #: () = every reader
    sources: tuple[str, ...] = ("signed_off", "review", "seg", "rtstruct")
    init: str = "active"  #: "active" = fine-tune the active model; "scratch" = train a new network
    epochs: int = 8
    val_fraction: float = 0.2
    test_fraction: float = 0.25
    seed: int = 0
    lr: float = 3e-4
    batch: int = 8
    micro_batch: int = 4
    bf16: bool = False
    name: str = ""  #: the new model's file name; "" = site_<job or time>

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> SiteTrainParams:
        known = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in d.items() if k in known}
        for k in ("manufacturers", "readers", "sources"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class SiteSplit:
    """Study UIDs per part, and the patients behind them (split by patient: a patient is in one part only)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    patients: dict[str, str]  #: study_uid → patient_id
    forced_test: tuple[str, ...] = ()  #: held out because the compared model held them out
    seed: int = 0

    def part_of(self, study_uid: str) -> str:
        for name in ("train", "val", "test"):
            if study_uid in getattr(self, name):
                return name
        return ""

    def to_json(self) -> dict:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test),
                "patients": self.patients, "forced_test": list(self.forced_test), "seed": self.seed}


class SiteDataError(ValueError):
    """Too few labelled studies or patients for a split, with what is missing."""


def split_by_patient(studies: Sequence, val_fraction: float, test_fraction: float, seed: int,
                     forced_test: Sequence[str] = ()) -> SiteSplit:
    """Deterministic split of labelled studies by patient.

    Every patient with a study in ``forced_test`` goes to the test part with all their studies (so no image of a
    held-out patient is trained on). The remaining patients are shuffled with ``seed``; the test part gets
    ``round(test_fraction × patients)`` patients in all (at least 1), validation ``round(val_fraction × patients)``
    (at least 1), training the rest (at least 1).
    """
    patients = {s.study_uid: s.patient_id or s.study_uid for s in studies}
    by_patient: dict[str, list[str]] = {}
    for uid, pid in sorted(patients.items(), key=lambda kv: (kv[1], kv[0])):
        by_patient.setdefault(pid, []).append(uid)
    forced = set(forced_test) & set(patients)
    test_patients = sorted({patients[u] for u in forced})
    free = sorted(p for p in by_patient if p not in test_patients)
    n_all = len(by_patient)
    if n_all < 3:
        raise SiteDataError(f"{n_all} labelled patient(s): a split into training, validation and held-out test "
                            "needs at least 3 (review or import more studies)")
    order = [free[i] for i in np.random.default_rng(seed).permutation(len(free))]
    n_test = max(1, int(round(test_fraction * n_all))) - len(test_patients)
    n_test = max(0, n_test)
    n_val = max(1, int(round(val_fraction * n_all)))
    if len(order) - n_test - n_val < 1:
        raise SiteDataError(f"{n_all} labelled patients, {len(test_patients)} of them held out by the compared "
                            f"model: too few left to train on (need one training, one validation patient)")
    test_patients += order[:n_test]
    val_patients, train_patients = order[n_test:n_test + n_val], order[n_test + n_val:]

    def uids(ps: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(u for p in ps for u in by_patient[p]))

    return SiteSplit(uids(train_patients), uids(val_patients), uids(test_patients), patients,
                     tuple(sorted(forced)), seed)


# ----------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class LabelledSlices:
    """One labelled study read from its files: the labelled elastograms and the reader's ROI on each."""

    study: StudyInput
    elastograms: tuple[Elastogram, ...]
    reader_rois: tuple[np.ndarray, ...]  #: bool, native grid, inside the confidence region
    labelled: object  #: the :class:`~mre_core.store.labels.LabelledStudy`


def read_labelled(labelled: object, files: Sequence[Path], settings: Settings) -> LabelledSlices:
    """Read a labelled study's kept files and pair each labelled image with its elastogram.

    Raises ValueError with the reason (no files, series not found, no labelled image among its slices)."""
    if not files:
        raise ValueError("no source files are kept for this study (send it to the listener or upload it again)")
    read = read_inputs([Path(f) for f in files], settings)
    series_uid = getattr(labelled, "series_uid", "")
    rois: dict = getattr(labelled, "rois")
    chosen = None
    for s in read.studies:
        if s.series.series_uid == series_uid or any(e.sop_uid in rois for e in s.series.slices):
            chosen = s
            break
    if chosen is None:
        why = "; ".join(f"{k.file}: {k.reason}" for k in read.skipped[:2])
        raise ValueError(f"its elastogram series {series_uid} was not found among {len(files)} kept files"
                         + (f" ({why})" if why else ""))
    pairs = [(e, np.asarray(rois[e.sop_uid], bool)) for e in chosen.series.slices if e.sop_uid in rois]
    pairs = [(e, m & e.confidence) for e, m in pairs if m.shape == e.shape]
    if not pairs:
        raise ValueError("none of its labelled images is a slice of the elastogram series (or the shapes differ)")
    return LabelledSlices(chosen, tuple(e for e, _ in pairs), tuple(m for _, m in pairs), labelled)


def arrays_for(items: Sequence[LabelledSlices], spec: InputSpec) -> ArrayDataset:
    """Model-grid inputs and targets (reader ROI ∩ confidence) of labelled studies, patients as IDs."""
    if not items:
        return ArrayDataset(np.zeros((0, len(spec.channels), spec.size, spec.size), np.float16),
                            np.zeros((0, 1, spec.size, spec.size), np.uint8), ())
    parts = []
    for it in items:
        x = model_input(list(it.elastograms), spec).astype(np.float16)
        y = np.stack([(resize_bilinear(m.astype(np.float32), spec.size, spec.size) > 0.5).astype(np.uint8)[None]
                      for m in it.reader_rois])
        pid = getattr(it.labelled, "patient_id", "") or it.study.patient_id
        parts.append(ArrayDataset(x, y, tuple([pid] * len(x))))
    return concat_datasets(parts) if len(parts) > 1 else parts[0]


# ----------------------------------------------------------------------------------------------- evaluation
def reader_value(item: LabelledSlices, settings: Settings) -> float:
    """The reader's study stiffness (kPa): the stored reviewed value when there is one, else the reader's ROIs
    measured by the product's own rules (mean over slices, the same QC rules as the automatic value)."""
    stored = getattr(item.labelled, "reader_kpa", None)
    if stored is not None and math.isfinite(float(stored)):
        return float(stored)
    slices = [measure_slice(e, m, m, settings) for e, m in zip(item.elastograms, item.reader_rois)]
    res = finish_study(item.study, slices, settings, "reader", "", "", {})
    return float(res.stiffness_kpa)


def score_model(model: LoadedModel, items: Sequence[LabelledSlices], settings: Settings
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-slice overlap and per-study values of ``model`` on labelled studies.

    Two overlaps per slice against the reader's ROI inside the confidence region: ``dice`` / ``iou`` of the
    network's output (probability above the model's threshold, inside the confidence region) — the paper's
    measure of the segmentation — and ``dice_product`` of the ROI the product measures (one liver region,
    guardrails on; a slice the guardrails leave out counts as an empty ROI). ROI safety and the study values are
    the product's."""
    slice_rows, study_rows = [], []
    for it in items:
        result, probs, threshold = analyze_study_keeping_probabilities(it.study, model, settings)
        by_uid = {s.sop_uid: s for s in result.slices}
        prob_by_uid = {e.sop_uid: p for e, p in zip(it.study.series.slices, probs)}
        pid = getattr(it.labelled, "patient_id", "") or it.study.patient_id
        r_kpa = reader_value(it, settings)
        r_stage = stage(r_kpa, settings.staging).stage.label if math.isfinite(r_kpa) else ""
        for e, truth in zip(it.elastograms, it.reader_rois):
            s = by_uid.get(e.sop_uid)
            auto = np.zeros_like(truth) if s is None or s.excluded else np.asarray(s.roi, bool)
            net = (prob_by_uid[e.sop_uid] > threshold) & e.confidence
            n = int(auto.sum())
            slice_rows.append({"patient_id": pid, "study_uid": it.study.study_uid, "sop_uid": e.sop_uid,
                               "dice": dice(net, truth), "iou": iou(net, truth),
                               "dice_product": dice(auto, truth), "reader_stage": r_stage,
                               "outside_reader_fraction": float((auto & ~truth).sum()) / n if n else math.nan,
                               "empty": n == 0})
        study_rows.append({"patient_id": pid, "study_uid": it.study.study_uid, "auto_kpa": result.stiffness_kpa,
                           "reader_kpa": r_kpa, "reader_stage": r_stage, "qc_flags": ",".join(
                               f.value for f in result.qc_flags)})
    return pd.DataFrame(slice_rows), pd.DataFrame(study_rows)


def _value(v: float, ci: tuple[float, float] = (math.nan, math.nan)) -> dict:
    clean = lambda x: None if x is None or not math.isfinite(float(x)) else float(x)  # noqa: E731
    return {"value": clean(v), "ci_low": clean(ci[0]), "ci_high": clean(ci[1])}


def _patient_mean_ci(slices: pd.DataFrame, col: str) -> dict:
    if slices.empty:
        return _value(math.nan)
    per_patient = slices.groupby("patient_id")[col].mean().to_numpy(float)
    return _value(float(slices[col].mean()), bootstrap_ci(per_patient))


def summarise(slices: pd.DataFrame, studies: pd.DataFrame, settings: Settings, version: str) -> dict:
    """The paper's metrics with 95 % CIs for one model on the held-out studies (layout read by the registry's
    activation gate: ``dice`` and ``f2_specificity`` as ``{"value", "ci_low", "ci_high"}``)."""
    out: dict = {"version": version, "n_studies": int(len(studies)), "n_slices": int(len(slices)),
                 "dice": _patient_mean_ci(slices, "dice"), "iou": _patient_mean_ci(slices, "iou"),
                 "dice_product": _patient_mean_ci(slices, "dice_product") if "dice_product" in slices else
                 _value(math.nan)}
    out["iou_by_stage"] = {str(k): _patient_mean_ci(g, "iou") for k, g in slices.groupby("reader_stage")} \
        if not slices.empty else {}
    outside = slices["outside_reader_fraction"].dropna() if not slices.empty else pd.Series(dtype=float)
    out["roi_safety"] = {
        "outside_reader_fraction_mean": None if outside.empty else float(outside.mean()),
        "slices_over_10pct_outside_reader": int((outside > 0.10).sum()),
        "empty_slices": int(slices["empty"].sum()) if not slices.empty else 0,
        "note": "a site has no liver mask: the share of automatic ROI pixels outside the reader's ROI stands in "
                "for the share outside the liver",
    }
    pairs = studies[np.isfinite(studies["auto_kpa"].astype(float)) & np.isfinite(studies["reader_kpa"].astype(float))] \
        if not studies.empty else studies
    if len(pairs) >= 2:
        rep = agreement(pairs["auto_kpa"].to_numpy(float), pairs["reader_kpa"].to_numpy(float), settings.staging)
        sig = rep.significant
        out.update({
            "pearson_r": _value(rep.pearson.r, (rep.pearson.ci_low, rep.pearson.ci_high)),
            "icc": _value(rep.icc.value, (rep.icc.ci_low, rep.icc.ci_high)),
            "bland_altman_bias_kpa": _value(rep.bland_altman.bias, (rep.bland_altman.bias_ci_low,
                                                                    rep.bland_altman.bias_ci_high)),
            "bland_altman_loa_kpa": [rep.bland_altman.loa_low, rep.bland_altman.loa_high],
            "kappa_linear": _value(rep.kappa_linear, rep.kappa_ci),
            "f2_sensitivity": _value(sig.sensitivity, sig.sensitivity_ci),
            "f2_specificity": _value(sig.specificity, sig.specificity_ci),
            "f2_counts": {"tp": sig.tp, "fp": sig.fp, "tn": sig.tn, "fn": sig.fn},
        })
    else:
        out["note"] = f"{len(pairs)} study value(s) pair with a reader value: agreement statistics need 2"
    return out


def compare_on_heldout(candidate: LoadedModel, baseline: LoadedModel | None, items: Sequence[LabelledSlices],
                       settings: Settings) -> tuple[dict, pd.DataFrame]:
    """Both models on the same held-out studies; ``({"candidate":…, "baseline":…, …}, per-slice table)``."""
    c_slices, c_studies = score_model(candidate, items, settings)
    out = {"n_studies": len(items), "n_slices": int(len(c_slices)),
           "study_uids": [it.study.study_uid for it in items],
           "candidate": summarise(c_slices, c_studies, settings, candidate.version)}
    table = c_slices.assign(model="candidate")
    if baseline is not None:
        b_slices, b_studies = score_model(baseline, items, settings)
        out["baseline"] = summarise(b_slices, b_studies, settings, baseline.version)
        if len(c_slices) and len(b_slices):
            diff = (c_slices.groupby("patient_id")["dice"].mean() - b_slices.groupby("patient_id")["dice"].mean())
            out["dice_difference"] = _value(float(c_slices["dice"].mean() - b_slices["dice"].mean()),
                                            bootstrap_ci(diff.to_numpy(float)))
        table = pd.concat([table, b_slices.assign(model="baseline")], ignore_index=True)
    return out, table


def comparison_table(heldout: dict) -> pd.DataFrame:
    """The held-out comparison as rows metric × model, with CIs (for the page and the CSV)."""
    rows = []
    names = {"dice": "Dice, network output (per slice)", "iou": "IoU, network output (per slice)",
             "dice_product": "Dice, measured ROI after guardrails", "pearson_r": "Pearson r",
             "icc": "ICC(A,1)", "bland_altman_bias_kpa": "Bland-Altman bias (kPa)",
             "kappa_linear": "weighted kappa (stage)", "f2_sensitivity": "F2 sensitivity",
             "f2_specificity": "F2 specificity"}
    for key, label in names.items():
        row: dict = {"metric": key, "label": label}
        for who in ("candidate", "baseline"):
            v = (heldout.get(who) or {}).get(key) or {}
            row[f"{who}_value"], row[f"{who}_ci_low"], row[f"{who}_ci_high"] = (v.get("value"), v.get("ci_low"),
                                                                                 v.get("ci_high"))
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- the run
def site_input_ranges(train: Sequence[LabelledSlices], parent_card: Mapping | None = None) -> dict:
    """The card's ``input_ranges`` of a site model: each descriptor's range over its training studies
    (:mod:`mre_core.analysis.input_check`), widened to the parent's recorded ranges when it was fine-tuned from
    a model that has them (what either training saw); ``{}`` without a training study."""
    ranges = training_ranges(describe(i.study) for i in train)
    if not ranges:
        return {}
    source = f"{len(train)} training studies of this site's store"
    parent = ranges_from_card(parent_card or {})
    if parent:
        ranges = {k: InputRange(min(r.low, parent[k].low), max(r.high, parent[k].high)) if k in parent else r
                  for k, r in ranges.items()}
        source += " and the ranges of the model it was fine-tuned from"
    return ranges_to_json(ranges, source, len(train))


def site_card(parts: dict[str, list[LabelledSlices]], record: dict, heldout: dict, parent: str,
              problems: Sequence[tuple[str, str]] = (), parent_card: Mapping | None = None) -> dict:
    """The model card of a site-trained model: what it was trained on, its held-out numbers, its limitations,
    and the input ranges of its training studies (:func:`site_input_ranges`)."""
    def count(name: str) -> tuple[int, int, int]:
        items = parts.get(name, [])
        return (len(items), len({getattr(i.labelled, "patient_id", "") or i.study.study_uid for i in items}),
                sum(len(i.elastograms) for i in items))

    (n_tr, p_tr, s_tr), (n_va, _, _), (n_te, p_te, s_te) = count("train"), count("val"), count("test")
    sources = sorted({getattr(i.labelled, "source", "") for p in parts.values() for i in p} - {""})
    readers = sorted({getattr(i.labelled, "reader", "") for p in parts.values() for i in p} - {""})
    start = f"fine-tuned from {parent}" if parent else "trained from scratch"
    cand = heldout.get("candidate", {})
    metrics = {k: cand[k] for k in ("dice", "iou") if k in cand}
    if "pearson_r" in cand:
        metrics["pearson_r"] = cand["pearson_r"]
    if "icc" in cand:
        metrics["icc_a1"] = cand["icc"]
    if "kappa_linear" in cand:
        metrics["kappa_linear"] = cand["kappa_linear"]
    metrics.update({"source": "held-out studies of this site (mre_core.model.site.compare_on_heldout)",
                    "n_patients": p_te, "n_slices": s_te, "model": cand.get("version", "")})
    return {
        "origin": "site",
        "training_data": (f"{n_tr} studies ({s_tr} slices, {p_tr} patients) with reader ROIs from this site's store "
                          f"({', '.join(sources) or 'no source'}; readers: {', '.join(readers) or 'unnamed'}), "
                          f"{start}; {n_va} validation studies; {n_te} held-out test studies ({p_te} patients) "
                          "never trained on."),
        "test_metrics": metrics,
        "training": record,
        "left_out": [{"study_uid": u, "reason": r} for u, r in problems],
        "input_ranges": site_input_ranges(parts.get("train", []), parent_card),
        "limitations": [
            f"Measured on {n_te} held-out studies of this site only: the confidence intervals say how little that is.",
            "Trained on this site's readers' ROIs: it learns their convention, including their mistakes.",
            "Performance on other scanners, protocols or sites is unknown.",
            "Every automatic ROI is a proposal: a qualified reader must check it on every slice before signing off.",
        ],
    }


def write_site_card(weights_dir: Path, name: str, parts: dict[str, list[LabelledSlices]], record: dict,
                    heldout: dict, parent: str, problems: Sequence[tuple[str, str]] = (),
                    parent_card: Mapping | None = None) -> None:
    """Put :func:`site_card` into ``<weights_dir>/<name>.json`` (the weights and their SHA-256 are unchanged)."""
    path = Path(weights_dir) / f"{name}.json"
    doc = json.loads(path.read_text())
    card = site_card(parts, record, heldout, parent, problems, parent_card)
    doc["card"] = json.loads(json.dumps(card, default=float))
    path.write_text(json.dumps(doc, indent=2) + "\n")


def train_config(params: SiteTrainParams, arch: str, size: int, init: str, plain_base_channels: int = 32,
                 channels: tuple[str, ...] = InputSpec().channels) -> TrainConfig:
    """The run's hyper-parameters (module docstring: why these); the network's shape (architecture, input
    size and channels) is the starting model's."""
    return TrainConfig(arch=arch, input_size=size, epochs=params.epochs, batch=params.batch,
                       plain_base_channels=plain_base_channels, channels=tuple(channels),
                       micro_batch=params.micro_batch, optimizer="adamw", lr=params.lr, weight_decay=1e-4,
                       seed=params.seed, augment=True, augment_style="full", bf16=params.bf16, loss="bce_dice",
                       lr_schedule="cosine", init_weights=init)


__all__ = ["LabelledSlices", "SiteDataError", "SiteSplit", "SiteTrainParams", "arrays_for",
           "compare_on_heldout", "comparison_table", "read_labelled", "reader_value", "score_model", "site_card",
           "site_input_ranges", "split_by_patient", "summarise", "train_config", "write_site_card"]
