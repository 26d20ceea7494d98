"""``python -m mre_core.bench``: the study benchmark (:mod:`mre_core.bench.study`)."""

import sys

from mre_core.bench.study import main

sys.exit(main())
