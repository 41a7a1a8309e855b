"""PPO losses and diagnostics: small pure functions over a minibatch ``[B]``.

Sign convention: every function returns a loss to *minimise*.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from purejaxppo.config import PPOHyperparams


class Batch(NamedTuple):
    """Training data, every leaf with leading axis ``[B]`` (or ``[T, N]`` before flattening).

    ``log_prob`` and ``value`` are from the policy that collected the data;
    ``advantage`` and ``target`` come from :func:`purejaxppo.compute_gae`.
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


class LossInfo(NamedTuple):
    """Scalars describing one gradient step (averaged over an update in the metrics)."""

    total_loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_fraction: jax.Array


def normalize_advantages(advantages: jax.Array, eps: float = 1e-8) -> jax.Array:
    """``(A - mean(A)) / (std(A) + eps)`` over the minibatch ``[B]``."""
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def clipped_surrogate_loss(
    log_ratio: jax.Array, advantages: jax.Array, clip_eps: float | jax.Array
) -> jax.Array:
    """``-E[min(r A, clip(r, 1 - eps, 1 + eps) A)]`` with ``r = exp(log_ratio)``; ``[B] -> []``."""
    chex.assert_equal_shape([log_ratio, advantages])
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -jnp.mean(jnp.minimum(unclipped, clipped))


def value_loss(
    values: jax.Array,
    old_values: jax.Array,
    targets: jax.Array,
    clip_eps: float | jax.Array,
    clip: bool = True,
) -> jax.Array:
    """``0.5 E[(V - target)^2]``, or with ``clip`` the pessimistic clipped form::

    0.5 E[max((V - target)^2, (V_old + clip(V - V_old, -eps, eps) - target)^2)]
    """
    chex.assert_equal_shape([values, old_values, targets])
    squared_error = jnp.square(values - targets)
    if clip:
        clipped_values = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
        squared_error = jnp.maximum(squared_error, jnp.square(clipped_values - targets))
    return 0.5 * jnp.mean(squared_error)


def approx_kl(log_ratio: jax.Array) -> jax.Array:
    """``E[(r - 1) - log r]``: a low-variance, non-negative estimator of KL(pi_old || pi)."""
    return jnp.mean(jnp.expm1(log_ratio) - log_ratio)


def clip_fraction(log_ratio: jax.Array, clip_eps: float | jax.Array) -> jax.Array:
    """Fraction of samples whose ratio is outside ``[1 - eps, 1 + eps]``."""
    return jnp.mean((jnp.abs(jnp.exp(log_ratio) - 1.0) > clip_eps).astype(jnp.float32))


def ppo_loss(
    params: Any,
    apply_fn: Callable[..., Any],
    batch: Batch,
    hyperparams: PPOHyperparams,
    normalize_advantages_: bool = True,
    clip_value_loss: bool = True,
) -> tuple[jax.Array, LossInfo]:
    """``L = L_clip + vf_coef * L_value - ent_coef * H[pi]`` on one minibatch ``[B]``."""
    pi, values = apply_fn(params, batch.obs)
    log_ratio = pi.log_prob(batch.action) - batch.log_prob
    advantages = batch.advantage
    if normalize_advantages_:
        advantages = normalize_advantages(advantages)

    policy_loss = clipped_surrogate_loss(log_ratio, advantages, hyperparams.clip_eps)
    critic_loss = value_loss(
        values, batch.value, batch.target, hyperparams.clip_eps, clip=clip_value_loss
    )
    entropy = jnp.mean(pi.entropy())
    total = policy_loss + hyperparams.vf_coef * critic_loss - hyperparams.ent_coef * entropy
    log_ratio = jax.lax.stop_gradient(log_ratio)
    return total, LossInfo(
        total_loss=total,
        policy_loss=policy_loss,
        value_loss=critic_loss,
        entropy=entropy,
        approx_kl=approx_kl(log_ratio),
        clip_fraction=clip_fraction(log_ratio, hyperparams.clip_eps),
    )
