"""Where does a training run's wall time go? Trains a config for `--steps` agent steps in a temporary
run folder, under Python's profiler, and splits the trainer's time (its loop, from the first
collection to the final checkpoint) into:

- playing: waiting for the games of a batch (`collect_batch`; with worker processes the workers
  emulate and draw the actions meanwhile, and the trainer only waits);
- the trick's steps: Keras's `train_on_batch` (`update_policy`), `train.epochs` per batch;
- ratios' forward passes: the policy's probabilities of the taken actions before and between the
  clipped steps (`taken_probabilities`; none with `train.epochs: 1`);
- checkpoints: saving the model, the optimizer and the games, and drawing `curve.png`;
- the rest: advantages, logging, the callbacks' bookkeeping.

From those it prints how many minutes the run's agent steps would take at that rate of play if
everything else were free, for `--at-steps` steps (the issue 22 targets: 1.4M steps in 3 minutes).
Run it alone on the machine: the shares move with the load.

    python benchmarks/time_shares.py --config configs/pong_fast.yaml --set env.projections=true \\
        --set train.samples_per_update=1250 --steps 150000
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

PARTS = {
    "playing": ("collect_batch",),
    "the trick's steps": ("update_policy",),
    "ratios' forward passes": ("taken_probabilities",),
    "checkpoints": ("checkpoint",),
}
"""Each share and the pgkeras functions whose cumulative time it is (none calls another)."""


def shares(config: Path, overrides: list[str], steps: int) -> tuple[int, float, dict[str, float]]:
    """(agent steps played, seconds of the trainer's loop, {part: seconds}) of one profiled run of at
    least `steps` agent steps."""
    from pgkeras.cli import main as pgkeras_main
    from pgkeras.metrics import read_metrics

    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as run_dir:
        argv = ["train", "--config", str(config), *[f"--set={item}" for item in overrides],
                f"--set=train.max_steps={steps}", "--run-dir", str(Path(run_dir) / "run")]  # fmt: skip
        code = profiler.runcall(pgkeras_main, argv)
        if code != 0:
            raise SystemExit(f"pgkeras train exited with {code}")
        played = int(read_metrics(Path(run_dir) / "run" / "metrics.csv")[-1]["env_steps"])
    seconds = dict.fromkeys(PARTS, 0.0)
    total = 0.0
    for (filename, _, function), (_, _, _, cumulative, _) in pstats.Stats(profiler).stats.items():
        if "pgkeras" not in Path(filename).parts:
            continue
        if function == "_loop" and Path(filename).name == "train.py":
            total += cumulative  # the final checkpoint included
        for part, functions in PARTS.items():
            if function in functions:
                seconds[part] += cumulative
    return played, total, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "pong_fast.yaml"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=150_000, help="agent steps to train")
    parser.add_argument("--at-steps", type=float, default=1_400_000, help="steps of the estimate")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps: got {args.steps}, expected 1 or more")
    from pgkeras.cli import quiet_tensorflow

    quiet_tensorflow()
    played, total, seconds = shares(args.config, args.overrides, args.steps)
    rest = total - sum(seconds.values())
    settings = "".join(f" {item}" for item in args.overrides)
    print(f"{args.config.name}{settings}: {played:,} agent steps, {total:.1f} s")
    for part, value in [*seconds.items(), ("the rest", rest)]:
        print(f"{part:<24} {value:7.1f} s  {100 * value / total:5.1f}%")
    playing = seconds["playing"]
    if playing > 0:
        rate = played / playing
        print(f"playing alone: {rate:,.0f} agent steps/s, {args.at_steps / rate / 60:.1f} min "
              f"for {args.at_steps:,.0f} steps")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
