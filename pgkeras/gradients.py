"""Analytic score functions grad log pi(a|s), in numpy (no Keras), to check what Keras computes.

Derivations, and the errata of the source notes, are in docs/derivations.md.

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


def softmax_log_prob_grad(w: np.ndarray, s: int, a: int, tau: float) -> np.ndarray:
    """grad_w log pi(a|s) of the tabular softmax policy pi(a|s) = exp(w[s,a]/tau) / sum_b exp(w[s,b]/tau).

    Only row s depends on w[s, :], and there

        d log pi(a|s) / d w[s,b] = ([b == a] - pi(b|s)) / tau

    so the b != a entries are -pi(b|s)/tau (the source notes wrongly keep a 1/tau there).

    Args:
        w: float `(n_states, n_actions)` preferences.
        s: state index.
        a: action index.
        tau: temperature > 0.

    Returns:
        float64 array shaped like `w`, zero outside row s.

    Example:
        >>> softmax_log_prob_grad(np.zeros((2, 2)), s=1, a=0, tau=0.5).tolist()
        [[0.0, 0.0], [1.0, -1.0]]
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    w = np.asarray(w, dtype=np.float64)
    grad = np.zeros_like(w)
    grad[s] = -softmax(w[s] / tau) / tau
    grad[s, a] += 1.0 / tau
    return grad


def linear_gaussian_log_prob_grad(theta: np.ndarray, s: np.ndarray, a: float, sigma: float) -> np.ndarray:
    """grad_theta log pi(a|s) of the Gaussian policy pi(a|s) = N(a; theta^T s, sigma^2).

        log pi = -(a - theta^T s)^2 / (2 sigma^2) - log(sigma sqrt(2 pi))
        grad   = (a - theta^T s) / sigma^2 * s

    Args:
        theta: float `(d,)` weights; s: float `(d,)` state; a: the action taken; sigma: std > 0.

    Returns:
        float64 `(d,)`.

    Example:
        >>> linear_gaussian_log_prob_grad(np.zeros(2), np.array([1.0, 2.0]), a=0.5, sigma=0.5).tolist()
        [2.0, 4.0]
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    theta, s = np.asarray(theta, dtype=np.float64), np.asarray(s, dtype=np.float64)
    return (a - theta @ s) / sigma**2 * s


def mlp_cross_entropy_grads(
    W1: np.ndarray,  # noqa: N803 (the notes' names)
    W2: np.ndarray,  # noqa: N803
    x: np.ndarray,
    y: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(dJ/dW1, dJ/dW2) for z = x @ W1, h = relu(z), y_hat = softmax(h @ W2), J = -sum(y * log y_hat).

    No biases (as in the source notes); kernels are shaped as Keras stores them.

        dJ/dlogits = y_hat - y                  (the notes have y - y_hat: the sign of ascent)
        dJ/dW2     = outer(h, y_hat - y)
        dJ/dz      = (W2 @ (y_hat - y)) * [z > 0]   (the notes divide by w.h and use sgn(relu(w)))
        dJ/dW1     = outer(x, dJ/dz)

    Args:
        W1: `(D, H)`; W2: `(H, A)`; x: `(D,)`; y: one-hot `(A,)`.

    Returns:
        float64 arrays shaped like W1 and W2.

    Example:
        >>> x = y = np.array([1.0, 0.0])
        >>> grad_w1, grad_w2 = mlp_cross_entropy_grads(np.eye(2), np.zeros((2, 2)), x, y)
        >>> grad_w2[0].tolist()  # h = [1, 0], y_hat = [0.5, 0.5]
        [-0.5, 0.5]
    """
    W1, W2 = np.asarray(W1, dtype=np.float64), np.asarray(W2, dtype=np.float64)  # noqa: N806
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    z = x @ W1
    h = np.maximum(z, 0.0)
    delta = softmax(h @ W2) - y
    grad_w2 = np.outer(h, delta)
    grad_z = (W2 @ delta) * (z > 0)
    return np.outer(x, grad_z), grad_w2


def actor_critic_loss(
    weights: list[np.ndarray],
    observations: np.ndarray,
    actions: np.ndarray,
    advantages: np.ndarray,
    returns: np.ndarray,
    value_loss_weight: float,
    entropy_weight: float,
) -> float:
    """The loss one update of a policy with a value head minimises, in float64 numpy:

        (1/T) sum_i [ -A_i log pi(a_i|s_i) + c (V(s_i) - G_i)^2 - beta H(pi(.|s_i)) ]

    with c = `value_loss_weight`, beta = `entropy_weight` and H = -sum_k pi_k log pi_k.

    Args:
        weights: `[W_1, b_1, ..., W_L, b_L, w_v, b_v]` as `model.get_weights()` returns them for
            `model.value_head`: the hidden layers, the softmax layer, then the value layer `(H, 1)`,
            `(1,)` on the last hidden layer.
        observations: `(T, D)`; actions: int `(T,)`; advantages and returns: `(T,)`.
    """
    total = 0.0
    policy, (value_kernel, value_bias) = weights[:-2], weights[-2:]
    for x, action, advantage, target in zip(observations, actions, advantages, returns, strict=True):
        inputs, _, probabilities = mlp_forward(policy, x)
        value = float(inputs[-1] @ np.asarray(value_kernel, np.float64)[:, 0] + value_bias[0])
        entropy = -float(np.sum(probabilities * np.log(probabilities)))
        # float(): a float32 return would make the whole sum float32, too coarse for finite differences
        total += -float(advantage) * np.log(probabilities[action])
        total += value_loss_weight * (value - float(target)) ** 2 - entropy_weight * entropy
    return total / len(actions)


def actor_critic_gradient(
    weights: list[np.ndarray],
    observations: np.ndarray,
    actions: np.ndarray,
    advantages: np.ndarray,
    returns: np.ndarray,
    value_loss_weight: float,
    entropy_weight: float,
) -> list[np.ndarray]:
    """The gradient of `actor_critic_loss` with respect to `weights`, by hand.

    Per sample, at the softmax's logits o (pi = softmax(o), H its entropy):

        d(-A log pi_a)/do   = -A (one_hot(a) - pi)
        d(-beta H)/do_j     = beta pi_j (log pi_j + H)          (dH/do_j = -pi_j (log pi_j + H))

    and at the value v = h_L . w_v + b_v: d(c (v - G)^2)/dv = 2 c (v - G). The last hidden layer
    h_L feeds both heads, so its error is the sum of what each sends back:
    delta_L = (delta_o @ W_out^T + 2 c (v - G) w_v^T) * [z_L > 0]; below it, as in `mlp_log_prob_grads`.

    Returns:
        float64 gradients in the order and shapes of `weights`.
    """
    policy, (value_kernel, value_bias) = weights[:-2], weights[-2:]
    value_kernel = np.asarray(value_kernel, np.float64)
    grads = [np.zeros(np.shape(w), dtype=np.float64) for w in weights]
    num_layers = len(policy) // 2
    for x, action, advantage, target in zip(observations, actions, advantages, returns, strict=True):
        inputs, pre_activations, probabilities = mlp_forward(policy, x)
        value = float(inputs[-1] @ value_kernel[:, 0] + value_bias[0])
        log_probabilities = np.log(probabilities)
        entropy = -float(np.sum(probabilities * log_probabilities))
        delta = -advantage * (np.eye(len(probabilities))[action] - probabilities)
        delta += entropy_weight * probabilities * (log_probabilities + entropy)
        value_error = 2.0 * value_loss_weight * (value - float(target))
        grads[-2] += np.outer(inputs[-1], [value_error])
        grads[-1] += value_error
        for layer in reversed(range(num_layers)):
            grads[2 * layer] += np.outer(inputs[layer], delta)
            grads[2 * layer + 1] += delta
            if layer > 0:
                back = delta @ np.asarray(policy[2 * layer], np.float64).T
                if layer == num_layers - 1:  # the value head also hangs on this layer's input
                    back += value_error * value_kernel[:, 0]
                delta = back * (pre_activations[layer - 1] > 0)
    return [g / len(actions) for g in grads]
