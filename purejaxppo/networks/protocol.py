"""The network protocol: what the trainer, :func:`purejaxppo.evaluate` and
:func:`purejaxppo.make_policy` call, for every network, built-in or yours.

A network is a flax module with two methods::

    initial_carry(batch_size: int) -> carry          # decorated with @nn.nowrap
    __call__(carry, obs, episode_start) -> (carry, PolicyParams, value)

- ``obs``: ``[T, B, *obs_shape]``, ``T`` steps of ``B`` independent sequences, in the
  env's own dtype (the network casts, flattens or keeps the image: its choice).
- ``episode_start``: bool ``[T, B]``, true where ``obs[t, b]`` is the first observation
  of an episode. A recurrent network must reset its carry to the initial one *before*
  that step (:func:`reset_carry`); a feed-forward one ignores it.
- ``carry``: a pytree whose leaves are ``[B, ...]``, the network's state after the
  observation that came before ``obs[0]``. Returned: the state after ``obs[T - 1]``.
- outputs: :class:`PolicyParams` with ``logits_or_mean`` ``[T, B, A]`` (and a
  diagonal Gaussian's ``log_std``, ``[T, B, A]`` or state-independent ``[A]``), and
  ``value`` ``[T, B]``.

A feed-forward network is the same protocol with an empty carry: ``initial_carry``
returns ``()`` and ``__call__`` returns the carry it was given. A network is recurrent
exactly when its carry has array leaves (:func:`is_recurrent`); the trainer then keeps
the carry in its runner state and trains on whole rollouts of ``T`` steps per env,
minibatched over envs.

Optionally, ``init_params(key) -> {"params": ...}`` (also ``@nn.nowrap``) initialises
the variables; without it they come from ``module.init`` on a dummy ``[1, 1]`` input.
Parameters under a top-level submodule named ``critic`` count as the critic's for
``grad_clip="per_network"``; all others as the actor's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.networks.distributions import PolicyParams


class NetworkOutput(NamedTuple):
    """What a network returns for ``[T, B]`` inputs: the carry after the last step,
    the policy's parameters ``[T, B, A]`` and the values ``[T, B]``."""

    carry: Any
    policy: PolicyParams
    value: jax.Array


def is_recurrent(network: Any) -> bool:
    """True if ``network``'s carry has array leaves (a feed-forward carry is ``()``)."""
    return len(jax.tree.leaves(network.initial_carry(1))) > 0


def reset_carry(episode_start: jax.Array, carry: Any, initial_carry: Any) -> Any:
    """``initial_carry`` where ``episode_start`` ``[B]`` is true, else ``carry``; leaves
    ``[B, ...]``. What a recurrent network does before every step."""

    def reset(leaf: jax.Array, initial: jax.Array) -> jax.Array:
        start = episode_start.reshape(episode_start.shape + (1,) * (leaf.ndim - 1))
        return jnp.where(start, initial, leaf)

    return jax.tree.map(reset, carry, initial_carry)


def apply_network(
    apply_fn: Any, params: Any, carry: Any, obs: jax.Array, episode_start: jax.Array
) -> NetworkOutput:
    """``apply_fn(params, carry, obs, episode_start)`` (a network's ``apply``) as a
    :class:`NetworkOutput`."""
    return NetworkOutput(*apply_fn(params, carry, obs, episode_start))


def init_variables(
    network: Any, key: jax.Array, obs_shape: Sequence[int], obs_dtype: Any = jnp.float32
) -> Any:
    """The network's initial variables: ``network.init_params(key)`` if it has one, else
    ``network.init`` on one dummy observation ``[1, 1, *obs_shape]``."""
    init_params = getattr(network, "init_params", None)
    if callable(init_params):
        return init_params(key)
    obs = jnp.zeros((1, 1, *obs_shape), obs_dtype)
    return network.init(key, network.initial_carry(1), obs, jnp.ones((1, 1), bool))


def _describe(tree: Any) -> str:
    return str(jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", tree))


def check_network(
    network: Any,
    obs_shape: Sequence[int],
    obs_dtype: Any,
    action_dim: int,
    discrete: bool,
) -> None:
    """Raise ``ValueError`` (saying what was expected) unless ``network`` follows the
    protocol for this env: traced abstractly (``jax.eval_shape``), nothing is computed."""
    name = type(network).__name__
    for method in ("initial_carry", "init", "apply"):
        if not callable(getattr(network, method, None)):
            raise ValueError(
                f"network {name} has no {method}(): a network is a flax module with "
                "initial_carry(batch_size) and __call__(carry, obs, episode_start) -> "
                "(carry, PolicyParams, value); see purejaxppo.networks.protocol"
            )
    try:
        hash(network)
    except TypeError as error:
        raise ValueError(
            f"network {name} must be hashable (it is a static argument of the compiled "
            f"programs): give its fields tuples rather than lists or dicts ({error})"
        ) from error
    steps, batch = 2, 3
    try:
        carry = jax.eval_shape(lambda: network.initial_carry(batch))
        variables = jax.eval_shape(
            lambda: init_variables(network, jax.random.key(0), obs_shape, obs_dtype)
        )
        out = jax.eval_shape(
            network.apply,
            variables,
            carry,
            jax.ShapeDtypeStruct((steps, batch, *obs_shape), obs_dtype),
            jax.ShapeDtypeStruct((steps, batch), jnp.bool_),
        )
    except Exception as error:  # a user's module: say which call failed, keep the cause
        raise ValueError(
            f"network {name} failed on observations of shape [T, B, *{tuple(obs_shape)}] "
            f"({np.dtype(obs_dtype).name}): {type(error).__name__}: {error}"
        ) from error
    expected = (
        f"(carry, PolicyParams(logits_or_mean=[T, B, {action_dim}], log_std="
        f"{'None' if discrete else f'[{action_dim}] or [T, B, {action_dim}]'}), "
        f"value=[T, B]) for T={steps}, B={batch}"
    )
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise ValueError(f"network {name} returned {_describe(out)}; expected {expected}")
    new_carry, policy, value = out
    if not isinstance(policy, PolicyParams):
        raise ValueError(
            f"network {name} returned a policy of type {type(policy).__name__}; expected "
            f"{expected} (purejaxppo.PolicyParams)"
        )
    logits_ok = tuple(policy.logits_or_mean.shape) == (steps, batch, action_dim)
    if discrete:
        log_std_ok = policy.log_std is None
    else:
        log_std_ok = policy.log_std is not None and tuple(policy.log_std.shape) in (
            (action_dim,),
            (steps, batch, action_dim),
        )
    if not (logits_ok and log_std_ok and tuple(getattr(value, "shape", ())) == (steps, batch)):
        raise ValueError(
            f"network {name} returned policy {_describe(policy)} and value "
            f"{_describe(value)}; expected {expected}"
        )
    if jax.tree.structure(new_carry) != jax.tree.structure(carry) or any(
        a.shape != b.shape or a.dtype != b.dtype
        for a, b in zip(jax.tree.leaves(new_carry), jax.tree.leaves(carry), strict=True)
    ):
        raise ValueError(
            f"network {name} returned the carry {_describe(new_carry)}; expected the "
            f"structure of initial_carry({batch}): {_describe(carry)}"
        )
