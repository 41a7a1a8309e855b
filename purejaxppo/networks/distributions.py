"""Action distributions, kept apart from the networks that parameterise them.

A network outputs :class:`PolicyParams`; :func:`make_distribution` rebuilds pi from them
(the rollout stores them, so the collecting policy can be rebuilt exactly for the
analytic KL between old and new policies).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

# The logit an illegal action gets: finite, so that entropies and KLs stay finite (with
# -inf, 0 * log 0 = 0 * -inf is NaN), and so negative that exp() of it is exactly 0.
MASKED_LOGIT = -1e9


@struct.dataclass
class PolicyParams:
    """The parameters of pi(. | s), shape ``[*batch, A]``.

    A Categorical has ``log_std = None``; a diagonal Gaussian stores its mean in
    ``logits_or_mean`` and its log standard deviation in ``log_std``: ``[*batch, A]``
    per sample, or ``[A]`` when it does not depend on the state (broadcast over the batch).
    ``nvec`` (static) makes the logits those of a MultiDiscrete space: ``A = sum(nvec)``,
    one Categorical per component over its slice of the logits. Stored with a rollout,
    they rebuild the collecting policy exactly (for the analytic KL between old and new
    policies).
    """

    logits_or_mean: jax.Array
    log_std: jax.Array | None = None
    nvec: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)


def _component_logits(params: PolicyParams) -> jax.Array:
    """MultiDiscrete logits ``[*batch, sum(nvec)]`` as ``[*batch, K, max(nvec)]``, each
    component padded with :data:`MASKED_LOGIT` (probability exactly 0)."""
    logits, nvec = params.logits_or_mean, params.nvec
    width = max(nvec)
    bounds = np.cumsum((0, *nvec))
    parts = [
        jnp.pad(
            logits[..., start:stop],
            [(0, 0)] * (logits.ndim - 1) + [(0, width - (stop - start))],
            constant_values=MASKED_LOGIT,
        )
        for start, stop in itertools.pairwise(bounds)
    ]
    return jnp.stack(parts, axis=-2)


def make_distribution(params: PolicyParams) -> distrax.Distribution:
    """Categorical(logits) when ``log_std is None`` (with ``nvec``: independent
    Categoricals, log-probabilities, entropies and KLs summed over the components),
    else diagonal Gaussian(mean, exp(log_std))."""
    if params.log_std is None:
        if params.nvec is not None:
            components = distrax.Categorical(logits=_component_logits(params))
            return distrax.Independent(components, reinterpreted_batch_ndims=1)
        return distrax.Categorical(logits=params.logits_or_mean)
    return distrax.MultivariateNormalDiag(
        loc=params.logits_or_mean, scale_diag=jnp.exp(params.log_std)
    )


def mask_policy(params: PolicyParams, action_mask: jax.Array | None) -> PolicyParams:
    """Illegal actions' logits set to :data:`MASKED_LOGIT` (``action_mask [*batch, A]``,
    true where legal): they are never sampled, and entropy and KL count only legal ones."""
    if action_mask is None:
        return params
    logits = jnp.where(action_mask.astype(bool), params.logits_or_mean, MASKED_LOGIT)
    return params.replace(logits_or_mean=logits)


def distribution_mode(params: PolicyParams) -> jax.Array:
    """The most likely action: argmax of the logits (per component with ``nvec``), or
    the Gaussian's mean."""
    if params.log_std is not None:
        return params.logits_or_mean
    if params.nvec is not None:
        return jnp.argmax(_component_logits(params), axis=-1)
    return jnp.argmax(params.logits_or_mean, axis=-1)


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
    same sample as ``jax.random.categorical``), per component with ``nvec`` (actions
    ``[*batch, K]``); Gaussian: ``mean + exp(log_std) * z`` with z ~ N(0, 1). Drawing the
    noise of a whole rollout at once (:func:`action_noise`) is one random-number call
    instead of one per step.
    """
    if params.log_std is None:
        perturbed = params.replace(logits_or_mean=params.logits_or_mean + noise)
        return distribution_mode(perturbed)
    return params.logits_or_mean + jnp.exp(params.log_std) * noise


def shared_log_std(policy: PolicyParams) -> jax.Array | None:
    """The log-std if it is state-independent (fewer axes than the mean: ``[A]``), else None."""
    if policy.log_std is None or policy.log_std.ndim >= policy.logits_or_mean.ndim:
        return None
    return policy.log_std
