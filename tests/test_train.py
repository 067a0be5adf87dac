"""Real training runs through `train()`: Pong writes every artefact and resumes; CartPole learns."""

import json

import keras
import numpy as np
import pytest
from conftest import CONFIGS

from pgkeras.config import load_config
from pgkeras.metrics import COLUMNS, read_metrics
from pgkeras.train import train

TINY_PONG = ["env.num_envs=4", "train.samples_per_update=1000", "train.checkpoint_every=2",
             "model.hidden_units=[16]"]  # fmt: skip


@pytest.mark.slow
def test_short_pong_run_writes_every_artefact_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    config = load_config(CONFIGS / "pong.yaml", [*TINY_PONG, "train.max_steps=5000"])
    result = train(config, run_dir)

    assert result.env_steps >= 5000 and result.updates >= 4
    for name in ("config.yaml", "metrics.csv", "model.keras", "best.keras"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert load_config(run_dir / "config.yaml") == config

    rows = read_metrics(run_dir / "metrics.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert [row["update"] for row in rows] == list(range(1, result.updates + 1))
    assert all(row["batch_size"] >= 1000 for row in rows)
    assert rows[-1]["env_steps"] == result.env_steps
    assert all(np.isfinite(row["loss"]) and row["steps_per_second"] > 0 for row in rows)

    model = keras.models.load_model(run_dir / "model.keras")
    assert model.input_shape == (None, 6400) and model.output_shape == (None, 2)
    state = json.loads(sorted((run_dir / "checkpoints").iterdir())[-1].joinpath("state.json").read_text())
    assert state["update"] == result.updates

    config.train.max_steps = 9000
    resumed = train(config, run_dir, resume=True)
    assert resumed.updates > result.updates and resumed.env_steps >= 9000
    rows = read_metrics(run_dir / "metrics.csv")
    assert [row["update"] for row in rows] == list(range(1, resumed.updates + 1))
    assert rows[result.updates]["env_steps"] > rows[result.updates - 1]["env_steps"]


@pytest.mark.slow
def test_cartpole_learns_with_the_trick(tmp_path):
    """A broken gradient sign or scale fails this: random play lasts ~20 steps, the cap is 500."""
    config = load_config(CONFIGS / "cartpole.yaml")
    train(config, tmp_path / "cartpole")
    rows = read_metrics(tmp_path / "cartpole" / "metrics.csv")
    assert rows[-1]["env_steps"] <= config.train.max_steps + 8 * 500
    recent = [row["episode_reward_mean"] for row in rows[-5:]]
    assert np.mean(recent) > 150, recent
