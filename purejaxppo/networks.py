"""ActorCritic: separate actor and critic MLPs, with a head chosen by the action space.

Discrete actions get a Categorical over logits; continuous (Box) actions a diagonal
Gaussian whose mean depends on the observation and whose log-std is a learned,
state-independent parameter. Initialisation follows PPO's implementation details:
orthogonal weights, gain sqrt(2) in hidden layers, 0.01 on the policy head, 1.0 on the
value head, zero biases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATION_FNS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "silu": nn.silu,
}


def flatten_observation(obs: jax.Array, obs_shape: Sequence[int]) -> jax.Array:
    """``[*batch, *obs_shape]`` (any dtype) -> ``[*batch, prod(obs_shape)]`` float32."""
    obs = jnp.asarray(obs)
    batch_shape = obs.shape[: obs.ndim - len(obs_shape)]
    if tuple(obs.shape[obs.ndim - len(obs_shape) :]) != tuple(obs_shape):
        raise ValueError(
            f"observation of shape {obs.shape} does not end in the env's observation "
            f"shape {tuple(obs_shape)}"
        )
    return obs.reshape(*batch_shape, int(np.prod(obs_shape, dtype=int))).astype(jnp.float32)


class MLP(nn.Module):
    """Hidden layers with ``activation`` then a linear output of ``out_dim`` units."""

    hidden_sizes: Sequence[int]
    activation: str
    out_dim: int
    out_gain: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATION_FNS[self.activation]
        for size in self.hidden_sizes:
            x = nn.Dense(size, kernel_init=nn.initializers.orthogonal(np.sqrt(2)))(x)
            x = act(x)
        return nn.Dense(self.out_dim, kernel_init=nn.initializers.orthogonal(self.out_gain))(x)


class ActorCritic(nn.Module):
    """``apply(params, obs) -> (pi, value)`` for observations ``[*batch, *obs_shape]``.

    ``pi`` is a distrax distribution with batch shape ``batch``; ``value`` has shape
    ``batch``. ``policy`` and ``value`` are also callable alone via ``method=``.
    """

    action_dim: int
    discrete: bool
    obs_shape: tuple[int, ...]
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0

    def setup(self) -> None:
        self.actor = MLP(self.hidden_sizes, self.activation, self.action_dim, out_gain=0.01)
        self.critic = MLP(self.hidden_sizes, self.activation, 1, out_gain=1.0)
        if not self.discrete:
            self.log_std = self.param(
                "log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,)
            )

    def __call__(self, obs: jax.Array) -> tuple[distrax.Distribution, jax.Array]:
        return self.policy(obs), self.value(obs)

    def policy(self, obs: jax.Array) -> distrax.Distribution:
        """pi(. | obs): Categorical(logits) or diagonal Gaussian(mean, exp(log_std))."""
        out = self.actor(flatten_observation(obs, self.obs_shape))
        if self.discrete:
            return distrax.Categorical(logits=out)
        scale = jnp.broadcast_to(jnp.exp(self.log_std), out.shape)
        return distrax.MultivariateNormalDiag(loc=out, scale_diag=scale)

    def value(self, obs: jax.Array) -> jax.Array:
        """V(obs), shape ``[*batch]``."""
        return self.critic(flatten_observation(obs, self.obs_shape))[..., 0]
