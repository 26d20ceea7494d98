"""Study benchmark (``python -m mre_core.bench``): time the whole path from DICOM bytes to a staged result.

Generates phantom studies (5 slices each), then for each repetition reads the files
(``read``), builds the model input (``preprocess``), runs the network (``model``),
thresholds/intersects/cleans (``post``) and measures/stages (``stiffness``). Prints a
table and appends one JSON line (hardware, settings, medians, slices/s, peak RSS) to
``--json`` (default ``bench_results.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mre_core.analysis.pipeline import analyze_study
from mre_core.config import DEVICES, Settings
from mre_core.io.reader import read_inputs
from mre_core.model.network import LoadedModel, WeightsError, load_model, untrained_model
from mre_core.phantom.cohort import write_demo_study

STAGES = ("read", "preprocess", "model", "post", "stability", "stiffness")


def peak_rss_mb() -> float:
    """Peak resident set size of this process, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def hardware() -> dict[str, object]:
    info: dict[str, object] = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads_torch": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu"] = f"{names[0]} x{len(names)}"
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def time_one_study(folder: Path, model: LoadedModel, settings: Settings) -> tuple[dict[str, float], int]:
    """Per-stage seconds for one study folder, and its slice count."""
    t = time.perf_counter()
    read = read_inputs([folder], settings)
    read_s = time.perf_counter() - t
    if len(read.studies) != 1:
        raise RuntimeError(f"benchmark study {folder} did not read as one study: {read.skipped}")
    result = analyze_study(read.studies[0], model, settings)
    timings = {"read": read_s, **result.timings_s}
    return timings, len(result.slices)


def run(n_studies: int, repeats: int, settings: Settings, allow_untrained: bool) -> dict[str, object]:
    """Benchmark ``repeats`` passes over ``n_studies`` generated studies (after one warm-up)."""
    try:
        model = load_model(settings.weights_dir, settings.model_name, settings.device)
    except WeightsError:
        if not allow_untrained:
            raise
        model = untrained_model("unet_resnext50", settings.device)  # same FLOPs as the trained one
    rows: list[dict[str, float]] = []
    n_slices = 0
    with tempfile.TemporaryDirectory() as tmp:
        folders = [write_demo_study(Path(tmp) / f"s{i}", seed=1000 + i) for i in range(n_studies)]
        time_one_study(folders[0], model, settings)  # warm-up: allocator, cudnn autotune, page cache
        for _ in range(repeats):
            for folder in folders:
                timings, n = time_one_study(folder, model, settings)
                rows.append(timings)
                n_slices += n
    totals = [sum(r.values()) for r in rows]
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hardware": hardware(),
        "device": str(model.device),
        "model": model.version,
        "input_size": model.config.input.size,
        "studies_timed": len(rows),
        "slices_per_study": n_slices / max(len(rows), 1),
        "median_s": {s: statistics.median(r.get(s, 0.0) for r in rows) for s in STAGES},
        "study_latency_median_s": statistics.median(totals),
        "study_latency_max_s": max(totals),
        "slices_per_s": n_slices / sum(totals),
        "peak_rss_mb": peak_rss_mb(),
    }


def format_table(r: dict[str, object]) -> str:
    med = r["median_s"]
    assert isinstance(med, dict)
    lines = [f"device {r['device']}  model {r['model']}  input {r['input_size']}px  "
             f"{r['studies_timed']} studies x {r['slices_per_study']:.1f} slices",
             "stage        median s"]
    lines += [f"{s:<12} {med[s]:8.3f}" for s in STAGES]
    lines += [f"{'study':<12} {r['study_latency_median_s']:8.3f}  (max {r['study_latency_max_s']:.3f})",
              f"slices/s     {r['slices_per_s']:8.2f}", f"peak RSS     {r['peak_rss_mb']:8.0f} MiB"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mre_core.bench", description=__doc__.split("\n")[0])
    p.add_argument("--studies", type=int, default=3, help="distinct phantom studies (5 slices each)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the studies")
    p.add_argument("--device", choices=DEVICES, default=None)
    p.add_argument("--json", type=Path, default=Path("bench_results.jsonl"), help="append the JSON line here")
    p.add_argument("--allow-untrained", action="store_true",
                   help="time a randomly initialised model when no weights are installed")
    args = p.parse_args(argv)
    settings = Settings.from_env(device=args.device)
    try:
        result = run(args.studies, args.repeats, settings, args.allow_untrained)
    except (WeightsError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_table(result))
    append_json_line(args.json, result)
    return 0


def append_json_line(path, record: dict) -> None:
    """Append one benchmark record as a JSON line (every benchmark's ``--json`` file) and say where."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"appended to {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
