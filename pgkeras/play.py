"""Play saved policies: evaluate them, print Pong scores, record MP4/GIF, or show a window."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

from pgkeras.checkpoints import ModelFileError, load_policy
from pgkeras.config import Config, config_from_dict
from pgkeras.envs import is_atari, is_pong, make_env
from pgkeras.policies import ActionSampler, policy_output_shape

# One agent step is frame_skip emulator frames; Atari runs at 60 frames per second.
ATARI_FPS = 60


class PlayError(ValueError):
    """Playing cannot start: wrong model, config or output option. The message is one line."""


class EpisodeScore(NamedTuple):
    """One episode: its points won and lost (steps with positive and negative reward), and its score."""

    agent_points: int
    opponent_points: int
    steps: int
    finished: bool
    """False when `--max-steps` cut the episode short."""
    score: float | None = None
    """The total reward; None means agent_points - opponent_points (Pong)."""

    @property
    def reward(self) -> float:
        return self.agent_points - self.opponent_points if self.score is None else self.score


def resolve_model_path(path: str | Path) -> Path:
    """A `.keras` file stays as it is; a run folder means its `best.keras`."""
    path = Path(path)
    if path.is_dir():
        best = path / "best.keras"
        if not best.is_file():
            raise PlayError(f"{path}: run folder has no best.keras; pass a .keras file with --model")
        return best
    return path


def find_run_config(model_path: Path) -> Path | None:
    """The `config.yaml` of the run a model file belongs to (run folder or one of its checkpoints)."""
    for folder in (model_path.parent, *model_path.parents[1:3]):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def load_run_config(model_path: Path, config_path: Path | None = None) -> Config:
    """Loads `--config` if given, else the run's saved config; raises `PlayError` if neither exists."""
    import yaml

    from pgkeras.config import load_config

    if config_path is not None:
        return load_config(config_path)
    saved = find_run_config(model_path)
    if saved is None:
        raise PlayError(f"{model_path}: no config.yaml beside it or in its run folder; pass --config")
    return config_from_dict(yaml.safe_load(saved.read_text()) or {}, source=str(saved))


def check_model_fits_env(model: keras.Model, model_path: Path, env, env_id: str) -> None:
    """Raises `ModelFileError` naming both shapes when the model cannot play this environment."""
    expected_in, expected_out = (None, env.observation_size), (None, env.num_actions)
    # A two-action game also takes a one-unit sigmoid policy (P of the first action).
    outputs = {expected_out, (None, 1)} if env.num_actions == 2 else {expected_out}
    if tuple(model.input_shape) != expected_in or policy_output_shape(model) not in outputs:
        raise ModelFileError(
            f"{model_path}: model maps {tuple(model.input_shape)} -> {policy_output_shape(model)}, "
            f"but {env_id} needs {expected_in} -> {expected_out}; use a model trained on this environment"
        )


def make_play_env(model: keras.Model, config: Config, model_path: Path):
    """One colour Atari game for `model`; raises `PlayError` / `ModelFileError` if they do not fit."""
    if not is_atari(config.env.id):
        raise PlayError(
            f"env.id: play plays Atari games (ALE/...), but the run's config names {config.env.id!r}"
        )
    env = make_env(config, num_envs=1, rgb=True)
    try:
        check_model_fits_env(model, model_path, env, config.env.id)
    except ModelFileError:
        env.close()
        raise
    return env


FrameSink = Callable[[np.ndarray], None]


class Mp4Writer:
    """Streams RGB frames to an H.264 MP4 through imageio's ffmpeg plugin."""

    def __init__(self, path: Path, fps: float):
        import imageio.v2 as imageio

        # macro_block_size=2 keeps the 210x160 screen as it is (the default 16 would resize it).
        self._writer = imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=2, quality=8)

    def __call__(self, frame: np.ndarray) -> None:
        self._writer.append_data(frame)

    def close(self) -> None:
        self._writer.close()


class GifWriter:
    """Collects frames as 8-bit palette images (a third of RGB's memory) and writes an animated GIF
    with Pillow on close. Pong shows a handful of colours, so the palette is lossless."""

    def __init__(self, path: Path, fps: float):
        self.path, self.duration_ms = path, 1000.0 / fps
        self._frames: list = []

    def __call__(self, frame: np.ndarray) -> None:
        from PIL import Image

        self._frames.append(Image.fromarray(frame).quantize(colors=16, method=Image.Quantize.MAXCOVERAGE))

    def close(self) -> None:
        if self._frames:
            first, *rest = self._frames
            first.save(self.path, save_all=True, append_images=rest, duration=self.duration_ms, loop=0)
        self._frames = []


class HumanWindow:
    """Shows frames in a matplotlib window. Needs a display and an interactive matplotlib backend."""

    def __init__(self, fps: float):
        if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        ):
            raise PlayError("--render human needs a display, and none was found (DISPLAY is not set); "
                            "record the game with --video out.mp4 or --gif out.gif instead")  # fmt: skip
        import matplotlib.pyplot as plt

        backend = plt.get_backend()
        if backend.lower() in ("agg", "pdf", "svg", "ps", "cairo", "template"):
            raise PlayError(f"--render human needs an interactive matplotlib backend, found {backend!r}; "
                            "record the game with --video out.mp4 instead")  # fmt: skip
        self._plt, self._pause = plt, 1.0 / fps
        self._image = None

    def __call__(self, frame: np.ndarray) -> None:
        if self._image is None:
            self._image = self._plt.imshow(frame)
            self._plt.axis("off")
        else:
            self._image.set_data(frame)
        self._plt.pause(self._pause)

    def close(self) -> None:
        self._plt.close("all")


def play(
    model: keras.Model | str | Path,
    config: Config | None = None,
    num_episodes: int = 1,
    max_steps: int | None = None,
    greedy: bool = False,
    seed: int = 0,
    sinks: list[FrameSink] = (),
    report: Callable[[str], None] = print,
    model_path: Path = Path("model"),
    gif: str | Path | None = None,
) -> list[EpisodeScore]:
    """Plays episodes of an Atari game (Pong...) with a policy, one game, feeding each RGB screen to
    `sinks`.

    Args:
        model: the policy; its input and output must fit the config's environment. Or a run folder
            (its `best.keras`) or a `.keras` file, loaded in safe mode.
        config: the run's settings (frame skip, sticky actions); None: the `config.yaml` of the
            run that `model` (a path) belongs to.
        num_episodes: episodes to play.
        max_steps: stop after this many agent steps in all (the episode then counts as unfinished).
        greedy: take the most probable action instead of sampling.
        seed: seeds the game and the action sampler.
        sinks: callables receiving every screen, uint8 `(210, 160, 3)` (video, GIF, window).
        report: receives one line per finished episode.
        model_path: named in errors.
        gif: also write an animated GIF of the game screen here.

    Returns:
        One `EpisodeScore` per episode played.

    Raises:
        PlayError, ModelFileError: the model or config cannot play (one line).

    Example:
        >>> scores = pgkeras.play("runs/pong", num_episodes=1, gif="pong.gif")  # doctest: +SKIP
        episode 1: agent 21 - 0 built-in AI (+21), 1,640 steps
    """
    if not isinstance(model, keras.Model):
        model_path = resolve_model_path(model)
        model = load_policy(model_path)
    if config is None:
        config = load_run_config(model_path)
    env = make_play_env(model, config, model_path)
    if gif is not None:
        sinks = [*sinks, GifWriter(Path(gif), ATARI_FPS / config.env.frame_skip)]
    try:
        sampler = ActionSampler(model, np.random.default_rng(seed))
        observations = env.reset(seed=seed)
        for sink in sinks:
            sink(env.last_screens[0])
        scores: list[EpisodeScore] = []
        pong = is_pong(config.env.id)
        agent = opponent = steps = total_steps = 0
        total = 0.0
        while len(scores) < num_episodes and (max_steps is None or total_steps < max_steps):
            result = env.step(sampler.sample(observations, greedy=greedy))
            reward = float(result.rewards[0])
            agent, opponent, total = agent + (reward > 0), opponent + (reward < 0), total + reward
            steps, total_steps = steps + 1, total_steps + 1
            for sink in sinks:
                sink(env.last_screens[0])
            if result.terminated[0] or result.truncated[0]:
                scores.append(EpisodeScore(agent, opponent, steps, True, None if pong else total))
                report(_episode_line(len(scores), scores[-1]))
                agent = opponent = steps = 0
                total = 0.0
            observations = result.observations
        if steps and len(scores) < num_episodes:
            scores.append(EpisodeScore(agent, opponent, steps, False, None if pong else total))
            report(_episode_line(len(scores), scores[-1]))
        return scores
    finally:
        env.close()
        if gif is not None:
            sinks[-1].close()


def summarize(scores: list[EpisodeScore]) -> str:
    """One line: mean and best reward over the episodes, and in Pong the win rate."""
    if not scores:
        return "no steps played"
    rewards = [s.reward for s in scores]
    text = f"{len(scores)} episodes: mean reward {np.mean(rewards):+.2f}, best {max(rewards):+g}"
    if scores[0].score is not None:
        return text
    wins = sum(s.agent_points > s.opponent_points for s in scores)
    return text + f", win rate {wins / len(scores):.0%}"


def _episode_line(number: int, score: EpisodeScore) -> str:
    cut = "" if score.finished else " (cut by --max-steps)"
    if score.score is not None:
        return f"episode {number}: score {score.score:g}, {score.steps:,} steps{cut}"
    return (
        f"episode {number}: agent {score.agent_points} - {score.opponent_points} built-in AI "
        f"({score.reward:+d}), {score.steps:,} steps{cut}"
    )
