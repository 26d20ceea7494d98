"""Documentation that must stay in step with the code."""

from __future__ import annotations

from pathlib import Path

from mre_core.io.vendor_rules import RULES
from mre_core.phantom.layouts import LAYOUTS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_data_formats_lists_every_vendor_rule_and_layout() -> None:
    text = (DOCS / "DATA_FORMATS.md").read_text()
    assert [r.name for r in RULES if f"`{r.name}`" not in text] == []
    assert [name for name in LAYOUTS if f"`{name}`" not in text] == []


def test_architecture_page_names_every_package() -> None:
    text = (DOCS / "ARCHITECTURE.md").read_text()
    packages = sorted(p.name for p in (DOCS.parent / "mre_core").iterdir() if (p / "__init__.py").is_file())
    assert [p for p in packages if f"`{p}/`" not in text] == []
