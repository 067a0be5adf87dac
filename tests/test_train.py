"""Real training runs through `train()`: Pong writes every artefact and resumes; CartPole, FrozenLake
and the LQR learn."""

import importlib
import json
import shutil

import keras
import numpy as np
import pytest
from conftest import CONFIGS, Choosing, Record, StopAt, random_choices, timing_free

import pgkeras
from pgkeras.config import ConfigError, load_config
from pgkeras.envs import make_env
from pgkeras.evaluation import play_one_episode_each
from pgkeras.metrics import COLUMNS, read_metrics
from pgkeras.policies import ActionSampler
from pgkeras.rollout import Batch, RolloutCollector
from pgkeras.train import taken_probabilities, train, update_on_batch, with_discount

TINY_PONG = ["env.num_envs=4", "train.samples_per_update=1000", "train.checkpoint_every=2",
             "model.hidden_units=[16]"]  # fmt: skip


@pytest.mark.slow
def test_short_pong_run_writes_every_artefact_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    config = load_config(CONFIGS / "pong.yaml", [*TINY_PONG, "train.max_steps=5000"])
    result = train(config, run_dir)

    assert result.env_steps >= 5000 and result.updates >= 4
    for name in ("config.yaml", "metrics.csv", "model.keras", "best.keras"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert load_config(run_dir / "config.yaml") == config

    rows = read_metrics(run_dir / "metrics.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert [row["update"] for row in rows] == list(range(1, result.updates + 1))
    assert all(row["batch_size"] >= 1000 for row in rows)
    assert rows[-1]["env_steps"] == result.env_steps
    assert all(np.isfinite(row["loss"]) and row["steps_per_second"] > 0 for row in rows)

    model = keras.models.load_model(run_dir / "model.keras")
    assert model.input_shape == (None, 6400) and model.output_shape == (None, 2)
    best = keras.models.load_model(run_dir / "best.keras")  # copied from a checkpoint's file
    assert [w.shape for w in best.get_weights()] == [w.shape for w in model.get_weights()]
    state = json.loads(sorted((run_dir / "checkpoints").iterdir())[-1].joinpath("state.json").read_text())
    assert state["update"] == result.updates

    config.train.max_steps = 9000
    resumed = train(config, run_dir, resume=True)
    assert resumed.updates > result.updates and resumed.env_steps >= 9000
    rows = read_metrics(run_dir / "metrics.csv")
    assert [row["update"] for row in rows] == list(range(1, resumed.updates + 1))
    assert rows[result.updates]["env_steps"] > rows[result.updates - 1]["env_steps"]


@pytest.mark.slow
def test_cartpole_learns_with_the_trick(tmp_path):
    """A broken gradient sign or scale fails this: random play lasts ~20 steps, the cap is 500."""
    config = load_config(CONFIGS / "cartpole.yaml")
    train(config, tmp_path / "cartpole")
    rows = read_metrics(tmp_path / "cartpole" / "metrics.csv")
    assert rows[-1]["env_steps"] <= config.train.max_steps + 8 * 500
    recent = [row["episode_reward_mean"] for row in rows[-5:]]
    assert np.mean(recent) > 150, recent


@pytest.mark.slow
def test_frozenlake_tabular_policy_reaches_the_goal_every_time(tmp_path):
    config = load_config(CONFIGS / "frozenlake_tabular.yaml")
    train(config, tmp_path / "frozenlake")
    model = keras.models.load_model(tmp_path / "frozenlake" / "model.keras")
    assert [v.path for v in model.trainable_variables] == ["preferences/kernel"]

    # The lake is not slippery, so greedy play is deterministic: every game must reach the goal (return 1).
    env = make_env(config, num_envs=8)
    sampler = ActionSampler(model, np.random.default_rng(0))
    returns = play_one_episode_each(sampler, env, greedy=True, seed=123, max_steps=100)
    env.close()
    assert returns.tolist() == [1.0] * 8


@pytest.mark.slow
def test_lqr_linear_gaussian_learns_the_riccati_gain(tmp_path):
    config = load_config(CONFIGS / "lqr_linear_gaussian.yaml")
    thetas = []
    train(
        config,
        tmp_path / "lqr",
        callbacks=[Record(lambda logs, model: thetas.append(model.get_weights()[0][:, 0]))],
    )
    model = keras.models.load_model(tmp_path / "lqr" / "model.keras")
    assert [v.path for v in model.trainable_variables] == ["theta/kernel"]

    theta = model.get_layer("theta").get_weights()[0][:, 0]
    optimal = make_env(config).optimal_theta(config.train.gamma)
    assert np.linalg.norm(theta - optimal) / np.linalg.norm(optimal) < 0.10, (theta, optimal)
    np.testing.assert_array_equal(thetas[-1], theta)
    # It started at zero, 100% off.
    assert np.linalg.norm(thetas[0] - optimal) > 0.5 * np.linalg.norm(optimal)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["processes", "processes-asynchronous", "local"])
def test_checkpoints_change_nothing_and_every_resume_is_exact(tmp_path, backend):
    """Determinism; checkpoints are invisible to the games (a checkpoint after every update gives
    the rows and weights of one checkpoint at the end); and a run stopped between periodic
    checkpoints (as by Ctrl-C) and resumed gives the same weights and rows as never stopping. With
    `rollout.asynchronous` too: a checkpoint saves the batch the workers collected ahead."""
    backend, _, asynchronous = backend.partition("-")
    # 2 games per worker (processes) or 4 in 2 groups (local), long enough for episodes to end.
    games = "env.num_envs=2" if backend == "processes" else "env.num_envs=4"
    overrides = [*TINY_PONG, games, "train.max_steps=null", f"rollout.backend={backend}",
                 f"rollout.asynchronous={bool(asynchronous)}"]  # fmt: skip
    config = load_config(CONFIGS / "pong.yaml", [*overrides, "train.checkpoint_every=1000"])
    train(config, tmp_path / "first", callbacks=[StopAt(8)])
    first = read_metrics(tmp_path / "first" / "metrics.csv")
    assert len(first) == 8 and first[-1]["episodes"] >= 2  # games ran across checkpoints to their end
    every_update = load_config(CONFIGS / "pong.yaml", [*overrides, "train.checkpoint_every=1"])
    train(every_update, tmp_path / "second", callbacks=[StopAt(8)])
    assert timing_free(read_metrics(tmp_path / "second" / "metrics.csv")) == timing_free(first)

    train(config, tmp_path / "resumed", callbacks=[StopAt(3)])
    train(config, tmp_path / "resumed", resume=True, callbacks=[StopAt(8)])
    assert timing_free(read_metrics(tmp_path / "resumed" / "metrics.csv")) == timing_free(first)
    uninterrupted = keras.models.load_model(tmp_path / "first" / "model.keras").get_weights()
    for run in ("second", "resumed"):
        weights = keras.models.load_model(tmp_path / run / "model.keras").get_weights()
        for a, b in zip(uninterrupted, weights, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_value_head_run_with_gae_and_entropy_resumes_exactly(tmp_path):
    """The actor-critic additions keep resume exact: the value output's weights and Adam's moments
    for both outputs come back from the checkpoint, and GAE sees the same values."""
    overrides = [*TINY_PONG, "rollout.backend=local", "train.max_steps=null", "model.value_head=true",
                 "train.gae_lambda=0.95", "train.entropy_weight=0.01"]  # fmt: skip
    config = load_config(CONFIGS / "pong.yaml", overrides)
    train(config, tmp_path / "first", callbacks=[StopAt(5)])
    train(config, tmp_path / "resumed", callbacks=[StopAt(3)])
    train(config, tmp_path / "resumed", resume=True, callbacks=[StopAt(5)])
    first = read_metrics(tmp_path / "first" / "metrics.csv")
    assert timing_free(read_metrics(tmp_path / "resumed" / "metrics.csv")) == timing_free(first)
    uninterrupted = keras.models.load_model(tmp_path / "first" / "model.keras")
    resumed = keras.models.load_model(tmp_path / "resumed" / "model.keras")
    assert uninterrupted.output_names == resumed.output_names and len(uninterrupted.outputs) == 2
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The two-output model plays as a one-output policy does.
    scores = pgkeras.play(tmp_path / "resumed", num_episodes=1, max_steps=300, report=lambda line: None)
    assert len(scores) == 1


def assert_a_resumed_run_repeats(config, first, resumed, stopped_at, updates):
    """Trains `config` in `resumed` to `stopped_at` updates, resumes it to `updates`, and checks that
    its rows and weights are those of the run in `first`, never stopped."""
    train(config, resumed, callbacks=[StopAt(stopped_at)])
    train(config, resumed, resume=True, callbacks=[StopAt(updates)])
    rows = read_metrics(resumed / "metrics.csv")
    assert timing_free(rows) == timing_free(read_metrics(first / "metrics.csv"))
    uninterrupted = keras.models.load_model(first / "model.keras").get_weights()
    repeated = keras.models.load_model(resumed / "model.keras").get_weights()
    for a, b in zip(uninterrupted, repeated, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_learning_rate_schedule_sets_each_update_and_resumes_exactly(tmp_path):
    """`train.learning_rate_final`: each update's step size is the straight line's value at the
    agent steps before it, falling to the final value and staying there; a resumed run takes the
    same steps, so its rows and weights are those of the run never stopped."""
    overrides = ["train.max_steps=null", "train.checkpoint_every=2", "train.learning_rate_final=1e-3",
                 "train.learning_rate_decay_steps=1000"]  # fmt: skip
    config = load_config(CONFIGS / "cartpole.yaml", overrides)
    seen = []  # (agent steps after the update, its step size)
    record = Record(
        lambda logs, model: seen.append((logs["env_steps"], float(model.optimizer.learning_rate)))
    )
    train(config, tmp_path / "first", callbacks=[record, StopAt(8)])
    steps_before = [0] + [steps for steps, _ in seen[:-1]]
    expected = [1e-2 - 9e-3 * min(1.0, steps / 1000) for steps in steps_before]
    np.testing.assert_allclose([rate for _, rate in seen], expected, rtol=1e-6)
    assert steps_before[-2] > 1000 and seen[-1][1] == pytest.approx(1e-3)  # it reached the end and stayed

    assert_a_resumed_run_repeats(config, tmp_path / "first", tmp_path / "resumed", 3, 8)


def test_an_entropy_term_for_the_first_steps_only_stops_there_and_resumes_exactly(tmp_path):
    """`train.entropy_steps`: the updates that start before that many agent steps have the entropy
    term, the later ones none; a run stopped before the switch and resumed after it takes the same
    steps, so its rows and weights are those of the run never stopped."""
    overrides = ["train.max_steps=null", "train.checkpoint_every=2", "train.entropy_weight=0.01",
                 "train.entropy_steps=1000"]  # fmt: skip
    config = load_config(CONFIGS / "cartpole.yaml", overrides)
    seen = []  # (agent steps after the update, the entropy weight it trained with)

    def entropy_weight(logs, model):
        bonus = model.get_layer("action_probabilities").activity_regularizer
        seen.append((logs["env_steps"], bonus.weight if bonus is not None else 0.0))

    train(config, tmp_path / "first", callbacks=[Record(entropy_weight), StopAt(8)])
    steps_before = [0] + [steps for steps, _ in seen[:-1]]
    assert [weight for _, weight in seen] == [0.01 if steps < 1000 else 0.0 for steps in steps_before]
    switch = next(update for update, (_, weight) in enumerate(seen) if weight == 0.0)
    assert 3 <= switch < 7  # both sides of the switch, and the resume below crosses it

    assert_a_resumed_run_repeats(config, tmp_path / "first", tmp_path / "resumed", 3, 8)


def test_a_discount_schedule_takes_each_update_s_returns_again_and_resumes_exactly(tmp_path, monkeypatch):
    """`train.gamma_final`: each update's returns are taken with the straight line's discount at the
    agent steps before it, falling to the final value and staying there; a resumed run takes the
    same steps, so its rows and weights are those of the run never stopped."""
    overrides = ["train.max_steps=null", "train.checkpoint_every=2", "train.gamma_final=0.9",
                 "train.gamma_decay_steps=1000"]  # fmt: skip
    config = load_config(CONFIGS / "cartpole.yaml", overrides)
    trainer = importlib.import_module("pgkeras.train")  # the module; `pgkeras.train` is the function
    discounts = []

    def recorded(batch, gamma):
        discounts.append(gamma)
        return with_discount(batch, gamma)

    monkeypatch.setattr(trainer, "with_discount", recorded)
    seen = []  # agent steps after each update
    record = Record(lambda logs, model: seen.append(logs["env_steps"]))
    train(config, tmp_path / "first", callbacks=[record, StopAt(8)])
    steps_before = [0] + seen[:-1]
    expected = [0.99 - 0.09 * min(1.0, steps / 1000) for steps in steps_before]
    np.testing.assert_allclose(discounts, expected[1:], rtol=1e-12)  # update 1 keeps the collectors' 0.99
    assert steps_before[-2] > 1000 and discounts[-1] == pytest.approx(0.9)  # it reached the end and stayed

    assert_a_resumed_run_repeats(config, tmp_path / "first", tmp_path / "resumed", 3, 8)


@pytest.mark.parametrize("game", ["ALE/Pong-v5", "ALE/Breakout-v5"])
def test_returns_taken_again_end_where_the_collectors_ended_them(game):
    """`with_discount` on a real batch: with the collectors' discount it gives their returns to the
    bit; with another, each point of Pong (each life of Breakout, `reset_on_life_loss`) is
    discounted on its own."""
    config = load_config(CONFIGS / "pong.yaml", ["env.num_envs=2", "env.num_groups=1", f"env.id={game}"])
    env = make_env(config, serial=True)
    reset_on_reward = game == "ALE/Pong-v5"
    collector = RolloutCollector(env, gamma=0.99, reset_on_reward=reset_on_reward, samples_per_update=1500,
                                 seed=0, reset_on_life_loss=not reset_on_reward)  # fmt: skip
    batch = collector.collect_batch(Choosing(random_choices(0)))
    collector.close()
    np.testing.assert_array_equal(with_discount(batch, 0.99).returns, batch.returns)
    halved = with_discount(batch, 0.5).returns
    stops = np.flatnonzero(batch.ends) + 1
    assert len(stops) >= 5 and stops[-1] == len(batch.rewards)
    for start, stop in zip([0, *stops[:-1]], stops, strict=True):
        rewards = batch.rewards[start:stop].astype(np.float64)
        expected = [sum(r * 0.5**k for k, r in enumerate(rewards[t:])) for t in range(len(rewards))]
        np.testing.assert_allclose(halved[start:stop], expected, rtol=1e-6, atol=1e-30)


def test_clipped_epochs_take_that_many_steps_per_batch_and_resume_exactly(tmp_path):
    """`train.epochs: 3`: three optimizer steps on each batch, and a resumed run takes the same steps
    (the ratios come from the batch and the weights, both restored), so its rows and weights are
    those of the run never stopped."""
    overrides = ["train.max_steps=null", "train.checkpoint_every=2", "train.epochs=3"]
    config = load_config(CONFIGS / "cartpole.yaml", overrides)
    iterations = []
    record = Record(lambda logs, model: iterations.append(int(model.optimizer.iterations)))
    train(config, tmp_path / "first", callbacks=[record, StopAt(5)])
    assert iterations == [3, 6, 9, 12, 15]
    assert_a_resumed_run_repeats(config, tmp_path / "first", tmp_path / "resumed", 3, 5)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "value_head"])
def test_the_ratios_probabilities_are_those_the_games_were_played_with(kind):
    """`train.epochs` > 1 takes each sample's probability of its action from Keras's forward pass
    over the batch (`taken_probabilities`); it must be the probability the numpy sampler, which
    chose the actions, gives them: for a six-action softmax, a one-unit sigmoid (P of the first
    action) and a policy with a value output."""
    overrides = {
        "softmax": ["env.actions=all"],
        "sigmoid": ["model.output=sigmoid"],
        "value_head": ["model.value_head=true"],
    }
    config = load_config(CONFIGS / "pong.yaml", ["model.hidden_units=[16]", *overrides[kind]])
    num_actions = 6 if kind == "softmax" else 2
    model = pgkeras.build_policy(config.model, config.train, (6400,), num_actions)
    rng = np.random.default_rng(7)
    observations = np.zeros((300, 6400), np.int8)  # Pong-like: a few dozen pixels of -1 and 1 per row
    for row in observations:
        row[rng.integers(0, 6400, 40)] = rng.choice([-1, 1], 40)
    actions = rng.integers(0, num_actions, 300)
    sampler = ActionSampler(model, np.random.default_rng(0))
    expected = sampler.probabilities(observations)[np.arange(300), actions]
    np.testing.assert_allclose(taken_probabilities(model, observations, actions), expected, rtol=1e-5)


def test_a_clipped_step_survives_an_action_whose_probability_was_0_in_float32():
    """`train.epochs: 2` on a batch holding an action that a near-certain policy gives a probability
    below float32's range (a point played by the policy before the last update can hold one): its
    ratio would be 0/0; it keeps ratio 1, and the update stays finite. (Seen at update 818 of a
    1,250-sample run of `pong_fast.yaml`, which stopped with a NaN loss.)"""
    config = load_config(CONFIGS / "pong.yaml", ["model.hidden_units=[8]", "train.epochs=2"])
    model = pgkeras.build_policy(config.model, config.train, (6400,), 2)
    kernel, bias = model.get_layer("action_probabilities").get_weights()
    model.get_layer("action_probabilities").set_weights(
        [np.zeros_like(kernel), np.array([0.0, -200.0], np.float32)]
    )
    rng = np.random.default_rng(0)
    observations = rng.integers(-1, 2, size=(64, 6400)).astype(np.int8)
    actions = np.zeros(64, np.int32)
    actions[:4] = 1  # probability exp(-200): 0 in float32
    assert (taken_probabilities(model, observations, actions)[:4] == 0).all()
    returns = rng.normal(size=64).astype(np.float32)
    batch = Batch(observations, actions, np.zeros(64, np.float32), returns, np.zeros(64, bool),
                  np.zeros(0), np.zeros(0, np.int64), np.zeros(64, np.int64), 64)  # fmt: skip
    loss = update_on_batch(model, ActionSampler(model, rng), batch, config)
    assert np.isfinite(loss) and all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setting", "inputs"),
    [("env.frame_pool=2", 1600), ("env.projections=true", 6560)],
    ids=["40x40 frames", "row and column sums"],
)
def test_other_inputs_train_through_the_workers_resume_exactly_and_play(tmp_path, setting, inputs):
    """`env.frame_pool: 2`: the policy takes the 1,600 pixels of 40x40 frames; `env.projections`:
    the 6,400 pixels and their 160 sums. Either way a resumed run repeats the uninterrupted one, and
    the saved policy plays from its run folder."""
    overrides = [*TINY_PONG, "env.num_envs=2", "train.max_steps=null", setting]
    config = load_config(CONFIGS / "pong.yaml", overrides)
    train(config, tmp_path / "first", callbacks=[StopAt(5)])
    model = keras.models.load_model(tmp_path / "first" / "model.keras")
    assert model.input_shape == (None, inputs) and model.output_shape == (None, 2)
    assert_a_resumed_run_repeats(config, tmp_path / "first", tmp_path / "resumed", 3, 5)
    scores = pgkeras.play(tmp_path / "first", num_episodes=1, max_steps=300, report=lambda line: None)
    assert len(scores) == 1


@pytest.mark.slow
def test_bfloat16_hidden_layers_train_resume_exactly_and_play(tmp_path):
    """`model.hidden_dtype: mixed_bfloat16` on the shape of `configs/pong_fast.yaml` (the frame beside
    the difference, six actions, two clipped steps): the saved policy keeps its bfloat16 hidden layer
    and float32 weights, a resumed run repeats the uninterrupted one bit for bit, and it plays."""
    overrides = [*TINY_PONG, "env.num_envs=2", "train.max_steps=null", "model.hidden_dtype=mixed_bfloat16"]
    config = load_config(CONFIGS / "pong_fast.yaml", overrides)
    train(config, tmp_path / "first", callbacks=[StopAt(5)])
    model = keras.models.load_model(tmp_path / "first" / "model.keras")
    assert model.get_layer("hidden_0").compute_dtype == "bfloat16" and model.output_shape == (None, 6)
    assert all(w.dtype == np.float32 for w in model.get_weights())
    assert_a_resumed_run_repeats(config, tmp_path / "first", tmp_path / "resumed", 3, 5)
    scores = pgkeras.play(tmp_path / "first", num_episodes=1, max_steps=300, report=lambda line: None)
    assert len(scores) == 1


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it_over(tmp_path):
    config = load_config(CONFIGS / "cartpole.yaml", ["train.max_steps=300", "train.checkpoint_every=1000"])
    run_dir = tmp_path / "run"
    train(config, run_dir)
    reference = read_metrics(run_dir / "metrics.csv")
    shutil.rmtree(run_dir / "checkpoints")  # as if killed before the first checkpoint
    train(config, run_dir, resume=True)
    assert timing_free(read_metrics(run_dir / "metrics.csv")) == timing_free(reference)


def test_resume_refuses_a_changed_model(tmp_path):
    config = load_config(CONFIGS / "cartpole.yaml", ["train.max_steps=200"])
    train(config, tmp_path / "run")
    config.model.hidden_units = [64]
    with pytest.raises(ConfigError, match="cannot resume with model.hidden_units changed from"):
        train(config, tmp_path / "run", resume=True)


def test_a_full_disk_at_save_time_is_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    import errno

    import pgkeras.callbacks
    from pgkeras.checkpoints import list_checkpoints, verify_checkpoint
    from pgkeras.cli import train_main

    real_save = pgkeras.callbacks.save_checkpoint
    saves = []

    def save_until_the_disk_fills(run_dir, model, state, games=None):
        saves.append(state.update)
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(run_dir, model, state, games)

    monkeypatch.setattr(pgkeras.callbacks, "save_checkpoint", save_until_the_disk_fills)
    run_dir = tmp_path / "run"
    code = train_main(["--config", str(CONFIGS / "cartpole.yaml"), "--set", "train.checkpoint_every=1",
                       "--set", "train.max_steps=2000", "--run-dir", str(run_dir)])  # fmt: skip
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1
    assert "cannot write: No space left on device; the last complete checkpoint is kept" in error[0]
    (kept,) = list_checkpoints(run_dir)
    verify_checkpoint(kept)
