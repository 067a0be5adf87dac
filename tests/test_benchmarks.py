"""The benchmark scripts issue 22's tables come from: learning.py (its medians and marks), lost_points.py
and throughput.py's `--set`."""

import ast
import csv
import json
import subprocess

import pytest
from conftest import CONFIGS, PYTHON, REPO

LEARNING = REPO / "benchmarks" / "learning.py"
COLUMNS = ["update", "env_steps", "episodes", "episode_reward_mean", "running_reward", "loss",
           "batch_size", "steps_per_second", "wall_time", "eval_reward_mean"]  # fmt: skip


def write_run(run_dir, points):
    """A run folder whose metrics.csv has one row per (agent steps, running reward), a minute apart."""
    run_dir.mkdir(parents=True)
    with (run_dir / "metrics.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(COLUMNS)
        for update, (steps, running) in enumerate(points, start=1):
            writer.writerow([update, steps, update, running, running, 0.0, 5000, 5000.0, 60.0 * update, ""])
    return run_dir


def learning(*args):
    result = subprocess.run(
        [PYTHON, LEARNING, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def row(lines, first_cell):
    return next(
        [cell.strip() for cell in line.split("|")]
        for line in lines
        if line.split("|")[0].strip() == first_cell
    )


def test_medians_count_a_run_that_never_got_there_as_later_and_marks_read_each_run_at_those_steps(tmp_path):
    fast = write_run(tmp_path / "a" / "pong-seed0", [(100_000, -20.5), (200_000, 0.5), (300_000, 20.0)])
    slow = write_run(tmp_path / "b" / "pong-seed0", [(100_000, -21.0), (250_000, -5.0), (400_000, 1.0)])
    stuck = write_run(tmp_path / "c" / "pong-seed0", [(100_000, -21.0), (200_000, -12.0), (500_000, -3.0)])

    lines = learning(
        "--runs", fast, slow, stuck, "--eval-episodes", "0", "--at-steps", 150_000, 250_000, 450_000
    )

    # 0 was reached by two runs of three (2 and 3 minutes): the median is the later one; +20 by one
    # run only, so there is no median.
    assert row(lines, "+0")[-3:] == ["3.0", "400,000", "-"]
    assert row(lines, "+20")[-3:] == ["-", "-", "-"]
    assert row(lines, "-15")[-3:] == ["2.0", "200,000", "-"]
    # Each run at each mark: the first update at or after it; "-" past the run's end.
    assert row(lines, "a/pong-seed0")[1:] == ["+0.5", "+20.0", "-"]
    assert row(lines, "b/pong-seed0")[1:] == ["-5.0", "-5.0", "-"]
    assert row(lines, "c/pong-seed0")[1:] == ["-12.0", "-3.0", "-3.0"]
    # Agent steps per game since the mark before, read at the same updates (one game per update in
    # these runs): run c finished one game in the 300k steps from its 200k row to its 500k row, which
    # also stands for 450k, so no game finished between 250k and 450k.
    lengths = lines[next(i for i, line in enumerate(lines) if "agent steps per game" in line) :]
    assert row(lengths, "a/pong-seed0")[1:] == ["100,000", "100,000", "-"]
    assert row(lengths, "b/pong-seed0")[1:] == ["125,000", "-", "-"]
    assert row(lengths, "c/pong-seed0")[1:] == ["100,000", "300,000", "-"]


@pytest.mark.slow
def test_a_training_run_saves_the_policy_at_each_crossing_and_a_second_call_continues_it(tmp_path):
    arguments = ["--config", "configs/cartpole.yaml", "--seeds", "3", "--stop-at", "1000",
                 "--eval-episodes", "2", "--score-at", "10", "--out-dir", tmp_path]  # fmt: skip

    lines = learning(*arguments, "--max-steps", 1000, "--at-steps", 500)

    run_dir = tmp_path / "cartpole-seed3"
    # CartPole's episodes last 10 steps or more: every threshold up to +10 is crossed at the first.
    saved = {p.name for p in (run_dir / "crossings").iterdir()}
    assert {f"running{threshold:+d}.keras" for threshold in (-20, -15, -10, -5, 0, 5, 10)} <= saved
    crossed = [level for level in range(-20, 21, 5) if row(lines, f"{level:+d}")[1] != "-"]
    assert saved == {f"running{level:+d}.keras" for level in crossed}
    assert float(row(lines, "+10")[-1]) >= 8  # the policy saved at +10 plays 2 games (random: ~20 steps)
    assert row(lines, "+0")[-1] == "-"  # only --score-at levels are scored
    final = next(line for line in lines if line.startswith("cartpole-seed3: final model.keras"))
    assert "sticky" not in final  # sticky actions are ALE's: CartPole has none to score with
    with (run_dir / "metrics.csv").open() as file:
        steps_before = [int(line["env_steps"]) for line in csv.DictReader(file)]

    learning(*arguments, "--max-steps", 2000)

    with (run_dir / "metrics.csv").open() as file:
        steps = [int(line["env_steps"]) for line in csv.DictReader(file)]
    # The second call resumed the run: the first call's rows, then new ones up to the new budget.
    assert steps[: len(steps_before)] == steps_before and steps_before[-1] < 2000 <= steps[-1]
    assert steps == sorted(set(steps))


LOST_POINTS = REPO / "benchmarks" / "lost_points.py"


def lost_points(*args):
    result = subprocess.run(
        [PYTHON, LOST_POINTS, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_pong_s_first_serve_beats_a_paddle_that_holds_one_action():
    # benchmarks/README.md, issue 22's seventh session: the first point ends at agent step 63 of
    # every game, and a paddle that stands still or runs to a wall misses it.
    for action in ("NOOP", "UP", "DOWN"):
        assert lost_points("--first-point", action, "--games", 1) == [
            f"first point with {action}: won 0 of 1; ended at agent steps [63]"
        ]


def test_no_op_starts_do_not_move_pong_s_first_serve():
    # benchmarks/README.md, issue 22's eleventh session: NOOPs before play (DQN's and EnvPool's
    # no-op starts) leave the serve where it was, at agent step 63, with less time to meet it.
    assert lost_points("--first-point", "UP", "--games", 1, "--noops", 30) == [
        "first point with UP after 30 NOOPs: won 0 of 1; ended at agent steps [63]"
    ]


def test_lost_points_refuses_actions_without_a_policy():
    command = [PYTHON, LOST_POINTS, "--first-point", "UP", "--actions"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "--actions: goes with run folders, not with --first-point" in result.stderr.splitlines()[-1]


def test_lost_points_names_a_folder_that_is_not_a_run(tmp_path):
    result = subprocess.run(
        [PYTHON, LOST_POINTS, tmp_path], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert f"{tmp_path}: needs config.yaml and model.keras" in result.stderr.splitlines()[-1]


def test_lost_points_of_a_policy_are_listed_with_their_step_and_its_actions(tmp_path):
    from pgkeras.config import load_config, save_config
    from pgkeras.envs import make_env
    from pgkeras.policies import build_policy

    config = load_config(CONFIGS / "pong.yaml", ["env.actions=all", "model.hidden_units=[8]"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(config, run_dir / "config.yaml")
    env = make_env(config, num_envs=1)
    build_policy(config.model, config.train, env.observation_shape, env.num_actions).save(
        run_dir / "untrained.keras"
    )
    env.close()

    lines = lost_points(run_dir, "--model", "untrained.keras", "--games", 1, "--actions")

    assert len(lines) == 1 and lines[0].startswith(f"{run_dir} game 0: ")
    score = int(lines[0].split(": ")[1].split(" ")[0])
    points, actions = lines[0].split("(index, step): ")[1].split("; actions: ")
    lost = ast.literal_eval(points)
    shares = dict(share.split(" ") for share in actions.split(", "))
    assert list(shares) == ["NOOP", "FIRE", "UP", "DOWN", "UPFIRE", "DOWNFIRE"]
    assert abs(sum(int(share.rstrip("%")) for share in shares.values()) - 100) <= 3  # each rounded
    won = score + len(lost)
    assert max(won, len(lost)) == 21  # a full game: one side reached 21
    indices, steps = [index for index, _ in lost], [step for _, step in lost]
    assert indices == sorted(set(indices)) and all(index < won + len(lost) for index in indices)
    assert steps == sorted(set(steps))


@pytest.mark.slow
def test_throughput_measures_the_trainer_with_the_settings_given():
    result = subprocess.run(
        [PYTHON, REPO / "benchmarks" / "throughput.py", "--seconds", "1", "--skip-naive", "--json",
         "--set", "rollout.backend=local", "--set", "env.actions=all"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    assert report["backend"] == "local"  # pong.yaml's is processes
    assert report["settings"] == ["rollout.backend=local", "env.actions=all"]
    assert report["agent_steps_per_second"]["pgkeras"] > 0
    assert 0 < report["pgkeras_over_ceiling"] < 2


def test_column_reliance_sees_which_columns_a_policy_reads(tmp_path):
    # A policy whose first layer reads only columns 8-9 (the opponent's paddle): blanking them moves
    # its action probabilities, blanking its own paddle's columns or the ball's does not.
    import numpy as np

    from pgkeras.config import load_config, save_config
    from pgkeras.policies import build_policy

    overrides = ["env.actions=all", "env.frames=frame_and_difference", "model.hidden_units=[8]"]
    config = load_config(CONFIGS / "pong.yaml", overrides)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_config(config, run_dir / "config.yaml")
    model = build_policy(config.model, config.train, (2, 80, 80), 6)
    dense = next(
        layer for layer in model.layers if layer.get_weights() and layer.get_weights()[0].shape[0] == 12800
    )
    kernel, bias = dense.get_weights()
    reads = np.zeros((2, 80, 80), bool)
    reads[:, :, 8:10] = True
    dense.set_weights([np.where(reads.reshape(-1, 1), 3 * kernel + 0.5, 0.0), bias])
    model.save(run_dir / "opponent.keras")

    script = REPO / "benchmarks" / "column_reliance.py"
    result = subprocess.run(
        [PYTHON, script, run_dir, "--model", "opponent.keras", "--steps", "100"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[-1]
    distances = dict(part.rsplit(" ", 1) for part in line.split(": ", 1)[1].split(", "))
    assert float(distances["opponent paddle (7-10)"]) > 0.01
    assert distances["own paddle (69-72)"] == distances["between (11-68)"] == "0.000"


def test_update_cost_times_the_config_s_update_in_both_hidden_dtypes():
    # A real batch of at least the config's samples, and the update of each model.hidden_dtype.
    script = REPO / "benchmarks" / "update_cost.py"
    overrides = ["--set", "train.samples_per_update=300", "--set", "model.hidden_units=[16]"]
    result = subprocess.run(
        [PYTHON, script, "--config", CONFIGS / "pong_fast.yaml", *overrides, "--rounds", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, float32, bfloat16, ratio = result.stdout.splitlines()
    samples = int(header.split(" on ")[1].split(" samples")[0].replace(",", ""))
    assert header.startswith("pong_fast.yaml: one update on ") and samples >= 300
    assert float32.split()[0] == "float32" and bfloat16.split()[0] == "mixed_bfloat16"
    milliseconds = [float(line.split()[1]) for line in (float32, bfloat16)]
    assert all(ms > 0 for ms in milliseconds)
    prefix, value = ratio.split(": ")
    assert prefix == "mixed_bfloat16 / float32" and float(value) > 0


def test_time_shares_split_a_real_run_s_time_into_parts_that_add_up():
    script = REPO / "benchmarks" / "time_shares.py"
    overrides = ["--set", "train.samples_per_update=300", "--set", "model.hidden_units=[16]",
                 "--set", "rollout.backend=local", "--set", "train.checkpoint_every=2"]  # fmt: skip
    result = subprocess.run(
        [PYTHON, script, "--config", CONFIGS / "pong_fast.yaml", *overrides, "--steps", "1500"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, *parts, estimate = result.stdout.splitlines()[-7:]  # after the run's own lines
    played = int(header.split(": ")[1].split(" agent steps")[0].replace(",", ""))
    assert header.startswith("pong_fast.yaml train.samples_per_update=300") and played >= 1500
    names = [line[:24].strip() for line in parts]
    assert names == ["playing", "the trick's steps", "ratios' forward passes", "checkpoints", "the rest"]
    percents = [float(line.split()[-1].rstrip("%")) for line in parts]
    assert all(percent > 0 for percent in percents[:4]) and abs(sum(percents) - 100) < 0.5
    rate = int(estimate.split(": ")[1].split(" agent")[0].replace(",", ""))
    minutes = float(estimate.split(", ")[1].split(" min")[0])
    assert rate > 0 and minutes == pytest.approx(1_400_000 / rate / 60, abs=0.1)
