"""Policy networks from the config, and batched action sampling."""

import keras
import numpy as np
import pytest

from pgkeras.config import ModelConfig, TrainConfig
from pgkeras.inference import sample_categorical
from pgkeras.policies import ActionSampler, build_policy, make_sampler
from pgkeras.train import update_policy


def test_default_pong_policy_is_karpathys_network():
    model = build_policy(ModelConfig(), TrainConfig(), (80, 80), 2)
    assert model.input_shape == (None, 6400) and model.output_shape == (None, 2)
    assert [layer.name for layer in model.layers] == ["observation", "hidden_0", "action_probabilities"]
    assert model.get_layer("hidden_0").units == 200
    assert model.loss == "categorical_crossentropy"


def test_hidden_units_come_from_the_config():
    model = build_policy(ModelConfig(hidden_units=[64, 32]), TrainConfig(), (4,), 3)
    assert [model.get_layer(f"hidden_{i}").units for i in range(2)] == [64, 32]


def test_conv_variant_is_a_config_choice_and_trains():
    model = build_policy(ModelConfig(kind="conv", hidden_units=[32]), TrainConfig(), (80, 80), 2)
    assert model.get_layer("conv_0").filters == 16 and model.output_shape == (None, 2)
    rng = np.random.default_rng(0)
    observations = rng.integers(-1, 2, size=(64, 6400)).astype(np.int8)
    before = [w.copy() for w in model.get_weights()]
    loss = update_policy(model, observations, rng.integers(0, 2, 64), rng.normal(size=64).astype(np.float32))
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_conv_needs_image_observations():
    with pytest.raises(ValueError, match="needs image observations"):
        build_policy(ModelConfig(kind="conv"), TrainConfig(), (4,), 2)


def test_sampling_follows_the_probabilities():
    rng = np.random.default_rng(0)
    probabilities = np.tile([[0.2, 0.5, 0.3]], (100_000, 1))
    counts = np.bincount(sample_categorical(probabilities, rng), minlength=3) / 100_000
    np.testing.assert_allclose(counts, [0.2, 0.5, 0.3], atol=0.01)


def test_sampler_is_batched_and_seeded():
    model = build_policy(ModelConfig(hidden_units=[8]), TrainConfig(), (5,), 2)
    observations = np.random.default_rng(1).normal(size=(16, 5)).astype(np.float32)
    first = ActionSampler(model, np.random.default_rng(7)).sample(observations)
    again = ActionSampler(model, np.random.default_rng(7)).sample(observations)
    assert first.shape == (16,) and first.dtype == np.int32
    np.testing.assert_array_equal(first, again)
    greedy = ActionSampler(model, np.random.default_rng(0)).sample(observations, greedy=True)
    np.testing.assert_array_equal(greedy, model.predict_on_batch(observations).argmax(axis=1))


def test_tabular_and_gaussian_kinds_build_their_one_layer_policies():
    tabular = build_policy(ModelConfig(kind="tabular_softmax", temperature=0.5), TrainConfig(), (16,), 4)
    assert [w.name for w in tabular.trainable_weights] == ["kernel"]
    assert tabular.get_layer("preferences").get_weights()[0].shape == (16, 4)
    np.testing.assert_allclose(tabular.predict_on_batch(np.eye(16, dtype=np.float32)[:2]), 0.25)

    gaussian = build_policy(ModelConfig(kind="linear_gaussian"), TrainConfig(), (3,), 1)
    assert [v.path for v in gaussian.trainable_variables] == ["theta/kernel"]
    assert gaussian.output_shape == (None, 1)


def test_gaussian_sampler_draws_around_the_mean_with_sigma():
    model = build_policy(ModelConfig(kind="linear_gaussian"), TrainConfig(), (2,), 1)
    model.get_layer("theta").set_weights([np.array([[1.0], [-2.0]], np.float32)])
    sampler = make_sampler(model, ModelConfig(kind="linear_gaussian", sigma=0.5), np.random.default_rng(0))
    states = np.tile(np.array([[1.0, 1.0]], np.float32), (20000, 1))
    actions = sampler.sample(states)
    assert actions.dtype == np.float32 and actions.shape == (20000,)
    assert abs(actions.mean() + 1.0) < 0.02 and abs(actions.std() - 0.5) < 0.02
    np.testing.assert_allclose(sampler.sample(states[:3], greedy=True), -1.0)


@pytest.mark.parametrize("kind", ["mlp", "linear_gaussian"])
def test_numpy_forward_matches_the_keras_model_and_follows_updates(kind):
    model = build_policy(
        ModelConfig(kind=kind, hidden_units=[16, 8]), TrainConfig(), (50,), 1 if kind != "mlp" else 3
    )
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    observations = rng.integers(-1, 2, size=(8, 50)).astype(np.int8)
    sampler = make_sampler(model, ModelConfig(kind=kind), rng)
    assert sampler.in_numpy  # the fast path is taken
    keras_outputs = model.predict_on_batch(observations.astype(np.float32))
    np.testing.assert_allclose(sampler.outputs(observations), keras_outputs, rtol=1e-5, atol=1e-6)

    model.set_weights([w + 1.0 for w in model.get_weights()])
    sampler.refresh()
    keras_outputs = model.predict_on_batch(observations.astype(np.float32))
    np.testing.assert_allclose(sampler.outputs(observations), keras_outputs, rtol=1e-5, atol=1e-6)


def test_conv_and_tabular_policies_use_keras_inference():
    conv = build_policy(ModelConfig(kind="conv"), TrainConfig(), (80, 80), 2)
    tabular = build_policy(ModelConfig(kind="tabular_softmax"), TrainConfig(), (16,), 4)
    for model in (conv, tabular):
        assert not ActionSampler(model, np.random.default_rng(0)).in_numpy


def test_conv_policy_takes_planes_of_frames():
    """A conv policy on `env.frames: frame_and_difference` sees the two 80x80 planes as channels."""
    model = build_policy(ModelConfig(kind="conv"), TrainConfig(), (2, 80, 80), 4)
    assert model.input_shape == (None, 12800) and model.output_shape == (None, 4)
    assert model.get_layer("image").output.shape == (None, 80, 80, 2)
    # The channels are the planes: the frame plane alone reaches channel 0 only.
    frame_only = np.zeros((1, 12800), np.float32)
    frame_only[0, :6400] = 1
    image = keras.Model(model.input, model.get_layer("image").output)(frame_only)
    np.testing.assert_array_equal(np.asarray(image)[0, :, :, 0], 1)
    np.testing.assert_array_equal(np.asarray(image)[0, :, :, 1], 0)


def test_bfloat16_hidden_layers_multiply_in_bfloat16_and_step_as_float32_does():
    """`model.hidden_dtype: mixed_bfloat16`: the hidden layer multiplies in bfloat16 but keeps float32
    weights, the softmax stays float32, and one step of the trick moves the weights as the float32
    policy's step does, to bfloat16's rounding (plain SGD, so the step is the gradient)."""
    rng = np.random.default_rng(3)
    observations = np.zeros((256, 12800), np.int8)  # Pong-like: frame pixels of 1, differences of -1 and 1
    for row in observations:
        row[rng.integers(0, 6400, 40)] = 1
        row[6400 + rng.integers(0, 6400, 20)] = rng.choice([-1, 1], 20)
    actions, advantages = rng.integers(0, 6, 256), rng.normal(size=256).astype(np.float32)
    train = TrainConfig(optimizer="sgd", learning_rate=0.1)
    exact = build_policy(ModelConfig(), train, (2, 80, 80), 6)
    mixed = build_policy(ModelConfig(hidden_dtype="mixed_bfloat16"), train, (2, 80, 80), 6)
    mixed.set_weights(exact.get_weights())
    hidden = mixed.get_layer("hidden_0")
    assert (hidden.compute_dtype, hidden.variable_dtype) == ("bfloat16", "float32")
    assert mixed.get_layer("action_probabilities").compute_dtype == "float32"
    assert all(w.dtype == np.float32 for w in mixed.get_weights())
    np.testing.assert_allclose(
        mixed.predict_on_batch(observations), exact.predict_on_batch(observations), rtol=0.02, atol=1e-3
    )
    before = exact.get_weights()
    update_policy(exact, observations, actions, advantages)
    update_policy(mixed, observations, actions, advantages)
    for start, a, b in zip(before, exact.get_weights(), mixed.get_weights(), strict=True):
        step_exact, step_mixed = a - start, b - start
        # Measured: 4-5% off in the hidden layer (its products and gradient kept 8 bits of mantissa,
        # and a few units cross zero), 0.3% in the softmax layer.
        assert np.linalg.norm(step_mixed - step_exact) < 0.1 * np.linalg.norm(step_exact)


def test_bfloat16_reaches_the_convolutions_of_a_conv_policy():
    config = ModelConfig(kind="conv", hidden_units=[32], hidden_dtype="mixed_bfloat16")
    model = build_policy(config, TrainConfig(), (80, 80), 2)
    hidden = ("conv_0", "conv_1", "hidden_0")
    assert [model.get_layer(name).compute_dtype for name in hidden] == ["bfloat16"] * 3
    assert model.get_layer("action_probabilities").compute_dtype == "float32"
    rng = np.random.default_rng(0)
    before = [w.copy() for w in model.get_weights()]
    loss = update_policy(model, rng.integers(-1, 2, size=(64, 6400)).astype(np.int8), rng.integers(0, 2, 64),
                         rng.normal(size=64).astype(np.float32))  # fmt: skip
    assert np.isfinite(loss)
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
