"""Batched environments: :class:`VecEnv` steps ``num_envs`` copies of an env that follows
the contract, with episode statistics and, optionally, running-mean/std normalisation
of observations and rewards whose statistics are part of the (jittable, vmappable)
env state.

The contract is gymnax >= 1.0's step::

    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

where the env auto-resets (``obs`` is then the next episode's first observation) and
``info["final_observation"]`` is the true last observation of the finished episode.
Every suite's adapter (:mod:`purejaxppo.envs.registry`) produces exactly this.

gymnax's own ``Environment.step`` draws a fresh reset for every env on every step and
keeps it where the episode ended. For an env that does not override that method,
:meth:`VecEnv.draw` can draw the resets of a whole rollout before it starts and
:meth:`VecEnv.step_drawn` then does exactly what that method does (``step_env``,
``is_truncated``, keep the reset where done) with the reset drawn ahead. The
distribution is the same; the random-number calls leave the step loop, where on CPU
each one is a loop of small kernels.

For an env whose reset costs far more than its step (Craftax generates a world),
``resets_per_step=K`` draws only ``K`` resets per step into a pool that the envs whose
episodes end take from (:mod:`purejaxppo.envs.reset_pool`): the same distribution while
the pool holds enough, and every shortfall counted.

Data parallel (``collectives`` of several devices): ``num_envs`` is this device's block
of the agent's envs. The keys of all the agent's envs are drawn and each device keeps
its block (:meth:`~purejaxppo.collectives.Collectives.take_block`), so a device steps
exactly the envs a single-device run would have stepped there; the normalisation
statistics are kept per device during a rollout and merged by
:func:`merge_running_stats` once per rollout.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments.environment import Environment

from purejaxppo import counters
from purejaxppo.collectives import LOCAL, Collectives
from purejaxppo.envs.reset_pool import ResetPool, take_resets
from purejaxppo.envs.spaces import (
    ActionSpec,
    action_spec,
    check_observation,
    join_action_mask,
    split_action_mask,
    zero_action,
)

_STD_EPS = 1e-8

# Largest memory (per unbatched train call) that resets drawn ahead of a rollout may take:
# every classic-control env at any sensible num_envs fits, MinAtar at 64 envs does not
# (about 2 KB per reset); those reset inside the step, as gymnax's own step does.
MAX_RESET_DRAW_BYTES = 8 * 2**20


@struct.dataclass
class RunningMeanStd:
    """Running mean and variance of a stream of arrays (Chan et al.'s parallel update).

    ``mean`` / ``var`` are float32; ``count`` is float64 (see :mod:`purejaxppo.counters`),
    so it keeps counting exactly past 2^24 samples, to 2^53.
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> RunningMeanStd:
        # A tiny prior count keeps the first update well defined (as in SB3/PureJaxRL).
        return cls(
            mean=jnp.zeros(shape, jnp.float32),
            var=jnp.ones(shape, jnp.float32),
            count=counters.float64(1e-4),
        )

    def update(self, batch: jax.Array) -> RunningMeanStd:
        """Fold in ``batch`` of shape ``[B, *shape]``. The count is summed in float64; the
        mean and variance are updated in float32 with the counts rounded to it."""
        batch = batch.astype(jnp.float32)
        batch_mean = jnp.mean(batch, axis=0)
        batch_var = jnp.var(batch, axis=0)
        batch_count = batch.shape[0]
        with counters.wide():
            total = self.count + batch_count
        count, new_total = self.count.astype(jnp.float32), total.astype(jnp.float32)
        delta = batch_mean - self.mean
        mean = self.mean + delta * batch_count / new_total
        m2 = self.var * count + batch_var * batch_count
        m2 = m2 + jnp.square(delta) * count * batch_count / new_total
        return RunningMeanStd(mean=mean, var=m2 / new_total, count=total)

    def normalize(self, x: jax.Array, clip: float) -> jax.Array:
        """``clip((x - mean) / sqrt(var + eps), -clip, clip)``."""
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + _STD_EPS), -clip, clip)

    def scale(self, x: jax.Array, clip: float) -> jax.Array:
        """``clip(x / sqrt(var + eps), -clip, clip)``: rescale without re-centring."""
        return jnp.clip(x / jnp.sqrt(self.var + _STD_EPS), -clip, clip)


# RunningMeanStd for an array observation; for a structured one, a pytree of them with
# the observation's structure, one per leaf except the action mask (never normalised).
ObsStats = Any


def _is_stats(x: Any) -> bool:
    return isinstance(x, RunningMeanStd)


def observation_stats(obs_batch: Any) -> ObsStats:
    """Fresh statistics for observations like ``obs_batch`` (leaves ``[B, ...]``)."""
    obs, _ = split_action_mask(obs_batch)
    return jax.tree.map(lambda x: RunningMeanStd.create(x.shape[1:]), obs)


def update_observation_stats(stats: ObsStats, obs_batch: Any) -> ObsStats:
    """Fold a batch of observations (leaves ``[B, ...]``) into ``stats``, leaf by leaf."""
    obs, _ = split_action_mask(obs_batch)
    return jax.tree.map(lambda s, x: s.update(x), stats, obs, is_leaf=_is_stats)


def normalize_observation(stats: ObsStats, obs: Any, clip: float) -> Any:
    """Every leaf but the action mask as float32, normalised by its statistics
    (:meth:`RunningMeanStd.normalize`); any leading axes."""
    rest, mask = split_action_mask(obs)
    normalized = jax.tree.map(
        lambda s, x: s.normalize(x.astype(jnp.float32), clip), stats, rest, is_leaf=_is_stats
    )
    return join_action_mask(normalized, mask)


@struct.dataclass
class VecEnvState:
    """State of ``num_envs`` environments plus the statistics the wrapper keeps.

    ``episode_return`` / ``episode_length``: running raw totals of the current episodes
    ``[N]``. ``obs_stats``: observation statistics (shape of one observation).
    ``return_stats``: statistics of the discounted return, used to scale rewards.
    ``discounted_return``: the running discounted return ``[N]`` those come from.
    ``reset_pool``: the resets waiting for episodes to end, with ``resets_per_step``
    (:class:`~purejaxppo.envs.reset_pool.ResetPool`, ``N`` slots); None without.
    """

    env_state: Any
    episode_return: jax.Array
    episode_length: jax.Array
    obs_stats: ObsStats
    return_stats: RunningMeanStd
    discounted_return: jax.Array
    reset_pool: ResetPool | None = None


class EnvDraws(NamedTuple):
    """The randomness of env steps, drawn before they run: leaves ``[*lead, N, ...]``.

    ``step_key``: the key each env's step gets. ``reset_obs`` / ``reset_state``: the
    first observation and state of the episode each env starts if its episode ends at
    that step; ``None`` when the env resets itself inside ``env.step`` (it overrides
    gymnax's ``step``, or the resets would take more than ``MAX_RESET_DRAW_BYTES``).
    ``pool_key``: with ``resets_per_step=K``, the keys of the ``K`` resets each step
    draws into the pool, ``[*lead, K]`` (the resets themselves are drawn in the step).
    """

    step_key: jax.Array
    reset_obs: Any = None
    reset_state: Any = None
    pool_key: jax.Array | None = None


def uses_gymnax_step(env: Any) -> bool:
    """Whether ``env`` steps with gymnax's own ``Environment.step`` (not overridden)."""
    return (
        isinstance(env, Environment)
        and type(env).step is Environment.step
        and "step" not in vars(env)
    )


def _step_before_reset(
    env: Any, env_params: Any, key: jax.Array, state: Any, action: jax.Array
) -> tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
    """gymnax's ``Environment.step`` for one env up to its reset: ``(obs, state, reward,
    terminated, truncated, info)`` of the step itself, ``info`` as gymnax's step has it."""
    obs, state, reward, terminated, info = env.step_env(key, state, action, env_params)
    truncated = env.is_truncated(state, env_params)
    info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs}
    return obs, state, reward, terminated, truncated, info


def _keep_reset(
    reset_obs: Any, reset_state: Any, stepped: tuple[Any, ...]
) -> tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
    """The rest of gymnax's step for one env: the reset's observation and state where
    the episode ended (terminated or truncated), the step's otherwise."""
    obs, state, reward, terminated, truncated, info = stepped
    keep_reset = functools.partial(jax.lax.select, jnp.logical_or(terminated, truncated))
    return (
        jax.tree.map(keep_reset, reset_obs, obs),
        jax.tree.map(keep_reset, reset_state, state),
        reward,
        terminated,
        truncated,
        info,
    )


def _step_then_keep_reset(
    env: Any,
    env_params: Any,
    key: jax.Array,
    state: Any,
    action: jax.Array,
    reset_obs: Any,
    reset_state: Any,
) -> tuple[Any, Any, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
    """gymnax's ``Environment.step`` for one env, with its reset given instead of drawn."""
    stepped = _step_before_reset(env, env_params, key, state, action)
    return _keep_reset(reset_obs, reset_state, stepped)


class EnvStep(NamedTuple):
    """One batched transition, every leaf with leading axis ``[N]``.

    ``obs``: the observation the policy acts on next (the next episode's first one
    where the episode just ended). ``final_obs``: the true next observation of this
    transition; equal to ``obs`` unless the episode ended. Both are normalised when
    observation normalisation is on. ``reward``: the learning reward (scaled when
    reward normalisation is on). ``episode_return`` / ``episode_length``: raw totals of
    the episode that ended at this step (meaningful where ``terminated | truncated``).
    """

    obs: jax.Array
    final_obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array

    @property
    def done(self) -> jax.Array:
        """The episode ended here, by termination or truncation."""
        return self.terminated | self.truncated


@dataclasses.dataclass(frozen=True, eq=False)
class VecEnv:
    """``num_envs`` copies of a gymnax env stepped together, with optional normalisation.

    Static (hashable by identity): it holds the gymnax env and Python settings only;
    everything that changes lives in :class:`VecEnvState`.
    """

    env: Any
    env_params: Any
    num_envs: int
    normalize_obs: bool = False
    normalize_reward: bool = False
    obs_clip: float = 10.0
    reward_clip: float = 10.0
    resets_per_step: int | None = None  # None: every env draws a reset at every step
    # data parallel: num_envs is this device's block of num_envs * collectives.size envs
    collectives: Collectives = LOCAL

    # Read eagerly, outside any trace: some envs compute their Box bounds with jnp ops
    # on env_params, which inside a scan would be tracers rather than constants.
    action_spec: ActionSpec = dataclasses.field(init=False)
    # one env's raw observation, reset and step alike (dtypes promoted across both): a
    # jax.ShapeDtypeStruct, or a pytree of them for structured observations
    obs_spec: Any = dataclasses.field(init=False)
    reset_nbytes: int = dataclasses.field(init=False)  # one env's reset (obs and state)

    def __post_init__(self) -> None:
        if self.resets_per_step is not None and self.collectives.distributed:
            raise ValueError(
                "resets_per_step (a reset pool) is not supported with data-parallel "
                "devices yet: leave it None, or train on one device"
            )
        if self.resets_per_step is not None:
            check_resets_per_step(self.resets_per_step, self.num_envs, self.env)
        spec = action_spec(self.env, self.env_params)
        object.__setattr__(self, "action_spec", spec)
        # abstract reset and step (nothing compiled): observation spec, a reset's size
        reset, stepped = jax.eval_shape(self._reset_then_step, jax.random.key(0))
        check_observation(reset[0], spec)
        nbytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(reset))
        object.__setattr__(self, "reset_nbytes", int(nbytes))

        def promoted(reset_obs: Any, step_obs: Any, final_obs: Any) -> jax.ShapeDtypeStruct:
            dtype = jnp.result_type(reset_obs.dtype, step_obs.dtype, final_obs.dtype)
            return jax.ShapeDtypeStruct(reset_obs.shape, dtype)

        obs_spec = jax.tree.map(promoted, reset[0], stepped[0], stepped[-1]["final_observation"])
        object.__setattr__(self, "obs_spec", obs_spec)

    @property
    def structured_obs(self) -> bool:
        """Whether observations are a pytree of arrays rather than one array."""
        return not isinstance(self.obs_spec, jax.ShapeDtypeStruct)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one (array) observation; ``ValueError`` for structured ones."""
        if self.structured_obs:
            raise ValueError("this env's observations are structured: read obs_spec")
        return tuple(self.obs_spec.shape)

    @property
    def obs_dtype(self) -> np.dtype:
        """The raw dtype of one (array) observation; ``ValueError`` for structured ones."""
        if self.structured_obs:
            raise ValueError("this env's observations are structured: read obs_spec")
        return np.dtype(self.obs_spec.dtype)

    @property
    def policy_obs_spec(self) -> Any:
        """The spec of what the policy sees (:meth:`_observe`): float32 where normalised."""
        if not self.normalize_obs:
            return self.obs_spec
        rest, mask = split_action_mask(self.obs_spec)
        as_float = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, jnp.float32), rest)
        return join_action_mask(as_float, mask)

    def _reset_then_step(self, key: jax.Array) -> tuple[Any, Any]:
        """One env's ``reset`` and the ``step`` after it (for their abstract shapes)."""
        obs, state = self.env.reset(key, self.env_params)
        action = zero_action(self.action_spec)
        return (obs, state), self.env.step(key, state, action, self.env_params)

    def reset(self, key: jax.Array) -> tuple[jax.Array, VecEnvState]:
        """Reset all envs. Returns ``(obs [N, *obs_shape], state)``; see :meth:`_observe`."""
        keys = self._own(jax.random.split(key, self.total_envs), axis=0)
        raw_obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(keys, self.env_params)
        obs_stats = observation_stats(raw_obs)
        if self.normalize_obs:
            fresh = obs_stats
            obs_stats = update_observation_stats(obs_stats, raw_obs)
            obs_stats = merge_running_stats(self.collectives, fresh, obs_stats)
        reset_pool = None
        if self.resets_per_step is not None:  # a full pool, from its own keys
            pool_keys = jax.random.split(jax.random.fold_in(key, 1), self.num_envs)
            reset_one = functools.partial(self.env.reset_env, params=self.env_params)
            reset_pool = ResetPool.full(*jax.vmap(reset_one)(pool_keys))
        zeros = jnp.zeros(self.num_envs, jnp.float32)
        state = VecEnvState(
            env_state=env_state,
            episode_return=zeros,
            episode_length=jnp.zeros(self.num_envs, jnp.int32),
            obs_stats=obs_stats,
            return_stats=RunningMeanStd.create(()),
            discounted_return=zeros,
            reset_pool=reset_pool,
        )
        return self._observe(obs_stats, raw_obs), state

    @property
    def total_envs(self) -> int:
        """The agent's envs on all devices (``num_envs`` on one device)."""
        return self.num_envs * self.collectives.size

    def _own(self, keys: jax.Array, axis: int) -> jax.Array:
        """This device's block of keys drawn for all ``total_envs`` along ``axis``."""
        return self.collectives.take_block(keys, axis)

    def merge_statistics(self, start: VecEnvState, state: VecEnvState) -> VecEnvState:
        """``state`` with the normalisation statistics of every device merged
        (:func:`merge_running_stats`; all began at ``start``'s): once per rollout in a
        data-parallel run, ``state`` unchanged otherwise."""
        if not self.collectives.distributed:
            return state
        obs_stats, return_stats = state.obs_stats, state.return_stats
        if self.normalize_obs:
            obs_stats = merge_running_stats(self.collectives, start.obs_stats, obs_stats)
        if self.normalize_reward:
            return_stats = merge_running_stats(self.collectives, start.return_stats, return_stats)
        return state.replace(obs_stats=obs_stats, return_stats=return_stats)

    def draws_resets(self, num_steps: int) -> bool:
        """Whether :meth:`draw` draws the resets of ``num_steps`` steps ahead: the env
        uses gymnax's own step and they fit in ``MAX_RESET_DRAW_BYTES``, and there is no
        reset pool (``resets_per_step``)."""
        nbytes = self.reset_nbytes * num_steps * self.num_envs
        fits = nbytes <= MAX_RESET_DRAW_BYTES and self.resets_per_step is None
        return uses_gymnax_step(self.env) and fits

    def draw(self, key: jax.Array, num_steps: int) -> EnvDraws:
        """The randomness of ``num_steps`` steps of all envs, leaves ``[num_steps, N, ...]``,
        for :meth:`step_drawn`; with the resets when :meth:`draws_resets` says so, with
        the pool's reset keys ``[num_steps, K]`` when ``resets_per_step=K``."""
        step_key, reset_key = jax.random.split(key)
        shape = (num_steps, self.total_envs)
        step_keys = self._own(jax.random.split(step_key, shape), axis=1)
        if self.resets_per_step is not None:
            pool_keys = jax.random.split(reset_key, (num_steps, self.resets_per_step))
            return EnvDraws(step_keys, pool_key=pool_keys)
        if not self.draws_resets(num_steps):
            return EnvDraws(step_keys)
        reset_one = functools.partial(self.env.reset_env, params=self.env_params)
        reset_keys = self._own(jax.random.split(reset_key, shape), axis=1)
        reset_obs, reset_state = jax.vmap(jax.vmap(reset_one))(reset_keys)
        return EnvDraws(step_keys, reset_obs, reset_state)

    def step(
        self, key: jax.Array, state: VecEnvState, action: jax.Array, gamma: jax.Array
    ) -> tuple[EnvStep, VecEnvState]:
        """Step all envs with ``action`` ``[N]`` (discrete) or ``[N, A]`` (continuous).

        Continuous actions are clipped to the Box here; the caller keeps the unclipped
        sample for its log-probability. ``gamma`` discounts the return whose running
        std scales rewards (reward normalisation only). Each env resets itself inside
        ``env.step`` (or, with ``resets_per_step``, takes one from the pool); see
        :meth:`step_drawn` for steps whose randomness was drawn ahead.
        """
        if self.resets_per_step is not None:
            draws = jax.tree.map(lambda x: x[0], self.draw(key, 1))
        else:
            draws = EnvDraws(self._own(jax.random.split(key, self.total_envs), axis=0))
        return self.step_drawn(draws, state, action, gamma)

    def step_drawn(
        self, draws: EnvDraws, state: VecEnvState, action: jax.Array, gamma: jax.Array
    ) -> tuple[EnvStep, VecEnvState]:
        """:meth:`step` with its randomness given: ``draws`` has leaves ``[N, ...]`` (one
        step of :meth:`draw`). With resets drawn, an env whose episode ends restarts
        from ``draws.reset_obs`` / ``draws.reset_state``; with a reset pool, from the
        oldest reset waiting in it (:func:`~purejaxppo.envs.reset_pool.take_resets`);
        otherwise ``env.step`` resets it.
        """
        spec = self.action_spec
        env_action = action if spec.discrete else jnp.clip(action, spec.low, spec.high)
        reset_pool = state.reset_pool
        if draws.pool_key is not None:
            stepped = jax.vmap(functools.partial(_step_before_reset, self.env, self.env_params))(
                draws.step_key, state.env_state, env_action
            )
            reset_one = functools.partial(self.env.reset_env, params=self.env_params)
            new_obs, new_state = jax.vmap(reset_one)(draws.pool_key)
            done = jnp.logical_or(stepped[3], stepped[4])
            reset_obs, reset_state, reset_pool = take_resets(reset_pool, new_obs, new_state, done)
            outputs = jax.vmap(_keep_reset)(reset_obs, reset_state, stepped)
        elif draws.reset_state is None:
            env_step = functools.partial(self.env.step, params=self.env_params)
            outputs = jax.vmap(env_step)(draws.step_key, state.env_state, env_action)
        else:
            env_step = functools.partial(_step_then_keep_reset, self.env, self.env_params)
            outputs = jax.vmap(env_step)(
                draws.step_key, state.env_state, env_action, draws.reset_obs, draws.reset_state
            )
        raw_obs, env_state, reward, terminated, truncated, info = outputs
        chex.assert_shape([reward, terminated, truncated], (self.num_envs,))
        raw_final_obs = info["final_observation"]
        reward = reward.astype(jnp.float32)
        terminated = terminated.astype(bool)
        truncated = truncated.astype(bool)
        done = terminated | truncated  # EnvStep.done, before the EnvStep exists

        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1

        obs_stats = state.obs_stats
        if self.normalize_obs:
            obs_stats = update_observation_stats(obs_stats, raw_obs)
        return_stats, discounted_return = state.return_stats, state.discounted_return
        learn_reward = reward
        if self.normalize_reward:
            discounted_return = discounted_return * gamma + reward
            return_stats = return_stats.update(discounted_return)
            learn_reward = return_stats.scale(reward, self.reward_clip)
            discounted_return = jnp.where(done, 0.0, discounted_return)

        transition = EnvStep(
            obs=self._observe(obs_stats, raw_obs),
            final_obs=self._observe(obs_stats, raw_final_obs),
            reward=learn_reward,
            terminated=terminated,
            truncated=truncated,
            episode_return=episode_return,
            episode_length=episode_length,
        )
        new_state = VecEnvState(
            env_state=env_state,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
            obs_stats=obs_stats,
            return_stats=return_stats,
            discounted_return=discounted_return,
            reset_pool=reset_pool,
        )
        return transition, new_state

    def _observe(self, obs_stats: ObsStats, raw_obs: Any) -> Any:
        """What the policy sees: normalised float32 observations (the action mask as it
        is), or the raw ones in the env's own dtypes (``obs_spec``: integer observations
        stay integers, never widened to float32 in the rollout's storage; the network
        casts)."""
        if self.normalize_obs:
            return normalize_observation(obs_stats, raw_obs, self.obs_clip)
        return jax.tree.map(lambda x, s: x.astype(s.dtype), raw_obs, self.obs_spec)


def merge_running_stats(collectives: Collectives, start: Any, local: Any) -> Any:
    """Merge per-device :class:`RunningMeanStd` leaves that all began at ``start`` and
    then folded in their own device's data, into the statistics of ``start`` plus every
    device's data (``local`` as it is on one device).

    With ``c_d, mu_d, v_d`` device ``d``'s count, mean and variance, ``c_0, mu_0, v_0`` the
    start's (the device counts include ``c_0``) and ``D`` devices::

        C  = sum_d c_d - (D - 1) c_0
        mu = mu_0 + sum_d c_d (mu_d - mu_0) / C
        v  = v_0 + [sum_d c_d (v_d - v_0) + sum_d c_d (mu_d - mu)^2
                    - (D - 1) c_0 (mu_0 - mu)^2] / C

    (Chan et al.'s merge, written in differences from the start so that nothing cancels
    in float32: late in a run ``c_0`` dwarfs a rollout's data.)
    """
    if not collectives.distributed:
        return local
    others = collectives.size - 1

    def merge(s: RunningMeanStd, d: RunningMeanStd) -> RunningMeanStd:
        with counters.wide():
            total = collectives.sum(d.count) - others * s.count
        c0, cd, c = (n.astype(jnp.float32) for n in (s.count, d.count, total))
        mean = s.mean + collectives.sum(cd * (d.mean - s.mean)) / c
        spread = collectives.sum(cd * (d.var - s.var) + cd * jnp.square(d.mean - mean))
        var = s.var + (spread - others * c0 * jnp.square(s.mean - mean)) / c
        return RunningMeanStd(mean=mean, var=var, count=total)

    return jax.tree.map(merge, start, local, is_leaf=_is_stats)


def check_resets_per_step(resets_per_step: Any, num_envs: int, env: Any) -> None:
    """``ValueError`` unless ``resets_per_step`` is an int in ``[1, num_envs]`` and ``env``
    steps with gymnax's own ``Environment.step`` (whose reset the pool replaces)."""
    valid = isinstance(resets_per_step, int) and not isinstance(resets_per_step, bool)
    if not valid or not 1 <= resets_per_step <= num_envs:
        raise ValueError(
            f"resets_per_step must be None or an integer in [1, num_envs = {num_envs}], "
            f"got {resets_per_step!r}"
        )
    if not uses_gymnax_step(env):
        raise ValueError(
            f"resets_per_step={resets_per_step} needs an env that steps with gymnax's own "
            f"Environment.step (its reset is what the pool replaces); "
            f"{type(env).__name__} resets inside a step of its own: use resets_per_step=None"
        )
