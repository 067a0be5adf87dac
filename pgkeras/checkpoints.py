"""Checkpoints: atomic saves of model + training state, resume, and safe model loading.

Layout inside a run folder:

    model.keras                       latest policy (with optimizer state)
    best.keras                        policy with the best evaluation score, or running reward at a checkpoint
    checkpoints/update-00000040/      one folder per checkpoint, the last KEEP_CHECKPOINTS kept
        model.keras                   model + optimizer state
        state.json                    counters, running reward, action-sampler RNG state
        games.npz                     the games: emulator states, held samples, scores so far
        manifest.json                 SHA-256 and size of the files above

Each checkpoint folder is written under a temporary name, fsynced and renamed into place, so a
crash during a save never leaves a half-written checkpoint where resume would find it. Resume
checks the manifest and falls back to an older checkpoint if the newest does not match (a disk
fault, a copy cut short). No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np

KEEP_CHECKPOINTS = 3
CHECKPOINT_PREFIX = "update-"
CHECKPOINT_FILES = ("model.keras", "state.json")
"""Files every checkpoint has; `GAMES_FILE` is there when the games could be saved."""
GAMES_FILE = "games.npz"
MANIFEST = "manifest.json"


class TrainingState(NamedTuple):
    """Everything besides the model needed to continue a run exactly."""

    update: int
    env_steps: int
    episodes: int
    running_reward: float | None
    best_score: float | None
    """Score of `best.keras`: evaluation mean when evaluation is on, else the running reward."""
    wall_time: float
    rng_state: dict[str, Any]
    """`numpy.random.Generator.bit_generator.state` of the action sampler."""


class ModelFileError(ValueError):
    """A model file is missing, unreadable, unsafe, or does not fit the environment."""


def save_checkpoint(
    run_dir: Path, model: keras.Model, state: TrainingState, games: dict[str, np.ndarray] | None = None
) -> Path:
    """Writes a checkpoint folder atomically, refreshes `model.keras`, and prunes old checkpoints.

    Args:
        run_dir: the run folder.
        model: the policy, with its optimizer.
        state: the counters and random state.
        games: the games' state as named arrays (`RolloutCollector.get_state`), or None.

    Returns:
        The new checkpoint folder.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CHECKPOINT_PREFIX}{state.update:08d}"
    temporary = root / f".tmp-{final.name}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    model.save(temporary / "model.keras")
    _fsync_file(temporary / "model.keras")
    _write_json(temporary / "state.json", state._asdict())
    names = list(CHECKPOINT_FILES)
    if games is not None:
        with (temporary / GAMES_FILE).open("wb") as file:
            np.savez(file, **games)
            file.flush()
            os.fsync(file.fileno())
        names.append(GAMES_FILE)
    _write_json(temporary / MANIFEST, {name: _fingerprint(temporary / name) for name in names})
    _fsync_dir(temporary)
    if final.exists():
        shutil.rmtree(final)
    temporary.rename(final)
    _fsync_dir(root)
    # The same bytes as the checkpoint's: copying them takes ~15 ms, serialising again ~50 ms.
    copy_file_atomically(final / "model.keras", Path(run_dir) / "model.keras")
    for old in list_checkpoints(run_dir)[KEEP_CHECKPOINTS:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_model_atomically(model: keras.Model, path: Path) -> None:
    """Saves `model` to `path` (.keras) through a temporary file and a rename."""
    temporary = path.with_name(f".tmp-{path.name}")
    model.save(temporary)
    _fsync_and_rename(temporary, path)


def copy_file_atomically(source: Path, path: Path) -> None:
    """Copies `source` to `path` through a temporary file, an fsync and a rename.

    A copy, not a hard link: a later `model.save` over `path` (Keras writes in place) must not
    change the checkpoint that `source` belongs to.
    """
    temporary = path.with_name(f".tmp-{path.name}")
    shutil.copyfile(source, temporary)
    _fsync_and_rename(temporary, path)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, newest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX)), reverse=True)


def load_latest_checkpoint(
    run_dir: Path,
) -> tuple[keras.Model, TrainingState, dict[str, np.ndarray] | None]:
    """Loads the newest checkpoint that reads back whole, falling back to older ones.

    Returns:
        The compiled model, the training state, and the games' arrays (None if it saved none).

    Raises:
        FileNotFoundError: if the run folder has no readable checkpoint.
    """
    problems = []
    for folder in list_checkpoints(run_dir):
        try:
            verify_checkpoint(folder)
            state = TrainingState(**json.loads((folder / "state.json").read_text()))
            model = load_policy(folder / "model.keras", compile=True)
            games = None
            if (folder / GAMES_FILE).is_file():
                with np.load(folder / GAMES_FILE, allow_pickle=False) as archive:
                    games = dict(archive)
            return model, state, games
        except (OSError, ValueError, TypeError, KeyError) as error:
            problems.append(f"{folder.name}: {error}")
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise FileNotFoundError(f"{run_dir}: no readable checkpoint to resume from{detail}")


def verify_checkpoint(folder: Path) -> None:
    """Checks a checkpoint's files against its manifest.

    Raises:
        ValueError: a file is missing, or its size or SHA-256 differs from the manifest's.
    """
    manifest_path = Path(folder) / MANIFEST
    if not manifest_path.is_file():
        raise ValueError(f"{MANIFEST} is missing")
    manifest = json.loads(manifest_path.read_text())
    for name in (*CHECKPOINT_FILES, *(name for name in manifest if name not in CHECKPOINT_FILES)):
        if not (Path(folder) / name).is_file():
            raise ValueError(f"{name} is missing")
        if _fingerprint(Path(folder) / name) != manifest.get(name):
            raise ValueError(f"{name} does not match its hash in {MANIFEST}")


def load_policy(path: Path, compile: bool = False) -> keras.Model:
    """Loads a `.keras` policy in Keras safe mode: a file that carries code (a Lambda layer) is refused.

    Args:
        path: the `.keras` file.
        compile: also restore the optimizer and loss (needed to continue training).

    Raises:
        ModelFileError: missing file, not a Keras archive, or unsafe content; one line.

    Example:
        >>> policy = pgkeras.load_policy("runs/pong-20261201-101500/best.keras")  # doctest: +SKIP
        >>> policy.input_shape, policy.output_shape  # doctest: +SKIP
        ((None, 6400), (None, 2))
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    if path.suffix != ".keras":
        # Keras ignores safe_mode for the legacy HDF5 format (CVE-2025-9905), so only .keras loads.
        raise ModelFileError(f"{path}: expected a native .keras model file, got {path.suffix or 'no suffix'}")
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # Keras raises many types for bad archives; report one line.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"{path}: cannot load a Keras model safely: {reason}") from None


def _fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with path.open("w") as file:
        json.dump(data, file, indent=1)
        file.flush()
        os.fsync(file.fileno())


def _fsync_file(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())


def _fsync_and_rename(temporary: Path, path: Path) -> None:
    _fsync_file(temporary)
    temporary.replace(path)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
