"""benchmarks/learning.py, the script issue 22's tables come from: its medians and its marks."""

import csv
import subprocess

import pytest
from conftest import PYTHON, REPO

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
