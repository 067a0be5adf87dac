"""Running reward against agent steps and minutes for the runs of several games, one row of panels
per game, so that recipes for different games can be seen side by side:

    python benchmarks/games.py --game Pong results/checkpoint-games/pong-seed* \\
        --game Breakout results/breakout/breakout-seed* --out ../docs/images/games.png

With `--overlay`, the groups (recipes of one game, say) share one panel of running reward against
agent steps, a colour per group:

    python benchmarks/games.py --overlay --game REINFORCE results/checkpoint-games/pong-seed* \\
        --game "GAE 0.95" results/issue22/gae095/pong-seed* --out ../docs/images/pong_recipes.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matplotlib.figure import Figure

from pgkeras.metrics import read_metrics


def plot_games(games: list[tuple[str, list[Path]]], out: Path) -> Path:
    """Draws each game's runs: running reward against agent steps (left) and minutes (right)."""
    figure = Figure(figsize=(11, 3.6 * len(games)))
    axes = figure.subplots(len(games), 2, squeeze=False)
    for (name, runs), (by_steps, by_minutes) in zip(games, axes, strict=True):
        for run in runs:
            rows = [row for row in read_metrics(run / "metrics.csv") if row["episodes"] > 0]
            running = [row["running_reward"] for row in rows]
            by_steps.plot([row["env_steps"] / 1e6 for row in rows], running, label=run.name)
            by_minutes.plot([row["wall_time"] / 60 for row in rows], running, label=run.name)
        by_steps.set(title=name, xlabel="agent steps (millions)", ylabel="running reward")
        by_minutes.set(title=name, xlabel="minutes of training")
        for axis in (by_steps, by_minutes):
            axis.grid(alpha=0.3)
        by_steps.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=90)
    return out


def plot_overlaid(groups: list[tuple[str, list[Path]]], out: Path) -> Path:
    """Draws running reward against agent steps for every run on one panel, a colour per group
    (after ten groups the colours come again, dashed, then dotted, then dash-dotted). More than 20
    groups get a wider figure with the legend beside the panel."""
    many = len(groups) > 20  # more than 20 lines of legend overflow a legend inside the panel
    figure = Figure(figsize=(14, 0.16 * len(groups) + 1.0) if many else (8, 4.5))
    axis = figure.subplots()
    for index, (name, runs) in enumerate(groups):
        for number, run in enumerate(runs):
            label = f"{name} ({len(runs)} seeds)" if number == 0 else None
            rows = [row for row in read_metrics(run / "metrics.csv") if row["episodes"] > 0]
            axis.plot(
                [row["env_steps"] / 1e6 for row in rows], [row["running_reward"] for row in rows],
                color=f"C{index % 10}", linestyle=("-", "--", ":", "-.")[index // 10 % 4], linewidth=1.0,
                label=label,
            )  # fmt: skip
    axis.set(xlabel="agent steps (millions)", ylabel="running reward")
    axis.grid(alpha=0.3)
    if many:
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=90, bbox_inches="tight" if many else None)  # the legend beside the panel
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--game", nargs="+", action="append", required=True, metavar=("NAME", "RUN"),
        help="a game's name, then its run folders",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--overlay", action="store_true", help="all groups on one panel, against steps")
    args = parser.parse_args(argv)
    games = [(name, [Path(run) for run in runs]) for name, *runs in args.game]
    print((plot_overlaid if args.overlay else plot_games)(games, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
