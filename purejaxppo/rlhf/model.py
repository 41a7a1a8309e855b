"""A tiny decoder-only transformer with a language-model head and a scalar head.

The policy uses both heads (next-token logits, and the value of the prefix so far); the
frozen reference is the same model after supervised pre-training; the reward model is
the same architecture whose scalar head, read at a response's last token, is the score.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class LMOutput(NamedTuple):
    """``logits`` ``[B, T, V]``: log-probabilities (unnormalised) of the token after each
    position; ``scalar`` ``[B, T]``: the scalar head at each position (a value, or a
    reward model's score)."""

    logits: jax.Array
    scalar: jax.Array


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention, then a 4x MLP."""

    width: int
    heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        causal = nn.make_causal_mask(jnp.ones(x.shape[:2], bool))
        attend = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.width)
        h = nn.LayerNorm()(x)
        x = x + attend(h, h, mask=causal)
        h = nn.LayerNorm()(x)
        h = nn.Dense(4 * self.width)(h)
        return x + nn.Dense(self.width)(nn.gelu(h))


class TransformerLM(nn.Module):
    """Token and learned position embeddings, ``layers`` blocks, a final LayerNorm, then
    the LM head (``[V]`` logits) and a scalar head, on token ids ``[B, T]`` with
    ``T <= max_length``."""

    vocab_size: int
    max_length: int
    width: int = 64
    heads: int = 4
    layers: int = 2

    @nn.compact
    def __call__(self, tokens: jax.Array) -> LMOutput:
        length = tokens.shape[-1]
        x = nn.Embed(self.vocab_size, self.width)(tokens)
        positions = self.param(
            "positions", nn.initializers.normal(0.02), (self.max_length, self.width)
        )
        x = x + positions[:length]
        for _ in range(self.layers):
            x = Block(self.width, self.heads)(x)
        x = nn.LayerNorm()(x)
        logits = nn.Dense(self.vocab_size, name="lm_head")(x)
        scalar = nn.Dense(1, name="scalar_head", kernel_init=nn.initializers.zeros)(x)[..., 0]
        return LMOutput(logits, scalar)
