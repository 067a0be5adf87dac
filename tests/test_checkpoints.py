"""Checkpoints: the manifest catches damaged files, and resume falls back to the newest good one."""

import json

import numpy as np
import pytest

from pgkeras.checkpoints import (
    TrainingState,
    list_checkpoints,
    load_latest_checkpoint,
    load_policy,
    save_checkpoint,
    verify_checkpoint,
)
from pgkeras.config import ModelConfig, TrainConfig
from pgkeras.policies import build_policy


def state(update):
    return TrainingState(update, 100 * update, update, -20.0 + update, None, 1.0 * update,
                         np.random.default_rng(update).bit_generator.state)  # fmt: skip


@pytest.fixture
def run_with_three_checkpoints(tmp_path):
    model = build_policy(ModelConfig(hidden_units=[4]), TrainConfig(), (6,), 2)
    model.optimizer.build(model.trainable_variables)  # as after training: its state is saved too
    for update in (1, 2, 3):
        model.set_weights([np.full(w.shape, update, np.float32) for w in model.get_weights()])
        save_checkpoint(tmp_path, model, state(update), games={"episode_return": np.full(4, update - 21.0)})
    return tmp_path


def test_checkpoints_carry_a_manifest_of_hashes(run_with_three_checkpoints):
    newest = list_checkpoints(run_with_three_checkpoints)[0]
    manifest = json.loads((newest / "manifest.json").read_text())
    assert set(manifest) == {"model.keras", "state.json", "games.npz"}
    assert all(len(entry["sha256"]) == 64 and entry["bytes"] > 0 for entry in manifest.values())
    verify_checkpoint(newest)


@pytest.mark.parametrize("damage", ["truncate_model", "edit_state", "drop_manifest"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(run_with_three_checkpoints, damage):
    newest = list_checkpoints(run_with_three_checkpoints)[0]
    if damage == "truncate_model":
        data = (newest / "model.keras").read_bytes()
        (newest / "model.keras").write_bytes(data[: len(data) // 2])
    elif damage == "edit_state":
        text = (newest / "state.json").read_text().replace('"update": 3', '"update": 7')
        (newest / "state.json").write_text(text)
    else:
        (newest / "manifest.json").unlink()
    with pytest.raises(ValueError):
        verify_checkpoint(newest)

    model, restored, _ = load_latest_checkpoint(run_with_three_checkpoints)
    assert restored.update == 2
    assert np.all(model.get_weights()[0] == 2.0)


def test_the_games_come_back_and_damaged_games_fall_back_to_an_older_checkpoint(run_with_three_checkpoints):
    _, restored, games = load_latest_checkpoint(run_with_three_checkpoints)
    assert restored.update == 3 and games["episode_return"].tolist() == [-18.0] * 4
    newest = list_checkpoints(run_with_three_checkpoints)[0]
    data = bytearray((newest / "games.npz").read_bytes())
    data[-40] ^= 0xFF
    (newest / "games.npz").write_bytes(bytes(data))
    _, restored, games = load_latest_checkpoint(run_with_three_checkpoints)
    assert restored.update == 2 and games["episode_return"].tolist() == [-19.0] * 4


def test_an_unfinished_save_is_ignored(run_with_three_checkpoints):
    # A kill during a save leaves the temporary folder behind; it never counts as a checkpoint.
    (run_with_three_checkpoints / "checkpoints" / ".tmp-update-00000004").mkdir()
    _, restored, _ = load_latest_checkpoint(run_with_three_checkpoints)
    assert restored.update == 3


def test_no_good_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no readable checkpoint"):
        load_latest_checkpoint(tmp_path)


def test_the_run_folders_model_is_the_newest_checkpoints_and_saving_over_it_spares_the_checkpoint(
    run_with_three_checkpoints,
):
    newest = list_checkpoints(run_with_three_checkpoints)[0]
    latest = run_with_three_checkpoints / "model.keras"
    assert latest.read_bytes() == (newest / "model.keras").read_bytes()
    assert np.all(load_policy(latest).get_weights()[0] == 3.0)

    # A user saving another model over model.keras (Keras writes in place) must not touch the
    # checkpoint: the run folder holds a copy, not a second name for the same file.
    other = build_policy(ModelConfig(hidden_units=[4]), TrainConfig(), (6,), 2)
    other.save(latest)
    verify_checkpoint(newest)
    _, restored, _ = load_latest_checkpoint(run_with_three_checkpoints)
    assert restored.update == 3
