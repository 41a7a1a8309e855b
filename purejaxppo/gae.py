"""Generalised Advantage Estimation (Schulman et al. 2016) that keeps termination and
truncation apart.

A time limit is not a terminal state: the return after a truncated step continues in
the true next state, so its value must be bootstrapped; only a real termination makes
the future worth zero. Either way the lambda-trace must not run on into the next
episode, whose first step the auto-resetting env has already put at ``t + 1``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def compute_gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminations: jax.Array,
    dones: jax.Array,
    gamma: float | jax.Array,
    gae_lambda: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets, time-major.

    All inputs have shape ``[T, ...]`` (e.g. ``[T, num_envs]``)::

        delta_t = r_t + gamma * (1 - terminations_t) * next_values_t - values_t
        A_t     = delta_t + gamma * lambda * (1 - dones_t) * A_{t+1},   A_T = 0
        targets = A + values

    Args:
      rewards: ``r_t``.
      values: ``V(s_t)``.
      next_values: ``V(s_{t+1})`` of the *true* next state: on the step that ends an
        episode, the value of its final observation, not of the reset observation.
      terminations: true where ``s_{t+1}`` is terminal (no bootstrap).
      dones: true where the episode ended for any reason (terminated or truncated);
        stops the trace from crossing into the next episode.
      gamma: discount. gae_lambda: trace decay; 0 gives the TD error, 1 the Monte
        Carlo return (bootstrapped at truncation and at the rollout end) minus V.

    Returns:
      ``(advantages, targets)``, each shaped like ``rewards``.
    """
    chex.assert_equal_shape([rewards, values, next_values, terminations, dones])
    not_terminal = 1.0 - terminations.astype(jnp.float32)
    not_done = 1.0 - dones.astype(jnp.float32)
    deltas = rewards + gamma * not_terminal * next_values - values
    trace_decay = gamma * gae_lambda * not_done

    def backward_step(next_advantage: jax.Array, step: tuple[jax.Array, jax.Array]):
        delta, decay = step
        advantage = delta + decay * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward_step, jnp.zeros_like(deltas[0]), (deltas, trace_decay), reverse=True
    )
    return advantages, advantages + values
