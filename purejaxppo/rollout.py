"""Collect one rollout: ``num_steps`` steps of ``num_envs`` environments (a ``lax.scan``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from purejaxppo.envs import EnvDraws, VecEnv, VecEnvState
from purejaxppo.networks import (
    NetworkOutput,
    PolicyParams,
    action_noise,
    apply_network,
    make_distribution,
    sample_with_noise,
    shared_log_std,
)


class RunnerState(NamedTuple):
    """Everything that changes from one update to the next (and the evaluation stream)."""

    train_state: TrainState
    env_state: VecEnvState
    obs: Any  # [N, *obs_shape] (leaves, if structured): what the policy acts on next
    rng: jax.Array  # training's stream: split every update
    kl_beta: jax.Array  # the KL-penalty coefficient (adapted per update by "kl_penalty")
    eval_rng: jax.Array  # periodic evaluation's own stream, never split by training
    carry: Any  # the network's carry after the observation before obs: [N, ...]; () if none
    episode_start: jax.Array  # [N] bool: obs is the first observation of its episode


class Transition(NamedTuple):
    """One rollout step, stacked by the scan to ``[T, N, ...]``: what the update needs,
    each thing stored once.

    ``obs``: the observation the policy acted on, in the env's own dtype (float32 when
    normalised; the network casts). ``policy_params`` describe the collecting policy
    pi_old(. | obs); a state-independent ``log_std`` is stored once, ``[A]``, not per
    step. ``action`` is its unclipped sample and ``log_prob`` the sample's log-probability.
    ``value`` = V(obs); ``next_value`` = V of the true next observation (the episode's
    final one where it ended, before the auto-reset), what GAE bootstraps with.
    ``reward`` is the learning reward (scaled under reward normalisation);
    ``episode_return`` / ``episode_length`` the raw totals of the episode that ended at
    this step (meaningful where ``done``). ``episode_start``: ``obs`` is the first
    observation of its episode (what a recurrent network resets its carry on).
    ``start_carry``: the network's carry before the rollout's first step, ``[N, ...]``
    (``()`` for a feed-forward network): stored once per rollout, not per step.
    """

    obs: Any
    episode_start: jax.Array
    action: jax.Array
    policy_params: PolicyParams
    log_prob: jax.Array
    value: jax.Array
    next_value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    start_carry: Any = ()

    @property
    def done(self) -> jax.Array:
        """The episode ended at this step, by termination or truncation."""
        return self.terminated | self.truncated


class _StepInputs(NamedTuple):
    """What the rollout draws for every step before it starts, ``[T, ...]``."""

    action_noise: jax.Array  # [T, N, A]
    env_draws: EnvDraws  # [T, N, ...]


class _StepCarry(NamedTuple):
    runner: RunnerState
    previous_final_obs: Any  # [N, *obs_shape]: the last step's true next observation


def _concat(a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b)


def _lead(tree: Any) -> Any:
    """A length-1 time axis in front of every leaf: ``[N, ...]`` -> ``[1, N, ...]``."""
    return jax.tree.map(lambda x: x[None], tree)


def first_step_outputs(out: NetworkOutput, num_envs: int) -> NetworkOutput:
    """The first ``num_envs`` of a ``[1, 2N]`` network output, without its time axis:
    carry ``[N, ...]``, policy ``[N, A]`` (a state-independent ``[A]`` log-std as it is),
    value ``[N]``."""

    def first(x: jax.Array) -> jax.Array:
        return x[0, :num_envs]

    log_std = out.policy.log_std
    if log_std is not None and shared_log_std(out.policy) is None:
        log_std = first(log_std)
    policy = out.policy.replace(logits_or_mean=first(out.policy.logits_or_mean), log_std=log_std)
    carry = jax.tree.map(lambda x: x[:num_envs], out.carry)
    return NetworkOutput(carry, policy, out.value[0, :num_envs])


def collect_rollout(
    vec_env: VecEnv, num_steps: int, gamma: jax.Array, runner: RunnerState
) -> tuple[RunnerState, Transition]:
    """Act for ``num_steps`` steps with the current policy; returns ``Transition[T, N]``.

    The randomness of all ``T`` steps (action noise, env keys and, where
    :meth:`VecEnv.draws_resets`, the envs' resets) is drawn before the scan: on CPU every
    call of the random-number generator is a loop of small kernels, so three calls per
    rollout instead of three per step take them out of the step loop.

    V(final observation) is computed in the loop, so the rollout keeps one observation per
    step: step ``t`` runs the network on ``obs_t`` for pi(obs_t) and the new carry, and
    on ``[obs_t; final_obs_{t-1}]`` (``[2N]``) for the values: V(obs_t) and the previous
    step's next value in the same ops (at this size a step's cost is the number of ops,
    not their width); the last step's is computed after the loop. Both calls start from
    the carry after step ``t - 1``; ``obs_t`` resets it where an episode starts,
    ``final_obs_{t-1}`` never (it continues the finished episode's memory).

    For the MLP, XLA drops what each call does not use (the critic of the first, the
    actor of the second): the actor runs on ``[N]`` rows and the critic on ``[2N]``, as
    before networks were pluggable, and the results are bit-identical to then (an actor
    on ``[2N]`` rows rounds differently). A network with a shared torso (CNN, GRU) runs
    it on ``3N`` rows per step.
    """
    train_state = runner.train_state
    apply_fn, params = train_state.apply_fn, train_state.params
    num_envs = vec_env.num_envs
    rng, noise_key, env_key = jax.random.split(runner.rng, 3)
    spec = vec_env.action_spec
    # drawn for all the agent's envs; data parallel: each device keeps its envs' block
    noise = action_noise(noise_key, (num_steps, vec_env.total_envs, spec.dim), spec.discrete)
    inputs = _StepInputs(
        vec_env.collectives.take_block(noise, axis=1), vec_env.draw(env_key, num_steps)
    )
    never_starts = jnp.zeros(num_envs, bool)
    log_std = shared_log_std(
        apply_network(
            apply_fn, params, runner.carry, _lead(runner.obs), runner.episode_start[None]
        ).policy
    )

    def env_step(carry: _StepCarry, inputs: _StepInputs) -> tuple[_StepCarry, Transition]:
        runner = carry.runner
        out = first_step_outputs(
            apply_network(
                apply_fn, params, runner.carry, _lead(runner.obs), runner.episode_start[None]
            ),
            num_envs,
        )
        values = apply_network(
            apply_fn,
            params,
            _concat(runner.carry, runner.carry),
            _lead(_concat(runner.obs, carry.previous_final_obs)),
            jnp.concatenate([runner.episode_start, never_starts])[None],
        ).value[0]
        action = sample_with_noise(out.policy, inputs.action_noise)
        log_prob = make_distribution(out.policy).log_prob(action)
        step, env_state = vec_env.step_drawn(inputs.env_draws, runner.env_state, action, gamma)
        transition = Transition(
            obs=runner.obs,
            episode_start=runner.episode_start,
            action=action,
            policy_params=out.policy if log_std is None else out.policy.replace(log_std=None),
            log_prob=log_prob,
            value=values[:num_envs],
            next_value=values[num_envs:],  # of step t - 1: shifted after the loop
            reward=step.reward,
            terminated=step.terminated,
            truncated=step.truncated,
            episode_return=step.episode_return,
            episode_length=step.episode_length,
        )
        runner = runner._replace(
            env_state=env_state, obs=step.obs, carry=out.carry, episode_start=step.done
        )
        return _StepCarry(runner, step.final_obs), transition

    carry, traj = jax.lax.scan(env_step, _StepCarry(runner, runner.obs), inputs)
    last = apply_network(
        apply_fn, params, carry.runner.carry, _lead(carry.previous_final_obs), never_starts[None]
    )
    next_value = jnp.concatenate([traj.next_value[1:], last.value])
    traj = traj._replace(next_value=next_value, start_carry=runner.carry)
    if log_std is not None:
        traj = traj._replace(policy_params=traj.policy_params.replace(log_std=log_std))
    return carry.runner._replace(rng=rng), traj


def per_sample_policy(policy: PolicyParams) -> PolicyParams:
    """``policy`` with a shared ``[A]`` log-std broadcast to the mean's shape ``[..., A]``
    (what minibatching, which indexes every leaf per sample, needs)."""
    log_std = shared_log_std(policy)
    if log_std is None:
        return policy
    return policy.replace(log_std=jnp.broadcast_to(log_std, policy.logits_or_mean.shape))
