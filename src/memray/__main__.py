"""``python -m memray``: the same command line as the ``memray`` script."""

import sys

from memray.commands import main

if __name__ == "__main__":
    sys.exit(main())
