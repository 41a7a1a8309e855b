"""Orthogonal initialisation (Saxe et al. 2014) without LAPACK, layer by layer or all
kernels of a network at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _orthonormal_columns(matrix: jax.Array) -> jax.Array:
    """Q of the QR decomposition of ``matrix`` ``[m, n]`` (m >= n) with ``diag(R) > 0``.

    Householder reflections written in jnp: ``jnp.linalg.qr`` would call LAPACK, whose
    batched CPU kernel (under ``vmap`` over seeds) splits work onto XLA's intra-op pool and
    blocks on it; two such QRs at once can occupy every pool thread and deadlock (seen on
    2 cores). Same result as QR followed by flax's sign correction.
    """
    m, n = matrix.shape
    rows = jnp.arange(m)

    def reflect(k: jax.Array, state: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        r, q = state
        x = jnp.where(rows >= k, r[:, k], 0.0)
        alpha = -jnp.where(x[k] >= 0, 1.0, -1.0) * jnp.sqrt(jnp.sum(x * x))
        v = x - alpha * (rows == k)
        v = v / jnp.maximum(jnp.sqrt(jnp.sum(v * v)), jnp.finfo(matrix.dtype).tiny)
        return r - 2.0 * jnp.outer(v, v @ r), q - 2.0 * jnp.outer(q @ v, v)

    r, q = jax.lax.fori_loop(0, n, reflect, (matrix, jnp.eye(m, dtype=matrix.dtype)))
    return q[:, :n] * jnp.where(jnp.diagonal(r)[:n] < 0, -1.0, 1.0)


def orthogonal_init(scale: float) -> Callable[..., jax.Array]:
    """Orthogonal initialiser (Saxe et al. 2014) for a ``[fan_in, fan_out]`` kernel, times
    ``scale``; the same distribution (and, for a given key, the same matrix) as
    ``flax.linen.initializers.orthogonal``, without LAPACK."""

    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        fan_in, fan_out = int(np.prod(shape[:-1])), shape[-1]
        tall = (max(fan_in, fan_out), min(fan_in, fan_out))
        q = _orthonormal_columns(jax.random.normal(key, tall, dtype))
        q = q.T if fan_in < fan_out else q
        return (scale * q).reshape(shape).astype(dtype)

    return init


def orthogonal_kernels(
    key: jax.Array, shapes: Sequence[tuple[int, int]], gains: Sequence[float]
) -> list[jax.Array]:
    """Orthogonal ``[fan_in, fan_out]`` kernels, one per shape, each times its gain: the
    distribution of :func:`orthogonal_init`, drawn at once.

    One normal draw for all of them, and one Householder loop (vmapped) per distinct
    height of the tall ``[max(shape), min(shape)]`` matrices, whose narrower members are
    padded with zero columns (which leave the Householder vectors of the real columns
    as they are). Every random-number call and every loop is compiled separately, so the
    per-layer initialisers of ``nn.Dense`` (a key fold and a draw per layer, a loop per
    layer) make a program that takes several times as long to compile.
    """
    talls = [(max(shape), min(shape)) for shape in shapes]
    sizes = [m * n for m, n in talls]
    noise = jax.random.normal(key, (sum(sizes),))
    offsets = np.cumsum([0, *sizes])
    blocks = [noise[offsets[i] : offsets[i + 1]].reshape(tall) for i, tall in enumerate(talls)]
    columns: list[jax.Array | None] = [None] * len(shapes)
    for height in sorted({m for m, _ in talls}):
        members = [i for i, (m, _) in enumerate(talls) if m == height]
        width = max(talls[i][1] for i in members)
        padded = jnp.stack(
            [jnp.pad(blocks[i], ((0, 0), (0, width - talls[i][1]))) for i in members]
        )
        q = jax.vmap(_orthonormal_columns)(padded)
        for row, i in enumerate(members):
            columns[i] = q[row, :, : talls[i][1]]
    kernels = []
    for shape, gain, q in zip(shapes, gains, columns, strict=True):
        fan_in, fan_out = shape
        kernels.append(gain * (q.T if fan_in < fan_out else q))
    return kernels
