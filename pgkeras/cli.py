"""Command-line entry points behind `scripts/`: parse arguments, call one function, report errors.

Bad input ends with one line on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pgkeras.config import ConfigError, apply_overrides, config_from_dict, load_config

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
# Training failed (a non-finite loss, or Ray rollout workers that did not start or kept dying);
# the run folder keeps its last checkpoint.
EXIT_TRAINING_FAILED = 1


def quiet_tensorflow() -> None:
    """Imports TensorFlow (when installed) without its C++ start-up notices.

    TensorFlow writes several lines to stderr on import (CPU features, CUDA probing) before its
    log settings apply, which would bury our one-line errors. They go to /dev/null during the
    import only; Python errors still surface. Set TF_CPP_MIN_LOG_LEVEL=0 to see TensorFlow's logs.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Even with KERAS_BACKEND=jax, TensorBoard's event writer imports TensorFlow when it is installed.
    if "tensorflow" in sys.modules:
        return
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _unwritable_reason(run_dir: Path) -> str | None:
    """Why a run folder could not be made at `run_dir`, found before anything is written; else None."""
    parent = run_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return None


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def train_main(
    argv: list[str] | None = None, default_config: str | None = None, prog: str | None = None
) -> int:
    """`train.py` / `train_pong.py`: train a policy from a YAML config. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a Keras policy with the cross-entropy trick (REINFORCE as model.fit).",
    )
    parser.add_argument(
        "--config",
        help=f"YAML config file (default: {default_config})" if default_config else "YAML config file",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set train.learning_rate=3e-4 (repeatable)",
    )
    parser.add_argument("--run-dir", type=Path, help="run folder (default: runs/<config name>-<time>)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest checkpoint",
    )
    args = parser.parse_args(argv)
    if args.resume is not None and (args.config is not None or args.run_dir is not None):
        given = "--config" if args.config is not None else "--run-dir"
        return _fail(
            f"--resume {args.resume} continues that run with its own config.yaml in its own folder; "
            f"drop {given} (--set may still change what a resume allows)"
        )
    args.config = args.config or (None if args.resume is not None else default_config)
    if args.config is None and args.resume is None:
        return _fail("--config FILE is required (or --resume RUN_DIR), e.g. --config configs/cartpole.yaml")

    try:
        if args.resume is not None:
            run_dir = args.resume
            saved = run_dir / "config.yaml"
            if not saved.is_file():
                return _fail(f"{saved}: not found; --resume needs a run folder made by this trainer")
            import yaml

            config = apply_overrides(
                config_from_dict(yaml.safe_load(saved.read_text()) or {}, str(saved)),
                args.overrides,
                str(saved),
            )
        else:
            config = load_config(args.config, args.overrides)
            stem = Path(args.config).stem if args.config else "run"
            run_dir = args.run_dir or Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
            if (run_dir / "config.yaml").exists():
                return _fail(f"{run_dir}: already holds a run; use --resume {run_dir} or another --run-dir")
            unwritable = _unwritable_reason(run_dir)
            if unwritable:
                return _fail(f"{run_dir}: cannot create the run folder: {unwritable}; use another --run-dir")
    except ConfigError as error:
        return _fail(str(error))

    quiet_tensorflow()
    from pgkeras.checkpoints import ModelFileError
    from pgkeras.distributed import RolloutWorkerError
    from pgkeras.train import train

    try:
        result = train(config, run_dir, resume=args.resume is not None)
    except (FileNotFoundError, ModelFileError, ConfigError) as error:
        return _fail(str(error))
    except (FloatingPointError, RolloutWorkerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_TRAINING_FAILED
    except OSError as error:  # a full disk or a lost folder while saving
        return _fail(
            f"{run_dir}: cannot write: {error.strerror or error}; the last complete checkpoint is kept, "
            f"resume with --resume {run_dir} once there is room"
        )
    except KeyboardInterrupt:
        print(f"\nstopped at once; resume from the last checkpoint with: --resume {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.interrupted:
        print(f"stopped after update {result.updates} with a checkpoint; continue with: --resume {run_dir}")
        return EXIT_INTERRUPTED
    print(
        f"done: {result.updates} updates, {result.env_steps:,} steps, {result.episodes} episodes, "
        f"running reward {result.running_reward if result.running_reward is not None else float('nan'):.2f}; "
        f"outputs in {run_dir}"
    )
    return 0
