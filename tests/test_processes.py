"""`rollout.backend: processes`: worker processes that play Pong without ale-py's threads and
collect exactly the batches the in-process workers collect; a dead worker stops the run with one
line and leaves nothing behind."""

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, fresh_policy_parameters

from pgkeras.config import config_to_dict, load_config
from pgkeras.envs import PongSerialEnv, PongVectorEnv
from pgkeras.inference import NumpyPolicy
from pgkeras.processes import ProcessRolloutCollector
from pgkeras.rollout import RolloutWorker, RolloutWorkerError, concatenate_batches

SMALL_PONG = ["train.samples_per_update=1000", "model.hidden_units=[16]", "rollout.backend=processes",
              "rollout.num_workers=2", "env.num_envs=2"]  # fmt: skip


def pong_config(*overrides: str):
    return load_config(CONFIGS / "pong.yaml", [*SMALL_PONG, *overrides])


def shared_memory_blocks() -> set[str]:
    folder = Path("/dev/shm")
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


def assert_played_by(got, workers, parameters, update):
    """`got` is the batch the in-process `workers` collect with `parameters` for `update`, field by field."""
    expected = concatenate_batches([worker.collect(parameters, update)[0] for worker in workers])
    for name in got._fields:
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)


@pytest.mark.parametrize("max_episode_steps", [None, 250])
def test_serial_games_are_the_vector_env_games(max_episode_steps):
    """Given the same actions, the bare-ALE games of the workers return what ale-py's vector env
    returns, step for step: screens, points, episode ends and the truncation at the step limit."""
    vector = PongVectorEnv(3, max_episode_steps=max_episode_steps)
    serial = PongSerialEnv(3, max_episode_steps=max_episode_steps)
    try:
        np.testing.assert_array_equal(vector.reset(seed=5), serial.reset(seed=5))
        rng = np.random.default_rng(0)
        ends = points = 0
        for _ in range(1300):
            actions = rng.integers(0, 2, size=3).astype(np.int32)
            expected, got = vector.step(actions), serial.step(actions)
            for name, a, b in zip(expected._fields, expected, got, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=name)
                assert a.dtype == b.dtype, name
            ends += int((expected.terminated | expected.truncated).sum())
            points += int(np.count_nonzero(expected.rewards))
    finally:
        vector.close()
        serial.close()
    assert points >= 40 and ends >= 1  # the comparison covered points and episode ends
    if max_episode_steps:
        assert ends >= 3 * (1300 // max_episode_steps)


def test_process_batches_are_the_in_process_workers_batches():
    """Each worker process collects exactly what `RolloutWorker` w collects in this process with
    ale-py's vector env (and so what Ray's worker w collects), also after its games were saved and
    continued in new worker processes (a resume)."""
    # One group per worker: with two, the in-process vector env has a step in flight when a batch
    # completes, which the next batch counts (num_env_steps moves by a step; the samples do not).
    config = pong_config("env.num_groups=1")
    parameters = fresh_policy_parameters(config)
    expected_workers = [RolloutWorker(config_to_dict(config), worker, games_seed=7) for worker in range(2)]
    collector = ProcessRolloutCollector(config, games_seed=7, first_update=0)
    try:
        for update in (1, 2):
            if update == 2:
                games = collector.get_state()
                collector.close()
                collector = ProcessRolloutCollector(config, games_seed=11, first_update=1)
                collector.set_state(games)
            got = collector.collect_batch(NumpyPolicy(parameters, None))
            assert_played_by(got, expected_workers, parameters, update)
            assert len(got.actions) >= 1000 and got.observations.dtype == np.int8
        # A restart gives every worker new games, as new workers seeded so would have.
        collector.restart(11)
        restarted = [RolloutWorker(config_to_dict(config), worker, games_seed=11) for worker in range(2)]
        expected_workers += restarted
        assert_played_by(collector.collect_batch(NumpyPolicy(parameters, None)), restarted, parameters, 3)
    finally:
        collector.close()
        for worker in expected_workers:
            worker.env.close()


def test_asynchronous_workers_play_each_batch_with_the_weights_of_the_batch_before():
    """`rollout.asynchronous`: batch 1 is played by the weights it is handed, every later batch by
    the weights handed with the batch before (a lag of one update), saving the games mid-way
    saves the batch collected ahead, which new workers hand out next as the old ones would have,
    and a restart drops it."""
    config = pong_config("env.num_groups=1", "rollout.asynchronous=true")
    first, second, third = (fresh_policy_parameters(pong_config(f"seed={seed}")) for seed in (1, 2, 3))
    expected_workers = [RolloutWorker(config_to_dict(config), worker, games_seed=7) for worker in range(2)]
    collector = ProcessRolloutCollector(config, games_seed=7, first_update=0)

    def check(got, parameters, update):
        assert_played_by(got, expected_workers, parameters, update)

    try:
        check(collector.collect_batch(NumpyPolicy(first, None)), first, 1)
        check(collector.collect_batch(NumpyPolicy(second, None)), first, 2)  # collected during update 1
        games = collector.get_state()  # waits for batch 3, played by `second`, and saves it
        assert {"w0.pending.observations", "w1.pending.actions"} <= set(games)
        collector.close()
        collector = ProcessRolloutCollector(config, games_seed=11, first_update=2)
        collector.set_state(games)
        check(collector.collect_batch(NumpyPolicy(third, None)), second, 3)
        check(collector.collect_batch(NumpyPolicy(third, None)), third, 4)
        # A restart drops the batch collected ahead (update 5) with the old games: update 5 is
        # played anew, in the new games.
        collector.restart(13)
        restarted = [RolloutWorker(config_to_dict(config), worker, games_seed=13) for worker in range(2)]
        expected_workers += restarted
        assert_played_by(collector.collect_batch(NumpyPolicy(first, None)), restarted, first, 5)
    finally:
        collector.close()
        for worker in expected_workers:
            worker.env.close()


def test_a_dead_worker_stops_collection_with_one_line_and_leaves_nothing_behind():
    before = shared_memory_blocks()
    config = pong_config()
    parameters = fresh_policy_parameters(config)
    collector = ProcessRolloutCollector(config, games_seed=0, first_update=0)
    processes = list(collector._processes)
    try:
        collector.collect_batch(
            NumpyPolicy(parameters, None)
        )  # the trainer now holds a shared block per worker
        assert len(shared_memory_blocks() - before) == 2
        os.kill(collector.worker_pids()[1], signal.SIGKILL)
        death = r"^update 2: rollout worker 1 \(process \d+\) died \(killed by SIGKILL\)"
        with pytest.raises(RolloutWorkerError, match=death) as error:
            collector.collect_batch(NumpyPolicy(parameters, None))
        assert "\n" not in str(error.value) and "resume" in str(error.value)
    finally:
        collector.close()
    assert not any(process.is_alive() for process in processes)
    assert shared_memory_blocks() - before == set()


def test_a_worker_that_fails_to_start_says_why():
    config = pong_config("env.id=NoSuchGame-v0", "model.kind=mlp")
    failure = r"^rollout worker 0: ValueError: env.id: cannot make 'NoSuchGame-v0'"
    with pytest.raises(RolloutWorkerError, match=failure):
        ProcessRolloutCollector(config, games_seed=0, first_update=0)


def test_a_worker_that_does_not_answer_in_time_stops_collection_with_one_line():
    config = pong_config("train.samples_per_update=200000", "rollout.worker_timeout=1")
    collector = ProcessRolloutCollector(config, games_seed=0, first_update=0)
    try:
        timeout = r"^update 1: rollout worker 0 \(process \d+\) did not answer within 1 s \(rollout\.worker_"
        with pytest.raises(RolloutWorkerError, match=timeout):
            collector.collect_batch(NumpyPolicy(fresh_policy_parameters(config), None))
    finally:
        collector.close()
