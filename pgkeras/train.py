"""The training loop on one screen, and `update_policy`, which holds the cross-entropy trick.

Data flows one way: config -> env + policy -> rollout -> returns -> update_policy (model.fit)
-> metrics + checkpoint. This module is the only place that ties them together.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import yaml

from pgkeras.checkpoints import (
    TrainingState,
    copy_file_atomically,
    list_checkpoints,
    load_latest_checkpoint,
    save_checkpoint,
    save_model_atomically,
)
from pgkeras.config import Config, ConfigError, check_resume_changes, config_from_dict, save_config
from pgkeras.distributed import RayRolloutCollector, check_ray_address
from pgkeras.envs import LQRVectorEnv, is_pong, make_env
from pgkeras.metrics import MetricsLogger, MetricsRow, ProgressLine
from pgkeras.play import evaluate
from pgkeras.plots import plot_runs
from pgkeras.policies import build_policy, gaussian_sample_weights, make_sampler
from pgkeras.processes import ProcessRolloutCollector
from pgkeras.returns import compute_advantages
from pgkeras.rollout import Batch, RolloutCollector, derive_seed

# Karpathy's running reward: running = 0.99 * running + 0.01 * episode_reward.
RUNNING_REWARD_DECAY = 0.99
CURVE_REFRESH_SECONDS = 60.0
"""Least wall time between two drawings of curve.png at periodic checkpoints (the last checkpoint
always draws it)."""


class TrainResult(NamedTuple):
    """Where a run ended."""

    run_dir: Path
    updates: int
    env_steps: int
    episodes: int
    running_reward: float | None
    interrupted: bool


def update_policy(
    model: keras.Model,
    observations: np.ndarray,
    actions: np.ndarray,
    advantages: np.ndarray,
    minibatch_size: int | None = None,
    sigma: float | None = None,
) -> float:
    """One policy-gradient update, written as ordinary supervised training. This is the trick.

    The sampled actions become one-hot "labels" and the advantages become per-sample weights:
    `fit` minimises (1/T) * sum_i -A_i * log pi(a_i | s_i), whose gradient is minus the REINFORCE
    estimate (1/T) * sum_i A_i * grad log pi(a_i | s_i). So gradient descent on this loss is
    gradient ascent on expected reward: actions that did better than average become likelier.

    For a Gaussian policy (pass its `sigma`), the sampled actions are the regression targets and
    the weights A / (2 sigma^2) make the squared error -A * log pi up to a constant (see
    `gaussian_sample_weights`): the same trick with a different likelihood.

    Args:
        model: policy compiled with `loss="categorical_crossentropy"` (`build_policy` does this), or
            with mean squared error for a Gaussian policy.
        observations: `(T, D)` observations the actions were chosen from (any numeric dtype).
        actions: int `(T,)` sampled action indices, or float `(T,)` continuous actions.
        advantages: float32 `(T,)`, one weight per sample.
        minibatch_size: `batch_size` for `fit`; None: the whole batch in one optimizer step.
        sigma: the Gaussian policy's standard deviation; None for a softmax policy.

    Returns:
        The loss `fit` reports. Not a measure of progress (see `pgkeras.metrics`).
    """
    if sigma is None and model.output_shape[-1] == 1:
        # A sigmoid policy outputs P(action 0): its label is 1 for action 0 (Karpathy's "fake label").
        targets = (actions == 0).astype(np.float32).reshape(-1, 1)
        weights = advantages.astype(np.float32, copy=False)
    elif sigma is None:
        num_actions = model.output_shape[-1]
        targets = keras.utils.to_categorical(actions, num_classes=num_actions).astype(np.float32)
        weights = advantages.astype(np.float32, copy=False)
    else:
        targets = actions.astype(np.float32).reshape(-1, 1)
        weights = gaussian_sample_weights(advantages, sigma)
    one_step = minibatch_size is None or minibatch_size >= len(targets)
    if keras.backend.backend() == "jax":
        summed = getattr(model.loss, "reduction", None) == "sum"
        observations, targets, weights = pad_to_few_sizes(
            observations, targets, weights, minibatch_size, rescale=not summed
        )
    # Observations go in their compact dtype (int8 for Pong): Keras casts them to the input's float32
    # inside the compiled step, which is cheaper than a 4x larger float32 copy here.
    if one_step:
        # One optimizer step on the whole batch: what fit(..., batch_size=len(actions), epochs=1)
        # does, without building a dataset pipeline, which would cost as much as the step itself.
        # tests/test_trick.py checks that both give the same weights.
        return float(model.train_on_batch(observations, targets, sample_weight=weights))
    history = model.fit(
        observations,
        targets,
        sample_weight=weights,
        batch_size=minibatch_size,  # Keras would silently use 32
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    return float(history.history["loss"][-1])


def pad_to_few_sizes(
    observations: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    minibatch_size: int | None = None,
    rescale: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pads a batch with zero-weight rows so that its optimizer steps come in a few sizes only.

    JAX compiles the training step anew for every batch size it meets (about a second each on a
    CPU), and a batch of finished points has a new size at nearly every update. Padding the whole
    batch to the next multiple of 1/8 of the power of two below its size (5,000 samples become
    5,120) keeps the sizes to at most 8 per doubling. Padding the last minibatch to a full one
    keeps them to one. The padded rows have zero observations, the first one-hot target (or 0)
    and weight 0, so they add nothing to the loss; Keras averages the weighted losses over the
    rows of a step, padding included, so the real weights of each step are scaled by
    (rows of the step) / (real rows in it). Each step's loss, and so its gradient, is then the
    one of the unpadded batch. TensorFlow traces its step for any batch size after the second
    one, so `update_policy` pads on JAX only.

    Args:
        observations: `(T, ...)` observations.
        targets: `(T, K)` one-hot actions or `(T, 1)` continuous actions.
        weights: float32 `(T,)` per-sample weights.
        minibatch_size: the `fit` batch size, or None for one step on the whole batch.
        rescale: scale the real weights as described; False for a loss reduced by "sum", whose
            zero-weight rows change nothing anyway.

    Returns:
        `(observations, targets, weights)` with the same dtypes, padded along the first axis.
    """
    size = len(targets)
    if minibatch_size is None or minibatch_size >= size:
        granule = max(1, 2 ** (size.bit_length() - 1) // 8)
        last_step = slice(0, size)
    else:
        granule = minibatch_size
        last_step = slice(size - size % minibatch_size, size)
    padded_size = -(-size // granule) * granule
    if padded_size == size:
        return observations, targets, weights

    def padded(array: np.ndarray) -> np.ndarray:
        out = np.zeros((padded_size, *array.shape[1:]), array.dtype)
        out[:size] = array
        return out

    observations, targets, weights = padded(observations), padded(targets), padded(weights)
    if rescale:
        weights[last_step] *= (padded_size - last_step.start) / (size - last_step.start)
    if targets.shape[-1] > 1:
        targets[size:, 0] = 1  # valid one-hot rows; their weight is 0
    return observations, targets, weights


def train(
    config: Config,
    run_dir: Path,
    resume: bool = False,
    progress: ProgressLine | None = None,
    on_update: Callable[[MetricsRow, keras.Model], bool | None] | None = None,
) -> TrainResult:
    """Trains a policy with the cross-entropy trick until `train.max_steps` or a stop request.

    Writes into `run_dir`: `config.yaml`, `metrics.csv`, `tensorboard/`, `model.keras`,
    `best.keras`, `curve.png` and `checkpoints/`. Ctrl-C or SIGTERM stop the run at the next update boundary
    with a checkpoint; a second Ctrl-C stops at once (resume then loses the updates since the
    last checkpoint).

    Args:
        config: validated settings.
        run_dir: the run folder; created if missing.
        resume: continue from the newest checkpoint in `run_dir`.
        progress: where the progress line goes; None for stdout.
        on_update: called after each update with its metrics row and the model (to record weights,
            say); it must not change the model. If it returns True, training stops there, with a
            checkpoint, as if `train.max_steps` had been reached.

    Returns:
        A `TrainResult` with the final counters.
    """
    run_dir = Path(run_dir)
    if resume:
        saved_path = run_dir / "config.yaml"
        saved = config_from_dict(yaml.safe_load(saved_path.read_text()) or {}, str(saved_path))
        check_resume_changes(saved, config, str(saved_path))
    # Everything that can fail on the config's account fails here, before anything is written.
    if config.rollout.backend == "ray":
        check_ray_address(config.ray.address)
    progress = progress or ProgressLine(every=config.train.log_every)
    train_config = config.train
    workers_play = config.rollout.backend != "local"
    # When workers play, this process needs the game only for its shapes (and the LQR's gain).
    env = _setup(make_env, config, num_envs=1 if workers_play else None)
    games = None
    checkpointed = resume and bool(list_checkpoints(run_dir))
    if resume and not checkpointed:
        # Stopped (killed) before its first checkpoint: nothing to continue, so start it over.
        progress.note(f"{run_dir} has no checkpoint yet: starting the run from update 0")
    if checkpointed:
        model, state, games = load_latest_checkpoint(run_dir)
        model.optimizer.learning_rate.assign(train_config.learning_rate)  # it may have been lowered
        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng_state
    else:
        keras.utils.set_random_seed(config.seed)
        model = _setup(build_policy, config.model, train_config, env.observation_shape, env.num_actions)
        rng = np.random.default_rng(config.seed)
        state = TrainingState(0, 0, 0, None, None, 0.0, rng.bit_generator.state)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")  # on resume with any allowed change, e.g. max_steps
    progress.note(f"run folder: {run_dir}")
    # A resume continues the checkpoint's games (below); these seeds start games only where the
    # checkpoint has none that fit.
    games_seed = derive_seed(config.seed, state.update)
    sampler = make_sampler(model, config.model, rng)
    if workers_play:
        if config.rollout.backend == "ray":
            collector = RayRolloutCollector(config, games_seed, state.update, note=progress.note)
        else:
            collector = ProcessRolloutCollector(config, games_seed, state.update)

        def collect_batch() -> Batch:
            return collector.collect_batch(sampler.forward.parameters)

    else:
        collector = RolloutCollector(
            env,
            gamma=train_config.gamma,
            reset_on_reward=train_config.reset_on_reward,
            episodes_per_update=train_config.episodes_per_update,
            samples_per_update=train_config.samples_per_update,
            seed=games_seed,
        )

        def collect_batch() -> Batch:
            return collector.collect_batch(sampler.sample)

    layout = games_layout(config)
    if games is not None and str(games.pop("layout", "")) == layout:
        collector.set_state(games)
    elif resume and state.update > 0:
        progress.note(
            f"the games start anew: the checkpoint of update {state.update} holds "
            + ("no games" if games is None else "games of another layout")
        )
    gain_report = _lqr_gain_report(env, model, train_config.gamma)
    if gain_report is not None:
        optimal = _format_vector(env.optimal_theta(train_config.gamma))
        progress.note(f"optimal theta (minus the Riccati gain): {optimal}")
    sigma = config.model.gaussian_sigma
    logger = MetricsLogger(
        run_dir,
        keep_through_update=state.update if resume else None,
        keep_through_step=state.env_steps if resume else None,
    )

    update, env_steps, episodes = state.update, state.env_steps, state.episodes
    running_reward, best = state.running_reward, state.best_score
    evaluation = config.eval
    eval_env = _make_eval_env(config) if evaluation.every_updates else None
    wall_start = time.perf_counter() - state.wall_time
    interrupted = False
    curve_drawn_at = -math.inf

    def checkpoint(final: bool = False) -> None:
        nonlocal best, curve_drawn_at
        state = TrainingState(
            update, env_steps, episodes, running_reward, best,
            time.perf_counter() - wall_start, rng.bit_generator.state,
        )  # fmt: skip
        games = collector.get_state()
        if games is not None:
            games["layout"] = np.array(layout)
        saved = save_checkpoint(run_dir, model, state, games) / "model.keras"
        if eval_env is None:
            keep_if_best(running_reward, saved)
        elif not (run_dir / "best.keras").exists():
            copy_file_atomically(saved, run_dir / "best.keras")
        # Drawing costs 0.3-0.6 s of CPU the games would otherwise use: at most once a minute.
        if final or time.perf_counter() - curve_drawn_at >= CURVE_REFRESH_SECONDS:
            plot_runs([run_dir], run_dir / "curve.png")
            curve_drawn_at = time.perf_counter()

    def keep_if_best(score: float | None, saved: Path | None = None) -> None:
        """Keeps the model as best.keras if `score` beats the best; `saved`: a file of the model
        as it is now, copied instead of saving again."""
        nonlocal best
        improved = score is not None and (best is None or score > best)
        # Until an episode has finished there is no score: the first checkpoint stands in as best.
        if improved or not (run_dir / "best.keras").exists():
            best = score if improved else best
            if saved is None:
                save_model_atomically(model, run_dir / "best.keras")
            else:
                copy_file_atomically(saved, run_dir / "best.keras")

    try:
        with _stop_requests() as stop_requested:
            while train_config.max_steps is None or env_steps < train_config.max_steps:
                if stop_requested():
                    interrupted = True
                    break
                started = time.perf_counter()
                batch = collect_batch()
                advantages = compute_advantages(batch.returns, train_config.advantage, batch.segment_ids)
                loss = update_policy(
                    model, batch.observations, batch.actions, advantages, train_config.minibatch_size, sigma
                )
                sampler.refresh()
                if not math.isfinite(loss) or not all(np.isfinite(w).all() for w in model.get_weights()):
                    # model.keras and the checkpoints still hold the last good weights.
                    lower = train_config.learning_rate / 10
                    raise FloatingPointError(
                        f"update {update + 1}: the loss or the weights are no longer finite (loss {loss}); "
                        f"resume from the last checkpoint with a lower learning rate: "
                        f"--resume {run_dir} --set train.learning_rate={lower:g}"
                    )
                update += 1
                env_steps += batch.num_env_steps
                episodes += len(batch.episode_returns)
                for episode_return in batch.episode_returns.tolist():
                    running_reward = (
                        episode_return
                        if running_reward is None
                        else RUNNING_REWARD_DECAY * running_reward
                        + (1 - RUNNING_REWARD_DECAY) * episode_return
                    )
                elapsed = time.perf_counter() - started
                eval_reward_mean = math.nan
                if eval_env is not None and update % evaluation.every_updates == 0:
                    # Its own generator, derived from the update, leaves the training stream untouched.
                    eval_rng = np.random.default_rng([config.seed, update, 1])
                    eval_seed = int(eval_rng.integers(2**31))
                    eval_reward_mean = float(
                        evaluate(
                            model,
                            eval_env,
                            eval_rng,
                            greedy=evaluation.greedy,
                            seed=eval_seed,
                            sampler=make_sampler(model, config.model, eval_rng),
                        ).mean()  # fmt: skip
                    )
                    keep_if_best(eval_reward_mean)
                row = MetricsRow(
                    update=update,
                    env_steps=env_steps,
                    episodes=episodes,
                    episode_reward_mean=float(batch.episode_returns.mean())
                    if len(batch.episode_returns)
                    else math.nan,
                    running_reward=math.nan if running_reward is None else running_reward,
                    loss=loss,
                    batch_size=len(batch.actions),
                    steps_per_second=batch.num_env_steps / elapsed,
                    wall_time=time.perf_counter() - wall_start,
                    eval_reward_mean=eval_reward_mean,
                )
                logger.log(row)
                progress.show(row, train_config.max_steps, gain_report() if gain_report else "")
                if on_update is not None and on_update(row, model):
                    break
                if update % train_config.checkpoint_every == 0:
                    checkpoint()
            if update > state.update or not resume:
                checkpoint(final=True)
        if gain_report is not None:
            progress.note(gain_report())
    finally:  # also on errors and a second Ctrl-C, after which the last checkpoint stands
        progress.finish()
        logger.close()
        if workers_play:
            collector.close()
        env.close()
        if eval_env is not None:
            eval_env.close()
    return TrainResult(run_dir, update, env_steps, episodes, running_reward, interrupted)


def _setup(build: Callable, *args, **kwargs):
    """Calls `build` (the game or the policy), turning its ValueError (an unknown game, a model
    that cannot take the game's observations) into a one-line `ConfigError`."""
    try:
        return build(*args, **kwargs)
    except ValueError as error:
        raise ConfigError(" ".join(str(error).split())) from None


def _make_eval_env(config: Config):
    """The evaluation games: `eval.episodes` of them, with `eval.sticky_action_prob`. Greedy play of
    Pong without sticky actions repeats one identical game, so then one game is played."""
    evaluation = config.eval
    sticky = (
        config.env.sticky_action_prob
        if evaluation.sticky_action_prob is None
        else evaluation.sticky_action_prob
    )
    eval_config = dataclasses.replace(config, env=dataclasses.replace(config.env, sticky_action_prob=sticky))
    deterministic = evaluation.greedy and is_pong(config.env.id) and sticky == 0
    return make_env(eval_config, num_envs=1 if deterministic else evaluation.episodes)


def games_layout(config: Config) -> str:
    """Which games a checkpoint's saved games belong to; a resume continues them only into the
    same layout (another backend or number of games starts new games)."""
    env, rollout = config.env, config.rollout
    if rollout.backend == "local":
        return f"local: {env.num_envs} games of {env.id} in {env.num_groups} groups"
    return f"{rollout.backend}: {rollout.num_workers} workers x {env.num_envs} games of {env.id}"


def _lqr_gain_report(env, model: keras.Model, gamma: float) -> Callable[[], str] | None:
    """For the LQR: a function describing the learned theta beside the Riccati optimum; else None."""
    if not isinstance(env, LQRVectorEnv):
        return None
    optimal = env.optimal_theta(gamma)

    def report() -> str:
        theta = model.get_layer("theta").get_weights()[0][:, 0]
        off = np.linalg.norm(theta - optimal) / np.linalg.norm(optimal)
        return f"theta {_format_vector(theta)} vs optimal {_format_vector(optimal)} ({off:.1%} off)"

    return report


def _format_vector(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


@contextmanager
def _stop_requests() -> Iterator[Callable[[], bool]]:
    """While active, the first Ctrl-C or SIGTERM only sets a flag the loop honours at the next update;
    a second Ctrl-C raises KeyboardInterrupt as usual."""
    requested = False

    def handler(signum, frame):
        nonlocal requested
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested = True

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals stay as they are
        previous = {}
    try:
        yield lambda: requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
