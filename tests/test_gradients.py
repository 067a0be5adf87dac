"""The three policy families of the derivation notes: analytic == Keras autodiff == finite differences,
and one `fit` step with SGD equals the analytic policy-gradient step."""

import keras
import numpy as np
import pytest

from pgkeras.checks import central_differences, keras_loss_gradients
from pgkeras.config import TrainConfig
from pgkeras.gradients import (
    linear_gaussian_log_prob_grad,
    mlp_cross_entropy_grads,
    softmax,
    softmax_log_prob_grad,
)
from pgkeras.policies import (
    build_linear_gaussian_policy,
    build_tabular_softmax_policy,
    gaussian_sample_weights,
)
from pgkeras.train import update_policy

# Tabular softmax with temperature -----------------------------------------------------------


def tabular_log_prob(w, s, a, tau):
    return np.log(softmax(w[s] / tau)[a])


@pytest.mark.parametrize("seed", range(10))
def test_tabular_softmax_three_ways(seed):
    rng = np.random.default_rng(seed)
    num_states, num_actions = int(rng.integers(2, 6)), int(rng.integers(2, 5))
    w, tau = rng.normal(size=(num_states, num_actions)), float(rng.uniform(0.2, 3.0))
    s, a = int(rng.integers(num_states)), int(rng.integers(num_actions))

    analytic = softmax_log_prob_grad(w, s, a, tau)
    numeric = central_differences(lambda x: tabular_log_prob(x, s, a, tau), w)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    # The b != a entries are -pi(b|s)/tau, not 1/tau - pi(b|s)/tau as in the source notes.
    others = [b for b in range(num_actions) if b != a]
    np.testing.assert_allclose(analytic[s, others], -softmax(w[s] / tau)[others] / tau)

    model = build_tabular_softmax_policy(num_states, num_actions, tau, TrainConfig(optimizer="sgd"))
    model.get_layer("preferences").set_weights([w.astype(np.float32)])
    state = np.eye(num_states, dtype=np.float32)[[s]]
    label = np.eye(num_actions, dtype=np.float32)[[a]]
    (autodiff,) = keras_loss_gradients(model, keras.losses.CategoricalCrossentropy(), state, label)
    np.testing.assert_allclose(-autodiff, analytic, rtol=1e-4, atol=1e-6)


def test_tabular_fit_step_is_the_policy_gradient_step():
    rng = np.random.default_rng(0)
    num_states, num_actions, tau, learning_rate = 4, 3, 0.7, 0.5
    model = build_tabular_softmax_policy(
        num_states, num_actions, tau, TrainConfig(optimizer="sgd", learning_rate=learning_rate)
    )
    w = rng.normal(size=(num_states, num_actions))
    model.get_layer("preferences").set_weights([w.astype(np.float32)])
    states, actions = rng.integers(num_states, size=12), rng.integers(num_actions, size=12)
    advantages = rng.normal(size=12).astype(np.float32)

    # The trainer's own update: one-hot states in, sampled actions as labels, advantages as weights.
    update_policy(model, np.eye(num_states, dtype=np.float32)[states], actions, advantages)

    gradient = np.mean(
        [
            A * softmax_log_prob_grad(w, s, a, tau)
            for s, a, A in zip(states, actions, advantages, strict=True)
        ],
        axis=0,
    )
    np.testing.assert_allclose(
        model.get_layer("preferences").get_weights()[0], w + learning_rate * gradient, rtol=1e-5, atol=1e-6
    )


# Linear Gaussian with fixed sigma --------------------------------------------------------------


def gaussian_log_prob(theta, s, a, sigma):
    return -((a - theta @ s) ** 2) / (2 * sigma**2) - np.log(sigma * np.sqrt(2 * np.pi))


@pytest.mark.parametrize("seed", range(10))
def test_linear_gaussian_three_ways(seed):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(1, 6))
    theta, s = rng.normal(size=d), rng.normal(size=d)
    a, sigma, advantage = float(rng.normal()), float(rng.uniform(0.3, 2.0)), float(rng.normal())

    analytic = linear_gaussian_log_prob_grad(theta, s, a, sigma)
    numeric = central_differences(lambda t: gaussian_log_prob(t, s, a, sigma), theta)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)

    # The trick's loss for a Gaussian: squared error weighted by A / (2 sigma^2) has gradient
    # -A * grad log pi.
    model = build_linear_gaussian_policy(d, TrainConfig(optimizer="sgd"))
    model.get_layer("theta").set_weights([theta.reshape(d, 1).astype(np.float32)])
    weight = gaussian_sample_weights(np.array([advantage]), sigma)
    state, action = s.reshape(1, d).astype(np.float32), np.array([[a]], np.float32)
    (autodiff,) = keras_loss_gradients(
        model, keras.losses.MeanSquaredError(), state, action, sample_weight=weight
    )
    np.testing.assert_allclose(-autodiff[:, 0], advantage * analytic, rtol=1e-4, atol=1e-5)


def test_linear_gaussian_fit_step_is_the_policy_gradient_step():
    rng = np.random.default_rng(1)
    d, sigma, learning_rate = 3, 0.5, 0.05
    model = build_linear_gaussian_policy(d, TrainConfig(optimizer="sgd", learning_rate=learning_rate))
    theta = rng.normal(size=d)
    model.get_layer("theta").set_weights([theta.reshape(d, 1).astype(np.float32)])
    states = rng.normal(size=(10, d)).astype(np.float32)
    actions = (states @ theta + sigma * rng.normal(size=10)).astype(np.float32)
    advantages = rng.normal(size=10)

    # The trainer's own update: the actions as regression targets, weights A / (2 sigma^2).
    update_policy(model, states, actions, advantages, sigma=sigma)

    gradient = np.mean([A * linear_gaussian_log_prob_grad(theta, s, a, sigma)
                        for s, a, A in zip(states, actions, advantages, strict=True)], axis=0)  # fmt: skip
    np.testing.assert_allclose(
        model.get_layer("theta").get_weights()[0][:, 0],
        theta + learning_rate * gradient,
        rtol=1e-5,
        atol=1e-6,
    )


# One-hidden-layer ReLU network, softmax output, cross-entropy, no biases -------------------------


def mlp_loss(w1, w2, x, y):
    h = np.maximum(x @ w1, 0.0)
    return -np.sum(y * np.log(softmax(h @ w2)))


@pytest.mark.parametrize("seed", range(10))
def test_mlp_cross_entropy_three_ways(seed):
    rng = np.random.default_rng(seed)
    D, H, A = (int(n) for n in rng.integers(2, 7, size=3))  # noqa: N806
    w1, w2, x = rng.normal(size=(D, H)), rng.normal(size=(H, A)), rng.normal(size=D)
    y = np.eye(A)[rng.integers(A)]

    grad_w1, grad_w2 = mlp_cross_entropy_grads(w1, w2, x, y)
    np.testing.assert_allclose(
        grad_w1, central_differences(lambda w: mlp_loss(w, w2, x, y), w1), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(
        grad_w2, central_differences(lambda w: mlp_loss(w1, w, x, y), w2), rtol=1e-5, atol=1e-7
    )

    inputs = keras.Input((D,))
    hidden = keras.layers.Dense(H, activation="relu", use_bias=False)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(A, activation="softmax", use_bias=False)(hidden))
    model.set_weights([w1.astype(np.float32), w2.astype(np.float32)])
    autodiff = keras_loss_gradients(model, keras.losses.CategoricalCrossentropy(), x[None].astype(np.float32),
                                    y[None].astype(np.float32))  # fmt: skip
    np.testing.assert_allclose(autodiff[0], grad_w1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(autodiff[1], grad_w2, rtol=1e-4, atol=1e-5)
