"""``python -m mre_core.bench.listener``: time from the last instance received to the result stored.

Starts the DICOM listener in this process on a loopback port (temporary store and inbox, the
shipped model), sends phantom studies with pynetdicom's SCU (each a whole exam: the 5-slice
elastogram with its confidence map plus magnitude, wave and colour series), and reads from the
inbox table, per study:

``last → done``
    from the last instance received to the study being finished: result saved in the store,
    DICOM SEG, SR and PDF written. This includes the quiet period (``--quiet-s``, the listener's
    way of knowing the study is complete) and up to one worker poll (0.5 s).
``processing``
    ``last → done`` minus the quiet period: what a shorter quiet period cannot remove.

Prints a table and appends a JSON line to ``--json`` (default ``bench_results.jsonl``).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import MRImageStorage

from mre_core.bench.study import hardware
from mre_core.config import DEVICES, Settings
from mre_core.model.network import load_model
from mre_core.phantom.cohort import write_demo_study
from mre_core.store.inbox import DONE, Inbox
from mre_core.store.results import Store
from mre_core.workflow.listener import Listener, ListenerConfig
from mre_core.workflow.worker import IntakeConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send_study(folder: Path, port: int, called_ae: str) -> tuple[str, int]:
    """C-STORE every file under ``folder`` in one association; returns (study UID, files sent)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    datasets = [pydicom.dcmread(f) for f in files]
    ae = AE(ae_title="BENCH_SCU")
    for syntax in {str(ds.file_meta.TransferSyntaxUID) for ds in datasets}:
        ae.add_requested_context(MRImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    if not assoc.is_established:
        raise RuntimeError("the listener refused the association")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if getattr(status, "Status", None) != 0:
                raise RuntimeError(f"C-STORE failed: {status}")
    finally:
        assoc.release()
    return str(datasets[0].StudyInstanceUID), len(datasets)


def run(n_studies: int, quiet_s: float, settings: Settings, timeout_s: float = 300.0) -> dict[str, object]:
    model = load_model(settings.weights_dir, settings.model_name, settings.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inbox = Inbox(Store(f"sqlite:///{root / 'store.sqlite'}"), root / "inbox")
        port = _free_port()
        net = ListenerConfig(port=port, host="127.0.0.1", allow_any=True)
        listener = Listener(inbox, settings, net, IntakeConfig(quiet_s=quiet_s, write_pdf=True), model)
        listener.start()
        try:
            for i in range(n_studies):
                folder = write_demo_study(root / f"study{i}", seed=2000 + i)
                uid, n_files = send_study(folder, port, net.ae_title)
                end = time.monotonic() + timeout_s
                while (state := inbox.status(uid))["status"] != DONE:
                    if time.monotonic() > end or state["status"] in ("failed", "not analysed"):
                        raise RuntimeError(f"study {uid}: {state['status']} {state['detail']}")
                    time.sleep(0.05)
                total = float(state["finished_at"]) - float(state["last_received_at"])
                rows.append({"files": n_files, "last_to_done_s": total, "processing_s": total - quiet_s})
        finally:
            listener.stop()
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "benchmark": "listener",
        "hardware": hardware(),
        "device": str(model.device),
        "model": model.version,
        "studies": n_studies,
        "files_per_study": rows[0]["files"],
        "quiet_s": quiet_s,
        "last_to_done_median_s": statistics.median(r["last_to_done_s"] for r in rows),
        "last_to_done_max_s": max(r["last_to_done_s"] for r in rows),
        "processing_median_s": statistics.median(r["processing_s"] for r in rows),
        "processing_max_s": max(r["processing_s"] for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mre_core.bench.listener", description=__doc__.split("\n")[0])
    p.add_argument("--studies", type=int, default=3, help="studies sent one after the other (5 slices each)")
    p.add_argument("--quiet-s", type=float, default=2.0, help="the listener's quiet period (default %(default)s)")
    p.add_argument("--device", choices=DEVICES, default=None)
    p.add_argument("--json", type=Path, default=Path("bench_results.jsonl"), help="append the JSON line here")
    args = p.parse_args(argv)
    try:
        r = run(args.studies, args.quiet_s, Settings.from_env(device=args.device))
    except Exception as exc:  # noqa: BLE001 - a benchmark that cannot run says why
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"device {r['device']}  model {r['model']}  {r['studies']} studies x {r['files_per_study']} files, "
          f"quiet period {r['quiet_s']} s\n"
          f"last instance → result stored (SEG, SR, PDF written): median {r['last_to_done_median_s']:.2f} s "
          f"(max {r['last_to_done_max_s']:.2f})\n"
          f"of which processing (minus quiet period):           median {r['processing_median_s']:.2f} s "
          f"(max {r['processing_max_s']:.2f})")
    from mre_core.bench.study import append_json_line

    append_json_line(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
