"""Shared test setup: quiet TensorFlow, repository paths, a seeded Keras, and full float32 products."""

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
SCRIPTS = REPO / "scripts"
PYTHON = sys.executable

# On recent NVIDIA GPUs both backends multiply float32 matrices in TF32 (10-bit mantissas) unless told
# otherwise, which is fine for training but not for tests that compare an update with the exact
# policy-gradient step. On a CPU this changes nothing.
if keras.backend.backend() == "jax":
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
elif keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(1234)
    yield


def timing_free(rows):
    """Metrics rows without their timing columns: what must repeat exactly from run to run."""
    return [{k: v for k, v in row.items() if k not in ("steps_per_second", "wall_time")} for row in rows]


class StopAt(keras.callbacks.Callback):
    """Ends a run after update `update` (`model.stop_training`, as Keras's EarlyStopping does)."""

    def __init__(self, update):
        super().__init__()
        self.update = update

    def on_epoch_end(self, epoch, logs=None):
        if logs["update"] >= self.update:
            self.model.stop_training = True


class Record(keras.callbacks.Callback):
    """Calls `function(logs, model)` after every update."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def on_epoch_end(self, epoch, logs=None):
        self.function(logs, self.model)


def fresh_policy_parameters(config):
    """The numpy parameters (`pgkeras.policies.dense_parameters`) of a freshly initialised policy for
    `config`, as a learner sends them to rollout workers."""
    from pgkeras.envs import make_env
    from pgkeras.policies import build_policy, dense_parameters

    env = make_env(config, num_envs=1)
    model = build_policy(config.model, config.train, env.observation_shape, env.num_actions)
    env.close()
    return dense_parameters(model)


class Choosing(NamedTuple):
    """A policy for the collector whose actions a test function chooses."""

    sample: Callable[[np.ndarray], np.ndarray]


def random_choices(seed):
    """A chooser that draws actions uniformly from its own seeded generator (one per batch, so
    two collectors given the same seed make the same draws)."""
    rng = np.random.default_rng(seed)

    def choose(observations):
        return rng.integers(0, 2, size=len(observations)).astype(np.int32)

    return choose
