"""The ``"cnn"`` network, for image-like observations ``[H, W, C]`` (MinAtar's 10x10xC
grids): a convolutional torso as in the MinAtar paper (Young & Tian 2019: one 3x3
convolution with 16 filters, stride 1, ReLU), shared by separate actor and critic MLP
heads. Feed-forward: its carry is empty."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.networks.distributions import PolicyParams
from purejaxppo.networks.init import orthogonal_init
from purejaxppo.networks.mlp import actor_critic_heads


class PatchConv(nn.Module):
    """A VALID, stride-1 convolution (flax ``nn.Conv``'s cross-correlation, the same
    ``kernel`` ``[k, k, C, F]`` and ``bias`` ``[F]`` parameters) computed as one matmul of
    the ``k * k`` shifted views of the input, concatenated on the channel axis, with the
    kernel reshaped to ``[k * k * C, F]``. On CPU, XLA's convolution of MinAtar-sized
    batches (and its gradients) ran the whole CNN training program many times slower
    than this matmul does; the result is the same up to float rounding (tested)."""

    features: int
    kernel_size: int
    kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[*batch, H, W, C]`` -> ``[*batch, H - k + 1, W - k + 1, F]``."""
        k, channels = self.kernel_size, x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, k, channels, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        height, width = x.shape[-3] - k + 1, x.shape[-2] - k + 1
        patches = jnp.concatenate(
            [x[..., i : i + height, j : j + width, :] for i in range(k) for j in range(k)],
            axis=-1,
        )
        return patches @ kernel.reshape(k * k * channels, self.features) + bias


class CNNActorCritic(nn.Module):
    """:class:`PatchConv` (``conv_features`` filters of ``kernel_size`` x ``kernel_size``,
    VALID) + ReLU, flattened,
    then :func:`actor_critic_heads`. Observations ``[*batch, H, W, C]`` in any dtype (cast
    to float32); the torso's parameters count as the actor's for per-network clipping."""

    action_dim: int
    discrete: bool
    obs_shape: tuple[int, ...]
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    conv_features: int = 16
    kernel_size: int = 3

    @nn.nowrap
    def initial_carry(self, batch_size: int) -> tuple[()]:
        """Feed-forward: no carry."""
        del batch_size
        return ()

    @nn.compact
    def __call__(
        self, carry: tuple[()], obs: jax.Array, episode_start: jax.Array
    ) -> tuple[tuple[()], PolicyParams, jax.Array]:
        del episode_start
        x = jnp.asarray(obs).astype(jnp.float32)
        conv = PatchConv(
            self.conv_features,
            self.kernel_size,
            kernel_init=orthogonal_init(float(np.sqrt(2))),
            name="torso",
        )
        x = nn.relu(conv(x))
        features = x.reshape(*x.shape[:-3], -1)
        policy, value = actor_critic_heads(self, features)
        return carry, policy, value


def check_image_shape(obs_shape: tuple[int, ...], kernel_size: int = 3) -> None:
    """``ValueError`` unless ``obs_shape`` is ``[H, W, C]`` with ``H, W >= kernel_size``."""
    if len(obs_shape) != 3 or min(obs_shape[:2]) < kernel_size:
        raise ValueError(
            f"network='cnn' needs image observations [H, W, C] with H, W >= {kernel_size}; "
            f"this env's observations have shape {tuple(obs_shape)}: use network='mlp'"
        )
