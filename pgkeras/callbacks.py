"""The trainer's duties around the loop, as `keras.callbacks.Callback`s.

`pgkeras.train.train` calls callbacks as Keras's `fit` does, with one update as one epoch:
`on_train_begin`, then per update `on_epoch_begin(epoch)`, `on_train_batch_begin(0)`,
`on_train_batch_end(0, {"loss": ...})` and `on_epoch_end(epoch, logs)`, and `on_train_end`.
`epoch` counts updates from 0 as Keras counts epochs (epoch 0 is update 1); `logs` is the metrics
row (`pgkeras.metrics.COLUMNS`: `update`, `running_reward`, `env_steps`, `loss`, ...). A callback
that sets `self.model.stop_training = True` ends the run after that update, with a checkpoint.

The trainer's own duties below are callbacks of the same kind, run after the user's, except
`Evaluation`, which runs first so that every callback sees `eval_reward_mean`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pgkeras.checkpoints import (
    TrainingState,
    copy_file_atomically,
    save_checkpoint,
    save_model_atomically,
)
from pgkeras.config import Config
from pgkeras.evaluation import play_one_episode_each
from pgkeras.metrics import COLUMNS, MetricsLogger, MetricsRow, ProgressLine
from pgkeras.plots import plot_runs
from pgkeras.policies import make_sampler
from pgkeras.rollout import Batch, Collector

# Karpathy's running reward: running = 0.99 * running + 0.01 * episode_reward.
RUNNING_REWARD_DECAY = 0.99
CURVE_REFRESH_SECONDS = 60.0
"""Least wall time between two drawings of curve.png at periodic checkpoints (the last checkpoint
always draws it)."""


@dataclass
class RunCounters:
    """What the loop advances and a checkpoint saves besides the model and the games."""

    update: int
    env_steps: int
    episodes: int
    running_reward: float | None
    best_score: float | None
    """Score of `best.keras`: evaluation mean when evaluation is on, else the running reward."""
    wall_start: float
    """`time.perf_counter()` at the run's start, moved back by the wall time of earlier sessions."""
    rng: np.random.Generator
    """The action sampler's generator."""

    def count(self, batch: Batch) -> None:
        """Counts one update on `batch`: its steps, its finished episodes and their rewards."""
        self.update += 1
        self.env_steps += batch.num_env_steps
        self.episodes += len(batch.episode_returns)
        for episode_return in batch.episode_returns.tolist():
            self.running_reward = (
                episode_return
                if self.running_reward is None
                else RUNNING_REWARD_DECAY * self.running_reward + (1 - RUNNING_REWARD_DECAY) * episode_return
            )

    def training_state(self) -> TrainingState:
        return TrainingState(
            self.update, self.env_steps, self.episodes, self.running_reward, self.best_score,
            time.perf_counter() - self.wall_start, self.rng.bit_generator.state,
        )  # fmt: skip


class CallbackList:
    """Calls each callback's hooks in order, as Keras's `fit` does: every callback gets the model
    (`set_model`) and sees the same `logs` dict, so a key one adds is seen by those after it.

    Keras's own `keras.callbacks.CallbackList` may dispatch batch hooks on a thread pool; this
    one never does, so callbacks run between updates and a run stays reproducible.
    """

    PARAMS = {"verbose": 0, "epochs": None, "steps": 1}
    """What `fit` would tell callbacks in `set_params`: one batch (one update) per epoch."""

    def __init__(self, callbacks: list[keras.callbacks.Callback], model: keras.Model):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(dict(self.PARAMS))

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_end(logs)


def metrics_row(logs: dict[str, Any]) -> MetricsRow:
    """The metrics columns of `logs` (callbacks may have added keys of their own)."""
    return MetricsRow(**{name: logs[name] for name in COLUMNS})


class Evaluation(keras.callbacks.Callback):
    """Every `eval.every_updates` updates, plays the evaluation games and puts their mean reward into
    the logs as `eval_reward_mean`.

    Args:
        config: the run's config (`eval` section, seed, model kind).
        env: the evaluation games (`pgkeras.evaluation.make_eval_env`).
    """

    def __init__(self, config: Config, env):
        super().__init__()
        self.config = config
        self.env = env

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        update = epoch + 1
        if update % self.config.eval.every_updates:
            return
        # Its own generator, derived from the update, leaves the training stream untouched.
        rng = np.random.default_rng([self.config.seed, update, 1])
        seed = int(rng.integers(2**31))
        sampler = make_sampler(self.model, self.config.model, rng)
        rewards = play_one_episode_each(sampler, self.env, greedy=self.config.eval.greedy, seed=seed)
        logs["eval_reward_mean"] = float(rewards.mean())


class MetricsWriter(keras.callbacks.Callback):
    """Appends each update's row to `metrics.csv` and TensorBoard (`pgkeras.metrics.MetricsLogger`)."""

    def __init__(self, logger: MetricsLogger):
        super().__init__()
        self.logger = logger

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.logger.log(metrics_row(logs))


class Progress(keras.callbacks.Callback):
    """The progress line (`pgkeras.metrics.ProgressLine`), with an optional detail at its end."""

    def __init__(self, line: ProgressLine, max_steps: int | None, detail: Callable[[], str] | None = None):
        super().__init__()
        self.line = line
        self.max_steps = max_steps
        self.detail = detail

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.line.show(metrics_row(logs), self.max_steps, self.detail() if self.detail else "")


class LQRGainReport(keras.callbacks.Callback):
    """For the LQR: the learned gain theta beside the Riccati optimum, at the start, on the progress
    line (`detail`) and at the end.

    Args:
        optimal: the optimal theta (`LQRVectorEnv.optimal_theta`).
        note: prints a line of its own.
    """

    def __init__(self, optimal: np.ndarray, note: Callable[[str], None]):
        super().__init__()
        self.optimal = optimal
        self.note = note

    def detail(self) -> str:
        theta = self.model.get_layer("theta").get_weights()[0][:, 0]
        off = np.linalg.norm(theta - self.optimal) / np.linalg.norm(self.optimal)
        return f"theta {format_vector(theta)} vs optimal {format_vector(self.optimal)} ({off:.1%} off)"

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.note(f"optimal theta (minus the Riccati gain): {format_vector(self.optimal)}")

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.note(self.detail())


class Checkpointer(keras.callbacks.Callback):
    """Saves a checkpoint every `every` updates and at the end, keeps `best.keras`, and draws
    `curve.png`.

    A checkpoint holds the model with its optimizer, the counters and the sampler's random state
    (`RunCounters`), and the games (`Collector.get_state`), so that a resume continues exactly.
    `best.keras` is the model of the best evaluation when `evaluate` is set, else of the best
    running reward at a checkpoint.

    Args:
        run_dir: the run folder.
        counters: the loop's counters, read at each checkpoint.
        collector: the games.
        layout: which games they are (`pgkeras.train.games_layout`), saved with them.
        every: updates between checkpoints.
        evaluate: whether `Evaluation` runs (best.keras then follows `eval_reward_mean`).
        final_checkpoint: whether the end of this session is saved even if it made no update
            (a new run saves its untrained model; a resume that stops at once saves nothing new).
    """

    def __init__(
        self,
        run_dir: Path,
        counters: RunCounters,
        collector: Collector,
        layout: str,
        every: int,
        evaluate: bool,
        final_checkpoint: bool,
    ):
        super().__init__()
        self.run_dir = run_dir
        self.counters = counters
        self.collector = collector
        self.layout = layout
        self.every = every
        self.evaluate = evaluate
        self.first_update = counters.update
        self.final_checkpoint = final_checkpoint
        self.curve_drawn_at = -math.inf

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.evaluate and not math.isnan(logs["eval_reward_mean"]):
            self.keep_if_best(logs["eval_reward_mean"])
        if (epoch + 1) % self.every == 0:
            self.checkpoint()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if not all(np.isfinite(weight).all() for weight in self.model.get_weights()):
            return  # stopped on a non-finite update: the last checkpoint holds the last good weights
        if self.counters.update > self.first_update or self.final_checkpoint:
            self.checkpoint(final=True)

    def checkpoint(self, final: bool = False) -> None:
        games = self.collector.get_state()
        if games is not None:
            games["layout"] = np.array(self.layout)
        saved = save_checkpoint(self.run_dir, self.model, self.counters.training_state(), games)
        model_file = saved / "model.keras"
        if not self.evaluate:
            self.keep_if_best(self.counters.running_reward, model_file)
        elif not (self.run_dir / "best.keras").exists():
            copy_file_atomically(model_file, self.run_dir / "best.keras")
        # Drawing costs 0.3-0.6 s of CPU the games would otherwise use: at most once a minute.
        if final or time.perf_counter() - self.curve_drawn_at >= CURVE_REFRESH_SECONDS:
            plot_runs([self.run_dir], self.run_dir / "curve.png")
            self.curve_drawn_at = time.perf_counter()

    def keep_if_best(self, score: float | None, saved: Path | None = None) -> None:
        """Keeps the model as best.keras if `score` beats the best; `saved`: a file of the model as
        it is now, copied instead of saving again."""
        best = self.counters.best_score
        improved = score is not None and (best is None or score > best)
        # Until an episode has finished there is no score: the first checkpoint stands in as best.
        if improved or not (self.run_dir / "best.keras").exists():
            self.counters.best_score = score if improved else best
            if saved is None:
                save_model_atomically(self.model, self.run_dir / "best.keras")
            else:
                copy_file_atomically(saved, self.run_dir / "best.keras")


class StopAtRunningReward(keras.callbacks.Callback):
    """Ends the run once the running reward reaches `level` (`train.stop_at_running_reward`)."""

    def __init__(self, level: float):
        super().__init__()
        self.level = level

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs["running_reward"] >= self.level:
            self.model.stop_training = True


def format_vector(values: np.ndarray) -> str:
    """`[0.123, -4.560]`."""
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"
