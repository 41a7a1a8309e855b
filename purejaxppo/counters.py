"""Counters that stay exact in long runs, without turning on 64-bit mode globally.

JAX computes in 32 bits unless ``jax_enable_x64`` is set: an int32 step count overflows
past 2^31 (a 10B-step run is ordinary on a GPU) and a float32 count stops growing once
its spacing exceeds the increment (about 2^26 for 4 envs). Inside :func:`wide` JAX
traces 64-bit types, so the few counters that need them are int64 / float64 scalars in an
otherwise 32-bit program: exact to 2^63 steps (int64) and 2^53 (float64).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp


def _enable_x64() -> Any:
    """``jax.enable_x64`` (newer JAX) or ``jax.experimental.enable_x64`` (older)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # pragma: no cover - older JAX

    return enable_x64(True)  # pragma: no cover


@contextlib.contextmanager
def wide() -> Iterator[None]:
    """Trace (or run) the enclosed code with 64-bit types enabled."""
    with _enable_x64():
        yield


def env_steps(updates_done: jax.Array, batch_size: int) -> jax.Array:
    """``updates_done * batch_size`` as int64 (exact to 2^63 steps); any leading shape."""
    with wide():
        return jnp.asarray(updates_done).astype(jnp.int64) * jnp.int64(batch_size)


def float64(value: float | jax.Array) -> jax.Array:
    """``value`` as a float64 array (integers are exact in it up to 2^53)."""
    with wide():
        return jnp.asarray(value, jnp.float64)
