"""Rollouts in worker processes on this machine: `rollout.backend: processes`.

The same division of labour as the Ray backend (`pgkeras.distributed`), with the standard library's
`multiprocessing` instead of Ray: the trainer's process keeps the Keras model and runs the
`model.fit` update; each of `rollout.num_workers` processes plays its own `env.num_envs` games with
the policy in numpy and sends back its share of each batch. Worker `w` is a `RolloutWorker`, so it
draws its actions and seeds its games exactly as Ray's worker `w` does: the two backends collect
the same data.

Why it is faster than the local backend on a few cores: each worker's Python (frame differences,
the forward pass, the buffers) runs beside its own games instead of in one thread for all of them,
and no step waits for a thread of another process. Workers meet the trainer once per update.
Observations, the bulk of a batch, come back through shared memory, not the pipe.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from pgkeras.config import Config, config_to_dict
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

START_TIMEOUT_SECONDS = 120.0
"""How long the trainer waits for a worker to build its games."""
STOP_TIMEOUT_SECONDS = 10.0
"""How long `close` waits for a worker to exit before killing it."""
PENDING = "pending."
"""Prefix, within a worker's saved games, of its share of the batch collected ahead."""


def _serve(connection: Connection, config_data: dict[str, Any], worker: int, games_seed: int) -> None:
    """A worker process: builds its games, then answers the trainer's requests until told to stop
    or until the trainer's end of the pipe closes (the trainer died)."""
    # Ctrl-C in a terminal, and SIGTERM from Slurm's scancel, systemd or `timeout`, reach the whole
    # process group; the trainer decides when to stop, and needs its workers for the last checkpoint.
    # A worker ends when the trainer closes its pipe, or dies.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    memory: SharedMemory | None = None
    try:
        rollout = RolloutWorker(config_data, worker, games_seed, serial=True)
        connection.send(("ready", os.getpid()))
        while True:
            request, *arguments = connection.recv()
            if request == "collect":
                parameters, update, memory_name = arguments
                batch, _ = rollout.collect(parameters, update)
                if memory_name is not None and (memory is None or memory.name != memory_name):
                    if memory is not None:
                        memory.close()
                    memory = SharedMemory(name=memory_name)  # the trainer's; it unlinks it
                observations = batch.observations
                if memory is not None and observations.nbytes <= memory.size:
                    np.ndarray(observations.shape, observations.dtype, memory.buf)[:] = observations
                    batch = batch._replace(observations=(observations.shape, observations.dtype.str))
                connection.send(("batch", batch))
            elif request == "get_state":
                connection.send(("state", rollout.get_state()))
            elif request == "set_state":
                rollout.set_state(*arguments)
                connection.send(("state_set",))
            elif request == "restart":
                rollout.restart(*arguments)
                connection.send(("restarted",))
            else:
                return
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return
    except Exception as error:  # reported to the trainer, which stops with it
        message = " ".join(str(error).split()) or type(error).__name__
        with contextlib.suppress(OSError):
            connection.send(("error", f"{type(error).__name__}: {message}"))
    finally:
        if memory is not None:
            memory.close()


class ProcessRolloutCollector:
    """Collects each batch with `rollout.num_workers` worker processes on this machine; the
    counterpart of `pgkeras.distributed.RayRolloutCollector` without Ray.

    Workers are started with `spawn`, so they import neither Keras nor TensorFlow, and they end
    with the trainer: `close`, or when the trainer's process dies and their pipe closes.

    Args:
        config: the run's validated config.
        games_seed: seeds the workers' games.
        first_update: updates already done (non-zero on resume); batch k seeds its actions with
            update `first_update + k`.

    Raises:
        RolloutWorkerError: a worker failed to start (one line, with the worker's error).
    """

    def __init__(self, config: Config, games_seed: int, first_update: int):
        self._update = first_update
        self._asynchronous = config.rollout.asynchronous
        self._in_flight = False  # shares requested and not yet received
        self._held: list[Batch] | None = None  # shares received ahead of `collect_batch`
        self._timeout = config.rollout.worker_timeout
        context = multiprocessing.get_context("spawn")
        data = config_to_dict(config)
        self._connections: list[Connection] = []
        self._processes = []
        # One block per worker, made by the trainer after the first batch shows the size.
        self._memories: list[SharedMemory | None] = [None] * config.rollout.num_workers
        try:
            for worker in range(config.rollout.num_workers):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_serve, args=(theirs, data, worker, games_seed), name=f"pgkeras-rollout-{worker}",
                    daemon=True,
                )  # fmt: skip
                process.start()
                theirs.close()
                self._connections.append(ours)
                self._processes.append(process)
            workers = range(len(self._processes))
            self._pids = [self._answer(worker, "ready", START_TIMEOUT_SECONDS)[0] for worker in workers]
        except BaseException:
            self.close()
            raise

    def _died(self, worker: int) -> RolloutWorkerError:
        process = self._processes[worker]
        process.join(STOP_TIMEOUT_SECONDS)
        code = process.exitcode
        killed = code is not None and code < 0
        how = f"killed by {signal.Signals(-code).name}" if killed else f"exit code {code}"
        return RolloutWorkerError(
            f"update {self._update}: rollout worker {worker} (process {process.pid}) died ({how}); "
            "resume from the last checkpoint"
        )

    def _send(self, worker: int, message: tuple) -> None:
        try:
            self._connections[worker].send(message)
        except (BrokenPipeError, ConnectionResetError):
            raise self._died(worker) from None

    def _answer(self, worker: int, expected: str, timeout: float | None = None) -> tuple:
        """The next message of `worker`, which must be `expected`; otherwise a `RolloutWorkerError`."""
        connection = self._connections[worker]
        timeout = self._timeout if timeout is None else timeout
        if not wait([connection], timeout):
            pid = self._processes[worker].pid
            setting = " (rollout.worker_timeout)" if timeout == self._timeout else ""
            raise RolloutWorkerError(
                f"update {self._update}: rollout worker {worker} (process {pid}) did not answer within "
                f"{timeout:g} s{setting}; resume from the last checkpoint"
            )
        try:
            kind, *payload = connection.recv()
        except (EOFError, ConnectionResetError):
            raise self._died(worker) from None
        if kind == "error":
            raise RolloutWorkerError(f"rollout worker {worker}: {payload[0]}")
        if kind != expected:
            raise RolloutWorkerError(f"rollout worker {worker}: expected {expected}, got {kind}")
        return tuple(payload)

    def collect_batch(self, policy: NumpyPolicy) -> Batch:
        """Sends the policy's weights to every worker, lets each collect its share, and joins the
        shares in worker order.

        With `rollout.asynchronous`, the workers are then sent the same weights at once and collect
        the next batch while the trainer updates the model with this one: each batch after the first
        is played by the weights from before the previous update (a policy lag of one update).

        Args:
            policy: a Dense-only policy; its `parameters` go to the workers, which draw their own
                actions (see `RolloutWorker.collect`).
        """
        parameters = policy.parameters
        if self._in_flight:
            batch = concatenate_batches(self._receive())  # copies the observations out of shared memory
        elif self._held is not None:
            batch, self._held = concatenate_batches(self._held), None
        else:
            self._request(parameters)
            batch = concatenate_batches(self._receive())
        if self._asynchronous:
            self._request(parameters)
        return batch

    def _request(self, parameters) -> None:
        """Asks every worker for its share of the next batch, played with `parameters`."""
        self._update += 1
        for worker, memory in enumerate(self._memories):
            self._send(worker, ("collect", parameters, self._update, None if memory is None else memory.name))
        self._in_flight = True

    def _receive(self) -> list[Batch]:
        """Every worker's share of the batch requested last, in worker order; the observations of a
        share may lie in the worker's shared memory, which its next share overwrites."""
        parts = []
        for worker, memory in enumerate(self._memories):
            (batch,) = self._answer(worker, "batch")
            if isinstance(batch.observations, tuple):  # in shared memory
                shape, dtype = batch.observations
                batch = batch._replace(observations=np.ndarray(shape, np.dtype(dtype), memory.buf))
            elif memory is None or batch.observations.nbytes > memory.size:
                # Room for twice this share from now on (a share overshoots by at most one point).
                if memory is not None:
                    memory.close()
                    memory.unlink()
                self._memories[worker] = SharedMemory(create=True, size=max(1, 2 * batch.observations.nbytes))
            parts.append(batch)
        self._in_flight = False
        return parts

    def _hold(self) -> None:
        """Waits for the batch the workers are collecting ahead, and keeps a copy for the next
        `collect_batch`, so that the games can be saved, or restarted, between two batches."""
        if self._in_flight:
            self._held = [part._replace(observations=np.array(part.observations)) for part in self._receive()]

    def _drop_ahead(self) -> None:
        """Waits for any batch collected ahead and drops it, with its update's seed, before the
        games are replaced."""
        self._hold()
        if self._held is not None:
            self._held = None
            self._update -= 1

    def get_state(self) -> GameState:
        """Every worker's games (`RolloutWorker.get_state`), keys prefixed `w0.`, `w1.`..., and with
        `rollout.asynchronous` each worker's share of the batch collected ahead (`w0.pending.*`), which
        the next `collect_batch` returns."""
        self._hold()
        for worker in range(len(self._connections)):
            self._send(worker, ("get_state",))
        states = [self._answer(worker, "state")[0] for worker in range(len(self._connections))]
        if self._held is not None:
            for state, part in zip(states, self._held, strict=True):
                state.update({f"{PENDING}{key}": np.asarray(value) for key, value in part._asdict().items()})
        return join_worker_states(states)

    def restart(self, games_seed: int) -> None:
        """Every worker drops its games and starts new ones (`RolloutWorker.restart`); a batch
        collected ahead is dropped with them."""
        self._drop_ahead()
        for worker in range(len(self._connections)):
            self._send(worker, ("restart", games_seed))
        for worker in range(len(self._connections)):
            self._answer(worker, "restarted")

    def set_state(self, state: GameState) -> None:
        """Continues every worker's games from a `get_state` (the trainer checks first that the
        state was saved by the same workers and games: `pgkeras.train.games_layout`). A batch the
        state holds as collected ahead is what the next `collect_batch` returns, whatever
        `rollout.asynchronous`; one collected ahead of the replaced games is dropped.

        Raises:
            ValueError: the state was saved by another number of workers.
        """
        self._drop_ahead()
        parts = split_worker_states(state, len(self._connections))
        held = []
        for worker, part in enumerate(parts):
            pending = {key[len(PENDING) :]: part.pop(key) for key in list(part) if key.startswith(PENDING)}
            if pending:
                pending["num_env_steps"] = int(pending["num_env_steps"])
                held.append(Batch(**pending))
            self._send(worker, ("set_state", part))
        for worker in range(len(self._connections)):
            self._answer(worker, "state_set")
        if held:
            self._held = held
            self._update += 1  # its actions were drawn with the seed of the update after the saved one

    def worker_pids(self) -> list[int]:
        """Process ids of the workers."""
        return list(self._pids)

    def close(self) -> None:
        """Stops the workers (killing any that does not exit within `STOP_TIMEOUT_SECONDS`)."""
        for memory in self._memories:
            if memory is not None:
                memory.close()
                memory.unlink()
        self._memories = []
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.send(("stop",))
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        for connection in self._connections:
            connection.close()
        self._connections, self._processes = [], []
