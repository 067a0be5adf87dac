"""`configs/pong_karpathy.yaml` steps as pg-pong.py does: his RMSprop on his summed gradients, his
network (200 ReLU units, no biases, one sigmoid unit P(UP), randn / sqrt(fan_in) weights), his
per-episode standardised returns. pg-pong.py's rules are written out here in numpy (float64)."""

import keras
import numpy as np
import pytest
from conftest import CONFIGS

from pgkeras.config import load_config
from pgkeras.policies import KarpathyRMSprop, build_policy
from pgkeras.returns import compute_advantages
from pgkeras.train import update_policy

LEARNING_RATE, DECAY, EPSILON = 1e-4, 0.99, 1e-5


def his_rmsprop(weights, gradients, cache):
    """pg-pong.py: rmsprop_cache = decay * cache + (1 - decay) * g**2; w += lr * g / (sqrt(cache) + 1e-5).
    `gradients` are his (ascent) gradients; returns new weights and cache."""
    cache = DECAY * cache + (1 - DECAY) * gradients**2
    return weights + LEARNING_RATE * gradients / (np.sqrt(cache) + EPSILON), cache


def test_karpathy_rmsprop_steps_as_pg_pong_for_gradients_from_1e_9_to_1e_2():
    """Each weight keeps a gradient scale (1e-9 ... 1e-2) over several steps, so float32 can hold
    its path: the optimizer must follow his rule within 1e-3 relative error at every scale. Keras's
    RMSprop (epsilon inside the root) moves the small ones hundreds of times less."""
    scales = np.logspace(-9, -2, 8)
    rng = np.random.default_rng(0)
    gradients = [scales * rng.uniform(0.5, 1.5, 8) * rng.choice([-1, 1], 8) for _ in range(6)]

    def run(optimizer):
        variable = keras.Variable(np.zeros(8, np.float32))
        for gradient in gradients:  # descent on the loss: minus his ascent gradient
            optimizer.apply_gradients([(keras.ops.convert_to_tensor(-gradient.astype(np.float32)), variable)])
        return np.asarray(variable.numpy(), np.float64)

    expected, cache = np.zeros(8), np.zeros(8)
    for gradient in gradients:
        expected, cache = his_rmsprop(expected, gradient, cache)
    ours = run(KarpathyRMSprop(learning_rate=LEARNING_RATE, rho=DECAY, epsilon=EPSILON))
    np.testing.assert_allclose(ours, expected, rtol=1e-3)
    keras_rmsprop = run(keras.optimizers.RMSprop(learning_rate=LEARNING_RATE, rho=DECAY, epsilon=EPSILON))
    assert abs(keras_rmsprop[0] / expected[0]) < 0.01  # the 1e-9 weight barely moves there


def his_network_update(w1, w2, x, actions, returns_by_episode, cache):
    """One pg-pong.py batch: forward, his backward pass with epdlogp = (y - aprob) * advantage, the
    gradients summed over all samples, then his RMSprop. `actions`: 0 = UP (y = 1), 1 = DOWN."""
    h = np.maximum(x @ w1.T, 0)  # (T, H)
    aprob = 1 / (1 + np.exp(-(h @ w2)))  # (T,)
    y = (actions == 0).astype(np.float64)
    epdlogp = (y - aprob) * returns_by_episode
    grad_w2 = h.T @ epdlogp
    dh = np.outer(epdlogp, w2)
    dh[h <= 0] = 0
    grad_w1 = dh.T @ x
    w1, cache[0] = his_rmsprop(w1, grad_w1, cache[0])
    w2, cache[1] = his_rmsprop(w2, grad_w2, cache[1])
    return w1, w2


@pytest.mark.parametrize("advantage_scale", [1.0, 1e-4])
def test_the_karpathy_recipe_updates_his_network_as_pg_pong_does(advantage_scale):
    config = load_config(CONFIGS / "pong_karpathy.yaml")
    model = build_policy(config.model, config.train, (80, 80), 2)
    assert [w.shape for w in model.get_weights()] == [(6400, 200), (200, 1)]  # no biases
    assert model.output_shape == (None, 1) and model.layers[-1].activation.__name__ == "sigmoid"
    w1, w2 = (np.asarray(w, np.float64) for w in model.get_weights())
    w1, w2 = w1.T, w2[:, 0]  # his layout: W1 (H, D), W2 (H,)
    start = (w1.copy(), w2.copy())
    rng = np.random.default_rng(1)
    cache = [np.zeros_like(w1), np.zeros_like(w2)]
    for _ in range(3):
        # Frame differences: a few dozen pixels of +-1; three episodes of 40 steps.
        x = np.zeros((120, 6400), np.int8)
        for row in x:
            row[rng.choice(6400, 30, replace=False)] = rng.choice([-1, 1], 30)
        actions = rng.integers(0, 2, 120).astype(np.int32)
        returns = rng.normal(size=120)
        episodes = np.repeat(np.arange(3), 40)
        advantages = advantage_scale * compute_advantages(returns, "standardize_per_episode", episodes)
        update_policy(model, x, actions, advantages)
        w1, w2 = his_network_update(
            w1, w2, x.astype(np.float64), actions, advantages.astype(np.float64), cache
        )
    ours1, ours2 = (np.asarray(w, np.float64) for w in model.get_weights())
    for got, expected, initial in ((ours1.T, w1, start[0]), (ours2[:, 0], w2, start[1])):
        change = np.linalg.norm(expected - initial)
        assert np.linalg.norm((got - initial) - (expected - initial)) <= 1e-3 * change


def test_his_initialisation_has_his_scale():
    """randn(H, D) / sqrt(D): standard deviation 1/80 for the first layer, 1/sqrt(200) for the second."""
    config = load_config(CONFIGS / "pong_karpathy.yaml")
    keras.utils.set_random_seed(0)
    w1, w2 = build_policy(config.model, config.train, (80, 80), 2).get_weights()
    assert abs(w1.std() - 1 / 80) < 0.01 / 80 and abs(w1.mean()) < 1e-4
    assert abs(w2.std() - 1 / np.sqrt(200)) < 0.15 / np.sqrt(200)
    assert np.abs(w1).max() > 4.5 / 80  # untruncated: tails beyond Keras's truncated normals' 2 sigma
