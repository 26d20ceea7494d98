"""Train from the store: the run that turns a site's labelled studies into a registered model.

Select the labelled studies (:func:`mre_core.store.labels.labelled_studies`), split them by patient with the
active model's held-out studies forced into the test part (:func:`mre_core.model.site.split_by_patient`), read
them through the product's reader, fine-tune (:func:`mre_core.model.train.fit`), compare with the active model on
the held-out studies (:func:`mre_core.model.site.compare_on_heldout`), write the model card, register the model
(:func:`mre_core.store.models.register`; not activated). :mod:`mre_core.workflow.training_job` runs it as a
background job; see :mod:`mre_core.model.site` for the choices and docs/SITE_TRAINING.md for the experiment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mre_core.config import Settings
from mre_core.model.site import (SPLIT_FILE, LabelledSlices, SiteDataError, SiteSplit, SiteTrainParams, arrays_for,
                                 compare_on_heldout, read_labelled, split_by_patient, train_config, write_site_card)
from mre_core.model.train import fit


@dataclass
class SiteRun:
    """What a run produced."""

    out_dir: Path
    split: SiteSplit
    record: dict
    heldout: dict
    model_version: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)  #: (study_uid, reason) left out


def train_from_store(store, inbox, settings: Settings, params: SiteTrainParams, out_dir: Path, *, user: str = "",
                     job_id: int | None = None, on_epoch: Callable[[dict], None] | None = None,
                     on_step: Callable[[int, int, int, float], None] | None = None,
                     on_phase: Callable[[str], None] | None = None,
                     should_stop: Callable[[], bool] | None = None, resume: bool = False) -> SiteRun:
    """Select, split, train, compare on the held-out studies and register the new model (not activated).

    Resumable: the split is written to ``<out_dir>/split.json`` first and reused by ``resume=True``, and training
    continues from ``<out_dir>/checkpoint.pt``. Raises :class:`SiteDataError` when there is too little data and
    :class:`mre_core.model.train.TrainingStopped` when ``should_stop`` asked for it.
    """
    from mre_core.model.network import load_model
    from mre_core.store import models as registry
    from mre_core.store.labels import labelled_studies

    phase = on_phase or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    phase("selecting the labelled studies")
    studies = labelled_studies(store, date_from=params.date_from or None, date_to=params.date_to or None,
                               manufacturers=params.manufacturers or None, readers=params.readers or None,
                               sources=params.sources)
    registry.ensure_shipped(store, settings)
    active = registry.active(store)
    baseline_settings, _why = registry.active_settings(settings, store)
    baseline = load_model(baseline_settings.weights_dir, baseline_settings.model_name, settings.device)
    forced = tuple(active.heldout) if active is not None else ()
    split_path = out_dir / SPLIT_FILE
    if resume and split_path.is_file():
        saved = json.loads(split_path.read_text())
        split = SiteSplit(tuple(saved["train"]), tuple(saved["val"]), tuple(saved["test"]), dict(saved["patients"]),
                          tuple(saved.get("forced_test", ())), int(saved.get("seed", 0)))
    else:
        split = split_by_patient(studies, params.val_fraction, params.test_fraction, params.seed, forced)
    by_uid = {s.study_uid: s for s in studies}
    phase(f"reading {len(by_uid)} labelled studies")
    items: dict[str, LabelledSlices] = {}
    problems: list[tuple[str, str]] = []
    for uid in (*split.train, *split.val, *split.test):
        if uid not in by_uid:
            problems.append((uid, "no longer labelled (its review or import changed since the split)"))
            continue
        try:
            items[uid] = read_labelled(by_uid[uid], inbox.files(uid), settings)
        except ValueError as exc:
            problems.append((uid, str(exc)))
    parts = {name: [items[u] for u in getattr(split, name) if u in items] for name in ("train", "val", "test")}
    for name, got in parts.items():
        if not got:
            raise SiteDataError(f"no readable {name} study after reading the files ("
                                + "; ".join(f"{u[-12:]}: {r}" for u, r in problems[:3]) + ")")
    manifest = {"split": split.to_json(), "studies": {
        uid: {"patient_id": s.patient_id, "series_uid": s.series_uid, "source": s.source, "reader": s.reader,
              "read_date": s.read_date, "revision": s.revision, "n_slices": len(s.rois),
              "part": split.part_of(uid)} for uid, s in by_uid.items() if split.part_of(uid)},
        "left_out": [{"study_uid": u, "reason": r} for u, r in problems]}
    split_path.write_text(json.dumps(split.to_json(), indent=2) + "\n")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    init = ""
    if params.init == "active":
        init = str(Path(baseline_settings.weights_dir) / baseline_settings.model_name)
    elif params.init != "scratch":
        raise ValueError(f"init must be 'active' or 'scratch', got {params.init!r}")
    size = baseline.config.input.size
    cfg = train_config(params, baseline.config.arch, size, init, baseline.config.plain_base_channels,
                       baseline.config.input.channels)
    spec = replace(baseline.config.input, size=size)
    train_data, val_data = arrays_for(parts["train"], spec), arrays_for(parts["val"], spec)
    name = params.name or (f"site_job{job_id}" if job_id is not None else time.strftime("site_%Y%m%d_%H%M%S"))
    export = Path(settings.models_dir) / name
    phase(f"training on {len(train_data)} slices of {len(parts['train'])} studies")
    record = fit(train_data, val_data, out_dir, cfg, settings, export=export, resume=resume, name=name,
                 show_progress=False, data_label=f"results store: {len(parts['train'])} training studies",
                 on_epoch=on_epoch, on_step=on_step, should_stop=should_stop)
    phase(f"comparing with {baseline.version} on {len(parts['test'])} held-out studies")
    candidate = load_model(export, name, settings.device)
    heldout, table = compare_on_heldout(candidate, baseline, parts["test"], settings)
    table.to_csv(out_dir / "heldout_slices.csv", index=False)
    (out_dir / "heldout.json").write_text(json.dumps(heldout, indent=2, default=float) + "\n")
    write_site_card(export, name, parts, record, heldout, baseline.version if init else "", problems,
                    baseline.config.card if init else None)
    entry = registry.register(store, export, name, origin="site", created_by=user, parent_version=
                              baseline.version if init else "", manifest=manifest,
                              settings={"train_config": record["train_config"], "params": params.to_json(),
                                        "device": record["device"]},
                              metrics={"heldout": heldout, "training": {k: record[k] for k in (
                                  "best_val_dice", "train_slices", "val_slices", "train_patients",
                                  "val_patients")}, "log": record["log"]},
                              heldout=split.test, job_id=job_id)
    return SiteRun(out_dir, split, record, heldout, entry.version, problems)




__all__ = ["SiteRun", "train_from_store"]
