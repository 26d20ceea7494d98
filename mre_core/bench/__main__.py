"""``python -m mre_core.bench``: the study benchmark (:mod:`mre_core.bench.study`);
``python -m mre_core.bench --app [...]``: the browser benchmark of the web app (:mod:`mre_core.bench.app`)."""

import sys

if "--app" in sys.argv[1:]:
    from mre_core.bench.app import main

    sys.exit(main([a for a in sys.argv[1:] if a != "--app"]))

from mre_core.bench.study import main

sys.exit(main())
