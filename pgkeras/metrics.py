"""Per-update metrics: rows of `metrics.csv`, TensorBoard scalars, and the terminal progress line.

Columns of `metrics.csv` (one row per update):

- `update`: updates done so far (1 for the first `model.fit`).
- `env_steps`: agent steps so far, summed over all games (one step = `frame_skip` emulator frames).
- `episodes`: episodes finished so far.
- `episode_reward_mean`: mean total reward of the episodes finished during this update's collection
  (empty when none finished). In Pong, agent points minus opponent points, from -21 to +21.
- `running_reward`: exponential mean of episode rewards, 0.99 old + 0.01 new (Karpathy's measure).
- `loss`: the value `model.fit` reports, mean of advantage-weighted cross-entropy. It is NOT a
  measure of progress: the advantages are centred and re-scaled every batch, so it hovers near
  zero whether the policy improves or not. Watch the rewards instead.
- `batch_size`: samples in this update's `model.fit`.
- `steps_per_second`: agent steps per second over this update's collection and fit.
- `wall_time`: seconds since the run started (paused time between a stop and a resume excluded).
- `eval_reward_mean`: mean episode reward of the evaluation games, on updates where the `eval`
  section ran one (empty otherwise).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple, TextIO

COLUMNS = (
    "update",
    "env_steps",
    "episodes",
    "episode_reward_mean",
    "running_reward",
    "loss",
    "batch_size",
    "steps_per_second",
    "wall_time",
    "eval_reward_mean",
)


class MetricsRow(NamedTuple):
    """One update's metrics; see the module docstring for each field."""

    update: int
    env_steps: int
    episodes: int
    episode_reward_mean: float
    running_reward: float
    loss: float
    batch_size: int
    steps_per_second: float
    wall_time: float
    eval_reward_mean: float = math.nan


class MetricsLogger:
    """Appends rows to `RUN_DIR/metrics.csv` and TensorBoard event files in `RUN_DIR/tensorboard`.

    Args:
        run_dir: the run folder.
        keep_through_update: on resume, rows after this update are dropped first, so that the
            resumed run continues the file with no duplicated rows.
        keep_through_step: on resume, the agent steps of that update: TensorBoard is told to drop
            the points a killed run logged after it, so its curves show no duplicates either.
    """

    def __init__(
        self, run_dir: Path, keep_through_update: int | None = None, keep_through_step: int | None = None
    ):
        self.path = Path(run_dir) / "metrics.csv"
        if keep_through_update is not None and self.path.exists():
            truncate_metrics(self.path, keep_through_update)
        new_file = not self.path.exists()
        self._file = self.path.open("a", newline="")
        self._writer = csv.writer(self._file)
        if new_file:
            self._writer.writerow(COLUMNS)
            self._file.flush()
        self._tensorboard = _TensorBoardWriter(Path(run_dir) / "tensorboard")
        if keep_through_step is not None:
            self._tensorboard.purge_after(keep_through_step)

    def log(self, row: MetricsRow) -> None:
        """Writes one row to the CSV file and TensorBoard, flushed to disk."""
        self._writer.writerow([_format(value) for value in row])
        self._file.flush()
        self._tensorboard.scalars(row._asdict(), step=row.env_steps)

    def close(self) -> None:
        self._file.close()
        self._tensorboard.close()


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Reads `metrics.csv` into a list of dicts of floats (empty cells become NaN)."""
    with Path(path).open(newline="") as file:
        return [
            {key: float(value) if value != "" else math.nan for key, value in row.items()}
            for row in csv.DictReader(file)
        ]


def truncate_metrics(path: Path, keep_through_update: int) -> None:
    """Drops the rows of `metrics.csv` after `keep_through_update`, rewriting the file atomically."""
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    header, body = rows[0], rows[1:]
    kept = [row for row in body if row and int(row[0]) <= keep_through_update]
    temporary = path.with_suffix(".csv.tmp")
    with temporary.open("w", newline="") as file:
        csv.writer(file).writerows([header, *kept])
    temporary.replace(path)


def _format(value: float | int) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


class _TensorBoardWriter:
    """Scalar summaries through TensorBoard's own event writer, so any Keras backend can log."""

    def __init__(self, log_dir: Path):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(
            value=[
                Summary.Value(tag=name, simple_value=float(value))
                for name, value in values.items()
                if name not in ("update", "env_steps") and not math.isnan(float(value))
            ]
        )
        self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))
        self._writer.flush()

    def purge_after(self, step: int) -> None:
        """Makes TensorBoard drop the points of earlier event files from step `step + 1` on.

        TensorBoard treats a SessionLog START at step s as a restart and discards the events with
        step >= s that came before it (its `purge_orphaned_data`, on by default), as PyTorch's
        `SummaryWriter(purge_step=...)` does.
        """
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        self._writer.add_event(
            Event(wall_time=time.time(), step=step + 1, session_log=SessionLog(status=SessionLog.START))
        )
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class ProgressLine:
    """The live progress line: rewritten in place on a terminal, printed every `every` updates otherwise.

    Args:
        stream: where to print (stdout by default).
        every: updates between lines when the stream is not a terminal.
    """

    def __init__(self, stream: TextIO | None = None, every: int = 10):
        self.stream = stream or sys.stdout
        self.every = every
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()

    def show(self, row: MetricsRow, max_steps: int | None = None, detail: str = "") -> None:
        """Prints the row's steps, episodes, rewards and speed, then `detail` if any."""
        steps = f"{row.env_steps:,}" + (f"/{max_steps:,}" if max_steps else "")
        text = (
            f"update {row.update:5d} | steps {steps} | episodes {row.episodes:,} | "
            f"reward {row.episode_reward_mean:6.2f} | running {row.running_reward:6.2f} | "
            f"{row.steps_per_second:,.0f} steps/s | {row.wall_time:,.0f}s"
        ) + (f" | {detail}" if detail else "")
        if self.interactive:
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()
        elif row.update % self.every == 0 or row.update == 1:
            self.stream.write(text + "\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        """Prints a line of its own below the progress line."""
        self.finish()
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """Ends the in-place line so that later output starts on a new line."""
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
