"""Which points does a Pong policy lose, and at which agent step? Plays full games with a run's
policy (sampled actions, the run's own game settings) and prints, for each game, its score, its
length and the points lost as (index of the point, agent step).

    python benchmarks/lost_points.py runs/pong-seed0 --games 4
    python benchmarks/lost_points.py runs/pong-seed0 --games 4 --actions  # and each action's share
    python benchmarks/lost_points.py --first-point random --games 100   # no policy: the first point only
    python benchmarks/lost_points.py --first-point random --games 100 --noops 20  # NOOPs first

Pong without sticky actions starts every game alike, so a policy near +20 that loses one point per
game often loses the same one: the first serve (issue 22). `--first-point ACTION` plays only the
first point of `--games` games from reset, every step with ACTION (one of Pong's six: NOOP, FIRE,
UP, DOWN, UPFIRE, DOWNFIRE) or with uniformly random ones, and counts the points won. `--noops K`
plays K NOOPs before ACTION (a no-op start, as DQN's and EnvPool's `noop_max` draw them): the serve
comes at the same agent step whatever K, so no-op starts only leave less time to meet it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from pgkeras.config import load_config
from pgkeras.envs import make_env

SEED = 12345
"""Seed of the games and of the action sampler."""

Game = tuple[int, int, list[tuple[int, int]], dict[str, float]]
"""(score, agent steps, [(point index, agent step) of each lost point], {action name: share of the
game's steps})."""


def lost_points(run_dir: Path, model_name: str, games: int) -> list[Game]:
    """`games` full games with the run's policy `model_name`."""
    from pgkeras import load_policy
    from pgkeras.evaluation import make_eval_env
    from pgkeras.policies import make_sampler

    config = load_config(run_dir / "config.yaml")
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, episodes=games))
    env = make_eval_env(config)
    sampler = make_sampler(load_policy(run_dir / model_name), config.model, np.random.default_rng(SEED))
    return play(env, sampler.sample, first_point_only=False)


def first_points(action: str, games: int, noops: int = 0) -> list[Game]:
    """The first point of `games` games of Pong (all six actions, frame skip 4, no sticky actions),
    the first `noops` steps with NOOP, every later step with `action` or, for `random`, a uniformly
    random action."""
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "pong.yaml", ["env.actions=all"])
    env = make_env(config, num_envs=games)
    if action != "random" and action not in env.action_names:
        names = ", ".join(env.action_names)
        raise SystemExit(f"--first-point: got {action!r}, expected random or one of {names}")
    rng = np.random.default_rng(SEED)
    steps = 0

    def choose(observations: np.ndarray) -> np.ndarray:
        nonlocal steps
        steps += 1
        if steps <= noops:
            return np.full(games, env.action_names.index("NOOP"))
        if action == "random":
            return rng.integers(env.num_actions, size=games)
        return np.full(games, env.action_names.index(action))

    return play(env, choose, first_point_only=True)


def play(env, choose, first_point_only: bool, max_steps: int = 100_000):
    """Plays each game's first episode (or first point) with `choose(observations) -> actions`."""
    observations = env.reset(seed=SEED)
    points: list[list[int]] = [[] for _ in range(env.num_envs)]
    lost: list[list[tuple[int, int]]] = [[] for _ in range(env.num_envs)]
    steps = np.zeros(env.num_envs, dtype=int)  # agent steps played so far (0-based step of the next)
    counts = np.zeros((env.num_envs, env.num_actions), dtype=int)  # actions taken in each game
    playing = np.ones(env.num_envs, dtype=bool)
    for _ in range(max_steps):
        actions = np.asarray(choose(observations))
        np.add.at(counts, (np.flatnonzero(playing), actions[playing]), 1)
        result = env.step(actions)
        for game in np.flatnonzero(playing & (result.rewards != 0)):
            if result.rewards[game] < 0:
                lost[game].append((len(points[game]), int(steps[game])))
            points[game].append(int(result.rewards[game]))
        steps += playing
        playing &= ~(result.terminated | result.truncated)
        if first_point_only:
            playing &= np.array([not p for p in points])
        if not playing.any():
            break
        observations = result.observations
    env.close()
    shares = [dict(zip(env.action_names, row / max(row.sum(), 1), strict=True)) for row in counts]
    return [(sum(p), int(s), lst, sh) for p, s, lst, sh in zip(points, steps, lost, shares, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="*", type=Path, help="run folders whose policy plays")
    parser.add_argument("--model", default="model.keras", help="the policy file in each run folder")
    parser.add_argument("--games", type=int, default=4)
    parser.add_argument("--first-point", metavar="ACTION", help="no policy: play only the first point")
    parser.add_argument("--noops", type=int, default=0, help="with --first-point: NOOPs before ACTION")
    parser.add_argument("--actions", action="store_true", help="also print each action's share of the steps")
    args = parser.parse_args(argv)
    if bool(args.runs) == bool(args.first_point):
        parser.error("give run folders or --first-point ACTION, not both")
    if args.noops and not args.first_point or args.noops < 0:
        parser.error(f"--noops: got {args.noops}, expected a count of 0 or more, with --first-point")
    if args.actions and args.first_point:
        parser.error("--actions: goes with run folders, not with --first-point")

    if args.first_point:
        results = first_points(args.first_point, args.games, args.noops)
        won = sum(score > 0 for score, _, _, _ in results)
        ends = sorted({steps - 1 for _, steps, _, _ in results})  # the step that ended the point
        after = f" after {args.noops} NOOPs" if args.noops else ""
        won_of = f"won {won} of {args.games}"
        print(f"first point with {args.first_point}{after}: {won_of}; ended at agent steps {ends}")
        return 0
    for run in args.runs:
        if not (run / args.model).is_file() or not (run / "config.yaml").is_file():
            parser.error(f"{run}: needs config.yaml and {args.model} (a run folder made by the trainer)")
        for game, (score, steps, lost, shares) in enumerate(lost_points(run, args.model, args.games)):
            line = f"{run} game {game}: {score:+d} in {steps} steps; lost points (index, step): {lost}"
            if args.actions:
                line += "; actions: " + ", ".join(f"{name} {share:.0%}" for name, share in shares.items())
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
