"""`rollout.backend: ray` on a local Ray instance: the same artefacts and batches as the local
backend, repeatable collection, and training that survives a killed worker."""

import importlib
import io
import logging
import os
import re
import signal

import numpy as np
import pytest
from conftest import CONFIGS, Record, StopAt, fresh_policy_parameters, timing_free

from pgkeras.config import load_config
from pgkeras.envs import make_env
from pgkeras.inference import NumpyPolicy
from pgkeras.metrics import ProgressLine, read_metrics
from pgkeras.returns import discounted_returns
from pgkeras.rollout import RolloutCollector
from pgkeras.train import train

ray = pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]"')

from pgkeras import distributed  # noqa: E402
from pgkeras.distributed import RayRolloutCollector  # noqa: E402
from pgkeras.rollout import RolloutWorkerError  # noqa: E402

train_module = importlib.import_module("pgkeras.train")  # the module, not the function pgkeras.train

SMALL_PONG = ["train.samples_per_update=1000", "train.checkpoint_every=2", "model.hidden_units=[16]"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray instance for the module (a CI machine has 2 cores); the trainer reuses it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def pong_config(*overrides: str):
    return load_config(CONFIGS / "pong.yaml", [*SMALL_PONG, *overrides])


def ray_batch(config, parameters, games_seed=7):
    collector = RayRolloutCollector(config, games_seed=games_seed, first_update=0, note=lambda line: None)
    try:
        return collector.collect_batch(NumpyPolicy(parameters, None))
    finally:
        collector.close()


def test_ray_batches_have_the_structure_and_statistics_of_local_ones():
    # 2 workers x 4 games against 8 local games, the same policy and batch size.
    config = pong_config("rollout.backend=ray", "rollout.num_workers=2", "env.num_envs=4")
    parameters = fresh_policy_parameters(config)
    remote = ray_batch(config, parameters)

    local_config = pong_config("rollout.backend=local", "env.num_envs=8")
    env = make_env(local_config)
    collector = RolloutCollector(env, 0.99, reset_on_reward=True, samples_per_update=1000, seed=7)
    local = collector.collect_batch(NumpyPolicy(parameters, np.random.default_rng(0)))
    env.close()

    for batch in (local, remote):
        assert batch.observations.dtype == np.int8 and batch.observations.shape[1] == 6400
        assert batch.actions.dtype == np.int32 and set(np.unique(batch.actions)) <= {0, 1}
        assert 1000 <= len(batch.actions) < 1600 and batch.num_env_steps >= len(batch.actions)
        assert set(np.unique(batch.rewards)) <= {-1.0, 0.0, 1.0}
        # Only whole points: every game's part ends on a point, so the returns recompute from the
        # joined rewards alone.
        np.testing.assert_allclose(
            batch.returns, discounted_returns(batch.rewards, 0.99, reset_on_reward=True), rtol=1e-6
        )
    assert abs(local.actions.mean() - remote.actions.mean()) < 0.1

    def per_sample(counts, batch):
        return np.count_nonzero(counts) / len(batch.actions)

    # Pixels that changed, and points decided, per sample.
    assert per_sample(remote.observations, remote) == pytest.approx(
        per_sample(local.observations, local), rel=0.3
    )
    assert per_sample(remote.rewards, remote) == pytest.approx(per_sample(local.rewards, local), rel=0.5)


def test_ray_collection_repeats_with_the_same_seed():
    overrides = ["rollout.backend=ray", "rollout.num_workers=2", "env.num_envs=2"]
    config = pong_config(*overrides)
    parameters = fresh_policy_parameters(config)
    first, second = ray_batch(config, parameters), ray_batch(config, parameters)
    other = ray_batch(pong_config(*overrides, "seed=1"), parameters)
    for name in ("observations", "actions", "rewards", "returns"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert len(first.actions) != len(other.actions) or not np.array_equal(first.actions, other.actions)


def test_workers_that_cannot_start_give_one_clear_error(monkeypatch):
    # Each worker asks for one CPU and the local instance has two: the third never starts.
    monkeypatch.setattr(distributed, "READY_TIMEOUT_SECONDS", 2.0)
    config = pong_config("rollout.backend=ray", "rollout.num_workers=3", "env.num_envs=2")
    with pytest.raises(RolloutWorkerError) as error:
        RayRolloutCollector(config, games_seed=0, first_update=0)
    assert str(error.value) == (
        "rollout.num_workers: 3 Ray workers did not start within 2 s; each needs 1 CPU and the cluster has 2"
    )


@pytest.mark.slow
def test_ray_run_writes_what_a_local_run_writes_and_resumes_locally(tmp_path):
    overrides = ["env.num_envs=4", "train.max_steps=6000"]
    local = train(pong_config(*overrides), tmp_path / "local")
    remote = train(pong_config(*overrides, "rollout.backend=ray", "rollout.num_workers=2"), tmp_path / "ray")

    def artefacts(run_dir):
        """Paths in the run folder, with checkpoint numbers (the runs may differ by an update) as N."""
        return {
            re.sub(r"\d+", "N", str(path.relative_to(run_dir)))
            for path in run_dir.rglob("*")
            if "tensorboard" not in path.parts
        }

    assert artefacts(tmp_path / "ray") == artefacts(tmp_path / "local")
    assert list((tmp_path / "ray" / "tensorboard").rglob("events.out.tfevents.*"))
    rows = read_metrics(tmp_path / "ray" / "metrics.csv")
    assert [row["update"] for row in rows] == list(range(1, remote.updates + 1))
    assert rows[-1]["env_steps"] == remote.env_steps >= 6000
    assert all(row["batch_size"] >= 1000 for row in rows)
    assert local.env_steps >= 6000

    # Where the games run may change on resume.
    resumed = train(pong_config("env.num_envs=4", "train.max_steps=9000"), tmp_path / "ray", resume=True)
    assert resumed.env_steps >= 9000 and resumed.updates > remote.updates


@pytest.mark.slow
def test_training_goes_on_when_a_worker_is_killed(tmp_path, monkeypatch):
    collectors = []

    class Recorded(RayRolloutCollector):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            collectors.append(self)

    monkeypatch.setattr(train_module, "RayRolloutCollector", Recorded)

    def kill_worker_after_update_2(logs, model):
        if logs["update"] == 2:
            os.kill(collectors[0].worker_pids()[0], signal.SIGKILL)

    log = io.StringIO()
    config = pong_config(
        "env.num_envs=2", "rollout.backend=ray", "rollout.num_workers=2", "train.max_steps=8000"
    )
    result = train(
        config,
        tmp_path / "run",
        progress=ProgressLine(stream=log),
        callbacks=[Record(kill_worker_after_update_2)],
    )

    assert result.env_steps >= 8000 and not result.interrupted
    assert "rollout worker 0" in log.getvalue()
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert [row["update"] for row in rows] == list(range(1, result.updates + 1))
    assert all(row["batch_size"] >= 1000 for row in rows)


@pytest.mark.slow
def test_a_resumed_ray_run_continues_its_games_exactly(tmp_path):
    """The checkpoint holds each actor's games (replayed into the new actors on resume), so a Ray
    run stopped between periodic checkpoints and resumed repeats the uninterrupted run's rows."""
    config = pong_config(
        "env.num_envs=2", "rollout.backend=ray", "rollout.num_workers=2", "train.max_steps=null"
    )

    train(config, tmp_path / "first", callbacks=[StopAt(5)])
    train(config, tmp_path / "resumed", callbacks=[StopAt(3)])
    train(config, tmp_path / "resumed", resume=True, callbacks=[StopAt(5)])

    first, resumed = (
        timing_free(read_metrics(tmp_path / run / "metrics.csv")) for run in ("first", "resumed")
    )
    assert len(first) == 5
    assert resumed == first


def test_a_worker_that_raises_stops_collection_with_one_line():
    config = pong_config("rollout.backend=ray", "rollout.num_workers=2", "env.num_envs=2")
    kernel, bias, activation = fresh_policy_parameters(config)[0]
    broken = [(kernel[:100], bias, activation)]  # a first layer for 100 pixels instead of 6400
    collector = RayRolloutCollector(config, games_seed=0, first_update=0, note=lambda line: None)
    try:
        with pytest.raises(
            RolloutWorkerError, match=r"^update 1: rollout worker 0 failed: \w+Error: "
        ) as error:
            collector.collect_batch(NumpyPolicy(broken, None))
    finally:
        collector.close()
    assert "\n" not in str(error.value)


def test_a_worker_that_does_not_answer_in_time_stops_collection_with_one_line():
    config = pong_config("rollout.backend=ray", "rollout.num_workers=2", "env.num_envs=2",
                         "train.samples_per_update=200000", "rollout.worker_timeout=1")  # fmt: skip
    collector = RayRolloutCollector(config, games_seed=0, first_update=0, note=lambda line: None)
    try:
        with pytest.raises(RolloutWorkerError) as error:
            collector.collect_batch(NumpyPolicy(fresh_policy_parameters(config), None))
    finally:
        collector.close()
    assert str(error.value) == (
        "update 1: rollout worker 0 did not answer within 1 s (rollout.worker_timeout); "
        "resume from the last checkpoint"
    )
