"""What the Site training page shows and does, without Streamlit: tables, and each admin action checked in
``mre_core`` (``manage_models``) before it is done, whatever the buttons showed.

The page (``pages/site_training.py``) only lays these out. Every action here calls
:func:`mre_core.access.require` first (a refusal is audited ``access:denied``); the actions themselves audit what
they did (``labels:import``, ``training:create|cancel|resume|finish``, ``model:activate|rollback|reanalyse``).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mre_core.access import Action, User, require
from mre_core.config import Settings


def _who(user: User | None) -> str:
    return user.username if user is not None else ""


# ----------------------------------------------------------------------------- tables
def _fmt_ci(v: dict | None, digits: int = 3) -> str:
    if not v or v.get("value") is None:
        return "—"
    text = f"{v['value']:.{digits}f}"
    if v.get("ci_low") is not None and v.get("ci_high") is not None:
        text += f" ({v['ci_low']:.{digits}f}–{v['ci_high']:.{digits}f})"
    return text


def models_frame(entries: Sequence[Any], active_version: str) -> pd.DataFrame:
    """One row per registered model: version, origin, created, by, parent, held-out Dice and F2 specificity of
    it and of the model it was compared with (95 % CIs)."""
    rows = []
    for e in entries:
        h = (e.metrics or {}).get("heldout") or {}
        cand, base = h.get("candidate") or {}, h.get("baseline") or {}
        rows.append({"active": "●" if e.version == active_version else "", "version": e.version,
                     "origin": e.origin, "created_utc": e.created_utc, "created_by": e.created_by,
                     "fine_tuned_from": e.parent_version or "—", "heldout_studies": h.get("n_studies"),
                     "dice": _fmt_ci(cand.get("dice")), "f2_specificity": _fmt_ci(cand.get("f2_specificity")),
                     "compared_with": base.get("version", "—"), "its_dice": _fmt_ci(base.get("dice")),
                     "its_f2_specificity": _fmt_ci(base.get("f2_specificity"))})
    return pd.DataFrame(rows)


def comparison_frame(heldout: dict) -> pd.DataFrame:
    """The held-out comparison: metric, new model, compared model, each with its 95 % CI (plain numbers)."""
    from mre_core.model.site import comparison_table

    return comparison_table(heldout)


def comparison_display(heldout: dict) -> pd.DataFrame:
    """The comparison as text for the page (value and CI in one cell)."""
    rows = []
    for _, r in comparison_frame(heldout).iterrows():
        def cell(who: str) -> str:
            return _fmt_ci({"value": _nan_none(r[f"{who}_value"]), "ci_low": _nan_none(r[f"{who}_ci_low"]),
                            "ci_high": _nan_none(r[f"{who}_ci_high"])})
        rows.append({"metric": r["label"], "new model": cell("candidate"), "compared model": cell("baseline")})
    return pd.DataFrame(rows)


def _nan_none(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def iou_by_stage_frame(heldout: dict) -> pd.DataFrame:
    """IoU per reader stage for both models (the paper's Table 4 layout)."""
    rows = []
    for who, label in (("candidate", "new model"), ("baseline", "compared model")):
        for stg, v in sorted(((heldout.get(who) or {}).get("iou_by_stage") or {}).items()):
            rows.append({"model": label, "reader_stage": stg, "iou": _fmt_ci(v)})
    return pd.DataFrame(rows)


def safety_frame(heldout: dict) -> pd.DataFrame:
    rows = []
    for who, label in (("candidate", "new model"), ("baseline", "compared model")):
        s = (heldout.get(who) or {}).get("roi_safety") or {}
        if s:
            frac = s.get("outside_reader_fraction_mean")
            rows.append({"model": label, "roi_outside_reader_roi_mean": None if frac is None else round(frac, 4),
                         "slices_over_10pct_outside": s.get("slices_over_10pct_outside_reader"),
                         "empty_slices": s.get("empty_slices")})
    return pd.DataFrame(rows)


def epoch_log_frame(progress: dict) -> pd.DataFrame:
    return pd.DataFrame(progress.get("log") or [], columns=["epoch", "train_loss", "val_loss", "val_dice", "seconds"])


# ----------------------------------------------------------------------------- guarded actions
def import_reads(files: Sequence[tuple[str, bytes]], store: Any, inbox: Any, settings: Settings, user: User | None,
                 reader: str | None = None) -> Any:
    """Import uploaded DICOM SEG / RTSTRUCT files (and any images with them) as reader ROIs."""
    from mre_core.workflow.import_rois import import_rois

    require(user, Action.MANAGE_MODELS, store, detail=f"import {len(files)} file(s) of reads")
    with tempfile.TemporaryDirectory(prefix="mre_reads_") as tmp:
        paths = []
        for i, (name, data) in enumerate(files):
            p = Path(tmp) / f"{i:04d}_{Path(name).name or 'upload'}"
            p.write_bytes(data)
            paths.append(p)
        return import_rois(paths, store, inbox, imported_by=_who(user), reader=reader or None,
                           max_file_bytes=settings.max_file_bytes)


def start_training(params: Any, store: Any, settings: Settings, user: User | None) -> int:
    from mre_core.workflow.training_job import start_job

    require(user, Action.MANAGE_MODELS, store, detail="start a training job")
    return start_job(store, params, settings, _who(user))


def cancel_training(job_id: int, store: Any, user: User | None) -> bool:
    from mre_core.workflow.training_job import request_cancel

    require(user, Action.MANAGE_MODELS, store, detail=f"cancel training job {job_id}")
    return request_cancel(store, job_id, _who(user))


def resume_training(job_id: int, store: Any, settings: Settings, user: User | None) -> None:
    from mre_core.workflow.training_job import resume_job

    require(user, Action.MANAGE_MODELS, store, detail=f"resume training job {job_id}")
    resume_job(store, job_id, settings, _who(user))


def activate_model(version: str, store: Any, user: User | None, reason: str = "", override: bool = False) -> Any:
    from mre_core.store import models as registry

    require(user, Action.MANAGE_MODELS, store, detail=f"activate {version}")
    return registry.activate(store, version, user=_who(user), reason=reason, override=override)


def rollback_model(store: Any, user: User | None, reason: str = "") -> Any:
    from mre_core.store import models as registry

    require(user, Action.MANAGE_MODELS, store, detail="roll back the active model")
    return registry.rollback(store, user=_who(user), reason=reason)


def reanalyse_cohort(version: str, store: Any, inbox: Any, settings: Settings, user: User | None,
                     progress: Callable[[int, int], None] | None = None) -> Any:
    from mre_core.workflow.reanalyse import reanalyse

    require(user, Action.MANAGE_MODELS, store, detail=f"re-analyse the cohort with {version}")
    return reanalyse(store, inbox, settings, version, user=_who(user), progress=progress)


def preview_split(studies: Sequence[Any], params: Any, forced_test: Sequence[str]) -> tuple[str, Any]:
    """A sentence with the split the current choices would give (or why there can be none), and the split."""
    from mre_core.model.site import SiteDataError, split_by_patient

    if not studies:
        return "No labelled study matches these filters: review and sign off studies, or import reads.", None
    try:
        split = split_by_patient(studies, params.val_fraction, params.test_fraction, params.seed, forced_test)
    except SiteDataError as exc:
        return f"Cannot train yet: {exc}.", None
    n_pat = len(set(split.patients.values()))
    text = (f"{len(studies)} labelled studies of {n_pat} patients → training {len(split.train)}, validation "
            f"{len(split.val)}, held-out test {len(split.test)} (split by patient, seed {params.seed})")
    anonymous = sum(1 for s in studies if not s.patient_id)
    if anonymous:
        text += (f"; {anonymous} studies have no Patient ID (de-identified?): each is taken as its own patient, so "
                 "two exams of one such patient could fall on both sides of the split")
    if split.forced_test:
        text += (f"; {len(split.forced_test)} of the test studies are held out because the active model was "
                 "measured on them (never trained on)")
    return text + ".", split


__all__ = ["activate_model", "cancel_training", "comparison_display", "comparison_frame", "epoch_log_frame",
           "import_reads", "iou_by_stage_frame", "models_frame", "preview_split", "reanalyse_cohort",
           "resume_training", "rollback_model", "safety_frame", "start_training"]
