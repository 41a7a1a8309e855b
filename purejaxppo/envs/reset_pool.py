"""A pool of fresh resets, for envs whose reset costs far more than their step.

gymnax's ``Environment.step`` draws a reset for every env at every step and keeps it only
where the episode ended. For most envs that is cheap; for Craftax, whose reset generates
a whole world, it is 18x the cost of the step itself (2-core CPU, 64 envs). With a pool,
:class:`~purejaxppo.envs.VecEnv` draws only ``K`` fresh resets per step for its ``N``
envs (``PPOConfig.resets_per_step``): they join a first-in first-out ring of ``N`` waiting
resets, and each env whose episode ends takes the oldest one waiting.

Every reset is drawn with its own key, before and apart from anything it is given to, so
as long as the pool does not run dry each new episode starts from a fresh, independent
draw of the env's reset: the same distribution as gymnax's own step. The pool runs dry
only when more episodes end at one step than it holds plus the ``K`` new ones (after
envs that all truncate at the same step, say, before it has refilled); then the extra
envs start from one of this step's new resets that another env also got. Those are
counted in :attr:`ResetPool.shortfall` (the metric ``reset_pool_shortfall``), never
hidden. Craftax's own ``OptimisticResetVecEnvWrapper`` has the same idea without the
pool: it shares a reset whenever more than ``K`` envs end at one step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ResetPool:
    """A ring of ``P`` slots of resets waiting to start an episode.

    ``obs`` / ``state``: leaves ``[P, ...]``, one env's first observation and state per
    slot. ``start``: the slot of the oldest waiting reset; ``count``: how many wait (the
    slots ``start, start + 1, ... (mod P)``). ``shortfall``: in total, how many episodes
    started from a reset another episode also started from (the pool had run dry).
    """

    obs: Any
    state: Any
    start: jax.Array
    count: jax.Array
    shortfall: jax.Array

    @classmethod
    def full(cls, obs: Any, state: Any) -> ResetPool:
        """A pool holding the resets ``obs`` / ``state`` (leaves ``[P, ...]``)."""
        return cls(obs, state, jnp.int32(0), jnp.int32(_size(obs)), jnp.int32(0))

    @property
    def size(self) -> int:
        return _size(self.obs)


def _size(tree: Any) -> int:
    return int(jax.tree.leaves(tree)[0].shape[0])


def take_resets(
    pool: ResetPool, new_obs: Any, new_state: Any, done: jax.Array
) -> tuple[Any, Any, ResetPool]:
    """The resets for the envs where ``done`` ``[N]``, and the pool after they took them.

    The queue is the pool's waiting resets, oldest first, then the ``K`` new ones
    (``new_obs`` / ``new_state``, leaves ``[K, ...]``). The envs that are done take its
    first ``D = sum(done)`` entries in env order; if ``D`` exceeds its length
    ``count + K``, the extra ones take the new resets again, cyclically, and are added
    to ``shortfall``. New resets left over join the pool, as far as it has room.

    Returns ``(reset_obs, reset_state, pool)``, leaves ``[N, ...]``; an env that is not
    done gets an arbitrary entry, for the caller to ignore.
    """
    size, num_new = pool.size, _size(new_obs)
    rank = jnp.cumsum(done.astype(jnp.int32)) - 1  # the i-th env that is done takes entry i
    num_done = rank[-1] + 1
    queued = pool.count + num_new
    entry = jnp.where(rank < queued, rank, pool.count + (rank - queued) % num_new)
    # entries index the pool's ring while < count, then the new resets (after the pool)
    index = jnp.where(entry < pool.count, (pool.start + entry) % size, size + entry - pool.count)

    def take(pooled: jax.Array, new: jax.Array) -> jax.Array:
        return jnp.concatenate([pooled, new])[index]

    reset_obs = jax.tree.map(take, pool.obs, new_obs)
    reset_state = jax.tree.map(take, pool.state, new_state)

    from_pool = jnp.minimum(num_done, pool.count)
    start = (pool.start + from_pool) % size
    count = pool.count - from_pool
    used_new = jnp.clip(num_done - pool.count, 0, num_new)
    left = jnp.arange(num_new) - used_new  # the m-th leftover new reset, or < 0 if taken
    keep = (left >= 0) & (count + left < size)
    slot = jnp.where(keep, (start + count + left) % size, size)  # size: dropped

    def store(pooled: jax.Array, new: jax.Array) -> jax.Array:
        return pooled.at[slot].set(new, mode="drop")

    refilled = ResetPool(
        obs=jax.tree.map(store, pool.obs, new_obs),
        state=jax.tree.map(store, pool.state, new_state),
        start=start,
        count=jnp.minimum(count + num_new - used_new, size).astype(jnp.int32),
        shortfall=pool.shortfall + jnp.maximum(num_done - queued, 0),
    )
    return reset_obs, reset_state, refilled
