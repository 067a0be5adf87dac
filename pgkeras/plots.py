"""Learning curves from `metrics.csv`, several runs overlaid so that configs can be compared."""

from __future__ import annotations

import math
from pathlib import Path

# A bare Figure draws to files without pyplot, so it never changes the user's matplotlib backend.
from matplotlib.figure import Figure

from pgkeras.metrics import read_metrics


def plot_runs(run_dirs: list[Path], out: Path, labels: list[str] | None = None) -> Path:
    """Draws episode and running reward against agent steps and wall time, plus loss and speed.

    Args:
        run_dirs: run folders, each with a `metrics.csv`.
        out: PNG path to write.
        labels: legend names (default: folder names).

    Returns:
        `out`.

    Raises:
        FileNotFoundError: a run folder has no metrics.csv.
    """
    labels = labels or [Path(d).name for d in run_dirs]
    figure = Figure(figsize=(12, 8))
    axes = figure.subplots(2, 2)
    (by_steps, by_time), (loss_axis, speed_axis) = axes
    for index, (run_dir, label) in enumerate(zip(run_dirs, labels, strict=True)):
        path = Path(run_dir) / "metrics.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{run_dir}: no metrics.csv; is this a run folder?")
        rows = read_metrics(path)
        colour = f"C{index}"
        steps = [r["env_steps"] for r in rows]
        minutes = [r["wall_time"] / 60 for r in rows]
        episode = [(s, r["episode_reward_mean"]) for s, r in zip(steps, rows, strict=True)
                   if not math.isnan(r["episode_reward_mean"])]  # fmt: skip
        if episode:
            by_steps.plot(*zip(*episode, strict=True), ".", color=colour, alpha=0.25, markersize=3)
        by_steps.plot(steps, [r["running_reward"] for r in rows], color=colour, label=label)
        evaluated = [(s, r.get("eval_reward_mean", math.nan)) for s, r in zip(steps, rows, strict=True)]
        evaluated = [(s, v) for s, v in evaluated if not math.isnan(v)]
        if evaluated:
            by_steps.plot(*zip(*evaluated, strict=True), "x", color=colour, label=f"{label} (evaluation)")
        by_time.plot(minutes, [r["running_reward"] for r in rows], color=colour, label=label)
        loss_axis.plot(steps, [r["loss"] for r in rows], color=colour, label=label, linewidth=0.8)
        speed_axis.plot(
            steps, [r["steps_per_second"] for r in rows], color=colour, label=label, linewidth=0.8
        )
    by_steps.set(
        xlabel="agent steps", ylabel="episode reward", title="Running reward (line), episode means (dots)"
    )
    by_time.set(xlabel="wall time (minutes)", ylabel="running reward", title="Running reward against time")
    loss_axis.set(xlabel="agent steps", ylabel="loss", title="fit loss (not a measure of progress)")
    speed_axis.set(xlabel="agent steps", ylabel="agent steps / s", title="Training speed")
    for axis in axes.flat:
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.tight_layout()
    out = Path(out)
    temporary = out.with_name(f".tmp-{out.name}")
    figure.savefig(temporary, dpi=90, format="png")
    temporary.replace(out)
    return out
