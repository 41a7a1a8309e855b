"""PPOConfig and make_train reject bad input before tracing, naming the field."""

import contextlib
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import environment, spaces

from purejaxppo import PPOConfig, make_train
from purejaxppo.config import GRAD_CLIPS, map_config_keys


def test_defaults_are_purejaxrl_cartpole():
    c = PPOConfig()
    assert (c.env_name, c.lr, c.num_envs, c.num_steps, c.update_epochs, c.num_minibatches) == (
        "CartPole-v1",
        2.5e-4,
        4,
        128,
        4,
        4,
    )
    assert (c.gamma, c.gae_lambda, c.clip_eps, c.ent_coef, c.vf_coef, c.max_grad_norm) == (
        0.99,
        0.95,
        0.2,
        0.01,
        0.5,
        0.5,
    )
    assert (c.activation, c.hidden_sizes, c.anneal_lr) == ("tanh", (64, 64), True)


def test_derived_sizes():
    c = PPOConfig(total_timesteps=500_000)
    assert c.batch_size == 512 and c.minibatch_size == 128
    assert c.num_updates == 976 and c.trained_timesteps == 976 * 512


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PPOConfig().lr = 1.0


def test_from_dict_accepts_purejaxrl_keys():
    purejaxrl = {key: value for key, value in _PUREJAXRL_PPO.items() if key != "DEBUG"}
    c = PPOConfig.from_dict(purejaxrl)
    assert c == PPOConfig(total_timesteps=500_000)
    assert isinstance(c.total_timesteps, int)
    normalised = PPOConfig.from_dict({"NORMALIZE_ENV": True, "env_name": "Pendulum-v1"})
    assert normalised.normalize_obs and normalised.normalize_reward


def test_from_dict_unknown_key_suggests():
    with pytest.raises(ValueError, match=r"unknown config key 'LEARNING_RATE'.*valid keys"):
        PPOConfig.from_dict({"LEARNING_RATE": 1e-3})
    with pytest.raises(ValueError, match=r"did you mean 'num_envs'"):
        PPOConfig.from_dict({"num_env": 8})


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("num_envs", 0, "num_envs must be a positive integer"),
        ("num_steps", -5, "num_steps must be a positive integer"),
        ("update_epochs", 1.5, "update_epochs must be a positive integer"),
        ("num_minibatches", 0, "num_minibatches must be a positive integer"),
        ("total_timesteps", True, "total_timesteps must be a positive integer"),
        ("gamma", 1.5, r"gamma must be a finite number in \[0, 1\]"),
        ("gae_lambda", -0.1, r"gae_lambda must be a finite number in \[0, 1\]"),
        ("clip_eps", 0.0, r"clip_eps must be a finite number in \(0, inf\)"),
        ("lr", float("nan"), "lr must be a finite number"),
        ("lr", -1e-3, "lr must be a finite number"),
        ("ent_coef", -0.01, "ent_coef must be a finite number"),
        ("vf_coef", float("inf"), "vf_coef must be a finite number"),
        ("max_grad_norm", 0, "max_grad_norm must be a finite number"),
        ("activation", "sigmoid", r"activation must be one of \('tanh'"),
        ("hidden_sizes", (), "hidden_sizes must be a non-empty sequence"),
        ("hidden_sizes", (64, 0), "hidden_sizes must be a non-empty sequence"),
        ("anneal_lr", "yes", "anneal_lr must be True or False"),
        ("env_name", "", "env_name must be a non-empty string"),
        ("grad_clip", "per_layer", r"grad_clip must be one of \('global', 'per_network'\)"),
        ("grad_clip", None, r"grad_clip must be one of"),
        ("value_clip_eps", 0.0, r"value_clip_eps must be a finite number in \(0, inf\)"),
        ("value_clip_eps", -0.2, r"value_clip_eps must be a finite number in \(0, inf\)"),
        ("value_clip_eps", float("nan"), "value_clip_eps must be a finite number"),
        ("value_clip_eps", "0.2", "value_clip_eps must be a finite number"),
        ("value_clip_eps", True, "value_clip_eps must be a finite number"),
        ("hidden_sizes", 3.0, "hidden_sizes must be a non-empty sequence"),
        ("hidden_sizes", "64", "hidden_sizes must be a non-empty sequence"),
    ],
)
def test_bad_field_names_itself(field, value, message):
    with pytest.raises(ValueError, match=message) as info:
        PPOConfig(**{field: value})
    assert repr(value) in str(info.value) or field == "env_name"


def test_grad_clip_and_value_clip_eps():
    """Defaults are PureJaxRL's behaviour (one global norm; the value loss clipped by
    clip_eps); both are appended after the existing fields, and neither is traced."""
    names = [f.name for f in dataclasses.fields(PPOConfig)]
    at = names.index("eval_episodes")
    assert names[at : at + 3] == ["eval_episodes", "grad_clip", "value_clip_eps"]
    default = PPOConfig()
    assert (default.grad_clip, default.value_clip_eps) == ("global", None)
    assert GRAD_CLIPS == ("global", "per_network")
    for grad_clip in GRAD_CLIPS:
        assert PPOConfig(grad_clip=grad_clip).grad_clip == grad_clip
    assert PPOConfig(value_clip_eps=10.0).value_clip_eps == 10.0
    changed = PPOConfig(grad_clip="per_network", value_clip_eps=0.5)
    assert changed.hyperparams() == default.hyperparams()
    assert changed.to_dict() == {
        **default.to_dict(),
        "grad_clip": "per_network",
        "value_clip_eps": 0.5,
    }
    assert PPOConfig.from_dict({"GRAD_CLIP": "per_network", "VALUE_CLIP_EPS": 0.5}) == changed


def test_numpy_scalars_become_the_exact_python_value():
    """A grid built in NumPy works: each value is stored as the Python scalar of the same
    kind and value, so the config stays hashable and JSON-serialisable."""
    c = PPOConfig(
        lr=np.float32(3e-4),
        gamma=np.float64(0.995),
        gae_lambda=np.array(0.9),  # 0-d array
        num_envs=np.int64(8),
        num_steps=np.uint16(64),
        total_timesteps=np.float64(5e5),  # whole: accepted as an int, like 5e5
        anneal_lr=np.bool_(False),
        hidden_sizes=np.array([32, 16]),
        eval_every=np.int32(5),
        value_clip_eps=np.float32(0.5),
        env_name=np.str_("Acrobot-v1"),
        activation=np.str_("relu"),
    )
    expected = {
        "lr": float(np.float32(3e-4)),  # the float32's exact value, not 3e-4
        "gamma": 0.995,
        "gae_lambda": 0.9,
        "num_envs": 8,
        "num_steps": 64,
        "total_timesteps": 500_000,
        "anneal_lr": False,
        "hidden_sizes": (32, 16),
        "eval_every": 5,
        "value_clip_eps": 0.5,
        "env_name": "Acrobot-v1",
        "activation": "relu",
    }
    for name, value in expected.items():
        assert getattr(c, name) == value and type(getattr(c, name)) is type(value), name
    assert all(type(size) is int for size in c.hidden_sizes)
    assert c.lr != 3e-4
    hash(c)
    assert PPOConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("update_epochs", np.float32(1.5), "update_epochs must be a positive integer, got 1.5"),
        ("num_envs", np.bool_(True), "num_envs must be a positive integer, got True"),
        ("anneal_lr", np.int64(1), "anneal_lr must be True or False, got 1"),
        ("lr", np.array([1e-3]), "lr must be a finite number"),  # not a scalar
        ("lr", np.float32("nan"), "lr must be a finite number"),
        ("lr", np.complex64(1e-3), "lr must be a finite number"),
        ("num_envs", np.datetime64(5, "ns"), "num_envs must be a positive integer"),
        ("hidden_sizes", np.array([64.0, 64.0]), "hidden_sizes must be a non-empty sequence"),
        ("hidden_sizes", np.array([[64]]), "hidden_sizes must be a non-empty sequence"),
    ],
)
def test_numpy_values_of_the_wrong_kind_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(**{field: value})


# The `config = {...}` dicts of PureJaxRL's scripts, copied literally from
# github.com/luchris429/purejaxrl at commit 31756b197773a52db763fdbe6d635e4b46522a73.
_PUREJAXRL_PPO = {  # purejaxrl/ppo.py
    "LR": 2.5e-4,
    "NUM_ENVS": 4,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 5e5,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True,
    "DEBUG": True,
}
_PUREJAXRL_CONTINUOUS = {  # purejaxrl/ppo_continuous_action.py
    "LR": 3e-4,
    "NUM_ENVS": 2048,
    "NUM_STEPS": 10,
    "TOTAL_TIMESTEPS": 5e7,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 32,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.0,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "hopper",
    "ANNEAL_LR": False,
    "NORMALIZE_ENV": True,
    "DEBUG": True,
}
# purejaxrl/ppo_rnn.py; the same dict is in experimental/s5/ppo_s5.py. Its GRU network is
# in the script, not in the dict: from_dict gives this library's feed-forward network.
_PUREJAXRL_RNN = {
    "LR": 2.5e-4,
    "NUM_ENVS": 4,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 5e5,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True,
    "DEBUG": True,
}
_PUREJAXRL_MINIGRID = {  # purejaxrl/ppo_minigrid.py
    "LR": 2.5e-4,
    "NUM_ENVS": 16,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 1e6,
    "UPDATE_EPOCHS": 1,
    "NUM_MINIBATCHES": 8,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "Navix-DoorKey-5x5-v0",
    "ANNEAL_LR": True,
    "DEBUG": True,
}
_PUREJAXRL_DPO = {  # purejaxrl/dpo_continuous_action.py
    "LR": 3e-4,
    "NUM_ENVS": 2048,
    "NUM_STEPS": 10,
    "TOTAL_TIMESTEPS": 5e7,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 32,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "DPO_ALPHA": 2.0,
    "DPO_BETA": 0.6,
    "ENT_COEF": 0.0,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "hopper",
    "ANNEAL_LR": False,
    "NORMALIZE_ENV": True,
    "DEBUG": True,
}


@pytest.mark.parametrize(
    "purejaxrl,expected",
    [
        (_PUREJAXRL_PPO, PPOConfig()),
        (
            _PUREJAXRL_CONTINUOUS,
            PPOConfig(
                env_name="hopper",
                lr=3e-4,
                num_envs=2048,
                num_steps=10,
                total_timesteps=50_000_000,
                num_minibatches=32,
                ent_coef=0.0,
                anneal_lr=False,
                normalize_obs=True,
                normalize_reward=True,
            ),
        ),
        (_PUREJAXRL_RNN, PPOConfig()),
        (
            _PUREJAXRL_MINIGRID,
            PPOConfig(
                env_name="Navix-DoorKey-5x5-v0",
                num_envs=16,
                total_timesteps=1_000_000,
                update_epochs=1,
                num_minibatches=8,
            ),
        ),
    ],
    ids=["ppo", "ppo_continuous_action", "ppo_rnn", "ppo_minigrid"],
)
def test_from_dict_accepts_purejaxrl_script_configs(purejaxrl, expected):
    """DEBUG (printing from the jitted loop) is accepted and ignored."""
    assert PPOConfig.from_dict(purejaxrl) == expected
    assert PPOConfig.from_dict({**purejaxrl, "DEBUG": False}) == expected


def test_from_dict_accepts_a_dict_purejaxrl_make_train_filled_in():
    """PureJaxRL's make_train writes NUM_UPDATES and MINIBATCH_SIZE into the dict it is
    given; they are accepted when they agree with the derived sizes, refused otherwise."""
    config = dict(_PUREJAXRL_PPO)
    config["NUM_UPDATES"] = config["TOTAL_TIMESTEPS"] // config["NUM_STEPS"] // config["NUM_ENVS"]
    config["MINIBATCH_SIZE"] = config["NUM_ENVS"] * config["NUM_STEPS"] // config["NUM_MINIBATCHES"]
    assert (config["NUM_UPDATES"], config["MINIBATCH_SIZE"]) == (976.0, 128)
    assert PPOConfig.from_dict(config) == PPOConfig()
    with pytest.raises(
        ValueError,
        match=r"config key 'num_updates' = 100 disagrees with this config's "
        r"num_updates = 976.*change those fields",
    ):
        PPOConfig.from_dict({**config, "NUM_UPDATES": 100})
    with pytest.raises(ValueError, match=r"'minibatch_size' = 64 disagrees.*= 128"):
        PPOConfig.from_dict({**config, "MINIBATCH_SIZE": 64})


def test_from_dict_refuses_purejaxrl_keys_it_cannot_honour():
    with pytest.raises(
        ValueError,
        match=r"config key 'DPO_ALPHA' is a PureJaxRL key this library does not support: "
        r"DPO .* is not implemented here; remove DPO_ALPHA and DPO_BETA",
    ):
        PPOConfig.from_dict(_PUREJAXRL_DPO)
    with pytest.raises(ValueError, match="'DPO_BETA' is a PureJaxRL key"):
        PPOConfig.from_dict({"DPO_BETA": 0.6})


def test_map_config_keys_is_the_mapping_of_from_dict():
    """Raw values under field names (not validated); mapping twice changes nothing."""
    raw = {"NORMALIZE_ENV": True, "LR": "fast", "DEBUG": True, "NUM_UPDATES": 7, "gamma": 2}
    mapped = map_config_keys(raw)
    assert mapped == {
        "normalize_obs": True,
        "normalize_reward": True,
        "lr": "fast",
        "num_updates": 7,
        "gamma": 2,
    }
    assert map_config_keys(mapped) == mapped
    with pytest.raises(ValueError, match=r"config key 'normalize_obs' sets 'normalize_obs' twice"):
        map_config_keys({"NORMALIZE_ENV": True, "normalize_obs": False})
    with pytest.raises(ValueError, match=r"unknown config key 'LEARNING_RATE'"):
        map_config_keys({"LEARNING_RATE": 1e-3})
    with pytest.raises(ValueError, match="config must be a PPOConfig or a dict, got list"):
        map_config_keys([("lr", 1e-3)])


def test_minibatches_must_divide_batch():
    with pytest.raises(
        ValueError,
        match=r"num_envs \* num_steps = 4 \* 10 = 40 must be divisible "
        r"by num_minibatches = 3; valid num_minibatches include \[1, 2, 4, 5",
    ):
        PPOConfig(num_steps=10, num_minibatches=3)


def test_budget_smaller_than_one_batch():
    with pytest.raises(ValueError, match=r"total_timesteps = 100 is smaller than one batch"):
        PPOConfig(total_timesteps=100)


def test_unknown_env_suggests_close_names():
    with pytest.raises(ValueError, match=r"'CartPol-v1' is not a registered.*'CartPole-v1'"):
        make_train(PPOConfig(env_name="CartPol-v1"))


def test_mnist_bandit_needs_download():
    with pytest.raises(ValueError, match=r"MNISTBandit-bsuite.*download"):
        make_train(PPOConfig(env_name="MNISTBandit-bsuite"))


def test_make_train_accepts_purejaxrl_dict_and_rejects_junk():
    make_train({"ENV_NAME": "CartPole-v1", "TOTAL_TIMESTEPS": 1024})
    with pytest.raises(ValueError, match="config must be a PPOConfig or a dict"):
        make_train(["CartPole-v1"])


class _TupleActionEnv(environment.Environment):
    """An env whose action space the networks cannot handle."""

    def action_space(self, params):
        return spaces.Tuple([spaces.Discrete(2), spaces.Discrete(3)])

    def reset_env(self, key, params):
        return jnp.zeros(2), environment.EnvState(time=0)


class _MatrixBoxEnv(_TupleActionEnv):
    def action_space(self, params):
        return spaces.Box(-1.0, 1.0, (2, 2))


@pytest.mark.parametrize(
    "env_cls,message",
    [
        (
            _TupleActionEnv,
            r"action space Tuple.*not supported: use a Discrete, a "
            r"purejaxppo.envs.MultiDiscrete or a one-dimensional",
        ),
        (_MatrixBoxEnv, r"Box action space must be one-dimensional"),
    ],
)
def test_unsupported_action_space(env_cls, message):
    with pytest.raises(ValueError, match=message):
        make_train(PPOConfig(), env=env_cls())


def test_env_must_be_a_gymnax_environment():
    with pytest.raises(ValueError, match="env must be a gymnax Environment"):
        make_train(PPOConfig(), env=object())


_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"  # JAX records one per trace
_traces: list[str] = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kwargs: _traces.append(event) if event == _TRACE_EVENT else None
)


def _traces_during(build) -> int:
    before = len(_traces)
    with contextlib.suppress(ValueError):
        build()
    return len(_traces) - before


@pytest.mark.parametrize(
    "build",
    [
        lambda: make_train(PPOConfig(env_name="Nope-v0")),
        lambda: make_train({"num_minibatches": 7}),
        lambda: make_train(PPOConfig(num_envs=2, num_steps=8, total_timesteps=16), env=object()),
        lambda: make_train(PPOConfig(), env=_TupleActionEnv()),
        lambda: make_train(PPOConfig(), on_update="not callable"),
    ],
    ids=["unknown-env", "minibatches", "not-an-env", "action-space", "on-update"],
)
def test_errors_come_before_tracing(build):
    """Validation is plain Python: nothing is traced when it fails. (A valid config does
    trace: the env's abstract reset and step give the observation shape and dtype.)"""
    with pytest.raises(ValueError):
        build()
    assert _traces_during(build) == 0
    valid = PPOConfig(num_envs=3, num_steps=8, total_timesteps=24, hidden_sizes=(7,))
    assert _traces_during(lambda: make_train(valid)) > 0
