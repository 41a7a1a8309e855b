"""How one agent's arrays combine across the devices that share it (data parallelism).

A data-parallel run splits one agent's ``num_envs`` environments over the devices of a
mesh axis: every device steps its block of envs, computes advantages and gradients on
its own samples, and the few quantities that must be global are reduced across devices
(``jax.lax`` collectives under ``jax.shard_map``). The trainer, the update, the losses
and the env wrapper never name devices: they call a :class:`Collectives` object, which
does nothing on one device (:data:`LOCAL`, the default: the same operations as before
it existed, so single-device results are unchanged) and reduces over its ``axis_name``
in a data-parallel run (:func:`purejaxppo.parallel.make_data_parallel_trainer`).

What is reduced, and how often (per update, never per env step):

- gradients: averaged before clipping and Adam (``mean``), once per minibatch step;
- advantage normalisation: the minibatch's global mean and std (``mean_of``/``std_of``);
- the exact KL that the adaptive penalty and ``target_kl`` read: a global mean;
- observation / return normalisation statistics: merged once per rollout
  (:func:`purejaxppo.envs.vec_env.merge_running_stats`);
- the update's metrics: global means, stds and maxima over all devices' samples.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Collectives:
    """Reductions over ``axis_name`` (a ``shard_map`` mesh axis of ``size`` devices), or
    none at all when ``axis_name`` is None (one device).

    The ``*_of`` methods reduce over samples that are split across the devices: each
    device passes its own samples ``[B_d, ...]`` and gets the statistic of all of them,
    whatever the number each device holds. ``mean`` / ``sum`` / ``max`` combine one value
    per device (e.g. gradients from equally sized minibatches).
    """

    axis_name: str | None = None
    size: int = 1

    def __post_init__(self) -> None:
        if self.axis_name is None and self.size != 1:
            raise ValueError(f"Collectives without an axis_name has size 1, got {self.size}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"Collectives.size must be a positive integer, got {self.size!r}")

    @property
    def distributed(self) -> bool:
        """Whether anything is reduced (a data-parallel run)."""
        return self.axis_name is not None

    def index(self) -> jax.Array:
        """This device's position along the axis (0 on one device)."""
        if not self.distributed:
            return jnp.zeros((), jnp.int32)
        return jax.lax.axis_index(self.axis_name)

    def take_block(self, x: jax.Array, axis: int = 0) -> jax.Array:
        """This device's block of ``x``, whose ``axis`` holds every device's items
        (``size * n``) in device order: ``[..., size * n, ...]`` -> ``[..., n, ...]``.

        How a data-parallel rollout gets the same random draws as a single-device run:
        the draws are made for all envs and each device keeps its own envs' share."""
        if not self.distributed:
            return x
        block = x.shape[axis] // self.size
        return jax.lax.dynamic_slice_in_dim(x, self.index() * block, block, axis)

    def device_key(self, key: jax.Array) -> jax.Array:
        """A key of this device's own (``fold_in`` of its index); ``key`` on one device."""
        if not self.distributed:
            return key
        return jax.random.fold_in(key, self.index())

    def sum(self, tree: Any) -> Any:
        """Sum of every leaf over the devices."""
        if not self.distributed:
            return tree
        return jax.lax.psum(tree, self.axis_name)

    def mean(self, tree: Any) -> Any:
        """Mean of every leaf over the devices (one value per device)."""
        if not self.distributed:
            return tree
        return jax.lax.pmean(tree, self.axis_name)

    def max(self, tree: Any) -> Any:
        """Maximum of every leaf over the devices."""
        if not self.distributed:
            return tree
        return jax.lax.pmax(tree, self.axis_name)

    def mean_of(self, x: jax.Array, where: jax.Array | None = None) -> jax.Array:
        """``jnp.mean(x, where=where)`` over the samples of all devices (NaN if none)."""
        if not self.distributed:
            return jnp.mean(x, where=where)
        mask = jnp.ones(x.shape, bool) if where is None else jnp.broadcast_to(where, x.shape)
        total = self.sum(jnp.sum(x, where=mask))
        count = self.sum(jnp.sum(mask, dtype=jnp.float32))
        return total / count

    def var_of(self, x: jax.Array, where: jax.Array | None = None) -> jax.Array:
        """``jnp.var(x, where=where)`` over the samples of all devices: two passes
        (the global mean, then the mean squared deviation from it), as ``jnp.var``."""
        if not self.distributed:
            return jnp.var(x, where=where)
        mean = self.mean_of(x, where)
        return self.mean_of(jnp.square(x - mean), where)

    def std_of(self, x: jax.Array, where: jax.Array | None = None) -> jax.Array:
        """``jnp.std(x, where=where)`` over the samples of all devices."""
        if not self.distributed:
            return jnp.std(x, where=where)
        return jnp.sqrt(self.var_of(x, where))

    def max_of(self, x: jax.Array, where: jax.Array | None = None) -> jax.Array:
        """``jnp.max(x, where=where, initial=-inf)`` over the samples of all devices."""
        return self.max(jnp.max(x, where=where, initial=-jnp.inf))

    def is_first_device(self) -> jax.Array:
        """True on the axis's first device (in process 0 of a multi-process run), the one
        that reports to the host; True on one device."""
        return self.index() == 0


LOCAL = Collectives()
