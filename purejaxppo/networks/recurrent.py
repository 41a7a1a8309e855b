"""The recurrent networks, ``"gru"`` and ``"lstm"``: an embedding layer, a recurrent
cell scanned over time that resets at every episode start, then separate actor and
critic MLP heads on its output (the layout of PureJaxRL's ``ppo_rnn.py``)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.networks.distributions import PolicyParams
from purejaxppo.networks.init import orthogonal_init
from purejaxppo.networks.mlp import ACTIVATION_FNS, actor_critic_heads, flatten_observation
from purejaxppo.networks.protocol import reset_carry

CELLS = ("gru", "lstm")


class _ResettingCell(nn.Module):
    """One step: reset the carry to zeros where the episode starts, then the cell."""

    cell: str
    hidden_size: int

    @nn.compact
    def __call__(self, carry: Any, inputs: tuple[jax.Array, jax.Array]) -> tuple[Any, jax.Array]:
        x, episode_start = inputs
        carry = reset_carry(episode_start, carry, jax.tree.map(jnp.zeros_like, carry))
        # flax's default recurrent initialiser calls LAPACK's QR, which can deadlock under
        # vmap on few cores (see init.py): the Householder version has its distribution
        recurrent_init = orthogonal_init(1.0)
        if self.cell == "gru":
            cell = nn.GRUCell(self.hidden_size, recurrent_kernel_init=recurrent_init)
        else:
            cell = nn.OptimizedLSTMCell(self.hidden_size, recurrent_kernel_init=recurrent_init)
        return cell(carry, x)


_ScannedCell = nn.scan(
    _ResettingCell,
    variable_broadcast="params",
    split_rngs={"params": False},
    in_axes=0,
    out_axes=0,
)


class RecurrentActorCritic(nn.Module):
    """``obs [T, B, *obs_shape]`` -> flatten -> Dense(``hidden_size``) + activation ->
    ``cell`` (GRU or LSTM, ``hidden_size`` units) over ``T`` -> actor and critic heads.

    The carry is ``[B, hidden_size]`` for a GRU, ``(c, h)`` of that shape for an LSTM,
    zeros at every episode start. The embedding and the cell count as the actor's
    parameters for per-network clipping.
    """

    action_dim: int
    discrete: bool
    obs_shape: Any  # one array's shape, or the leaves' shapes of a structured observation
    cell: str = "gru"
    hidden_size: int = 128
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    nvec: tuple[int, ...] | None = None

    @nn.nowrap
    def initial_carry(self, batch_size: int) -> Any:
        """Zeros: ``[batch_size, hidden_size]`` (GRU) or a pair of them (LSTM's c, h)."""
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
        zeros = jnp.zeros((batch_size, self.hidden_size), jnp.float32)
        return zeros if self.cell == "gru" else (zeros, zeros)

    @nn.compact
    def __call__(
        self, carry: Any, obs: jax.Array, episode_start: jax.Array
    ) -> tuple[Any, PolicyParams, jax.Array]:
        x = flatten_observation(obs, self.obs_shape)
        embed = nn.Dense(
            self.hidden_size, kernel_init=orthogonal_init(float(np.sqrt(2))), name="embedding"
        )
        x = ACTIVATION_FNS[self.activation](embed(x))
        carry, features = _ScannedCell(self.cell, self.hidden_size, name="rnn")(
            carry, (x, episode_start)
        )
        policy, value = actor_critic_heads(self, features)
        return carry, policy, value
