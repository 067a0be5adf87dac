"""Does `configs/pong_karpathy.yaml` learn as pg-pong.py does? Play Karpathy's algorithm in numpy
(`throughput.NumpyReferenceLoop`: one game, frame skip 4, no sticky actions) for a number of
episodes, and plot its running reward against episodes beside runs of the recipe.

    python benchmarks/karpathy.py run --episodes 3000 --seed 0 --out numpy-seed0.csv
    python benchmarks/karpathy.py table numpy-seed*.csv --runs runs/karpathy-seed*
    python benchmarks/karpathy.py plot numpy-seed*.csv --runs runs/karpathy-seed* --episodes 3000 \
        --out karpathy.png
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

RUNNING_DECAY = 0.99  # as the trainer's running reward


def run(episodes: int, seed: int, out: Path) -> None:
    """Plays and learns `episodes` episodes, writing one CSV row per episode as it ends."""
    from throughput import NumpyReferenceLoop

    loop = NumpyReferenceLoop(seed=seed)
    start, running = time.perf_counter(), None
    with out.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["episode", "env_steps", "episode_reward", "running_reward", "wall_time"])
        while loop.episodes < episodes:
            done = loop.episodes
            loop.play(1.0)
            for index in range(done, loop.episodes):
                reward = loop.episode_rewards[index]
                running = (
                    reward if running is None else RUNNING_DECAY * running + (1 - RUNNING_DECAY) * reward
                )
                writer.writerow(
                    [index + 1, loop.steps, reward, f"{running:.4f}", f"{time.perf_counter() - start:.1f}"]
                )
            file.flush()
    loop.close()


def running_at(numpy_csvs: list[Path], runs: list[Path], episodes: list[int]) -> dict[str, list[list[float]]]:
    """The running reward of each numpy run and each recipe run after `episodes` episodes."""
    from pgkeras.metrics import read_metrics

    values: dict[str, list[list[float]]] = {"numpy": [], "recipe": []}
    for path in numpy_csvs:
        with path.open() as file:
            by_episode = {int(r["episode"]): float(r["running_reward"]) for r in csv.DictReader(file)}
        values["numpy"].append([by_episode[e] for e in episodes])
    for run_dir in runs:
        rows = read_metrics(run_dir / "metrics.csv")
        values["recipe"].append(
            [next(r["running_reward"] for r in rows if r["episodes"] >= e) for e in episodes]
        )
    return values


def table(numpy_csvs: list[Path], runs: list[Path], episodes: list[int]) -> None:
    """Prints, at each episode count, each implementation's seeds, their mean and range, and Welch's
    t-test of the two means: p above 0.05 means the implementations differ by no more than their
    seeds do."""
    from scipy.stats import ttest_ind  # installed with JAX (the dev extra)

    values = running_at(numpy_csvs, runs, episodes)
    print("| episodes | recipe, per seed | numpy, per seed | recipe mean (range) | numpy mean (range) | "
          "difference of means | Welch's p |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for column, count in enumerate(episodes):
        recipe = [seed[column] for seed in values["recipe"]]
        numpy = [seed[column] for seed in values["numpy"]]
        difference = abs(sum(recipe) / len(recipe) - sum(numpy) / len(numpy))
        p_value = ttest_ind(recipe, numpy, equal_var=False).pvalue

        def cell(xs):
            return f"{sum(xs) / len(xs):.2f} ({max(xs) - min(xs):.2f})"

        seeds = " | ".join(" / ".join(f"{x:.2f}" for x in xs) for xs in (recipe, numpy))
        print(f"| {count:,} | {seeds} | {cell(recipe)} | {cell(numpy)} | {difference:.2f} | {p_value:.2f} |")


def plot(numpy_csvs: list[Path], runs: list[Path], out: Path, max_episodes: int | None = None) -> None:
    """Running reward against episodes, up to `max_episodes`: the numpy runs (blues) and the recipe's
    runs (reds) in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pgkeras.metrics import read_metrics

    limit = max_episodes or float("inf")
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for index, path in enumerate(numpy_csvs):
        with path.open() as file:
            rows = [r for r in csv.DictReader(file) if int(r["episode"]) <= limit]
        axis.plot([int(r["episode"]) for r in rows], [float(r["running_reward"]) for r in rows],
                  color=plt.cm.Blues(0.5 + 0.5 * index / max(1, len(numpy_csvs))),
                  label=f"pg-pong.py in numpy ({path.stem})")  # fmt: skip
    for index, run_dir in enumerate(runs):
        rows = [r for r in read_metrics(run_dir / "metrics.csv") if 0 < r["episodes"] <= limit]
        axis.plot([r["episodes"] for r in rows], [r["running_reward"] for r in rows],
                  color=plt.cm.Reds(0.5 + 0.5 * index / max(1, len(runs))),
                  label=f"configs/pong_karpathy.yaml ({run_dir.name})")  # fmt: skip
    axis.set(
        xlabel="episodes",
        ylabel="running reward (0.99 mean)",
        title="Karpathy's algorithm, two implementations, three seeds each",
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    play = commands.add_parser("run", help="play pg-pong.py's algorithm in numpy")
    play.add_argument("--episodes", type=int, default=3000)
    play.add_argument("--seed", type=int, default=0)
    play.add_argument("--out", type=Path, required=True)
    summary = commands.add_parser("table", help="running reward at every 500 episodes, by seed")
    summary.add_argument("numpy_csvs", nargs="+", type=Path)
    summary.add_argument("--runs", nargs="+", type=Path, required=True)
    summary.add_argument("--every", type=int, default=500)
    summary.add_argument("--episodes", type=int, default=3000)
    draw = commands.add_parser("plot", help="running reward against episodes")
    draw.add_argument("numpy_csvs", nargs="+", type=Path)
    draw.add_argument("--runs", nargs="*", type=Path, default=[])
    draw.add_argument("--out", type=Path, required=True)
    draw.add_argument("--episodes", type=int, help="draw up to this many episodes")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.episodes, args.seed, args.out)
    elif args.command == "table":
        table(args.numpy_csvs, args.runs, list(range(args.every, args.episodes + 1, args.every)))
    else:
        plot(args.numpy_csvs, args.runs, args.out, args.episodes)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
