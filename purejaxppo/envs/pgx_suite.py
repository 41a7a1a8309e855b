"""pgx single-player games (``"pgx:<name>"``, ``pip install "purejaxppo[pgx]"``):
``2048`` and pgx's MinAtar ports.

Observations are dicts ``{"observation": state.observation, "action_mask":
state.legal_action_mask}``: the trainer masks illegal actions out of the policy
(:mod:`purejaxppo.envs.spaces`). *terminated* is pgx's ``terminated``; *truncated* is
pgx's ``truncated`` or reaching ``max_steps_in_episode`` (default 10,000 steps), a
limit this adapter adds so that no episode runs forever (2048 has none of its own).
Resets and the final observation follow gymnax's ``Environment.step``. Games of two
or more players are refused: PPO here trains a single agent.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import pgx
from flax import struct
from gymnax.environments import spaces
from gymnax.environments.environment import Environment

DEFAULT_EPISODE_LENGTH = 10_000


@struct.dataclass
class PgxParams:
    """``max_steps_in_episode``: the time limit this adapter adds, reported as truncation."""

    max_steps_in_episode: int = DEFAULT_EPISODE_LENGTH


@struct.dataclass
class PgxState:
    pgx_state: Any
    time: jax.Array


class PgxEnv(Environment):
    """A single-player pgx env following the contract."""

    def __init__(self, env: Any):
        if env.num_players != 1:
            raise ValueError(
                f"pgx:{env.id} is a game of {env.num_players} players; purejaxppo trains a "
                "single agent: use a single-player game (2048, minatar-*)"
            )
        self.pgx_env = env

    @property
    def default_params(self) -> PgxParams:
        return PgxParams()

    def _observe(self, pgx_state: Any) -> dict[str, jax.Array]:
        return {"observation": pgx_state.observation, "action_mask": pgx_state.legal_action_mask}

    def reset_env(self, key: jax.Array, params: PgxParams) -> tuple[dict, PgxState]:
        pgx_state = self.pgx_env.init(key)
        return self._observe(pgx_state), PgxState(pgx_state, jnp.int32(0))

    def step_env(
        self, key: jax.Array, state: PgxState, action: jax.Array, params: PgxParams
    ) -> tuple[dict, PgxState, jax.Array, jax.Array, dict[str, Any]]:
        pgx_state = self.pgx_env.step(state.pgx_state, action, key)
        return (
            self._observe(pgx_state),
            PgxState(pgx_state, state.time + 1),
            pgx_state.rewards[0].astype(jnp.float32),
            pgx_state.terminated,
            {},
        )

    def is_truncated(self, state: PgxState, params: PgxParams) -> jax.Array:
        return state.pgx_state.truncated | (state.time >= params.max_steps_in_episode)

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(self.pgx_env.num_actions)

    def observation_space(self, params: Any = None) -> spaces.Dict:
        observation = self.pgx_env.observation_shape
        return spaces.Dict(
            {
                "observation": spaces.Box(-jnp.inf, jnp.inf, observation, jnp.float32),
                "action_mask": spaces.Box(0, 1, (self.pgx_env.num_actions,), jnp.bool_),
            }
        )

    @property
    def name(self) -> str:
        return f"pgx:{self.pgx_env.id}"

    @property
    def num_actions(self) -> int:
        return self.pgx_env.num_actions


def env_names() -> tuple[str, ...]:
    """pgx's games (those of several players are refused by :func:`make`)."""
    return tuple(pgx.available_envs())


def make(name: str) -> tuple[PgxEnv, PgxParams]:
    return adapt(pgx.make(name))


def adapt(env: Any) -> tuple[PgxEnv, PgxParams]:
    adapted = PgxEnv(env)
    return adapted, adapted.default_params
