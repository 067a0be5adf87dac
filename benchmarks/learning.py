"""How soon does the agent beat Pong's AI? Train (or read finished runs) and print when the running
reward first crosses each threshold, in wall time and agent steps.

    python benchmarks/learning.py --config configs/pong.yaml --seeds 0 1 2   # stops each at +20
    python benchmarks/learning.py --runs runs/pong-seed0 runs/pong-seed1   # summarise finished runs
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from pgkeras.metrics import read_metrics

THRESHOLDS = (-20, -15, -10, -5, 0, 5, 10, 15, 20)


def crossings(metrics_csv: Path) -> dict[int, tuple[float, int] | None]:
    """First (wall seconds, agent steps) at which the running reward reaches each threshold."""
    rows = read_metrics(metrics_csv)
    found: dict[int, tuple[float, int] | None] = dict.fromkeys(THRESHOLDS)
    for row in rows:
        for threshold in THRESHOLDS:
            if (
                found[threshold] is None
                and not math.isnan(row["running_reward"])
                and row["running_reward"] >= threshold
            ):
                found[threshold] = (row["wall_time"], int(row["env_steps"]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", nargs="*", type=Path, help="finished run folders to summarise instead of training"
    )
    parser.add_argument("--config", default="configs/pong.yaml")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting of the config, as in the training scripts",
    )  # fmt: skip
    parser.add_argument("--max-steps", type=int, default=4_000_000)
    parser.add_argument(
        "--stop-at", type=float, default=20.0, help="stop a run once its running reward reaches this"
    )
    parser.add_argument("--out-dir", type=Path, default=Path("runs/learning"))
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args(argv)

    run_dirs = args.runs
    if not run_dirs:
        from pgkeras.config import load_config
        from pgkeras.train import train

        run_dirs = []
        for seed in args.seeds:
            run_dir = args.out_dir / f"{Path(args.config).stem}-seed{seed}"
            config = load_config(
                args.config, [*args.overrides, f"seed={seed}", f"train.max_steps={args.max_steps}"]
            )
            train(
                config,
                run_dir,
                resume=(run_dir / "config.yaml").exists(),
                on_update=lambda row, model: row.running_reward >= args.stop_at,
            )
            run_dirs.append(run_dir)

    table = {str(run): crossings(run / "metrics.csv") for run in run_dirs}
    print(
        f"{'running reward':>15} | " + " | ".join(f"{Path(r).name:>24}" for r in table) + " | median minutes"
    )
    for threshold in THRESHOLDS:
        cells, minutes = [], []
        for found in table.values():
            hit = found[threshold]
            cells.append(f"{hit[0] / 60:6.1f} min {hit[1]:>10,} st" if hit else f"{'-':>24}")
            if hit:
                minutes.append(hit[0] / 60)
        median = f"{statistics.median(minutes):.1f}" if len(minutes) == len(table) else "-"
        print(f"{threshold:>+15d} | " + " | ".join(cells) + f" | {median}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
