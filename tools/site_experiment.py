"""The site experiment of docs/SITE_TRAINING.md: a simulated site, its reads imported, a model trained from the
store, compared with the shipped one on the site's held-out studies.

    .venv/bin/python tools/site_experiment.py --out /tmp/site_exp --patients 30 --epochs 12

Writes ``<out>/result.json`` (timings, split sizes, the held-out comparison with 95 % CIs) and prints the
comparison table. Everything runs through the product's own code paths: ``generate_site`` → ``import_rois`` →
``training_job.run_job`` (the same function the Model page's background process runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mre_core.config import Settings  # noqa: E402
from mre_core.model.site import SiteTrainParams, comparison_table  # noqa: E402
from mre_core.phantom.site import generate_site  # noqa: E402
from mre_core.store import models as registry  # noqa: E402
from mre_core.store.inbox import Inbox  # noqa: E402
from mre_core.store.results import Store  # noqa: E402
from mre_core.workflow import training_job as jobs  # noqa: E402
from mre_core.workflow.import_rois import import_rois  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--patients", type=int, default=30)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0, help="site generator seed (offset by SITE_SEED_BASE)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true")
    args = p.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t = time.perf_counter()
    if not (out / "site" / "site.csv").is_file():
        generate_site(out / "site", args.patients, seed=args.seed)
    timings["generate_s"] = time.perf_counter() - t
    store = Store(f"sqlite:///{out / 'store.sqlite'}")
    settings = Settings(device=args.device, db_url=store.url, inbox_dir=out / "inbox", models_dir=out / "models")
    inbox = Inbox(store, settings.inbox_dir)
    t = time.perf_counter()
    report = import_rois([out / "site" / "archive" / "dicom", out / "site" / "reads"], store, inbox,
                         imported_by="site_experiment")
    timings["import_s"] = time.perf_counter() - t
    print(report.describe().splitlines()[-1])
    params = SiteTrainParams(epochs=args.epochs, seed=args.split_seed, bf16=args.bf16)
    job_id = jobs.create_job(store, params, settings, "site_experiment")
    t = time.perf_counter()
    rc = jobs.run_job(store, inbox, job_id, settings)
    timings["train_and_compare_s"] = time.perf_counter() - t
    job = jobs.get_job(store, job_id)
    if rc != 0:
        print(job.describe())
        return 1
    entry = registry.get(store, job.model_version)
    h = entry.metrics["heldout"]
    log = job.progress.get("log", [])
    result = {"patients": args.patients, "epochs": args.epochs, "device": args.device, "bf16": args.bf16,
              "split": {k: len(v) for k, v in entry.manifest["split"].items() if k in ("train", "val", "test")},
              "train_slices": entry.metrics["training"]["train_slices"],
              "epoch_seconds": [round(r["seconds"], 1) for r in log],
              "val_dice": [round(r["val_dice"], 4) for r in log], "timings_s": timings,
              "model": entry.version, "heldout": h, "reads_imported": len(report.imported),
              "reads_unmatched": len(report.unmatched)}
    (out / "result.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    table = comparison_table(h)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(json.dumps({k: v for k, v in result.items() if k != "heldout"}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
