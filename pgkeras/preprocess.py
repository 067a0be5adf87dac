"""Karpathy's Pong preprocessing (crop, downsample, erase the background, binarize), the same idea
for any Atari game, and frame differences.

Pure numpy; knows nothing of Keras or gymnasium.
"""

from __future__ import annotations

import numpy as np

SCREEN_HEIGHT, SCREEN_WIDTH = 210, 160
# Rows 35..194 hold the playfield; above is the score, below the bottom wall (Karpathy: I[35:195]).
CROP_TOP, CROP_BOTTOM = 35, 195
DOWNSAMPLE = 2
FRAME_HEIGHT = (CROP_BOTTOM - CROP_TOP) // DOWNSAMPLE  # 80
FRAME_WIDTH = SCREEN_WIDTH // DOWNSAMPLE  # 80
FRAME_SIZE = FRAME_HEIGHT * FRAME_WIDTH  # 6400
# Pong's playfield colour: RGB (144, 72, 17), which ALE's grayscale screen shows as 87.
# Karpathy also erased a red value of 109, a second background that ALE's Pong never shows inside
# the crop; the tests check on real frames that only paddles and ball survive.
BACKGROUND_RGB = (144, 72, 17)
BACKGROUND_GRAY = 87


def pong_frames(screens: np.ndarray) -> np.ndarray:
    """Preprocesses a batch of Pong screens into 0/1 vectors.

    Args:
        screens: uint8 array, grayscale `(N, 210, 160)` or RGB `(N, 210, 160, 3)`.

    Returns:
        uint8 array `(N, 6400)`: 1 where a paddle or the ball is, 0 on the background.

    Raises:
        ValueError: if the screens are not Pong-sized uint8 images.
    """
    screens = np.asarray(screens)
    if (
        screens.dtype != np.uint8
        or screens.shape[1:3] != (SCREEN_HEIGHT, SCREEN_WIDTH)
        or screens.ndim not in (3, 4)
    ):
        raise ValueError(
            f"expected uint8 screens of shape (N, {SCREEN_HEIGHT}, {SCREEN_WIDTH}) or "
            f"(N, {SCREEN_HEIGHT}, {SCREEN_WIDTH}, 3), got {screens.dtype} {screens.shape}"
        )
    small = screens[:, CROP_TOP:CROP_BOTTOM:DOWNSAMPLE, ::DOWNSAMPLE]
    if small.ndim == 4:
        if small.shape[-1] != 3:
            raise ValueError(f"expected 3 colour channels, got {small.shape[-1]}")
        foreground = (small != np.array(BACKGROUND_RGB, dtype=np.uint8)).any(axis=-1)
    else:
        foreground = small != BACKGROUND_GRAY  # one pass over the strided view, every game step
    return foreground.reshape(len(screens), FRAME_SIZE).view(np.uint8)


def pong_frame(frame: np.ndarray) -> np.ndarray:
    """Preprocesses one Pong screen into the 6400-vector the policy sees.

    Args:
        frame: uint8 screen, RGB `(210, 160, 3)` or grayscale `(210, 160)`. Both forms of the same
            screen give identical vectors.

    Returns:
        float32 array `(6400,)` of 0.0 (background) and 1.0 (paddles and ball), row-major 80x80.

    Raises:
        ValueError: if the frame is not a Pong-sized uint8 image.

    Example:
        >>> pong_frame(np.zeros((210, 160), np.uint8)).shape  # black is not background: all ones
        (6400,)
    """
    frame = np.asarray(frame)
    if frame.ndim not in (2, 3):
        raise ValueError(f"expected one screen (210, 160) or (210, 160, 3), got shape {frame.shape}")
    return pong_frames(frame[np.newaxis])[0].astype(np.float32)


# Other Atari games: the whole 210x160 screen, pooled to 80x80 so that every agent step keeps the
# one int8 frame-difference format of Pong (and its fast path: sparse first layer, numpy workers).
ROW_BLOCKS = np.linspace(0, SCREEN_HEIGHT, FRAME_HEIGHT + 1).astype(np.int64)[:-1]
"""First screen row of each of the 80 output rows: blocks of 2 or 3 rows (210 / 80 = 2.625)."""


def background_gray(screen: np.ndarray) -> int:
    """The commonest grayscale value of a screen `(210, 160)`: the game's background (0, black, for
    Breakout and Space Invaders; 87 for Pong).

    Example:
        >>> background_gray(np.pad(np.full((2, 2), 200, np.uint8), 5))
        0
    """
    return int(np.bincount(np.asarray(screen, np.uint8).reshape(-1), minlength=256).argmax())


def atari_frames(screens: np.ndarray, background: int | tuple[int, int, int]) -> np.ndarray:
    """Preprocesses a batch of Atari screens into 0/1 vectors: 1 where the pixel is not the
    background, pooled over blocks of 2 columns and 2-3 rows (a block is 1 if any of its pixels
    is), so that 2-pixel balls and bullets survive the 80x80 grid.

    Args:
        screens: uint8 grayscale `(N, 210, 160)` or RGB `(N, 210, 160, 3)` screens.
        background: the game's background: its grayscale value (`background_gray`), or for RGB
            screens its colour.

    Returns:
        uint8 array `(N, 6400)` of 0 and 1, row-major 80x80.

    Example:
        >>> screen = np.zeros((1, 210, 160), np.uint8); screen[0, 100, 31] = 255
        >>> frame = atari_frames(screen, 0).reshape(80, 80); [int(v) for v in np.argwhere(frame)[0]]
        [38, 15]
    """
    screens = np.asarray(screens)
    if screens.dtype != np.uint8 or screens.shape[1:] not in (
        (SCREEN_HEIGHT, SCREEN_WIDTH),
        (SCREEN_HEIGHT, SCREEN_WIDTH, 3),
    ):
        raise ValueError(
            f"expected uint8 screens (N, {SCREEN_HEIGHT}, {SCREEN_WIDTH}) or (N, {SCREEN_HEIGHT}, "
            f"{SCREEN_WIDTH}, 3), got {screens.dtype} {screens.shape}"
        )
    if screens.ndim == 4:
        foreground = (screens != np.array(background, np.uint8)).any(axis=-1)
    else:
        foreground = screens != background
    columns = foreground[:, :, 0::2] | foreground[:, :, 1::2]
    pooled = np.logical_or.reduceat(columns, ROW_BLOCKS, axis=1)
    return pooled.reshape(len(screens), FRAME_SIZE).view(np.uint8)


def pool_frames(frames: np.ndarray, pool: int) -> np.ndarray:
    """Coarser 0/1 frames: each `pool` x `pool` block of an 80x80 frame becomes one pixel, 1 where
    any of the block's pixels is (`env.frame_pool`), so a 1x2-pixel ball cannot fall between them.

    Args:
        frames: uint8 `(N, 6400)` 0/1 frames, row-major 80x80.
        pool: the block side, a divisor of 80.

    Returns:
        uint8 `(N, (80 // pool) ** 2)`, row-major.

    Example:
        >>> frame = np.zeros((1, FRAME_SIZE), np.uint8); frame[0, 81] = 1  # row 1, column 1
        >>> [int(i) for i in np.flatnonzero(pool_frames(frame, 2))]  # row 0, column 0 of 40x40
        [0]
    """
    n = len(frames)
    blocks = frames.reshape(n, FRAME_HEIGHT // pool, pool, FRAME_WIDTH // pool, pool)
    return blocks.max(axis=(2, 4)).reshape(n, -1)


class FrameDifference:
    """Turns each game's stream of 0/1 frames into differences of consecutive frames.

    The policy sees motion this way (Karpathy: `x = cur_x - prev_x`). The first frame of an episode
    has no predecessor, so its difference is all zeros.

    Args:
        num_envs: games tracked.
        frame_size: length of each frame vector.
    """

    def __init__(self, num_envs: int, frame_size: int = FRAME_SIZE):
        self.previous = np.zeros((num_envs, frame_size), dtype=np.int8)

    def __call__(self, frames: np.ndarray, new_episode: np.ndarray) -> np.ndarray:
        """Returns `frames - previous` as int8 `(N, frame_size)` in {-1, 0, 1}.

        Args:
            frames: uint8 `(N, frame_size)` 0/1 frames, the newest of each game.
            new_episode: bool `(N,)`, True where the frame starts a new episode.
        """
        current = frames.view(np.int8)
        difference = current - self.previous
        if new_episode.any():
            difference[new_episode] = 0
        self.previous[:] = current
        return difference
