"""Choosing actions from plain weight arrays with numpy alone: no Keras, no TensorFlow.

The trainer's samplers (`pgkeras.policies.ActionSampler`) run their forward pass here, and so do
the Ray rollout workers (`pgkeras.distributed`), which then never import a framework: a worker costs
the emulator and numpy, not TensorFlow's half a gigabyte.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import numpy as np
from threadpoolctl import threadpool_limits

Parameters = list[tuple]
"""One `(kernel, activation)` or `(kernel, bias, activation)` tuple per Dense layer, in order;
activation is "relu", "softmax", "sigmoid" or "linear". `pgkeras.policies.dense_parameters(model)`
gives this form."""


def dense_forward(parameters: Parameters, observations: np.ndarray) -> np.ndarray:
    """The outputs `(N, outputs)` of a stack of Dense layers for observations `(N, D)`, in float32.

    int8 observations (Pong frame differences) go through `sparse_matmul` in the first layer.

    Example:
        >>> layers = [(np.eye(2, dtype=np.float32), np.zeros(2, np.float32), "softmax")]
        >>> dense_forward(layers, np.array([[0.0, 0.0]])).tolist()
        [[0.5, 0.5]]
    """
    x = observations
    for index, (*weights, activation) in enumerate(parameters):
        if index == 0 and x.dtype == np.int8:
            x = sparse_matmul(x, weights[0])
        else:
            x = x.astype(np.float32, copy=False) @ weights[0]
        if len(weights) == 2:
            x += weights[1]
        if activation == "relu":
            np.maximum(x, 0.0, out=x)
        elif activation == "softmax":
            x = softmax_rows(x)
        elif activation == "sigmoid":
            x = 1.0 / (1.0 + np.exp(-x))
    return x


def action_probabilities(outputs: np.ndarray) -> np.ndarray:
    """A softmax policy's outputs `(N, A)` as they are; a one-unit sigmoid policy's P(first action)
    `(N, 1)` as the two columns `[p, 1 - p]`.

    Example:
        >>> action_probabilities(np.array([[0.75]])).tolist()
        [[0.75, 0.25]]
    """
    if outputs.shape[1] == 1:
        return np.concatenate([outputs, 1.0 - outputs], axis=1)
    return outputs


class NumpyPolicy:
    """Draws actions for all games with one batched forward pass of plain weight arrays: a softmax
    (or one-unit sigmoid) policy, or, with `sigma`, the Gaussian policy mu(s) + sigma * noise.

    What the rollout workers run between updates, and the base of the trainer's
    `pgkeras.policies.ActionSampler`, which fills in the weights from a Keras model.

    Args:
        parameters: the policy's Dense layers (see `Parameters`).
        rng: numpy generator for the draws.
        sigma: standard deviation of a Gaussian policy; None for a softmax policy.

    Example:
        >>> layers = [(np.zeros((2, 2), np.float32), np.array([0.0, 9.0], np.float32), "softmax")]
        >>> NumpyPolicy(layers, np.random.default_rng(0)).sample(np.zeros((3, 2)), greedy=True).tolist()
        [1, 1, 1]
    """

    def __init__(self, parameters: Parameters | None, rng: np.random.Generator, sigma: float | None = None):
        self.parameters = parameters
        self.rng = rng
        self.sigma = sigma

    def outputs(self, observations: np.ndarray) -> np.ndarray:
        """The policy's float32 outputs `(N, outputs)` for observations `(N, D)`."""
        return dense_forward(self.parameters, observations)

    def sample(self, observations: np.ndarray, greedy: bool = False) -> np.ndarray:
        """One action per row of `observations` `(N, D)`; `greedy` takes the most probable action
        (the mean of a Gaussian policy) instead of drawing.

        Returns:
            int32 action indices `(N,)`, or float32 continuous actions `(N,)` for a Gaussian policy.
        """
        outputs = self.outputs(observations)
        if self.sigma is not None:
            means = outputs[:, 0]
            return means.astype(np.float32) if greedy else sample_gaussian(means, self.sigma, self.rng)
        probabilities = action_probabilities(outputs)
        if greedy:
            return probabilities.argmax(axis=1).astype(np.int32)
        return sample_categorical(probabilities, self.rng)


def blas_on_one_thread() -> AbstractContextManager:
    """Keeps numpy's BLAS (OpenBLAS, MKL...) on the calling thread inside a `with` block.

    Playing the games needs only small products (`sparse_matmul`, the output layer), yet OpenBLAS
    hands them to its worker threads, which then spin while they wait for more work: on two cores
    that spinning took 0.18 of a core from the emulator threads. Keras's update does not use
    numpy's BLAS and is not affected; the previous limit returns at the end of the block.
    """
    return threadpool_limits(limits=1, user_api="blas")


SPARSE_ROWS = 256
"""`sparse_matmul` multiplies at most this many rows at a time (a batch's values: thousands)."""


def sparse_matmul(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """`x @ kernel` for a mostly-zero integer `x` `(N, D)`, touching only the kernel rows it needs.

    A Pong frame difference has a few dozen non-zero pixels out of 6400, so gathering those rows of
    the `(6400, H)` kernel is far less work than the dense product. The small product left still
    goes through BLAS: run it inside `blas_on_one_thread`.

    Example:
        >>> sparse_matmul(np.array([[0, 1, 0], [-1, 0, 2]], np.int8), np.eye(3, dtype=np.float32)).tolist()
        [[0.0, 1.0, 0.0], [-1.0, 0.0, 2.0]]
    """
    if len(x) > SPARSE_ROWS:  # the selector below grows as rows x non-zeros: keep it small
        return np.concatenate([sparse_matmul(x[start : start + SPARSE_ROWS], kernel)
                               for start in range(0, len(x), SPARSE_ROWS)])  # fmt: skip
    rows, columns, values = nonzero_entries(x)
    selector = np.zeros((len(x), len(rows)), np.float32)
    selector[rows, np.arange(len(rows))] = values
    return selector @ kernel.take(columns, axis=0)


_BYTES_OF_WORD = np.arange(8)


def nonzero_entries(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and values of the non-zero entries of a 2-D array, in row-major order: what
    `np.nonzero(x)` and `x[np.nonzero(x)]` give, about 8 times faster for a mostly-zero int8 array.

    Scans 8 bytes at a time as int64 words, then looks inside the few words that are not zero.

    Example:
        >>> x = np.array([[0, 0, 0, 0, 0, 0, 0, 0], [0, 5, 0, 0, 0, 0, 0, -1]], np.int8)
        >>> [a.tolist() for a in nonzero_entries(x)]
        [[1, 1], [1, 7], [5, -1]]
    """
    flat = np.ascontiguousarray(x).reshape(-1)
    if x.dtype != np.int8 or flat.size % 8:
        rows, columns = np.nonzero(x)
        return rows, columns, x[rows, columns]
    words = np.flatnonzero(flat.view(np.int64))
    candidates = (words[:, None] * 8 + _BYTES_OF_WORD).ravel()
    values = flat[candidates]
    keep = np.flatnonzero(values)
    rows, columns = np.divmod(candidates[keep], x.shape[1])
    return rows, columns, values[keep]


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in the logits' dtype, shifted by the row maximum for stability."""
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def sample_categorical(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws one index per row of `probabilities` `(N, A)` by inverting the cumulative sum.

    Example:
        >>> sample_categorical(np.array([[0.0, 1.0], [1.0, 0.0]]), np.random.default_rng(0)).tolist()
        [1, 0]
    """
    cumulative = np.cumsum(probabilities, axis=1)
    uniform = rng.random((len(probabilities), 1)) * cumulative[:, -1:]
    actions = (uniform >= cumulative).sum(axis=1)
    return np.minimum(actions, probabilities.shape[1] - 1).astype(np.int32)


def sample_gaussian(means: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Draws float32 actions `means + sigma * noise`, one per entry of `means` `(N,)`."""
    return (means + sigma * rng.normal(size=means.shape)).astype(np.float32)
