"""Train a Keras policy to play Pong from pixels with the cross-entropy trick.

python scripts/train_pong.py [--config configs/pong.yaml] [--set key=value ...] [--run-dir DIR]
python scripts/train_pong.py --resume RUN_DIR
"""

import os
import sys
from pathlib import Path

from pgkeras.cli import train_main

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pong.yaml"

if __name__ == "__main__":
    sys.exit(train_main(default_config=os.path.relpath(DEFAULT_CONFIG), prog="train_pong.py"))
