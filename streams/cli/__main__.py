"""``python -m streams.cli``: the ``atoguard`` command, as the installed script runs it."""

import sys

from streams.cli import main

if __name__ == "__main__":
    sys.exit(main())
