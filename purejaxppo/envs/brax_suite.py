"""Brax continuous control (``"brax:<name>"``, ``pip install "purejaxppo[brax]"``).

A Brax env has no time limit of its own: Brax's training wrappers add one
(``EpisodeWrapper``, which records it in ``info["truncation"]``) and auto-reset to a
cached first state (``AutoResetWrapper``, which overwrites the final observation). This
adapter uses neither: it steps the bare env, reports Brax's ``done`` as *termination*,
reaching ``max_steps_in_episode`` (default 1000, Brax's own training default) as
*truncation*, keeps the true final observation and resets with a fresh key, exactly as
gymnax's ``Environment.step`` does. Actions are in ``[-1, 1]^action_size``, Brax's
convention (the env scales them to its actuators).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import jax
import jax.numpy as jnp

# MuJoCo's optional GPU backend prints "Failed to import warp" on import when it is not
# installed (it never is here: nothing of it is used)
with contextlib.redirect_stdout(io.StringIO()):
    from brax import envs as brax_envs
    from brax.envs.base import Wrapper
from flax import struct
from gymnax.environments import spaces
from gymnax.environments.environment import Environment

DEFAULT_EPISODE_LENGTH = 1000


@struct.dataclass
class BraxParams:
    """``max_steps_in_episode``: the time limit, reported as truncation."""

    max_steps_in_episode: int = DEFAULT_EPISODE_LENGTH


@struct.dataclass
class BraxState:
    """The Brax ``State`` and the step count of its episode (``time``)."""

    brax_state: Any
    time: jax.Array


class BraxEnv(Environment):
    """A bare Brax env (no training wrappers) following the contract."""

    def __init__(self, env: Any):
        if isinstance(env, Wrapper):
            raise ValueError(
                f"pass the bare Brax env (brax.envs.get_environment(name)), not one wrapped "
                f"in {type(env).__name__}: purejaxppo adds the time limit (as truncation) "
                "and the resets itself, keeping the true final observation"
            )
        self.brax_env = env

    @property
    def default_params(self) -> BraxParams:
        return BraxParams()

    def reset_env(self, key: jax.Array, params: BraxParams) -> tuple[jax.Array, BraxState]:
        brax_state = self.brax_env.reset(key)
        return brax_state.obs, BraxState(brax_state, jnp.int32(0))

    def step_env(
        self, key: jax.Array, state: BraxState, action: jax.Array, params: BraxParams
    ) -> tuple[jax.Array, BraxState, jax.Array, jax.Array, dict[str, Any]]:
        del key  # Brax's dynamics are deterministic
        brax_state = self.brax_env.step(state.brax_state, action)
        terminated = brax_state.done > 0.5
        return (
            brax_state.obs,
            BraxState(brax_state, state.time + 1),
            brax_state.reward,
            terminated,
            {},
        )

    def is_truncated(self, state: BraxState, params: BraxParams) -> jax.Array:
        return state.time >= params.max_steps_in_episode

    def action_space(self, params: Any = None) -> spaces.Box:
        size = self.brax_env.action_size
        return spaces.Box(-1.0, 1.0, (size,), jnp.float32)

    def observation_space(self, params: Any = None) -> spaces.Box:
        size = self.brax_env.observation_size
        return spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)

    @property
    def name(self) -> str:
        return f"brax:{type(self.brax_env).__name__}"

    @property
    def num_actions(self) -> int:
        return self.brax_env.action_size


def env_names() -> tuple[str, ...]:
    """Brax's registered envs."""
    return tuple(sorted(brax_envs._envs))


def make(name: str) -> tuple[BraxEnv, BraxParams]:
    """``brax.envs.get_environment(name)`` (its default backend), adapted."""
    return adapt(brax_envs.get_environment(name))


def adapt(env: Any) -> tuple[BraxEnv, BraxParams]:
    """A bare Brax env object (any backend) as a contract env, with default params."""
    adapted = BraxEnv(env)
    return adapted, adapted.default_params
