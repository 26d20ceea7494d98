"""``python -m mre_core <verb>``: analyze | listen | watch | work | phantom | train | evaluate | verify | users |
import-rois | models.

Exit codes: 0 success (``analyze``: at least one study analysed), 1 nothing to report
or a failure the message explains, 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mre_core.analysis.staging import TABLES
from mre_core.config import DEVICES, PROFILES, Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        device=getattr(args, "device", None),
        profile=getattr(args, "profile", None),
        custom_kpa_per_unit=getattr(args, "kpa_per_unit", None),
        weights_dir=getattr(args, "weights_dir", None),
        model_name=getattr(args, "model", None),
        staging=TABLES[args.staging] if getattr(args, "staging", None) else None,
    )


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, help="where the model runs (default: auto = cuda if present)")
    p.add_argument("--weights-dir", type=Path, help="folder holding <model>.safetensors and <model>.json")
    p.add_argument("--model", help="model name under the weights folder (default: unet_resnext50_32x4d)")


def cmd_analyze(args: argparse.Namespace) -> int:
    """Analyse files/folders/zips into ``--out``; see :func:`mre_core.workflow.batch.analyze_to_folder`."""
    from mre_core.model.network import WeightsError
    from mre_core.workflow.batch import analyze_to_folder

    try:
        settings = _settings(args)
        store = None if args.no_store else _open_store(settings)
        if store is not None:  # the registry's active model, unless --model / --weights-dir chose one
            from mre_core.store.models import active_settings, ensure_shipped

            ensure_shipped(store, settings)
            settings, why = active_settings(settings, store)
            print(why, file=sys.stderr)
        outcome = analyze_to_folder(args.paths, args.out, settings, show_progress=not args.quiet, write_pdf=args.pdf,
                                    store=store)
    except (WeightsError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for r in outcome.results:
        stage = r.stage.stage.label if r.stage else "no stage"
        flags = ",".join(f.value for f in r.qc_flags) or "ok"
        print(f"{r.patient_id}\t{r.stiffness_kpa:.2f} kPa\t{stage}\tQC: {flags}")
        for note in r.input_notes:
            print(f"\t  input unlike the training data: {note}")
    if store is not None:
        print(f"results store {store.display_url}: {len(outcome.saved)} result(s) saved as 'auto' (awaiting review), "
              f"{len(outcome.unchanged)} unchanged since an earlier revision", file=sys.stderr)
    n_files = sum(s.n_files for s in outcome.skipped)
    print(f"{len(outcome.results)} studies analysed; {len(outcome.skipped)} series or files not analysed "
          f"({n_files} files; one row each in {args.out / 'skipped.csv'}){_skipped_lines(outcome.skipped)}",
          file=sys.stderr)
    return 0 if outcome.results else 1


def _open_store(settings):  # noqa: ANN001, ANN202 - keeps the store import out of the parser
    """The results store, or None with a warning when it cannot be opened (the files are still written)."""
    from mre_core.store.results import Store, StoreError

    try:
        return Store(settings.db_url)
    except StoreError as exc:
        print(f"warning: {exc}; results are written to --out only (use --no-store to silence this)", file=sys.stderr)
        return None


#: the CLI lists at most this many series left out; skipped.csv has them all
MAX_SKIPPED_LINES = 40


def _skipped_lines(skipped: list) -> str:
    """One line per series (or file) left out: number, description, role, rule, reason."""
    lines = [f"\n  {s.describe()}" for s in skipped[:MAX_SKIPPED_LINES]]
    if len(skipped) > MAX_SKIPPED_LINES:
        lines.append(f"\n  … and {len(skipped) - MAX_SKIPPED_LINES} more (see skipped.csv)")
    return "".join(lines)


def cmd_verify(args: argparse.Namespace) -> int:
    """Load the weights (SHA-256 check) and run one forward pass on a phantom study."""
    import tempfile

    from mre_core.model.network import WeightsError, load_model
    from mre_core.phantom.cohort import write_demo_study
    from mre_core.workflow.batch import analyze_sources

    settings = _settings(args)
    try:
        model = load_model(settings.weights_dir, settings.model_name, settings.device)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"model {model.version} ({model.config.arch}) on {model.device}: SHA-256 verified")
    with tempfile.TemporaryDirectory() as tmp:
        study = write_demo_study(Path(tmp), seed=args.seed)
        outcome = analyze_sources([study], settings, model)
    if not outcome.results:
        print(f"error: demo study not analysed: {[s.reason for s in outcome.skipped]}", file=sys.stderr)
        return 1
    r = outcome.results[0]
    print(f"demo study: {r.stiffness_kpa:.2f} kPa, {r.stage.stage.label if r.stage else 'no stage'}, "
          f"{r.runtime_s:.2f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mre_core", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log every skipped file and step")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("analyze", help="analyse DICOM files, folders or zips")
    p.add_argument("paths", nargs="+", type=Path, help="DICOM files, folders (recursive) or .zip archives")
    p.add_argument("--out", type=Path, required=True, help="results folder (CSV, seg/, skipped.csv)")
    p.add_argument("--profile", choices=PROFILES, help="unit profile (default: auto from the headers)")
    p.add_argument("--kpa-per-unit", type=float, help="kPa per stored unit, with --profile custom")
    p.add_argument("--staging", choices=sorted(TABLES), help="cut-off table (default: paper)")
    p.add_argument("--pdf", action="store_true", help="also write a one-page PDF report per study (pdf/)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-store", action="store_true",
                   help="do not save the results to the results store (MRE_DB_URL; default: saved, awaiting review)")
    _model_args(p)
    p.set_defaults(func=cmd_analyze)

    from mre_core.phantom import cohort as phantom

    p = sub.add_parser("phantom", help="write a synthetic MRE cohort with known truth")
    phantom.configure_parser(p)
    p.set_defaults(func=phantom.run_cli)

    from mre_core.model import train

    p = sub.add_parser("train", help="train the segmentation model on phantom cohorts, or on the site's labelled "
                                     "studies in the results store (--from-store)")
    train.configure_parser(p)
    p.set_defaults(func=train.run_cli)

    from mre_core.model import evaluate

    p = sub.add_parser("evaluate", help="Dice/IoU, stiffness agreement and stage agreement on a phantom cohort")
    evaluate.configure_parser(p)
    p.set_defaults(func=evaluate.run_cli)

    from mre_core.model import ranges

    p = sub.add_parser("input-ranges", help="record in a weights card the range of each input descriptor over its "
                                            "training studies (exams outside them are flagged)")
    ranges.configure_parser(p)
    p.set_defaults(func=ranges.run_cli)

    from mre_core.workflow import listener

    p = sub.add_parser("listen", help="DICOM listener: analyse studies sent from the scanner or PACS")
    listener.configure_listen_parser(p)
    p.set_defaults(func=listener.run_listen)
    p = sub.add_parser("watch", help="watch a folder for exported DICOM files and analyse each study")
    listener.configure_watch_parser(p)
    p.set_defaults(func=listener.run_watch)
    p = sub.add_parser("work", help="a worker without a network port: analyse and forward from a shared store "
                                    "and inbox (run several beside the listener)")
    listener.configure_work_parser(p)
    p.set_defaults(func=listener.run_work)

    from mre_core.store import users

    p = sub.add_parser("users", help="local sign-in accounts: add, disable, enable, passwd, role, list "
                                     "(store: MRE_DB_URL)")
    users.configure_parser(p)
    p.set_defaults(func=users.run_cli)

    from mre_core.workflow import import_rois

    p = sub.add_parser("import-rois", help="import reader ROIs (DICOM SEG / RTSTRUCT referencing stored images) "
                                           "as training labels")
    import_rois.configure_parser(p)
    p.set_defaults(func=import_rois.run_cli)

    from mre_core.workflow import models_cli

    p = sub.add_parser("models", help="model registry: list, register, activate, rollback, reanalyse")
    models_cli.configure_parser(p)
    p.set_defaults(func=models_cli.run_cli)

    p = sub.add_parser("verify", help="check the shipped weights and run them on a phantom study")
    p.add_argument("--seed", type=int, default=0)
    _model_args(p)
    p.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
