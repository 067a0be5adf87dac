"""How fast does training play Pong? Agent steps and emulator frames per second of four loops in
the same process, with the same game settings (frame skip 4, no sticky actions, actions UP/DOWN):

1. ceiling: ale-py's vector env alone, random actions, no preprocessing, no network;
2. pgkeras: the real trainer with the config's backend (the recommended `processes`: 2 worker
   processes of 4 games each), collection + model updates, steady state after 3 warm-up updates;
3. numpy reference: Karpathy's pg-pong.py algorithm from scratch, one game, a numpy forward pass
   per step, a manual backward pass per episode and RMSprop every 10 episodes;
4. naive Keras: the same single-game loop with a Keras model and `model.predict` per step.

Loops 1 and 3 take turns with loop 2 (about 5 s each, `SLICE_SECONDS`), so that all three meet
the same stretches of the machine's load and their ratios hold from run to run; loop 4 runs
afterwards (its ~20 steps/s enter no ratio).

With `--backend ray --workers N`, loops 3 and 4 give way to the trainer with `rollout.backend: ray`
on a local Ray instance: N workers share the same number of games (`--num-envs`), so the ratio
ray / local is the overhead of the Ray path on one machine. It also reports each worker's
resident memory.

    python benchmarks/throughput.py --seconds 30
    python benchmarks/throughput.py --seconds 30 --num-envs 16 --json > throughput.json
    python benchmarks/throughput.py --seconds 30 --backend ray --workers 2
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pgkeras.cli import quiet_tensorflow

FRAME_SKIP = 4
PONG_UP, PONG_DOWN = 2, 3  # ALE action ids (RIGHT, LEFT) that move the paddle up and down


class CeilingLoop:
    """ale-py's vector env alone, with random actions: the ceiling.

    It is the vector env of pgkeras's local backend (same emulator settings), stepped directly: no
    preprocessing, no network. (The workers of the processes backend play the same games through
    bare ALE, `pgkeras.envs.PongSerialEnv`, and can beat it.) `play(seconds)` can be called many
    times; the games go on.
    """

    def __init__(self, num_envs: int):
        from pgkeras.envs import PONG_ACTIONS, PongVectorEnv

        self.num_envs = num_envs
        self.actions = PONG_ACTIONS
        self.env = PongVectorEnv(num_envs, frame_skip=FRAME_SKIP)
        (self.vector_env,) = self.env.vector_envs
        self.rng = np.random.default_rng(0)
        self.vector_env.reset(seed=0)
        self.steps, self.seconds = 0, 0.0

    def play(self, seconds: float) -> None:
        """Steps all games for `seconds`, counting agent steps."""
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.vector_env.step(self.rng.choice(self.actions, size=self.num_envs))
            self.steps += self.num_envs
        self.seconds += time.perf_counter() - start

    def close(self) -> None:
        self.env.close()


WARMUP_UPDATES = 3
"""Updates left out of the pgkeras figure: TensorFlow traces the update step for the first batch
shapes (batches vary by a few samples) and the games start from their first frames."""


SLICE_SECONDS = 5.0
"""Trainer time between two turns of the other loops (see `pgkeras_trainer`)."""


def pgkeras_trainer(
    seconds: float,
    num_envs: int,
    config_path: str,
    workers: int | None = None,
    others: tuple = (),
    settings: tuple[str, ...] = (),
) -> float:
    """Agent steps per second of `pgkeras.train.train` in steady state (after `WARMUP_UPDATES`),
    collection, updates, checkpoints and curve refreshes included. With `workers`, the Ray
    backend with that many workers, each playing its share of the `num_envs` games.

    `others` (loops with `play(seconds)`) take turns with the trainer: after each update that ends
    `SLICE_SECONDS` or more of trainer time, each plays as long as the trainer just did, while
    the trainer waits, and that wait is not counted as trainer time. The loops thus share the same
    stretches of this machine's load, which on a shared machine moves by more than the
    differences being measured. `settings` are `--set` overrides of the config (`KEY=VALUE`).
    """
    import keras

    from pgkeras.config import load_config
    from pgkeras.metrics import ProgressLine
    from pgkeras.train import train

    base = load_config(config_path, list(settings))
    groups = base.env.num_groups
    overrides = [*settings, "train.max_steps=null"]
    if workers is not None:
        overrides += ["rollout.backend=ray", f"rollout.num_workers={workers}"]
    elif base.rollout.backend != "local":
        workers = base.rollout.num_workers
    if workers is not None:  # each worker plays its share of the games
        num_envs = max(1, num_envs // workers)
    overrides += [f"env.num_envs={num_envs}", f"env.num_groups={groups if num_envs % groups == 0 else 1}"]
    config = load_config(config_path, overrides)
    clock = {"trainer": 0.0, "turn": 0.0, "steps": 0, "since": 0.0}

    def turn(trainer_seconds: float) -> None:
        for loop in others:
            loop.play(trainer_seconds)

    class Enough(keras.callbacks.Callback):
        """Counts the trainer's time and steps after the warm-up, and stops after `seconds`."""

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            if logs["update"] < WARMUP_UPDATES:
                return
            if logs["update"] == WARMUP_UPDATES:
                clock["first_steps"] = logs["env_steps"]
            else:
                clock["trainer"] += now - clock["since"]
                clock["steps"] = logs["env_steps"] - clock["first_steps"]
            done = clock["trainer"] >= seconds
            if clock["trainer"] - clock["turn"] >= SLICE_SECONDS or (
                done and clock["trainer"] > clock["turn"]
            ):
                turn(clock["trainer"] - clock["turn"])
                clock["turn"] = clock["trainer"]
            clock["since"] = time.perf_counter()
            self.model.stop_training = done

    with tempfile.TemporaryDirectory() as folder, open("/dev/null", "w") as quiet:
        train(config, Path(folder) / "run", progress=ProgressLine(stream=quiet), callbacks=[Enough()])
    return clock["steps"] / clock["trainer"]


def ray_worker_memory_mb(num_envs: int, config_path: str, workers: int) -> list[float]:
    """Resident memory of each Ray rollout worker after it collected one batch (Linux /proc)."""
    from pgkeras.config import load_config
    from pgkeras.distributed import RayRolloutCollector
    from pgkeras.envs import make_env
    from pgkeras.inference import NumpyPolicy
    from pgkeras.policies import build_policy, dense_parameters

    games = max(1, num_envs // workers)
    config = load_config(
        config_path,
        ["rollout.backend=ray", f"rollout.num_workers={workers}", f"env.num_envs={games}",
         "env.num_groups=1"],
    )  # fmt: skip
    env = make_env(config, num_envs=1)
    model = build_policy(config.model, config.train, env.observation_shape, env.num_actions)
    env.close()
    collector = RayRolloutCollector(config, games_seed=0, first_update=0, note=lambda line: None)
    try:
        collector.collect_batch(NumpyPolicy(dense_parameters(model), None))
        sizes = []
        for pid in collector.worker_pids():
            status = Path(f"/proc/{pid}/status").read_text()
            (line,) = [line for line in status.splitlines() if line.startswith("VmRSS:")]
            sizes.append(int(line.split()[1]) / 1024)
        return sizes
    finally:
        collector.close()


def karpathy_prepro(frame: np.ndarray) -> np.ndarray:
    """Karpathy's prepro: crop, downsample by 2, erase the background, binarise; float 6400 vector."""
    frame = frame[35:195][::2, ::2, 0].copy()
    frame[frame == 144] = 0
    frame[frame == 109] = 0
    frame[frame != 0] = 1
    return frame.astype(np.float64).ravel()


def discount_rewards(rewards: np.ndarray, gamma: float = 0.99) -> np.ndarray:
    """Karpathy's discount_rewards, with the sum reset at each point."""
    discounted = np.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        if rewards[t] != 0:
            running = 0.0
        running = running * gamma + rewards[t]
        discounted[t] = running
    return discounted


class NumpyReferenceLoop:
    """Karpathy's pg-pong.py algorithm: one game, a numpy forward pass per step, a manual backward
    pass per episode, RMSprop every 10 episodes. `play(seconds)` can be called many times; the
    game and the learning go on."""

    hidden, size, learning_rate, decay, batch_size = 200, 6400, 1e-4, 0.99, 10

    def __init__(self, seed: int = 0):
        import gymnasium as gym

        gym.register_envs(__import__("ale_py"))
        self.env = gym.make("ALE/Pong-v5", frameskip=FRAME_SKIP, repeat_action_probability=0.0)
        self.rng = np.random.default_rng(seed)
        self.model = {
            "W1": self.rng.normal(size=(self.hidden, self.size)) / np.sqrt(self.size),
            "W2": self.rng.normal(size=self.hidden) / np.sqrt(self.hidden),
        }
        self.gradient_buffer = {k: np.zeros_like(v) for k, v in self.model.items()}
        self.rmsprop_cache = {k: np.zeros_like(v) for k, v in self.model.items()}
        self.observation, _ = self.env.reset(seed=seed)
        self.previous = None
        self.xs, self.hs, self.dlogps, self.rewards = [], [], [], []
        self.episodes, self.steps, self.seconds = 0, 0, 0.0
        self.episode_rewards: list[float] = []

    def play(self, seconds: float) -> None:
        """Plays and learns for `seconds`, counting agent steps."""
        model, rng = self.model, self.rng
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            current = karpathy_prepro(self.observation)
            x = current - self.previous if self.previous is not None else np.zeros(self.size)
            self.previous = current
            h = np.maximum(model["W1"] @ x, 0.0)
            probability_up = 1.0 / (1.0 + np.exp(-(model["W2"] @ h)))
            action = PONG_UP if rng.random() < probability_up else PONG_DOWN
            self.xs.append(x)
            self.hs.append(h)
            self.dlogps.append((1.0 if action == PONG_UP else 0.0) - probability_up)
            self.observation, reward, terminated, truncated, _ = self.env.step(action)
            self.rewards.append(reward)
            self.steps += 1
            if terminated or truncated:
                self._learn_from_episode()
        self.seconds += time.perf_counter() - start

    def _learn_from_episode(self) -> None:
        model = self.model
        self.episodes += 1
        epx, eph, epr = np.vstack(self.xs), np.vstack(self.hs), np.array(self.rewards)
        self.episode_rewards.append(float(epr.sum()))
        advantages = discount_rewards(epr)
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        epdlogp = np.array(self.dlogps)[:, None] * advantages[:, None]
        grad_w2 = eph.T @ epdlogp[:, 0]
        dh = np.outer(epdlogp[:, 0], model["W2"])
        dh[eph <= 0] = 0
        self.gradient_buffer["W1"] += dh.T @ epx
        self.gradient_buffer["W2"] += grad_w2
        if self.episodes % self.batch_size == 0:
            for key, weight in model.items():
                g = self.gradient_buffer[key]
                self.rmsprop_cache[key] = self.decay * self.rmsprop_cache[key] + (1 - self.decay) * g**2
                weight += self.learning_rate * g / (np.sqrt(self.rmsprop_cache[key]) + 1e-5)
                self.gradient_buffer[key] = np.zeros_like(weight)
        self.xs, self.hs, self.dlogps, self.rewards = [], [], [], []
        self.observation, _ = self.env.reset()
        self.previous = None

    def close(self) -> None:
        self.env.close()


def naive_keras(seconds: float) -> float:
    """Agent steps per second of the tutorial loop: one game, `model.predict` per step, `fit` per episode."""
    import gymnasium as gym
    import keras

    gym.register_envs(__import__("ale_py"))
    env = gym.make("ALE/Pong-v5", frameskip=FRAME_SKIP, repeat_action_probability=0.0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6400,)),
            keras.layers.Dense(200, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    observation, _ = env.reset(seed=0)
    previous = None
    xs, actions, rewards = [], [], []
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        current = karpathy_prepro(observation)
        x = current - previous if previous is not None else np.zeros(6400)
        previous = current
        probabilities = model.predict(x[None], verbose=0)[0]
        action = int(rng.random() >= probabilities[0])  # 0: UP, 1: DOWN
        observation, reward, terminated, truncated, _ = env.step(PONG_UP + action)
        xs.append(x)
        actions.append(action)
        rewards.append(reward)
        steps += 1
        if terminated or truncated:
            advantages = discount_rewards(np.array(rewards))
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            model.fit(np.array(xs), np.eye(2)[actions], sample_weight=advantages, verbose=0)
            xs, actions, rewards = [], [], []
            observation, _ = env.reset()
            previous = None
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="\n\n".join(__doc__.split("\n\n")[:2]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring time of each loop")
    parser.add_argument("--num-envs", type=int, default=8, help="games of the ceiling and pgkeras loops")
    parser.add_argument("--config", default="configs/pong.yaml", help="config of the pgkeras loop")
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting of the pgkeras loop's config, as in the training scripts",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument(
        "--skip-naive", action="store_true", help="leave out the naive Keras loop (it only runs ~15 steps/s)"
    )
    parser.add_argument(
        "--backend", choices=["local", "ray"], default="local",
        help="ray: also measure the trainer with rollout.backend ray (instead of the reference loops)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="Ray workers with --backend ray")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    from pgkeras.config import load_config

    # The ceiling and the numpy reference take turns with the trainer (see pgkeras_trainer).
    others = {"ceiling": CeilingLoop(args.num_envs)}
    if args.backend == "local":
        others["numpy_reference"] = NumpyReferenceLoop()
    pgkeras_rate = pgkeras_trainer(
        args.seconds, args.num_envs, args.config, others=tuple(others.values()), settings=tuple(args.settings)
    )
    for loop in others.values():
        loop.close()
    results = {name: loop.steps / loop.seconds for name, loop in others.items()}
    results["pgkeras"] = pgkeras_rate
    peak_memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    backend = load_config(args.config, args.settings).rollout.backend
    results = {name: results[name] for name in ("ceiling", "pgkeras", "numpy_reference") if name in results}
    report = {
        "num_envs": args.num_envs,
        "seconds": args.seconds,
        "frame_skip": FRAME_SKIP,
        "agent_steps_per_second": results,
        "backend": backend,
        "settings": args.settings,
        "peak_memory_mb_through_pgkeras": peak_memory_mb,
    }
    if args.backend == "ray":
        results["pgkeras_ray"] = pgkeras_trainer(
            args.seconds, args.num_envs, args.config, args.workers, settings=tuple(args.settings)
        )
        report["workers"] = args.workers
        report["ray_over_local"] = results["pgkeras_ray"] / results["pgkeras"]
        report["ray_worker_memory_mb"] = ray_worker_memory_mb(args.num_envs, args.config, args.workers)
    else:
        if not args.skip_naive:
            results["naive_keras"] = naive_keras(args.seconds)
        report["pgkeras_over_reference"] = results["pgkeras"] / results["numpy_reference"]
    report["pgkeras_over_ceiling"] = results["pgkeras"] / results["ceiling"]
    report["emulator_frames_per_second"] = {name: rate * FRAME_SKIP for name, rate in results.items()}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{'loop':<16} {'agent steps/s':>14} {'frames/s':>10}")
    for name, rate in results.items():
        print(f"{name:<16} {rate:>14,.0f} {rate * FRAME_SKIP:>10,.0f}")
    print(f"pgkeras / ceiling:   {report['pgkeras_over_ceiling']:.0%}")
    if args.backend == "ray":
        setting = f"{args.workers} workers, {args.num_envs} games in all"
        print(f"ray / {backend} ({setting}): {report['ray_over_local']:.0%}")
        memory = ", ".join(f"{size:,.0f}" for size in report["ray_worker_memory_mb"])
        print(f"resident memory of each Ray worker: {memory} MB")
    else:
        print(f"pgkeras / reference: {report['pgkeras_over_reference']:.2f}x")
    print(
        "peak memory of this process up to the end of the pgkeras loop (ceiling and reference "
        f"included): {peak_memory_mb:,.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
