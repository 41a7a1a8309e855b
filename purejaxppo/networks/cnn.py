"""The ``"cnn"`` network, for image-like observations ``[H, W, C]`` (MinAtar's 10x10xC
grids): a convolutional torso as in the MinAtar paper (Young & Tian 2019: one 3x3
convolution with 16 filters, stride 1, ReLU), shared by separate actor and critic MLP
heads. Feed-forward: its carry is empty."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.networks.distributions import PolicyParams
from purejaxppo.networks.init import orthogonal_init
from purejaxppo.networks.mlp import actor_critic_heads, flatten_observation, is_structured


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
    to float32); the torso's parameters count as the actor's for per-network clipping.
    A structured observation (``obs_shape``: its leaves' shapes) has exactly one image
    leaf ``[H, W, C]``, which goes through the torso; every other leaf is flattened and
    concatenated to the torso's features."""

    action_dim: int
    discrete: bool
    obs_shape: Any
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    conv_features: int = 16
    kernel_size: int = 3
    nvec: tuple[int, ...] | None = None

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
        image, others = _split_image(obs, self.obs_shape)
        x = jnp.asarray(image).astype(jnp.float32)
        conv = PatchConv(
            self.conv_features,
            self.kernel_size,
            kernel_init=orthogonal_init(float(np.sqrt(2))),
            name="torso",
        )
        x = nn.relu(conv(x))
        features = jnp.concatenate(
            [x.reshape(*x.shape[:-3], -1)]
            + [flatten_observation(leaf, shape) for leaf, shape in others],
            axis=-1,
        )
        policy, value = actor_critic_heads(self, features)
        return carry, policy, value


def _image_leaf(obs_shape: Any) -> int | None:
    """Index of the only ``[H, W, C]`` leaf of a structured layout, else None."""
    ranks = [len(shape) for shape in obs_shape]
    return ranks.index(3) if ranks.count(3) == 1 else None


def _split_image(obs: Any, obs_shape: Any) -> tuple[jax.Array, list[tuple[jax.Array, Any]]]:
    """``(image [*batch, H, W, C], [(other leaf, its shape), ...])``."""
    if not is_structured(obs_shape):
        return obs, []
    leaves, index = jax.tree.leaves(obs), _image_leaf(obs_shape)
    others = [
        (leaf, shape)
        for i, (leaf, shape) in enumerate(zip(leaves, obs_shape, strict=True))
        if i != index
    ]
    return leaves[index], others


def check_image_shape(obs_shape: Any, kernel_size: int = 3) -> None:
    """``ValueError`` unless ``obs_shape`` is ``[H, W, C]`` with ``H, W >= kernel_size``
    (for a structured layout: exactly one leaf is)."""
    image = obs_shape
    if is_structured(obs_shape):
        index = _image_leaf(obs_shape)
        image = obs_shape[index] if index is not None else ()
    if len(image) != 3 or min(image[:2]) < kernel_size:
        raise ValueError(
            f"network='cnn' needs image observations [H, W, C] with H, W >= {kernel_size} "
            f"(structured ones: exactly one such part); this env's observations have "
            f"shape {tuple(obs_shape)}: use network='mlp'"
        )
