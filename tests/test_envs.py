"""The games: Pong's grouped vector env against single games; the linear-quadratic regulator and
its Riccati gain, dynamics by formula, optimality by comparison."""

import numpy as np
import pytest

from pgkeras.config import Config, LQRConfig, load_config
from pgkeras.envs import PONG_ACTIONS, LQRVectorEnv, PongVectorEnv, make_env, riccati_gain
from pgkeras.preprocess import pool_frames


def test_pong_groups_give_each_game_its_own_row():
    """Game i of a grouped vector env plays as a single game seeded with seed + i, given its actions."""
    together = PongVectorEnv(4, num_groups=2)
    alone = [PongVectorEnv(1) for _ in range(4)]
    together.reset(seed=3)
    for i, env in enumerate(alone):
        env.reset(seed=3 + i)
    rng = np.random.default_rng(0)
    for _ in range(80):
        actions = rng.integers(0, 2, size=4)
        step = together.step(actions)
        for i, env in enumerate(alone):
            single = env.step(actions[i : i + 1])
            assert np.array_equal(step.observations[i], single.observations[0])
            assert step.rewards[i] == single.rewards[0]
    # Different actions moved the paddles apart, so a swap of rows could not go unnoticed.
    assert len({step.observations[i].tobytes() for i in range(4)}) == 4
    for env in [together, *alone]:
        env.close()


def play_pong(env, seed, actions):
    """Observations (frame differences) of `env`'s games after `env.reset(seed)` and each row of
    `actions`."""
    observations = [env.reset(seed=seed)]
    for row in actions:
        observations.append(env.step(row).observations)
    return np.stack(observations)


def test_pong_without_sticky_actions_is_the_same_game_for_every_seed():
    """PongVectorEnv.reset drops the seed without sticky actions, sparing a ROM reload at every
    checkpoint; resume stays exact only while ALE's Pong ignores the seed and earlier play."""
    env = PongVectorEnv(2)
    vector_env = env.vector_envs[0]
    actions = np.random.default_rng(0).integers(0, 2, size=(400, 2))

    def screens_after_reset(seed):
        first, _ = vector_env.reset(seed=seed)
        return np.stack([first] + [vector_env.step(PONG_ACTIONS[row])[0] for row in actions])

    seeded = screens_after_reset(1)
    assert np.array_equal(screens_after_reset(12345), seeded)
    assert np.array_equal(screens_after_reset(None), seeded)  # after 400 steps of play
    assert not np.array_equal(seeded[:, 0], seeded[:, 1])  # the actions did steer the games
    env.close()


def test_pong_with_sticky_actions_follows_its_seed():
    """With sticky actions the seed is passed on, so that seeded runs still repeat exactly."""
    env = PongVectorEnv(2, sticky_action_prob=0.25)
    actions = np.random.default_rng(0).integers(0, 2, size=(400, 2))
    first = play_pong(env, 1, actions)
    assert np.array_equal(play_pong(env, 1, actions), first)
    assert not np.array_equal(play_pong(env, 2, actions), first)
    env.close()


def linear_policy_cost(A, B, Q, R, K, discount):
    """Discounted cost matrix P_K of the policy u = -K x: x0^T P_K x0 is its total cost from x0."""
    closed_loop = A - B @ K
    P = np.zeros_like(Q)
    for _ in range(5000):
        P = Q + K.T @ R @ K + discount * closed_loop.T @ P @ closed_loop
    return P


def test_lqr_steps_follow_the_dynamics_and_the_cost():
    lqr = LQRConfig(noise_std=0.0, termination_prob=1e-9)
    env = LQRVectorEnv(lqr, num_envs=3)
    x = env.reset(seed=0).astype(np.float64)
    u = np.array([0.5, -1.0, 2.0])
    result = env.step(u)
    A, B, Q, R = (np.array(m) for m in (lqr.A, lqr.B, lqr.Q, lqr.R))
    np.testing.assert_allclose(result.observations, x @ A.T + u[:, None] @ B.T, rtol=1e-6)
    expected = -(np.einsum("ni,ij,nj->n", x, Q, x) + R[0, 0] * u**2)
    np.testing.assert_allclose(result.rewards, expected, rtol=1e-6)


def test_lqr_episodes_end_at_random_with_the_configured_probability():
    env = LQRVectorEnv(LQRConfig(termination_prob=0.2), num_envs=64)
    env.reset(seed=1)
    ends = np.mean([env.step(np.zeros(64)).terminated.mean() for _ in range(200)])
    assert abs(ends - 0.2) < 0.02


def test_lqr_is_seeded_and_made_from_the_config():
    config = load_config(None, ["env.id=LQR", "model.kind=linear_gaussian", "env.num_envs=4"])
    first, second = make_env(config), make_env(config)
    np.testing.assert_array_equal(first.reset(seed=3), second.reset(seed=3))
    np.testing.assert_array_equal(first.step(np.ones(4)).observations, second.step(np.ones(4)).observations)
    assert first.observation_shape == (2,) and first.action_dtype == np.float32


def test_scalar_riccati_gain_solves_the_scalar_equation():
    a, b, q, r, g = 1.2, 0.5, 2.0, 0.3, 0.9
    (k,) = riccati_gain(*(np.array([[v]]) for v in (a, b, q, r)), discount=g)[0]
    # The scalar P solves P = q + g a^2 P - g^2 a^2 b^2 P^2 / (r + g b^2 P), and k = g a b P / (r + g b^2 P).
    p = linear_policy_cost(
        np.array([[a]]), np.array([[b]]), np.array([[q]]), np.array([[r]]), np.array([[k]]), g
    )
    p = p[0, 0]
    assert p == pytest.approx(
        q + g * a * a * p - g * g * a * a * b * b * p * p / (r + g * b * b * p), rel=1e-9
    )
    assert k == pytest.approx(g * a * b * p / (r + g * b * b * p), rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_riccati_gain_costs_less_than_any_nearby_gain(seed):
    rng = np.random.default_rng(seed)
    A, B = rng.normal(size=(3, 3)) * 0.5, rng.normal(size=(3, 1))
    Q, R, discount = np.eye(3), np.array([[0.5]]), 0.95
    K = riccati_gain(A, B, Q, R, discount)
    best = np.trace(linear_policy_cost(A, B, Q, R, K, discount))
    for _ in range(10):
        nearby = K + 0.05 * rng.normal(size=K.shape)
        assert np.trace(linear_policy_cost(A, B, Q, R, nearby, discount)) > best


def test_unstabilisable_system_is_reported():
    with pytest.raises(ValueError, match="did not converge"):
        riccati_gain(np.array([[2.0]]), np.array([[0.0]]), np.eye(1), np.eye(1), discount=1.0)


def test_frozenlake_takes_make_kwargs_and_one_hot_states():
    config = load_config(None, ["env.id=FrozenLake-v1", "env.num_envs=2", "env.kwargs={is_slippery: false}"])
    env = make_env(config)
    observations = env.reset(seed=0)
    assert observations.shape == (2, 16) and observations[:, 0].tolist() == [1.0, 1.0]
    # Not slippery: moving down from the start always lands on state 4.
    assert env.step(np.array([1, 1])).observations.argmax(axis=1).tolist() == [4, 4]
    env.close()


def test_unknown_make_kwargs_give_a_clear_error():
    config = load_config(None, ["env.id=CartPole-v1", "env.kwargs={slippery: false}"])
    with pytest.raises(ValueError, match="env.id: cannot make 'CartPole-v1'"):
        make_env(config)


@pytest.mark.parametrize("env_id", ["ALE/Breakout-v5", "ALE/SpaceInvaders-v5"])
def test_any_atari_game_plays_the_same_in_workers_and_in_the_vector_env(env_id):
    """Other ALE games than Pong take the same fast path: int8 differences of 80x80 0/1 frames,
    the game's minimal action set, and bare-ALE worker games equal to ale-py's vector env."""
    config = Config()
    config.env.id, config.env.num_envs, config.env.num_groups = env_id, 3, 1
    vector, serial = make_env(config), make_env(config, serial=True)
    try:
        assert vector.action_names == serial.action_names and vector.action_names[:2] == ("NOOP", "FIRE")
        assert vector.observation_shape == (80, 80) and vector.observation_dtype == np.int8
        np.testing.assert_array_equal(vector.reset(), serial.reset())
        rng = np.random.default_rng(0)
        moving, rewards, lives_lost = 0, 0.0, 0
        for _ in range(400):
            actions = rng.integers(0, vector.num_actions, size=3).astype(np.int32)
            expected, got = vector.step(actions), serial.step(actions)
            for name, a, b in zip(expected._fields, expected, got, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=name)
            moving += int(np.count_nonzero(expected.observations))
            rewards += float(expected.rewards.sum())
            lives_lost += int(expected.lives_lost.sum())
            assert set(np.unique(expected.observations)) <= {-1, 0, 1}
    finally:
        vector.close()
        serial.close()
    assert moving > 400 and rewards > 0 and lives_lost > 0  # objects moved, points were scored, lives lost


def test_atari_frames_keep_small_objects_and_drop_the_background():
    from pgkeras.preprocess import atari_frames, background_gray

    screen = np.full((1, 210, 160), 7, np.uint8)  # a grey background
    screen[0, 208:210, 158:160] = 200  # a 2x2 ball in the bottom-right corner
    assert background_gray(screen[0]) == 7
    frame = atari_frames(screen, 7).reshape(80, 80)
    assert frame.sum() == 1 and frame[79, 79] == 1


def test_an_unknown_atari_game_is_named_with_a_suggestion():
    config = Config()
    config.env.id = "ALE/Brekout-v5"
    with pytest.raises(ValueError, match=r"env.id: cannot make 'ALE/Brekout-v5': .*Breakout"):
        make_env(config)


def test_recorded_atari_games_show_the_policy_what_training_showed():
    """Play records colour screens; the policy must still see the grayscale frames of training."""
    from pgkeras.envs import AtariVectorEnv

    gray, colour = AtariVectorEnv(2, game="breakout"), AtariVectorEnv(2, game="breakout", rgb=True)
    try:
        np.testing.assert_array_equal(gray.reset(), colour.reset())
        rng = np.random.default_rng(0)
        for _ in range(200):
            actions = rng.integers(0, gray.num_actions, size=2).astype(np.int32)
            np.testing.assert_array_equal(gray.step(actions).observations, colour.step(actions).observations)
    finally:
        gray.close()
        colour.close()


def test_pooled_pong_frames_are_the_same_game_on_a_coarser_grid():
    """`env.frame_pool: 2`: the workers and the vector env show 40x40 frames, each the 2x2 maxima
    of the 80x80 frame of the same moment, and their differences."""
    overrides = ["env.frames=frame_and_difference", "env.num_envs=2", "env.num_groups=1"]
    config = load_config("configs/pong.yaml", ["env.frame_pool=2", *overrides])
    vector, serial = make_env(config), make_env(config, serial=True)
    fine = make_env(load_config("configs/pong.yaml", overrides), serial=True)
    try:
        assert vector.observation_shape == serial.observation_shape == (2, 40, 40)
        assert vector.observation_size == 3200
        np.testing.assert_array_equal(vector.reset(), serial.reset())
        fine.reset()
        rng = np.random.default_rng(0)
        previous, moved = None, 0
        for _ in range(150):
            actions = rng.integers(0, 2, size=2).astype(np.int32)
            got, expected, step = vector.step(actions), serial.step(actions), fine.step(actions)
            np.testing.assert_array_equal(got.observations, expected.observations)
            frame, difference = got.observations[:, :1600], got.observations[:, 1600:]
            np.testing.assert_array_equal(frame, pool_frames(step.observations[:, :6400].view(np.uint8), 2))
            if previous is not None:
                np.testing.assert_array_equal(difference, frame - previous)
            previous, moved = frame, moved + int(np.count_nonzero(difference))
    finally:
        for env in (vector, serial, fine):
            env.close()
    assert moved > 150
    with pytest.raises(Exception, match="env.frame_pool: got 3, expected 1, 2 or 4"):
        load_config("configs/pong.yaml", ["env.frame_pool=3"])
    with pytest.raises(Exception, match="env.frame_pool: got 2, expected 1, 2 or 4 for Atari games"):
        load_config("cartpole", ["env.frame_pool=2"])


def test_projections_follow_the_images_as_their_row_and_column_sums():
    """`env.projections`: after the frame and the difference come each one's 80 row sums and 80
    column sums, in the workers' games as in the vector env's; the ball moves them wherever it is."""
    overrides = ["env.frames=frame_and_difference", "env.num_envs=2", "env.num_groups=1", "env.actions=all"]
    config = load_config("configs/pong.yaml", ["env.projections=true", *overrides])
    vector, serial = make_env(config), make_env(config, serial=True)
    try:
        assert vector.observation_shape == serial.observation_shape == (13120,)
        np.testing.assert_array_equal(vector.reset(), serial.reset())
        rng = np.random.default_rng(0)
        ball_rows = set()
        for _ in range(120):
            actions = rng.integers(0, 6, size=2).astype(np.int32)
            got = vector.step(actions).observations
            np.testing.assert_array_equal(got, serial.step(actions).observations)
            images = got[:, :12800].reshape(2, 2, 80, 80).astype(int)
            sums = got[:, 12800:].reshape(2, 2, 160)  # per game and image: 80 rows, then 80 columns
            np.testing.assert_array_equal(sums[:, :, :80], images.sum(axis=3))
            np.testing.assert_array_equal(sums[:, :, 80:], images.sum(axis=2))
            ball = images[0, 0, :, 12:68]  # between the paddles' columns
            ball_rows.update(np.flatnonzero(ball.any(axis=1)).tolist())
    finally:
        vector.close()
        serial.close()
    assert len(ball_rows) > 10  # the sums were seen to follow a moving ball
    with pytest.raises(Exception, match="env.projections: got True, expected false with model.kind conv"):
        load_config("configs/pong.yaml", ["env.projections=true", "model.kind=conv", "rollout.backend=local"])
    with pytest.raises(
        Exception, match="env.projections: got True, expected false for games other than Atari"
    ):
        load_config("cartpole", ["env.projections=true"])


def test_noop_updown_plays_the_three_moves_of_pongs_six_actions():
    """`env.actions: noop_updown`: NOOP, UP and DOWN, which play the game as NOOP, UP and DOWN of
    `all` do, in the workers' games as in the vector env's; FIRE and the FIRE pairs move the
    paddle as NOOP, UP and DOWN (the screens are the same), so `all` holds each move twice."""
    overrides = ["env.frames=frame_and_difference", "env.num_envs=2", "env.num_groups=1"]
    six = make_env(load_config("configs/pong.yaml", [*overrides, "env.actions=all"]))
    config = load_config("configs/pong.yaml", [*overrides, "env.actions=noop_updown"])
    three, serial = make_env(config), make_env(config, serial=True)
    try:
        assert three.action_names == serial.action_names == ("NOOP", "UP", "DOWN") and three.num_actions == 3
        np.testing.assert_array_equal(three.reset(), six.reset())
        serial.reset()
        rng = np.random.default_rng(0)
        for _ in range(150):
            moves = rng.integers(0, 3, size=2).astype(np.int32)
            got = three.step(moves).observations
            np.testing.assert_array_equal(got, serial.step(moves).observations)
            fire = rng.integers(0, 2, size=2)  # the same move with FIRE, or without
            np.testing.assert_array_equal(
                got,
                six.step(
                    (np.array([0, 2, 3])[moves] + np.array([1, 2, 2])[moves] * fire).astype(np.int32)
                ).observations,
            )
    finally:
        for env in (six, three, serial):
            env.close()
    with pytest.raises(Exception, match="env.actions: got 'noop_updown', expected updown for games other"):
        load_config("configs/breakout.yaml", ["env.actions=noop_updown"])


@pytest.mark.parametrize("where", ["all", "frame"])
def test_blank_columns_hide_the_opponent_paddle_and_nothing_else(where):
    """`env.blank_columns: [8, 9]`: Pong's opponent paddle never shows in the frame, nor in the
    difference unless `env.blank_columns_in: frame`; in the workers' games as in the vector env's;
    every other pixel is as without the setting."""
    overrides = ["env.frames=frame_and_difference", "env.num_envs=2", "env.num_groups=1", "env.actions=all"]
    plain = make_env(load_config("configs/pong.yaml", overrides))
    config = load_config(
        "configs/pong.yaml", ["env.blank_columns=[8, 9]", f"env.blank_columns_in={where}", *overrides]
    )
    vector, serial = make_env(config), make_env(config, serial=True)
    hidden = [0] if where == "frame" else [0, 1]  # the images without the paddle: frame, difference
    try:
        plain.reset()
        np.testing.assert_array_equal(vector.reset(), serial.reset())
        rng = np.random.default_rng(0)
        opponent = 0
        for _ in range(80):
            actions = rng.integers(0, 6, size=2).astype(np.int32)
            got = vector.step(actions).observations
            np.testing.assert_array_equal(got, serial.step(actions).observations)
            seen = plain.step(actions).observations.reshape(2, 2, 80, 80)
            got = got.reshape(2, 2, 80, 80)
            assert not got[:, hidden, :, 8:10].any()
            np.testing.assert_array_equal(np.delete(got, [8, 9], axis=3), np.delete(seen, [8, 9], axis=3))
            if where == "frame":
                np.testing.assert_array_equal(got[:, 1], seen[:, 1])  # the paddle moves in the difference
            opponent += int(seen[:, 0, :, 8:10].sum())
    finally:
        for env in (plain, vector, serial):
            env.close()
    assert opponent > 80 * 2 * 8  # without the setting the paddle is there at every step
    with pytest.raises(Exception, match=r"env.blank_columns: got \[80\], expected \[\] or columns 0-79"):
        load_config("configs/pong.yaml", ["env.blank_columns=[80]"])
    with pytest.raises(Exception, match="env.blank_columns: got .* of Atari games"):
        load_config("cartpole", ["env.blank_columns=[8]"])
    with pytest.raises(Exception, match="env.blank_columns_in: got 'frame', expected all unless env.frames"):
        load_config("configs/pong.yaml", ["env.blank_columns=[8]", "env.blank_columns_in=frame"])


def test_atari_frames_can_show_the_frame_beside_the_difference():
    """`env.frames: frame_and_difference`: what stands still (Breakout's paddle) is seen too."""
    config = load_config("breakout", ["env.frames=frame_and_difference", "env.num_envs=2"])
    vector, serial = make_env(config), make_env(config, serial=True)
    try:
        assert vector.observation_shape == (2, 80, 80) and vector.observation_size == 12800
        first = vector.reset()
        np.testing.assert_array_equal(first, serial.reset())
        frame, difference = first[:, :6400], first[:, 6400:]
        assert set(np.unique(frame)) == {0, 1} and not difference.any()  # walls and bricks; no motion
        for _ in range(50):
            actions = np.array([1, 2], np.int32)  # FIRE, RIGHT
            np.testing.assert_array_equal(
                vector.step(actions).observations, serial.step(actions).observations
            )
    finally:
        vector.close()
        serial.close()
    with pytest.raises(Exception, match="env.frames: got 'frame_and_difference', expected difference"):
        load_config("cartpole", ["env.frames=frame_and_difference"])
