"""``python -m mre_core.app.serve [streamlit options]``: the web app, warmed up before it takes a connection.

The same as ``streamlit run app.py [options]`` (``.streamlit/config.toml`` applies), except that the heavy
modules are imported and frozen first (:func:`mre_core.app.warm.warm_up`), in the server's own process, so
the first reader after a restart does not wait for them. ``make run`` uses it.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app.py"


def main(argv: list[str] | None = None) -> int:
    from mre_core.app.warm import warm_up

    seconds = warm_up()
    print(f"MRE Liver Review: modules loaded in {seconds:.1f} s; starting the server", flush=True)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    return int(cli.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
