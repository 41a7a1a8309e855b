"""The reward model: pairwise preferences between the reference policy's responses,
labelled with noise from the hidden true quality, and a Bradley-Terry fit to them."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purejaxppo.rlhf.config import RLHFConfig
from purejaxppo.rlhf.language import last_token_index, sample_prompts, true_quality
from purejaxppo.rlhf.model import TransformerLM
from purejaxppo.rlhf.reference import make_model, sample_responses


class Preferences(NamedTuple):
    """``N`` labelled pairs: ``prompt`` ``[N, P]``, the ``chosen`` and ``rejected``
    responses ``[N, L]``, and whether the labeller agreed with the true quality
    (``chosen`` has the higher ``q``; ties count as agreeing)."""

    prompt: jax.Array
    chosen: jax.Array
    rejected: jax.Array
    agrees_with_truth: jax.Array


class RewardModelResult(NamedTuple):
    """The trained reward model and how well it ranks held-out pairs: ``losses``
    ``[steps]``, accuracy against the held-out labels and against the true quality."""

    params: Any
    losses: jax.Array
    held_out_accuracy: jax.Array
    held_out_true_accuracy: jax.Array
    label_agreement: jax.Array


def bradley_terry_loss(chosen_score: jax.Array, rejected_score: jax.Array) -> jax.Array:
    """``-E[log sigmoid(r_chosen - r_rejected)]``: the negative log-likelihood of the
    labels under the Bradley-Terry model ``P(a > b) = sigmoid(r_a - r_b)``; ``[N] -> []``."""
    return jnp.mean(jax.nn.softplus(rejected_score - chosen_score))


def score(model: TransformerLM, params: Any, prompt: jax.Array, response: jax.Array) -> jax.Array:
    """The reward model's scalar head at the response's last token (its EOS, or the last
    position without one): ``[B]``."""
    out = model.apply(params, jnp.concatenate([prompt, response], axis=1))
    last = prompt.shape[1] + last_token_index(response)
    return jnp.take_along_axis(out.scalar, last[:, None], axis=1)[:, 0]


def sample_preferences(
    config: RLHFConfig, reference_params: Any, key: jax.Array, count: int
) -> Preferences:
    """``count`` pairs of the reference policy's responses to the same prompt, labelled
    ``a > b`` with probability ``sigmoid((q_a - q_b) / preference_temperature)``."""
    model = make_model(config)
    prompt_key, a_key, b_key, label_key = jax.random.split(key, 4)
    prompt = sample_prompts(prompt_key, count)
    a = sample_responses(model, reference_params, prompt, a_key, config.response_length)
    b = sample_responses(model, reference_params, prompt, b_key, config.response_length)
    q_a, q_b = true_quality(prompt, a), true_quality(prompt, b)
    prefer_a = jax.random.bernoulli(
        label_key, jax.nn.sigmoid((q_a - q_b) / config.preference_temperature)
    )
    chosen = jnp.where(prefer_a[:, None], a, b)
    rejected = jnp.where(prefer_a[:, None], b, a)
    agrees = jnp.where(prefer_a, q_a >= q_b, q_b >= q_a)
    return Preferences(prompt, chosen, rejected, agrees)


def train_reward_model(
    config: RLHFConfig, reference_params: Any, key: jax.Array
) -> RewardModelResult:
    """Fit a reward model, initialised from the reference LM (its scalar head starts at
    zero), to ``preference_pairs - preference_held_out`` pairs with the Bradley-Terry loss
    (``rm_epochs`` passes of Adam in minibatches of ``rm_batch_size``); measure it on the
    held-out pairs. Jittable (``config`` static)."""
    model = make_model(config)
    data_key, shuffle_key = jax.random.split(key)
    data = sample_preferences(config, reference_params, data_key, config.preference_pairs)
    held = config.preference_held_out
    train = jax.tree.map(lambda x: x[held:], data)
    test = jax.tree.map(lambda x: x[:held], data)
    count = config.preference_pairs - held
    per_epoch = count // config.rm_batch_size
    optimizer = optax.adam(config.rm_lr)

    def loss_fn(params: Any, pairs: Preferences) -> jax.Array:
        chosen = score(model, params, pairs.prompt, pairs.chosen)
        rejected = score(model, params, pairs.prompt, pairs.rejected)
        return bradley_terry_loss(chosen, rejected)

    def step(carry, indices):
        params, opt_state = carry
        pairs = jax.tree.map(lambda x: x[indices], train)
        loss, grads = jax.value_and_grad(loss_fn)(params, pairs)
        updates, opt_state = optimizer.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), loss

    def epoch_indices(epoch_key: jax.Array) -> jax.Array:
        order = jax.random.permutation(epoch_key, count)[: per_epoch * config.rm_batch_size]
        return order.reshape(per_epoch, config.rm_batch_size)

    indices = jax.vmap(epoch_indices)(jax.random.split(shuffle_key, config.rm_epochs))
    indices = indices.reshape(-1, config.rm_batch_size)
    params = reference_params
    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), indices)

    chosen = score(model, params, test.prompt, test.chosen)
    rejected = score(model, params, test.prompt, test.rejected)
    right = chosen > rejected
    true_right = jnp.where(test.agrees_with_truth, right, ~right)
    return RewardModelResult(
        params=params,
        losses=losses,
        held_out_accuracy=jnp.mean(right),
        held_out_true_accuracy=jnp.mean(true_right),
        label_agreement=jnp.mean(test.agrees_with_truth),
    )
