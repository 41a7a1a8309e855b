"""What the policy must produce and what it sees: action specs, a MultiDiscrete space,
action masks and structured observations.

The contract's action spaces are gymnax's ``Discrete`` and one-dimensional ``Box``,
plus :class:`MultiDiscrete` (several independent categorical choices), which gymnax
lacks and suites such as Jumanji need.

Observations are an array or a pytree of arrays (a dict, say). A dict observation with
the key ``"action_mask"`` (:data:`ACTION_MASK_KEY`) carries the legal actions: bool
``[A]`` for ``Discrete(A)``, ``[sum(nvec)]`` (one flag per choice of every component)
for ``MultiDiscrete(nvec)``. Networks may read it like any other part of the
observation; the trainer applies it to the policy whatever the network does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

ACTION_MASK_KEY = "action_mask"


class MultiDiscrete:
    """``len(nvec)`` independent choices, choice ``k`` among ``nvec[k]`` actions: an
    action is an int32 array ``[len(nvec)]`` (gymnasium's MultiDiscrete)."""

    def __init__(self, nvec: Any):
        self.nvec = tuple(int(n) for n in np.asarray(nvec).reshape(-1))
        if not self.nvec or min(self.nvec) < 1:
            raise ValueError(f"MultiDiscrete needs at least one component, all >= 1: {nvec}")
        self.shape = (len(self.nvec),)
        self.dtype = jnp.int32

    def sample(self, rng: jax.Array) -> jax.Array:
        keys = jax.random.split(rng, len(self.nvec))
        return jnp.stack(
            [jax.random.randint(k, (), 0, n) for k, n in zip(keys, self.nvec, strict=True)]
        )

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.all((x >= 0) & (x < jnp.asarray(self.nvec)))

    def __repr__(self) -> str:
        return f"MultiDiscrete(nvec={self.nvec})"


class ActionSpec(NamedTuple):
    """What the policy head must produce.

    ``discrete``: Categorical over ``dim`` actions, or, with ``nvec``, one Categorical per
    component of a MultiDiscrete space (``dim = sum(nvec)`` logits, actions
    ``[len(nvec)]``). Otherwise a ``dim``-dimensional diagonal Gaussian whose samples are
    clipped to ``[low, high]`` before ``env.step``.
    """

    discrete: bool
    dim: int
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    nvec: tuple[int, ...] | None = None


def action_spec(env: Any, env_params: Any) -> ActionSpec:
    """Read the action space; ``ValueError`` if the networks cannot act in it."""
    space = env.action_space(env_params)
    if isinstance(space, spaces.Discrete):
        if space.n < 1:
            raise ValueError(f"action space {space!r} has no actions")
        return ActionSpec(discrete=True, dim=int(space.n))
    if isinstance(space, MultiDiscrete):
        return ActionSpec(discrete=True, dim=sum(space.nvec), nvec=space.nvec)
    if isinstance(space, spaces.Box):
        shape = tuple(space.shape)
        if len(shape) != 1 or shape[0] < 1:
            raise ValueError(
                f"action space {space!r} is not supported: a Box action space must be "
                "one-dimensional, shape (action_dim,)"
            )
        low = np.broadcast_to(np.asarray(space.low, np.float32), shape)
        high = np.broadcast_to(np.asarray(space.high, np.float32), shape)
        return ActionSpec(discrete=False, dim=shape[0], low=low, high=high)
    raise ValueError(
        f"action space {space!r} ({type(space).__name__}) is not supported: use a "
        "Discrete, a purejaxppo.envs.MultiDiscrete or a one-dimensional Box action space"
    )


def zero_action(spec: ActionSpec) -> jax.Array:
    """A valid action of one env (for abstract shapes): ``0``, zeros ``[K]`` or ``[A]``."""
    if spec.nvec is not None:
        return jnp.zeros(len(spec.nvec), jnp.int32)
    return jnp.int32(0) if spec.discrete else jnp.zeros(spec.dim, jnp.float32)


def action_mask_of(obs: Any) -> jax.Array | None:
    """The observation's ``"action_mask"`` entry, or None."""
    if isinstance(obs, Mapping):
        return obs.get(ACTION_MASK_KEY)
    return None


def split_action_mask(obs: Any) -> tuple[Any, jax.Array | None]:
    """``(obs without its action mask, mask)``; ``(obs, None)`` if it has none."""
    mask = action_mask_of(obs)
    if mask is None:
        return obs, None
    return {k: v for k, v in obs.items() if k != ACTION_MASK_KEY}, mask


def join_action_mask(obs: Any, mask: jax.Array | None) -> Any:
    """Inverse of :func:`split_action_mask`."""
    return obs if mask is None else {**obs, ACTION_MASK_KEY: mask}


def check_observation(obs: Any, spec: ActionSpec) -> None:
    """``ValueError`` unless the abstract one-env observation ``obs`` is an array or a
    pytree (dict, tuple, ...) of arrays whose ``"action_mask"``, if any, fits ``spec``."""
    leaves, _ = jax.tree.flatten(obs)
    if not leaves or not all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves):
        raise ValueError(
            f"observations must be an array or a pytree of arrays, got {type(obs).__name__}"
        )
    mask = action_mask_of(obs)
    if mask is None:
        return
    if not spec.discrete:
        raise ValueError(
            "the observation has an 'action_mask' but the action space is continuous: "
            "masks select among discrete actions"
        )
    if tuple(mask.shape) != (spec.dim,) or mask.dtype != jnp.bool_:
        raise ValueError(
            f"observation['action_mask'] must be bool [{spec.dim}] (one flag per "
            f"{'choice of every component' if spec.nvec else 'action'}), got "
            f"{mask.dtype}{list(mask.shape)}"
        )


def observation_layout(obs: Any) -> tuple[int, ...] | tuple[tuple[int, ...], ...]:
    """The hashable shape description built-in networks are given: ``obs.shape`` for an
    array observation, the tuple of its leaves' shapes (``jax.tree.leaves`` order) for a
    structured one."""
    if isinstance(obs, (jax.ShapeDtypeStruct, jax.Array, np.ndarray)):
        return tuple(obs.shape)
    return tuple(tuple(leaf.shape) for leaf in jax.tree.leaves(obs))
