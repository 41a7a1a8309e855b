"""ActorCritic: separate actor and critic MLPs, with a head chosen by the action space.

Discrete actions get a Categorical over logits; continuous (Box) actions a diagonal
Gaussian whose mean depends on the observation and whose log-std is a learned,
state-independent parameter. Initialisation follows PPO's implementation details:
orthogonal weights, gain sqrt(2) in hidden layers, 0.01 on the policy head, 1.0 on the
value head, zero biases.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

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
        fan_in = int(np.prod(self.obs_shape, dtype=int))
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
