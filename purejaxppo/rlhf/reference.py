"""The reference policy: the language model after supervised pre-training on the
grammar's sentences, and sampling responses from a language model."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from purejaxppo.rlhf.config import RLHFConfig
from purejaxppo.rlhf.language import EOS, PAD, response_mask, sample_sentences
from purejaxppo.rlhf.model import TransformerLM


def make_model(config: RLHFConfig) -> TransformerLM:
    """The transformer every stage uses (policy, reference, reward model)."""
    return TransformerLM(
        vocab_size=config.vocab_size,
        max_length=config.max_length,
        width=config.width,
        heads=config.heads,
        layers=config.layers,
    )


def init_params(config: RLHFConfig, key: jax.Array) -> Any:
    length = config.prompt_length + config.response_length
    return make_model(config).init(key, jnp.zeros((1, length), jnp.int32))


def response_logits(model: TransformerLM, params: Any, prompt: jax.Array, response: jax.Array):
    """The model on ``[prompt; response]`` read where it predicts the response's tokens:
    logits ``[B, L, V]`` and the scalar head ``[B, L]`` at the position *before* each
    response token (the value of the prefix that token is chosen from)."""
    out = model.apply(params, jnp.concatenate([prompt, response], axis=1))
    start = prompt.shape[1] - 1
    end = start + response.shape[1]
    return out.logits[:, start:end], out.scalar[:, start:end]


def token_log_probs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """``log softmax(logits)[token]``: ``[B, L, V]``, ``[B, L]`` -> ``[B, L]``."""
    log_probs = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]


def sft_loss(model: TransformerLM, params: Any, prompt: jax.Array, response: jax.Array):
    """Mean cross-entropy of the response's tokens (up to and including EOS) given the
    prompt and the tokens before them."""
    logits, _ = response_logits(model, params, prompt, response)
    return -jnp.mean(token_log_probs(logits, response), where=response_mask(response))


def pretrain_reference(config: RLHFConfig, key: jax.Array) -> tuple[Any, jax.Array]:
    """Supervised pre-training: ``sft_steps`` Adam steps on fresh batches of sentences.
    Returns ``(params, losses [sft_steps])``. Jittable (``config`` static)."""
    model = make_model(config)
    init_key, data_key = jax.random.split(key)
    params = init_params(config, init_key)
    optimizer = optax.adam(config.sft_lr)

    def step(carry, step_key):
        params, opt_state = carry
        batch = sample_sentences(step_key, config.sft_batch_size, config.response_length)
        loss, grads = jax.value_and_grad(lambda p: sft_loss(model, p, *batch))(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), loss

    keys = jax.random.split(data_key, config.sft_steps)
    (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), keys)
    return params, losses


def sample_responses(
    model: TransformerLM,
    params: Any,
    prompt: jax.Array,
    key: jax.Array,
    response_length: int,
    temperature: float | jax.Array = 1.0,
) -> jax.Array:
    """Sample a response to each prompt ``[B, P]``, token by token: ``[B, L]``, PAD after
    the first EOS. Each step runs the model on the whole (short) sequence so far; with a
    causal mask the logits at earlier positions are those the tokens were sampled from."""
    batch = prompt.shape[0]
    length = prompt.shape[1]
    tokens = jnp.concatenate([prompt, jnp.full((batch, response_length), PAD, jnp.int32)], 1)
    noise = jax.random.gumbel(key, (response_length, batch, model.vocab_size))

    def step(carry, inputs):
        tokens, finished = carry
        t, gumbel = inputs
        logits = model.apply(params, tokens).logits
        logits = jax.lax.dynamic_index_in_dim(logits, length - 1 + t, axis=1, keepdims=False)
        token = jnp.argmax(logits / temperature + gumbel, axis=-1).astype(jnp.int32)
        token = jnp.where(finished, PAD, token)
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, token[:, None], length + t, axis=1)
        return (tokens, finished | (token == EOS)), None

    steps = (jnp.arange(response_length), noise)
    (tokens, _), _ = jax.lax.scan(step, (tokens, jnp.zeros(batch, bool)), steps)
    return tokens[:, length:]
