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


def _first_comment(path: Path) -> str:
    """The first comment line of a recipe file, without its `#`."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


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
        "recipe", nargs="?", help="a shipped recipe (pong, cartpole...: see --list) or a YAML file"
    )
    parser.add_argument(
        "--config",
        help=f"YAML config file (default: {default_config})" if default_config else "YAML config file",
    )
    parser.add_argument("--list", action="store_true", help="name the shipped recipes and exit")
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
    if args.list:
        from pgkeras.config import list_recipes

        for name, path in sorted(list_recipes().items()):
            print(f"{name:20} {_first_comment(path)}")
        return 0
    if args.recipe is not None and args.config is not None:
        return _fail(f"give a recipe ({args.recipe}) or --config {args.config}, not both")
    args.config = args.config or args.recipe
    if args.resume is not None and (args.config is not None or args.run_dir is not None):
        given = "--config" if args.config is not None else "--run-dir"
        return _fail(
            f"--resume {args.resume} continues that run with its own config.yaml in its own folder; "
            f"drop {given} (--set may still change what a resume allows)"
        )
    args.config = args.config or (None if args.resume is not None else default_config)
    if args.config is None and args.resume is None:
        return _fail(
            "a recipe or --config FILE is required (or --resume RUN_DIR), "
            "e.g. pong or --config configs/cartpole.yaml"
        )

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
            stem = Path(args.config).stem
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
    from pgkeras.rollout import RolloutWorkerError
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


def play_main(argv: list[str] | None = None, prog: str = "play_pong.py") -> int:
    """`play_pong.py` / `pgkeras play`: load a saved policy and play, record or show its Atari game
    (Pong, Breakout...). Returns the exit code. Arguments are checked before TensorFlow is imported."""
    parser = argparse.ArgumentParser(prog=prog, description="Watch a saved policy play its Atari game.")
    parser.add_argument(
        "run", nargs="?", metavar="MODEL", help="a .keras file, or a run folder (its best.keras)"
    )
    parser.add_argument("--model", help="the same as MODEL")
    parser.add_argument("--config", type=Path, help="config to rebuild the game with (default: the run's)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to play (default 1)")
    parser.add_argument("--max-steps", type=int, help="stop after this many agent steps in all")
    parser.add_argument("--greedy", action="store_true", help="take the most probable action, not a sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--video", type=Path, help="write an MP4 of the game screen")
    parser.add_argument("--gif", type=Path, help="write an animated GIF of the game screen")
    parser.add_argument("--render", choices=["human"], help="show the game in a window")
    parser.add_argument(
        "--sticky-action-prob",
        type=float,
        help="probability that the emulator repeats the previous action (default: the run's; ALE v5: 0.25)",
    )
    args = parser.parse_args(argv)
    model_argument = args.model or args.run
    if model_argument is None:
        return _fail(
            f"{prog}: a model is required: a run folder or a .keras file, e.g. {prog} runs/pong-XXXX"
        )
    if args.episodes < 1:
        return _fail(f"--episodes: got {args.episodes}, expected at least 1")
    if args.max_steps is not None and args.max_steps < 1:
        return _fail(f"--max-steps: got {args.max_steps}, expected at least 1")
    if args.sticky_action_prob is not None and not 0 <= args.sticky_action_prob < 1:
        return _fail(
            f"--sticky-action-prob: got {args.sticky_action_prob}, expected a number in [0, 1), e.g. 0.25"
        )
    for option, path in (("--video", args.video), ("--gif", args.gif)):
        if path is not None and not path.parent.is_dir():
            return _fail(f"{option} {path}: folder {path.parent} does not exist")
    quiet_tensorflow()
    import importlib

    playing = importlib.import_module("pgkeras.play")  # the module; pgkeras.play is its function
    from pgkeras.checkpoints import ModelFileError, load_policy

    sinks: list = []
    try:
        model_path = playing.resolve_model_path(model_argument)
        config = playing.load_run_config(model_path, args.config)
        if args.sticky_action_prob is not None:
            config.env.sticky_action_prob = args.sticky_action_prob
        fps = playing.ATARI_FPS / config.env.frame_skip
        if args.render:
            sinks.append(playing.HumanWindow(fps))
        model = load_policy(model_path)
        playing.make_play_env(model, config, model_path).close()  # refuse a bad model before any file
        if args.video:
            sinks.append(playing.Mp4Writer(args.video, fps))
        if args.gif:
            sinks.append(playing.GifWriter(args.gif, fps))
        scores = playing.play(model, config, args.episodes, args.max_steps, args.greedy, args.seed, sinks,
                              report=print, model_path=model_path)  # fmt: skip
    except (playing.PlayError, ModelFileError, ConfigError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        print("stopped; recordings hold the frames played so far", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for sink in sinks:
            sink.close()
    print(playing.summarize(scores))
    for option, path in (("video", args.video), ("GIF", args.gif)):
        if path is not None:
            print(f"{option}: {path}")
    return 0


def plot_main(argv: list[str] | None = None, prog: str = "plot_run.py") -> int:
    """`plot_run.py` / `pgkeras plot RUN_DIR [RUN_DIR ...] [--out curve.png]`: learning curves of runs,
    overlaid. Needs matplotlib, not TensorFlow. Returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description="Plot learning curves of one or more runs.")
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument(
        "--out", type=Path, default=Path("curve.png"), help="PNG to write (default curve.png)"
    )
    args = parser.parse_args(argv)
    from pgkeras.plots import plot_runs

    try:
        plot_runs(args.run_dirs, args.out)
    except (FileNotFoundError, ValueError, KeyError) as error:
        return _fail(str(error))
    print(f"wrote {args.out}")
    return 0


COMMANDS = {
    "train": "train a policy: pgkeras train pong | pgkeras train --config my.yaml | pgkeras train --list",
    "play": "watch a saved policy play: pgkeras play RUN_DIR --episodes 3 --gif play.gif",
    "plot": "learning curves of runs, overlaid: pgkeras plot runs/a runs/b --out compare.png",
}


def main(argv: list[str] | None = None) -> int:
    """`pgkeras train|play|plot ...` (also `python -m pgkeras`). Returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(
            prog="pgkeras",
            description="Policy gradients in Keras with the cross-entropy trick.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog="commands:\n"
            + "\n".join(f"  {name:6} {text}" for name, text in COMMANDS.items())
            + "\n\n`pgkeras COMMAND --help` describes each.",
        )
        parser.add_argument("command", choices=list(COMMANDS))
        parser.parse_args(argv[:1])  # prints the help, or the error, and exits
    command, rest = argv[0], argv[1:]
    if command == "train":
        return train_main(rest, prog="pgkeras train")
    if command == "play":
        return play_main(rest, prog="pgkeras play")
    return plot_main(rest, prog="pgkeras plot")
