"""``python -m purejaxppo``: the command line (see :mod:`purejaxppo.cli`)."""

import sys

from purejaxppo.cli import main

if __name__ == "__main__":
    sys.exit(main())
