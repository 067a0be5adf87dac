"""Karpathy's preprocessing on real Pong frames from the emulator."""

import gymnasium as gym
import numpy as np
import pytest

from pgkeras.preprocess import FRAME_SIZE, FrameDifference, pong_frame, pong_frames, pool_frames


@pytest.fixture(scope="module")
def real_screens():
    """Pairs of (RGB, grayscale) screens of the same Pong states, with the ball in play."""
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5", repeat_action_probability=0.0, frameskip=4)
    env.reset(seed=0)
    ale = env.unwrapped.ale
    rng = np.random.default_rng(0)
    pairs = []
    for step in range(400):
        env.step(int(rng.choice([2, 3])))
        if step % 20 == 0:
            pairs.append((ale.getScreenRGB(), ale.getScreenGrayscale()))
    env.close()
    return pairs


def test_rgb_and_grayscale_of_the_same_screen_agree(real_screens):
    for rgb, gray in real_screens:
        from_rgb, from_gray = pong_frame(rgb), pong_frame(gray)
        assert from_rgb.shape == (FRAME_SIZE,) and from_rgb.dtype == np.float32
        np.testing.assert_array_equal(from_rgb, from_gray)


def test_only_paddles_and_ball_survive(real_screens):
    for rgb, _ in real_screens[1:]:  # on the very first screen the opponent is not drawn yet
        image = pong_frame(rgb).reshape(80, 80)
        assert set(np.unique(image)) <= {0.0, 1.0}
        # Each paddle is at most 8 rows x 2 columns after downsampling, the ball 1 or 2 pixels:
        # a few dozen ones at most; the playfield itself is erased.
        assert 4 <= image.sum() <= 40
        # Agent's paddle in columns 70-71 (screen 140-143), opponent's in 8-9 (screen 16-19),
        # possibly cut by the crop when at the top or bottom.
        assert image[:, 70:72].sum() >= 2
        assert image[:, 8:10].sum() >= 2
        others = np.delete(image, [8, 9, 70, 71], axis=1)
        assert others.sum() <= 4  # the ball


def test_batch_form_matches_single_frames(real_screens):
    grays = np.stack([gray for _, gray in real_screens])
    batch = pong_frames(grays)
    assert batch.dtype == np.uint8 and batch.shape == (len(grays), FRAME_SIZE)
    for row, gray in zip(batch, grays, strict=True):
        np.testing.assert_array_equal(row, pong_frame(gray))


@pytest.mark.parametrize("pool", [2, 4])
def test_pooled_frames_keep_the_ball_and_both_paddles(real_screens, pool):
    """`env.frame_pool`: a pixel of the coarse frame is on exactly where its block has one on, so
    the 1x2-pixel ball and both paddles survive, in the block that holds them."""
    frames = pong_frames(np.stack([gray for _, gray in real_screens[1:]]))
    pooled = pool_frames(frames, pool)
    side = 80 // pool
    assert pooled.dtype == np.uint8 and pooled.shape == (len(frames), side * side)
    for frame, coarse in zip(frames.reshape(-1, 80, 80), pooled.reshape(-1, side, side), strict=True):
        on = {(row // pool, column // pool) for row, column in np.argwhere(frame)}
        assert {tuple(cell) for cell in np.argwhere(coarse)} == on
        ball = np.argwhere(np.delete(frame, [8, 9, 70, 71], axis=1))
        assert len(ball) == 0 or coarse.sum() < frame.sum()  # blocks merge the paddles' pixels


def test_bad_frames_are_refused_with_the_shape():
    with pytest.raises(ValueError, match=r"84, 84"):
        pong_frame(np.zeros((84, 84), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        pong_frame(np.zeros((210, 160), np.float32))


def test_frame_difference_is_zero_at_episode_start():
    difference = FrameDifference(num_envs=2, frame_size=3)
    first = difference(np.array([[1, 0, 1], [0, 1, 0]], np.uint8), np.array([True, True]))
    assert not first.any()
    second = difference(np.array([[0, 0, 1], [1, 1, 0]], np.uint8), np.array([False, True]))
    np.testing.assert_array_equal(second, [[-1, 0, 0], [0, 0, 0]])
    assert second.dtype == np.int8
