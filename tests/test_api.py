"""The Python API: `import pgkeras`, Keras callbacks around the loop, and your own environment."""

import csv
import io
import json
import subprocess

import gymnasium as gym
import keras
import numpy as np
import pytest
from conftest import PYTHON, REPO
from gymnasium.vector import AutoresetMode

import pgkeras
from pgkeras.checkpoints import list_checkpoints
from pgkeras.metrics import COLUMNS, ProgressLine, read_metrics

QUICK = ["train.max_steps=3000", "train.checkpoint_every=1000"]


def quiet():
    return ProgressLine(stream=io.StringIO())


def test_import_pgkeras_exports_the_api_without_tensorflow():
    code = (
        "import sys, pgkeras; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
        "import pgkeras.train, pgkeras.play; "  # the modules of the same names as the functions
        "assert callable(pgkeras.train) and pgkeras.train.__module__ == 'pgkeras.train'; "
        "assert pgkeras.play.__module__ == 'pgkeras.play'; "
        "print(sorted(pgkeras.__all__))"
    )
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    names = set(eval(result.stdout))
    assert {"load_config", "train", "update_policy", "load_policy", "play", "evaluate"} <= names
    for name in names:
        assert getattr(pgkeras, name).__doc__, name


class Recorder(keras.callbacks.Callback):
    """Records every hook as Keras's fit would call it."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


def test_callbacks_see_each_update_as_an_epoch(tmp_path):
    recorder = Recorder()
    config = pgkeras.load_config("cartpole", ["train.max_steps=500", *QUICK[1:]])
    result = pgkeras.train(config, tmp_path / "run", callbacks=[recorder], progress=quiet())

    assert recorder.model is result.model
    calls = recorder.calls
    assert calls[0] == ("train_begin",) and calls[-1] == ("train_end",)
    epochs = [call for call in calls if call[0] == "epoch_end"]
    assert len(epochs) == result.updates >= 2
    for epoch, (_, number, logs) in enumerate(epochs):
        assert number == epoch and logs["update"] == epoch + 1  # epochs count from 0, as in Keras
        assert set(COLUMNS) <= set(logs) and np.isfinite(logs["loss"])
    assert calls[1:4] == [("epoch_begin", 0), ("batch_end", 0, ["loss"]), epochs[0]]
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert [row["env_steps"] for row in rows] == [logs["env_steps"] for _, _, logs in epochs]


def test_keras_callbacks_work_as_keras_users_know_them(tmp_path):
    updates = []
    log = tmp_path / "log.csv"
    config = pgkeras.load_config("cartpole", ["train.max_steps=100000", *QUICK[1:]])
    # min_delta 100 is never met: EarlyStopping stops after `patience` updates without improvement.
    early = keras.callbacks.EarlyStopping(monitor="running_reward", mode="max", min_delta=100, patience=2)
    callbacks = [
        early,
        keras.callbacks.CSVLogger(str(log)),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: updates.append(logs["update"])),
    ]
    result = pgkeras.train(config, tmp_path / "run", callbacks=callbacks, progress=quiet())

    assert result.updates == 3 and updates == [1, 2, 3] and early.stopped_epoch == 2
    # The run ended with a checkpoint of update 3, though checkpoint_every is 1000.
    state = json.loads((list_checkpoints(tmp_path / "run")[0] / "state.json").read_text())
    assert state["update"] == 3
    with log.open() as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    expected = [row["running_reward"] for row in read_metrics(tmp_path / "run" / "metrics.csv")]
    np.testing.assert_allclose([float(row["running_reward"]) for row in rows], expected, rtol=1e-5)


class BreakTheWeights(keras.callbacks.Callback):
    """Makes the policy's weights NaN before update `update`, so that its loss is NaN."""

    def __init__(self, update):
        super().__init__()
        self.update = update

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.update:
            self.model.set_weights([np.full_like(w, np.nan) for w in self.model.get_weights()])


def test_terminate_on_nan_ends_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    config = pgkeras.load_config("cartpole", ["train.max_steps=100000", "train.checkpoint_every=1"])
    callbacks = [BreakTheWeights(update=3), keras.callbacks.TerminateOnNaN()]
    result = pgkeras.train(config, tmp_path / "run", callbacks=callbacks, progress=quiet())

    assert result.updates == 2 and not result.interrupted
    assert len(read_metrics(tmp_path / "run" / "metrics.csv")) == 2
    saved = pgkeras.load_policy(tmp_path / "run" / "model.keras")
    assert all(np.isfinite(w).all() for w in saved.get_weights())
    assert json.loads((list_checkpoints(tmp_path / "run")[0] / "state.json").read_text())["update"] == 2

    # Without TerminateOnNaN the trainer stops with an error that says how to go on.
    with pytest.raises(
        FloatingPointError, match="resume from the last checkpoint with a lower learning rate"
    ):
        pgkeras.train(config, tmp_path / "again", callbacks=[BreakTheWeights(update=3)], progress=quiet())


def test_stop_at_running_reward_ends_the_run_at_that_level(tmp_path):
    config = pgkeras.load_config("cartpole", ["train.stop_at_running_reward=25", "train.max_steps=100000"])
    result = pgkeras.train(config, tmp_path / "run", progress=quiet())
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert result.running_reward >= 25 and rows[-1]["running_reward"] >= 25
    assert all(row["running_reward"] < 25 for row in rows[:-1])
    assert (tmp_path / "run" / "best.keras").is_file()


class MatchTheSign(gym.Env):
    """Observation: +1 or -1. Reward 1 for the action that names its sign (1 for +1), 0 otherwise;
    10 steps per episode. A learned policy scores 10, a random one 5."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = 0
        self.sign = self.np_random.choice([-1.0, 1.0])
        return np.array([self.sign], np.float32), {}

    def step(self, action):
        reward = float(int(action) == (self.sign > 0))
        self.steps += 1
        self.sign = self.np_random.choice([-1.0, 1.0])
        return np.array([self.sign], np.float32), reward, self.steps >= 10, False, {}


class FollowTheTarget(gym.Env):
    """One continuous action; reward -(action - target)^2 for a target drawn in [-1, 1] each step."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Box(-5.0, 5.0, shape=(1,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps, self.target = 0, self.np_random.uniform(-1, 1)
        return np.array([self.target], np.float32), {}

    def step(self, action):
        reward = -float((np.asarray(action).reshape(-1)[0] - self.target) ** 2)
        self.steps += 1
        self.target = self.np_random.uniform(-1, 1)
        return np.array([self.target], np.float32), reward, self.steps >= 5, False, {}


def test_your_own_environment_trains_and_resumes_exactly(tmp_path):
    config = pgkeras.load_config("cartpole", ["train.max_steps=4000", "train.checkpoint_every=1000"])
    result = pgkeras.train(config, tmp_path / "run", env=MatchTheSign, progress=quiet())
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert rows[0]["episode_reward_mean"] < 7 and rows[-1]["episode_reward_mean"] > 9, rows
    assert result.model.input_shape == (None, 1) and result.model.output_shape == (None, 2)

    # A stop between checkpoints and a resume (the games are replayed) repeat the uninterrupted run.
    from conftest import StopAt, timing_free

    pgkeras.train(config, tmp_path / "resumed", env=MatchTheSign, callbacks=[StopAt(5)], progress=quiet())
    pgkeras.train(config, tmp_path / "resumed", env=MatchTheSign, resume=True, progress=quiet())
    assert timing_free(read_metrics(tmp_path / "resumed" / "metrics.csv")) == timing_free(rows)


def test_your_own_continuous_environment_or_vector_env(tmp_path):
    # The best mean action is the target itself: theta = 1 (it starts at 0).
    settings = ["train.max_steps=60000", "train.samples_per_update=1000", "train.learning_rate=0.05"]
    config = pgkeras.load_config("lqr_linear_gaussian", settings)
    result = pgkeras.train(config, tmp_path / "gaussian", env=FollowTheTarget, progress=quiet())
    (theta,) = result.model.get_layer("theta").get_weights()[0][:, 0]
    assert abs(theta - 1) < 0.2, theta

    ready = gym.vector.SyncVectorEnv([MatchTheSign] * 4, autoreset_mode=AutoresetMode.SAME_STEP)
    config = pgkeras.load_config("cartpole", ["train.max_steps=1000", "env.num_envs=4"])
    result = pgkeras.train(config, tmp_path / "vector", env=ready, progress=quiet())
    assert result.env_steps >= 1000


def test_an_environment_that_cannot_be_used_is_one_line_and_writes_nothing(tmp_path):
    config = pgkeras.load_config("cartpole", QUICK)
    next_step = gym.vector.SyncVectorEnv([MatchTheSign] * 2)  # gymnasium's default autoreset
    with pytest.raises(pgkeras.ConfigError, match=r"^env: expected a VectorEnv with autoreset_mode="):
        pgkeras.train(config, tmp_path / "a", env=next_step)
    config = pgkeras.load_config("cartpole", [*QUICK, "eval.every_updates=5"])
    ready = gym.vector.SyncVectorEnv([MatchTheSign] * 2, autoreset_mode=AutoresetMode.SAME_STEP)
    with pytest.raises(pgkeras.ConfigError, match=r"^eval.every_updates: evaluation needs games of its own"):
        pgkeras.train(config, tmp_path / "a", env=ready)
    config = pgkeras.load_config("cartpole", [*QUICK, "rollout.backend=processes"])
    with pytest.raises(pgkeras.ConfigError, match=r"^rollout.backend: your own env plays in this process"):
        pgkeras.train(config, tmp_path / "b", env=MatchTheSign)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
