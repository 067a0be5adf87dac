"""Evaluation: the policy plays separate games, one episode each, and reports their rewards."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from pgkeras.config import Config
from pgkeras.envs import is_pong, make_env
from pgkeras.inference import blas_on_one_thread
from pgkeras.policies import ActionSampler


def make_eval_env(config: Config, custom=None):
    """The evaluation games: `eval.episodes` of them, with `eval.sticky_action_prob`. Greedy play of
    Pong without sticky actions repeats one identical game, so then one game is played. `custom`:
    the callable that makes your own game (`pgkeras.envs.make_env`)."""
    evaluation = config.eval
    sticky = (
        config.env.sticky_action_prob
        if evaluation.sticky_action_prob is None
        else evaluation.sticky_action_prob
    )
    eval_config = dataclasses.replace(config, env=dataclasses.replace(config.env, sticky_action_prob=sticky))
    deterministic = evaluation.greedy and is_pong(config.env.id) and sticky == 0
    return make_env(eval_config, num_envs=1 if deterministic else evaluation.episodes, custom=custom)


def play_one_episode_each(
    sampler: ActionSampler,
    env,
    greedy: bool = False,
    seed: int | None = None,
    max_steps: int = 100_000,
) -> np.ndarray:
    """Plays one episode in each of the env's games with `sampler` and returns their rewards.

    Every game plays exactly its first episode, so short episodes are not over-represented.

    Args:
        sampler: chooses the actions (`pgkeras.policies.make_sampler`), with a generator of its own
            (separate from the training sampler's, so evaluation does not change the training run).
        env: a vectorised game from `make_env`, separate from the training games.
        greedy: take the most probable action instead of sampling.
        seed: seeds the games.
        max_steps: steps per game after which unfinished episodes count as they stand.

    Returns:
        float64 `(num_envs,)` total reward of each game's episode.
    """
    observations = env.reset(seed=seed)
    totals = np.zeros(env.num_envs)
    running = np.ones(env.num_envs, dtype=bool)
    with blas_on_one_thread():
        for _ in range(max_steps):
            result = env.step(sampler.sample(observations, greedy=greedy))
            totals += result.rewards * running
            running &= ~(result.terminated | result.truncated)
            if not running.any():
                break
            observations = result.observations
    return totals


def evaluate(
    model: keras.Model,
    config: Config,
    num_episodes: int = 10,
    greedy: bool = False,
    seed: int = 0,
    sticky_action_prob: float | None = None,
) -> np.ndarray:
    """Plays `num_episodes` separate full episodes with a policy and returns their rewards.

    Args:
        model: the policy (`pgkeras.load_policy`); it must fit the config's game.
        config: the run's settings: the game, its frame skip, the policy kind.
        num_episodes: games played, one episode each, all at once.
        greedy: take the most probable action instead of sampling.
        seed: seeds the games and the actions.
        sticky_action_prob: the game's sticky actions instead of the config's (Atari only); 0.25
            is ALE v5's default.

    Returns:
        float64 `(num_episodes,)`: each episode's total reward (in Pong, points won minus lost).

    Example:
        >>> rewards = pgkeras.evaluate(pgkeras.load_policy("runs/pong/best.keras"),
        ...                            pgkeras.load_config("runs/pong/config.yaml"))  # doctest: +SKIP
        >>> float(rewards.mean())  # doctest: +SKIP
        20.4
    """
    env_config = config.env
    if sticky_action_prob is not None:
        env_config = dataclasses.replace(env_config, sticky_action_prob=sticky_action_prob)
    env = make_env(dataclasses.replace(config, env=env_config), num_envs=num_episodes)
    try:
        rng = np.random.default_rng(seed)
        sampler = ActionSampler(model, rng, config.model.gaussian_sigma)
        return play_one_episode_each(sampler, env, greedy=greedy, seed=seed)
    finally:
        env.close()
