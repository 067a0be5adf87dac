"""The cross-entropy trick is the policy gradient: analytic == Keras autodiff == finite differences,
and one `model.fit` step with SGD moves the weights by exactly lr * (1/T) sum_i A_i grad log pi."""

import os
import subprocess

import keras
import numpy as np
import pytest
from conftest import PYTHON, REPO

from pgkeras.checks import central_differences, keras_loss_gradients
from pgkeras.config import ModelConfig, TrainConfig
from pgkeras.gradients import actor_critic_gradient, actor_critic_loss, mlp_forward, mlp_policy_gradient
from pgkeras.policies import build_policy
from pgkeras.returns import clipped_sample_weights
from pgkeras.train import pad_to_few_sizes, update_policy


def trick_loss(weights, observations, actions, advantages):
    """(1/T) sum_i -A_i log pi(a_i|s_i) in float64 numpy: what fit minimises."""
    total = 0.0
    for x, a, advantage in zip(observations, actions, advantages, strict=True):
        _, _, probabilities = mlp_forward(weights, x)
        total -= advantage * np.log(probabilities[a])
    return total / len(actions)


def keras_autodiff(model, observations, actions, advantages):
    """Gradient of Keras's categorical cross-entropy with sample weights, by the backend's autodiff."""
    labels = keras.utils.to_categorical(actions, model.output_shape[-1])
    return keras_loss_gradients(
        model, keras.losses.CategoricalCrossentropy(), observations, labels, advantages
    )


def small_policy(seed, hidden_units=(5,), observation_size=6, num_actions=3, learning_rate=0.1):
    """A tiny policy with random kernels *and biases*: Keras's zero biases would put some ReLU inputs
    exactly on the kink, where finite differences are not defined."""
    keras.utils.set_random_seed(seed)
    model = build_policy(
        ModelConfig(hidden_units=list(hidden_units)),
        TrainConfig(optimizer="sgd", learning_rate=learning_rate),
        (observation_size,),
        num_actions,
    )
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.7, size=w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def random_batch(rng, num_samples, observation_size, num_actions, values=None):
    if values is None:
        observations = rng.normal(size=(num_samples, observation_size)).astype(np.float32)
    else:
        observations = rng.choice(values, size=(num_samples, observation_size)).astype(np.float32)
    actions = rng.integers(0, num_actions, size=num_samples)
    advantages = rng.normal(size=num_samples).astype(np.float32)
    return observations, actions, advantages


@pytest.mark.parametrize("seed", range(8))
def test_analytic_equals_autodiff_equals_finite_differences(seed):
    rng = np.random.default_rng(seed)
    hidden = [(5,), (4, 3)][seed % 2]
    model = small_policy(seed, hidden_units=hidden)
    weights = [w.astype(np.float64) for w in model.get_weights()]
    observations, actions, advantages = random_batch(rng, 7, 6, 3)

    analytic = [-g for g in mlp_policy_gradient(weights, observations, actions, advantages)]
    autodiff = keras_autodiff(model, observations, actions, advantages)
    for a, b in zip(analytic, autodiff, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)

    for index, weight in enumerate(weights):

        def loss_of(w, index=index):
            return trick_loss([*weights[:index], w, *weights[index + 1 :]], observations, actions, advantages)

        np.testing.assert_allclose(
            central_differences(loss_of, weight), analytic[index], rtol=1e-5, atol=1e-8
        )


def ppo_surrogate(weights, observations, actions, advantages, old_probabilities, clip_range):
    """PPO's clipped objective (1/T) sum_i min(r_i A_i, clip(r_i, 1 - eps, 1 + eps) A_i) in float64."""
    total = 0.0
    for x, a, advantage, old in zip(observations, actions, advantages, old_probabilities, strict=True):
        ratio = mlp_forward(weights, x)[2][a] / old
        total += min(ratio * advantage, np.clip(ratio, 1 - clip_range, 1 + clip_range) * advantage)
    return total / len(actions)


@pytest.mark.parametrize("seed", range(4))
def test_clipped_weights_make_the_trick_follow_ppos_clipped_objective(seed):
    """`train.epochs` > 1: the cross-entropy weighted by `clipped_sample_weights` has minus the
    gradient of PPO's surrogate: analytic (the REINFORCE formula with the weights), Keras autodiff
    of the weighted loss and finite differences of the surrogate itself agree."""
    rng = np.random.default_rng(200 + seed)
    model = small_policy(seed)
    weights = [w.astype(np.float64) for w in model.get_weights()]
    observations, actions, advantages = random_batch(rng, 16, 6, 3)
    # The policy before the update: other weights, so that some ratios have left [0.8, 1.2].
    before = [w + rng.normal(scale=0.15, size=w.shape) for w in weights]
    old = np.array([mlp_forward(before, x)[2][a] for x, a in zip(observations, actions, strict=True)])
    now = np.array([mlp_forward(weights, x)[2][a] for x, a in zip(observations, actions, strict=True)])
    sample_weights = clipped_sample_weights(advantages, now / old, 0.2)
    assert 0 < np.sum(sample_weights == 0) < len(actions)  # both kinds of sample are in the batch

    analytic = [-g for g in mlp_policy_gradient(weights, observations, actions, sample_weights)]
    autodiff = keras_autodiff(model, observations, actions, sample_weights)
    for index, weight in enumerate(weights):

        def minus_surrogate(w, index=index):
            moved = [*weights[:index], w, *weights[index + 1 :]]
            return -ppo_surrogate(moved, observations, actions, advantages, old, 0.2)

        numeric = central_differences(minus_surrogate, weight)
        np.testing.assert_allclose(analytic[index], numeric, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(autodiff[index], numeric, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_one_fit_step_is_the_policy_gradient_step(seed):
    rng = np.random.default_rng(100 + seed)
    learning_rate = 0.1
    model = small_policy(seed, learning_rate=learning_rate)
    before = [w.astype(np.float64) for w in model.get_weights()]
    observations, _, advantages = random_batch(rng, 9, 6, 3)
    # Actions drawn from the policy, as in a rollout. Keras's cross-entropy on JAX (and torch) clips
    # probabilities to [1e-7, 1 - 1e-7], so an action the policy gives less than 1e-7, which a
    # rollout practically never samples, would get no gradient there (seed 2's random actions had
    # one at 1.5e-10); TensorFlow's reads the softmax's logits and is exact even then.
    probabilities = model.predict_on_batch(observations).astype(np.float64)
    actions = np.array([rng.choice(3, p=p / p.sum()) for p in probabilities])

    update_policy(model, observations, actions, advantages)

    gradient = mlp_policy_gradient(before, observations, actions, advantages)
    for old, new, g in zip(before, model.get_weights(), gradient, strict=True):
        # Gradient *ascent* on sum_i A_i log pi: new = old + lr * (1/T) sum_i A_i grad log pi.
        np.testing.assert_allclose(new, old + learning_rate * g, rtol=1e-5, atol=1e-6)


def test_one_fit_step_on_the_pong_policy_is_the_policy_gradient_step():
    """The real 6400 -> 200 -> 2 policy on frame differences in {-1, 0, 1}."""
    rng = np.random.default_rng(7)
    learning_rate = 0.01
    keras.utils.set_random_seed(7)
    model = build_policy(
        ModelConfig(hidden_units=[200]),
        TrainConfig(optimizer="sgd", learning_rate=learning_rate),
        (80, 80),
        2,
    )
    before = [w.astype(np.float64) for w in model.get_weights()]
    observations, actions, advantages = random_batch(
        rng, 12, 6400, 2, values=np.array([-1, 0, 0, 0, 0, 0, 1])
    )

    update_policy(model, observations.astype(np.int8), actions, advantages)

    gradient = mlp_policy_gradient(before, observations, actions, advantages)
    for old, new, g in zip(before, model.get_weights(), gradient, strict=True):
        np.testing.assert_allclose(new - old, learning_rate * g, rtol=1e-3, atol=1e-7)


def test_fit_step_raises_the_probability_of_actions_with_positive_advantage():
    """The sign a user relies on: a positive advantage makes its action likelier, a negative one rarer."""
    rng = np.random.default_rng(3)
    model = small_policy(3, learning_rate=0.5)
    observations = rng.normal(size=(2, 6)).astype(np.float32)
    actions = np.array([0, 2])
    before = model.predict_on_batch(observations)
    update_policy(model, observations, actions, np.array([1.0, -1.0], np.float32))
    after = model.predict_on_batch(observations)
    assert after[0, 0] > before[0, 0]
    assert after[1, 2] < before[1, 2]


def test_whole_batch_update_equals_fit_with_the_whole_batch():
    """update_policy's one-step shortcut (train_on_batch) moves the weights exactly as fit does."""
    rng = np.random.default_rng(5)
    observations, actions, advantages = random_batch(rng, 12, 6, 3, values=np.array([-1, 0, 1]))
    observations = observations.astype(np.int8)  # Pong's compact dtype goes in as it is
    by_update, by_fit = small_policy(3, learning_rate=0.05), small_policy(3, learning_rate=0.05)
    by_fit.compile(optimizer=keras.optimizers.Adam(0.05), loss="categorical_crossentropy")
    by_update.compile(optimizer=keras.optimizers.Adam(0.05), loss="categorical_crossentropy")
    for _ in range(3):  # Adam's state must advance the same way too
        update_policy(by_update, observations, actions, advantages)
        by_fit.fit(observations.astype(np.float32), keras.utils.to_categorical(actions, 3),
                   sample_weight=advantages, batch_size=12, epochs=1, shuffle=False, verbose=0)  # fmt: skip
    for a, b in zip(by_update.get_weights(), by_fit.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_minibatches_take_one_optimizer_step_each():
    rng = np.random.default_rng(6)
    observations, actions, advantages = random_batch(rng, 12, 6, 3)
    model = small_policy(4)
    update_policy(model, observations, actions, advantages, minibatch_size=4)
    assert int(model.optimizer.iterations.numpy()) == 3


def one_hot_batch(rng, num_samples):
    observations, actions, advantages = random_batch(rng, num_samples, 6, 3, values=np.array([-1, 0, 1]))
    return observations.astype(np.int8), keras.utils.to_categorical(actions, 3), advantages


def test_padding_for_jax_leaves_every_optimizer_step_unchanged():
    """JAX compiles a step per batch size, so update_policy pads batches there: the padded rows must
    change nothing. The policies train with SGD, which moves by exactly lr * gradient and so shows
    a wrongly scaled loss (Adam's first, sign-like steps would hide it)."""
    rng = np.random.default_rng(7)
    observations, targets, advantages = one_hot_batch(rng, 37)
    padded = pad_to_few_sizes(observations, targets, advantages)
    assert len(padded[0]) == 40  # the next multiple of 32 / 8 = 4
    assert padded[0].dtype == np.int8 and padded[2][37:].tolist() == [0, 0, 0]
    for minibatch_size, padded_size in [(None, 40), (10, 40), (16, 48)]:
        plain, padding = small_policy(8, learning_rate=0.05), small_policy(8, learning_rate=0.05)
        xs, ys, ws = pad_to_few_sizes(observations, targets, advantages, minibatch_size)
        assert len(xs) == len(ys) == len(ws) == padded_size
        for _ in range(2):
            plain.fit(observations, targets, sample_weight=advantages, batch_size=minibatch_size or 37,
                      epochs=1, shuffle=False, verbose=0)  # fmt: skip
            padding.fit(xs, ys, sample_weight=ws, batch_size=minibatch_size or padded_size,
                        epochs=1, shuffle=False, verbose=0)  # fmt: skip
        assert int(padding.optimizer.iterations.numpy()) == int(plain.optimizer.iterations.numpy())
        for a, b in zip(plain.get_weights(), padding.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_padding_keeps_the_batch_sizes_to_a_few():
    rng = np.random.default_rng(8)
    sizes = {len(pad_to_few_sizes(*one_hot_batch(rng, size))[0]) for size in range(5000, 5600, 7)}
    assert sizes == {5120, 5632}  # 5,000 to 5,600 samples: two compiled steps, not 86
    assert {len(pad_to_few_sizes(*one_hot_batch(rng, size), 64)[0]) % 64 for size in (100, 129, 200)} == {0}
    unchanged = one_hot_batch(rng, 5120)
    assert pad_to_few_sizes(*unchanged)[0] is unchanged[0]


JAX_COMPILES = """
import logging
import jax, numpy as np
from pgkeras.config import ModelConfig, TrainConfig
from pgkeras.policies import build_policy
from pgkeras.train import taken_probabilities, update_policy

class Compilations(logging.Handler):
    count = 0

    def emit(self, record):
        self.count += "Compiling" in record.getMessage()


compilations = Compilations()
logging.getLogger("jax").addHandler(compilations)
jax.config.update("jax_log_compiles", True)
rng = np.random.default_rng(0)
model = build_policy(ModelConfig(hidden_units=[8]), TrainConfig(), (16,), 2)
for size in (1000, 1001, 1013, 1020):
    if size == 1001:
        compilations.count = 0
    observations, actions = rng.integers(-1, 2, (size, 16)).astype(np.int8), rng.integers(0, 2, size)
    update_policy(model, observations, actions, rng.normal(size=size).astype(np.float32))
    assert taken_probabilities(model, observations, actions).shape == (size,)
print(compilations.count)
"""


def test_jax_compiles_no_new_step_for_each_batch_size():
    """Each JAX compilation costs about a second, and nearly every update brings a new batch size:
    neither the update nor the forward pass of `train.epochs` > 1 compiles anew for each."""
    pytest.importorskip("jax", reason="JAX is not installed (pip install -e '.[dev]' installs it)")
    # On a GPU, a JAX process (pytest's own, on the JAX backend) holds 75% of its memory by default.
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    result = subprocess.run(
        [PYTHON, "-c", JAX_COMPILES], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"]  # the step compiled for 1,000 samples serves 1,001 to 1,020


@pytest.mark.parametrize(("seed", "entropy_weight"), [(0, 0.0), (1, 0.05), (2, 0.3), (3, 0.05)])
def test_value_head_and_entropy_step_is_the_analytic_gradient_step(seed, entropy_weight):
    """A policy with a value head (and an entropy term): the analytic gradient of
    policy loss + c * squared error - beta * entropy equals finite differences, and one Keras step
    with SGD moves every weight, both heads' and the shared layer's, by exactly -lr times it."""
    rng = np.random.default_rng(300 + seed)
    learning_rate, value_loss_weight = 0.1, 0.5
    keras.utils.set_random_seed(seed)
    model = build_policy(
        ModelConfig(hidden_units=[5], value_head=True),
        TrainConfig(optimizer="sgd", learning_rate=learning_rate, value_loss_weight=value_loss_weight,
                    entropy_weight=entropy_weight),
        (6,),
        3,
    )  # fmt: skip
    model.set_weights([rng.normal(scale=0.7, size=w.shape).astype(np.float32) for w in model.get_weights()])
    before = [w.astype(np.float64) for w in model.get_weights()]
    observations, _, advantages = random_batch(rng, 9, 6, 3)
    probabilities = model.predict_on_batch(observations)[0].astype(np.float64)
    actions = np.array([rng.choice(3, p=p / p.sum()) for p in probabilities])
    returns = rng.normal(size=9).astype(np.float32)
    args = (observations, actions, advantages, returns, value_loss_weight, entropy_weight)

    analytic = actor_critic_gradient(before, *args)
    for index, weight in enumerate(before):

        def loss_of(w, index=index):
            return actor_critic_loss([*before[:index], w, *before[index + 1 :]], *args)

        numeric = central_differences(loss_of, weight)
        np.testing.assert_allclose(numeric, analytic[index], rtol=1e-5, atol=1e-8)

    update_policy(model, observations, actions, advantages, value_targets=returns)
    for old, new, g in zip(before, model.get_weights(), analytic, strict=True):
        np.testing.assert_allclose(new, old - learning_rate * g, rtol=1e-5, atol=1e-6)


ENTROPY_SWITCH = """
import keras, numpy as np
from pgkeras.config import ModelConfig, TrainConfig
from pgkeras.policies import build_policy, set_entropy_weight
from pgkeras.train import update_policy

rng = np.random.default_rng(7)
observations = rng.normal(size=(9, 6)).astype(np.float32)
actions, advantages = rng.integers(0, 3, size=9), rng.normal(size=9).astype(np.float32)


def policy(entropy_weight, weights=None):
    keras.utils.set_random_seed(0)
    config = TrainConfig(optimizer="sgd", entropy_weight=entropy_weight)
    model = build_policy(ModelConfig(hidden_units=[5]), config, (6,), 3)
    if weights is not None:
        model.set_weights(weights)
    return model


switched = policy(0.3)
start = switched.get_weights()
set_entropy_weight(switched, 0.0)
for other, weight in ((policy(0.0, start), 0.0), (policy(0.3, start), 0.3)):
    set_entropy_weight(switched, weight)
    switched.set_weights(other.get_weights())
    update_policy(switched, observations, actions, advantages)
    update_policy(other, observations, actions, advantages)
    for a, b in zip(switched.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
assert not np.array_equal(policy(0.0, start).get_weights()[0], switched.get_weights()[0])
print("same steps")
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_an_entropy_term_switched_off_and_on_steps_as_a_policy_built_so(backend):
    """`set_entropy_weight` (`train.entropy_steps`): a policy built with an entropy term and given
    weight 0 takes the step of one built without it, and given the weight back, the step of one
    built with it: the training step is traced anew with the weight it now has, on either backend."""
    pytest.importorskip(backend, reason=f"{backend} is not installed")
    env = {**os.environ, "KERAS_BACKEND": backend, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    result = subprocess.run(
        [PYTHON, "-c", ENTROPY_SWITCH], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["same", "steps"]


def test_a_value_head_policy_refuses_an_update_without_value_targets():
    model = build_policy(ModelConfig(hidden_units=[4], value_head=True), TrainConfig(), (3,), 2)
    with pytest.raises(ValueError, match="value_targets"):
        update_policy(model, np.ones((2, 3), np.float32), np.array([0, 1]), np.ones(2, np.float32))
