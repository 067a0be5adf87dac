"""Train a policy on any configured game with the cross-entropy trick.

python scripts/train.py --config configs/cartpole.yaml [--set key=value ...] [--run-dir DIR]
python scripts/train.py --resume RUN_DIR
"""

import sys

from pgkeras.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main(prog="train.py"))
