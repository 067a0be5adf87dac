"""pgkeras: policy gradients in Keras with the cross-entropy trick.

REINFORCE written as `model.fit(x, one_hot(actions), sample_weight=advantages)` with
`loss="categorical_crossentropy"`, applied to Atari Pong from pixels.

    import pgkeras

    config = pgkeras.load_config("cartpole", ["train.max_steps=20000"])
    result = pgkeras.train(config, "runs/cartpole", callbacks=[keras.callbacks.CSVLogger("log.csv")])
    rewards = pgkeras.evaluate(result.model, config, num_episodes=10)

The names below are imported on first use, so that `import pgkeras` (and the `pgkeras plot` and
`--help` commands) do not pay for TensorFlow.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "pgkeras.config",
    "ConfigError": "pgkeras.config",
    "load_config": "pgkeras.config",
    "list_recipes": "pgkeras.config",
    "train": "pgkeras.train",
    "TrainResult": "pgkeras.train",
    "update_policy": "pgkeras.train",
    "build_policy": "pgkeras.policies",
    "load_policy": "pgkeras.checkpoints",
    "evaluate": "pgkeras.evaluation",
    "play": "pgkeras.play",
    "make_env": "pgkeras.envs",
    "read_metrics": "pgkeras.metrics",
    "plot_runs": "pgkeras.plots",
    "quiet_tensorflow": "pgkeras.cli",
}
__all__ = sorted(_EXPORTS)


class _Package(types.ModuleType):
    """The package module, with lazily imported exports.

    `pgkeras.train` and `pgkeras.play` are functions that live in modules of the same names. Python
    sets `pgkeras.train` to the module when `pgkeras/train.py` is first imported; this class keeps
    the function there instead (`from pgkeras.train import update_policy` still finds the module).
    """

    def __getattr__(self, name: str):
        if name not in _EXPORTS:
            raise AttributeError(f"module 'pgkeras' has no attribute {name!r}")
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return  # the import system naming a submodule whose name is an export
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *_EXPORTS})


sys.modules[__name__].__class__ = _Package
