"""Vectorised games: Pong through ale-py's C++ vector env, a linear-quadratic regulator in numpy,
anything else through gymnasium.

All kinds step all their games at once and reset finished games in the same step (gymnasium's
`SAME_STEP` autoreset), so every returned row is a real transition and no step is wasted.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from pgkeras.config import LQR_ID, PONG_IDS, Config, LQRConfig
from pgkeras.preprocess import (
    FRAME_HEIGHT,
    FRAME_SIZE,
    FRAME_WIDTH,
    SCREEN_HEIGHT,
    SCREEN_WIDTH,
    FrameDifference,
    atari_frames,
    background_gray,
    pong_frames,
    pool_frames,
)

# Indices into Pong's minimal action set [NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE]:
# RIGHT moves the agent's paddle up and LEFT moves it down (Karpathy's actions 2 and 3).
PONG_ACTIONS = np.array([2, 3], dtype=np.int32)
PONG_ACTION_NAMES = ("UP", "DOWN")
# `env.actions: all`: the whole minimal set, named as the paddle moves.
PONG_ALL_ACTIONS = np.arange(6, dtype=np.int32)
PONG_ALL_ACTION_NAMES = ("NOOP", "FIRE", "UP", "DOWN", "UPFIRE", "DOWNFIRE")
# `env.actions: noop_updown`: the three moves. FIRE moves the paddle as NOOP does, UPFIRE as UP and
# DOWNFIRE as DOWN (the paddle's height in the console's RAM, byte 51, follows the same path), so
# `all` holds each move twice.
PONG_NOOP_UPDOWN_ACTIONS = np.array([0, 2, 3], dtype=np.int32)
PONG_NOOP_UPDOWN_ACTION_NAMES = ("NOOP", "UP", "DOWN")


def pong_action_set(actions: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Indices into Pong's minimal action set, and their names, for `env.actions` (updown,
    noop_updown or all)."""
    if actions == "all":
        return PONG_ALL_ACTIONS, PONG_ALL_ACTION_NAMES
    if actions == "noop_updown":
        return PONG_NOOP_UPDOWN_ACTIONS, PONG_NOOP_UPDOWN_ACTION_NAMES
    return PONG_ACTIONS, PONG_ACTION_NAMES


def ale_game(env_id: str) -> str:
    """The ROM name of an ALE id (`ALE/SpaceInvaders-v5` -> `space_invaders`), from gymnasium's
    registry; Pong's short ids give `pong`.

    Raises:
        ValueError: not an ALE game (with gymnasium's reason, e.g. a misspelt name).
    """
    if env_id in PONG_IDS:
        return "pong"
    import ale_py

    gym.register_envs(ale_py)  # the ALE namespace, so that a misspelt game gets a suggestion
    try:
        return gym.spec(env_id).kwargs["game"]
    except (gym.error.Error, KeyError) as error:
        raise ValueError(f"env.id: cannot make {env_id!r}: {error}") from None


class GameFacts(NamedTuple):
    """What pgkeras reads from a game's ROM once (`game_facts`)."""

    action_names: tuple[str, ...]
    """The minimal action set, e.g. Breakout's ("NOOP", "FIRE", "RIGHT", "LEFT")."""
    background_gray: int
    """The commonest grayscale value of the first screen (`pgkeras.preprocess.background_gray`)."""
    background_colour: tuple[int, int, int]
    """The colour of those pixels, for the RGB screens of recordings."""


@functools.cache
def game_facts(game: str) -> GameFacts:
    """Loads the game's ROM in a bare emulator and reads its action set and background."""
    from ale_py import ALEInterface, LoggerMode, roms

    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.loadROM(roms.get_rom_path(game))
    ale.reset_game()
    gray, rgb = ale.getScreenGrayscale(), ale.getScreenRGB()
    value = background_gray(gray)
    colour = np.bincount(rgb[gray == value].astype(np.int64) @ [65536, 256, 1]).argmax()
    names = tuple(action.name for action in ale.getMinimalActionSet())
    return GameFacts(names, value, (int(colour >> 16), int(colour >> 8 & 255), int(colour & 255)))


def game_action_set(game: str, actions: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Indices into the game's minimal action set and their names: Pong's `env.actions` (updown,
    noop_updown or all), and for every other game its whole minimal set."""
    if game == "pong":
        return pong_action_set(actions)
    names = game_facts(game).action_names
    return np.arange(len(names), dtype=np.int32), names


class FramesOf:
    """A game's screens (grayscale, or RGB for recording) -> 0/1 frame vectors: Karpathy's for
    Pong, `atari_frames` for the others, `blank_columns` of the 80x80 frame set to background
    (`env.blank_columns`), max-pooled over `pool` x `pool` blocks (`env.frame_pool`)."""

    def __init__(self, game: str, pool: int = 1, blank_columns: tuple[int, ...] = ()):
        self.facts = None if game == "pong" else game_facts(game)
        self.pool = pool
        self.blank_columns = list(blank_columns)
        self.shape = (FRAME_HEIGHT // pool, FRAME_WIDTH // pool)
        self.size = self.shape[0] * self.shape[1]

    def __call__(self, screens: np.ndarray) -> np.ndarray:
        if self.facts is None:
            frames = pong_frames(screens)
        else:
            background = self.facts.background_colour if screens.ndim == 4 else self.facts.background_gray
            frames = atari_frames(screens, background)
        if self.blank_columns:
            frames.reshape(len(frames), FRAME_HEIGHT, FRAME_WIDTH)[:, :, self.blank_columns] = 0
        return frames if self.pool == 1 else pool_frames(frames, self.pool)


class Observe:
    """0/1 frames of `frame_shape` -> what the policy sees (`env.frames`): their differences, or
    the frame and the difference side by side, the frame without `blank_frame_columns` (of the
    80x80 frame; `env.blank_columns_in: frame`); with `projections` (`env.projections`) each
    image's row sums and column sums follow it."""

    def __init__(
        self,
        frames: str = "difference",
        frame_shape: tuple[int, int] = (FRAME_HEIGHT, FRAME_WIDTH),
        projections: bool = False,
        blank_frame_columns: tuple[int, ...] = (),
    ):
        self.stacked = frames == "frame_and_difference"
        pool = FRAME_WIDTH // frame_shape[1]  # blank_frame_columns are columns of the 80x80 frame
        self.blank_frame_columns = sorted({column // pool for column in blank_frame_columns})
        self.images = (2 if self.stacked else 1, *frame_shape)
        self.projections = projections
        self.shape = self.images if self.stacked else tuple(frame_shape)
        if projections:  # no longer an image: one flat vector, the images then their sums
            planes, height, width = self.images
            self.shape = (int(np.prod(self.shape)) + planes * (height + width),)
        self.size = int(np.prod(self.shape))

    def __call__(
        self, frames: np.ndarray, difference: FrameDifference, new_episode: np.ndarray
    ) -> np.ndarray:
        """int8 observations for uint8 0/1 frames `(N, frame_size)`, advancing `difference`."""
        changes = difference(frames, new_episode)
        images = np.concatenate([frames.view(np.int8), changes], axis=1) if self.stacked else changes
        if self.blank_frame_columns:  # the still frame only: what moves there shows in the difference
            planes, height, width = self.images
            images.reshape(len(images), planes, height, width)[:, 0, :, self.blank_frame_columns] = 0
        if not self.projections:
            return images
        return np.concatenate([images, image_projections(images, self.images)], axis=1)


def image_projections(images: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Each image's row sums, then its column sums: int8 `(N, C * (H + W))` for int8 images
    `(N, C * H * W)` of `shape` `(C, H, W)` with values in {-1, 0, 1} (a sum stays within +-80).

    A small object adds 1 to its row's sum wherever its column is, so a Dense layer reading the sums
    learns "the ball is at this height" once for every column, where on the image alone it has a
    weight of its own for each of the ball's positions.

    Example:
        >>> image = np.array([[0, 1, 0, 0, 1, 1]], np.int8)  # one 2x3 image
        >>> image_projections(image, (1, 2, 3)).tolist()  # rows 1, 2; columns 0, 2, 1
        [[1, 2, 0, 2, 1]]
    """
    planes = images.reshape(len(images), *shape)
    rows = planes.sum(axis=3, dtype=np.int16)
    columns = planes.sum(axis=2, dtype=np.int16)
    return np.concatenate([rows, columns], axis=2).reshape(len(images), -1).astype(np.int8)


STICKY_PRIMING_ACTS = 100
"""Frames acted to set a restored game's sticky action: it stays unset with probability p^100
(1e-60 at ALE v5's p = 0.25)."""


class StepResult(NamedTuple):
    """What one step of all games returns. Row i belongs to game i."""

    observations: np.ndarray
    """`(N, observation_size)`: the next observation; for a game that just ended, the first of
    its next episode."""
    rewards: np.ndarray
    """float32 `(N,)`."""
    terminated: np.ndarray
    """bool `(N,)`: the episode ended by the game's rules."""
    truncated: np.ndarray
    """bool `(N,)`: the episode was cut by a step limit."""
    lives_lost: np.ndarray | None = None
    """bool `(N,)`: the game lost a life in this step and goes on (Atari); None for games without lives."""


GameState = dict[str, np.ndarray]
"""The state of a vectorised game as named numpy arrays (no pickle): what a checkpoint stores so
that the games go on exactly where they were (`get_state`, `set_state`)."""


def pack_bytes(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings as one uint8 array and their lengths (for `numpy.savez`, which then needs no pickle)."""
    return np.frombuffer(b"".join(blobs), np.uint8).copy(), np.array([len(b) for b in blobs], np.int64)


def unpack_bytes(data: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """The byte strings that `pack_bytes` packed."""
    ends = np.cumsum(lengths)
    return [
        data[end - length : end].tobytes()
        for end, length in zip(ends.tolist(), lengths.tolist(), strict=True)
    ]


def check_num_games(state: GameState, key: str, num_envs: int) -> None:
    """Raises ValueError if `state[key]` does not hold one row per game."""
    if key not in state or len(state[key]) != num_envs:
        found = len(state[key]) if key in state else "no"
        raise ValueError(f"the saved games do not fit: {found} games saved for {num_envs}")


class LockstepGroups:
    """`groups`, `send` and `recv` for games that all step at once: one group, stepped by `recv`.

    The collector talks to every env through these three; only `AtariVectorEnv` has real groups.
    """

    num_envs: int

    @property
    def groups(self) -> list[np.ndarray]:
        """Game indices of each group; here a single group of all games."""
        return [np.arange(self.num_envs)]

    def send(self, group: int, actions: np.ndarray) -> None:
        """Keeps the actions for the next `recv`."""
        self._sent_actions = actions

    def recv(self, group: int) -> StepResult:
        """Steps all games with the actions sent."""
        return self.step(self._sent_actions)


def screens_to_observations(
    game: str,
    frames: str,
    frame_pool: int,
    projections: bool,
    blank_columns: tuple[int, ...],
    blank_columns_in: str,
) -> tuple[FramesOf, Observe]:
    """The two stages from screens to what the policy sees, with `env.blank_columns` blanked in
    the 0/1 frames (`all`) or only in the still frame beside the difference (`frame`)."""
    frame_only = blank_columns_in == "frame"
    stage = FramesOf(game, frame_pool, () if frame_only else blank_columns)
    return stage, Observe(frames, stage.shape, projections, blank_columns if frame_only else ())


class AtariVectorEnv:
    """Atari games stepped together in ale-py's C++ vector env, seen as differences of 0/1 frames.

    Observations are int8 `(N, 6400)` differences of consecutive 80x80 0/1 frames: Karpathy's for
    Pong (actions 0, UP, and 1, DOWN), `pgkeras.preprocess.atari_frames` for every other game
    (actions: the indices of its minimal action set).

    The games can be split into `num_groups` groups, each its own ale-py vector env, so that the
    emulator threads play one group while Python chooses the actions of another: `send(group,
    actions)` starts a group's step and returns at once, `recv(group)` waits for it. Each group
    always steps all its games, so the order of events, and so a seeded run, is the same every time.

    Args:
        num_envs: games played at once.
        frame_skip: emulator frames per agent step.
        sticky_action_prob: probability of repeating the previous action.
        max_episode_steps: agent steps after which an episode is cut, or None for ALE's 108,000 frames.
        num_threads: emulator threads per group; 0 lets ale-py choose.
        rgb: ask the emulator for colour screens (for recording); the policy sees the same vectors.
        num_groups: groups of games stepped in turn; must divide `num_envs`.
        actions: Pong's action set, `updown`, `noop_updown` or `all`.
        game: the ALE ROM, e.g. "pong" or "breakout" (`ale_game`).
        frames: `difference`, or `frame_and_difference`: observations `(N, 12800)`, the last 0/1
            frame and then the difference (`observation_shape` (2, 80, 80)).
        frame_pool: max-pool the 80x80 frames over blocks of this side (`env.frame_pool`): 2 gives
            40x40 frames, observations `(N, 1600)`.
        projections: append each image's row and column sums (`env.projections`,
            `image_projections`): observations `(N, 6560)` for 80x80 differences, a flat shape.
        blank_columns: columns of the 80x80 frame the policy never sees (`env.blank_columns`).
        blank_columns_in: `all`, or `frame`: blank only in the still frame (`env.blank_columns_in`).
    """

    observation_shape = (FRAME_HEIGHT, FRAME_WIDTH)
    observation_size = FRAME_SIZE
    observation_dtype = np.dtype(np.int8)
    action_dtype = np.dtype(np.int32)

    def __init__(
        self,
        num_envs: int,
        frame_skip: int = 4,
        sticky_action_prob: float = 0.0,
        max_episode_steps: int | None = None,
        num_threads: int = 0,
        rgb: bool = False,
        num_groups: int = 1,
        actions: str = "updown",
        game: str = "pong",
        frames: str = "difference",
        frame_pool: int = 1,
        projections: bool = False,
        blank_columns: tuple[int, ...] = (),
        blank_columns_in: str = "all",
    ):
        from ale_py.vector_env import AtariVectorEnv as AleVectorEnv

        self.game = game
        self.action_map, self.action_names = game_action_set(game, actions)
        self.frames, self.observe = screens_to_observations(
            game, frames, frame_pool, projections, blank_columns, blank_columns_in
        )
        self.observation_shape, self.observation_size = self.observe.shape, self.observe.size
        self.num_actions = len(self.action_map)

        if num_groups < 1 or num_envs % num_groups:
            raise ValueError(f"num_groups must divide num_envs: got {num_groups} groups for {num_envs} games")
        self.num_envs = num_envs
        group_size = num_envs // num_groups
        self.groups = [np.arange(g * group_size, (g + 1) * group_size) for g in range(num_groups)]
        self.vector_envs = [
            AleVectorEnv(
                game,
                group_size,
                num_threads=num_threads,
                frameskip=frame_skip,
                repeat_action_probability=sticky_action_prob,
                max_num_frames_per_episode=(max_episode_steps * frame_skip if max_episode_steps else 108_000),
                # The full 210x160 screen in grayscale: the crop and downsample happen in
                # self.frames, and a resize here would blur the 2-pixel ball.
                img_height=210,
                img_width=160,
                grayscale=not rgb,
                stack_num=1,
                # No max over the last two frames: it would draw the ball twice.
                maxpool=False,
                noop_max=0,
                use_fire_reset=False,
                reward_clipping=False,
                autoreset_mode=AutoresetMode.SAME_STEP,
            )
            for _ in range(num_groups)
        ]
        self.differences = [FrameDifference(group_size, self.frames.size) for _ in range(num_groups)]
        # The actions of each game's current episode, for `get_state`: ale-py's vector env cannot
        # hand out its emulators' states, so `set_state` replays these instead.
        max_frames = max_episode_steps * frame_skip if max_episode_steps else 108_000
        self._histories = np.zeros((num_envs, -(-max_frames // frame_skip) + 1), np.int8)
        self._history_lengths = np.zeros(num_envs, np.int64)
        self._in_flight: list[np.ndarray | None] = [None] * num_groups
        self._lives = np.zeros(num_envs, np.int64)
        self.rgb = rgb
        self.sticky_action_prob = sticky_action_prob
        self.last_screens: np.ndarray | None = None
        """With `rgb`: the colour screens `(N, 210, 160, 3)` of the latest reset or step (for
        recording). Without, the screens of the latest reset only: steps do not copy them."""

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Starts every game anew; game i is seeded with `seed + i`. Returns zero differences.

        Without sticky actions the seed is not passed on: ALE's Pong then plays the same game for
        every seed and after any earlier play (tests/test_envs.py checks this), and a seed would
        only make ale-py reload the ROM, about 60 ms per game.
        """
        if not self.sticky_action_prob:
            seed = None
        screens = []
        for rows, vector_env in zip(self.groups, self.vector_envs, strict=True):
            group_screens, info = vector_env.reset(seed=None if seed is None else seed + int(rows[0]))
            screens.append(group_screens[:, 0])
            self._lives[rows] = info["lives"]
        self.last_screens = np.concatenate(screens)
        self._history_lengths[:] = 0
        return np.concatenate(
            [
                self.observe(self.frames(self.last_screens[rows]), difference, np.ones(len(rows), dtype=bool))
                for rows, difference in zip(self.groups, self.differences, strict=True)
            ]
        )

    def send(self, group: int, actions: np.ndarray) -> None:
        """Starts one agent step of the games in `group`. `actions`: int indices of `action_names`."""
        self.vector_envs[group].send(self.action_map[actions])
        self._in_flight[group] = actions

    def recv(self, group: int) -> StepResult:
        """Waits for the step of `group` and returns its rows, in the group's game order."""
        # A vector env that steps all its games at once (batch_size == num_envs) writes game i's
        # result into row i, so rows need no reordering (tests/test_envs.py checks the order).
        screens, rewards, terminated, truncated, info = self.vector_envs[group].recv()
        if self.rgb:
            self.last_screens[self.groups[group]] = screens[:, 0]
        done = terminated | truncated
        observations = self.observe(self.frames(screens[:, 0]), self.differences[group], done)
        rows = self.groups[group]
        lives_lost = (info["lives"] < self._lives[rows]) & ~done
        self._lives[rows] = info["lives"]
        self._histories[rows, self._history_lengths[rows]] = self._in_flight[group]
        self._history_lengths[rows] = np.where(done, 0, self._history_lengths[rows] + 1)
        self._in_flight[group] = None
        return StepResult(observations, rewards.astype(np.float32), terminated, truncated, lives_lost)

    def get_state(self) -> GameState:
        """The actions of each game's current episode and its last frame (steps in flight are not
        included: the caller sends their actions again after `set_state`)."""
        lengths = self._history_lengths.copy()
        return {
            "actions": np.concatenate([self._histories[i, :n] for i, n in enumerate(lengths.tolist())]),
            "action_counts": lengths,
            "previous_frames": np.concatenate([difference.previous for difference in self.differences]),
        }

    def set_state(self, state: GameState) -> None:
        """Brings every game to the point `get_state` saw by replaying its episode's actions.

        Pong without sticky actions plays the same game after every reset (tests/test_envs.py), so
        the replay is exact. With sticky actions the emulator's random generator, which ale-py's
        vector env does not expose, differs, and the games go on from other positions.
        A game with n actions to replay starts n steps before the end of the replay (a partial
        reset), so all games of a group finish their replay together; before its start a game is
        played with action 0 and then reset. The replay takes up to an episode's steps, at most a
        few seconds.
        """
        check_num_games(state, "action_counts", self.num_envs)
        counts = state["action_counts"].astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        for game, count in enumerate(counts.tolist()):
            self._histories[game, :count] = state["actions"][offsets[game] : offsets[game] + count]
        for rows, vector_env in zip(self.groups, self.vector_envs, strict=True):
            num_steps = int(counts[rows].max())
            starts = num_steps - counts[rows]
            # Row j plays action 0 until its start, then its episode's actions.
            schedule = np.zeros((len(rows), num_steps), np.int32)
            for j, (game, start) in enumerate(zip(rows.tolist(), starts.tolist(), strict=True)):
                schedule[j, start:] = self._histories[game, : num_steps - start]
            lives = vector_env.reset(seed=None)[1]["lives"].copy()
            for step in range(num_steps + 1):
                starting = starts == step
                if step > 0 and starting.any():
                    reset_lives = vector_env.reset(options={"reset_mask": starting})[1]["lives"]
                    lives[starting] = reset_lives[starting]
                if step < num_steps:
                    lives[:] = vector_env.step(self.action_map[schedule[:, step]])[4]["lives"]
            self._lives[rows] = lives
        self._history_lengths[:] = counts
        self._in_flight = [None] * len(self.groups)
        previous = state["previous_frames"]
        for rows, difference in zip(self.groups, self.differences, strict=True):
            difference.previous[:] = previous[rows]

    def step(self, actions: np.ndarray) -> StepResult:
        """Plays one agent step in every game. `actions`: int `(N,)` indices of `action_names`."""
        for group, rows in enumerate(self.groups):
            self.send(group, actions[rows])
        results = [self.recv(group) for group in range(len(self.groups))]
        return StepResult(*(np.concatenate(parts) for parts in zip(*results, strict=True)))

    def close(self) -> None:
        for vector_env in self.vector_envs:
            vector_env.close()


class AtariSerialEnv(LockstepGroups):
    """The games of `AtariVectorEnv`, played one after another in the calling thread through bare
    `ale_py.ALEInterface` objects: what each worker process of `rollout.backend: processes` runs.

    In a worker, threads only hand each step back and forth: ale-py's vector env with one emulator
    thread wakes that thread and waits for it at every step, and reads each screen twice (for a max
    over the last two frames that `maxpool=False` does not use). Two processes of bare games
    played 7,500-7,700 agent steps/s on 2 cores where the vector env alone played ~7,000 (see
    benchmarks/README.md, "Seventh round"). The Python loop over games costs a few microseconds
    per game step against ~250 us of emulation. Given the same actions, it returns exactly what
    `AtariVectorEnv` returns (tests/test_processes.py checks this).

    Args: as `AtariVectorEnv`, without its threads and groups.
    """

    observation_shape = AtariVectorEnv.observation_shape
    observation_size = AtariVectorEnv.observation_size
    observation_dtype = AtariVectorEnv.observation_dtype
    action_dtype = AtariVectorEnv.action_dtype

    def __init__(
        self,
        num_envs: int,
        frame_skip: int = 4,
        sticky_action_prob: float = 0.0,
        max_episode_steps: int | None = None,
        actions: str = "updown",
        game: str = "pong",
        frames: str = "difference",
        frame_pool: int = 1,
        projections: bool = False,
        blank_columns: tuple[int, ...] = (),
        blank_columns_in: str = "all",
    ):
        from ale_py import ALEInterface, LoggerMode, roms

        self.game = game
        action_map, self.action_names = game_action_set(game, actions)
        self.num_actions = len(action_map)
        self.frames, self.observe = screens_to_observations(
            game, frames, frame_pool, projections, blank_columns, blank_columns_in
        )
        self.observation_shape, self.observation_size = self.observe.shape, self.observe.size

        ALEInterface.setLoggerMode(LoggerMode.Error)
        self.num_envs = num_envs
        self.frame_skip = frame_skip
        self.sticky_action_prob = sticky_action_prob
        self.max_frames = max_episode_steps * frame_skip if max_episode_steps else 108_000
        self._rom = roms.get_rom_path(game)
        self.games = [self._load(ALEInterface(), seed=None) for _ in range(num_envs)]
        self._actions = [self.games[0].getMinimalActionSet()[a] for a in action_map]
        self._frames = np.zeros(num_envs, np.int64)  # emulator frames of each game's episode
        self._lives = np.zeros(num_envs, np.int64)
        self._last_actions = [self._actions[0]] * num_envs  # what a sticky action repeats
        self._screens = np.zeros((num_envs, SCREEN_HEIGHT, SCREEN_WIDTH), np.uint8)
        self._difference = FrameDifference(num_envs, self.frames.size)

    def _load(self, game, seed: int | None):
        game.setFloat("repeat_action_probability", self.sticky_action_prob)
        if seed is not None:
            game.setInt("random_seed", seed)
        game.loadROM(self._rom)
        return game

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Starts every game anew; game i is seeded with `seed + i` (dropped without sticky
        actions, as in `PongVectorEnv.reset`). Returns zero differences."""
        for i, game in enumerate(self.games):
            if seed is not None and self.sticky_action_prob:
                self._load(game, seed + i)
            game.reset_game()
            game.getScreenGrayscale(self._screens[i])
            self._lives[i] = game.lives()
        self._frames[:] = 0
        return self.observe(self.frames(self._screens), self._difference, np.ones(self.num_envs, dtype=bool))

    def step(self, actions: np.ndarray) -> StepResult:
        """Plays one agent step in every game; a game that ends starts its next episode at once.
        `actions`: int `(N,)` indices of `action_names`."""
        rewards = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        lives_lost = np.zeros(self.num_envs, dtype=bool)
        frames, max_frames, screens, lives = self._frames, self.max_frames, self._screens, self._lives
        for i, (game, action) in enumerate(zip(self.games, actions.tolist(), strict=True)):
            action = self._actions[action]
            self._last_actions[i] = action
            reward = 0
            for _ in range(self.frame_skip):
                reward += game.act(action)
                frames[i] += 1
                if game.game_over() or frames[i] >= max_frames:
                    terminated[i] = game.game_over()
                    truncated[i] = not terminated[i]
                    game.reset_game()
                    frames[i] = 0
                    break
            rewards[i] = reward
            game.getScreenGrayscale(screens[i])
            now = game.lives()
            lives_lost[i] = now < lives[i] and not (terminated[i] or truncated[i])
            lives[i] = now
        observations = self.observe(self.frames(screens), self._difference, terminated | truncated)
        return StepResult(observations, rewards, terminated, truncated, lives_lost)

    def get_state(self) -> GameState:
        """Each game's emulator state (ALE's `cloneState`, its random generator included, about
        14 KB), its episode's frame count and its last frame."""
        data, lengths = pack_bytes([game.cloneState(include_rng=True).serialize() for game in self.games])
        return {
            "emulator_states": data,
            "emulator_state_sizes": lengths,
            "frames": self._frames.copy(),
            "previous_frames": self._difference.previous.copy(),
            "last_actions": np.array([action.value for action in self._last_actions], np.int64),
        }

    def set_state(self, state: GameState) -> None:
        """Puts every game back where `get_state` saw it, exactly (sticky actions included)."""
        from ale_py import Action, ALEState

        check_num_games(state, "emulator_state_sizes", self.num_envs)
        blobs = unpack_bytes(state["emulator_states"], state["emulator_state_sizes"])
        self._last_actions = [Action(int(action)) for action in state["last_actions"]]
        for game, blob, action in zip(self.games, blobs, self._last_actions, strict=True):
            if self.sticky_action_prob:
                # ALE's state leaves out the action a sticky step repeats. Acting with it until it is
                # taken (each act takes it with probability 1 - p) sets it; the restore below then
                # undoes those frames and their random draws.
                for _ in range(STICKY_PRIMING_ACTS):
                    game.act(action)
            game.restoreState(ALEState(blob))
        self._lives[:] = [game.lives() for game in self.games]
        self._frames[:] = state["frames"]
        self._difference.previous[:] = state["previous_frames"]

    def close(self) -> None:
        self.games = []


PongVectorEnv = AtariVectorEnv
"""The name of `AtariVectorEnv` from when it played Pong only."""
PongSerialEnv = AtariSerialEnv
"""The name of `AtariSerialEnv` from when it played Pong only."""


class GymVectorEnv(LockstepGroups):
    """Any gymnasium game with discrete or one-dimensional continuous actions, stepped together.

    Box observations are flattened to float32 vectors; Discrete observations become one-hot vectors.

    Args:
        env_id: gymnasium id, e.g. "CartPole-v1"; or a callable that returns a new `gymnasium.Env`
            (one per game); or a ready `gymnasium.vector.VectorEnv` (its games cannot be saved at a
            checkpoint, so a resume starts new ones).
        num_envs: copies stepped together (ignored for a ready VectorEnv).
        max_episode_steps: step limit per episode, or None for the game's own (game ids only).
        make_kwargs: keyword arguments for `gymnasium.make`, e.g. `{"is_slippery": False}`.
    """

    observation_dtype = np.dtype(np.float32)

    def __init__(
        self,
        env_id: str | Callable[[], gym.Env] | gym.vector.VectorEnv,
        num_envs: int,
        max_episode_steps: int | None = None,
        make_kwargs: dict | None = None,
    ):
        if isinstance(env_id, gym.vector.VectorEnv):
            mode = env_id.metadata.get("autoreset_mode")
            if mode != AutoresetMode.SAME_STEP:
                raise ValueError(
                    f"env: expected a VectorEnv with autoreset_mode=AutoresetMode.SAME_STEP, got {mode}; "
                    "or pass a callable that makes one game"
                )
            self.vector_env, name = env_id, "env"
        elif callable(env_id):
            make = env_id
            self.vector_env = gym.vector.SyncVectorEnv(
                [lambda: EpisodeRecorder(make()) for _ in range(num_envs)],
                autoreset_mode=AutoresetMode.SAME_STEP,
            )
            name = "env"
        else:
            kwargs = dict(make_kwargs or {})
            if max_episode_steps is not None:
                kwargs["max_episode_steps"] = max_episode_steps
            self.vector_env = gym.make_vec(
                env_id,
                num_envs=num_envs,
                vectorization_mode="sync",
                vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                wrappers=[EpisodeRecorder],
                **kwargs,
            )
            name = f"env.id {env_id!r}"
        self.num_envs = self.vector_env.num_envs
        space = self.vector_env.single_observation_space
        action_space = self.vector_env.single_action_space
        if isinstance(action_space, gym.spaces.Discrete):
            self.num_actions = int(action_space.n)
            self.action_dtype = np.dtype(np.int32)
        elif isinstance(action_space, gym.spaces.Box) and action_space.shape in ((), (1,)):
            self.num_actions = 1  # the mean of a Gaussian policy (model.kind linear_gaussian)
            self.action_dtype = np.dtype(np.float32)
        else:
            self.vector_env.close()
            raise ValueError(f"{name}: expected discrete or one continuous action, got {action_space}")
        self._action_shape = getattr(action_space, "shape", ())
        if isinstance(space, gym.spaces.Discrete):
            self.observation_shape: tuple[int, ...] = (int(space.n),)
        elif isinstance(space, gym.spaces.Box):
            self.observation_shape = tuple(int(d) for d in space.shape)
        else:
            self.vector_env.close()
            raise ValueError(f"{name}: expected Box or Discrete observations, got {space}")
        self.observation_size = int(np.prod(self.observation_shape))
        self.action_names = tuple(str(i) for i in range(self.num_actions))
        self._one_hot = isinstance(space, gym.spaces.Discrete)
        self._recorded = all(
            isinstance(env, EpisodeRecorder) for env in getattr(self.vector_env, "envs", [None])
        )

    def _observations(self, raw: np.ndarray) -> np.ndarray:
        if self._one_hot:
            return np.eye(self.observation_size, dtype=np.float32)[raw]
        return np.asarray(raw, dtype=np.float32).reshape(self.num_envs, self.observation_size)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Starts every game anew; game i is seeded with `seed + i`."""
        raw, _ = self.vector_env.reset(seed=seed)
        return self._observations(raw)

    def step(self, actions: np.ndarray) -> StepResult:
        """Plays one step in every game. `actions`: int `(N,)`, or float `(N,)` continuous actions."""
        actions = np.asarray(actions)
        if self.action_dtype.kind == "f":
            actions = actions.reshape(self.num_envs, *self._action_shape)
        raw, rewards, terminated, truncated, _ = self.vector_env.step(actions)
        return StepResult(self._observations(raw), rewards.astype(np.float32), terminated, truncated)

    def get_state(self) -> GameState | None:
        """How each game's current episode began and its actions since (see `EpisodeRecorder`);
        None for a ready VectorEnv, whose games were not recorded."""
        if not self._recorded:
            return None
        recorders = self.vector_env.envs
        return {
            "episode_starts": np.array([recorder.start for recorder in recorders]),
            "actions": np.array(
                [np.asarray(a).reshape(-1)[0] for recorder in recorders for a in recorder.actions],
                np.int64 if self.action_dtype.kind == "i" else np.float32,
            ),
            "action_counts": np.array([len(recorder.actions) for recorder in recorders], np.int64),
        }

    def set_state(self, state: GameState) -> None:
        """Replays each game's episode to the point `get_state` saw (exact for games whose only
        randomness is their `np_random`, as gymnasium's own games)."""
        check_num_games(state, "episode_starts", self.num_envs)
        offsets = np.concatenate([[0], np.cumsum(state["action_counts"])]).tolist()
        for i, recorder in enumerate(self.vector_env.envs):
            recorder.replay(str(state["episode_starts"][i]), state["actions"][offsets[i] : offsets[i + 1]])

    def close(self) -> None:
        self.vector_env.close()


class EpisodeRecorder(gym.Wrapper):
    """Remembers how a game's current episode began (its seed, or the state of its random generator
    just before the reset) and the actions taken since, so that `replay` can bring a fresh copy of
    the game to the same point: how `GymVectorEnv` checkpoints games that cannot be serialised."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        generator = None if seed is not None else self.unwrapped.np_random.bit_generator.state
        self.start = json.dumps({"seed": seed, "generator": generator})
        self.actions: list[int] = []
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.actions.append(action)
        return super().step(action)

    def replay(self, start: str, actions: np.ndarray) -> None:
        """Starts the episode `start` describes and plays `actions` in it."""
        begin = json.loads(start)
        if begin["seed"] is None:
            generator = getattr(np.random, begin["generator"]["bit_generator"])()
            generator.state = begin["generator"]
            self.unwrapped.np_random = np.random.Generator(generator)
        self.reset(seed=begin["seed"])
        shape = self.action_space.shape
        for action in actions.tolist() if not shape else actions.astype(self.action_space.dtype):
            self.step(action.reshape(shape) if shape else action)


class LQRVectorEnv(LockstepGroups):
    """Copies of a linear-quadratic regulator stepped together in numpy.

    x' = A x + B u + noise, reward -(x^T Q x + u^T R u), for a state x of n floats and one
    continuous action u. Each step ends the episode with probability `termination_prob`; the
    next episode starts at x ~ N(0, initial_state_std^2 I). Observations are the states, float32
    `(N, n)`; actions are float `(N,)` or `(N, 1)`.

    Args:
        lqr: the matrices and noise levels.
        num_envs: copies stepped together.
        max_episode_steps: step limit per episode (a truncation), or None for none.
    """

    observation_dtype = np.dtype(np.float32)
    action_dtype = np.dtype(np.float32)
    num_actions = 1
    action_names = ("u",)

    def __init__(self, lqr: LQRConfig, num_envs: int, max_episode_steps: int | None = None):
        self.lqr = lqr
        self.A, self.B, self.Q, self.R = (np.array(m, dtype=np.float64) for m in (lqr.A, lqr.B, lqr.Q, lqr.R))
        self.num_envs = num_envs
        self.observation_shape = (len(self.A),)
        self.observation_size = len(self.A)
        self.max_episode_steps = max_episode_steps
        self.rng = np.random.default_rng()
        self.states = np.zeros((num_envs, self.observation_size))
        self.episode_steps = np.zeros(num_envs, np.int64)

    def _initial_states(self, count: int) -> np.ndarray:
        return self.lqr.initial_state_std * self.rng.normal(size=(count, self.observation_size))

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Starts every copy anew from a random state; `seed` seeds the states, noise and endings."""
        self.rng = np.random.default_rng(seed)
        self.states = self._initial_states(self.num_envs)
        self.episode_steps[:] = 0
        return self.states.astype(np.float32)

    def step(self, actions: np.ndarray) -> StepResult:
        """Applies one action per copy. `actions`: float `(N,)` or `(N, 1)`."""
        u = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, 1)
        x = self.states
        # Row-wise x^T Q x and u^T R u.
        rewards = -(np.einsum("ni,ij,nj->n", x, self.Q, x) + np.einsum("ni,ij,nj->n", u, self.R, u))
        noise = self.lqr.noise_std * self.rng.normal(size=x.shape)
        self.states = x @ self.A.T + u @ self.B.T + noise
        self.episode_steps += 1
        terminated = self.rng.random(self.num_envs) < self.lqr.termination_prob
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = ~terminated & (self.episode_steps >= self.max_episode_steps)
        done = terminated | truncated
        if done.any():
            self.states[done] = self._initial_states(int(done.sum()))
            self.episode_steps[done] = 0
        return StepResult(self.states.astype(np.float32), rewards.astype(np.float32), terminated, truncated)

    def get_state(self) -> GameState:
        """The states, episode step counts and random generator of all copies."""
        return {
            "states": self.states.copy(),
            "episode_steps": self.episode_steps.copy(),
            "random_state": np.array(json.dumps(self.rng.bit_generator.state)),
        }

    def set_state(self, state: GameState) -> None:
        """Puts every copy back where `get_state` saw it."""
        check_num_games(state, "states", self.num_envs)
        self.states = state["states"].astype(np.float64)
        self.episode_steps[:] = state["episode_steps"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = json.loads(str(state["random_state"]))

    def optimal_theta(self, gamma: float) -> np.ndarray:
        """The best linear policy's theta (= -K of the Riccati gain) for this regulator, `(n,)`.

        An episode continues with probability 1 - termination_prob, so the trainer's discount
        `gamma` becomes gamma * (1 - termination_prob) for the Riccati equation.
        """
        discount = gamma * (1.0 - self.lqr.termination_prob)
        return -riccati_gain(self.A, self.B, self.Q, self.R, discount)[0]

    def close(self) -> None:
        pass


def riccati_gain(
    A: np.ndarray,
    B: np.ndarray,
    Q: np.ndarray,
    R: np.ndarray,
    discount: float = 1.0,
    tolerance: float = 1e-12,
    max_iterations: int = 100_000,
) -> np.ndarray:
    """The optimal LQR feedback gain K (u = -K x) of the discounted infinite-horizon problem.

    Iterates the discrete algebraic Riccati equation to its fixed point:

        P = Q + g A^T P A - g^2 A^T P B (R + g B^T P B)^-1 B^T P A,   K = g (R + g B^T P B)^-1 B^T P A

    with g the discount. It minimises E[sum_t g^t (x^T Q x + u^T R u)] from every start state, and
    stays optimal for the mean of a Gaussian policy (the noise adds a constant cost).

    Args:
        A: `(n, n)` state transition. B: `(n, m)` control input.
        Q: `(n, n)` state cost. R: `(m, m)` action cost.
        discount: g in (0, 1].

    Returns:
        K, float64 `(m, n)`.

    Raises:
        ValueError: the iteration does not converge (the system cannot be stabilised at this discount).

    Example:
        >>> riccati_gain(np.eye(1), np.eye(1), np.eye(1), np.eye(1)).round(3).tolist()
        [[0.618]]
    """
    P = np.array(Q, dtype=np.float64)
    for _ in range(max_iterations):
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below
            K = discount * np.linalg.solve(R + discount * B.T @ P @ B, B.T @ P @ A)
            P_next = Q + discount * A.T @ P @ A - discount * A.T @ P @ B @ K
        P_next = (P_next + P_next.T) / 2
        if not np.all(np.isfinite(P_next)):
            break
        if np.max(np.abs(P_next - P)) <= tolerance * max(1.0, np.max(np.abs(P))):
            return discount * np.linalg.solve(R + discount * B.T @ P_next @ B, B.T @ P_next @ A)
        P = P_next
    raise ValueError("the Riccati iteration did not converge: can the system be stabilised at this discount?")


def is_pong(env_id: str) -> bool:
    """Whether `env_id` names Pong, which gets Karpathy's preprocessing."""
    return env_id in PONG_IDS


def is_atari(env_id: str) -> bool:
    """Whether `env_id` names an ALE game (`ALE/...`, or Pong's short ids): played through ale-py
    directly, seen as 0/1 frame differences."""
    return is_pong(env_id) or env_id.startswith("ALE/")


def make_env(
    config: Config,
    num_envs: int | None = None,
    rgb: bool = False,
    serial: bool = False,
    custom: Callable[[], gym.Env] | gym.vector.VectorEnv | None = None,
) -> AtariVectorEnv | AtariSerialEnv | LQRVectorEnv | GymVectorEnv:
    """Builds the vectorised game the config asks for.

    Args:
        config: uses `env.id`, `env.num_envs`, `env.frame_skip`, `env.sticky_action_prob`,
            `env.max_episode_steps`, `env.num_threads`, `env.kwargs` and `env.lqr`.
        num_envs: games to run instead of `env.num_envs` (evaluation and play use their own).
        rgb: Atari only: keep colour screens in `last_screens` for recording.
        serial: Atari only: play the games one after another in this thread (`AtariSerialEnv`, for
            worker processes) instead of in ale-py's threads.
        custom: your own game instead of `env.id`: a callable that returns a new `gymnasium.Env`
            (called once per game) or a ready `gymnasium.vector.VectorEnv` (see `GymVectorEnv`).

    Returns:
        An object with `reset(seed)`, `step(actions)`, `close()`, `num_envs`, `num_actions`,
        `observation_size`, `observation_shape`, `observation_dtype` and `action_dtype`.
    """
    env = config.env
    num_envs = env.num_envs if num_envs is None else num_envs
    if custom is not None:
        return GymVectorEnv(custom, num_envs)
    if is_atari(env.id) and serial and not rgb:
        return AtariSerialEnv(
            num_envs, env.frame_skip, env.sticky_action_prob, env.max_episode_steps, env.actions,
            game=ale_game(env.id), frames=env.frames, frame_pool=env.frame_pool,
            projections=env.projections, blank_columns=tuple(env.blank_columns),
            blank_columns_in=env.blank_columns_in,
        )  # fmt: skip
    if is_atari(env.id):
        return AtariVectorEnv(
            num_envs,
            frame_skip=env.frame_skip,
            sticky_action_prob=env.sticky_action_prob,
            max_episode_steps=env.max_episode_steps,
            num_threads=env.num_threads,
            rgb=rgb,
            num_groups=env.num_groups if num_envs % env.num_groups == 0 else 1,
            actions=env.actions,
            game=ale_game(env.id),
            frames=env.frames,
            frame_pool=env.frame_pool,
            projections=env.projections,
            blank_columns=tuple(env.blank_columns),
            blank_columns_in=env.blank_columns_in,
        )
    if env.id == LQR_ID:
        return LQRVectorEnv(env.lqr, num_envs, env.max_episode_steps)
    try:
        return GymVectorEnv(env.id, num_envs, env.max_episode_steps, env.kwargs)
    except (gym.error.Error, TypeError) as error:
        raise ValueError(f"env.id: cannot make {env.id!r}: {error}") from None
