"""The default network, ``"mlp"``: separate actor and critic MLPs, with a head chosen by
the action space.

Discrete actions get a Categorical over logits; continuous (Box) actions a diagonal
Gaussian whose mean depends on the observation and whose log-std is a learned,
state-independent parameter. Initialisation follows PPO's implementation details:
orthogonal weights, gain sqrt(2) in hidden layers, 0.01 on the policy head, 1.0 on the
value head, zero biases. A feed-forward instance of the network protocol
(:mod:`purejaxppo.networks.protocol`): its carry is empty.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from purejaxppo.networks.distributions import PolicyParams
from purejaxppo.networks.init import orthogonal_init, orthogonal_kernels

ACTIVATION_FNS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "silu": nn.silu,
}


ObsLayout = Any  # tuple[int, ...] (one array) or tuple[tuple[int, ...], ...] (its leaves)


def is_structured(obs_shape: ObsLayout) -> bool:
    """Whether ``obs_shape`` describes a structured observation: the tuple of its leaves'
    shapes (:func:`purejaxppo.envs.observation_layout`) rather than one array's shape."""
    return len(obs_shape) > 0 and isinstance(obs_shape[0], (tuple, list))


def observation_size(obs_shape: ObsLayout) -> int:
    """Number of features :func:`flatten_observation` gives."""
    shapes = obs_shape if is_structured(obs_shape) else (obs_shape,)
    return sum(int(np.prod(shape, dtype=int)) for shape in shapes)


def _flatten_leaf(obs: jax.Array, obs_shape: Sequence[int]) -> jax.Array:
    obs = jnp.asarray(obs)
    batch_shape = obs.shape[: obs.ndim - len(obs_shape)]
    if tuple(obs.shape[obs.ndim - len(obs_shape) :]) != tuple(obs_shape):
        raise ValueError(
            f"observation of shape {obs.shape} does not end in the env's observation "
            f"shape {tuple(obs_shape)}"
        )
    return obs.reshape(*batch_shape, int(np.prod(obs_shape, dtype=int))).astype(jnp.float32)


def flatten_observation(obs: Any, obs_shape: ObsLayout) -> jax.Array:
    """``[*batch, *obs_shape]`` (any dtype) -> ``[*batch, prod(obs_shape)]`` float32. A
    structured observation (a pytree, ``obs_shape`` its leaves' shapes) has every leaf
    flattened so and concatenated in ``jax.tree.leaves`` order (the action mask, too)."""
    if not is_structured(obs_shape):
        return _flatten_leaf(obs, obs_shape)
    leaves = jax.tree.leaves(obs)
    if len(leaves) != len(obs_shape):
        raise ValueError(f"observation with {len(leaves)} leaves; the env's has {len(obs_shape)}")
    return jnp.concatenate(
        [_flatten_leaf(leaf, shape) for leaf, shape in zip(leaves, obs_shape, strict=True)], axis=-1
    )


def mlp_kernel_gains(num_hidden: int, out_gain: float) -> tuple[float, ...]:
    """The orthogonal gain of each ``Dense`` layer of an :class:`MLP`, in order: sqrt(2)
    for its ``num_hidden`` hidden layers, ``out_gain`` for the output layer."""
    return (float(np.sqrt(2)),) * num_hidden + (float(out_gain),)


class MLP(nn.Module):
    """Hidden layers with ``activation`` then a linear output of ``out_dim`` units."""

    hidden_sizes: Sequence[int]
    activation: str
    out_dim: int
    out_gain: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATION_FNS[self.activation]
        gains = mlp_kernel_gains(len(self.hidden_sizes), self.out_gain)
        for size, gain in zip(self.hidden_sizes, gains, strict=False):
            x = act(nn.Dense(size, kernel_init=orthogonal_init(gain))(x))
        return nn.Dense(self.out_dim, kernel_init=orthogonal_init(gains[-1]))(x)


ACTOR_OUT_GAIN = 0.01  # the policy head starts near uniform / near zero mean
CRITIC_OUT_GAIN = 1.0


def actor_critic_heads(module: nn.Module, features: jax.Array) -> tuple[PolicyParams, jax.Array]:
    """Separate actor and critic :class:`MLP` heads on ``features`` ``[*batch, F]``, as
    submodules ``actor`` and ``critic`` of ``module`` (call from its compact method; its
    fields ``action_dim``, ``discrete``, ``hidden_sizes``, ``activation``,
    ``log_std_init`` and ``nvec`` shape them): ``(PolicyParams [*batch, A], value
    [*batch])``; a Gaussian's log-std is the state-independent parameter ``log_std``
    ``[A]``."""
    sizes, activation = module.hidden_sizes, module.activation
    out = MLP(sizes, activation, module.action_dim, ACTOR_OUT_GAIN, name="actor")(features)
    value = MLP(sizes, activation, 1, CRITIC_OUT_GAIN, name="critic")(features)[..., 0]
    if module.discrete:
        return PolicyParams(out, nvec=module.nvec), value
    init = nn.initializers.constant(module.log_std_init)
    return PolicyParams(out, module.param("log_std", init, (module.action_dim,))), value


class ActorCritic(nn.Module):
    """The ``"mlp"`` network: ``apply(params, carry, obs, episode_start) -> (carry,
    PolicyParams, value)`` (the protocol), with an empty carry ``()``; observations
    ``[*batch, *obs_shape]`` are flattened and cast to float32 (structured ones: every
    leaf, concatenated; ``obs_shape`` is then the tuple of the leaves' shapes). ``nvec``:
    the components of a MultiDiscrete action space (``action_dim = sum(nvec)``).

    ``policy_params`` (``[*batch, A]``) and ``value`` (``[*batch]``) are also callable
    alone via ``method=``, on any batch shape.
    """

    action_dim: int
    discrete: bool
    obs_shape: ObsLayout
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    nvec: tuple[int, ...] | None = None

    def setup(self) -> None:
        self.actor = MLP(self.hidden_sizes, self.activation, self.action_dim, ACTOR_OUT_GAIN)
        self.critic = MLP(self.hidden_sizes, self.activation, 1, CRITIC_OUT_GAIN)
        if not self.discrete:
            self.log_std = self.param(
                "log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,)
            )

    @nn.nowrap
    def init_params(self, key: jax.Array) -> dict[str, Any]:
        """Initial variables, ``{"params": ...}`` with the tree, shapes and distribution
        of ``self.init(key, obs)`` (orthogonal kernels with the gains above, zero biases,
        ``log_std_init``), from :func:`orthogonal_kernels`: the program compiles in a
        fraction of the time of flax's layer-by-layer init. (Not the same numbers as
        ``self.init`` for the same key: another draw of the same distribution.)"""
        fan_in = observation_size(self.obs_shape)
        heads = {"actor": (self.action_dim, ACTOR_OUT_GAIN), "critic": (1, CRITIC_OUT_GAIN)}
        shapes, gains = [], []
        for out_dim, out_gain in heads.values():
            shapes += list(itertools.pairwise([fan_in, *self.hidden_sizes, out_dim]))
            gains += mlp_kernel_gains(len(self.hidden_sizes), out_gain)
        kernels = iter(orthogonal_kernels(key, shapes, gains))
        params: dict[str, Any] = {
            name: {
                f"Dense_{i}": {"kernel": next(kernels), "bias": jnp.zeros(size, jnp.float32)}
                for i, size in enumerate([*self.hidden_sizes, out_dim])
            }
            for name, (out_dim, _) in heads.items()
        }
        if not self.discrete:
            params["log_std"] = jnp.full(self.action_dim, self.log_std_init, jnp.float32)
        return {"params": params}

    @nn.nowrap
    def initial_carry(self, batch_size: int) -> tuple[()]:
        """Feed-forward: no carry."""
        del batch_size
        return ()

    def __call__(
        self, carry: tuple[()], obs: jax.Array, episode_start: jax.Array
    ) -> tuple[tuple[()], PolicyParams, jax.Array]:
        """The protocol: ``(carry, policy_params(obs), value(obs))``."""
        del episode_start
        return carry, self.policy_params(obs), self.value(obs)

    def policy_params(self, obs: jax.Array) -> PolicyParams:
        """Logits (discrete) or mean (continuous), ``[*batch, A]``; the continuous
        policy's log-std is state-independent and returned once, ``[A]``."""
        out = self._on_rows(self.actor, obs)
        if self.discrete:
            return PolicyParams(out, nvec=self.nvec)
        return PolicyParams(out, self.log_std)

    def value(self, obs: jax.Array) -> jax.Array:
        """V(obs), shape ``[*batch]``."""
        return self._on_rows(self.critic, obs)[..., 0]

    def _on_rows(self, mlp: MLP, obs: jax.Array) -> jax.Array:
        """``mlp`` on ``obs`` ``[*batch, *obs_shape]`` as one ``[prod(batch), features]``
        matrix: the layers' matmuls (and their gradients) are plain 2-D products whatever
        the batch axes, so ``[1, B]`` sequences compute exactly what ``[B]`` samples do."""
        x = flatten_observation(obs, self.obs_shape)
        out = mlp(x.reshape(-1, x.shape[-1]))
        return out.reshape(*x.shape[:-1], out.shape[-1])
