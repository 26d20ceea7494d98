"""Evaluate a model on a phantom cohort the way the paper reports it.

Every study goes through the product path (read → ``analyze_study``), so what is
measured is what a user gets. Segmentation metrics compare the final ROI (prediction ∩
confidence, cleaned) with the expert ROI of the truth, pixel-wise **per slice, then
averaged over slices** (the paper's convention as we read it); 95 % CIs come from a
bootstrap over **patients**. Stiffness agreement compares the automatic study value with
the manual (expert-ROI) value per patient. A model with a liver output also gets its liver segmentation
scored: Dice of the predicted liver region (the largest predicted liver piece, not eroded) against the truth
liver mask, per slice, then averaged (``liver_segmentation`` in the metrics; ``liver_dice`` per slice).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mre_core.analysis.guardrails import liver_region
from mre_core.analysis.pipeline import analyze_study, analyze_study_keeping_maps
from mre_core.analysis.segment import min_area_px
from mre_core.analysis.staging import FibrosisStage, StagingTable, stage
from mre_core.config import Settings
from mre_core.model.dataset import PatientRecord, cohort_records, load_truth, read_patient
from mre_core.model.network import LoadedModel, load_model
from mre_core.stats.agreement import agreement, bootstrap_ci, dice, iou
from mre_core.stats.roi_safety import roi_safety, safety_summary


@dataclass(frozen=True)
class SliceScore:
    patient_id: str
    sop_uid: str
    manual_stage: str
    dice: float
    iou: float
    outside_liver_fraction: float  #: share of ROI pixels outside the true liver (NaN: empty ROI)
    near_edge_fraction: float  #: share of ROI pixels within 1 cm of the liver edge
    empty_roi: bool
    liver_dice: float = math.nan  #: predicted liver region vs truth liver mask (models with a liver output only)
    #: the slice counts in the study value (not left out by a guardrail or as empty); the ROI-safety and Dice
    #: above score every automatic ROI as shown, ``used`` lets :func:`roi_safety_summary` score only these
    used: bool = True
    dice_used: float = math.nan  #: Dice of the ROI the study value used (a slice left out: no ROI) vs the expert's


def has_liver_output(model: LoadedModel) -> bool:
    return "liver" in model.config.outputs


def score_patient(record: PatientRecord, model: LoadedModel, settings: Settings) -> tuple[list[SliceScore], dict]:
    """Per-slice Dice/IoU (and liver Dice for a model with a liver output) and the patient's automatic vs
    manual stiffness."""
    study = read_patient(record, settings)
    truth = load_truth(record.truth_path)
    liver_dice: dict[str, float] = {}
    if has_liver_output(model):
        result, maps, _ = analyze_study_keeping_maps(study, model, settings)
        for e, m in zip(study.series.slices, maps):
            if e.sop_uid in truth:
                min_px = min_area_px(settings.min_component_area_mm2, e.pixel_spacing_mm)
                liver_dice[e.sop_uid] = dice(liver_region(m["liver"], min_px, (0, 0)), truth[e.sop_uid].liver_mask)
    else:
        result = analyze_study(study, model, settings)
    manual_stage = record.row.get("manual_stage", "")
    spacing = {e.sop_uid: e.pixel_spacing_mm for e in study.series.slices}
    scores = []
    for s in result.slices:
        if s.sop_uid not in truth:
            continue
        t = truth[s.sop_uid]
        safety = roi_safety(s.roi, t.liver_mask, spacing[s.sop_uid])
        scores.append(SliceScore(record.patient_id, s.sop_uid, manual_stage, dice(s.roi, t.expert_roi),
                                 iou(s.roi, t.expert_roi), safety.outside_liver_fraction, safety.near_edge_fraction,
                                 safety.empty, liver_dice.get(s.sop_uid, math.nan), s.usable,
                                 dice(s.roi if s.usable else np.zeros_like(s.roi), t.expert_roi)))
    row = {
        "patient_id": record.patient_id, "split": record.split, "manual_kpa": float(record.row["manual_kpa"] or "nan"),
        "auto_kpa": result.stiffness_kpa, "manual_stage": manual_stage,
        "auto_stage": result.stage.stage.label if result.stage else "",
        "age": float(record.row.get("age", "nan") or "nan"), "sex": record.row.get("sex", ""),
        "qc_flags": ";".join(f.value for f in result.qc_flags), "runtime_s": result.runtime_s,
        "dice_mean": float(np.mean([s.dice for s in scores])) if scores else math.nan,
    }
    return scores, row


def segmentation_summary(slices: pd.DataFrame, seed: int = 0) -> dict:
    """Dice/IoU/F1 mean with patient-bootstrap 95 % CI, overall and per manual stage."""
    def block(df: pd.DataFrame) -> dict:
        per_patient = df.groupby("patient_id")[["dice", "iou"]].agg(["sum", "count"])
        out = {"n_slices": int(len(df)), "n_patients": int(df["patient_id"].nunique())}
        for metric in ("dice", "iou"):
            sums = per_patient[(metric, "sum")].to_numpy()
            counts = per_patient[(metric, "count")].to_numpy()
            pairs = np.stack([sums, counts], 1)
            lo, hi = bootstrap_ci(pairs, lambda p: p[:, 0].sum() / p[:, 1].sum(), n_boot=1000, seed=seed)
            out[metric] = {"mean": float(df[metric].mean()), "ci_low": lo, "ci_high": hi}
        out["f1"] = out["dice"]  # pixel-wise F1 equals Dice
        return out

    summary = {"overall": block(slices)}
    for s in FibrosisStage:
        part = slices[slices["manual_stage"] == s.label]
        if len(part):
            summary[s.label] = block(part)
    return summary


def liver_summary(slices: pd.DataFrame, seed: int = 0) -> dict:
    """Liver Dice (``liver_dice`` per slice) mean over slices, with a patient-bootstrap 95 % CI."""
    per_patient = slices.groupby("patient_id")["liver_dice"].agg(["sum", "count"]).to_numpy()
    lo, hi = bootstrap_ci(per_patient, lambda p: p[:, 0].sum() / p[:, 1].sum(), n_boot=1000, seed=seed)
    return {"n_slices": int(len(slices)), "n_patients": int(slices["patient_id"].nunique()),
            "dice": {"mean": float(slices["liver_dice"].mean()), "ci_low": lo, "ci_high": hi}}


def paired_dice_difference(main: pd.DataFrame, base: pd.DataFrame, seed: int = 0) -> dict:
    """Mean per-slice Dice of ``main`` minus ``base`` on the same slices, with a patient-bootstrap 95 % CI.

    ``main``/``base`` are ``<split>_slices.csv`` tables of two models on the same cohort.
    """
    m = main.merge(base, on=["patient_id", "sop_uid"], suffixes=("_main", "_base"))
    m["diff"] = m["dice_main"] - m["dice_base"]
    per_patient = m.groupby("patient_id")["diff"].agg(["sum", "count"]).to_numpy()
    lo, hi = bootstrap_ci(per_patient, lambda p: p[:, 0].sum() / p[:, 1].sum(), n_boot=2000, seed=seed)
    return {"n_slices": int(len(m)), "mean": float(m["diff"].mean()), "ci_low": lo, "ci_high": hi,
            "main_better_fraction": float((m["diff"] > 0).mean()), "base_better_fraction": float((m["diff"] < 0).mean())}


def stiffness_summary(patients: pd.DataFrame, table: StagingTable) -> dict:
    """Agreement over the patients with both values; the others are counted, not dropped silently."""
    both = np.isfinite(patients["auto_kpa"].to_numpy(float)) & np.isfinite(patients["manual_kpa"].to_numpy(float))
    rep = agreement(patients["auto_kpa"].to_numpy()[both], patients["manual_kpa"].to_numpy()[both], table)
    d = asdict(rep)
    d["confusion"] = rep.confusion.tolist()
    d["n_without_manual_value"] = int((~np.isfinite(patients["manual_kpa"].to_numpy(float))).sum())
    d["n_without_auto_value"] = int((~np.isfinite(patients["auto_kpa"].to_numpy(float))).sum())
    return d


def roi_safety_summary(slices: pd.DataFrame, patients: pd.DataFrame, table: StagingTable) -> dict:
    """ROI-safety over slices plus F2 false positives over patients (manual < F2, automatic >= F2)."""
    out = safety_summary(slices["outside_liver_fraction"].to_numpy(), slices["near_edge_fraction"].to_numpy(),
                         slices["empty_roi"].to_numpy())
    f2 = table.cutoffs[1].lower_kpa
    manual_neg = patients["manual_kpa"] < f2
    auto_pos = patients["auto_kpa"] >= f2
    out["f2_negatives"] = int(manual_neg.sum())
    out["f2_false_positives"] = int((manual_neg & auto_pos).sum())
    if "used" in slices:  # the ROIs the study values rest on: a slice left out counts as no automatic ROI
        used = slices["used"].to_numpy(bool)
        out["used_rois"] = safety_summary(np.where(used, slices["outside_liver_fraction"], np.nan),
                                          np.where(used, slices["near_edge_fraction"], np.nan),
                                          slices["empty_roi"].to_numpy(bool) | ~used)
        out["used_rois"]["n_left_out_with_roi"] = int((~used & ~slices["empty_roi"].to_numpy(bool)).sum())
        if "dice_used" in slices:
            out["used_rois"]["dice_mean"] = float(slices["dice_used"].mean())
    return out


def baseline_table(patients: pd.DataFrame, table: StagingTable) -> dict:
    """The paper's Table 2 quantities for one split."""
    def mean_sd(col: str) -> list[float]:
        v = patients[col].astype(float)
        return [float(v.mean()), float(v.std(ddof=1))]

    sig = lambda col: int(sum(stage(v, table).significant_fibrosis for v in patients[col] if math.isfinite(v)))  # noqa: E731
    return {"n": int(len(patients)), "age": mean_sd("age"), "male_pct": float((patients["sex"] == "M").mean() * 100),
            "manual_kpa": mean_sd("manual_kpa"), "auto_kpa": mean_sd("auto_kpa"),
            "ge_f2_manual": sig("manual_kpa"), "ge_f2_auto": sig("auto_kpa")}


def evaluate(data_dir: Path, settings: Settings, splits: tuple[str, ...] = ("train", "test"),
             max_patients: int = 0, model: LoadedModel | None = None, show_progress: bool = True) -> dict:
    """Metrics per split for the model named in ``settings``; also returns the per-patient/slice tables."""
    model = model or load_model(settings.weights_dir, settings.model_name, settings.device)
    liver = has_liver_output(model)
    out: dict = {"model": model.version, "arch": model.config.arch, "device": str(model.device), "splits": {},
                 "postprocess": {"threshold": settings.mask_threshold or model.config.threshold,
                                 "min_component_area_mm2": settings.min_component_area_mm2,
                                 "roi_guardrails": settings.roi_guardrails,
                                 "roi_stability": settings.roi_guardrails and settings.roi_stability}}
    if liver:
        out["outputs"] = list(model.config.outputs)
        out["postprocess"]["liver_margin_mm"] = settings.liver_margin_mm
    for split in splits:
        records = cohort_records(data_dir, split)
        if max_patients:
            records = records[:max_patients]
        if not records:
            continue
        slice_rows, patient_rows = [], []
        for rec in tqdm(records, desc=f"evaluate {split}", unit="patient", disable=not show_progress):
            scores, row = score_patient(rec, model, settings)
            slice_rows += [_slice_row(s, liver) for s in scores]
            patient_rows.append(row)
        slices, patients = pd.DataFrame(slice_rows), pd.DataFrame(patient_rows)
        out["splits"][split] = {
            "segmentation": segmentation_summary(slices),
            "stiffness": stiffness_summary(patients, settings.staging),
            "baseline": baseline_table(patients, settings.staging),
            "roi_safety": roi_safety_summary(slices, patients, settings.staging),
            "median_runtime_s": float(patients["runtime_s"].median()),
            "_patients": patients, "_slices": slices,
        }
        if liver:
            out["splits"][split]["liver_segmentation"] = liver_summary(slices)
    return out


def _slice_row(score: SliceScore, liver: bool) -> dict:
    """A slice table row; ``liver_dice`` only for a model with a liver output (single-output tables unchanged)."""
    row = asdict(score)
    if not liver:
        row.pop("liver_dice")
    return row


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="phantom cohort folder")
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json and per-patient CSVs")
    p.add_argument("--weights-dir", type=Path)
    p.add_argument("--model", help="model name under the weights folder")
    p.add_argument("--split", action="append", choices=("train", "test"), help="default: train and test")
    p.add_argument("--max-patients", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))


def run_cli(args: argparse.Namespace) -> int:
    settings = Settings.from_env(device=args.device, weights_dir=args.weights_dir, model_name=args.model)
    res = evaluate(args.data, settings, tuple(args.split or ("train", "test")), args.max_patients)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, block in res["splits"].items():
        block.pop("_patients").to_csv(args.out / f"{split}_patients.csv", index=False)
        block.pop("_slices").to_csv(args.out / f"{split}_slices.csv", index=False)
    (args.out / f"metrics_{settings.model_name}.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    for split, block in res["splits"].items():
        seg, st = block["segmentation"]["overall"], block["stiffness"]
        safe = block["roi_safety"]
        print(f"{split}: Dice {seg['dice']['mean']:.4f} [{seg['dice']['ci_low']:.4f}, {seg['dice']['ci_high']:.4f}]  "
              f"r {st['pearson']['r']:.3f}  ICC {st['icc']['value']:.3f}  kappa {st['kappa_linear']:.3f}  "
              f"ROI outside liver {safe['outside_liver_mean']:.3f} (slices >10 %: {safe['slices_over_10pct_outside']})  "
              f"F2 false positives {safe['f2_false_positives']}/{safe['f2_negatives']}")
        if "used_rois" in safe:
            used = safe["used_rois"]
            print(f"{split}, the ROIs the study values used: Dice {used['dice_mean']:.4f}  ROI outside liver "
                  f"{used['outside_liver_mean']:.3f} (slices >10 %: {used['slices_over_10pct_outside']})  "
                  f"left out by a guardrail with an ROI: {used['n_left_out_with_roi']}")
        if "liver_segmentation" in block:
            liver = block["liver_segmentation"]["dice"]
            print(f"{split}: liver Dice {liver['mean']:.4f} [{liver['ci_low']:.4f}, {liver['ci_high']:.4f}]")
    return 0
