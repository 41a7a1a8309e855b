"""PPO losses and diagnostics: small pure functions over a minibatch ``[B]``.

Sign convention: functions named ``*_loss`` return a loss to *minimise*;
:func:`clipped_surrogate` is the per-sample objective L^CLIP, to maximise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from purejaxppo.collectives import LOCAL, Collectives
from purejaxppo.config import POLICY_OBJECTIVES
from purejaxppo.networks import PolicyParams, apply_network, make_distribution, shared_log_std


class Batch(NamedTuple):
    """Training data as ``S`` sequences of ``L`` steps: leaves ``[L, S, ...]``.

    A recurrent network trains on whole rollouts (``L = T`` steps of ``S = N`` envs,
    gradients flowing through time); a feed-forward one on single steps (``L = 1``,
    ``S = T * N``). Minibatches split the ``S`` axis. ``carry`` (leaves ``[S, ...]``, ``()``
    when feed-forward) is the network's state before each sequence's first step;
    ``episode_start`` ``[L, S]`` marks the steps where it resets.
    ``policy_params``, ``log_prob`` and ``value`` are from the policy that collected the
    data; ``advantage`` and ``target`` come from :func:`purejaxppo.compute_gae`.
    """

    obs: Any  # an array, or a pytree of them (structured observations)
    action: jax.Array
    policy_params: PolicyParams
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array
    episode_start: jax.Array
    carry: Any = ()

    def samples(self) -> Batch:
        """The per-step fields as one flat ``[L * S]`` batch of samples (``carry`` as it
        is): what the losses average over."""
        return self._replace(
            **{name: flatten_steps(getattr(self, name)) for name in self._fields if name != "carry"}
        )


def flatten_steps(tree: Any) -> Any:
    """Leaves ``[L, S, ...]`` -> ``[L * S, ...]``; a :class:`PolicyParams`' shared
    ``[A]`` log-std (fewer axes than its mean) stays as it is."""
    if isinstance(tree, PolicyParams):
        log_std = tree.log_std
        if log_std is not None and shared_log_std(tree) is None:
            log_std = flatten_steps(log_std)
        return tree.replace(logits_or_mean=flatten_steps(tree.logits_or_mean), log_std=log_std)
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), tree)


class LossCoefficients(NamedTuple):
    """The coefficients one update's loss uses (after any annealing or adaptation).

    ``value_clip_eps``: the clipped value loss's range; None uses ``clip_eps``.
    """

    clip_eps: jax.Array
    vf_coef: jax.Array
    ent_coef: jax.Array
    kl_beta: jax.Array
    value_clip_eps: jax.Array | float | None = None


class LossInfo(NamedTuple):
    """Scalars describing one gradient step, computed before the step is applied.

    ``kl`` is the exact KL(pi_old || pi) of the distributions, ``approx_kl`` the
    sample estimator ``E[(r - 1) - log r]``; ``ratio_*`` describe ``r = pi / pi_old``.
    """

    total_loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    kl: jax.Array
    clip_fraction: jax.Array
    ratio_mean: jax.Array
    ratio_std: jax.Array
    ratio_max: jax.Array


def normalize_advantages(
    advantages: jax.Array,
    eps: float = 1e-8,
    collectives: Collectives = LOCAL,
    where: jax.Array | None = None,
) -> jax.Array:
    """``(A - mean(A)) / (std(A) + eps)`` over the minibatch ``[B]`` (data parallel: the
    mean and std of the whole minibatch, every device's share of it); ``where``: a mask
    shaped like ``advantages``, the statistics are of the samples where it is true."""
    mean = collectives.mean_of(advantages, where)
    std = collectives.std_of(advantages, where)
    return (advantages - mean) / (std + eps)


def clipped_surrogate(
    ratio: jax.Array, advantages: jax.Array, clip_eps: float | jax.Array
) -> jax.Array:
    """Per-sample L^CLIP = ``min(r A, clip(r, 1 - eps, 1 + eps) A)`` (to maximise); ``[B]``.

    Never above the unclipped L^CPI = ``r A``: a pessimistic bound on it.
    """
    chex.assert_equal_shape([ratio, advantages])
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return jnp.minimum(ratio * advantages, clipped_ratio * advantages)


def clipped_surrogate_loss(
    log_ratio: jax.Array,
    advantages: jax.Array,
    clip_eps: float | jax.Array,
    where: jax.Array | None = None,
) -> jax.Array:
    """``-E[min(r A, clip(r, 1 - eps, 1 + eps) A)]`` with ``r = exp(log_ratio)``; ``[B] -> []``
    (``where``: a mask, the mean over the samples where it is true)."""
    return -jnp.mean(clipped_surrogate(jnp.exp(log_ratio), advantages, clip_eps), where=where)


def policy_loss(
    objective: str,
    log_ratio: jax.Array,
    advantages: jax.Array,
    kl: jax.Array,
    clip_eps: float | jax.Array,
    kl_beta: float | jax.Array,
    where: jax.Array | None = None,
) -> jax.Array:
    """The policy objective to minimise, ``[B] -> []`` (``kl`` is per sample, ``[B]``;
    ``where``: a mask, the expectations over the samples where it is true)::

    clip:                 -E[min(r A, clip(r, 1 - eps, 1 + eps) A)]
    kl_penalty, kl_fixed: -E[r A - beta KL(pi_old || pi)]
    unclipped:            -E[r A]
    """
    if objective == "clip":
        return clipped_surrogate_loss(log_ratio, advantages, clip_eps, where)
    surrogate = jnp.exp(log_ratio) * advantages
    if objective in ("kl_penalty", "kl_fixed"):
        return -jnp.mean(surrogate - kl_beta * kl, where=where)
    if objective == "unclipped":
        return -jnp.mean(surrogate, where=where)
    raise ValueError(f"policy_objective must be one of {POLICY_OBJECTIVES}, got {objective!r}")


def value_loss(
    values: jax.Array,
    old_values: jax.Array,
    targets: jax.Array,
    clip_eps: float | jax.Array,
    clip: bool = True,
    where: jax.Array | None = None,
) -> jax.Array:
    """``0.5 E[(V - target)^2]``, or with ``clip`` the pessimistic clipped form::

    0.5 E[max((V - target)^2, (V_old + clip(V - V_old, -eps, eps) - target)^2)]

    ``where``: a mask shaped like ``values``; the mean is over the samples where it is true.
    """
    chex.assert_equal_shape([values, old_values, targets])
    squared_error = jnp.square(values - targets)
    if clip:
        clipped_values = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
        squared_error = jnp.maximum(squared_error, jnp.square(clipped_values - targets))
    return 0.5 * jnp.mean(squared_error, where=where)


def approx_kl(log_ratio: jax.Array, where: jax.Array | None = None) -> jax.Array:
    """``E[(r - 1) - log r]``: a low-variance, non-negative estimator of KL(pi_old || pi).

    ``where``: a mask shaped like ``log_ratio``; the mean is over the samples where it is true.
    """
    return jnp.mean(jnp.expm1(log_ratio) - log_ratio, where=where)


def clip_fraction(
    log_ratio: jax.Array, clip_eps: float | jax.Array, where: jax.Array | None = None
) -> jax.Array:
    """Fraction of samples whose ratio is outside ``[1 - eps, 1 + eps]`` (``where``: a mask)."""
    outside = jnp.abs(jnp.exp(log_ratio) - 1.0) > clip_eps
    return jnp.mean(outside.astype(jnp.float32), where=where)


def ppo_objective_with_diagnostics(
    old_log_probs: jax.Array,
    new_log_probs: jax.Array,
    advantages: jax.Array,
    epsilon: float | jax.Array = 0.2,
) -> dict[str, jax.Array]:
    """The PPO clipped loss and what it says about an update, from log-probabilities ``[B]``.

    Returns ``loss`` (``-E[min(r A, clip(r, 1 - eps, 1 + eps) A)]``, to minimise),
    ``clip_fraction``, ``approx_kl`` (``E[(r - 1) - log r]``), ``ratio_mean`` and
    ``ratio_std``, where ``r = exp(new_log_probs - old_log_probs)``.
    """
    log_ratio = new_log_probs - old_log_probs
    ratio = jnp.exp(log_ratio)
    return {
        "loss": clipped_surrogate_loss(log_ratio, advantages, epsilon),
        "clip_fraction": clip_fraction(log_ratio, epsilon),
        "approx_kl": approx_kl(log_ratio),
        "ratio_mean": jnp.mean(ratio),
        "ratio_std": jnp.std(ratio),
    }


class LossTerms(NamedTuple):
    """One minibatch's loss term by term: what the gradient step needs, with the
    per-sample quantities its diagnostics are computed from.

    ``total_loss``, ``policy_loss``, ``value_loss``, ``entropy``: scalars (or ``[*steps]``
    when stacked over steps). ``log_ratio`` = log(pi / pi_old) and ``kl`` =
    KL(pi_old || pi) per sample, ``[B]`` (``[*steps, B]``), gradient stopped.
    """

    total_loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    log_ratio: jax.Array
    kl: jax.Array


def ppo_loss_terms(
    params: Any,
    apply_fn: Callable[..., Any],
    batch: Batch,
    coefficients: LossCoefficients,
    objective: str = "clip",
    normalize_advantages_: bool = True,
    clip_value_loss: bool = True,
    collectives: Collectives = LOCAL,
) -> tuple[jax.Array, LossTerms]:
    """``L = L_policy + vf_coef * L_value - ent_coef * H[pi]`` on one minibatch, and its
    :class:`LossTerms` (what :func:`ppo_loss` summarises).

    Data parallel (``collectives``): each device's loss is on its share of the minibatch,
    with the advantages normalised by the whole minibatch's statistics; the mean of the
    devices' gradients is then the gradient of the whole minibatch's loss.

    ``apply_fn(params, carry, obs, episode_start) -> (carry, PolicyParams, value)`` is a
    network's ``apply`` (the protocol, :mod:`purejaxppo.networks.protocol`), run over the
    batch's sequences ``[L, S]``; the loss is a mean over its ``L * S`` samples.
    """
    out = apply_network(apply_fn, params, batch.carry, batch.obs, batch.episode_start)
    new_policy, values = flatten_steps(out.policy), flatten_steps(out.value)
    batch = batch.samples()
    pi = make_distribution(new_policy)
    old_pi = make_distribution(batch.policy_params)
    log_ratio = pi.log_prob(batch.action) - batch.log_prob
    kl = old_pi.kl_divergence(pi)
    advantages = batch.advantage
    if normalize_advantages_:
        advantages = normalize_advantages(advantages, collectives=collectives)

    actor_loss = policy_loss(
        objective, log_ratio, advantages, kl, coefficients.clip_eps, coefficients.kl_beta
    )
    value_clip_eps = coefficients.value_clip_eps
    if value_clip_eps is None:
        value_clip_eps = coefficients.clip_eps
    critic_loss = value_loss(values, batch.value, batch.target, value_clip_eps, clip_value_loss)
    entropy = jnp.mean(pi.entropy())
    total = actor_loss + coefficients.vf_coef * critic_loss - coefficients.ent_coef * entropy
    terms = LossTerms(
        total_loss=total,
        policy_loss=actor_loss,
        value_loss=critic_loss,
        entropy=entropy,
        log_ratio=jax.lax.stop_gradient(log_ratio),
        kl=jax.lax.stop_gradient(kl),
    )
    return total, terms


def summarize_loss_terms(
    terms: LossTerms,
    clip_eps: float | jax.Array,
    taken: jax.Array | None = None,
    collectives: Collectives = LOCAL,
) -> LossInfo:
    """The :class:`LossInfo` of one step's terms, or of many steps' stacked terms.

    ``taken`` ``[*steps]`` (default: all) selects the steps to describe: losses are means
    over those steps, the ratio statistics are over all their samples (``ratio_max``:
    the largest). Computing them once for a whole update, rather than in every step,
    keeps them out of the gradient-step loop. Data parallel (``collectives``): each
    device's terms are of its share of every minibatch, equal in size; the losses are
    averaged over devices and the sample statistics taken over all devices' samples.
    """
    if taken is None:
        taken = jnp.ones(terms.total_loss.shape, bool)
    sample_taken = jnp.broadcast_to(taken[..., None], terms.log_ratio.shape)
    ratio = jnp.exp(terms.log_ratio)
    mean_of = collectives.mean_of
    losses = collectives.mean(
        [
            jnp.mean(terms.total_loss, where=taken),
            jnp.mean(terms.policy_loss, where=taken),
            jnp.mean(terms.value_loss, where=taken),
            jnp.mean(terms.entropy, where=taken),
        ]
    )
    return LossInfo(
        *losses,
        approx_kl=mean_of(jnp.expm1(terms.log_ratio) - terms.log_ratio, where=sample_taken),
        kl=mean_of(terms.kl, where=sample_taken),
        clip_fraction=mean_of(
            (jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), where=sample_taken
        ),
        ratio_mean=mean_of(ratio, where=sample_taken),
        ratio_std=collectives.std_of(ratio, where=sample_taken),
        ratio_max=collectives.max_of(ratio, where=sample_taken),
    )


def ppo_loss(
    params: Any,
    apply_fn: Callable[..., Any],
    batch: Batch,
    coefficients: LossCoefficients,
    objective: str = "clip",
    normalize_advantages_: bool = True,
    clip_value_loss: bool = True,
) -> tuple[jax.Array, LossInfo]:
    """:func:`ppo_loss_terms` with its diagnostics: ``(L, LossInfo)`` on one minibatch
    ``[B]``, for ``jax.grad(..., has_aux=True)``."""
    total, terms = ppo_loss_terms(
        params,
        apply_fn,
        batch,
        coefficients,
        objective,
        normalize_advantages_,
        clip_value_loss,
    )
    return total, summarize_loss_terms(terms, coefficients.clip_eps)
