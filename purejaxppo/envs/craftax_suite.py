"""Craftax (``"craftax:<name>"``, ``pip install "purejaxppo[craftax]"``).

Craftax's envs are gymnax-style but return the old 5-tuple ``(obs, state, reward, done,
info)``, where ``done`` joins the time limit (``timestep >= max_timesteps``) with the
real ends of a game (death; Classic: standing in lava; Craftax: beating the final
boss). This adapter splits them: *terminated* is Craftax's own terminal test evaluated
with the time limit taken out (the state's ``timestep`` set to 0), *truncated* is the
time limit; a death on the last step is a termination, as gymnax reports it. Resets
and the final observation follow gymnax's ``Environment.step``. ``info`` keeps
Craftax's achievement statistics.
"""

from __future__ import annotations

from typing import Any

import jax
from craftax.craftax_env import make_craftax_env_from_name
from gymnax.environments import spaces
from gymnax.environments.environment import Environment

ENV_NAMES = (
    "Craftax-Classic-Symbolic-v1",
    "Craftax-Classic-Pixels-v1",
    "Craftax-Symbolic-v1",
    "Craftax-Pixels-v1",
)


class CraftaxEnv(Environment):
    """A Craftax env (auto-resetting or not: its ``step_env``/``reset_env`` are used)
    following the contract."""

    def __init__(self, env: Any):
        for method in ("step_env", "reset_env", "is_terminal", "default_params"):
            if not hasattr(env, method):
                raise ValueError(f"{type(env).__name__} is not a Craftax env: no {method}")
        self.craftax_env = env

    @property
    def default_params(self) -> Any:
        return self.craftax_env.default_params

    def reset_env(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        return self.craftax_env.reset_env(key, params)

    def step_env(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, dict[str, Any]]:
        obs, state, reward, _done, info = self.craftax_env.step_env(key, state, action, params)
        terminated = self.craftax_env.is_terminal(state.replace(timestep=0), params)
        return obs, state, reward, terminated, info

    def is_truncated(self, state: Any, params: Any) -> jax.Array:
        return state.timestep >= params.max_timesteps

    def episode_limit(self, params: Any) -> int:
        """The time limit (``max_timesteps``)."""
        return int(params.max_timesteps)

    def action_space(self, params: Any = None) -> spaces.Discrete:
        # Craftax has its own space classes: gymnax's equivalent
        return spaces.Discrete(int(self.craftax_env.action_space(params).n))

    def observation_space(self, params: Any) -> spaces.Box:
        space = self.craftax_env.observation_space(params)
        return spaces.Box(space.low, space.high, tuple(space.shape), space.dtype)

    @property
    def name(self) -> str:
        return f"craftax:{self.craftax_env.name}"

    @property
    def num_actions(self) -> int:
        return self.craftax_env.num_actions


def env_names() -> tuple[str, ...]:
    return ENV_NAMES


def make(name: str) -> tuple[CraftaxEnv, Any]:
    return adapt(make_craftax_env_from_name(name, auto_reset=False))


def adapt(env: Any) -> tuple[CraftaxEnv, Any]:
    adapted = CraftaxEnv(env)
    return adapted, adapted.default_params
