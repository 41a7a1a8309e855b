"""Environments this library adds to gymnax's: partially observed variants for testing
memory (recurrent networks)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import spaces
from gymnax.environments.classic_control.cartpole import CartPole


class StatelessCartPole(CartPole):
    """CartPole-v1 with the two velocities removed from the observation, which is
    ``(x, theta)``: a partially observed task (POPGym's StatelessCartPole). The
    velocities must be inferred from successive observations, which a feed-forward
    policy cannot do; dynamics, rewards, termination and the 500-step limit are
    CartPole-v1's."""

    def get_obs(self, state: Any, params: Any = None, key: Any = None) -> jax.Array:
        return jnp.array([state.x, state.theta])

    def observation_space(self, params: Any) -> spaces.Box:
        high = jnp.array([params.x_threshold * 2, params.theta_threshold_radians * 2])
        return spaces.Box(-high, high, (2,), dtype=jnp.float32)

    @property
    def name(self) -> str:
        return "StatelessCartPole-v1"


# Environments this library adds to gymnax's registry, by name -> constructor.
EXTRA_ENVS: dict[str, Any] = {"StatelessCartPole-v1": StatelessCartPole}
# Other names accepted for them (not listed by offline_env_names).
ENV_ALIASES = {"StatelessCartPole": "StatelessCartPole-v1"}  # POPGym's name
