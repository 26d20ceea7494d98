"""``python -m mre_core models …``: list, register, activate, roll back and re-analyse with registered models.

Every subcommand takes ``--db-url`` (default ``MRE_DB_URL``) and ``--inbox-dir`` (default ``MRE_INBOX_DIR``),
registers the shipped model first (:func:`mre_core.store.models.ensure_shipped`, so it is the baseline and the
way back), and answers a refusal or a failure with one line ``error: …`` and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from mre_core.config import Settings


def _common(p: argparse.ArgumentParser, env: Settings) -> None:
    p.add_argument("--db-url", default=env.db_url, help="results store (default: MRE_DB_URL or the local file)")
    p.add_argument("--inbox-dir", type=Path, default=env.inbox_dir, help="DICOM inbox (default: MRE_INBOX_DIR)")


def configure_parser(p: argparse.ArgumentParser) -> None:
    """``models list|register|activate|rollback|reanalyse``."""
    try:
        env = Settings.from_env()
    except ValueError:
        env = Settings()
    sub = p.add_subparsers(dest="models_verb", required=True)
    _common(sub.add_parser("list", help="every registered model, newest first; * marks the active one"), env)
    r = sub.add_parser("register", help="register DIR/NAME.safetensors (its SHA-256 is checked against NAME.json)")
    r.add_argument("dir", type=Path)
    r.add_argument("name")
    r.add_argument("--origin", choices=("site", "shipped"), default="site")
    r.add_argument("--user", default="", help="who registers it (recorded as its creator)")
    _common(r, env)
    a = sub.add_parser("activate", help="make VERSION the active model (refused if worse than the active one)")
    a.add_argument("version")
    a.add_argument("--user", required=True, help="who activates it (recorded)")
    a.add_argument("--override", action="store_true", help="activate although the gate refuses (needs --reason)")
    a.add_argument("--reason", default="", help="why (recorded; required with --override)")
    _common(a, env)
    b = sub.add_parser("rollback", help="re-activate the model active before the latest activation")
    b.add_argument("--user", required=True, help="who rolls back (recorded)")
    b.add_argument("--reason", default="")
    _common(b, env)
    n = sub.add_parser("reanalyse", help="re-analyse stored studies with VERSION and compare (writes no revision)")
    n.add_argument("version")
    n.add_argument("--study", action="append", default=None, metavar="UID", help="only this study (repeatable)")
    n.add_argument("--csv", type=Path, help="write the comparison table here")
    n.add_argument("--user", default="", help="who asks (recorded in the audit log)")
    n.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    _common(n, env)


def _fmt(x: object, digits: int = 3) -> str:
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    return "-" if not math.isfinite(v) else f"{v:.{digits}f}"


def _print_list(store) -> None:
    from mre_core.store.models import active, list_models

    entries, now = list_models(store), active(store)
    header = ("", "version", "origin", "created_utc", "created_by", "heldout_dice", "parent")
    rows = [header]
    for e in entries:
        cand = ((e.metrics.get("heldout") or {}).get("candidate") or {}) if isinstance(e.metrics, dict) else {}
        dice = cand.get("dice", {})
        rows.append(("*" if now and now.version == e.version else "", e.version, e.origin, e.created_utc,
                     e.created_by, _fmt(dice.get("value") if isinstance(dice, dict) else dice), e.parent_version))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    if not entries:
        print("(no models registered: the shipped weights are missing; python -m mre_core models register DIR NAME)")


def _reanalyse(store, args: argparse.Namespace) -> None:
    from mre_core.store.inbox import Inbox
    from mre_core.workflow.reanalyse import comparison_csv, reanalyse

    settings = Settings.from_env(db_url=args.db_url, inbox_dir=args.inbox_dir, device=args.device)
    report = reanalyse(store, Inbox(store, args.inbox_dir), settings, args.version, args.study, user=args.user,
                       progress=lambda i, n: print(f"\r{i}/{n} studies", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    for _, r in report.table.iterrows():
        print(f"{r['study_uid']}\treader {_fmt(r['reader_kpa'], 2)}\tbefore {_fmt(r['before_kpa'], 2)} "
              f"{r['before_stage'] or '-'}\tafter {_fmt(r['after_kpa'], 2)} {r['after_stage'] or '-'}"
              + ("\tSTAGE CHANGED" if r["stage_changed"] is True else ""))
    for uid, reason in report.skipped:
        print(f"skipped {uid}: {reason}", file=sys.stderr)
    s = report.summary
    print(f"{s['n_studies']} studies re-analysed with {args.version}, {s['n_skipped']} skipped; mean |Δ| "
          f"{_fmt(s['mean_abs_delta_kpa'], 2)} kPa; {s['n_stage_changed']} stage changes; no revision written")
    if "after_pearson_r" in s:
        print(f"vs reader: r {_fmt(s.get('before_pearson_r'))} → {_fmt(s.get('after_pearson_r'))}; F2 agreement "
              f"{_fmt(s.get('before_f2_agreement'))} → {_fmt(s.get('after_f2_agreement'))}")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        args.csv.write_bytes(comparison_csv(report))
        print(f"comparison written to {args.csv}")


def _dispatch(store, args: argparse.Namespace) -> None:
    from mre_core.store import models as reg

    try:
        reg.ensure_shipped(store)
    except reg.ModelFilesError as exc:  # say so, but the other models can still be managed
        print(f"warning: the shipped model is not registered: {exc}", file=sys.stderr)
    verb = args.models_verb
    if verb == "list":
        _print_list(store)
    elif verb == "register":
        entry = reg.register(store, args.dir, args.name, origin=args.origin, created_by=args.user)
        print(f"registered {entry.version} ({entry.origin}) from {entry.weights_dir}")
    elif verb == "activate":
        before = reg.active(store)
        entry = reg.activate(store, args.version, user=args.user, reason=args.reason, override=args.override)
        print(f"{entry.version} is now the active model (was {before.version if before else 'none'})")
    elif verb == "rollback":
        entry = reg.rollback(store, user=args.user, reason=args.reason)
        print(f"rolled back: {entry.version} is the active model again")
    else:
        _reanalyse(store, args)


def run_cli(args: argparse.Namespace) -> int:
    """Run one ``models`` subcommand; 0 on success, 1 with one ``error:`` line otherwise."""
    import sqlalchemy as sa

    from mre_core.model.network import WeightsError
    from mre_core.store.models import ActivationRefused
    from mre_core.store.results import Store, StoreError

    try:
        store = Store(args.db_url)
    except (StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        _dispatch(store, args)
        return 0
    except ActivationRefused as exc:
        print(f"error: refused: {exc}", file=sys.stderr)
    except (ValueError, WeightsError, StoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except sa.exc.SQLAlchemyError as exc:
        print(f"error: the results store {store.display_url} failed: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0]}", file=sys.stderr)
    finally:
        store.dispose()
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mre_core models", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
