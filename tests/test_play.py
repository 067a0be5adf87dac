"""Play, record and plot, as users run them: real subprocesses on a freshly trained tiny run."""

import os
import subprocess

import imageio.v2 as imageio
import imageio.v3 as iio
import keras
import numpy as np
import pytest
from conftest import CONFIGS, PYTHON, REPO, SCRIPTS

from pgkeras.config import ModelConfig, TrainConfig, load_config
from pgkeras.metrics import read_metrics
from pgkeras.policies import build_policy
from pgkeras.train import train


def run(*args, env=None, timeout=300):
    return subprocess.run([PYTHON, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("play") / "run"
    settings = [
        "env.num_envs=2",
        "train.samples_per_update=500",
        "train.max_steps=1500",
        "model.hidden_units=[16]",
    ]
    config = load_config(CONFIGS / "pong.yaml", settings)
    train(config, run_dir)
    return run_dir


@pytest.mark.slow
def test_play_prints_scores_and_records_video_and_gif(tiny_run, tmp_path):
    video, gif = tmp_path / "game.mp4", tmp_path / "game.gif"
    result = run(SCRIPTS / "play_pong.py", "--model", tiny_run / "model.keras", "--max-steps", 300,
                 "--video", video, "--gif", gif, "--seed", 3)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "episode 1: agent " in result.stdout and "built-in AI" in result.stdout
    assert "300 steps (cut by --max-steps)" in result.stdout
    assert "win rate" in result.stdout
    # A comprehension, not list(): the reader reports an infinite length for MP4 files.
    frames = np.stack([frame for frame in imageio.get_reader(video)])  # noqa: C416
    assert frames.shape == (301, 210, 160, 3)  # the first screen, then one per step
    assert frames.std() > 10  # a real game screen, not a blank one
    gif_frames = iio.imread(gif, index=None)
    # Pillow merges identical consecutive frames of a GIF into one longer frame (a still paddle
    # between points), so a GIF may hold a few frames fewer than the video.
    assert gif_frames.shape[1:3] == (210, 160) and 250 <= gif_frames.shape[0] <= 301


@pytest.mark.slow
def test_run_folder_plays_its_best_model_greedily(tiny_run):
    result = run(SCRIPTS / "play_pong.py", "--model", tiny_run, "--max-steps", 100, "--greedy")
    assert result.returncode == 0, result.stderr
    assert "100 steps" in result.stdout


@pytest.mark.slow
def test_play_takes_sticky_actions_as_an_option(tiny_run):
    result = run(
        SCRIPTS / "play_pong.py", "--model", tiny_run, "--max-steps", 100, "--sticky-action-prob", 0.25
    )
    assert result.returncode == 0, result.stderr
    bad = run(SCRIPTS / "play_pong.py", "--model", tiny_run, "--sticky-action-prob", 1.5)
    assert bad.returncode == 2
    assert (
        bad.stderr.strip() == "error: --sticky-action-prob: got 1.5, expected a number in [0, 1), e.g. 0.25"
    )


def test_greedy_evaluation_of_deterministic_pong_plays_one_game():
    from pgkeras.evaluation import make_eval_env

    def games(*overrides):
        env = make_eval_env(load_config(CONFIGS / "pong.yaml", ["eval.episodes=6", *overrides]))
        env.close()
        return env.num_envs, env.sticky_action_prob

    assert games("eval.greedy=true") == (1, 0.0)  # six identical games otherwise
    assert games("eval.greedy=false") == (6, 0.0)
    assert games("eval.greedy=true", "eval.sticky_action_prob=0.25") == (6, 0.25)


def test_model_that_does_not_fit_the_game_is_refused(tmp_path):
    model_path = tmp_path / "cartpole.keras"
    build_policy(ModelConfig(hidden_units=[8]), TrainConfig(), (4,), 2).save(model_path)
    video = tmp_path / "never.mp4"
    result = run(SCRIPTS / "play_pong.py", "--model", model_path, "--config", CONFIGS / "pong.yaml",
                 "--video", video)  # fmt: skip
    assert result.returncode == 2
    assert "(None, 4) -> (None, 2)" in result.stderr and "(None, 6400) -> (None, 2)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not video.exists()


def test_model_file_with_code_is_refused(tmp_path):
    inputs = keras.Input((6400,))
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Lambda(lambda x: x * 2)(inputs))
    model_path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(model_path)
    result = run(SCRIPTS / "play_pong.py", "--model", model_path, "--config", CONFIGS / "pong.yaml")
    assert result.returncode == 2
    assert "cannot load a Keras model safely" in result.stderr
    assert "Traceback" not in result.stderr


def test_render_human_without_display_suggests_video(tmp_path):
    model_path = tmp_path / "pong.keras"
    build_policy(ModelConfig(hidden_units=[8]), TrainConfig(), (80, 80), 2).save(model_path)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = run(SCRIPTS / "play_pong.py", "--model", model_path, "--config", CONFIGS / "pong.yaml",
                 "--render", "human", env=env)  # fmt: skip
    assert result.returncode == 2
    assert "needs a display" in result.stderr and "--video" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_plot_overlays_runs_into_a_png(tiny_run, tmp_path):
    assert (tiny_run / "curve.png").is_file()  # drawn by the trainer at its last checkpoint
    out = tmp_path / "both.png"
    result = run(SCRIPTS / "plot_run.py", tiny_run, tiny_run, "--out", out)
    assert result.returncode == 0, result.stderr
    image = iio.imread(out)
    assert image.ndim == 3 and image.shape[0] > 400 and image.shape[1] > 600


def test_plot_of_a_folder_without_metrics_fails_clearly(tmp_path):
    result = run(SCRIPTS / "plot_run.py", tmp_path, "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "no metrics.csv" in result.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_evaluation_during_training_logs_and_keeps_best(tmp_path):
    config = load_config(CONFIGS / "pong.yaml", ["env.num_envs=2", "train.samples_per_update=500",
                                                 "train.max_steps=1500", "model.hidden_units=[16]",
                                                 "eval.every_updates=2", "eval.episodes=1"])  # fmt: skip
    train(config, tmp_path / "run")
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    evaluated = [row["eval_reward_mean"] for row in rows if not np.isnan(row["eval_reward_mean"])]
    assert len(evaluated) == len(rows) // 2
    assert all(-21 <= value <= 21 for value in evaluated)
    assert (tmp_path / "run" / "best.keras").is_file()


def test_any_atari_game_trains_plays_and_records(tmp_path):
    settings = ["rollout.backend=local", "env.num_envs=2", "env.max_episode_steps=150",
                "train.samples_per_update=300", "train.max_steps=600", "model.hidden_units=[16]"]  # fmt: skip
    train(load_config("breakout", settings), tmp_path / "run")
    gif = tmp_path / "breakout.gif"
    result = run("-m", "pgkeras", "play", tmp_path / "run", "--episodes", 2, "--max-steps", 200, "--gif", gif)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("episode 1: score ") and "2 episodes: mean reward" in lines[-2]
    assert "win rate" not in result.stdout  # Pong's only
    frames = iio.imread(gif)
    assert frames.shape[1:3] == (210, 160) and len(frames) > 100
