"""Policy networks from the config, and batched action sampling."""

import numpy as np
import pytest

from pgkeras.config import ModelConfig, TrainConfig
from pgkeras.policies import ActionSampler, build_policy, sample_categorical
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
