"""Does collecting the next batch during the update pay? Agent steps per second of the trainer
with `rollout.asynchronous` off and on, beside ale-py's vector env alone (the ceiling of
`throughput.py`), in alternating stretches of one run: each round times the ceiling, the trainer
as the config has it, and the trainer with the workers playing ahead, for `--seconds` each.

The trainer cannot take turns with the ceiling as in `throughput.py`: its workers would play on
during the ceiling's turn. Alternating whole stretches instead, the loops meet nearly the same load;
the ratios of each round, and their medians, are what to compare. It also reports the mean time
of one `model.fit` update in each mode: with the workers playing beside it, the update shares the
cores with them.

    python benchmarks/asynchronous.py --seconds 20 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time

from throughput import CeilingLoop, pgkeras_trainer

from pgkeras.cli import quiet_tensorflow


def timing_updates(clock: dict) -> None:
    """Wraps `pgkeras.train.update_policy` to add each call's seconds and count to `clock`."""
    module = importlib.import_module("pgkeras.train")
    update_policy = module.update_policy

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return update_policy(*args, **kwargs)
        finally:
            clock["seconds"] += time.perf_counter() - started
            clock["updates"] += 1

    module.update_policy = timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time of each loop per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-envs", type=int, default=8, help="games in all")
    parser.add_argument("--config", default="configs/pong.yaml", help="the trainer's config (processes)")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    clock = {"seconds": 0.0, "updates": 0}
    timing_updates(clock)
    rows = []
    print(
        f"{'round':<6} {'ceiling':>9} {'trainer':>9} {'ahead':>9} {'trainer/ceiling':>16} "
        f"{'ahead/ceiling':>14} {'ahead/trainer':>14} {'fit ms':>7} {'ahead':>6}"
    )
    for round_ in range(1, args.rounds + 1):
        ceiling = CeilingLoop(args.num_envs)
        ceiling.play(args.seconds)
        ceiling.close()
        ceiling_rate = ceiling.steps / ceiling.seconds
        rates, fit_ms = [], []
        for on in (False, True):
            clock.update(seconds=0.0, updates=0)
            settings = (f"rollout.asynchronous={on}",)
            rates.append(pgkeras_trainer(args.seconds, args.num_envs, args.config, settings=settings))
            fit_ms.append(1000 * clock["seconds"] / clock["updates"])
        rows.append((ceiling_rate, *rates))
        print(
            f"{round_:<6} {ceiling_rate:>9,.0f} {rates[0]:>9,.0f} {rates[1]:>9,.0f} "
            f"{rates[0] / ceiling_rate:>16.0%} {rates[1] / ceiling_rate:>14.0%} {rates[1] / rates[0]:>14.3f} "
            f"{fit_ms[0]:>7.0f} {fit_ms[1]:>6.0f}"
        )
    medians = [statistics.median(row[i] / row[j] for row in rows) for i, j in ((1, 0), (2, 0), (2, 1))]
    print(
        f"{'median':<6} {'':>9} {'':>9} {'':>9} {medians[0]:>16.0%} {medians[1]:>14.0%} {medians[2]:>14.3f}"
    )
    print("(agent steps/s; fit ms: mean time of one model.fit update, synchronous and ahead)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
