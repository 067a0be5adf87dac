"""The scripts as users run them: real subprocesses, real files."""

import json
import os
import signal
import subprocess
import time

import keras
import numpy as np
import pytest
from conftest import PYTHON, REPO, SCRIPTS, timing_free

from pgkeras.checkpoints import verify_checkpoint
from pgkeras.metrics import read_metrics


def run(*args, cwd=REPO, timeout=300):
    return subprocess.run([PYTHON, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_train_pong_script_runs_with_the_default_config(tmp_path):
    run_dir = tmp_path / "pong"
    result = run(
        SCRIPTS / "train_pong.py",
        "--set",
        "train.max_steps=1500",
        "--set",
        "env.num_envs=2",
        "--set",
        "train.samples_per_update=500",
        "--run-dir",
        run_dir,
    )
    assert result.returncode == 0, result.stderr
    assert "done:" in result.stdout
    assert {"config.yaml", "metrics.csv", "model.keras", "best.keras", "checkpoints", "tensorboard"} <= {
        p.name for p in run_dir.iterdir()
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.learning_rate=-1"], "train.learning_rate: got -1.0, expected a positive number"),
        (["--set", "env.num_env=4"], "did you mean 'env.num_envs'?"),
        (["--config", "configs/missing.yaml"], "configs/missing.yaml: file not found"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, message):
    run_dir = tmp_path / "never"
    result = run(SCRIPTS / "train_pong.py", *args, "--run-dir", run_dir)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not run_dir.exists()


def test_unreachable_ray_head_fails_in_seconds_and_writes_nothing(tmp_path):
    pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]"')
    run_dir = tmp_path / "never"
    # Port 1 on this machine refuses at once; Ray alone would retry for minutes.
    args = ["--set", "rollout.backend=ray", "--set", "ray.address=127.0.0.1:1", "--run-dir", run_dir]
    result = run(SCRIPTS / "train_pong.py", *args, timeout=60)
    assert result.returncode == 2
    assert "error: ray.address: cannot reach 127.0.0.1:1 within 5 s (Connection refused)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not run_dir.exists()


def test_generic_trainer_needs_a_config(tmp_path):
    result = run(SCRIPTS / "train.py", cwd=tmp_path)
    assert result.returncode == 2 and "--config" in result.stderr


def test_lqr_training_prints_the_riccati_optimum_beside_theta(tmp_path):
    result = run(
        SCRIPTS / "train.py",
        "--config",
        "configs/lqr_linear_gaussian.yaml",
        "--set",
        "train.max_steps=4000",
        "--run-dir",
        tmp_path / "lqr",
    )
    assert result.returncode == 0, result.stderr
    assert "optimal theta (minus the Riccati gain): [-0.209, -0.597]" in result.stdout
    assert " vs optimal [-0.209, -0.597] (" in result.stdout.splitlines()[-2]


@pytest.mark.slow
def test_training_runs_on_the_jax_backend(tmp_path):
    """Nothing in the core is TensorFlow-only: the same script trains and saves with KERAS_BACKEND=jax."""
    pytest.importorskip("jax", reason="JAX is not installed (pip install -e '.[dev]' installs it)")
    run_dir = tmp_path / "jax"
    result = subprocess.run(
        [PYTHON, SCRIPTS / "train_pong.py", "--set", "train.max_steps=3000", "--set", "env.num_envs=4",
         "--set", "train.samples_per_update=1000", "--run-dir", run_dir],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "KERAS_BACKEND": "jax"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = read_metrics(run_dir / "metrics.csv")
    assert len(rows) >= 2 and all(np.isfinite(row["loss"]) for row in rows)
    newest = sorted((run_dir / "checkpoints").iterdir())[-1]
    assert json.loads((newest / "state.json").read_text())["update"] == len(rows)


def start_training(run_dir, *extra):
    settings = ["env.num_envs=4", "train.samples_per_update=1000", "model.hidden_units=[16]",
                "train.checkpoint_every=2"]  # fmt: skip
    overrides = [word for setting in settings for word in ("--set", setting)]
    return subprocess.Popen(
        [PYTHON, SCRIPTS / "train_pong.py", *overrides, "--run-dir", run_dir, *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_rows(run_dir, count, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = run_dir / "metrics.csv"
        if metrics.is_file() and len(read_metrics(metrics)) >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no {count} metrics rows within {timeout} s")


@pytest.mark.slow
def test_ctrl_c_stops_at_the_update_with_a_checkpoint_and_says_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    process = start_training(run_dir)
    wait_for_rows(run_dir, 1, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert f"--resume {run_dir}" in stdout
    rows = read_metrics(run_dir / "metrics.csv")
    newest = sorted((run_dir / "checkpoints").iterdir())[-1]
    assert json.loads((newest / "state.json").read_text())["update"] == len(rows)


def tensorboard_steps(run_dir, tag="loss"):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["processes", "local"])
def test_kill_9_at_random_moments_and_resume_give_the_uninterrupted_run(tmp_path, backend):
    """SIGKILL at seeded random moments, each followed by --resume, until the run ends: the rows
    (timing aside), TensorBoard's points and the final weights are those of a run never stopped.
    A kill before the first checkpoint makes --resume start the run over."""
    settings = ["env.num_envs=2", "train.samples_per_update=1000", "model.hidden_units=[16]",
                "train.checkpoint_every=2", "train.max_steps=30000",
                f"rollout.backend={backend}"]  # fmt: skip
    overrides = [word for setting in settings for word in ("--set", setting)]
    reference = run(SCRIPTS / "train_pong.py", *overrides, "--run-dir", tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr

    run_dir = tmp_path / "killed"
    rng = np.random.default_rng(9)
    command = [SCRIPTS / "train_pong.py", *overrides, "--run-dir", run_dir]
    kills = 0
    # Moments counted from the line `run folder: ...`, printed once the run is set up (the imports
    # before it take a few seconds, more on a loaded machine); the next checkpoint comes within a
    # second or two.
    for delay in rng.uniform(0.0, 3.0, size=3):
        process = subprocess.Popen(
            [PYTHON, *command], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for line in process.stdout:
            if line.startswith("run folder:"):
                break
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.kill()
            kills += 1
        process.communicate(timeout=60)
        command = [SCRIPTS / "train_pong.py", "--resume", run_dir]
    assert kills >= 2
    final = run(*command)
    assert final.returncode == 0, final.stderr

    rows = read_metrics(run_dir / "metrics.csv")
    assert timing_free(rows) == timing_free(read_metrics(tmp_path / "reference" / "metrics.csv"))
    assert rows[-1]["episodes"] >= 1  # games crossed checkpoints and kills to their end
    assert tensorboard_steps(run_dir) == [int(row["env_steps"]) for row in rows]
    expected = keras.models.load_model(tmp_path / "reference" / "model.keras").get_weights()
    for a, b in zip(expected, keras.models.load_model(run_dir / "model.keras").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_with_a_changed_game_is_refused_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    assert run(SCRIPTS / "train.py", "--config", "configs/cartpole.yaml", "--set", "train.max_steps=200",
               "--run-dir", run_dir).returncode == 0  # fmt: skip
    before = (run_dir / "metrics.csv").read_text()
    result = run(SCRIPTS / "train.py", "--resume", run_dir, "--set", "env.id=Acrobot-v1")
    assert result.returncode == 2
    assert "cannot resume with env.id changed from 'CartPole-v1' to 'Acrobot-v1'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (run_dir / "metrics.csv").read_text() == before


def test_unwritable_run_folder_fails_before_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run(SCRIPTS / "train.py", "--config", "configs/cartpole.yaml", "--run-dir", blocker / "run")
    assert result.returncode == 2
    assert "cannot create the run folder" in result.stderr and "is a file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_divergence_stops_with_the_update_and_a_resume_command_keeping_the_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    first = run(SCRIPTS / "train.py", "--config", "configs/cartpole.yaml", "--set", "train.max_steps=300",
                "--set", "train.checkpoint_every=1", "--run-dir", run_dir)  # fmt: skip
    assert first.returncode == 0, first.stderr
    good = sorted((run_dir / "checkpoints").iterdir())
    last_update = json.loads((good[-1] / "state.json").read_text())["update"]

    # Adam at this rate moves every weight by about 1e38 per step: within two steps the logits overflow.
    result = run(SCRIPTS / "train.py", "--resume", run_dir, "--set", "train.learning_rate=1e38",
                 "--set", "train.max_steps=100000")  # fmt: skip
    assert result.returncode == 1, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    failed_update = int(message.removeprefix("error: update ").split(":")[0])
    assert failed_update > last_update and "no longer finite" in message
    assert f"--resume {run_dir} --set train.learning_rate=1e+37" in message
    assert "Traceback" not in result.stderr
    newest = sorted((run_dir / "checkpoints").iterdir())[-1]
    verify_checkpoint(newest)  # the last checkpoint before the failure is whole
    assert json.loads((newest / "state.json").read_text())["update"] == failed_update - 1
    model = keras.models.load_model(run_dir / "model.keras")
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "configs/pong.yaml", "--set", "env.id=ALE/Brekout-v5"],
         "env.id: cannot make 'ALE/Brekout-v5': Environment `Brekout` doesn't exist"),
        (["--config", "configs/cartpole.yaml", "--set", "model.kind=conv"],
         "model.kind 'conv' needs image observations (H, W), got shape (4,)"),
    ],
)  # fmt: skip
def test_a_game_or_model_that_cannot_be_built_is_one_line_and_writes_nothing(tmp_path, args, message):
    run_dir = tmp_path / "never"
    result = run(SCRIPTS / "train.py", *args, "--run-dir", run_dir)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize("extra", [["--config", "configs/cartpole.yaml"], ["--run-dir", "elsewhere"]])
def test_resume_with_config_or_run_dir_is_refused_in_one_line(tmp_path, extra):
    result = run(SCRIPTS / "train.py", "--resume", tmp_path / "run", *extra, cwd=tmp_path)
    assert result.returncode == 2
    assert f"error: --resume {tmp_path / 'run'} continues that run with its own config.yaml" in result.stderr
    assert f"drop {extra[0]}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_stops_with_a_checkpoint(tmp_path):
    """Slurm's scancel, systemd and `timeout` signal every process of the job: the worker processes
    must outlive the trainer's last update so that it can save their games."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [PYTHON, SCRIPTS / "train_pong.py", "--set", "env.num_envs=2", "--set", "model.hidden_units=[16]",
         "--set", "train.samples_per_update=1000", "--set", "train.checkpoint_every=1000",
         "--run-dir", run_dir],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    wait_for_rows(run_dir, 2, process)
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert f"--resume {run_dir}" in stdout and "error" not in stderr
    rows = read_metrics(run_dir / "metrics.csv")
    newest = sorted((run_dir / "checkpoints").iterdir())[-1]
    assert json.loads((newest / "state.json").read_text())["update"] == len(rows)
    assert (newest / "games.npz").is_file()
