"""ActorCritic: separate actor and critic MLPs, with a head chosen by the action space.

Discrete actions get a Categorical over logits; continuous (Box) actions a diagonal
Gaussian whose mean depends on the observation and whose log-std is a learned,
state-independent parameter. Initialisation follows PPO's implementation details:
orthogonal weights, gain sqrt(2) in hidden layers, 0.01 on the policy head, 1.0 on the
value head, zero biases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

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


class PolicyParams(NamedTuple):
    """The parameters of pi(. | s), shape ``[*batch, A]``.

    A Categorical has ``log_std = None``; a diagonal Gaussian stores its mean in
    ``logits_or_mean`` and its log standard deviation in ``log_std``: ``[*batch, A]``
    per sample, or ``[A]`` when it does not depend on the state (broadcast over the batch).
    Stored with a rollout, they rebuild the collecting policy exactly (for the analytic
    KL between old and new policies).
    """

    logits_or_mean: jax.Array
    log_std: jax.Array | None = None


def make_distribution(params: PolicyParams) -> distrax.Distribution:
    """Categorical(logits) when ``log_std is None``, else diagonal Gaussian(mean, exp(log_std))."""
    if params.log_std is None:
        return distrax.Categorical(logits=params.logits_or_mean)
    return distrax.MultivariateNormalDiag(
        loc=params.logits_or_mean, scale_diag=jnp.exp(params.log_std)
    )


def action_noise(key: jax.Array, shape: Sequence[int], discrete: bool) -> jax.Array:
    """The noise :func:`sample_with_noise` turns into actions, shape ``[*shape]`` (the last
    axis is the action dimension A): standard Gumbel for a Categorical, standard normal
    for a diagonal Gaussian."""
    if discrete:
        return jax.random.gumbel(key, tuple(shape))
    return jax.random.normal(key, tuple(shape))


def sample_with_noise(params: PolicyParams, noise: jax.Array) -> jax.Array:
    """A sample of pi = ``make_distribution(params)`` from its noise ``[*batch, A]``.

    Categorical: ``argmax(logits + g)`` with g ~ Gumbel(0, 1) (the Gumbel-max trick; the
    same sample as ``jax.random.categorical``); Gaussian: ``mean + exp(log_std) * z`` with
    z ~ N(0, 1). Drawing the noise of a whole rollout at once (:func:`action_noise`) is
    one random-number call instead of one per step.
    """
    if params.log_std is None:
        return jnp.argmax(params.logits_or_mean + noise, axis=-1)
    return params.logits_or_mean + jnp.exp(params.log_std) * noise


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
            x = nn.Dense(size, kernel_init=orthogonal_init(np.sqrt(2)))(x)
            x = act(x)
        return nn.Dense(self.out_dim, kernel_init=orthogonal_init(self.out_gain))(x)


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

    def policy_params(self, obs: jax.Array) -> PolicyParams:
        """Logits (discrete) or mean (continuous), ``[*batch, A]``; the continuous
        policy's log-std is state-independent and returned once, ``[A]``."""
        out = self.actor(flatten_observation(obs, self.obs_shape))
        if self.discrete:
            return PolicyParams(out)
        return PolicyParams(out, self.log_std)

    def policy(self, obs: jax.Array) -> distrax.Distribution:
        """pi(. | obs): Categorical(logits) or diagonal Gaussian(mean, exp(log_std))."""
        return make_distribution(self.policy_params(obs))

    def policy_params_and_value(self, obs: jax.Array) -> tuple[PolicyParams, jax.Array]:
        """``(policy_params(obs), value(obs))`` in one call (what rollouts and losses use)."""
        return self.policy_params(obs), self.value(obs)

    def value(self, obs: jax.Array) -> jax.Array:
        """V(obs), shape ``[*batch]``."""
        return self.critic(flatten_observation(obs, self.obs_shape))[..., 0]
