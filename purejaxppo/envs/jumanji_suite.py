"""Jumanji (``"jumanji:<name>"``, ``pip install "purejaxppo[jumanji]"``).

Jumanji's ``TimeStep`` follows dm_env: the last step of an episode has discount 0 when
the episode *terminated* and a non-zero discount when it was *truncated* (its time
limit); this adapter reports exactly that, adds its own limit
``max_steps_in_episode`` (default 10,000, reported as truncation) for envs that have
none, keeps the final observation and resets as gymnax's ``Environment.step`` does.

Observations (Jumanji's NamedTuples) become dicts of their fields; an ``action_mask``
field becomes the contract's mask. Action specs: ``DiscreteArray`` -> Discrete;
``MultiDiscreteArray`` -> :class:`~purejaxppo.envs.MultiDiscrete` with the mask
flattened to one flag per choice, or, when the mask is joint (shape ``nvec``: one flag
per combination, as in Minesweeper), one Discrete over all ``prod(nvec)`` combinations,
whose action is unravelled for the env; ``BoundedArray`` -> Box.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import jumanji
import numpy as np
from flax import struct
from gymnax.environments import spaces
from gymnax.environments.environment import Environment
from jumanji import specs

from purejaxppo.envs.spaces import ACTION_MASK_KEY, MultiDiscrete

DEFAULT_EPISODE_LENGTH = 10_000
MAX_JOINT_ACTIONS = 4096  # a joint mask over more combinations is refused


@struct.dataclass
class JumanjiParams:
    """``max_steps_in_episode``: the time limit this adapter adds, reported as truncation."""

    max_steps_in_episode: int = DEFAULT_EPISODE_LENGTH


@struct.dataclass
class JumanjiState:
    """Jumanji's state, whether its last step was a truncation, the step count."""

    jumanji_state: Any
    truncated: jax.Array
    time: jax.Array


class JumanjiEnv(Environment):
    """A Jumanji env following the contract."""

    def __init__(self, env: Any):
        self.jumanji_env = env
        action = env.action_spec
        mask = getattr(env.observation_spec, ACTION_MASK_KEY, None)
        self.mask_shape = None if mask is None else tuple(mask.shape)
        self.nvec: tuple[int, ...] | None = None  # MultiDiscrete components, as the env has them
        self.joint = False  # MultiDiscrete acted as one Discrete over all combinations
        if isinstance(action, specs.MultiDiscreteArray):
            self.nvec = tuple(int(n) for n in np.asarray(action.num_values).reshape(-1))
            self.joint = self.mask_shape == self.nvec
            if self.joint and int(np.prod(self.nvec)) > MAX_JOINT_ACTIONS:
                raise ValueError(
                    f"jumanji:{type(env).__name__} masks {int(np.prod(self.nvec))} joint "
                    f"actions (nvec={self.nvec}); at most {MAX_JOINT_ACTIONS} are supported"
                )
        elif not isinstance(action, (specs.DiscreteArray, specs.BoundedArray)):
            raise ValueError(
                f"jumanji:{type(env).__name__}'s action spec {type(action).__name__} is not "
                "supported: DiscreteArray, MultiDiscreteArray or BoundedArray"
            )

    @property
    def default_params(self) -> JumanjiParams:
        return JumanjiParams()

    def _observe(self, observation: Any) -> Any:
        obs = dict(observation._asdict()) if hasattr(observation, "_asdict") else observation
        if isinstance(obs, dict) and ACTION_MASK_KEY in obs:
            obs[ACTION_MASK_KEY] = obs[ACTION_MASK_KEY].reshape(-1).astype(bool)
        return obs

    def _env_action(self, action: jax.Array) -> jax.Array:
        if self.joint:
            return jnp.stack(jnp.unravel_index(action, self.nvec)).astype(jnp.int32)
        return action

    def reset_env(self, key: jax.Array, params: JumanjiParams) -> tuple[Any, JumanjiState]:
        jumanji_state, timestep = self.jumanji_env.reset(key)
        state = JumanjiState(jumanji_state, jnp.bool_(False), jnp.int32(0))
        return self._observe(timestep.observation), state

    def step_env(
        self, key: jax.Array, state: JumanjiState, action: jax.Array, params: JumanjiParams
    ) -> tuple[Any, JumanjiState, jax.Array, jax.Array, dict[str, Any]]:
        del key  # Jumanji keeps its randomness in its state
        jumanji_state, timestep = self.jumanji_env.step(
            state.jumanji_state, self._env_action(action)
        )
        last = timestep.last()
        ended_by_env = last & (timestep.discount == 0)
        truncated = last & (timestep.discount != 0)
        return (
            self._observe(timestep.observation),
            JumanjiState(jumanji_state, truncated, state.time + 1),
            jnp.asarray(timestep.reward, jnp.float32),
            ended_by_env,
            {},
        )

    def is_truncated(self, state: JumanjiState, params: JumanjiParams) -> jax.Array:
        return state.truncated | (state.time >= params.max_steps_in_episode)

    def action_space(self, params: Any = None) -> Any:
        with jax.ensure_compile_time_eval():
            return self._action_space()

    def _action_space(self) -> Any:
        action = self.jumanji_env.action_spec
        if self.joint:
            return spaces.Discrete(int(np.prod(self.nvec)))
        if self.nvec is not None:
            return MultiDiscrete(self.nvec)
        if isinstance(action, specs.DiscreteArray):
            return spaces.Discrete(int(action.num_values))
        return spaces.Box(
            np.broadcast_to(action.minimum, action.shape),
            np.broadcast_to(action.maximum, action.shape),
            tuple(action.shape),
            jnp.float32,
        )

    @property
    def name(self) -> str:
        return f"jumanji:{type(self.jumanji_env).__name__}"


def env_names() -> tuple[str, ...]:
    return tuple(jumanji.registered_environments())


def make(name: str) -> tuple[JumanjiEnv, JumanjiParams]:
    # Jumanji builds its specs with jnp ops: inside a trace (make_train called in a jitted
    # function) they must still be concrete
    with jax.ensure_compile_time_eval():
        return adapt(jumanji.make(name))


def adapt(env: Any) -> tuple[JumanjiEnv, JumanjiParams]:
    with jax.ensure_compile_time_eval():
        adapted = JumanjiEnv(env)
    return adapted, adapted.default_params
