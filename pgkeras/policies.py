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
from pgkeras.inference import (
    NumpyPolicy,
    Parameters,
    action_probabilities,
)


@keras.saving.register_keras_serializable(package="pgkeras")
class KarpathyRMSprop(keras.optimizers.RMSprop):
    """RMSprop as pg-pong.py writes it: v = rho * v + (1 - rho) * g^2, then w -= lr * g / (sqrt(v) + eps).

    Keras's `RMSprop` divides by sqrt(v + eps) instead. The two differ where gradients are small:
    with eps = 1e-5 inside the root the denominator never falls below ~3e-3, so a gradient of 1e-5
    moves a weight by lr * 3e-3 there and by about lr here. No momentum, not centred.

    Args:
        learning_rate: step size (Karpathy: 1e-4).
        rho: decay of the running mean of squared gradients (his `decay_rate`, 0.99).
        epsilon: added to the root (his 1e-5).
    """

    def __init__(self, learning_rate=1e-4, rho=0.99, epsilon=1e-5, **kwargs):
        kwargs.pop("momentum", None)
        kwargs.pop("centered", None)
        super().__init__(learning_rate=learning_rate, rho=rho, epsilon=epsilon, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        velocity = self._velocities[self._get_variable_index(variable)]
        self.assign(
            velocity,
            ops.add(ops.multiply(self.rho, velocity), ops.multiply(1 - self.rho, ops.square(gradient))),
        )
        self.assign_sub(
            variable, ops.divide(ops.multiply(lr, gradient), ops.add(ops.sqrt(velocity), self.epsilon))
        )


VALUE_LAYER = "value"
"""Name of the value head's layer (and output) of a policy built with `model.value_head`."""


@keras.saving.register_keras_serializable(package="pgkeras")
class EntropyBonus(keras.regularizers.Regularizer):
    """An activity regularizer on the softmax layer: `weight * sum_i sum_a p_ia log p_ia`.

    Keras divides an activity regularizer's value by the batch size and adds it to the loss of the
    training step, so the loss gains minus `weight` times the mean entropy of the batch's action
    distributions, and gradient descent pushes every state's distribution towards uniform, more so
    the more peaked it is. `tests/test_trick.py` checks the gradient against the analytic one.

    Args:
        weight: the entropy coefficient (`train.entropy_weight`).
    """

    def __init__(self, weight: float):
        self.weight = float(weight)

    def __call__(self, probabilities):
        ops = keras.ops
        logs = ops.log(ops.clip(probabilities, 1e-7, 1.0))
        return self.weight * ops.sum(probabilities * logs)

    def get_config(self) -> dict:
        return {"weight": self.weight}


def set_entropy_weight(model: keras.Model, weight: float) -> None:
    """Gives the softmax layer of `model` the entropy term `weight` (0: none, as a policy built
    without one), and has Keras trace its training step anew where that changed it: the weight is
    a constant of the traced step. Tracing costs about a second, so change it rarely."""
    layer = model.get_layer("action_probabilities")
    bonus = layer.activity_regularizer
    if (bonus.weight if isinstance(bonus, EntropyBonus) else 0.0) == weight:
        return
    layer.activity_regularizer = EntropyBonus(weight) if weight else None
    model.train_function = None


def make_optimizer(train: TrainConfig) -> keras.optimizers.Optimizer:
    """Returns the Keras optimizer named by `train.optimizer` at `train.learning_rate`."""
    if train.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=train.learning_rate)
    if train.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(
            learning_rate=train.learning_rate, rho=train.rmsprop_rho, epsilon=1e-5
        )
    if train.optimizer == "karpathy_rmsprop":
        return KarpathyRMSprop(learning_rate=train.learning_rate, rho=train.rmsprop_rho, epsilon=1e-5)
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=train.learning_rate)
    raise ValueError(
        f"train.optimizer: got {train.optimizer!r}, expected 'adam', 'rmsprop', 'karpathy_rmsprop' or 'sgd'"
    )


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
        if len(observation_shape) not in (2, 3):
            raise ValueError(
                f"model.kind 'conv' needs image observations (H, W), got shape {observation_shape}; "
                "use model.kind=mlp"
            )
        if len(observation_shape) == 2:
            x = keras.layers.Reshape((*observation_shape, 1), name="image")(x)
        else:  # (C, H, W) planes, e.g. frame and difference: channels last for Conv2D
            x = keras.layers.Reshape(observation_shape, name="planes")(x)
            x = keras.layers.Permute((2, 3, 1), name="image")(x)
        for i, (filters, kernel, stride) in enumerate(
            zip(
                model_config.conv_filters,
                model_config.conv_kernel_sizes,
                model_config.conv_strides,
                strict=True,
            )
        ):
            x = keras.layers.Conv2D(
                filters,
                kernel,
                strides=stride,
                activation="relu",
                dtype=model_config.hidden_dtype,
                name=f"conv_{i}",
            )(x)
        x = keras.layers.Flatten(name="flatten")(x)
        if model_config.dropout:
            x = keras.layers.Dropout(model_config.dropout, name="dropout")(x)
    dense = {
        "use_bias": model_config.use_bias,
        "kernel_initializer": _initializer(model_config.kernel_initializer),
    }
    for i, units in enumerate(model_config.hidden_units):
        x = keras.layers.Dense(
            units, activation="relu", dtype=model_config.hidden_dtype, name=f"hidden_{i}", **dense
        )(x)
    if model_config.output == "sigmoid":
        if num_actions != 2:
            raise ValueError(
                f"model.output 'sigmoid' needs a game with 2 actions, got {num_actions}; use softmax"
            )
        outputs = keras.layers.Dense(1, activation="sigmoid", name="first_action_probability", **dense)(x)
    else:
        entropy = EntropyBonus(train_config.entropy_weight) if train_config.entropy_weight else None
        outputs = keras.layers.Dense(
            num_actions, activation="softmax", name="action_probabilities", activity_regularizer=entropy,
            **dense,
        )(x)  # fmt: skip
    if model_config.value_head:
        value = keras.layers.Dense(1, name=VALUE_LAYER, **dense)(x)
        model = keras.Model(inputs, [outputs, value], name=f"policy_{model_config.kind}")
    else:
        model = keras.Model(inputs, outputs, name=f"policy_{model_config.kind}")
    compile_for_trick(
        model, make_optimizer(train_config), train_config.loss_reduction, train_config.value_loss_weight
    )
    return model


def has_value_head(model: keras.Model) -> bool:
    """Whether `model` has the second output "value" of `model.value_head`."""
    return len(model.outputs) == 2


def policy_output_shape(model: keras.Model) -> tuple:
    """The shape of the policy's output, e.g. `(None, 2)`, with or without a value head."""
    return tuple(model.outputs[0].shape)


def _initializer(name: str) -> keras.initializers.Initializer | str:
    """`fan_in_normal`: N(0, 1/fan_in), Karpathy's `randn(fan_out, fan_in) / sqrt(fan_in)`."""
    if name == "fan_in_normal":
        return keras.initializers.VarianceScaling(1.0, mode="fan_in", distribution="untruncated_normal")
    return name


def compile_for_trick(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    reduction: str = "sum_over_batch_size",
    value_loss_weight: float = 0.5,
) -> None:
    """Compiles `model` so that `fit(x, one_hot(actions), sample_weight=advantages)` is REINFORCE.

    The default reduction divides the weighted sum by the number of samples, so one step follows
    (1 / N) * sum_i A_i * grad log pi(a_i | s_i); `"sum"` leaves out the 1 / N, as pg-pong.py's
    summed gradients do. (Keras's third option would divide by the sum of the weights, which is
    about zero once the advantages are centred.) A one-unit sigmoid policy (P of the first of two
    actions) gets binary cross-entropy: -log pi(a|s) again, with the label 1 for the first action.

    A model with a value head (`has_value_head`) gets two losses, one per output: the trick's, and
    the mean squared error between the value and the discounted return, weighted by
    `value_loss_weight`; one optimizer step follows the gradient of their weighted sum.
    """
    sigmoid = policy_output_shape(model)[-1] == 1
    if reduction == "sum_over_batch_size":  # Keras's default: the plain name
        loss = "binary_crossentropy" if sigmoid else "categorical_crossentropy"
    elif sigmoid:
        loss = keras.losses.BinaryCrossentropy(reduction=reduction)
    else:
        loss = keras.losses.CategoricalCrossentropy(reduction=reduction)
    if not has_value_head(model):
        model.compile(optimizer=optimizer, loss=loss)
        return
    value_loss = keras.losses.MeanSquaredError(reduction=reduction)
    model.compile(optimizer=optimizer, loss=[loss, value_loss], loss_weights=[1.0, value_loss_weight])


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


DENSE_ACTIVATIONS = ("relu", "softmax", "sigmoid", "linear")
"""The activations `pgkeras.inference.dense_forward` runs."""


def runs_in_numpy(model: keras.Model) -> bool:
    """Whether `model` is a plain stack of Dense layers that `pgkeras.inference` can run (`mlp`,
    `linear_gaussian` and `tabular_softmax` policies; not `conv`)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    return bool(layers) and all(
        isinstance(layer, keras.layers.Dense) and layer.activation.__name__ in DENSE_ACTIVATIONS
        for layer in layers
    )


def dense_parameters(model: keras.Model) -> Parameters:
    """A copy of a Dense-only model's weights as `pgkeras.inference.Parameters`: one
    `(kernel, [bias,] activation)` tuple per layer, float32, on the path to the policy's output (a
    value head is left out)."""
    heads = set(model.output_names)
    wanted = model.output_names[0]
    return [
        (*(np.asarray(w, dtype=np.float32) for w in layer.get_weights()), layer.activation.__name__)
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
        and (layer.name not in heads or layer.name == wanted)
    ]


class ActionSampler(NumpyPolicy):
    """Chooses actions for all games with one batched forward pass of a Keras policy.

    Dense-only policies run in numpy (`pgkeras.inference.dense_forward`): for the 8 x 6400 int8
    batch of one Pong step that is about three times faster than `predict_on_batch`, as it skips
    the framework's per-call dispatch and multiplies only the non-zero pixels; the result equals
    the Keras model's up to float32 rounding. Other policies (`conv`) use `predict_on_batch`,
    Keras's compiled single-batch inference. Never `model.predict`, which builds a dataset and
    costs tens of milliseconds per call.

    Args:
        model: the policy; maps float32 `(N, D)` to probabilities `(N, A)`, P(first action)
            `(N, 1)`, or a Gaussian policy's means `(N, 1)`.
        rng: numpy generator that draws the actions; seed it for repeatable runs.
        sigma: the standard deviation of a Gaussian policy; None for a softmax policy.
    """

    def __init__(self, model: keras.Model, rng: np.random.Generator, sigma: float | None = None):
        self.model = model
        self.in_numpy = runs_in_numpy(model)
        super().__init__(dense_parameters(model) if self.in_numpy else None, rng, sigma)

    def refresh(self) -> None:
        """Picks up new weights after the model was trained (numpy policies hold a copy)."""
        if self.in_numpy:
            self.parameters = dense_parameters(self.model)

    def outputs(self, observations: np.ndarray) -> np.ndarray:
        """The model's float32 outputs for observations `(N, D)`."""
        if self.in_numpy:
            return super().outputs(observations)
        outputs = self.model.predict_on_batch(observations.astype(np.float32, copy=False))
        return np.asarray(outputs[0] if isinstance(outputs, list | tuple) else outputs)

    def probabilities(self, observations: np.ndarray) -> np.ndarray:
        """Returns float `(N, A)` action probabilities for observations `(N, D)` (both columns
        for a one-unit sigmoid policy)."""
        return action_probabilities(self.outputs(observations))


def make_sampler(model: keras.Model, model_config: ModelConfig, rng: np.random.Generator) -> ActionSampler:
    """The action sampler that fits `model_config.kind`: Gaussian for `linear_gaussian`, else softmax."""
    return ActionSampler(model, rng, model_config.gaussian_sigma)
