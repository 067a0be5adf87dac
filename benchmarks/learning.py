"""How soon does the agent beat Pong's AI (or reach a score in another game)? Train (or read
finished runs) and print when the running reward first crosses each threshold, in wall time and
agent steps, and what the policy of that moment scores in full games.

    python benchmarks/learning.py --config configs/pong.yaml --seeds 0 1 2   # stops each at +20
    python benchmarks/learning.py --runs runs/pong-seed0 runs/pong-seed1   # summarise finished runs
    python benchmarks/learning.py --runs runs/pong-seed* --at-steps 500000 1000000   # where they stood

The running reward (Karpathy's 0.99 mean over episodes) lags the policy. So while training, the
model is saved the moment the running reward first reaches each threshold
(`RUN/crossings/running+0.keras`, ...), and each of those policies then plays `--eval-episodes`
separate full games (sampled actions, the run's own game settings). The final policy also plays
them with ALE v5's sticky actions (`--sticky-action-prob`, 0.25), which deterministic Pong without
them cannot be memorised against. The medians count a run that never reached a threshold as later
than every run that did, so they are printed while more than half of the runs reached it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import keras

from pgkeras.config import load_config
from pgkeras.envs import is_atari
from pgkeras.metrics import read_metrics

THRESHOLDS = (-20, -15, -10, -5, 0, 5, 10, 15, 20)
CROSSINGS = "crossings"
"""Folder of a run where the policy is saved at each first crossing."""


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


def running_reward_at(metrics_csv: Path, marks: list[int]) -> dict[int, float | None]:
    """The running reward of the first update at or after each mark of agent steps (None past the
    run's end), so that runs of different batch sizes are compared at the same steps."""
    rows = [row for row in read_metrics(metrics_csv) if not math.isnan(row["running_reward"])]
    return {
        mark: next((row["running_reward"] for row in rows if row["env_steps"] >= mark), None)
        for mark in marks
    }


def steps_per_game(metrics_csv: Path, marks: list[int]) -> dict[int, float | None]:
    """Agent steps per finished game between each mark and the one before it (the run's start for
    the first), read at the first update at or after each, as `running_reward_at` reads them; None
    past the run's end or where no game finished. A game won 21-0 sooner lifts the running reward
    sooner: the 0.99 mean moves once per game."""
    rows = read_metrics(metrics_csv)
    at = {mark: next((row for row in rows if row["env_steps"] >= mark), None) for mark in marks}
    result: dict[int, float | None] = {}
    before = {"env_steps": 0, "episodes": 0}
    for mark in marks:
        row = at[mark]
        games = None if row is None else row["episodes"] - before["episodes"]
        result[mark] = (row["env_steps"] - before["env_steps"]) / games if games else None
        before = row or before
    return result


def snapshot_path(run_dir: Path, threshold: int) -> Path:
    return Path(run_dir) / CROSSINGS / f"running{threshold:+d}.keras"


class SaveAtCrossings(keras.callbacks.Callback):
    """Saves the model the first time the running reward reaches each threshold."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = run_dir

    def on_epoch_end(self, epoch, logs=None):
        for threshold in THRESHOLDS:
            path = snapshot_path(self.run_dir, threshold)
            if logs["running_reward"] >= threshold and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                self.model.save(path)


def run_label(run: Path) -> str:
    """A run's name in the tables: its folder and the one above (runs of several recipes share
    folder names), at most 32 characters."""
    return "/".join(Path(run).parts[-2:])[-32:]


def full_game_score(model_path: Path, run_dir: Path, episodes: int, sticky_action_prob: float | None = None):
    """Mean reward of `episodes` full games (one per parallel game, sampled actions, seeded)."""
    from pgkeras import evaluate, load_policy

    config = load_config(run_dir / "config.yaml")
    model = load_policy(model_path)
    rewards = evaluate(model, config, episodes, seed=12345, sticky_action_prob=sticky_action_prob)
    return float(rewards.mean())


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
    parser.add_argument("--eval-episodes", type=int, default=10, help="full games per saved policy (0: none)")
    parser.add_argument(
        "--score-at", nargs="*", type=int, default=list(THRESHOLDS), metavar="LEVEL",
        help="score only the policies saved at these thresholds, e.g. --score-at 10 20 (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--sticky-action-prob", type=float, default=0.25, help="sticky actions for the final policy's games"
    )
    parser.add_argument(
        "--at-steps", nargs="*", type=int, default=[], metavar="STEPS",
        help="also print each run's running reward at these agent steps, and its agent steps per game "
        "between them, e.g. --at-steps 500000 1000000",
    )  # fmt: skip
    parser.add_argument("--out-dir", type=Path, default=Path("runs/learning"))
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args(argv)

    run_dirs = args.runs
    if not run_dirs:
        from pgkeras.train import train

        run_dirs = []
        for seed in args.seeds:
            run_dir = args.out_dir / f"{Path(args.config).stem}-seed{seed}"
            settings = [f"seed={seed}", f"train.max_steps={args.max_steps}",
                        f"train.stop_at_running_reward={args.stop_at}"]  # fmt: skip
            config = load_config(args.config, [*args.overrides, *settings])
            resume = (run_dir / "config.yaml").exists()
            train(config, run_dir, resume=resume, callbacks=[SaveAtCrossings(run_dir)])
            run_dirs.append(run_dir)

    table = {str(run): crossings(run / "metrics.csv") for run in run_dirs}
    scores: dict[str, dict[int, float | None]] = {}
    final: dict[str, dict[str, float]] = {}
    for run in run_dirs:
        scores[str(run)] = {
            threshold: full_game_score(snapshot_path(run, threshold), run, args.eval_episodes)
            if args.eval_episodes and threshold in args.score_at and snapshot_path(run, threshold).is_file()
            else None
            for threshold in THRESHOLDS
        }
        if args.eval_episodes and (run / "model.keras").is_file():
            sticky = is_atari(load_config(run / "config.yaml").env.id)  # only ALE games have them
            final[str(run)] = {
                "score": full_game_score(run / "model.keras", run, args.eval_episodes),
                "sticky_score": full_game_score(
                    run / "model.keras", run, args.eval_episodes, args.sticky_action_prob
                )
                if sticky
                else None,
            }

    print(
        f"{'running reward':>15} | "
        + " | ".join(f"{Path(r).name:>32}" for r in table)
        + " | median minutes | median steps | median score"
    )
    for threshold in THRESHOLDS:
        cells, minutes, steps, points = [], [], [], []
        for run, found in table.items():
            hit, score = found[threshold], scores[run][threshold]
            scored = f" ({score:+5.1f})" if score is not None else " " * 8
            cells.append(f"{hit[0] / 60:5.1f} min {hit[1]:>9,} st{scored}" if hit else f"{'-':>32}")
            if hit:
                minutes.append(hit[0] / 60)
                steps.append(hit[1])
            if score is not None:
                points.append(score)
        # A run that never got there counts as later than every run that did: the median exists
        # while more than half of the runs got there.
        missing = [math.inf] * (len(table) - len(minutes))
        known = len(minutes) > len(table) / 2
        median = f"{statistics.median([*minutes, *missing]):14.1f}" if known else f"{'-':>14}"
        median_steps = f"{statistics.median([*steps, *missing]):12,.0f}" if known else f"{'-':>12}"
        median_score = f"{statistics.median(points):+12.1f}" if len(points) == len(table) else f"{'-':>12}"
        print(f"{threshold:>+15d} | " + " | ".join(cells) + f" | {median} | {median_steps} | {median_score}")
    print(f"(score: mean reward of the policy saved at that moment over {args.eval_episodes} full games)")
    for run, result in final.items():
        sticky = result["sticky_score"]
        print(
            f"{Path(run).name}: final model.keras {result['score']:+.1f} over {args.eval_episodes} games"
            + (f", {sticky:+.1f} with sticky actions {args.sticky_action_prob}" if sticky is not None else "")
        )
    if args.at_steps:
        print(f"{'running reward at':>32} | " + " | ".join(f"{mark:>11,}" for mark in args.at_steps))
        for run in run_dirs:
            standing = running_reward_at(run / "metrics.csv", args.at_steps)
            cells = [f"{value:+11.1f}" if value is not None else f"{'-':>11}" for value in standing.values()]
            print(f"{run_label(run):>32} | " + " | ".join(cells))
        print(
            f"{'agent steps per game before':>32} | " + " | ".join(f"{mark:>11,}" for mark in args.at_steps)
        )
        for run in run_dirs:
            lengths = steps_per_game(run / "metrics.csv", args.at_steps)
            cells = [f"{value:11,.0f}" if value is not None else f"{'-':>11}" for value in lengths.values()]
            print(f"{run_label(run):>32} | " + " | ".join(cells))
    if args.json:
        data = {
            run: {"crossings": table[run], "scores": scores[run], "final": final.get(run)} for run in table
        }
        args.json.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
