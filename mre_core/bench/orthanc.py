"""``python -m mre_core.bench.orthanc``: the hospital round trip through a real PACS (Orthanc).

Starts Orthanc (the Debian package ``orthanc``, ``/usr/sbin/Orthanc``) with its own temporary
configuration on loopback ports, uploads phantom studies to it through its REST API
(``POST /instances``), starts the DICOM listener CLI (``python -m mre_core listen``) as a separate
process that forwards to Orthanc, and asks Orthanc to send every study to the listener
(``POST /modalities/MRE/store``), as a PACS routing rule would. Then it waits until every study
in Orthanc holds our DICOM SEG and SR, and prints:

``last send → last SEG/SR in Orthanc``
    from the moment Orthanc's last C-STORE to the listener finished (the REST call returned) to
    the moment the last SEG/SR of all studies is visible in Orthanc's REST API (polled every
    0.2 s). Includes the listener's quiet period (``--quiet-s``), the analysis of every study
    (one after the other, by the listener's single worker), writing SEG, SR and PDF, and the
    forward to Orthanc.
``per study``
    the same from that study's own send, median and max.

The building blocks (:class:`Orthanc`, :class:`ListenerProcess`, :func:`send_and_wait`) are also what
``tests/workflow/test_orthanc.py`` uses. Appends a JSON line to ``--json`` (default ``bench_results.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from mre_core.config import DEVICES, REPO_ROOT
from mre_core.store.inbox import Inbox
from mre_core.store.results import Store

#: where the Debian package ``orthanc`` installs the server (``make system-deps`` installs it)
ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
ORTHANC_AET = "ORTHANC"  #: Orthanc's own AE title (called AE of our forwards, calling AE of its sends)
MODALITY = "MRE"  #: the name of our listener in Orthanc's ``DicomModalities``
LISTENER_AET = "MRE_REVIEW"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RESULT_MODALITIES = ("SEG", "SR")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OrthancError(RuntimeError):
    """Orthanc did not start, or a REST call failed (the message carries Orthanc's answer)."""


def orthanc_config(root: Path, http_port: int, dicom_port: int, listener_port: int) -> dict[str, Any]:
    """A self-contained Orthanc 1.10 configuration: storage under ``root``, loopback only, one modality.

    Orthanc 1.10 has no option to bind its servers to one address (both listen on every
    interface), so the exposure is limited by access rules instead: the HTTP server answers
    loopback clients only (``RemoteAccessAllowed`` false), and the DICOM server accepts nothing
    (no echo, store, find, get or move) from anyone but our listener's AE title coming from
    127.0.0.1 (``DicomAlwaysAllow*`` false, ``DicomCheckModalityHost`` true), addressed to
    Orthanc's own AE title (``DicomCheckCalledAet`` true).
    """
    return {
        "Name": "MRE-TEST-PACS",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "StorageCompression": False,
        "Plugins": [],  # not the Debian package's /usr/share/orthanc/plugins
        "LuaScripts": [],
        "SaveJobs": False,
        # HTTP: REST API for loopback clients only, no login
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "WebDavEnabled": False,
        "OrthancExplorerEnabled": False,
        "HttpDescribeErrors": True,
        "ExecuteLuaEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        # DICOM: our listener is the only peer
        "DicomServerEnabled": True,
        "DicomAet": ORTHANC_AET,
        "DicomPort": dicom_port,
        "DicomTlsEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomCheckModalityHost": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowFindWorklist": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "UnknownSopClassAccepted": False,  # DICOM SEG and Comprehensive 3D SR are standard classes
        "DicomAssociationCloseDelay": 0,  # close Orthanc's association to the listener after each send
        "DicomModalitiesInDatabase": False,
        "DicomModalities": {
            MODALITY: {"AET": LISTENER_AET, "Host": "127.0.0.1", "Port": listener_port,
                       "AllowEcho": True, "AllowStore": True, "AllowFind": False, "AllowFindWorklist": False,
                       "AllowGet": False, "AllowMove": False, "AllowStorageCommitment": False},
        },
        "OrthancPeers": {},
    }


class Orthanc:
    """An Orthanc server in a temporary folder; :meth:`start` returns once ``GET /system`` answers."""

    def __init__(self, root: Path, listener_port: int, binary: Path = ORTHANC_BINARY) -> None:
        self.root, self.binary = Path(root), Path(binary)
        self.http_port, self.dicom_port, self.listener_port = free_port(), free_port(), listener_port
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log_path = self.root / "orthanc.log"
        self.proc: subprocess.Popen | None = None

    @property
    def destination(self) -> str:
        """Orthanc's DICOM server as the listener's ``--forward-to HOST:PORT:AET``."""
        return f"127.0.0.1:{self.dicom_port}:{ORTHANC_AET}"

    def start(self, timeout_s: float = 60.0) -> Self:
        if not self.binary.is_file():
            raise OrthancError(f"{self.binary} not found: install the Debian package 'orthanc' (make system-deps)")
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "orthanc.json"
        config.write_text(json.dumps(orthanc_config(self.root, self.http_port, self.dicom_port, self.listener_port),
                                     indent=2))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(self.binary), str(config)], cwd=self.root, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise OrthancError(f"Orthanc exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if "Version" in self.get("/system", timeout_s=2.0):
                    return self
            except (OSError, OrthancError):
                pass
            time.sleep(0.2)
        self.stop()
        raise OrthancError(f"Orthanc did not answer GET /system within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM (Orthanc shuts down cleanly), then SIGKILL after 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, n_chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n_chars:] if self.log_path.exists() else ""

    # ------------------------------------------------------------------ REST
    def request(self, method: str, path: str, body: bytes | dict | list | None = None,
                content_type: str = "application/json", timeout_s: float = 120.0) -> Any:
        """One REST call; returns the decoded JSON answer (text for a plain-text one, e.g. a metadata value);
        ``OrthancError`` with the HTTP status and Orthanc's message otherwise."""
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type} if data is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                status, payload, kind = resp.status, resp.read(), resp.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            raise OrthancError(f"{method} {path}: HTTP {exc.code}: {exc.read().decode(errors='replace')[:2000]}") \
                from None
        if status != 200:
            raise OrthancError(f"{method} {path}: HTTP {status}: {payload[:2000]!r}")
        if kind != "application/json":
            return payload.decode(errors="replace")
        return json.loads(payload) if payload.strip() else None

    def get(self, path: str, timeout_s: float = 60.0) -> Any:
        return self.request("GET", path, timeout_s=timeout_s)

    def upload_file(self, path: Path) -> dict[str, Any]:
        """``POST /instances`` with one DICOM file; the answer names the instance's parent study."""
        answer = self.request("POST", "/instances", Path(path).read_bytes(), content_type="application/dicom")
        if answer.get("Status") not in ("Success", "AlreadyStored"):
            raise OrthancError(f"upload of {path}: {answer}")
        return answer

    def upload_folder(self, folder: Path) -> list[str]:
        """Upload every file under ``folder``; returns the Orthanc IDs of the studies, in order of first file."""
        studies: dict[str, None] = {}
        for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            studies[self.upload_file(f)["ParentStudy"]] = None
        return list(studies)

    def send_to_modality(self, study_id: str, modality: str = MODALITY) -> dict[str, Any]:
        """C-STORE a whole study to ``modality`` (synchronous); ``OrthancError`` unless every instance went."""
        answer = self.request("POST", f"/modalities/{modality}/store", {"Resources": [study_id], "Synchronous": True})
        if int(answer.get("FailedInstancesCount", 0)) != 0:
            raise OrthancError(f"send of study {study_id} to {modality}: {answer}")
        return answer

    def echo(self, modality: str = MODALITY) -> bool:
        """C-ECHO from Orthanc to ``modality``: the listener is up and accepts Orthanc's calling AE."""
        try:
            self.request("POST", f"/modalities/{modality}/echo", {}, timeout_s=10.0)
            return True
        except (OSError, OrthancError):
            return False

    def study_uid(self, study_id: str) -> str:
        return str(self.get(f"/studies/{study_id}")["MainDicomTags"]["StudyInstanceUID"])

    def series_by_modality(self, study_id: str) -> dict[str, list[dict[str, Any]]]:
        """The study's series grouped by their Modality tag."""
        out: dict[str, list[dict[str, Any]]] = {}
        for series in self.get(f"/studies/{study_id}/series"):
            out.setdefault(str(series["MainDicomTags"].get("Modality", "")), []).append(series)
        return out

    def sop_classes(self, study_id: str, modalities: tuple[str, ...] = RESULT_MODALITIES) -> dict[str, int]:
        """Instances per SOP Class UID in the study's series of ``modalities``."""
        counts: dict[str, int] = {}
        for modality, series_list in self.series_by_modality(study_id).items():
            if modality not in modalities:
                continue
            for series in series_list:
                for instance in series["Instances"]:
                    sop_class = str(self.get(f"/instances/{instance}/metadata/SopClassUid"))
                    counts[sop_class] = counts.get(sop_class, 0) + 1
        return counts

    def n_instances(self, study_id: str) -> int:
        return len(self.get(f"/studies/{study_id}/instances"))

    def has_results(self, study_id: str) -> bool:
        """The study holds a SEG series and an SR series."""
        present = self.series_by_modality(study_id)
        return all(present.get(m) for m in RESULT_MODALITIES)


# ------------------------------------------------------------------------------------------ listener
class ListenerProcess:
    """``python -m mre_core listen`` in its own process, with its own SQLite store and inbox under ``root``."""

    def __init__(self, root: Path, port: int, forward_to: str, quiet_s: float = 1.0, device: str | None = None,
                 allow: str = ORTHANC_AET, pdf: bool = True, extra_env: dict[str, str] | None = None,
                 verb: str = "listen", log_name: str = "listener.log") -> None:
        self.root, self.port = Path(root), port
        self.db_url = f"sqlite:///{self.root / 'store.sqlite'}"
        self.inbox_dir = self.root / "inbox"
        self.log_path = self.root / log_name
        common = ["--ae-title", LISTENER_AET, "--quiet-s", str(quiet_s), "--forward-to", forward_to,
                  *([] if pdf else ["--no-pdf"]), *(["--device", device] if device else [])]
        # verb "work": a worker without a port on the same store and inbox (python -m mre_core work)
        self.args = (["listen", "--host", "127.0.0.1", "--port", str(port), "--allow", allow, *common]
                     if verb == "listen" else ["work", *common])
        self.env = dict(os.environ, MRE_DB_URL=self.db_url, MRE_INBOX_DIR=str(self.inbox_dir), PYTHONUNBUFFERED="1",
                        **(extra_env or {}))
        self.proc: subprocess.Popen | None = None

    def start(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "mre_core", *self.args], cwd=REPO_ROOT, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, orthanc: Orthanc, timeout_s: float = 180.0) -> None:
        """Until the listener says it is ready and answers Orthanc's C-ECHO; ``RuntimeError`` if it died."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"the listener exited ({self.proc and self.proc.returncode}):\n{self.log()[-3000:]}")
            if "MRE listener ready" in self.log() and orthanc.echo():
                return
            time.sleep(0.5)
        raise RuntimeError(f"the listener was not ready within {timeout_s:.0f} s:\n{self.log()[-3000:]}")

    def stop(self) -> int | None:
        """SIGTERM to the process group (the listener finishes its current step), SIGKILL after 60 s."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def inbox(self) -> Inbox:
        """The listener's inbox and forwarding queue, read from this process (same SQLite file)."""
        return Inbox(Store(self.db_url), self.inbox_dir)


def _wait_for_line(proc: ListenerProcess, words: str, timeout_s: float = 180.0) -> None:
    end = time.monotonic() + timeout_s
    while words not in proc.log():
        if proc.proc is None or proc.proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"{' '.join(proc.args[:1])} did not start:\n{proc.log()[-3000:]}")
        time.sleep(0.5)


# ------------------------------------------------------------------------------------------ round trip
@dataclass
class RoundTrip:
    """Wall-clock times (``time.time()``) of one round trip, per Orthanc study ID."""

    sent_at: dict[str, float] = field(default_factory=dict)  #: the study's REST store call returned
    stored_at: dict[str, float] = field(default_factory=dict)  #: SEG and SR first seen in Orthanc
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  #: Orthanc's answer to each send

    @property
    def last_send_to_last_result_s(self) -> float:
        return max(self.stored_at.values()) - max(self.sent_at.values())

    @property
    def per_study_s(self) -> list[float]:
        return [self.stored_at[s] - self.sent_at[s] for s in self.sent_at]


def send_and_wait(orthanc: Orthanc, study_ids: list[str], timeout_s: float = 180.0,
                  poll_s: float = 0.2) -> RoundTrip:
    """Send every study to the listener through Orthanc, then wait until each holds a SEG and an SR series.

    ``TimeoutError`` naming the studies still without results after ``timeout_s`` (from the last send).
    """
    trip = RoundTrip()
    for sid in study_ids:
        trip.answers[sid] = orthanc.send_to_modality(sid)
        trip.sent_at[sid] = time.time()
    end = time.monotonic() + timeout_s
    waiting = list(study_ids)
    while waiting:
        now = time.time()
        for sid in [s for s in waiting if orthanc.has_results(s)]:
            trip.stored_at[sid] = now
            waiting.remove(sid)
        if waiting and time.monotonic() > end:
            raise TimeoutError(f"{len(waiting)} of {len(study_ids)} studies without SEG and SR in Orthanc "
                               f"{timeout_s:.0f} s after the last send: {waiting}")
        if waiting:
            time.sleep(poll_s)
    return trip


def run(n_studies: int, quiet_s: float, device: str | None, seed: int = 4000,
        timeout_s: float | None = None, workers: int = 1) -> dict[str, object]:
    """The round trip with one listener and ``workers - 1`` extra ``work`` processes on its store and inbox."""
    from mre_core.bench.study import hardware
    from mre_core.phantom.cohort import generate_cohort

    with tempfile.TemporaryDirectory(prefix="mre_bench_orthanc_") as tmp:
        root = Path(tmp)
        generate_cohort(root / "phantom", n_studies, seed=seed, progress=False)
        port = free_port()
        with Orthanc(root / "orthanc", port) as orthanc:
            study_ids = orthanc.upload_folder(root / "phantom" / "dicom")
            n_files = [orthanc.n_instances(sid) for sid in study_ids]
            listener = ListenerProcess(root / "listener", port, orthanc.destination, quiet_s, device).start()
            extra = [ListenerProcess(root / "listener", port, orthanc.destination, quiet_s, device, verb="work",
                                     log_name=f"worker{i}.log").start() for i in range(1, max(1, workers))]
            try:
                listener.wait_ready(orthanc)
                for w in extra:
                    _wait_for_line(w, "MRE worker ready")
                trip = send_and_wait(orthanc, study_ids, timeout_s or 120.0 + 30.0 * n_studies)
                forwards = listener.inbox().forward_table()
            finally:
                for proc in (listener, *extra):
                    proc.stop()
            errors = [line for proc in (listener, *extra) for line in proc.log().splitlines()
                      if " ERROR " in line or "Traceback" in line]
    acked = forwards[forwards["status"] == "sent"]["updated_at"].astype(float)
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "benchmark": "orthanc",
        "hardware": hardware(),
        "device": device or "auto",
        "studies": n_studies,
        "files": sum(n_files),
        "files_per_study_min": min(n_files),
        "files_per_study_max": max(n_files),
        "quiet_s": quiet_s,
        "workers": max(1, workers),
        "last_send_to_last_result_s": trip.last_send_to_last_result_s,
        # the same end point as the listener saw it: Orthanc's C-STORE response to our forward
        "last_send_to_last_ack_s": float(acked.max()) - max(trip.sent_at.values()) if len(acked) else None,
        "per_study_median_s": statistics.median(trip.per_study_s),
        "per_study_max_s": max(trip.per_study_s),
        "sending_s": max(trip.sent_at.values()) - min(trip.sent_at.values()),
        "forwards": len(forwards),
        "listener_errors": len(errors),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mre_core.bench.orthanc", description=__doc__.split("\n")[0])
    p.add_argument("--studies", type=int, default=3, help="phantom studies sent through Orthanc (default %(default)s)")
    p.add_argument("--quiet-s", type=float, default=1.0, help="the listener's quiet period (default %(default)s)")
    p.add_argument("--device", choices=DEVICES, default=None, help="the listener's device (default: MRE_DEVICE/auto)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes on the listener's store: the listener plus N-1 `work` processes "
                        "(default %(default)s)")
    p.add_argument("--json", type=Path, default=Path("bench_results.jsonl"), help="append the JSON line here")
    args = p.parse_args(argv)
    try:
        r = run(args.studies, args.quiet_s, args.device, workers=args.workers)
    except Exception as exc:  # noqa: BLE001 - a benchmark that cannot run says why
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    ack = r["last_send_to_last_ack_s"]
    print(f"Orthanc → listener ({r['device']}, {r['workers']} worker process(es)) → Orthanc: "
          f"{r['studies']} studies, {r['files']} files "
          f"({r['files_per_study_min']}-{r['files_per_study_max']} per study), "
          f"quiet period {r['quiet_s']} s, sending took {r['sending_s']:.2f} s\n"
          f"last send → last SEG/SR in Orthanc: {r['last_send_to_last_result_s']:.2f} s"
          + (f" (Orthanc's C-STORE response to the listener's last forward: {ack:.2f} s)" if ack is not None else "") + "\n"
          f"per study, own send → its SEG/SR:   median {r['per_study_median_s']:.2f} s "
          f"(max {r['per_study_max_s']:.2f}); {r['forwards']} objects forwarded; "
          f"{r['listener_errors']} error lines in the listener log")
    from mre_core.bench.study import append_json_line

    append_json_line(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
