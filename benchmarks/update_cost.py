"""What does one update cost, and what does a bfloat16 hidden layer save? Collects one real batch of
Pong with the config's games and an untrained policy, then times the config's whole update on it
(`pgkeras.train.update_on_batch`: `train.epochs` steps of the trick, and for more than one the
forward passes of the clipped steps' ratios) for each `model.hidden_dtype`, taking turns so that
both meet the same load. Prints the median milliseconds per update and per 1,000 samples, and
the ratio of the two.

    python benchmarks/update_cost.py --config configs/pong_fast.yaml
    python benchmarks/update_cost.py --config configs/pong.yaml --rounds 10
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from pgkeras.cli import quiet_tensorflow

DTYPES = ("float32", "mixed_bfloat16")


def update_times(config_path: Path, overrides: list[str], rounds: int) -> tuple[int, dict[str, list[float]]]:
    """(samples in the batch, {hidden dtype: seconds of each of `rounds` timed updates})."""
    import keras

    from pgkeras.config import load_config
    from pgkeras.envs import make_env
    from pgkeras.policies import ActionSampler, build_policy
    from pgkeras.rollout import RolloutCollector
    from pgkeras.train import update_on_batch

    config = load_config(config_path, [*overrides, "rollout.backend=local"])
    env = make_env(config)
    models = {}
    for dtype in DTYPES:
        keras.utils.set_random_seed(config.seed)
        model_config = dataclasses.replace(config.model, hidden_dtype=dtype)
        models[dtype] = build_policy(model_config, config.train, env.observation_shape, env.num_actions)
    sampler = ActionSampler(models["float32"], np.random.default_rng(config.seed))
    batch = RolloutCollector.from_config(env, config.train, config.seed).collect_batch(sampler)
    env.close()
    samplers = {dtype: ActionSampler(model, np.random.default_rng(0)) for dtype, model in models.items()}
    times: dict[str, list[float]] = {dtype: [] for dtype in DTYPES}
    for timed in [False] * 2 + [True] * rounds:  # two untimed rounds: tracing and warm caches
        for dtype in DTYPES:
            start = time.perf_counter()
            update_on_batch(models[dtype], samplers[dtype], batch, config)
            if timed:
                times[dtype].append(time.perf_counter() - start)
    return len(batch.actions), times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, default=Path(__file__).resolve().parents[1] / "configs" / "pong_fast.yaml"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--rounds", type=int, default=8, help="timed updates of each dtype")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds: got {args.rounds}, expected 1 or more")
    quiet_tensorflow()
    samples, times = update_times(args.config, args.overrides, args.rounds)
    print(f"{args.config.name}: one update on {samples:,} samples, median of {args.rounds}")
    medians = {dtype: float(np.median(seconds)) for dtype, seconds in times.items()}
    for dtype, seconds in medians.items():
        print(f"{dtype:<16} {1000 * seconds:8.0f} ms  {1e6 * seconds / samples:6.0f} ms per 1,000 samples")
    print(f"mixed_bfloat16 / float32: {medians['mixed_bfloat16'] / medians['float32']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
