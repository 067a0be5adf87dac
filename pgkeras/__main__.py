"""`python -m pgkeras train|play|plot ...`: the same as the `pgkeras` command."""

import sys

from pgkeras.cli import main

if __name__ == "__main__":
    sys.exit(main())
