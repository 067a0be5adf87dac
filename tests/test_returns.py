"""Discounted returns and advantages against closed-form answers."""

import numpy as np
import pytest

from pgkeras.returns import compute_advantages, discounted_returns, gae_advantages


def test_discounted_returns_closed_form():
    np.testing.assert_allclose(discounted_returns(np.array([0, 0, 1.0]), gamma=0.5), [0.25, 0.5, 1.0])


def test_running_sum_restarts_at_every_point():
    rewards = np.array([0, 0, -1.0, 0, 1.0])
    np.testing.assert_allclose(discounted_returns(rewards, 0.9), [-0.81, -0.9, -1.0, 0.9, 1.0], rtol=1e-6)
    np.testing.assert_allclose(
        discounted_returns(rewards, 0.9, reset_on_reward=False),
        [-0.81 + 0.9**4, -0.9 + 0.9**3, -1.0 + 0.9**2, 0.9, 1.0],
        rtol=1e-6,
    )


def test_sum_never_crosses_an_episode_end():
    rewards = np.ones(5)
    ends = np.array([False, True, False, False, True])
    np.testing.assert_allclose(
        discounted_returns(rewards, 0.5, reset_on_reward=False, episode_ends=ends), [1.5, 1.0, 1.75, 1.5, 1.0]
    )


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.99, 1.0])
def test_matches_the_geometric_series(gamma):
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=20)
    expected = [sum(gamma**k * r for k, r in enumerate(rewards[t:])) for t in range(20)]
    np.testing.assert_allclose(
        discounted_returns(rewards, gamma, reset_on_reward=False), expected, rtol=1e-5, atol=1e-5
    )


def test_shape_dtype_and_bad_input():
    out = discounted_returns(np.zeros(4, dtype=np.int64), 0.9)
    assert out.shape == (4,) and out.dtype == np.float32
    assert discounted_returns(np.zeros(0), 0.9).shape == (0,)
    with pytest.raises(ValueError, match="1-D"):
        discounted_returns(np.zeros((2, 2)), 0.9)
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(np.zeros(3), 1.5)


def test_advantages_standardize_center_none():
    returns = np.array([1.0, 2.0, 3.0, 6.0])
    np.testing.assert_allclose(compute_advantages(returns, "center"), [-2, -1, 0, 3])
    standardized = compute_advantages(returns, "standardize")
    assert standardized.mean() == pytest.approx(0, abs=1e-6)
    assert standardized.std() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(compute_advantages(returns, "none"), returns)


def test_all_equal_returns_give_zero_advantages_not_nan():
    assert np.array_equal(compute_advantages(np.full(5, -1.0), "standardize"), np.zeros(5))
    assert np.isfinite(compute_advantages(np.array([2.0]), "standardize")).all()


def brute_force_gae(rewards, values, ends, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l} over the rest of t's stretch, term by term."""
    advantages = []
    for t in range(len(rewards)):
        total, scale, k = 0.0, 1.0, t
        while True:
            following = 0.0 if ends[k] else values[k + 1]
            total += scale * (rewards[k] + gamma * following - values[k])
            if ends[k]:
                break
            scale *= gamma * lam
            k += 1
        advantages.append(total)
    return np.array(advantages)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_is_the_discounted_sum_of_td_errors_within_each_stretch(lam):
    rng = np.random.default_rng(3)
    rewards = np.array([0, 0, 1.0, 0, 0, 0, -1.0, 0, 1.0])
    ends = rewards != 0
    values = rng.normal(size=len(rewards))
    np.testing.assert_allclose(
        gae_advantages(rewards, values, ends, 0.9, lam),
        brute_force_gae(rewards, values, ends, 0.9, lam),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip


def test_gae_with_lambda_one_is_the_return_minus_the_value():
    rewards = np.array([0, 0, 1.0, 0, -1.0])
    values = np.array([0.3, -0.2, 0.9, 0.1, -0.5])
    returns = discounted_returns(rewards, 0.99, reset_on_reward=True)
    np.testing.assert_allclose(
        gae_advantages(rewards, values, rewards != 0, 0.99, 1.0), returns - values, rtol=1e-5, atol=1e-6
    )


def test_gae_refuses_a_batch_whose_last_stretch_is_unfinished():
    with pytest.raises(ValueError, match="last step must end"):
        gae_advantages(np.zeros(3), np.zeros(3), np.array([False, True, False]), 0.99, 0.95)
