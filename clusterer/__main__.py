"""``python -m clusterer``: see ``clusterer.cli``."""

import sys

from clusterer.cli import main

if __name__ == "__main__":
    sys.exit(main())
