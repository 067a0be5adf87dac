"""Gradients of a Keras loss by the backend's own autodiff, for the three-way gradient checks."""

import keras
import numpy as np
import pytest


def keras_loss_gradients(model, loss_fn, inputs, targets, sample_weight=None):
    """d loss_fn(targets, model(inputs), sample_weight) / d model.trainable_variables, as numpy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(targets, model(inputs), sample_weight=sample_weight)
        return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
    if backend == "jax":
        import jax

        def loss_of(trainable):
            outputs, _ = model.stateless_call(
                trainable, [v.value for v in model.non_trainable_variables], inputs
            )
            return loss_fn(targets, outputs, sample_weight=sample_weight)

        return [np.asarray(g) for g in jax.grad(loss_of)([v.value for v in model.trainable_variables])]
    pytest.skip(f"no autodiff helper for backend {backend}")
