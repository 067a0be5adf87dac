"""Analytic score functions grad log pi(a|s), in numpy (no Keras), to check what Keras computes.

The policy network of the trainer: x -> Dense(ReLU) -> ... -> Dense(softmax).
With logits o = h_L @ W_out + b_out and pi = softmax(o):

    d log pi(a|x) / d o_k = [k == a] - pi_k                          (one_hot(a) - pi)

and backwards through each Dense layer (kernel W, bias b, input h_in, pre-activation z):

    d/dW = outer(h_in, delta)      d/db = delta      delta_in = (delta @ W.T) * [z_in > 0]

The cross-entropy trick's per-sample loss is -A * log pi(a|x), so its gradient is -A times these.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum for stability.

    Example:
        >>> softmax(np.array([0.0, np.log(3.0)])).round(2).tolist()
        [0.25, 0.75]
    """
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def mlp_forward(
    weights: list[np.ndarray], x: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Forward pass of the Dense(ReLU)...Dense(softmax) policy.

    Args:
        weights: `[W_1, b_1, ..., W_L, b_L]` as `model.get_weights()` returns them; kernels
            `(in, out)`, biases `(out,)`.
        x: float `(D,)` one observation.

    Returns:
        (layer inputs, pre-activations, action probabilities `(A,)`).
    """
    inputs, pre_activations = [], []
    h = np.asarray(x, dtype=np.float64)
    num_layers = len(weights) // 2
    for layer in range(num_layers):
        kernel, bias = (np.asarray(w, dtype=np.float64) for w in weights[2 * layer : 2 * layer + 2])
        inputs.append(h)
        z = h @ kernel + bias
        pre_activations.append(z)
        h = np.maximum(z, 0.0) if layer < num_layers - 1 else softmax(z)
    return inputs, pre_activations, h


def mlp_log_prob_grads(weights: list[np.ndarray], x: np.ndarray, action: int) -> list[np.ndarray]:
    """grad log pi(action | x) with respect to every kernel and bias of the MLP policy.

    Args:
        weights: `[W_1, b_1, ..., W_L, b_L]` (see `mlp_forward`).
        x: float `(D,)` one observation.
        action: the action index a.

    Returns:
        Gradients in the same order and shapes as `weights`, float64.

    Example:
        >>> W, b = np.zeros((1, 2)), np.zeros(2)  # pi = [0.5, 0.5] whatever x is
        >>> [g.tolist() for g in mlp_log_prob_grads([W, b], np.array([2.0]), action=0)]
        [[[1.0, -1.0]], [0.5, -0.5]]
    """
    inputs, pre_activations, probabilities = mlp_forward(weights, x)
    delta = -probabilities
    delta[action] += 1.0  # d log pi(a) / d logits = one_hot(a) - pi
    grads: list[np.ndarray] = [np.empty(0)] * len(weights)
    for layer in reversed(range(len(weights) // 2)):
        grads[2 * layer] = np.outer(inputs[layer], delta)
        grads[2 * layer + 1] = delta.copy()
        if layer > 0:
            kernel = np.asarray(weights[2 * layer], dtype=np.float64)
            delta = (delta @ kernel.T) * (pre_activations[layer - 1] > 0)
    return grads


def mlp_policy_gradient(
    weights: list[np.ndarray], observations: np.ndarray, actions: np.ndarray, advantages: np.ndarray
) -> list[np.ndarray]:
    """The REINFORCE estimate (1/T) * sum_i A_i * grad log pi(a_i | s_i) for a batch.

    This is exactly minus the gradient of the loss that `update_policy` hands to `model.fit`.

    Args:
        weights: `[W_1, b_1, ..., W_L, b_L]`.
        observations: `(T, D)`; actions: int `(T,)`; advantages: `(T,)`.

    Returns:
        Gradients in the order and shapes of `weights`, float64.
    """
    total = [np.zeros(np.shape(w), dtype=np.float64) for w in weights]
    for x, action, advantage in zip(observations, actions, advantages, strict=True):
        for accumulated, grad in zip(total, mlp_log_prob_grads(weights, x, int(action)), strict=True):
            accumulated += advantage * grad
    return [g / len(actions) for g in total]
