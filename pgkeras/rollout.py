"""The collector: steps all games at once and hands out complete batches for `model.fit`.

Each game writes into its own row of preallocated arrays, so a step costs a few whole-array numpy
operations whatever the number of games. Games come in groups (`env.groups`): while the emulator
plays one group, the policy chooses the actions of the next. A stretch of a game's steps becomes
usable once its return is known: at the end of a point (when `reset_on_reward`) or of an episode.
Unfinished stretches stay in the buffer and join a later batch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from pgkeras.config import TrainConfig, config_from_dict
from pgkeras.envs import GameState, make_env
from pgkeras.inference import NumpyPolicy, Parameters, blas_on_one_thread
from pgkeras.returns import discounted_returns

if TYPE_CHECKING:
    from pgkeras.envs import StepResult

INITIAL_CAPACITY = 1024


class Batch(NamedTuple):
    """Complete segments of experience, ready for one policy update. T samples in all."""

    observations: np.ndarray
    """`(T, D)` in the env's compact dtype (int8 frame differences for Pong)."""
    actions: np.ndarray
    """`(T,)` in the env's `action_dtype`: int32 action indices, or float32 continuous actions."""
    rewards: np.ndarray
    """float32 `(T,)`."""
    returns: np.ndarray
    """float32 `(T,)` discounted returns, each within its own point or episode."""
    ends: np.ndarray
    """bool `(T,)`: True on the last step of each return's stretch (a point when `reset_on_reward`,
    a lost life when `reset_on_life_loss`, an episode): the state after it is worth nothing to it."""
    episode_returns: np.ndarray
    """float64 `(E,)`: total reward of each episode that finished while this batch was collected."""
    episode_lengths: np.ndarray
    """int64 `(E,)`: agent steps of those episodes."""
    segment_ids: np.ndarray
    """int64 `(T,)`: which segment (point, or episode) of the batch each sample belongs to, 0, 1, ...
    in the order of the samples. With `episodes_per_update` the segments are whole episodes."""
    num_env_steps: int
    """Agent steps taken (summed over games) while collecting, including unfinished segments."""


class Collector(Protocol):
    """What the trainer asks of a collector, whichever plays the games: `RolloutCollector` (this
    process), `pgkeras.processes.ProcessRolloutCollector` (worker processes) or
    `pgkeras.distributed.RayRolloutCollector` (Ray actors)."""

    def collect_batch(self, policy: NumpyPolicy) -> Batch:
        """Plays with `policy` until a batch is complete, and returns it. Workers play with
        `policy.parameters` (a Dense-only policy); this process calls `policy.sample`."""
        ...

    def restart(self, games_seed: int) -> None:
        """Drops the games, their held samples and unfinished episodes, and starts new games."""
        ...

    def get_state(self) -> GameState | None:
        """Everything needed to continue the games exactly (None if it cannot be had)."""
        ...

    def set_state(self, state: GameState) -> None:
        """Continues the games from a `get_state` of a collector with the same settings."""
        ...

    def close(self) -> None:
        """Stops the games and any workers."""
        ...


def derive_seed(*keys: int) -> int:
    """A 31-bit seed for starting games, derived from integer `keys` (run seed, update, worker...).

    Example:
        >>> derive_seed(0, 20) == derive_seed(0, 20) != derive_seed(0, 21)
        True
    """
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0] % 2**31)


def concatenate_batches(batches: list[Batch]) -> Batch:
    """One batch holding the samples and finished episodes of `batches`, in order (e.g. one per
    rollout worker)."""
    offsets = np.cumsum([0] + [int(batch.segment_ids.max(initial=-1)) + 1 for batch in batches])
    joined = {
        name: np.concatenate([getattr(batch, name) for batch in batches]) for name in Batch._fields[:-2]
    }
    return Batch(
        **joined,
        segment_ids=np.concatenate(
            [batch.segment_ids + offset for batch, offset in zip(batches, offsets, strict=False)]
        ),
        num_env_steps=sum(batch.num_env_steps for batch in batches),
    )


def pack_observations(observations: np.ndarray) -> GameState:
    """Observations as arrays for a checkpoint: int8 frame differences (almost all zeros) as their
    non-zero entries, anything else as it is. `unpack_observations` reverses it."""
    if observations.dtype != np.int8:
        return {"observations": observations}
    flat = observations.reshape(-1)
    indices = np.flatnonzero(flat)
    return {"observation_indices": indices, "observation_values": flat[indices]}


def unpack_observations(state: GameState, count: int, size: int, dtype: np.dtype) -> np.ndarray:
    """The `(count, size)` observations that `pack_observations` stored in `state`."""
    if "observations" in state:
        return state["observations"].reshape(count, size)
    observations = np.zeros(count * size, dtype)
    observations[state["observation_indices"]] = state["observation_values"]
    return observations.reshape(count, size)


class RolloutCollector:
    """Collects batches from a vectorised game with a batched action chooser.

    Args:
        env: object with `reset(seed)`, `groups`, `send(group, actions)`, `recv(group)`,
            `num_envs`, `observation_size`, `observation_dtype` and `action_dtype` (see
            `pgkeras.envs.make_env`).
        gamma: discount for the returns.
        reset_on_reward: a segment ends at every non-zero reward (Pong points), not only at
            episode ends.
        episodes_per_update: a batch is ready once this many episodes have finished; the batch holds
            those whole episodes. Set this or `samples_per_update`.
        samples_per_update: a batch is ready once this many steps of finished segments are held.
        seed: seeds the games on the first reset.
        reset_on_life_loss: returns also end where a game loses a life (Atari); with
            `samples_per_update` each life is then a segment of its own.
    """

    def __init__(
        self,
        env,
        gamma: float,
        reset_on_reward: bool,
        episodes_per_update: int | None = None,
        samples_per_update: int | None = None,
        seed: int | None = None,
        reset_on_life_loss: bool = False,
    ):
        if (episodes_per_update is None) == (samples_per_update is None):
            raise ValueError("set exactly one of episodes_per_update and samples_per_update")
        self.env = env
        self.gamma = gamma
        self.reset_on_reward = reset_on_reward
        self.episodes_per_update = episodes_per_update
        self.samples_per_update = samples_per_update
        # Batches of whole episodes need episode ends only; batches of samples can use each point
        # as soon as it is decided.
        self._segment_on_reward = reset_on_reward and samples_per_update is not None
        self.reset_on_life_loss = reset_on_life_loss
        num_envs = env.num_envs
        self._games = np.arange(num_envs)
        self._observations = np.zeros(
            (num_envs, INITIAL_CAPACITY, env.observation_size), env.observation_dtype
        )
        self._actions = np.zeros((num_envs, INITIAL_CAPACITY), env.action_dtype)
        self._rewards = np.zeros((num_envs, INITIAL_CAPACITY), np.float32)
        self._episode_ends = np.zeros((num_envs, INITIAL_CAPACITY), bool)
        self._length = np.zeros(num_envs, np.int64)  # steps held per game
        self._complete = np.zeros(num_envs, np.int64)  # of which the first this many are finished
        self._episode_return = np.zeros(num_envs, np.float64)
        self._episode_length = np.zeros(num_envs, np.int64)
        self._finished_returns: list[float] = []
        self._finished_lengths: list[int] = []
        self._groups = [self._as_slice(rows) for rows in env.groups]
        self._current: list[np.ndarray] = []  # each group's latest observations
        self._sent_actions: list[np.ndarray | None] = []
        self._start_games(seed)

    @classmethod
    def from_config(
        cls, env, train: TrainConfig, seed: int, num_workers: int = 1, worker: int = 0
    ) -> RolloutCollector:
        """The collector the `train` section asks for; with workers, worker `worker`'s share of
        each batch (`share`)."""
        return cls(
            env,
            gamma=train.gamma,
            reset_on_reward=train.reset_on_reward,
            episodes_per_update=share(train.episodes_per_update, num_workers, worker),
            samples_per_update=share(train.samples_per_update, num_workers, worker),
            seed=seed,
            reset_on_life_loss=train.reset_on_life_loss,
        )

    @staticmethod
    def _as_slice(rows: np.ndarray) -> slice:
        """A group's games as a slice: views instead of copies on the hot path."""
        start = int(rows[0])
        if not np.array_equal(rows, np.arange(start, start + len(rows))):
            raise ValueError(f"a group's games must be consecutive, got {rows.tolist()}")
        return slice(start, start + len(rows))

    def _start_games(self, seed: int | None) -> None:
        observations = self.env.reset(seed=seed)
        self._current = [observations[rows] for rows in self._groups]
        self._sent_actions = [None] * len(self._groups)
        self._next_group = 0

    def collect_batch(self, policy: NumpyPolicy) -> Batch:
        """Steps all games until a batch is complete, and returns it.

        Args:
            policy: its `sample` maps observations `(N, D)` to actions `(N,)` with one batched
                forward pass (`pgkeras.policies.ActionSampler`, `pgkeras.inference.NumpyPolicy`).

        Returns:
            The `Batch`; its samples are removed from the buffer.
        """
        with blas_on_one_thread():
            return self._collect_batch(policy.sample)

    def restart(self, games_seed: int) -> None:
        """Drops the games' steps in flight, held samples and unfinished episodes, and starts new
        games seeded with `games_seed`: the collector is then as a new one made with that seed."""
        for group, sent in enumerate(self._sent_actions):
            if sent is not None:
                self.env.recv(group)
        self._length[:] = 0
        self._complete[:] = 0
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0
        self._finished_returns, self._finished_lengths = [], []
        self._start_games(games_seed)

    def close(self) -> None:
        """Closes the games."""
        self.env.close()

    def _collect_batch(self, choose_actions) -> Batch:
        num_env_steps = 0
        groups = self._groups
        # Every group has a step in flight between calls, except one that finished the last batch:
        # it gets its actions from the new policy now.
        for group in range(len(groups)):
            if self._sent_actions[group] is None:
                self._sent_actions[group] = choose_actions(self._current[group])
                self.env.send(group, self._sent_actions[group])
        while not self._batch_ready():
            group = self._next_group
            self._next_group = (group + 1) % len(groups)
            self._ensure_capacity()
            result = self.env.recv(group)
            self._record(group, result)
            num_env_steps += groups[group].stop - groups[group].start
            if self._batch_ready():
                self._sent_actions[group] = None
                break
            # The other groups are being played meanwhile.
            self._sent_actions[group] = choose_actions(result.observations)
            self.env.send(group, self._sent_actions[group])
        return self._take_batch(num_env_steps)

    def _record(self, group: int, result: StepResult) -> None:
        """Writes one step of the games in `group` into their buffers: the observations the actions
        were chosen from, the actions and what the step returned."""
        rows = self._groups[group]
        games = self._games[rows]
        columns = self._length[rows].copy()
        self._observations[games, columns] = self._current[group]
        self._actions[games, columns] = self._sent_actions[group]
        self._rewards[games, columns] = result.rewards
        done = result.terminated | result.truncated
        # The buffer marks where returns end: episode ends, and lost lives if asked.
        ends = done | result.lives_lost if self.reset_on_life_loss and result.lives_lost is not None else done
        self._episode_ends[games, columns] = ends
        self._length[rows] += 1
        self._current[group] = result.observations

        self._episode_return[rows] += result.rewards
        self._episode_length[rows] += 1
        if done.any():
            finished = games[done]
            self._finished_returns.extend(self._episode_return[finished].tolist())
            self._finished_lengths.extend(self._episode_length[finished].tolist())
            self._episode_return[finished] = 0.0
            self._episode_length[finished] = 0
        if self.episodes_per_update is not None:
            segment_end = done  # batches of whole episodes
        else:
            segment_end = ends | (result.rewards != 0) if self._segment_on_reward else ends
        if segment_end.any():
            self._complete[games[segment_end]] = columns[segment_end] + 1

    def get_state(self) -> GameState | None:
        """Everything needed to go on exactly from here: the games' state (`env.get_state`), each
        game's held samples (its unfinished point), current observations, actions in flight and
        episode score so far, and the episodes finished since the last batch. Read-only: a run
        that saves it plays on as if it had not.

        Returns:
            Named numpy arrays; int8 observations are stored as their non-zero entries (a frame
            difference has a few dozen). None if the env cannot save its games.
        """
        games = self.env.get_state()
        if games is None:  # games that cannot be saved (a ready gymnasium VectorEnv)
            return None
        lengths = self._length

        def held(array: np.ndarray) -> np.ndarray:
            """Each game's held rows of a buffer, one game after another."""
            return np.concatenate([array[game, :length] for game, length in enumerate(lengths.tolist())])

        in_flight = np.array([sent is not None for sent in self._sent_actions])
        sent = np.zeros(len(self._games), self.env.action_dtype)
        for group, actions in enumerate(self._sent_actions):
            if actions is not None:
                sent[self._groups[group]] = actions
        state = {f"env.{key}": value for key, value in games.items()}
        state.update(pack_observations(held(self._observations)))
        state.update(
            lengths=lengths.copy(),
            complete=self._complete.copy(),
            actions=held(self._actions),
            rewards=held(self._rewards),
            episode_ends=held(self._episode_ends),
            current_observations=np.concatenate(self._current),
            in_flight=in_flight,
            sent_actions=sent,
            next_group=np.array(self._next_group),
            episode_return=self._episode_return.copy(),
            episode_length=self._episode_length.copy(),
            finished_returns=np.array(self._finished_returns, np.float64),
            finished_lengths=np.array(self._finished_lengths, np.int64),
        )
        return state

    def set_state(self, state: GameState) -> None:
        """Continues from a `get_state` of a collector with the same settings and games.

        Raises:
            ValueError: the state holds another number of games or groups.
        """
        lengths = state["lengths"]
        if len(lengths) != len(self._games) or len(state["in_flight"]) != len(self._groups):
            raise ValueError(
                f"the saved games do not fit: {len(lengths)} games in {len(state['in_flight'])} groups "
                f"saved for {len(self._games)} in {len(self._groups)}"
            )
        for group, sent in enumerate(self._sent_actions):
            if sent is not None:
                self.env.recv(group)  # a step in flight since the start: its result is dropped
        self.env.set_state({key[4:]: value for key, value in state.items() if key.startswith("env.")})
        capacity = max(INITIAL_CAPACITY, 1 << int(max(1, lengths.max(initial=1)) - 1).bit_length())
        num_envs, size = len(self._games), self.env.observation_size
        self._observations = np.zeros((num_envs, capacity, size), self.env.observation_dtype)
        self._actions = np.zeros((num_envs, capacity), self.env.action_dtype)
        self._rewards = np.zeros((num_envs, capacity), np.float32)
        self._episode_ends = np.zeros((num_envs, capacity), bool)
        observations = unpack_observations(state, int(lengths.sum()), size, self.env.observation_dtype)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        for game in self._games:
            saved = slice(offsets[game], offsets[game + 1])
            held = slice(0, offsets[game + 1] - offsets[game])
            self._observations[game, held] = observations[saved]
            self._actions[game, held] = state["actions"][saved]
            self._rewards[game, held] = state["rewards"][saved]
            self._episode_ends[game, held] = state["episode_ends"][saved]
        self._length[:] = lengths
        self._complete[:] = state["complete"]
        self._episode_return[:] = state["episode_return"]
        self._episode_length[:] = state["episode_length"]
        self._finished_returns = state["finished_returns"].tolist()
        self._finished_lengths = state["finished_lengths"].tolist()
        current = state["current_observations"]
        self._current = [current[rows].copy() for rows in self._groups]
        self._sent_actions = [None] * len(self._groups)
        for group, rows in enumerate(self._groups):
            if state["in_flight"][group]:
                self._sent_actions[group] = state["sent_actions"][rows].copy()
                self.env.send(group, self._sent_actions[group])
        self._next_group = int(state["next_group"])

    def _batch_ready(self) -> bool:
        if self.episodes_per_update is not None:
            return len(self._finished_returns) >= self.episodes_per_update
        return int(self._complete.sum()) >= self.samples_per_update

    def _ensure_capacity(self) -> None:
        capacity = self._actions.shape[1]
        if self._length.max() < capacity:
            return

        # A long point or episode outgrew the buffer: double it (rare, and amortised).
        def grow(array: np.ndarray) -> np.ndarray:
            bigger = np.zeros((array.shape[0], 2 * capacity, *array.shape[2:]), array.dtype)
            bigger[:, :capacity] = array
            return bigger

        self._observations = grow(self._observations)
        self._actions = grow(self._actions)
        self._rewards = grow(self._rewards)
        self._episode_ends = grow(self._episode_ends)

    def _take_batch(self, num_env_steps: int) -> Batch:
        observations, actions, rewards, returns, return_ends, segment_ids = [], [], [], [], [], []
        num_segments = 0
        for game in self._games:  # once per update, not per step
            end = int(self._complete[game])
            if end == 0:
                continue
            ends = self._episode_ends[game, :end]
            if self._segment_on_reward:
                ends = ends | (self._rewards[game, :end] != 0)
            starts = np.concatenate([[0], np.cumsum(ends[:-1], dtype=np.int64)])
            segment_ids.append(num_segments + starts)
            num_segments += int(ends.sum())
            observations.append(self._observations[game, :end])
            actions.append(self._actions[game, :end])
            rewards.append(self._rewards[game, :end])
            returns.append(
                discounted_returns(
                    self._rewards[game, :end],
                    self.gamma,
                    self.reset_on_reward,
                    self._episode_ends[game, :end],
                )
            )
            stretch_ends = self._episode_ends[game, :end]
            if self.reset_on_reward:
                stretch_ends = stretch_ends | (self._rewards[game, :end] != 0)
            return_ends.append(stretch_ends)
        batch = Batch(
            observations=np.concatenate(observations),
            actions=np.concatenate(actions),
            rewards=np.concatenate(rewards),
            returns=np.concatenate(returns),
            ends=np.concatenate(return_ends),
            episode_returns=np.array(self._finished_returns, dtype=np.float64),
            episode_lengths=np.array(self._finished_lengths, dtype=np.int64),
            segment_ids=np.concatenate(segment_ids),
            num_env_steps=num_env_steps,
        )
        self._discard_complete()
        self._finished_returns, self._finished_lengths = [], []
        return batch

    def _discard_complete(self) -> None:
        for game in self._games:
            start, stop = int(self._complete[game]), int(self._length[game])
            if start == 0:
                continue
            for array in (self._observations, self._actions, self._rewards, self._episode_ends):
                array[game, : stop - start] = array[game, start:stop]
        self._length -= self._complete
        self._complete[:] = 0

    @property
    def num_buffered(self) -> int:
        """Steps held that belong to no batch yet (unfinished segments and unused finished ones)."""
        return int(self._length.sum())


class RolloutWorkerError(RuntimeError):
    """The rollout workers could not start, or kept dying. The message is one line."""


def join_worker_states(states: list[GameState]) -> GameState:
    """The workers' game states as one set of arrays, keys prefixed with the worker (`w0.`, ...)."""
    return {f"w{worker}.{key}": value for worker, state in enumerate(states) for key, value in state.items()}


def split_worker_states(state: GameState, num_workers: int) -> list[GameState]:
    """The per-worker states that `join_worker_states` joined.

    Raises:
        ValueError: `state` was saved by another number of workers.
    """
    saved = {key.split(".", 1)[0] for key in state}
    if saved != {f"w{worker}" for worker in range(num_workers)}:
        raise ValueError(f"the saved games do not fit: {len(saved)} workers saved for {num_workers}")
    parts: list[GameState] = [{} for _ in range(num_workers)]
    for key, value in state.items():
        worker, name = key.split(".", 1)
        parts[int(worker[1:])][name] = value
    return parts


def share(total: int | None, num_workers: int, worker: int) -> int | None:
    """Worker `worker`'s part of `total` samples or episodes per batch; the parts add up to `total`.

    Example:
        >>> [share(5000, 3, w) for w in range(3)]
        [1667, 1667, 1666]
    """
    if total is None:
        return None
    return total // num_workers + (worker < total % num_workers)


class RolloutWorker:
    """One worker of `rollout.backend: processes` (a process) or `ray` (an actor): its own games
    and collector, and the policy in numpy.

    Args:
        config_data: the run's config as plain data (`config_to_dict`).
        worker: this worker's index, 0 to `rollout.num_workers - 1`.
        games_seed: seeds the games, with the worker's index (`derive_seed`).
        serial: play Pong in this thread (`pgkeras.envs.PongSerialEnv`), as the workers of
            `rollout.backend: processes` do; the games are the same either way.
    """

    def __init__(self, config_data: dict[str, Any], worker: int, games_seed: int, serial: bool = False):
        import ale_py
        import gymnasium

        gymnasium.register_envs(ale_py)  # Atari ids must be known in this process too
        config = config_from_dict(config_data, "the learner's config")
        self.seed = config.seed
        self.worker = worker
        self.sigma = config.model.gaussian_sigma
        self.env = make_env(config, serial=serial)
        self.collector = RolloutCollector.from_config(
            self.env, config.train, derive_seed(games_seed, worker), config.rollout.num_workers, worker
        )

    def pid(self) -> int:
        """The worker's process id (it changes when Ray restarts the worker)."""
        return os.getpid()

    def collect(self, parameters: Parameters, update: int) -> tuple[Batch, int]:
        """Plays until this worker's share of batch `update` is complete.

        Returns:
            The batch and this worker's process id.
        """
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, update, self.worker]))
        batch = self.collector.collect_batch(NumpyPolicy(parameters, rng, self.sigma))
        return batch, os.getpid()

    def restart(self, games_seed: int) -> None:
        """Starts new games, seeded from (`games_seed`, this worker's index), as a new worker would."""
        self.collector.restart(derive_seed(games_seed, self.worker))

    def get_state(self) -> GameState:
        """This worker's games and held samples (`RolloutCollector.get_state`)."""
        return self.collector.get_state()

    def set_state(self, state: GameState) -> None:
        """Continues this worker's games from a `get_state` (`RolloutCollector.set_state`)."""
        self.collector.set_state(state)
