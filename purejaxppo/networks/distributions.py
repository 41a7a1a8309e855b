"""Action distributions, kept apart from the networks that parameterise them.

A network outputs :class:`PolicyParams`; :func:`make_distribution` rebuilds pi from them
(the rollout stores them, so the collecting policy can be rebuilt exactly for the
analytic KL between old and new policies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp


class PolicyParams(NamedTuple):
    """The parameters of pi(. | s), shape ``[*batch, A]``.

    A Categorical has ``log_std = None``; a diagonal Gaussian stores its mean in
    ``logits_or_mean`` and its log standard deviation in ``log_std``: ``[*batch, A]``
    per sample, or ``[A]`` when it does not depend on the state (broadcast over the batch).
    Stored with a rollout, they rebuild the collecting policy exactly (for the analytic
    KL between old and new policies).
    """

    logits_or_mean: jax.Array
    log_std: jax.Array | None = None


def make_distribution(params: PolicyParams) -> distrax.Distribution:
    """Categorical(logits) when ``log_std is None``, else diagonal Gaussian(mean, exp(log_std))."""
    if params.log_std is None:
        return distrax.Categorical(logits=params.logits_or_mean)
    return distrax.MultivariateNormalDiag(
        loc=params.logits_or_mean, scale_diag=jnp.exp(params.log_std)
    )


def action_noise(key: jax.Array, shape: Sequence[int], discrete: bool) -> jax.Array:
    """The noise :func:`sample_with_noise` turns into actions, shape ``[*shape]`` (the last
    axis is the action dimension A): standard Gumbel for a Categorical, standard normal
    for a diagonal Gaussian."""
    if discrete:
        return jax.random.gumbel(key, tuple(shape))
    return jax.random.normal(key, tuple(shape))


def sample_with_noise(params: PolicyParams, noise: jax.Array) -> jax.Array:
    """A sample of pi = ``make_distribution(params)`` from its noise ``[*batch, A]``.

    Categorical: ``argmax(logits + g)`` with g ~ Gumbel(0, 1) (the Gumbel-max trick; the
    same sample as ``jax.random.categorical``); Gaussian: ``mean + exp(log_std) * z`` with
    z ~ N(0, 1). Drawing the noise of a whole rollout at once (:func:`action_noise`) is
    one random-number call instead of one per step.
    """
    if params.log_std is None:
        return jnp.argmax(params.logits_or_mean + noise, axis=-1)
    return params.logits_or_mean + jnp.exp(params.log_std) * noise


def shared_log_std(policy: PolicyParams) -> jax.Array | None:
    """The log-std if it is state-independent (fewer axes than the mean: ``[A]``), else None."""
    if policy.log_std is None or policy.log_std.ndim >= policy.logits_or_mean.ndim:
        return None
    return policy.log_std
