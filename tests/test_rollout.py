"""The collector on a scripted game whose every return is known."""

import numpy as np
import pytest
from conftest import Choosing, random_choices
from gymnasium.utils.env_checker import check_env
from scripted_env import SCRIPTED_ID, ScriptedEnv

from pgkeras.config import Config
from pgkeras.envs import make_env
from pgkeras.returns import discounted_returns
from pgkeras.rollout import RolloutCollector


def make_scripted(num_envs=3, **env_kwargs):
    config = Config()
    config.env.id, config.env.num_envs = SCRIPTED_ID, num_envs
    env = make_env(config)
    if env_kwargs:  # rebuild with other script settings
        import gymnasium as gym
        from gymnasium.vector import AutoresetMode

        env.vector_env = gym.make_vec(
            SCRIPTED_ID,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            **env_kwargs,
        )
    return env


def alternate(observations):
    return (np.arange(len(observations)) % 2).astype(np.int32)


def test_scripted_env_passes_gymnasium_checks():
    check_env(ScriptedEnv(), skip_render_check=True)


def test_batches_of_whole_episodes():
    env = make_scripted(num_envs=3)
    collector = RolloutCollector(env, gamma=0.5, reset_on_reward=True, episodes_per_update=4, seed=0)
    batch = collector.collect_batch(Choosing(alternate))
    # 3 games finish together every 5 steps: 4 episodes need 2 rounds, so 6 whole episodes.
    assert len(batch.episode_returns) == 6
    assert len(batch.actions) == 6 * 5
    assert batch.num_env_steps == 30
    # Observations are the ones each action was chosen from: step indices 0..4 per episode.
    np.testing.assert_array_equal(batch.observations[:, 0], np.tile(np.arange(5), 6))
    np.testing.assert_array_equal(batch.episode_returns, np.zeros(6))  # +1 then -1
    one_episode = discounted_returns(np.array([0, 0, 1, 0, -1.0]), 0.5, reset_on_reward=True)
    np.testing.assert_allclose(batch.returns, np.tile(one_episode, 6))
    assert collector.num_buffered == 0


def test_batches_of_finished_points_keep_unfinished_ones_for_later():
    env = make_scripted(num_envs=2)
    collector = RolloutCollector(env, gamma=0.9, reset_on_reward=True, samples_per_update=5, seed=0)
    first = collector.collect_batch(Choosing(alternate))
    # Points end at step 2 (+1) and step 4 (-1) of each episode. After 3 steps each game has a
    # finished point of 3 samples: 6 samples >= 5, so the batch is ready with nothing pending.
    assert len(first.actions) == 6 and first.num_env_steps == 6
    np.testing.assert_allclose(first.returns, [0.81, 0.9, 1.0] * 2, rtol=1e-6)
    assert collector.num_buffered == 0
    second = collector.collect_batch(Choosing(alternate))
    # Next points: steps 3-4 of each game (2 + 2 = 4 < 5), then steps 0-2 of the next episode.
    assert len(second.actions) == 10 and second.num_env_steps == 10
    np.testing.assert_array_equal(second.observations[:5, 0], [3, 4, 0, 1, 2])
    np.testing.assert_allclose(second.returns[:5], [-0.9, -1.0, 0.81, 0.9, 1.0], rtol=1e-6)
    # Each return's stretch ends at its point: where GAE's values stop.
    np.testing.assert_array_equal(second.ends[:5], [False, True, False, False, True])
    np.testing.assert_array_equal(second.episode_returns, [0.0, 0.0])


def test_returns_never_cross_episodes_without_point_resets():
    env = make_scripted(num_envs=1)
    collector = RolloutCollector(env, gamma=1.0, reset_on_reward=False, episodes_per_update=2, seed=0)
    batch = collector.collect_batch(Choosing(alternate))
    np.testing.assert_allclose(batch.returns, [0, 0, 0, -1, -1] * 2)


def test_buffers_grow_for_long_episodes():
    env = make_scripted(num_envs=2, episode_length=2500, reward_steps={2499: 1.0})
    collector = RolloutCollector(env, gamma=1.0, reset_on_reward=True, samples_per_update=100, seed=0)
    batch = collector.collect_batch(Choosing(alternate))
    assert len(batch.actions) == 5000
    np.testing.assert_array_equal(batch.observations[:2500, 0], np.arange(2500))
    np.testing.assert_allclose(batch.returns, 1.0)


def test_exactly_one_batch_size_setting_is_required():
    with pytest.raises(ValueError, match="exactly one"):
        RolloutCollector(make_scripted(), 0.9, True, episodes_per_update=2, samples_per_update=10)


def blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_games_are_played_with_numpy_blas_on_one_thread_and_the_limit_is_restored():
    # An idle BLAS worker spins on a core the emulator threads need (benchmarks/README.md).
    from threadpoolctl import threadpool_limits

    seen = []

    def choose(observations):
        seen.append(blas_threads())
        return alternate(observations)

    collector = RolloutCollector(
        make_scripted(), gamma=0.9, reset_on_reward=True, samples_per_update=5, seed=0
    )
    with threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        collector.collect_batch(Choosing(choose))
        assert blas_threads() == before
    assert seen and all(threads == [1] * len(before) for threads in seen)


def batches_equal(a, b):
    for name, x, y in zip(a._fields, a, b, strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)


@pytest.mark.parametrize(
    ("env_id", "num_groups", "overrides"),
    [
        ("ALE/Pong-v5", 2, {"serial": False}),  # ale-py's vector env: replayed, with a step in flight
        ("ALE/Pong-v5", 1, {"serial": True}),  # bare ALE games: emulator states
        ("ALE/Pong-v5", 1, {"serial": True, "sticky": 0.25}),
        ("ALE/Breakout-v5", 2, {"serial": False}),  # any ALE game, both ways
        ("ALE/Breakout-v5", 1, {"serial": True}),
        ("CartPole-v1", 1, {}),  # gymnasium: replayed from the episode's seed or random state
        ("LQR", 1, {}),  # numpy: states and random generator
    ],
)
def test_a_saved_collector_goes_on_exactly_as_the_original(env_id, num_groups, overrides):
    """get_state in the middle of points and episodes, set_state into new games: the next batches
    are the ones the original collector collects, sample for sample, episode for episode."""
    config = Config()
    config.env.id, config.env.num_envs, config.env.num_groups = env_id, 4, num_groups
    config.env.sticky_action_prob = overrides.get("sticky", 0.0)
    settings = {"gamma": 0.99, "reset_on_reward": env_id.startswith("ALE"), "samples_per_update": 300}

    def collector(seed):
        env = make_env(config, serial=overrides.get("serial", False))
        return RolloutCollector(env, seed=seed, **settings)

    original = collector(seed=3)
    for update in range(3):
        original.collect_batch(Choosing(random_choices(update)))
    saved = original.get_state()
    assert original.num_buffered > 0  # unfinished points are held
    copy = collector(seed=99)  # other games, replaced by the saved ones
    copy.set_state(saved)
    for update in range(3, 6):
        batches_equal(
            original.collect_batch(Choosing(random_choices(update))),
            copy.collect_batch(Choosing(random_choices(update))),
        )
    original.env.close()
    copy.env.close()


@pytest.mark.parametrize("serial", [False, True])
def test_a_restarted_collector_plays_as_a_new_one(serial):
    """`restart(seed)` drops the games, held samples and unfinished episodes: the next batch is the
    first batch of a new collector with that seed."""
    config = Config()
    config.env.num_envs, config.env.num_groups = 4, 1 if serial else 2
    settings = {"gamma": 0.99, "reset_on_reward": True, "samples_per_update": 300}
    used = RolloutCollector(make_env(config, serial=serial), seed=3, **settings)
    used.collect_batch(Choosing(random_choices(0)))
    assert used.num_buffered > 0
    used.restart(7)
    new = RolloutCollector(make_env(config, serial=serial), seed=7, **settings)
    batches_equal(
        used.collect_batch(Choosing(random_choices(1))), new.collect_batch(Choosing(random_choices(1)))
    )
    used.close()
    new.close()


def test_returns_can_end_where_a_life_is_lost():
    """`reset_on_life_loss`: each of Breakout's lives is a segment whose returns see only its own
    rewards; without it, returns run to the episode's end."""
    config = Config()
    config.env.id, config.env.num_envs, config.env.num_groups = "ALE/Breakout-v5", 2, 1
    segments = {}
    for reset_on_life_loss in (False, True):
        env = make_env(config, serial=True)
        collector = RolloutCollector(env, gamma=1.0, reset_on_reward=False, samples_per_update=2000, seed=0,
                                     reset_on_life_loss=reset_on_life_loss)  # fmt: skip
        batch = collector.collect_batch(Choosing(random_choices(0)))
        collector.close()
        starts = np.flatnonzero(np.diff(batch.segment_ids, prepend=-1))
        for start, stop in zip(starts, [*starts[1:], len(batch.returns)], strict=True):
            assert batch.returns[start] == batch.rewards[start:stop].sum()
            assert batch.returns[stop - 1] == batch.rewards[stop - 1]
            assert batch.ends[stop - 1] and not batch.ends[start : stop - 1].any()
        segments[reset_on_life_loss] = len(starts)
        whole_episodes = len(batch.episode_returns)
        assert whole_episodes >= 1
    assert segments[True] >= 4 * segments[False]  # five lives per episode
