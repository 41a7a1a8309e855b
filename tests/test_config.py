"""PPOConfig and make_train reject bad input before tracing, naming the field."""

import dataclasses

import gymnax
import jax
import jax.numpy as jnp
import pytest
from gymnax.environments import environment, spaces

from purejaxppo import PPOConfig, make_train


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
    purejaxrl = {
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
    }
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
    ],
)
def test_bad_field_names_itself(field, value, message):
    with pytest.raises(ValueError, match=message) as info:
        PPOConfig(**{field: value})
    assert repr(value) in str(info.value) or field == "env_name"


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
            r"action space Tuple.*not supported: use a Discrete or a one-dimensional",
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


def test_errors_come_before_tracing(monkeypatch):
    """Validation is plain Python: nothing is traced or compiled when it fails."""

    def no_tracing(*args, **kwargs):
        raise AssertionError("traced before validating")

    monkeypatch.setattr(jax, "jit", no_tracing)
    monkeypatch.setattr(jax.lax, "scan", no_tracing)
    with pytest.raises(ValueError):
        make_train(PPOConfig(env_name="Nope-v0"))
    with pytest.raises(ValueError):
        PPOConfig(num_minibatches=7)
    assert "CartPole-v1" in gymnax.registered_envs
