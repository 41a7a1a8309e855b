"""The network protocol: what the trainer, :func:`purejaxppo.evaluate` and
:func:`purejaxppo.make_policy` call, for every network, built-in or yours.

A network is a flax module with two methods::

    initial_carry(batch_size: int) -> carry          # decorated with @nn.nowrap
    __call__(carry, obs, episode_start) -> (carry, PolicyParams, value)

- ``obs``: ``[T, B, *obs_shape]``, ``T`` steps of ``B`` independent sequences, in the
  env's own dtype (the network casts, flattens or keeps the image: its choice); for
  structured observations a pytree (a dict, say) whose leaves are ``[T, B, ...]``.
- ``episode_start``: bool ``[T, B]``, true where ``obs[t, b]`` is the first observation
  of an episode. A recurrent network must reset its carry to the initial one *before*
  that step (:func:`reset_carry`); a feed-forward one ignores it.
- ``carry``: a pytree whose leaves are ``[B, ...]``, the network's state after the
  observation that came before ``obs[0]``. Returned: the state after ``obs[T - 1]``.
- outputs: :class:`PolicyParams` with ``logits_or_mean`` ``[T, B, A]`` (and a
  diagonal Gaussian's ``log_std``, ``[T, B, A]`` or state-independent ``[A]``), and
  ``value`` ``[T, B]``.

For a MultiDiscrete action space the policy's logits are ``[T, B, sum(nvec)]`` with
``PolicyParams(..., nvec=nvec)``. Where the observation is a dict with an
``"action_mask"``, :func:`apply_network` sets the logits of illegal actions to
:data:`~purejaxppo.networks.distributions.MASKED_LOGIT` after the network has run: a
network never has to mask (it may read the mask as an input).

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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from purejaxppo.envs.spaces import action_mask_of
from purejaxppo.networks.distributions import PolicyParams, mask_policy


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
    apply_fn: Any, params: Any, carry: Any, obs: Any, episode_start: jax.Array
) -> NetworkOutput:
    """``apply_fn(params, carry, obs, episode_start)`` (a network's ``apply``) as a
    :class:`NetworkOutput`, with the observation's action mask, if any, applied to the
    policy (:func:`~purejaxppo.networks.distributions.mask_policy`)."""
    carry, policy, value = apply_fn(params, carry, obs, episode_start)
    return NetworkOutput(carry, mask_policy(policy, action_mask_of(obs)), value)


def as_obs_spec(obs_shape: Any, obs_dtype: Any = jnp.float32) -> Any:
    """One observation's spec: ``obs_shape`` itself if it is already a (pytree of)
    ``jax.ShapeDtypeStruct``, else ``ShapeDtypeStruct(obs_shape, obs_dtype)``."""
    leaves = jax.tree.leaves(obs_shape)
    if leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves):
        return obs_shape
    return jax.ShapeDtypeStruct(tuple(obs_shape), obs_dtype)


def _batched(obs_spec: Any, *lead: int) -> Any:
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct((*lead, *s.shape), s.dtype), obs_spec)


def init_variables(
    network: Any, key: jax.Array, obs_shape: Any, obs_dtype: Any = jnp.float32
) -> Any:
    """The network's initial variables: ``network.init_params(key)`` if it has one, else
    ``network.init`` on one dummy observation ``[1, 1, *obs_shape]``. ``obs_shape`` may
    be a (pytree of) ``jax.ShapeDtypeStruct`` for one observation instead."""
    init_params = getattr(network, "init_params", None)
    if callable(init_params):
        return init_params(key)
    obs = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), _batched(as_obs_spec(obs_shape, obs_dtype), 1, 1)
    )
    return network.init(key, network.initial_carry(1), obs, jnp.ones((1, 1), bool))


def _describe(tree: Any) -> str:
    return str(jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", tree))


def check_network(
    network: Any,
    obs_shape: Any,
    obs_dtype: Any,
    action_dim: int,
    discrete: bool,
    nvec: tuple[int, ...] | None = None,
) -> None:
    """Raise ``ValueError`` (saying what was expected) unless ``network`` follows the
    protocol for this env: traced abstractly (``jax.eval_shape``), nothing is computed.
    ``obs_shape`` may be a (pytree of) ``jax.ShapeDtypeStruct`` (``obs_dtype`` is then
    unused); ``nvec``: the MultiDiscrete components the policy must declare."""
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
    obs_spec = as_obs_spec(obs_shape, obs_dtype)
    try:
        carry = jax.eval_shape(lambda: network.initial_carry(batch))
        variables = jax.eval_shape(lambda: init_variables(network, jax.random.key(0), obs_spec))
        out = jax.eval_shape(
            network.apply,
            variables,
            carry,
            _batched(obs_spec, steps, batch),
            jax.ShapeDtypeStruct((steps, batch), jnp.bool_),
        )
    except Exception as error:  # a user's module: say which call failed, keep the cause
        raise ValueError(
            f"network {name} failed on observations [T, B, ...] of "
            f"{_describe(obs_spec)}: {type(error).__name__}: {error}"
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
    if discrete and policy.nvec != (tuple(nvec) if nvec is not None else None):
        raise ValueError(
            f"network {name} returned PolicyParams with nvec={policy.nvec}; this env's "
            f"action space needs nvec={nvec}"
            + (" (MultiDiscrete: PolicyParams(logits, nvec=nvec))" if nvec else "")
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
