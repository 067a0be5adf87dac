"""The other two ways of computing a gradient, to check the analytic ones of `pgkeras.gradients`:
the Keras backend's automatic differentiation of a loss, and central finite differences.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

FINITE_DIFFERENCE_STEP = 1e-6
"""Step h of (f(x + h) - f(x - h)) / 2h: its error is O(h^2) plus float64 round-off of O(1e-16 / h)."""


def keras_loss_gradients(
    model: keras.Model,
    loss: keras.losses.Loss,
    inputs: np.ndarray,
    targets: np.ndarray,
    sample_weight: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Gradient of `loss(targets, model(inputs), sample_weight)` with respect to each trainable variable.

    Uses the backend's own autodiff (TensorFlow's GradientTape, or `jax.grad` on Keras's stateless
    call), so it is exactly the gradient `model.fit` follows for that loss.

    Args:
        model: any Keras model.
        loss: a Keras loss object, e.g. `keras.losses.CategoricalCrossentropy()`.
        inputs: float32 `(B, ...)` model inputs.
        targets: `(B, ...)` labels or regression targets.
        sample_weight: optional float32 `(B,)` weights.

    Returns:
        One numpy array per `model.trainable_variables`, in that order and of those shapes.

    Raises:
        NotImplementedError: on a backend other than TensorFlow or JAX.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            value = loss(targets, model(inputs), sample_weight=sample_weight)
        return [g.numpy() for g in tape.gradient(value, model.trainable_variables)]
    if backend == "jax":
        import jax

        def loss_of(trainable):
            outputs, _ = model.stateless_call(
                trainable, [v.value for v in model.non_trainable_variables], inputs
            )
            return loss(targets, outputs, sample_weight=sample_weight)

        return [np.asarray(g) for g in jax.grad(loss_of)([v.value for v in model.trainable_variables])]
    raise NotImplementedError(f"keras_loss_gradients supports the tensorflow and jax backends, not {backend}")


def central_differences(
    function: Callable[[np.ndarray], float], point: np.ndarray, step: float = FINITE_DIFFERENCE_STEP
) -> np.ndarray:
    """Numerical gradient of a scalar function of an array by central differences, in float64.

    Example:
        >>> central_differences(lambda x: float((x**2).sum()), np.array([1.0, -2.0])).round(6).tolist()
        [2.0, -4.0]
    """
    point = np.asarray(point, dtype=np.float64)
    gradient = np.zeros_like(point)
    for index in range(point.size):
        plus, minus = point.copy(), point.copy()
        plus.flat[index] += step
        minus.flat[index] -= step
        gradient.flat[index] = (function(plus) - function(minus)) / (2 * step)
    return gradient
