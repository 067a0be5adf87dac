"""Watch a saved policy play Pong: print its scores, record MP4/GIF, or show a window.

python scripts/play_pong.py --model RUN_DIR/model.keras [--episodes N] [--max-steps K] [--greedy]
                            [--seed S] [--video out.mp4] [--gif out.gif] [--render human]
python scripts/play_pong.py --model RUN_DIR      # a run folder plays its best.keras
"""

import sys

from pgkeras.cli import play_main

if __name__ == "__main__":
    sys.exit(play_main())
