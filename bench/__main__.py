"""``python -m bench``: the one benchmark entry point (bench/run.py)."""

import sys

from bench.run import main

sys.exit(main())
