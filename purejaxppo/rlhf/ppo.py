"""Token-level PPO on a language model with a KL leash to the reference.

One update: sample a response to each of ``num_prompts`` prompts (the rollout: each token
is an action, the prefix so far the state), score it with the reward model, and build the
per-token rewards (:func:`per_token_rewards`)::

    r_t = -beta * (log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t))   every token
          + RM(x, y) at the response's last token

then GAE over the tokens (the library's :func:`~purejaxppo.gae.compute_gae`, gamma = 1,
lambda = 0.95 by default, the response's last token terminal), and ``update_epochs`` x
``num_minibatches`` steps of the library's clipped objective and value loss
(:mod:`purejaxppo.losses`) on whole responses, masked after EOS. With ``kl_target`` beta
adapts after every update by the PPO paper's rule (:func:`purejaxppo.update.adapt_kl_beta`):
the library's own, and a rule whose factor-2 steps react within a few updates, where the
proportional controller of Ziegler et al. (2019) is smoother but slower to start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from purejaxppo.gae import compute_gae
from purejaxppo.losses import (
    approx_kl,
    clip_fraction,
    normalize_advantages,
    policy_loss,
    value_loss,
)
from purejaxppo.rlhf.config import RLHFConfig, RLHFHyperparams
from purejaxppo.rlhf.language import (
    EOS,
    last_token_index,
    response_mask,
    sample_prompts,
    true_quality,
)
from purejaxppo.rlhf.reference import make_model, response_logits, sample_responses, token_log_probs
from purejaxppo.rlhf.reward_model import score
from purejaxppo.update import (
    adapt_kl_beta,
    make_optimizer,
    masked_mean,
    minibatch_indices,
    set_optimizer_hyperparams,
)


class Rollout(NamedTuple):
    """One update's responses and what PPO needs of them: ``prompt`` ``[B, P]``,
    ``response`` / ``mask`` / ``log_prob`` / ``value`` / ``advantage`` / ``target``
    ``[B, L]`` (``mask``: the tokens up to and including EOS)."""

    prompt: jax.Array
    response: jax.Array
    mask: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


class RLHFState(NamedTuple):
    """What PPO carries from one update to the next."""

    train_state: TrainState
    beta: jax.Array
    rng: jax.Array


def exact_kl(logits: jax.Array, reference_logits: jax.Array) -> jax.Array:
    """``KL(pi || pi_ref)`` of each position's next-token distributions, summed over the
    vocabulary exactly: ``[..., V]`` -> ``[...]``."""
    log_p = jax.nn.log_softmax(logits)
    log_q = jax.nn.log_softmax(reference_logits)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def per_token_rewards(
    score: jax.Array, log_ratio: jax.Array, mask: jax.Array, beta: jax.Array
) -> jax.Array:
    """``r_t = -beta * log_ratio_t`` on the response's tokens (``mask``), plus ``score``
    at its last one; 0 after it. ``score`` ``[B]``, ``log_ratio`` (log pi - log pi_ref of
    the sampled tokens) and ``mask`` ``[B, L]`` -> ``[B, L]``."""
    last = mask.sum(axis=1) - 1
    at_last = jnp.arange(mask.shape[1])[None, :] == last[:, None]
    return jnp.where(mask, -beta * log_ratio, 0.0) + jnp.where(at_last, score[:, None], 0.0)


def token_advantages(
    rewards: jax.Array,
    values: jax.Array,
    mask: jax.Array,
    gamma: float | jax.Array,
    gae_lambda: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """GAE over the tokens of each response (``[B, L]`` in and out), by the library's
    :func:`~purejaxppo.gae.compute_gae` run time-major over the token axis: the response's
    last token is terminal (the episode ends: no bootstrap), and the positions after it
    (padding) have zero reward and value, so their advantages are zero."""
    values = jnp.where(mask, values, 0.0)
    next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1)
    last = mask.sum(axis=1) - 1
    ended = jnp.arange(mask.shape[1])[None, :] >= last[:, None]  # terminal, and padding
    advantages, targets = compute_gae(
        rewards=rewards.T,
        values=values.T,
        next_values=jnp.where(ended, 0.0, next_values).T,
        terminations=ended.T,
        dones=ended.T,
        gamma=gamma,
        gae_lambda=gae_lambda,
    )
    return advantages.T, targets.T


def make_rlhf_train(
    config: RLHFConfig, reference_params: Any, reward_params: Any
) -> Callable[..., tuple[RLHFState, dict[str, jax.Array]]]:
    """``train(rng, hyperparams=None) -> (state, metrics)``: ``num_updates`` PPO updates
    starting from the reference policy (and a zero value head), against the frozen
    reward model. ``metrics``: ``[num_updates]`` arrays. Pure: jit it, ``vmap`` it over
    seeds and over :class:`RLHFHyperparams` (e.g. a sweep of beta)."""
    model = make_model(config)
    optimizer = make_optimizer()
    length = config.response_length

    def init(rng: jax.Array, hyperparams: RLHFHyperparams) -> RLHFState:
        train_state = TrainState.create(apply_fn=model.apply, params=reference_params, tx=optimizer)
        train_state = set_optimizer_hyperparams(
            train_state, hyperparams.lr, jnp.float32(config.max_grad_norm)
        )
        return RLHFState(train_state, hyperparams.beta, rng)

    def rollout(state: RLHFState, key: jax.Array) -> tuple[Rollout, dict[str, jax.Array]]:
        prompt_key, sample_key = jax.random.split(key)
        params = state.train_state.params
        prompt = sample_prompts(prompt_key, config.num_prompts)
        response = sample_responses(model, params, prompt, sample_key, length, config.temperature)
        mask = response_mask(response)
        logits, values = response_logits(model, params, prompt, response)
        reference_logits, _ = response_logits(model, reference_params, prompt, response)
        log_prob = token_log_probs(logits, response)
        log_ratio = log_prob - token_log_probs(reference_logits, response)
        reward_score = score(model, reward_params, prompt, response)
        rewards = per_token_rewards(reward_score, log_ratio, mask, state.beta)
        advantages, targets = token_advantages(
            rewards, values, mask, config.gamma, config.gae_lambda
        )
        kl_to_reference = jnp.sum(jnp.where(mask, exact_kl(logits, reference_logits), 0.0), 1)
        data = Rollout(prompt, response, mask, log_prob, values, advantages, targets)
        metrics = {
            "score": reward_score.mean(),
            "true_quality": true_quality(prompt, response).mean(),
            "kl_to_reference": kl_to_reference.mean(),
            "sampled_kl_to_reference": jnp.sum(jnp.where(mask, log_ratio, 0.0), 1).mean(),
            "response_length": (last_token_index(response) + 1).mean(dtype=jnp.float32),
            "ended_with_eos": jnp.mean(jnp.any(response == EOS, axis=1)),
        }
        return data, metrics

    def loss_fn(params: Any, batch: Rollout, clip_eps: jax.Array):
        logits, values = response_logits(model, params, batch.prompt, batch.response)
        log_ratio = token_log_probs(logits, batch.response) - batch.log_prob
        mask = batch.mask
        advantages = batch.advantage
        if config.normalize_advantages:
            advantages = normalize_advantages(advantages, where=mask)
        no_kl = jnp.zeros_like(log_ratio)  # the KL is in the reward, not the objective
        actor = policy_loss(
            config.objective, log_ratio, advantages, no_kl, clip_eps, 0.0, where=mask
        )
        critic = value_loss(values, batch.value, batch.target, clip_eps, True, where=mask)
        total = actor + config.vf_coef * critic
        return total, (actor, critic, jax.lax.stop_gradient(log_ratio))

    def learn(state: RLHFState, data: Rollout, key: jax.Array, clip_eps: jax.Array):
        def minibatch_step(train_state: TrainState, indices: jax.Array):
            batch = jax.tree.map(lambda x: x[indices], data)
            grads, (actor, critic, log_ratio) = jax.grad(loss_fn, has_aux=True)(
                train_state.params, batch, clip_eps
            )
            step = (actor, critic, log_ratio, batch.mask, optax.tree.norm(grads))
            return train_state.apply_gradients(grads=grads), step

        def epoch(train_state: TrainState, epoch_key: jax.Array):
            indices = minibatch_indices(epoch_key, config.num_prompts, config.num_minibatches)
            return jax.lax.scan(minibatch_step, train_state, indices)

        keys = jax.random.split(key, config.update_epochs)
        train_state, steps = jax.lax.scan(epoch, state.train_state, keys)
        actor, critic, log_ratio, mask, grad_norm = steps
        ratio = jnp.exp(log_ratio)
        metrics = {
            "policy_loss": actor.mean(),
            "value_loss": critic.mean(),
            "grad_norm": grad_norm.mean(),
            "clip_fraction": clip_fraction(log_ratio, clip_eps, where=mask),
            "approx_kl": approx_kl(log_ratio, where=mask),
            "ratio_mean": jnp.mean(ratio, where=mask),
            "ratio_std": jnp.std(ratio, where=mask),
            "ratio_max": jnp.max(ratio, where=mask, initial=-jnp.inf),
        }
        return train_state, metrics

    def update(state: RLHFState, hyperparams: RLHFHyperparams):
        rng, rollout_key, learn_key = jax.random.split(state.rng, 3)
        data, metrics = rollout(state, rollout_key)
        train_state, learn_metrics = learn(state, data, learn_key, hyperparams.clip_eps)
        beta = state.beta
        if config.adaptive_kl:
            beta = adapt_kl_beta(beta, metrics["kl_to_reference"], hyperparams.kl_target)
        metrics = {**metrics, **learn_metrics, "beta": state.beta,
                   "advantage_mean": masked_mean(data.advantage, data.mask)}  # fmt: skip
        return RLHFState(train_state, beta, rng), metrics

    def train(
        rng: jax.Array, hyperparams: RLHFHyperparams | None = None
    ) -> tuple[RLHFState, dict[str, jax.Array]]:
        if hyperparams is None:
            hyperparams = config.hyperparams()
        state = init(rng, hyperparams)

        def step(state: RLHFState, _: None):
            return update(state, hyperparams)

        return jax.lax.scan(step, state, None, length=config.num_updates)

    return train
