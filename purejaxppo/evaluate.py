"""Using a trained policy: ``make_policy`` (observation -> action) and ``evaluate``.

Both apply the observation normalisation that training used, with the statistics frozen
at the end of training (``TrainOutput.env_state.obs_stats``), exactly as the rollout did.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from purejaxppo.config import PPOConfig, as_config
from purejaxppo.envs import ObsStats, VecEnv, make_env, normalize_observation
from purejaxppo.networks import (
    apply_network,
    distribution_mode,
    is_recurrent,
    make_distribution,
)
from purejaxppo.rollout import first_step_outputs
from purejaxppo.train import TrainOutput, build_network


class EvalResult(NamedTuple):
    """Per-episode results ``[num_episodes]`` (leading seed axes under ``vmap``)."""

    episode_return: jax.Array
    episode_length: jax.Array


def _params_and_obs_stats(trained: Any, obs_stats: ObsStats | None) -> tuple[Any, ObsStats | None]:
    """Accept a TrainOutput, a TrainState or bare network params; ``obs_stats`` given
    explicitly wins over the TrainOutput's."""
    if isinstance(trained, TrainOutput):
        params, trained_stats = trained.train_state.params, trained.env_state.obs_stats
    elif isinstance(trained, TrainState):
        params, trained_stats = trained.params, None
    else:
        params, trained_stats = trained, None
    return params, obs_stats if obs_stats is not None else trained_stats


def _check_obs_stats(config: PPOConfig, obs_stats: ObsStats | None) -> None:
    if config.normalize_obs and obs_stats is None:
        raise ValueError(
            "config.normalize_obs is True: pass the TrainOutput (it holds the observation "
            "statistics) or obs_stats=output.env_state.obs_stats"
        )


PolicyStep = Callable[[Any, jax.Array, jax.Array, "jax.Array | None"], tuple[jax.Array, Any]]


def policy_step_fn(
    config: PPOConfig,
    vec_env: VecEnv,
    network: Any,
    params: Any,
    obs_stats: ObsStats | None,
) -> PolicyStep:
    """``step(carry, obs [B, *obs_shape], episode_start [B], rng=None) -> (env action
    [B, ...], carry)`` for network ``params``: one step of the policy on raw observations
    (normalised with ``obs_stats`` as in training); see :func:`make_policy`."""
    _check_obs_stats(config, obs_stats)
    spec = vec_env.action_spec

    def step(
        carry: Any, obs: Any, episode_start: jax.Array, rng: jax.Array | None = None
    ) -> tuple[jax.Array, Any]:
        obs = jax.tree.map(jnp.asarray, obs)
        if config.normalize_obs:
            obs = normalize_observation(obs_stats, obs, config.obs_clip)
        out = apply_network(
            network.apply, params, carry, jax.tree.map(lambda x: x[None], obs), episode_start[None]
        )
        policy = first_step_outputs(out, episode_start.shape[0]).policy
        if rng is None:  # deterministic: the distribution's mode
            action = distribution_mode(policy)
        else:
            action = make_distribution(policy).sample(seed=rng)
        if not spec.discrete:
            action = jnp.clip(action, spec.low, spec.high)
        return action, out.carry

    return step


# VecEnvs by (env name, env object, env params, size): a VecEnv is a static argument of
# the compiled programs below (hashed by identity), so the same one must come back for
# the same env, or every call would compile anew. Each entry keeps the objects it was
# made from, so their ids cannot be reused by other objects while it lives.
_VEC_ENVS: collections.OrderedDict[tuple, tuple[VecEnv, Any, Any]] = collections.OrderedDict()
_MAX_VEC_ENVS = 32


def _vec_env(config: PPOConfig, env: Any, env_params: Any, num_envs: int) -> VecEnv:
    key = (config.env_name, id(env), id(env_params), num_envs)
    hit = _VEC_ENVS.get(key)
    if hit is not None and hit[1] is env and hit[2] is env_params:
        _VEC_ENVS.move_to_end(key)
        return hit[0]
    made_env, made_params = make_env(config.env_name, env, env_params)
    vec_env = VecEnv(env=made_env, env_params=made_params, num_envs=num_envs)
    _VEC_ENVS[key] = (vec_env, env, env_params)
    if len(_VEC_ENVS) > _MAX_VEC_ENVS:
        _VEC_ENVS.popitem(last=False)
    return vec_env


@functools.lru_cache(maxsize=_MAX_VEC_ENVS)
def _network(config: PPOConfig, vec_env: VecEnv, network: Any) -> Any:
    """:func:`build_network`, checked once per (config, env, network): evaluating many
    checkpoints in a loop does not trace the network's checks every time."""
    return build_network(config, vec_env, network)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _policy_step(
    config: PPOConfig,
    vec_env: VecEnv,
    network: Any,
    params: Any,
    obs_stats: ObsStats | None,
    carry: Any,
    obs: Any,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    step = policy_step_fn(config, vec_env, network, params, obs_stats)
    return step(carry, obs, jnp.zeros(jax.tree.leaves(obs)[0].shape[0], bool), rng)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _evaluate(
    config: PPOConfig,
    vec_env: VecEnv,
    network: Any,
    max_steps: int,
    deterministic: bool,
    params: Any,
    obs_stats: ObsStats | None,
    rng: jax.Array,
) -> EvalResult:
    step = policy_step_fn(config, vec_env, network, params, obs_stats)
    return run_episodes(
        vec_env, step, network.initial_carry(vec_env.num_envs), rng, max_steps, deterministic
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Policy:
    """A trained policy, compiled: ``policy(obs, rng=None) -> action`` for a feed-forward
    network, ``policy(obs, carry, rng=None) -> (action, carry)`` for a recurrent one
    (start each episode from ``policy.initial_carry(...)``).

    ``obs``: raw observations, ``[*obs_shape]`` or batched ``[B, *obs_shape]``; the carry
    matches (``initial_carry()`` for one observation, ``initial_carry(B)`` for ``B``).
    With ``rng=None`` the action is the policy's mode (argmax of the logits, or the
    Gaussian mean); with a key it is sampled. Continuous actions are clipped to the
    action space, as in training.
    """

    config: PPOConfig
    vec_env: VecEnv
    network: Any
    params: Any
    obs_stats: ObsStats | None
    recurrent: bool

    def initial_carry(self, batch_size: int | None = None) -> Any:
        """The carry to start an episode from: leaves ``[batch_size, ...]``, or without
        the batch axis for ``None`` (one unbatched observation). ``()`` if feed-forward."""
        carry = self.network.initial_carry(1 if batch_size is None else batch_size)
        return carry if batch_size is not None else jax.tree.map(lambda x: x[0], carry)

    def __call__(self, obs: Any, *args: Any, rng: jax.Array | None = None) -> Any:
        if self.recurrent:
            if len(args) > 2 or (len(args) == 2 and rng is not None):
                raise TypeError("a recurrent policy is called as policy(obs, carry, rng=None)")
            if not args:
                raise TypeError(
                    "a recurrent policy is called as policy(obs, carry, rng=None); "
                    "start from carry = policy.initial_carry() (or initial_carry(B))"
                )
            carry, rng = args[0], args[1] if len(args) == 2 else rng
        else:
            if len(args) > 1 or (args and rng is not None):
                raise TypeError("a feed-forward policy is called as policy(obs, rng=None)")
            carry, rng = (), args[0] if args else rng
        obs = jax.tree.map(jnp.asarray, obs)
        first_obs, first_spec = jax.tree.leaves(obs)[0], jax.tree.leaves(self.vec_env.obs_spec)[0]
        unbatched = first_obs.ndim == first_spec.ndim
        if unbatched:
            obs = jax.tree.map(lambda x: x[None], obs)
            carry = jax.tree.map(lambda x: jnp.asarray(x)[None], carry)
        action, carry = _policy_step(
            self.config, self.vec_env, self.network, self.params, self.obs_stats, carry, obs, rng
        )
        if unbatched:
            action, carry = action[0], jax.tree.map(lambda x: x[0], carry)
        return (action, carry) if self.recurrent else action


def make_policy(
    trained: TrainOutput | TrainState | Any,
    config: PPOConfig | Mapping[str, Any],
    env: Any = None,
    env_params: Any = None,
    obs_stats: ObsStats | None = None,
    network: Any = None,
) -> Policy:
    """A compiled :class:`Policy` for deployment or rendering: ``act(obs, rng=None) ->
    action`` (feed-forward) or ``act(obs, carry, rng=None) -> (action, carry)``
    (recurrent, from ``act.initial_carry()``).

    ``trained``: the ``TrainOutput`` of one seed (or its ``train_state`` / params, with
    ``obs_stats`` if the config normalises observations). ``network``: the module it was
    trained with, if not the built-in ``config.network``. The parameters are an argument
    of the compiled program, not constants in it: policies of other parameters
    (checkpoints, seeds) of the same config and env share one compilation.
    """
    config = as_config(config)
    params, obs_stats = _params_and_obs_stats(trained, obs_stats)
    _check_obs_stats(config, obs_stats)
    vec_env = _vec_env(config, env, env_params, 1)
    network = _network(config, vec_env, network)
    return Policy(config, vec_env, network, params, obs_stats, is_recurrent(network))


def evaluate(
    trained: TrainOutput | TrainState | Any,
    config: PPOConfig | Mapping[str, Any],
    rng: jax.Array,
    num_episodes: int = 100,
    deterministic: bool = True,
    env: Any = None,
    env_params: Any = None,
    obs_stats: ObsStats | None = None,
    max_steps: int | None = None,
    network: Any = None,
) -> EvalResult:
    """Run ``num_episodes`` full episodes in parallel; returns their returns and lengths.

    Each of ``num_episodes`` envs plays exactly one episode (its first), for at most
    ``max_steps`` steps (default: the env's ``max_steps_in_episode``, where gymnax
    truncates). A recurrent network's carry is threaded through each episode from its
    initial carry. ``network``: the module trained, if not the built-in
    ``config.network``. Rewards are the raw env rewards, never normalised. Jittable and
    vmappable over ``rng`` and over a seed-batched ``trained`` (Python arguments are
    static: close over them). The parameters and statistics are arguments of one
    compiled program per (config, env, episode count, ``max_steps``, ``deterministic``):
    evaluating other parameters (e.g. checkpoints in a loop) does not compile again.
    """
    config = as_config(config)
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"num_episodes must be a positive integer, got {num_episodes!r}")
    vec_env = _vec_env(config, env, env_params, num_episodes)
    if max_steps is None:
        max_steps = episode_limit(config.env_name, vec_env.env_params, vec_env.env)
    params, obs_stats = _params_and_obs_stats(trained, obs_stats)
    _check_obs_stats(config, obs_stats)
    network = _network(config, vec_env, network)
    return _evaluate(
        config, vec_env, network, int(max_steps), bool(deterministic), params, obs_stats, rng
    )


def run_episodes(
    vec_env: VecEnv,
    step: PolicyStep,
    carry: Any,
    rng: jax.Array,
    max_steps: int,
    deterministic: bool = True,
) -> EvalResult:
    """Each of ``vec_env.num_envs`` envs plays its first episode with the policy ``step``
    (:func:`policy_step_fn`: raw observations in, env actions out, the network's ``carry``
    threaded through) for at most ``max_steps`` steps."""
    num_episodes = vec_env.num_envs
    reset_key, rng = jax.random.split(rng)
    obs, state = vec_env.reset(reset_key)

    class Carry(NamedTuple):
        obs: Any
        state: Any
        network_carry: Any
        episode_start: jax.Array
        finished: jax.Array
        episode_return: jax.Array
        episode_length: jax.Array

    def env_step(carry: Carry, key: jax.Array) -> tuple[Carry, None]:
        action_key, step_key = jax.random.split(key)
        action, network_carry = step(
            carry.network_carry,
            carry.obs,
            carry.episode_start,
            None if deterministic else action_key,
        )
        transition, state = vec_env.step(step_key, carry.state, action, 1.0)
        running = ~carry.finished
        return Carry(
            obs=transition.obs,
            state=state,
            network_carry=network_carry,
            episode_start=transition.done,
            finished=carry.finished | transition.done,
            episode_return=carry.episode_return + jnp.where(running, transition.reward, 0.0),
            episode_length=carry.episode_length + running.astype(jnp.int32),
        ), None

    start = Carry(
        obs,
        state,
        carry,
        jnp.ones(num_episodes, bool),
        jnp.zeros(num_episodes, bool),
        jnp.zeros(num_episodes, jnp.float32),
        jnp.zeros(num_episodes, jnp.int32),
    )
    final, _ = jax.lax.scan(env_step, start, jax.random.split(rng, max_steps))
    return EvalResult(final.episode_return, final.episode_length)


def episode_limit(env_name: str, env_params: Any, env: Any = None) -> int:
    """Where the env truncates: ``env.episode_limit(env_params)`` if the env defines it
    (Craftax's adapter), else ``env_params.max_steps_in_episode`` (gymnax's)."""
    limit = getattr(env, "episode_limit", None)
    max_steps = limit(env_params) if callable(limit) else None
    if max_steps is None:
        max_steps = getattr(env_params, "max_steps_in_episode", None)
    if max_steps is None:
        raise ValueError(f"{env_name} has no max_steps_in_episode: pass max_steps")
    return int(max_steps)
