"""Plot learning curves of one or more runs, overlaid.

python scripts/plot_run.py RUN_DIR [RUN_DIR ...] [--out curve.png]
"""

import sys

from pgkeras.cli import quiet_tensorflow

if __name__ == "__main__":
    quiet_tensorflow()
    from pgkeras.plots import plot_main

    sys.exit(plot_main())
