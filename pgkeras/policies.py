"""Policies: Functional Keras models from observation vector to a distribution over actions.

Softmax policies (`mlp`, `conv`, `tabular_softmax`) are compiled for the cross-entropy trick
(`loss="categorical_crossentropy"`, trained with the advantages as `sample_weight`; see
`pgkeras.train.update_policy`). The `linear_gaussian` policy outputs the mean of its action and is
compiled with mean squared error, weighted by `gaussian_sample_weights`. Knows nothing of gymnasium.
"""

from __future__ import annotations

import keras
import numpy as np

from pgkeras.config import ModelConfig, TrainConfig
from pgkeras.inference import dense_forward, sample_categorical, sample_gaussian


def make_optimizer(train: TrainConfig) -> keras.optimizers.Optimizer:
    """Returns the Keras optimizer named by `train.optimizer` at `train.learning_rate`."""
    if train.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=train.learning_rate)
    if train.optimizer == "rmsprop":
        # Karpathy's RMSprop has no momentum and epsilon 1e-5.
        return keras.optimizers.RMSprop(
            learning_rate=train.learning_rate, rho=train.rmsprop_rho, epsilon=1e-5
        )
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=train.learning_rate)
    raise ValueError(f"train.optimizer: got {train.optimizer!r}, expected 'adam', 'rmsprop' or 'sgd'")


def build_policy(
    model_config: ModelConfig,
    train_config: TrainConfig,
    observation_shape: tuple[int, ...],
    num_actions: int,
) -> keras.Model:
    """Builds and compiles the policy named by `model_config.kind`.

    The input is the flat observation vector of `prod(observation_shape)` floats. `mlp` stacks
    Dense(ReLU) layers of `hidden_units` and a Dense softmax. `conv` first reshapes the vector to
    `observation_shape + (1,)` (the 80x80 Pong difference image), applies the convolutions, then
    the Dense layers. `tabular_softmax` and `linear_gaussian` are the one-layer policies of
    `build_tabular_softmax_policy` and `build_linear_gaussian_policy`.

    Args:
        model_config: architecture settings.
        train_config: optimizer settings for `compile`.
        observation_shape: shape of one observation, e.g. `(80, 80)` for Pong or `(4,)` for CartPole.
        num_actions: size of the softmax.

    Returns:
        A compiled `keras.Model` mapping float32 `(B, prod(observation_shape))` to action
        probabilities `(B, num_actions)` (for `linear_gaussian`: the action mean `(B, 1)`).
    """
    observation_size = int(np.prod(observation_shape))
    if model_config.kind == "tabular_softmax":
        return build_tabular_softmax_policy(
            observation_size, num_actions, model_config.temperature, train_config
        )
    if model_config.kind == "linear_gaussian":
        return build_linear_gaussian_policy(observation_size, train_config)
    inputs = keras.Input(shape=(observation_size,), name="observation")
    x = inputs
    if model_config.kind == "conv":
        if len(observation_shape) != 2:
            raise ValueError(
                f"model.kind 'conv' needs image observations (H, W), got shape {observation_shape}; "
                "use model.kind=mlp"
            )
        x = keras.layers.Reshape((*observation_shape, 1), name="image")(x)
        for i, (filters, kernel, stride) in enumerate(
            zip(
                model_config.conv_filters,
                model_config.conv_kernel_sizes,
                model_config.conv_strides,
                strict=True,
            )
        ):
            x = keras.layers.Conv2D(filters, kernel, strides=stride, activation="relu", name=f"conv_{i}")(x)
        x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(model_config.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    outputs = keras.layers.Dense(num_actions, activation="softmax", name="action_probabilities")(x)
    model = keras.Model(inputs, outputs, name=f"policy_{model_config.kind}")
    compile_for_trick(model, make_optimizer(train_config))
    return model


def compile_for_trick(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> None:
    """Compiles `model` so that `fit(x, one_hot(actions), sample_weight=advantages)` is REINFORCE.

    The default reduction divides the weighted sum by the number of samples, so one step follows
    (1 / N) * sum_i A_i * grad log pi(a_i | s_i). (Keras's other option would divide by the sum of
    the weights, which is about zero once the advantages are centred.)
    """
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")


def build_tabular_softmax_policy(
    num_states: int, num_actions: int, tau: float, train_config: TrainConfig
) -> keras.Model:
    """Tabular softmax policy pi(a|s) = softmax(w[s] / tau), compiled for the cross-entropy trick.

    The input is the one-hot state `(B, num_states)`; the only trainable weight is the preference
    table w, the kernel `(num_states, num_actions)` of the layer "preferences" (zeros at start).
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    inputs = keras.Input(shape=(num_states,), name="state_one_hot")
    preferences = keras.layers.Dense(
        num_actions, use_bias=False, kernel_initializer="zeros", name="preferences"
    )
    scaled = keras.layers.Rescaling(1.0 / tau, name="temperature")(preferences(inputs))
    outputs = keras.layers.Softmax(name="action_probabilities")(scaled)
    model = keras.Model(inputs, outputs, name="policy_tabular_softmax")
    compile_for_trick(model, make_optimizer(train_config))
    return model


def build_linear_gaussian_policy(state_size: int, train_config: TrainConfig) -> keras.Model:
    """Mean of the Gaussian policy N(a; theta^T s, sigma^2), compiled with mean squared error.

    theta is the kernel `(state_size, 1)` of the layer "theta", the model's only trainable weight.
    Train it with `sample_weight=gaussian_sample_weights(advantages, sigma)` so that the fit step is
    the policy gradient (see that function).
    """
    inputs = keras.Input(shape=(state_size,), name="state")
    outputs = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="theta")(inputs)
    model = keras.Model(inputs, outputs, name="policy_linear_gaussian")
    model.compile(optimizer=make_optimizer(train_config), loss="mean_squared_error")
    return model


def gaussian_sample_weights(advantages: np.ndarray, sigma: float) -> np.ndarray:
    """Sample weights that make a mean-squared-error `fit` step the Gaussian policy gradient.

    -A * log N(a; mu, sigma^2) = A / (2 sigma^2) * (a - mu)^2 + a constant in theta, and Keras's
    squared error of one output is (a - mu)^2, so the weight is A / (2 sigma^2).

    Example:
        >>> gaussian_sample_weights(np.array([1.0, -2.0]), sigma=0.5).tolist()
        [2.0, -4.0]
    """
    return (np.asarray(advantages, dtype=np.float64) / (2.0 * sigma**2)).astype(np.float32)


class DenseForward:
    """The forward pass of a stack of Dense layers in numpy, for choosing actions between updates.

    For the 8 x 6400 int8 batch of one Pong step this is about three times faster than
    `predict_on_batch`: it skips the framework's per-call dispatch and, for int8 inputs, multiplies
    only the non-zero pixels (`pgkeras.inference.sparse_matmul`). The result equals the Keras
    model's up to float32 rounding. It holds a copy of the weights: call `refresh()` after every update.

    Args:
        model: a Functional model whose layers after the input are all `Dense` with activation
            relu, softmax or linear (`mlp` and `linear_gaussian` policies).
    """

    ACTIVATIONS = ("relu", "softmax", "linear")

    def __init__(self, model: keras.Model):
        self.model = model
        self.layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        self.refresh()

    @classmethod
    def supports(cls, model: keras.Model) -> bool:
        """Whether `model` is a plain stack of Dense layers this class can run."""
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        return bool(layers) and all(
            isinstance(layer, keras.layers.Dense) and layer.activation.__name__ in cls.ACTIVATIONS
            for layer in layers
        )

    def refresh(self) -> None:
        """Copies the model's current weights."""
        self.parameters = [
            (*(np.asarray(w, dtype=np.float32) for w in layer.get_weights()), layer.activation.__name__)
            for layer in self.layers
        ]

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """Returns float32 `(N, outputs)` for observations `(N, D)` of any numeric dtype."""
        return dense_forward(self.parameters, observations)


class ActionSampler:
    """Chooses actions for all games with one batched forward pass.

    Dense-only policies run in numpy (`DenseForward`); others use `predict_on_batch`, Keras's
    compiled single-batch inference. Never `model.predict`, which builds a dataset and costs tens
    of milliseconds per call.

    Args:
        model: the policy; maps float32 `(N, D)` to probabilities `(N, A)`.
        rng: numpy generator that draws the actions; seed it for repeatable runs.
    """

    def __init__(self, model: keras.Model, rng: np.random.Generator):
        self.model = model
        self.rng = rng
        self.forward = DenseForward(model) if DenseForward.supports(model) else None

    def refresh(self) -> None:
        """Picks up new weights after the model was trained."""
        if self.forward is not None:
            self.forward.refresh()

    def outputs(self, observations: np.ndarray) -> np.ndarray:
        """Returns the model's float32 outputs for observations `(N, D)`."""
        if self.forward is not None:
            return self.forward(observations)
        return np.asarray(self.model.predict_on_batch(observations.astype(np.float32, copy=False)))

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        """Returns float `(N, A)` action probabilities for observations `(N, D)`."""
        return self.outputs(observations)

    def sample(self, observations: np.ndarray, greedy: bool = False) -> np.ndarray:
        """Draws one action per row from the softmax (or takes the argmax when `greedy`).

        Returns:
            int32 `(N,)` action indices.
        """
        probabilities = self.probabilities(observations)
        if greedy:
            return probabilities.argmax(axis=1).astype(np.int32)
        return sample_categorical(probabilities, self.rng)


class GaussianActionSampler(ActionSampler):
    """Draws continuous actions a = mu(s) + sigma * noise for all games with one batched forward pass.

    Args:
        model: maps float32 `(N, D)` to the action means `(N, 1)`.
        sigma: the policy's fixed standard deviation.
        rng: numpy generator for the noise.
    """

    def __init__(self, model: keras.Model, sigma: float, rng: np.random.Generator):
        super().__init__(model, rng)
        self.sigma = sigma

    def sample(self, observations: np.ndarray, greedy: bool = False) -> np.ndarray:
        """Returns float32 `(N,)` actions; `greedy` returns the means."""
        means = self.outputs(observations)[:, 0]
        if greedy:
            return means.astype(np.float32)
        return sample_gaussian(means, self.sigma, self.rng)


def make_sampler(
    model: keras.Model, model_config: ModelConfig, rng: np.random.Generator
) -> ActionSampler | GaussianActionSampler:
    """The action sampler that fits `model_config.kind`: Gaussian for `linear_gaussian`, else softmax."""
    if model_config.kind == "linear_gaussian":
        return GaussianActionSampler(model, model_config.sigma, rng)
    return ActionSampler(model, rng)
