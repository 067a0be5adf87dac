"""Rollouts on a Ray cluster: `rollout.backend: ray`.

The learner (the trainer's process) keeps the Keras model and runs the same `model.fit` update as
the local backend. Once per update it puts the policy's weights into Ray's object store as plain
numpy arrays; each `RolloutWorker` actor plays its own `env.num_envs` games with them through
`pgkeras.inference`, so workers import neither Keras nor TensorFlow. A worker returns only complete
segments (finished points or episodes), like the local collector; the learner joins the workers'
batches in worker order.

Worker `w` draws the actions of update `u` from `numpy.random.SeedSequence([seed, u, w])` and seeds
its games from (games seed, `w`), so two runs with the same seed collect the same data.

A worker that dies is restarted by Ray (actor restarts). The segments it had not finished die with
it and are never counted; its share of the batch is collected again by the restarted worker, and the
trainer's log says so.

This module imports Ray only when a collector is made: Ray is the optional extra `.[ray]`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

from pgkeras.config import RAY_INSTALL_HINT, Config, ConfigError, config_to_dict, ray_head
from pgkeras.envs import GameState
from pgkeras.inference import NumpyPolicy
from pgkeras.rollout import (
    Batch,
    RolloutWorker,
    RolloutWorkerError,
    concatenate_batches,
    join_worker_states,
    split_worker_states,
)

MAX_DEATHS_PER_UPDATE = 3
"""Worker deaths tolerated while collecting one batch before the run stops with an error."""
RESTART_WAIT_SECONDS = 120.0
"""How long a dead worker may take to come back before the run stops with an error."""
RETRY_SECONDS = 0.5
"""Pause between asking a restarting worker again."""
READY_TIMEOUT_SECONDS = 300.0
"""How long the learner waits for all workers to start (a cluster may have to find CPUs)."""
STATE_TIMEOUT_SECONDS = 60.0
"""How long a checkpoint waits for the workers' game states."""


CONNECT_TIMEOUT_SECONDS = 5.0
"""How long `check_ray_address` waits for a head node to answer."""


def check_ray_address(address: str | None, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Raises `ConfigError` (one line) if `ray.address` names a head node that does not answer.

    Ray itself retries an unreachable address for minutes; this fails within `timeout`. An empty
    address (a local Ray) and `auto` (found by Ray on this machine) are not checked.
    """
    head = ray_head(address or "")  # None for empty and auto
    if head is None:
        return
    try:
        socket.create_connection(head, timeout=timeout).close()
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else error.strerror or str(error)
        raise ConfigError(
            f"ray.address: cannot reach {address} within {timeout:g} s ({reason}); expected a running "
            "Ray head node (`ray start --head` prints its address), auto, or empty for a local Ray"
        ) from None


def import_ray():
    """Returns the `ray` module, or raises ImportError with the install command."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"rollout.backend ray needs the ray package: {RAY_INSTALL_HINT}") from None
    return ray


class RayRolloutCollector:
    """Collects each batch with `rollout.num_workers` Ray actors; the learner-side counterpart of
    `pgkeras.rollout.RolloutCollector`.

    Starts a local Ray instance when `ray.address` is empty and Ray is not running yet in this
    process, and connects to `ray.address` otherwise.

    Args:
        config: the run's validated config.
        games_seed: seeds the workers' games.
        first_update: updates already done (non-zero on resume); batch k seeds its actions with
            update `first_update + k`.
        note: prints one line into the trainer's log (worker restarts).

    Raises:
        ImportError: Ray is not installed (with the install command).
        RolloutWorkerError: the workers did not start within `READY_TIMEOUT_SECONDS`.
    """

    def __init__(
        self, config: Config, games_seed: int, first_update: int, note: Callable[[str], None] = print
    ):
        ray = import_ray()
        self._ray = ray
        self._note = note
        self._update = first_update
        self._timeout = config.rollout.worker_timeout
        num_workers = config.rollout.num_workers
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            address = config.ray.address or None
            ray.init(
                address=address,
                # Locally, every worker gets a CPU slot even on a machine with fewer cores.
                num_cpus=max(os.cpu_count() or 1, num_workers) if address is None else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        actor = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)(RolloutWorker)
        data = config_to_dict(config)
        self.workers = [actor.remote(data, worker, games_seed) for worker in range(num_workers)]
        try:
            self._pids: list[int | None] = ray.get(
                [worker.pid.remote() for worker in self.workers], timeout=READY_TIMEOUT_SECONDS
            )
        except ray.exceptions.GetTimeoutError:
            cpus = ray.cluster_resources().get("CPU", 0)
            self.close()
            raise RolloutWorkerError(
                f"rollout.num_workers: {num_workers} Ray workers did not start within "
                f"{READY_TIMEOUT_SECONDS:.0f} s; each needs 1 CPU and the cluster has {cpus:g}"
            ) from None

    def collect_batch(self, policy: NumpyPolicy) -> Batch:
        """Sends the policy's weights once, lets every worker collect its share, and joins the shares.

        Args:
            policy: a Dense-only policy; its `parameters` go to the workers, which draw their own
                actions (see the module's docstring).

        Raises:
            RolloutWorkerError: more than `MAX_DEATHS_PER_UPDATE` deaths in one batch, or a worker that
                does not come back within `RESTART_WAIT_SECONDS`.
        """
        self._update += 1
        self._deaths = 0
        weights = self._ray.put(policy.parameters)
        calls = [actor.collect.remote(weights, self._update) for actor in self.workers]
        parts = [self._share(worker, call, weights) for worker, call in enumerate(calls)]
        return concatenate_batches(parts)

    def _share(self, worker: int, call, weights) -> Batch:
        """Waits for `call`, worker `worker`'s collection; if the worker dies, asks it again once
        Ray has restarted it."""
        ray = self._ray
        for _ in range(int(RESTART_WAIT_SECONDS / RETRY_SECONDS)):
            try:
                batch, pid = ray.get(call, timeout=self._timeout)
            except ray.exceptions.GetTimeoutError:
                raise RolloutWorkerError(
                    f"update {self._update}: rollout worker {worker} did not answer within "
                    f"{self._timeout:g} s (rollout.worker_timeout); resume from the last checkpoint"
                ) from None
            except ray.exceptions.RayTaskError as error:  # the worker raised: a bug, a broken game
                cause = error.cause if isinstance(error.cause, BaseException) else error
                message = " ".join(str(cause).split()) or type(cause).__name__
                raise RolloutWorkerError(
                    f"update {self._update}: rollout worker {worker} failed: "
                    f"{type(cause).__name__}: {message}"
                ) from None
            except ray.exceptions.RayActorError as error:
                # Reported once per death; Ray then answers "unavailable" until the restart is done.
                if self._pids[worker] is not None:
                    self._deaths += 1
                    if self._deaths > MAX_DEATHS_PER_UPDATE:
                        raise RolloutWorkerError(
                            f"update {self._update}: {self._deaths} rollout worker deaths; last: {error}"
                        ) from None
                    self._note(
                        f"update {self._update}: rollout worker {worker} died ({type(error).__name__}); Ray "
                        "restarts it, its unfinished segments are dropped and its share is collected again"
                    )
                    self._pids[worker] = None
                last_error = error
                time.sleep(RETRY_SECONDS)
                call = self.workers[worker].collect.remote(weights, self._update)
                continue
            if self._pids[worker] is not None and pid != self._pids[worker]:
                self._note(
                    f"update {self._update}: rollout worker {worker} was restarted by Ray "
                    f"(process {self._pids[worker]} -> {pid}); its unfinished segments were dropped"
                )
            self._pids[worker] = pid
            return batch
        raise RolloutWorkerError(
            f"update {self._update}: rollout worker {worker} did not come back within "
            f"{RESTART_WAIT_SECONDS:.0f} s: {last_error}"
        )

    def get_state(self) -> GameState | None:
        """Every worker's games (`RolloutWorker.get_state`), as one set of arrays with keys
        prefixed `w0.`, `w1.`...; None if a worker is dead or does not answer within
        `STATE_TIMEOUT_SECONDS` (a checkpoint then saves no games, and a resume starts new ones)."""
        ray = self._ray
        try:
            states = ray.get(
                [actor.get_state.remote() for actor in self.workers], timeout=STATE_TIMEOUT_SECONDS
            )
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            return None
        return join_worker_states(states)

    def restart(self, games_seed: int) -> None:
        """Every worker drops its games and starts new ones (`RolloutWorker.restart`)."""
        self._ray.get([actor.restart.remote(games_seed) for actor in self.workers])

    def set_state(self, state: GameState) -> None:
        """Continues every worker's games from a `get_state` (ValueError if they do not fit)."""
        parts = split_worker_states(state, len(self.workers))
        self._ray.get([actor.set_state.remote(part) for actor, part in zip(self.workers, parts, strict=True)])

    def worker_pids(self) -> list[int | None]:
        """Process ids of the workers as last seen (None for one that just died)."""
        return list(self._pids)

    def close(self) -> None:
        """Stops the workers, and the Ray instance if this collector started it."""
        for actor in self.workers:
            self._ray.kill(actor)
        self.workers = []
        if self._started_ray:
            self._ray.shutdown()
