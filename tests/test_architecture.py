"""The arrows of docs/ARCHITECTURE.md that must never exist, checked on the real import graph."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mre_core"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _offenders(source_prefixes: tuple[str, ...], target_prefixes: tuple[str, ...],
               exempt: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for module, imports in sorted(GRAPH.items()):
        if not module.startswith(source_prefixes) or module.startswith(exempt):
            continue
        hits = sorted(i for i in imports if i.startswith(target_prefixes) or i in target_prefixes)
        bad += [f"{module} → {h}" for h in hits]
    return bad


def test_the_graph_sees_every_package() -> None:
    packages = {m.split(".")[1] for m in GRAPH if m.count(".") >= 1}
    assert {"io", "analysis", "model", "stats", "outputs", "store", "workflow", "phantom", "app", "bench"} <= packages


def test_nothing_outside_the_app_imports_the_app_or_streamlit() -> None:
    assert _offenders(("mre_core",), ("mre_core.app", "streamlit"), exempt=("mre_core.app",)) == []


def test_the_pipeline_knows_no_store_no_network_and_no_workflow() -> None:
    sources = ("mre_core.io", "mre_core.analysis", "mre_core.outputs", "mre_core.stats")
    assert _offenders(sources, ("mre_core.store", "mre_core.workflow", "pynetdicom", "sqlalchemy")) == []


def test_ingest_does_not_import_the_model_or_torch() -> None:
    assert _offenders(("mre_core.io",), ("mre_core.model", "torch", "segmentation_models_pytorch")) == []


def test_the_phantom_shares_no_code_with_the_readers_it_tests() -> None:
    readers = ("mre_core.io.reader", "mre_core.io.series", "mre_core.io.units", "mre_core.io.confidence",
               "mre_core.io.sources", "mre_core.io.vendor_rules", "mre_core.io.vendor_rule_table")
    assert _offenders(("mre_core.phantom",), readers) == []


def test_the_pipeline_does_not_know_who_asked() -> None:
    sources = ("mre_core.io", "mre_core.analysis", "mre_core.outputs", "mre_core.stats")
    assert _offenders(sources, ("mre_core.access",)) == []


def test_access_rules_are_pure() -> None:
    targets = ("mre_core.store", "mre_core.app", "mre_core.workflow", "mre_core.model", "streamlit", "sqlalchemy",
               "torch")
    assert _offenders(("mre_core.access",), targets) == []


def test_the_schema_depends_on_nothing_else_in_the_store() -> None:
    assert _offenders(("mre_core.store.schema",), ("mre_core.store.results", "mre_core.store.inbox")) == []
    assert _offenders(("mre_core.store.results",), ("mre_core.store.inbox",)) == []


def test_no_module_imports_a_removed_flat_path() -> None:
    flat = {"elastogram", "sources", "dicom_io", "units", "confidence", "preprocess", "segment", "stiffness",
            "staging", "pipeline", "train", "dataset", "evaluate", "model_card", "cohort", "report", "sr",
            "pdf_report", "inbox", "intake", "listener", "batch", "worklist", "phantom_anatomy", "phantom_dicom",
            "webapp", "review", "cohort_data", "demo", "figures", "exports", "bench_listener"}
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "pages").glob("*.py"),
             ROOT / "app.py", *(ROOT / "tools").glob("*.py")]
    bad = [f"{p.relative_to(ROOT)}: {i}" for p in files for i in _imports(p)
           if i.startswith("mre_core.") and i.split(".")[1] in flat]
    assert bad == []


@pytest.mark.parametrize("module", ["mre_core.config", "mre_core.analysis.staging", "mre_core.io.vendor_rules",
                                    "mre_core.access.roles", "mre_core.access.oidc",
                                    "mre_core.io.elastogram"])
def test_registries_import_without_torch(module: str) -> None:
    code = f"import sys, {module}; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0, f"{module} pulls in torch"
