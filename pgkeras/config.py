"""Typed settings: defaults <- YAML file <- `--set a.b=c` overrides, validated with helpful errors.

Every setting has a declared type. YAML values are coerced to it (PyYAML reads `1e-4` as a string,
so "1e-4" becomes the float 0.0001) or rejected with a one-line `ConfigError` that names the file,
the dotted key, what was received and what was expected. Unknown keys are rejected with the nearest
valid name suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

LQR_ID = "LQR"
"""`env.id` of the linear-quadratic regulator in `pgkeras.envs`."""


PONG_IDS = ("ALE/Pong-v5", "Pong", "pong")
"""The ids that mean Pong: ale-py's games with Karpathy's preprocessing and per-point returns."""


class ConfigError(ValueError):
    """A configuration file, override or value is not valid. The message is one line."""


@dataclass
class LQRConfig:
    """The linear-quadratic regulator of `env.id: LQR`: x' = A x + B u + noise, reward -(x^T Q x + u^T R u).

    The action u is a scalar, so B has one column and R is 1x1. Matrices are lists of rows.
    """

    A: list[list[float]] = field(default_factory=lambda: [[0.9, 0.3], [0.0, 0.9]])
    """State transition, n x n."""
    B: list[list[float]] = field(default_factory=lambda: [[0.0], [1.0]])
    """Control input, n x 1."""
    Q: list[list[float]] = field(default_factory=lambda: [[1.0, 0.0], [0.0, 1.0]])
    """State cost, n x n, symmetric positive semi-definite."""
    R: list[list[float]] = field(default_factory=lambda: [[1.0]])
    """Action cost, 1 x 1, positive."""
    noise_std: float = 0.01
    """Standard deviation of the Gaussian noise added to each component of the next state."""
    initial_state_std: float = 1.0
    """Each episode starts at x ~ N(0, initial_state_std^2 I)."""
    termination_prob: float = 0.2
    """Chance that an episode ends after each step. A random (geometric) horizon makes the
    undiscounted return an unbiased sample of the infinite-horizon return discounted by
    1 - termination_prob, which is what the Riccati gain optimises; a fixed horizon would cut the
    returns of late steps and bias the learned gain."""


@dataclass
class EnvConfig:
    """Which game is played, and how many copies of it step in parallel."""

    id: str = "ALE/Pong-v5"
    """Game id. Every ALE id (`ALE/Pong-v5`, `ALE/Breakout-v5`...) is played through ale-py directly and
    seen as differences of 80x80 0/1 frames (Karpathy's preprocessing for Pong, the same idea for the
    others, with the game's minimal action set); `LQR` is the linear-quadratic regulator of
    `env.lqr`; any other id is made with `gymnasium.make_vec` (Box observations flattened to float32
    vectors, Discrete ones one-hot)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for `gymnasium.make`, e.g. `{map_name: 4x4, is_slippery: false}` for FrozenLake."""
    num_envs: int = 8
    """Games stepped together; one batched forward pass chooses all their actions."""
    frame_skip: int = 4
    """Emulator frames per agent step (Atari only). Karpathy's gym Pong-v0 skipped 2-4 at random."""
    sticky_action_prob: float = 0.0
    """Probability that the emulator repeats the previous action instead (Atari only; v5 uses 0.25)."""
    max_episode_steps: int | None = None
    """Cut an episode after this many agent steps (null: the game's own limit, 108,000 frames for Atari)."""
    num_threads: int = 0
    """Emulator worker threads per group (Atari only); 0 lets ale-py pick one per core."""
    num_groups: int = 2
    """Split the games into this many groups, stepped in turn, so that the emulator plays one group
    while the policy chooses the actions of another (Atari only; must divide num_envs). 1: all
    games in lockstep."""
    actions: Literal["updown", "noop_updown", "all"] = "updown"
    """Pong's actions: UP and DOWN (Karpathy); NOOP, UP and DOWN, the three ways its paddle moves; or
    all six of its minimal set (NOOP, FIRE, UP, DOWN, UPFIRE, DOWNFIRE; the blog's part 2), in
    which FIRE moves the paddle as NOOP does and the FIRE pairs as UP and DOWN."""
    frames: Literal["difference", "frame_and_difference"] = "difference"
    """What an Atari policy sees: the difference of the last two 0/1 frames (Karpathy; what is
    still is invisible), or the last frame and that difference (2 x 6400 values)."""
    frame_pool: int = 1
    """Atari only: each 0/1 frame becomes the maximum over blocks of `frame_pool` x `frame_pool`
    of its 80x80 pixels before the difference is taken: 1 keeps 80x80 (Karpathy), 2 gives 40x40
    (1,600 values; a pixel is on where any of its four was, so the ball survives), 4 gives 20x20."""
    projections: bool = False
    """Atari only: after the images (`frames`), each image's 80 row sums and 80 column sums (fewer
    with `frame_pool`), so that a Dense layer can read a small object's height and column wherever
    it is (`pgkeras.envs.image_projections`). The observation is then a flat vector: `mlp` only."""
    blank_columns: list[int] = field(default_factory=list)
    """Atari only: columns (0-79) of the 80x80 0/1 frame set to background before the policy sees
    it, e.g. [8, 9], where Pong's opponent paddle moves, so the policy cannot copy the opponent
    (issue 22). Empty: the whole frame."""
    blank_columns_in: Literal["all", "frame"] = "all"
    """Where `blank_columns` are blank: `all` the images the policy sees, or only the still `frame`
    of `frames: frame_and_difference`, so what moves there still shows in the difference."""
    lqr: LQRConfig = field(default_factory=LQRConfig)
    """The regulator's matrices and noise (`id: LQR` only)."""


@dataclass
class ModelConfig:
    """The policy: observation vector in, a distribution over actions out."""

    kind: Literal["mlp", "conv", "tabular_softmax", "linear_gaussian"] = "mlp"
    """`mlp`: Dense ReLU layers on the flat vector, softmax out (Karpathy). `conv`: convolutions on
    the 80x80 image first. `tabular_softmax`: pi(a|s) = softmax(w[s] / temperature) on one-hot
    states (toy-text games). `linear_gaussian`: a ~ N(theta^T s, sigma^2), one continuous action
    (the LQR)."""
    hidden_units: list[int] = field(default_factory=lambda: [200])
    """Width of each hidden Dense layer (ReLU). For `conv`, the Dense layers after the convolutions."""
    output: Literal["softmax", "sigmoid"] = "softmax"
    """`mlp` and `conv`: a softmax over the actions, trained with categorical cross-entropy; or, for
    two actions, Karpathy's single sigmoid unit P(first action), trained with binary cross-entropy
    (the same trick: the sampled action is the label, the advantage the sample weight)."""
    use_bias: bool = True
    """`mlp` and `conv`: Dense layers with biases (Karpathy's network has none)."""
    kernel_initializer: Literal["glorot_uniform", "fan_in_normal"] = "glorot_uniform"
    """`mlp` and `conv`: Keras's default, or N(0, 1/fan_in) untruncated, Karpathy's
    `randn(...) / sqrt(fan_in)`."""
    conv_filters: list[int] = field(default_factory=lambda: [16, 32])
    """Filters of each convolution (`conv` only)."""
    conv_kernel_sizes: list[int] = field(default_factory=lambda: [8, 4])
    """Square kernel size of each convolution (`conv` only)."""
    conv_strides: list[int] = field(default_factory=lambda: [4, 2])
    """Stride of each convolution (`conv` only)."""
    temperature: float = 1.0
    """tau of `tabular_softmax`: the preferences are divided by it before the softmax."""
    dropout: float = 0.0
    """`conv`: fraction of the flattened convolution features dropped in each training step."""
    sigma: float = 0.3
    """Fixed standard deviation of the `linear_gaussian` action noise."""
    value_head: bool = False
    """`mlp` and `conv`: a second output, "value", one linear unit on the last hidden layer that
    learns the expected return of each state (the baseline of `train.gae_lambda`), trained in the
    same step with mean squared error."""
    hidden_dtype: Literal["float32", "mixed_bfloat16"] = "float32"
    """`mlp` and `conv`: the Keras dtype policy of the hidden layers (convolutions and Dense ReLU
    layers). `mixed_bfloat16` multiplies in bfloat16 (inputs and weights rounded to 8 bits of
    mantissa, sums in float32) and keeps the weights and the optimizer in float32; the output
    layers stay float32. On the development CPU, which has bfloat16 instructions (AVX512-BF16,
    AMX), the update takes about half the time; with oneDNN kept from them about three times as
    long (benchmarks/update_cost.py). Not measured on a CPU without them."""

    @property
    def gaussian_sigma(self) -> float | None:
        """`sigma` for a `linear_gaussian` policy; None for the softmax policies."""
        return self.sigma if self.kind == "linear_gaussian" else None


@dataclass
class TrainConfig:
    """How experience becomes one `model.fit` update, and when to stop."""

    optimizer: Literal["adam", "rmsprop", "karpathy_rmsprop", "sgd"] = "adam"
    """Keras optimizer applied to the cross-entropy-trick loss. `rmsprop` is Keras's, which divides
    by sqrt(v + 1e-5); `karpathy_rmsprop` divides by sqrt(v) + 1e-5, as pg-pong.py does."""
    loss_reduction: Literal["sum_over_batch_size", "sum"] = "sum_over_batch_size"
    """How Keras reduces the weighted per-sample losses: their mean (its default), or their sum,
    whose gradient is Karpathy's gradient summed over the batch."""
    learning_rate: float = 1e-3
    """Optimizer step size (at the start, with `learning_rate_final`)."""
    learning_rate_final: float | None = None
    """null: the step size stays `learning_rate`. A number: before each update the step size is set
    on a straight line from `learning_rate` at agent step 0 to this at `learning_rate_decay_steps`,
    and stays there after; a function of the run's agent steps, so a resumed run takes the same steps."""
    learning_rate_decay_steps: int | None = None
    """Agent steps (summed over all games) over which the step size reaches `learning_rate_final`."""
    rmsprop_rho: float = 0.99
    """RMSprop's decay of the running mean of squared gradients (Karpathy's `decay_rate`)."""
    gamma: float = 0.99
    """Discount of future rewards, in [0, 1] (at the start, with `gamma_final`)."""
    gamma_final: float | None = None
    """null: the discount stays `gamma`. A number in [0, 1]: before each update the batch's returns
    (and GAE's advantages) are taken again with the discount on a straight line from `gamma` at agent
    step 0 to this at `gamma_decay_steps`, and this after; a function of the run's agent steps, so a
    resumed run takes the same steps. A smaller discount pays more for a point won sooner."""
    gamma_decay_steps: int | None = None
    """Agent steps (summed over all games) over which the discount reaches `gamma_final`."""
    reset_on_reward: bool | None = None
    """Restart the discounted sum at every non-zero reward. Pong-specific: each point is its own
    game. null (the default) means true for Pong and false for every other game, where a reset at
    every reward would make each return the immediate reward; the saved config holds the value."""
    reset_on_life_loss: bool = False
    """Atari: also restart the discounted sum where the game loses a life, so that the actions that
    lost it get no credit from the next life's rewards (the returns of baselines' EpisodicLifeEnv;
    episodes and their rewards count as usual). With `samples_per_update`, each life is a segment."""
    advantage: Literal["standardize", "standardize_per_episode", "center", "none"] = "standardize"
    """Advantages from returns over the batch: subtract the mean and divide by the standard
    deviation, the same within each episode (pg-pong.py; needs `episodes_per_update`), subtract the
    mean only (the blog), or use the returns as they are."""
    episodes_per_update: int | None = None
    """Update after this many finished episodes (Karpathy: 10). Set this or `samples_per_update`."""
    samples_per_update: int | None = 5000
    """Update once this many agent steps of finished segments (points, or episodes if
    `reset_on_reward` is false) are collected. Set this or `episodes_per_update`."""
    minibatch_size: int | None = None
    """`batch_size` given to `model.fit`; null: the whole batch, one optimizer step per update."""
    gae_lambda: float | None = None
    """null: advantages from the discounted returns (REINFORCE). A number in [0, 1]: advantages by
    GAE(lambda) from the value output (needs `model.value_head`); 1 is the return minus the value,
    smaller trades variance for bias. `advantage` then standardises or centres them."""
    epochs: int = 1
    """Optimizer steps on each batch. 1: REINFORCE, one step. More: PPO's clipped surrogate written
    as the trick: before each further step the weights become A * r, with r the ratio of the
    action's probability now to before the update, and 0 where r has left [1 - clip_range,
    1 + clip_range] on the side the advantage pushes it (`pgkeras.returns.clipped_sample_weights`).
    Softmax and sigmoid policies only."""
    clip_range: float = 0.2
    """PPO's epsilon: how far, as a ratio, one batch may move an action's probability (`epochs` > 1)."""
    value_loss_weight: float = 0.5
    """Weight of the value output's mean squared error beside the policy's loss (`model.value_head`)."""
    entropy_weight: float = 0.0
    """`mlp` and `conv` softmax policies: subtract this times the mean entropy of the batch's action
    distributions from the loss, which keeps the policy from settling too early; 0: no entropy term."""
    entropy_steps: int | None = None
    """Agent steps (summed over all games) during which `entropy_weight` applies: from the first
    update that starts at or after this many steps the loss has no entropy term. null: throughout."""
    max_steps: int | None = None
    """Stop after this many agent steps, summed over all games (null: run until stopped)."""
    stop_at_running_reward: float | None = None
    """Stop once the running reward reaches this (e.g. 20 for Pong), with a checkpoint; null: never."""
    checkpoint_every: int = 20
    """Write a checkpoint (and refresh model.keras / best.keras) every this many updates."""
    log_every: int = 10
    """When the terminal is not interactive, print a progress line every this many updates."""


@dataclass
class EvalConfig:
    """Optional evaluation during training, in games separate from the training games."""

    every_updates: int = 0
    """Evaluate every this many updates; 0 turns evaluation off. When on, `best.keras` is the
    policy with the best evaluation score rather than the best running reward."""
    episodes: int = 4
    """Episodes per evaluation, played in parallel, one per game."""
    greedy: bool = False
    """Evaluate the most probable action instead of sampling from the softmax. Greedy play of a
    deterministic game (Pong without sticky actions) is the same game every time, so one is played."""
    sticky_action_prob: float | None = None
    """Sticky actions of the evaluation games (Atari only); null: those of the training games. ALE
    v5's 0.25 tests that a policy plays Pong, not one memorised rally."""


@dataclass
class RolloutConfig:
    """Where the games are played: in this process, in worker processes, or by Ray actors on a cluster."""

    backend: Literal["local", "processes", "ray"] = "local"
    """`local`: the trainer's process plays `env.num_envs` games. `processes`: `num_workers` processes
    on this machine each play `env.num_envs` games with numpy inference and send complete segments
    back. `ray`: the same with Ray actors, on this machine or a cluster (needs the `ray` extra:
    `pip install -e ".[ray]"`). Both need a policy numpy can run: `mlp` or `linear_gaussian`."""
    num_workers: int = 2
    """Worker processes or Ray actors collecting rollouts (backends `processes` and `ray`); each
    collects an equal share of a batch."""
    worker_timeout: float = 600.0
    """Seconds the trainer waits for a worker's share of a batch (or its games at a checkpoint)
    before it stops the run with an error: a worker that hangs ends the run, it does not hang it."""
    asynchronous: bool = False
    """`processes` only: the workers collect the next batch, with the weights from before the
    update, while the trainer runs `model.fit` on this one, so the games never wait for the update;
    every batch after the first is then played by a policy one update old. Deterministic, and
    resumed exactly (a checkpoint saves the batch collected ahead)."""


@dataclass
class RayConfig:
    """The Ray cluster of `rollout.backend: ray`."""

    address: str | None = None
    """null or empty: start a local Ray instance on this machine; `auto`: the cluster this machine
    joined with `ray start`; or a head node's address such as `10.0.0.5:6379`."""


@dataclass
class Config:
    """All settings of a training run. `configs/*.yaml` files override these defaults."""

    seed: int = 0
    """Seeds the action sampler, Keras's initialisers and the games."""
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    ray: RayConfig = field(default_factory=RayConfig)


def list_recipes() -> dict[str, Path]:
    """The shipped recipes (`configs/*.yaml`, installed as package data), by name.

    Example:
        >>> sorted(list_recipes())[:2]
        ['breakout', 'cartpole']
    """
    import importlib.resources

    folder = importlib.resources.files("pgkeras.configs")
    return {
        Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")
    }


def find_recipe(name_or_path: str | Path) -> str | Path:
    """A shipped recipe's file for a bare name such as `pong` (no folder, no suffix); anything else,
    a path, as it is.

    Raises:
        ConfigError: a bare name that is neither a file nor a shipped recipe (the recipes are named).
    """
    text = str(name_or_path)
    if "/" in text or "\\" in text or Path(text).suffix or Path(text).exists():
        return name_or_path
    recipes = list_recipes()
    if text not in recipes:
        raise ConfigError(
            f"{text}: no such recipe; expected a YAML file or one of {', '.join(sorted(recipes))}"
        )
    return recipes[text]


def load_config(
    name_or_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Loads a YAML config over the defaults, then applies `--set` overrides, and validates it.

    Args:
        name_or_path: a shipped recipe's name (`pong`, `cartpole`...: `list_recipes`), a YAML
            file, or None for the defaults alone.
        overrides: strings `dotted.key=value`; each value is read as YAML (`[64, 64]`, `null`, `3e-4`).

    Returns:
        The validated `Config`.

    Raises:
        ConfigError: missing or malformed file, unknown key, wrong type or out-of-range value.

    Example:
        >>> load_config(None, ["train.learning_rate=3e-4"]).train.learning_rate
        0.0003
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if name_or_path is not None:
        source = str(name_or_path)
        data = _read_yaml(Path(find_recipe(name_or_path)))
    config = Config()
    _merge(config, data, source, prefix="")
    return apply_overrides(config, overrides, source)


def apply_overrides(config: Config, overrides: list[str] | tuple[str, ...], source: str = "config") -> Config:
    """Applies `--set dotted.key=value` strings to `config` in place, validates, and returns it.

    Raises:
        ConfigError: bad syntax, unknown key, wrong type or out-of-range value.
    """
    for override in overrides:
        key, value = _parse_override(override)
        _set_dotted(config, key, value, source="--set")
    validate(config, source if not overrides else f"{source} with --set")
    return config


def config_from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Builds a validated `Config` from a nested dict such as a run's saved config.yaml."""
    config = Config()
    _merge(config, data, source, prefix="")
    validate(config, source)
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """Returns the config as plain nested dicts, lists and scalars (for YAML)."""
    return dataclasses.asdict(config)


def save_config(config: Config, path: Path) -> None:
    """Writes the resolved config as YAML, through a temporary file and a rename."""
    temporary = path.with_name(f".tmp-{path.name}")
    temporary.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    temporary.replace(path)


RESUMABLE_CHANGES = (
    "train.learning_rate",
    "train.learning_rate_final",
    "train.learning_rate_decay_steps",
    "train.max_steps",
    "train.stop_at_running_reward",
    "train.checkpoint_every",
    "train.log_every",
    "eval.every_updates",
    "eval.episodes",
    "eval.greedy",
    "eval.sticky_action_prob",
    "env.num_threads",
    "rollout.backend",
    "rollout.num_workers",
    "rollout.worker_timeout",
    "rollout.asynchronous",
    "ray.address",
)
"""Settings a resumed run may change: the learning rate (to recover from a divergence), and settings
that affect neither the model nor the kind of data it learns from (where the games are played, and
whether the next batch is collected during the update)."""


def check_resume_changes(saved: Config, config: Config, source: str) -> None:
    """Refuses to resume a run with settings that would break it (model shape, game, optimizer...).

    Raises:
        ConfigError: naming the first changed key that is not in `RESUMABLE_CHANGES`.
    """
    before, after = _flatten(config_to_dict(saved)), _flatten(config_to_dict(config))
    for key in before:
        if before[key] != after[key] and key not in RESUMABLE_CHANGES:
            raise ConfigError(
                f"{source}: cannot resume with {key} changed from {before[key]!r} to {after[key]!r}; "
                f"a resumed run may change only {', '.join(RESUMABLE_CHANGES)}; start a new run instead"
            )


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "kwargs":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; pass an existing YAML file, e.g. configs/pong.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {_kind(data)}")
    return data


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.learning_rate=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {text!r}: the value {raw!r} is not valid YAML") from None
    return key.strip(), value


def _set_dotted(config: Config, key: str, value: Any, source: str) -> None:
    node: Any = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        path = ".".join(parts[: depth + 1])
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names:
            raise ConfigError(f"{source}: unknown key '{path}'{_suggest(part, names, parts[:depth])}")
        if depth == len(parts) - 1:
            hint = typing.get_type_hints(type(node))[part]
            if dataclasses.is_dataclass(hint):
                if not isinstance(value, dict):
                    example = f"{path}.{_first_field(hint)}=..."
                    raise ConfigError(f"{source}: '{path}' is a section; set one of its keys, e.g. {example}")
                _merge(getattr(node, part), value, source, prefix=path + ".")
            else:
                setattr(node, part, _coerce(value, hint, source, path))
        else:
            node = getattr(node, part)
            if not dataclasses.is_dataclass(node):
                raise ConfigError(f"{source}: '{path}' is a value, not a section, so '{key}' does not exist")


def _merge(node: Any, data: Any, source: str, prefix: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: '{prefix.rstrip('.')}' must be a mapping of settings, got {_kind(data)}"
        )
    hints = typing.get_type_hints(type(node))
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in hints:
            parents = prefix.rstrip(".").split(".") if prefix else []
            raise ConfigError(f"{source}: unknown key '{path}'{_suggest(str(key), list(hints), parents)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            _merge(getattr(node, key), value, source, prefix=path + ".")
        else:
            setattr(node, key, _coerce(value, hint, source, path))


def _suggest(name: str, names: list[str], parents: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    prefix = ".".join(parents) + "." if parents else ""
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; valid keys here: {', '.join(prefix + n for n in names)}"


def _first_field(section: Any) -> str:
    return dataclasses.fields(section)[0].name


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _coerce(value: Any, hint: Any, source: str, key: str) -> Any:
    """Converts a YAML value to the declared type, or raises a ConfigError naming both."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, source, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key}: got {value!r}, expected one of {', '.join(map(repr, args))}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(
                f"{source}: {key}: got {_kind(value)}, expected a mapping, e.g. {{is_slippery: false}}"
            )
        return {str(name): item for name, item in value.items()}
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key}: got {_kind(value)}, expected a list, e.g. [200] or [64, 64]")
        (inner,) = args
        return [_coerce(item, inner, source, f"{key}[{i}]") for i, item in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key}: got {_kind(value)}, expected true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise ConfigError(f"{source}: {key}: got {_kind(value)}, expected an integer")
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML follows YAML 1.1, where `1e-4` (no dot) is a string, not a number.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: {key}: got {_kind(value)}, expected a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: {key}: got {_kind(value)}, expected a string")
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a bug in this module, not user input


def validate(config: Config, source: str = "config") -> None:
    """Checks value ranges and combinations; raises `ConfigError` naming the first bad key.

    Settings whose default depends on the game (`train.reset_on_reward: null`) get their value here.
    """
    if config.train.reset_on_reward is None:
        config.train.reset_on_reward = config.env.id in PONG_IDS

    def fail(key: str, received: Any, expected: str) -> None:
        raise ConfigError(f"{source}: {key}: got {received!r}, expected {expected}")

    env, model, train, evaluation = config.env, config.model, config.train, config.eval
    if not env.id:
        fail("env.id", env.id, "a game id such as ALE/Pong-v5 or CartPole-v1")
    if env.num_envs < 1:
        fail("env.num_envs", env.num_envs, "at least 1 game")
    if env.frame_skip < 1:
        fail("env.frame_skip", env.frame_skip, "an integer >= 1")
    if not 0.0 <= env.sticky_action_prob <= 1.0:
        fail("env.sticky_action_prob", env.sticky_action_prob, "a probability in [0, 1]")
    if env.max_episode_steps is not None and env.max_episode_steps < 1:
        fail("env.max_episode_steps", env.max_episode_steps, "null or an integer >= 1")
    if env.num_groups < 1 or env.num_envs % env.num_groups:
        fail("env.num_groups", env.num_groups, f"a divisor of env.num_envs ({env.num_envs}), e.g. 1 or 2")
    if env.num_threads < 0:
        fail("env.num_threads", env.num_threads, "0 (automatic) or a positive number of threads")
    if model.kind == "mlp" and not model.hidden_units:
        fail("model.hidden_units", model.hidden_units, "at least one layer width, e.g. [200]")
    if not 0.0 <= model.dropout < 1.0:
        fail("model.dropout", model.dropout, "a fraction in [0, 1), e.g. 0.1")
    if env.frames != "difference" and not (env.id in PONG_IDS or env.id.startswith("ALE/")):
        fail("env.frames", env.frames, "difference for games other than Atari ones (ALE/...)")
    if env.frame_pool not in (1, 2, 4) or (
        env.frame_pool != 1 and not (env.id in PONG_IDS or env.id.startswith("ALE/"))
    ):
        fail("env.frame_pool", env.frame_pool, "1, 2 or 4 for Atari games (ALE/...), 1 for the others")
    if env.projections and not (env.id in PONG_IDS or env.id.startswith("ALE/")):
        fail("env.projections", env.projections, "false for games other than Atari ones (ALE/...)")
    if env.projections and model.kind != "mlp":
        fail(
            "env.projections", env.projections, f"false with model.kind {model.kind} (its input is the image)"
        )
    if env.blank_columns and not (
        (env.id in PONG_IDS or env.id.startswith("ALE/")) and all(0 <= c < 80 for c in env.blank_columns)
    ):
        fail("env.blank_columns", env.blank_columns, "[] or columns 0-79 of Atari games (ALE/...)")
    if env.blank_columns_in == "frame" and env.frames != "frame_and_difference":
        fail("env.blank_columns_in", env.blank_columns_in, "all unless env.frames is frame_and_difference")
    if env.actions != "updown" and env.id not in PONG_IDS:
        fail("env.actions", env.actions, "updown for games other than Pong (they use their own action set)")
    for name in ("hidden_units", "conv_filters", "conv_kernel_sizes", "conv_strides"):
        values = getattr(model, name)
        if any(v < 1 for v in values):
            fail(f"model.{name}", values, "positive integers")
    if model.kind == "conv" and not (
        len(model.conv_filters) == len(model.conv_kernel_sizes) == len(model.conv_strides) >= 1
    ):
        fail(
            "model.conv_filters",
            model.conv_filters,
            "one entry per convolution, the same count as conv_kernel_sizes and conv_strides",
        )
    if not model.temperature > 0:
        fail("model.temperature", model.temperature, "a positive number such as 1.0")
    if not model.sigma > 0:
        fail("model.sigma", model.sigma, "a positive standard deviation such as 0.3")
    if env.id == LQR_ID:
        _validate_lqr(env.lqr, fail)
        if model.kind != "linear_gaussian":
            fail("model.kind", model.kind, "'linear_gaussian' for env.id LQR (its action is continuous)")
    elif model.kind == "linear_gaussian":
        fail("model.kind", model.kind, "mlp, conv or tabular_softmax (linear_gaussian needs env.id LQR)")
    if not train.learning_rate > 0:
        fail("train.learning_rate", train.learning_rate, "a positive number such as 1e-3")
    if train.learning_rate_final is not None and not train.learning_rate_final >= 0:
        fail("train.learning_rate_final", train.learning_rate_final, "null or a number >= 0 such as 1e-4")
    _validate_schedule(train, "learning_rate", fail)
    if not 0.0 <= train.rmsprop_rho < 1.0:
        fail("train.rmsprop_rho", train.rmsprop_rho, "a number in [0, 1)")
    if not 0.0 <= train.gamma <= 1.0:
        fail("train.gamma", train.gamma, "a discount in [0, 1]")
    if train.gamma_final is not None and not 0.0 <= train.gamma_final <= 1.0:
        fail("train.gamma_final", train.gamma_final, "null or a discount in [0, 1] such as 0.98")
    _validate_schedule(train, "gamma", fail)
    if (train.episodes_per_update is None) == (train.samples_per_update is None):
        fail(
            "train.samples_per_update",
            train.samples_per_update,
            "exactly one of train.episodes_per_update and train.samples_per_update "
            "to be set (the other null)",
        )
    if train.episodes_per_update is not None and train.episodes_per_update < 1:
        fail("train.episodes_per_update", train.episodes_per_update, "an integer >= 1")
    if train.samples_per_update is not None and train.samples_per_update < 1:
        fail("train.samples_per_update", train.samples_per_update, "an integer >= 1")
    if train.minibatch_size is not None and train.minibatch_size < 1:
        fail("train.minibatch_size", train.minibatch_size, "null (whole batch) or an integer >= 1")
    if train.max_steps is not None and train.max_steps < 1:
        fail("train.max_steps", train.max_steps, "null (run until stopped) or an integer >= 1")
    if train.checkpoint_every < 1:
        fail("train.checkpoint_every", train.checkpoint_every, "an integer >= 1")
    if train.log_every < 1:
        fail("train.log_every", train.log_every, "an integer >= 1")
    if evaluation.every_updates < 0:
        fail("eval.every_updates", evaluation.every_updates, "0 (off) or a positive number of updates")
    if not 1 <= evaluation.episodes <= 64:
        fail("eval.episodes", evaluation.episodes, "1 to 64 episodes")
    if train.advantage == "standardize_per_episode" and train.episodes_per_update is None:
        fail("train.advantage", train.advantage, "standardize or center with samples_per_update, or "
             "train.episodes_per_update set (batches of whole episodes)")  # fmt: skip
    if model.output == "sigmoid" and model.kind not in ("mlp", "conv"):
        fail("model.output", model.output, f"softmax with model.kind {model.kind}")
    if model.hidden_dtype != "float32" and model.kind not in ("mlp", "conv"):
        fail(
            "model.hidden_dtype",
            model.hidden_dtype,
            f"float32 with model.kind {model.kind} (mlp and conv only)",
        )
    if model.value_head and model.kind not in ("mlp", "conv"):
        fail("model.value_head", model.value_head, f"false with model.kind {model.kind} (mlp and conv only)")
    if train.gae_lambda is not None and not 0.0 <= train.gae_lambda <= 1.0:
        fail("train.gae_lambda", train.gae_lambda, "null (returns) or a number in [0, 1] such as 0.95")
    if train.gae_lambda is not None and not model.value_head:
        fail("train.gae_lambda", train.gae_lambda, "null, or model.value_head: true (GAE needs the values)")
    if train.value_loss_weight < 0:
        fail("train.value_loss_weight", train.value_loss_weight, "a weight >= 0 such as 0.5")
    if train.epochs < 1:
        fail("train.epochs", train.epochs, "a whole number of optimizer steps per batch >= 1")
    if train.epochs > 1 and model.gaussian_sigma is not None:
        fail("train.epochs", train.epochs, f"1 with model.kind {model.kind} (a softmax or sigmoid policy)")
    if not 0.0 < train.clip_range < 1.0:
        fail("train.clip_range", train.clip_range, "a ratio in (0, 1) such as 0.2")
    if train.entropy_weight < 0:
        fail("train.entropy_weight", train.entropy_weight, "a weight >= 0 such as 0.01")
    if train.entropy_weight and (model.kind not in ("mlp", "conv") or model.output != "softmax"):
        fail("train.entropy_weight", train.entropy_weight, "0 unless model.kind is mlp or conv, softmax")
    if train.entropy_steps is not None and not (train.entropy_weight > 0 and train.entropy_steps >= 1):
        fail(
            "train.entropy_steps",
            train.entropy_steps,
            "null, or agent steps >= 1 with train.entropy_weight > 0",
        )
    sticky = evaluation.sticky_action_prob
    if sticky is not None and not 0.0 <= sticky <= 1.0:
        fail("eval.sticky_action_prob", sticky, "a probability in [0, 1], or null for the training games'")
    _validate_rollout(config, fail)


RAY_INSTALL_HINT = 'pip install -e ".[ray]"'
"""How to install the optional Ray extra, as error messages print it."""


def _validate_rollout(config: Config, fail: typing.Callable[[str, Any, str], None]) -> None:
    """Checks the rollout backend: Ray installed, a numpy-runnable policy, enough work to share."""
    rollout, train = config.rollout, config.train
    if rollout.num_workers < 1:
        fail("rollout.num_workers", rollout.num_workers, "an integer >= 1")
    if not rollout.worker_timeout > 0:
        fail("rollout.worker_timeout", rollout.worker_timeout, "a positive number of seconds such as 600")
    if rollout.asynchronous and rollout.backend != "processes":
        fail("rollout.asynchronous", rollout.asynchronous, "false unless rollout.backend is processes")
    if rollout.backend == "local":
        return
    if rollout.backend == "ray" and importlib.util.find_spec("ray") is None:
        fail(
            "rollout.backend",
            rollout.backend,
            f"local, processes, or ray once it is installed: {RAY_INSTALL_HINT}",
        )
    if config.model.kind not in ("mlp", "linear_gaussian"):
        fail(
            "model.kind",
            config.model.kind,
            f"mlp or linear_gaussian with rollout.backend {rollout.backend} (its workers run the policy "
            "in numpy); rollout.backend local runs any policy",
        )
    address = config.ray.address
    if rollout.backend == "ray" and address and address != "auto" and ray_head(address) is None:
        fail("ray.address", config.ray.address, "empty (a local Ray), auto, or a head node's HOST:PORT")
    share = train.samples_per_update if train.samples_per_update is not None else train.episodes_per_update
    if share < rollout.num_workers:
        fail(
            "rollout.num_workers",
            rollout.num_workers,
            f"at most the batch size ({share}), so that every worker has a share of each batch",
        )


def ray_head(address: str) -> tuple[str, int] | None:
    """`(host, port)` of a `ray.address` such as `10.0.0.5:6379` or `ray://10.0.0.5:10001`; None if
    `address` has no such form.

    Example:
        >>> ray_head("ray://10.0.0.5:10001"), ray_head("[::1]:6379"), ray_head("head-node")
        (('10.0.0.5', 10001), ('::1', 6379), None)
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def _validate_schedule(train: TrainConfig, name: str, fail: typing.Callable[[str, Any, str], None]) -> None:
    """`train.{name}_final` and `train.{name}_decay_steps`, a straight-line schedule: both set or
    both null, over at least one agent step."""
    final, steps = getattr(train, f"{name}_final"), getattr(train, f"{name}_decay_steps")
    if (final is None) != (steps is None):
        fail(
            f"train.{name}_decay_steps",
            steps,
            f"a number of agent steps together with train.{name}_final (got {final}), or both null",
        )
    if steps is not None and not steps >= 1:
        fail(f"train.{name}_decay_steps", steps, "a number of agent steps >= 1")


def _validate_lqr(lqr: LQRConfig, fail: typing.Callable[[str, Any, str], None]) -> None:
    """Checks that the regulator's matrices have consistent shapes and sensible values."""

    def rows(name: str, matrix: list[list[float]], num_rows: int, num_columns: int) -> None:
        if len(matrix) != num_rows or any(len(row) != num_columns for row in matrix):
            fail(f"env.lqr.{name}", matrix, f"a {num_rows}x{num_columns} matrix (a list of {num_rows} rows)")

    size = len(lqr.A)
    if size < 1:
        fail("env.lqr.A", lqr.A, "a square n x n matrix with n >= 1")
    rows("A", lqr.A, size, size)
    rows("B", lqr.B, size, 1)
    rows("Q", lqr.Q, size, size)
    rows("R", lqr.R, 1, 1)
    if not lqr.R[0][0] > 0:
        fail("env.lqr.R", lqr.R, "a positive 1x1 action cost such as [[0.1]]")
    if lqr.noise_std < 0:
        fail("env.lqr.noise_std", lqr.noise_std, "a standard deviation >= 0")
    if lqr.initial_state_std < 0:
        fail("env.lqr.initial_state_std", lqr.initial_state_std, "a standard deviation >= 0")
    if not 0.0 < lqr.termination_prob < 1.0:
        fail("env.lqr.termination_prob", lqr.termination_prob, "a probability in (0, 1)")
