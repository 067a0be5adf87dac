"""Plot learning curves of one or more runs, overlaid.

python scripts/plot_run.py RUN_DIR [RUN_DIR ...] [--out curve.png]
"""

import sys

from pgkeras.cli import plot_main

if __name__ == "__main__":
    sys.exit(plot_main())
