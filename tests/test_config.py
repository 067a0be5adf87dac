"""Config loading: shipped files, YAML quirks, overrides, and one-line errors."""

import importlib.util

import pytest
import yaml
from conftest import CONFIGS

from pgkeras.config import Config, ConfigError, config_from_dict, config_to_dict, load_config


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert isinstance(config, Config)


def test_required_keys_exist_with_their_names():
    config = load_config(CONFIGS / "pong.yaml")
    assert isinstance(config.seed, int)
    assert config.env.num_envs >= 1
    assert config.model.hidden_units == [200]
    assert isinstance(config.train.learning_rate, float)
    assert isinstance(config.train.gamma, float)
    assert config.train.max_steps is None


def test_reset_on_reward_defaults_by_game():
    """Per-point returns suit Pong only; elsewhere a reset at every reward would make each return
    the immediate reward."""
    assert load_config(CONFIGS / "pong.yaml").train.reset_on_reward is True
    assert load_config(CONFIGS / "pong.yaml", ["env.id=CartPole-v1"]).train.reset_on_reward is False
    assert load_config(None, ["env.id=Acrobot-v1"]).train.reset_on_reward is False
    assert load_config(None, ["env.id=CartPole-v1", "train.reset_on_reward=true"]).train.reset_on_reward


def test_the_fast_pong_config_is_the_recipe_its_runs_measured():
    """`configs/pong_fast.yaml` is `pong.yaml` with the `--set`s of issue 22's runs of it
    (benchmarks/README.md, "Issue 22, ninth session"), nothing more and nothing less."""
    measured = [
        "env.frames=frame_and_difference", "train.learning_rate_final=1e-4",
        "train.learning_rate_decay_steps=2000000", "train.epochs=2", "env.actions=all",
        "train.samples_per_update=2500",
    ]  # fmt: skip
    assert config_to_dict(load_config(CONFIGS / "pong_fast.yaml")) == config_to_dict(
        load_config(CONFIGS / "pong.yaml", measured)
    )


def test_karpathy_config_has_his_settings():
    config = load_config(CONFIGS / "pong_karpathy.yaml")
    train, model = config.train, config.model
    assert (model.hidden_units, model.output, model.use_bias) == ([200], "sigmoid", False)
    assert (train.optimizer, train.loss_reduction, train.learning_rate, train.rmsprop_rho, train.gamma) == (
        "karpathy_rmsprop",
        "sum",
        1e-4,
        0.99,
        0.99,
    )
    assert (train.episodes_per_update, train.advantage, train.reset_on_reward) == (
        10,
        "standardize_per_episode",
        True,
    )


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 1e-4\n")  # PyYAML reads this as the string "1e-4"
    assert load_config(path).train.learning_rate == pytest.approx(1e-4)


def test_set_overrides_with_dotted_keys():
    config = load_config(
        CONFIGS / "pong.yaml",
        ["train.learning_rate=3e-4", "env.num_envs=4", "model.hidden_units=[64, 32]", "train.max_steps=null"],
    )
    assert config.train.learning_rate == pytest.approx(3e-4)
    assert config.env.num_envs == 4
    assert config.model.hidden_units == [64, 32]
    assert config.train.max_steps is None


def test_round_trip_through_saved_yaml():
    config = load_config(CONFIGS / "pong.yaml", ["train.learning_rate=3e-4"])
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(config))))
    assert again == config


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        (
            "train:\n  learning_rat: 0.1\n",
            [],
            r"unknown key 'train.learning_rat'; did you mean 'train.learning_rate'\?",
        ),
        ("trian:\n  gamma: 0.9\n", [], r"did you mean 'train'\?"),
        ("env:\n  num_envs: lots\n", [], r"env.num_envs: got str 'lots', expected an integer"),
        ("train:\n  learning_rate: -0.1\n", [], r"train.learning_rate: got -0.1, expected a positive number"),
        ("train:\n  gamma: 1.5\n", [], r"train.gamma: got 1.5, expected a discount in \[0, 1\]"),
        ("env:\n  num_envs: 0\n", [], r"env.num_envs: got 0, expected at least 1"),
        ("model:\n  hidden_units: 200\n", [], r"model.hidden_units: got int 200, expected a list"),
        ("train:\n  advantage: whiten\n", [], r"train.advantage: got 'whiten', expected one of"),
        ("train:\n  gamma: [0.9\n", [], r"malformed YAML at line \d+"),
        ("", ["train.gamma"], r"--set 'train.gamma': expected KEY=VALUE"),
        ("", ["train.gama=0.9"], r"--set: unknown key 'train.gama'; did you mean 'train.gamma'\?"),
        ("", ["train.episodes_per_update=10"], r"exactly one of train.episodes_per_update"),
        (
            "rollout:\n  backend: local\n  asynchronous: true\n",
            [],
            r"rollout.asynchronous: got True, expected false unless rollout.backend is processes",
        ),
    ],
)
def test_bad_input_gives_one_line_naming_file_and_key(tmp_path, text, overrides, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path, overrides)
    assert "\n" not in str(caught.value)
    if not overrides:
        assert str(path) in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["env.id=LQR"], "model.kind: got 'mlp', expected 'linear_gaussian' for env.id LQR"),
        (["model.kind=linear_gaussian"], "linear_gaussian needs env.id LQR"),
        (
            ["env.id=LQR", "model.kind=linear_gaussian", "env.lqr.B=[[1.0, 2.0]]"],
            "env.lqr.B: got [[1.0, 2.0]], expected a 2x1 matrix",
        ),
        (
            ["env.id=LQR", "model.kind=linear_gaussian", "env.lqr.R=[[0.0]]"],
            "env.lqr.R: got [[0.0]], expected a positive 1x1",
        ),
        (
            ["env.id=LQR", "model.kind=linear_gaussian", "env.lqr.termination_prob=0"],
            "expected a probability in (0, 1)",
        ),
        (["model.temperature=0"], "model.temperature: got 0.0, expected a positive number"),
        (["model.sigma=-1"], "model.sigma: got -1.0, expected a positive standard deviation"),
        (["env.kwargs=[1, 2]"], "env.kwargs: got list [1, 2], expected a mapping"),
        (["train.gae_lambda=0.95"], "train.gae_lambda: got 0.95, expected null, or model.value_head: true"),
        (["model.value_head=true", "train.gae_lambda=1.5"], "train.gae_lambda: got 1.5, expected null"),
        (["train.value_loss_weight=-1"], "train.value_loss_weight: got -1.0, expected a weight >= 0"),
        (["train.entropy_weight=-0.1"], "train.entropy_weight: got -0.1, expected a weight >= 0"),
        (
            ["train.entropy_steps=250000"],
            "train.entropy_steps: got 250000, expected null, or agent steps >= 1 with train.entropy_weight",
        ),
        (
            ["train.entropy_weight=0.01", "train.entropy_steps=0"],
            "train.entropy_steps: got 0, expected null, or agent steps >= 1 with train.entropy_weight",
        ),
        (
            ["train.epochs=0"],
            "train.epochs: got 0, expected a whole number of optimizer steps per batch >= 1",
        ),
        (["train.epochs=2.5"], "train.epochs: got float 2.5, expected an integer"),
        (["train.clip_range=0"], "train.clip_range: got 0.0, expected a ratio in (0, 1) such as 0.2"),
        (
            ["env.id=LQR", "model.kind=linear_gaussian", "train.epochs=2"],
            "train.epochs: got 2, expected 1 with model.kind linear_gaussian (a softmax or sigmoid policy)",
        ),
        (
            ["train.learning_rate_final=1e-4"],
            "train.learning_rate_decay_steps: got None, expected a number of agent steps together with",
        ),
        (
            ["train.learning_rate_final=-1", "train.learning_rate_decay_steps=1000"],
            "train.learning_rate_final: got -1.0, expected null or a number >= 0",
        ),
        (
            ["train.learning_rate_final=1e-4", "train.learning_rate_decay_steps=0"],
            "train.learning_rate_decay_steps: got 0, expected a number of agent steps >= 1",
        ),
        (
            ["train.gamma_final=0.97"],
            "train.gamma_decay_steps: got None, expected a number of agent steps together with",
        ),
        (
            ["train.gamma_final=1.5", "train.gamma_decay_steps=1000"],
            "train.gamma_final: got 1.5, expected null or a discount in [0, 1]",
        ),
        (
            ["train.gamma_final=0.97", "train.gamma_decay_steps=0"],
            "train.gamma_decay_steps: got 0, expected a number of agent steps >= 1",
        ),
        (
            ["env.id=LQR", "model.kind=linear_gaussian", "model.value_head=true"],
            "model.value_head: got True, expected false with model.kind linear_gaussian",
        ),
        (
            ["env.id=LQR", "model.kind=linear_gaussian", "model.hidden_dtype=mixed_bfloat16"],
            "model.hidden_dtype: got 'mixed_bfloat16', expected float32 with model.kind linear_gaussian",
        ),
        (["model.hidden_dtype=bfloat16"], "model.hidden_dtype: got 'bfloat16', expected one of"),
        (
            ["model.output=sigmoid", "train.entropy_weight=0.01"],
            "train.entropy_weight: got 0.01, expected 0 unless model.kind is mlp or conv, softmax",
        ),
    ],
)
def test_policy_families_and_lqr_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_toy_configs_name_their_families():
    frozenlake = load_config(CONFIGS / "frozenlake_tabular.yaml")
    assert frozenlake.model.kind == "tabular_softmax"
    assert frozenlake.env.kwargs == {"map_name": "4x4", "is_slippery": False}
    lqr = load_config(CONFIGS / "lqr_linear_gaussian.yaml")
    assert (lqr.env.id, lqr.model.kind) == ("LQR", "linear_gaussian")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["rollout.backend=threads"],
            "rollout.backend: got 'threads', expected one of 'local', 'processes', 'ray'",
        ),
        (["rollout.num_workers=0"], "rollout.num_workers: got 0, expected an integer >= 1"),
        (["rollout.backend=ray", "model.kind=conv"], "expected mlp or linear_gaussian with rollout.backend"),
        (
            ["model.kind=conv"],
            "model.kind: got 'conv', expected mlp or linear_gaussian with rollout.backend processes (its "
            "workers run the policy in numpy); rollout.backend local runs any policy",
        ),
        (
            ["rollout.num_workers=3", "train.samples_per_update=2"],
            "rollout.num_workers: got 3, expected at most the batch size (2)",
        ),
        (
            [
                "rollout.backend=ray",
                "rollout.num_workers=4",
                "train.samples_per_update=null",
                "train.episodes_per_update=2",
            ],
            "rollout.num_workers: got 4, expected at most the batch size (2)",
        ),  # fmt: skip
        (["rollout.worker_timeout=0"], "rollout.worker_timeout: got 0.0, expected a positive number"),
        (
            ["rollout.backend=ray", "ray.address=head-node"],
            "ray.address: got 'head-node', expected empty (a local Ray), auto, or a head node's HOST:PORT",
        ),
    ],
)
def test_rollout_settings_are_checked(overrides, message):
    pytest.importorskip("ray", reason='Ray is not installed: pip install -e ".[ray]"')
    with pytest.raises(ConfigError) as error:
        load_config(CONFIGS / "pong.yaml", overrides)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_ray_backend_without_ray_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def without_ray(name, *args):
        return None if name == "ray" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_ray)
    with pytest.raises(ConfigError) as error:
        load_config(CONFIGS / "pong.yaml", ["rollout.backend=ray"])
    assert str(error.value) == (
        f"{CONFIGS / 'pong.yaml'} with --set: rollout.backend: got 'ray', "
        'expected local, processes, or ray once it is installed: pip install -e ".[ray]"'
    )
    assert load_config(CONFIGS / "pong.yaml").rollout.backend == "processes"
