"""What does a Pong policy look at? Plays a few games with a run's policy, then blanks groups of
columns of every observation it saw (frame and difference) and prints how far the action
probabilities move: the mean total-variation distance between the distributions before and after.

    python benchmarks/column_reliance.py runs/pong-seed0 --model crossings/running+15.keras

Pong's opponent paddle moves in columns 8-9 of the 80x80 frame, the agent's in 70-71, and the ball
crosses 11-68 between them (issue 22: the policies leaned on the opponent's paddle more than on
the ball). Only for runs that see the frame beside the difference (`env.frames:
frame_and_difference`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pgkeras.config import load_config
from pgkeras.envs import make_env
from pgkeras.inference import action_probabilities

SEED = 12345
"""Seed of the games and of the action sampler."""

GROUPS = {
    "opponent paddle (7-10)": range(7, 11),
    "own paddle (69-72)": range(69, 73),
    "between (11-68)": range(11, 69),
}


def column_reliance(run_dir: Path, model_name: str, steps: int, games: int) -> dict[str, float]:
    """Mean total variation between the policy's action probabilities on its own observations and
    on the same observations with each group of `GROUPS` blanked."""
    from pgkeras import load_policy
    from pgkeras.policies import make_sampler

    config = load_config(run_dir / "config.yaml")
    if config.env.frames != "frame_and_difference" or config.env.frame_pool != 1 or config.env.projections:
        raise SystemExit(f"{run_dir}: needs env.frames frame_and_difference on 80x80 frames, no projections")
    sampler = make_sampler(load_policy(run_dir / model_name), config.model, np.random.default_rng(SEED))
    env = make_env(config, num_envs=games)
    observations = env.reset(seed=SEED)
    seen = []
    for _ in range(steps):
        seen.append(observations)
        observations = env.step(sampler.sample(observations)).observations
    env.close()
    images = np.concatenate(seen).reshape(-1, 2, 80, 80)
    before = action_probabilities(sampler.outputs(images.reshape(len(images), -1)))
    distances = {}
    for name, columns in GROUPS.items():
        blanked = images.copy()
        blanked[:, :, :, list(columns)] = 0
        after = action_probabilities(sampler.outputs(blanked.reshape(len(blanked), -1)))
        distances[name] = float(0.5 * np.abs(after - before).sum(axis=1).mean())
    return distances


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders whose policy plays")
    parser.add_argument("--model", default="model.keras", help="the policy file in each run folder")
    parser.add_argument("--steps", type=int, default=1500, help="agent steps of each game")
    parser.add_argument("--games", type=int, default=4)
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / args.model).is_file() or not (run / "config.yaml").is_file():
            parser.error(f"{run}: needs config.yaml and {args.model} (a run folder made by the trainer)")
        distances = column_reliance(run, args.model, args.steps, args.games)
        print(f"{run} {args.model}: " + ", ".join(f"{name} {tv:.3f}" for name, tv in distances.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
