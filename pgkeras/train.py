"""The training loop on one screen, and `update_policy`, which holds the cross-entropy trick.

Data flows one way: config -> env + policy -> rollout -> returns -> update_policy (model.fit)
-> metrics + checkpoint. This module is the only place that ties them together.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import keras
import numpy as np
import yaml

from pgkeras.callbacks import (
    CallbackList,
    Checkpointer,
    Evaluation,
    LQRGainReport,
    MetricsWriter,
    Progress,
    RunCounters,
    StopAtRunningReward,
)
from pgkeras.checkpoints import TrainingState, list_checkpoints, load_latest_checkpoint
from pgkeras.config import (
    Config,
    ConfigError,
    TrainConfig,
    check_resume_changes,
    config_from_dict,
    load_config,
    save_config,
)
from pgkeras.distributed import RayRolloutCollector, check_ray_address
from pgkeras.envs import LQRVectorEnv, make_env
from pgkeras.evaluation import make_eval_env
from pgkeras.inference import action_probabilities
from pgkeras.metrics import MetricsLogger, MetricsRow, ProgressLine
from pgkeras.policies import (
    ActionSampler,
    build_policy,
    gaussian_sample_weights,
    has_value_head,
    make_sampler,
    policy_output_shape,
    set_entropy_weight,
)
from pgkeras.processes import ProcessRolloutCollector
from pgkeras.returns import clipped_sample_weights, compute_advantages, discounted_returns, gae_advantages
from pgkeras.rollout import Batch, Collector, RolloutCollector, derive_seed


class TrainResult(NamedTuple):
    """Where a run ended."""

    run_dir: Path
    updates: int
    env_steps: int
    episodes: int
    running_reward: float | None
    interrupted: bool
    """Ctrl-C or SIGTERM ended it (with a checkpoint)."""
    model: keras.Model | None = None
    """The policy as the run left it."""


def update_policy(
    model: keras.Model,
    observations: np.ndarray,
    actions: np.ndarray,
    advantages: np.ndarray,
    minibatch_size: int | None = None,
    sigma: float | None = None,
    value_targets: np.ndarray | None = None,
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
        value_targets: float `(T,)` discounted returns, the regression targets of a model with a
            value head (`model.value_head`), trained in the same step with weight 1 per sample.

    Returns:
        The loss `fit` reports (with a value head: the policy's loss plus the weighted value loss).
        Not a measure of progress (see `pgkeras.metrics`).

    Example:
        >>> from pgkeras.config import ModelConfig, TrainConfig
        >>> model = pgkeras.build_policy(ModelConfig(hidden_units=[8]), TrainConfig(), (4,), 2)
        >>> loss = update_policy(model, np.ones((3, 4), np.float32), np.array([0, 1, 0]),
        ...                      np.array([1.0, -1.0, 0.5], np.float32))  # the likelier, the better
    """
    with_value = has_value_head(model)
    if with_value and value_targets is None:
        raise ValueError("a model with a value head needs value_targets (the discounted returns)")
    if sigma is None and policy_output_shape(model)[-1] == 1:
        # A sigmoid policy outputs P(action 0): its label is 1 for action 0 (Karpathy's "fake label").
        targets = (actions == 0).astype(np.float32).reshape(-1, 1)
        weights = advantages.astype(np.float32, copy=False)
    elif sigma is None:
        num_actions = policy_output_shape(model)[-1]
        targets = keras.utils.to_categorical(actions, num_classes=num_actions).astype(np.float32)
        weights = advantages.astype(np.float32, copy=False)
    else:
        targets = actions.astype(np.float32).reshape(-1, 1)
        weights = gaussian_sample_weights(advantages, sigma)
    one_step = minibatch_size is None or minibatch_size >= len(targets)
    if with_value:
        values = np.asarray(value_targets, np.float32).reshape(-1, 1)
        value_weights = np.ones(len(values), np.float32)
    if keras.backend.backend() == "jax":
        first_loss = model.loss[0] if isinstance(model.loss, list | tuple) else model.loss
        summed = getattr(first_loss, "reduction", None) == "sum"
        padded_observations, targets, weights = pad_to_few_sizes(
            observations, targets, weights, minibatch_size, rescale=not summed
        )
        if with_value:  # the same padding, rows and rescaling for the value output
            _, values, value_weights = pad_to_few_sizes(
                observations, values, value_weights, minibatch_size, rescale=not summed
            )
        observations = padded_observations
    if with_value:
        targets, weights = [targets, values], [weights, value_weights]
    # Observations go in their compact dtype (int8 for Pong): Keras casts them to the input's float32
    # inside the compiled step, which is cheaper than a 4x larger float32 copy here.
    if one_step:
        # One optimizer step on the whole batch: what fit(..., batch_size=len(actions), epochs=1)
        # does, without building a dataset pipeline, which would cost as much as the step itself.
        # tests/test_trick.py checks that both give the same weights.
        loss = model.train_on_batch(observations, targets, sample_weight=weights)
        return float(loss[0] if isinstance(loss, list) else loss)  # with a value head: [total, each]
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
    config: Config | str | Path,
    run_dir: str | Path | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    env: Callable[[], gym.Env] | gym.vector.VectorEnv | None = None,
    resume: bool = False,
    progress: ProgressLine | None = None,
) -> TrainResult:
    """Trains a policy with the cross-entropy trick until `train.max_steps`, a stop request or a
    callback's `model.stop_training`.

    Writes into `run_dir`: `config.yaml`, `metrics.csv`, `tensorboard/`, `model.keras`,
    `best.keras`, `curve.png` and `checkpoints/`. Ctrl-C or SIGTERM stop the run at the next update
    boundary with a checkpoint; a second Ctrl-C stops at once (resume then loses the updates since
    the last checkpoint).

    Args:
        config: validated settings (`load_config`), or a recipe name or YAML path to load.
        run_dir: the run folder; created if missing. None: `runs/<game>-<time>`.
        callbacks: `keras.callbacks.Callback`s; each update is an epoch to them (see
            `pgkeras.callbacks`), and `model.stop_training = True` ends the run with a checkpoint.
        env: your own game instead of `env.id`: a callable that returns a new `gymnasium.Env` (the
            trainer makes `env.num_envs` copies), or a ready `gymnasium.vector.VectorEnv` with
            `autoreset_mode=SAME_STEP`; discrete or one continuous action. Needs
            `rollout.backend: local`; a resume needs it again.
        resume: continue from the newest checkpoint in `run_dir`.
        progress: where the progress line goes; None for stdout.

    Returns:
        A `TrainResult` with the final counters and the model.

    Raises:
        ConfigError: a setting that cannot work (one line); nothing is written.
        FloatingPointError: the loss or the weights stopped being finite, and no callback asked to
            stop; the checkpoints hold the last good weights.

    Example:
        >>> result = pgkeras.train("cartpole", "runs/cartpole",
        ...                        callbacks=[keras.callbacks.CSVLogger("log.csv")])  # doctest: +SKIP
    """
    config = config if isinstance(config, Config) else load_config(config)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    if resume:
        saved_path = run_dir / "config.yaml"
        saved = config_from_dict(yaml.safe_load(saved_path.read_text()) or {}, str(saved_path))
        check_resume_changes(saved, config, str(saved_path))
    elif (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir}: already holds a run; resume it or choose another run folder")
    # Everything that can fail on the config's account fails here, before anything is written.
    if env is not None and config.rollout.backend != "local":
        raise ConfigError(
            "rollout.backend: your own env plays in this process, expected local, "
            f"got {config.rollout.backend}"
        )
    if isinstance(env, gym.vector.VectorEnv) and config.eval.every_updates:
        raise ConfigError(
            "eval.every_updates: evaluation needs games of its own, which a ready VectorEnv cannot "
            "give; pass env as a callable that makes one game, or set eval.every_updates: 0"
        )
    if config.rollout.backend == "ray":
        check_ray_address(config.ray.address)
    progress = progress or ProgressLine(every=config.train.log_every)
    workers_play = config.rollout.backend != "local"
    # When workers play, this process needs the game only for its shapes (and the LQR's gain).
    game = _setup(make_env, config, num_envs=1 if workers_play else None, custom=env)
    try:
        model, counters, games, checkpointed = _start_or_resume(config, run_dir, resume, game, progress)
    except BaseException:
        game.close()
        raise
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")  # on resume with any allowed change, e.g. max_steps
    progress.note(f"run folder: {run_dir}")
    optimal_theta = game.optimal_theta(config.train.gamma) if isinstance(game, LQRVectorEnv) else None
    if workers_play:
        game.close()
    collector = _games(config, game, counters, games, checkpointed, progress)
    logger = MetricsLogger(
        run_dir,
        keep_through_update=counters.update if resume else None,
        keep_through_step=counters.env_steps if resume else None,
    )
    eval_env = make_eval_env(config, env) if config.eval.every_updates else None
    first, last = _duties(config, logger, eval_env, optimal_theta, progress)
    checkpointer = Checkpointer(
        run_dir, counters, collector, games_layout(config), config.train.checkpoint_every,
        evaluate=eval_env is not None, final_checkpoint=not checkpointed,
    )  # fmt: skip
    callback_list = CallbackList([*first, *(callbacks or []), *last, checkpointer], model)
    sampler = make_sampler(model, config.model, counters.rng)
    try:
        with StopRequests() as stop:
            interrupted = _loop(config, run_dir, model, sampler, collector, counters, callback_list, stop)
    finally:  # also on errors and a second Ctrl-C, after which the last checkpoint stands
        progress.finish()
        logger.close()
        collector.close()
        if eval_env is not None:
            eval_env.close()
    return TrainResult(
        run_dir, counters.update, counters.env_steps, counters.episodes, counters.running_reward,
        interrupted, model,
    )  # fmt: skip


def _loop(
    config: Config,
    run_dir: Path,
    model: keras.Model,
    sampler: ActionSampler,
    collector: Collector,
    counters: RunCounters,
    callbacks: CallbackList,
    stop: StopRequests,
) -> bool:
    """Collect, update, report, until the end; returns whether a stop request ended it."""
    train_config = config.train
    model.stop_training = False
    callbacks.on_train_begin()
    logs: dict = {}
    interrupted = False
    while train_config.max_steps is None or counters.env_steps < train_config.max_steps:
        if stop.requested:
            interrupted = True
            break
        epoch = counters.update
        callbacks.on_epoch_begin(epoch)
        callbacks.on_train_batch_begin(0)
        started = time.perf_counter()
        batch = collector.collect_batch(sampler)
        # The config's step size, not the checkpoint's: a resume may lower it or change its schedule.
        model.optimizer.learning_rate.assign(learning_rate_at(train_config, counters.env_steps))
        if train_config.entropy_steps is not None:
            set_entropy_weight(model, entropy_weight_at(train_config, counters.env_steps))
        loss = update_on_batch(model, sampler, batch, config, gamma_at(train_config, counters.env_steps))
        callbacks.on_train_batch_end(0, {"loss": loss})
        if not math.isfinite(loss) or not all(np.isfinite(w).all() for w in model.get_weights()):
            if model.stop_training:  # a callback (TerminateOnNaN) ends the run; no checkpoint of it
                break
            # model.keras and the checkpoints still hold the last good weights.
            lower = train_config.learning_rate / 10
            raise FloatingPointError(
                f"update {epoch + 1}: the loss or the weights are no longer finite (loss {loss}); "
                f"resume from the last checkpoint with a lower learning rate: "
                f"--resume {run_dir} --set train.learning_rate={lower:g}"
            )
        counters.count(batch)
        logs = MetricsRow(
            update=counters.update,
            env_steps=counters.env_steps,
            episodes=counters.episodes,
            episode_reward_mean=float(batch.episode_returns.mean())
            if len(batch.episode_returns)
            else math.nan,
            running_reward=math.nan if counters.running_reward is None else counters.running_reward,
            loss=loss,
            batch_size=len(batch.actions),
            steps_per_second=batch.num_env_steps / (time.perf_counter() - started),
            wall_time=time.perf_counter() - counters.wall_start,
        )._asdict()
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)
    return interrupted


def update_on_batch(
    model: keras.Model, sampler: ActionSampler, batch: Batch, config: Config, gamma: float | None = None
) -> float:
    """`train.epochs` steps of the trick on one batch (`update_policy` each), then the sampler
    refreshed; returns the last step's loss. A `gamma` other than `train.gamma` (its schedule,
    `gamma_at`) takes the batch's returns again with that discount (`with_discount`). From the
    second step on, each sample's weight is its advantage times the ratio of its action's
    probability now to before the first step, clipped as PPO does (`clipped_sample_weights`). The
    ratios come from the trainer's copy of the policy, so with `rollout.asynchronous` "before" is
    the policy of the update, not the one that played. A sample whose action had probability 0 in
    float32 before the first step keeps ratio 1."""
    train_config = config.train
    gamma = train_config.gamma if gamma is None else gamma
    if gamma != train_config.gamma:
        batch = with_discount(batch, gamma)
    advantages = batch_advantages(model, batch, train_config, gamma)
    observations, actions = batch.observations, batch.actions
    before = taken_probabilities(model, observations, actions) if train_config.epochs > 1 else None
    weights = advantages
    for step in range(train_config.epochs):
        if step:
            # A probability that was 0 in float32 before the first step (a near-certain policy's
            # rare action, below float32's range) has no ratio: it keeps 1, the first step's weight.
            now = taken_probabilities(model, observations, actions)
            ratios = np.divide(now, before, out=np.ones_like(now), where=before > 0)
            weights = clipped_sample_weights(advantages, ratios, train_config.clip_range)
        loss = update_policy(
            model, observations, actions, weights, train_config.minibatch_size,
            config.model.gaussian_sigma, batch.returns if config.model.value_head else None,
        )  # fmt: skip
    sampler.refresh()
    return loss


def batch_outputs(model: keras.Model, observations: np.ndarray) -> list[np.ndarray]:
    """The model's outputs for a whole batch, as a list (the policy's, then the value head's if any).

    One compiled forward pass of Keras (`predict_on_batch`, int8 observations cast inside it, as in
    the update), not the numpy forward pass that plays the games: that one multiplies only the
    non-zero pixels, which wins for a step's 8 rows and loses badly for a batch's thousands
    (benchmarks/README.md, "Issue 22, eighth session"). On JAX the batch is padded to a few sizes,
    as `update_policy` pads it, so that the pass is not compiled anew for every batch size.
    """
    size = len(observations)
    if keras.backend.backend() == "jax":
        no_targets = np.zeros((size, 1), np.float32)
        observations, _, _ = pad_to_few_sizes(observations, no_targets, np.zeros(size, np.float32))
    outputs = model.predict_on_batch(observations)
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    return [np.asarray(output)[:size] for output in outputs]


def taken_probabilities(model: keras.Model, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Each sample's probability of its action under `model` as it is now: float32 `(T,)`, from
    `batch_outputs`."""
    return action_probabilities(batch_outputs(model, observations)[0])[np.arange(len(actions)), actions]


def entropy_weight_at(train: TrainConfig, env_steps: int) -> float:
    """The entropy weight of the update that starts after `env_steps` agent steps: `train.entropy_weight`
    before `train.entropy_steps` (always, where that is null), 0 from then on.

    Example:
        >>> train = TrainConfig(entropy_weight=0.01, entropy_steps=1000)
        >>> [entropy_weight_at(train, steps) for steps in (0, 999, 1000, 5000)]
        [0.01, 0.01, 0.0, 0.0]
    """
    if train.entropy_steps is not None and env_steps >= train.entropy_steps:
        return 0.0
    return train.entropy_weight


def learning_rate_at(train: TrainConfig, env_steps: int) -> float:
    """The step size of the update that starts after `env_steps` agent steps: `train.learning_rate`,
    or with `train.learning_rate_final` the point at `env_steps` on the straight line from
    `learning_rate` (step 0) to `learning_rate_final` (`learning_rate_decay_steps` and after).

    Example:
        >>> train = TrainConfig(learning_rate=1e-3, learning_rate_final=1e-4, learning_rate_decay_steps=1000)
        >>> [round(learning_rate_at(train, steps), 6) for steps in (0, 500, 1000, 5000)]
        [0.001, 0.00055, 0.0001, 0.0001]
    """
    if train.learning_rate_final is None:
        return train.learning_rate
    return on_straight_line(
        train.learning_rate, train.learning_rate_final, train.learning_rate_decay_steps, env_steps
    )


def gamma_at(train: TrainConfig, env_steps: int) -> float:
    """The discount of the update that starts after `env_steps` agent steps: `train.gamma`, or with
    `train.gamma_final` the point at `env_steps` on the straight line from `gamma` (step 0) to
    `gamma_final` (`gamma_decay_steps` and after).

    Example:
        >>> train = TrainConfig(gamma=0.99, gamma_final=0.97, gamma_decay_steps=1000)
        >>> [round(gamma_at(train, steps), 6) for steps in (0, 500, 1000, 5000)]
        [0.99, 0.98, 0.97, 0.97]
    """
    if train.gamma_final is None:
        return train.gamma
    return on_straight_line(train.gamma, train.gamma_final, train.gamma_decay_steps, env_steps)


def on_straight_line(start: float, final: float, steps: int, env_steps: int) -> float:
    """`start` at agent step 0, `final` at `steps` and after, on a straight line between."""
    return start + (final - start) * min(1.0, env_steps / steps)


def with_discount(batch: Batch, gamma: float) -> Batch:
    """The batch with its returns taken again with discount `gamma`, each within its own stretch
    (`batch.ends`: a point, a life or an episode, as the collectors took them)."""
    return batch._replace(returns=discounted_returns(batch.rewards, gamma, False, batch.ends))


def batch_advantages(model: keras.Model, batch: Batch, train: TrainConfig, gamma: float) -> np.ndarray:
    """The sample weights of a batch: its discounted returns, or with `train.gae_lambda` the
    GAE(lambda) advantages (discount `gamma`) from the model's values of the batch before the
    update; then standardised or centred as `train.advantage` says."""
    if train.gae_lambda is None:
        return compute_advantages(batch.returns, train.advantage, batch.segment_ids)
    values = batch_outputs(model, batch.observations)[1][:, 0]  # the value head's V(s)
    estimates = gae_advantages(batch.rewards, values, batch.ends, gamma, train.gae_lambda)
    return compute_advantages(estimates, train.advantage, batch.segment_ids)


def default_run_dir(config: Config) -> Path:
    """`runs/<game>-<date>-<time>`, e.g. `runs/pong-20261201-101500`."""
    game = config.env.id.split("/")[-1].split("-v")[0].lower()
    return Path("runs") / f"{game}-{time.strftime('%Y%m%d-%H%M%S')}"


def _start_or_resume(
    config: Config, run_dir: Path, resume: bool, game, progress: ProgressLine
) -> tuple[keras.Model, RunCounters, dict | None, bool]:
    """The model, the counters and the saved games (if any) of the newest checkpoint, or a new model;
    and whether a checkpoint was found."""
    checkpointed = resume and bool(list_checkpoints(run_dir))
    if resume and not checkpointed:
        # Stopped (killed) before its first checkpoint: nothing to continue, so start it over.
        progress.note(f"{run_dir} has no checkpoint yet: starting the run from update 0")
    if checkpointed:
        model, state, games = load_latest_checkpoint(run_dir)  # _loop sets the step size
        rng = np.random.default_rng()
        rng.bit_generator.state = state.rng_state
    else:
        keras.utils.set_random_seed(config.seed)
        model = _setup(build_policy, config.model, config.train, game.observation_shape, game.num_actions)
        rng = np.random.default_rng(config.seed)
        state, games = TrainingState(0, 0, 0, None, None, 0.0, rng.bit_generator.state), None
    counters = RunCounters(
        state.update, state.env_steps, state.episodes, state.running_reward, state.best_score,
        time.perf_counter() - state.wall_time, rng,
    )  # fmt: skip
    return model, counters, games, checkpointed


def _games(
    config: Config,
    game,
    counters: RunCounters,
    games: dict | None,
    checkpointed: bool,
    progress: ProgressLine,
) -> Collector:
    """The collector, continuing the checkpoint's games where they fit, else with new games seeded
    from the run's seed and update."""
    collector = _make_collector(
        config, game, derive_seed(config.seed, counters.update), counters.update, progress
    )
    if games is not None and str(games.pop("layout", "")) == games_layout(config):
        collector.set_state(games)
    elif checkpointed:
        reason = "no games" if games is None else "games of another layout"
        progress.note(f"the games start anew: the checkpoint of update {counters.update} holds {reason}")
    return collector


def _duties(
    config: Config,
    logger: MetricsLogger,
    eval_env,
    optimal_theta: np.ndarray | None,
    progress: ProgressLine,
) -> tuple[list[keras.callbacks.Callback], list[keras.callbacks.Callback]]:
    """The trainer's callbacks before the user's (evaluation, which adds `eval_reward_mean` to the
    logs; the stop level) and after them (metrics, progress line, the LQR's gain), before the
    checkpoint, which comes last."""
    first: list[keras.callbacks.Callback] = [Evaluation(config, eval_env)] if eval_env is not None else []
    if config.train.stop_at_running_reward is not None:
        first.append(StopAtRunningReward(config.train.stop_at_running_reward))
    gain = LQRGainReport(optimal_theta, progress.note) if optimal_theta is not None else None
    last = [MetricsWriter(logger), Progress(progress, config.train.max_steps, gain.detail if gain else None)]
    return first, last + ([gain] if gain else [])


def _make_collector(
    config: Config, game, games_seed: int, first_update: int, progress: ProgressLine
) -> Collector:
    """The collector of `rollout.backend`: this process plays `game`, or workers play their own."""
    if config.rollout.backend == "ray":
        return RayRolloutCollector(config, games_seed, first_update, note=progress.note)
    if config.rollout.backend == "processes":
        return ProcessRolloutCollector(config, games_seed, first_update)
    return RolloutCollector.from_config(game, config.train, games_seed)


def _setup(build: Callable, *args, **kwargs):
    """Calls `build` (the game or the policy), turning its ValueError (an unknown game, a model
    that cannot take the game's observations) into a one-line `ConfigError`."""
    try:
        return build(*args, **kwargs)
    except ValueError as error:
        raise ConfigError(" ".join(str(error).split())) from None


def games_layout(config: Config) -> str:
    """Which games a checkpoint's saved games belong to; a resume continues them only into the
    same layout (another backend or number of games starts new games)."""
    env, rollout = config.env, config.rollout
    if rollout.backend == "local":
        return f"local: {env.num_envs} games of {env.id} in {env.num_groups} groups"
    return f"{rollout.backend}: {rollout.num_workers} workers x {env.num_envs} games of {env.id}"


class StopRequests:
    """While entered, the first Ctrl-C or SIGTERM only sets `requested`, which the loop honours at the
    next update; a second Ctrl-C raises KeyboardInterrupt as usual. Outside the main thread, signals
    stay as they are."""

    def __init__(self):
        self.requested = False
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequests:
        try:
            self._previous = {
                sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
            }
        except ValueError:  # not the main thread
            self._previous = {}
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
