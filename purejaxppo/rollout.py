"""Collect one rollout: ``num_steps`` steps of ``num_envs`` environments (a ``lax.scan``)."""

from __future__ import annotations

from typing import NamedTuple

import jax
from flax.training.train_state import TrainState

from purejaxppo.envs import EnvDraws, EnvStep, VecEnv, VecEnvState
from purejaxppo.networks import PolicyParams, action_noise, make_distribution, sample_with_noise


class RunnerState(NamedTuple):
    """Everything that changes from one update to the next."""

    train_state: TrainState
    env_state: VecEnvState
    obs: jax.Array  # [N, *obs_shape]: what the policy acts on next
    rng: jax.Array
    kl_beta: jax.Array  # the KL-penalty coefficient (adapted per update by "kl_penalty")


class Transition(NamedTuple):
    """One rollout step; stacked by the scan to ``[T, N, ...]``.

    ``policy_params`` describe the collecting policy pi_old(. | obs); ``action`` is its
    unclipped sample and ``log_prob`` the sample's log-probability; ``value`` is V(obs).
    ``step`` is what the env returned.
    """

    obs: jax.Array
    action: jax.Array
    policy_params: PolicyParams
    log_prob: jax.Array
    value: jax.Array
    step: EnvStep


class _StepInputs(NamedTuple):
    """What the rollout draws for every step before it starts, ``[T, ...]``."""

    action_noise: jax.Array  # [T, N, A]
    env_draws: EnvDraws  # [T, N, ...]


def collect_rollout(
    vec_env: VecEnv, num_steps: int, gamma: jax.Array, runner: RunnerState
) -> tuple[RunnerState, Transition]:
    """Act for ``num_steps`` steps with the current policy; returns ``Transition[T, N]``.

    The randomness of all ``T`` steps (action noise, env keys and, where
    :meth:`VecEnv.draws_resets`, the envs' resets) is drawn before the scan: on CPU every
    call of the random-number generator is a loop of small kernels, so a few calls per
    rollout instead of a few per step take them out of the step loop.
    """
    train_state = runner.train_state
    rng, noise_key, env_key = jax.random.split(runner.rng, 3)
    spec = vec_env.action_spec
    inputs = _StepInputs(
        action_noise(noise_key, (num_steps, vec_env.num_envs, spec.dim), spec.discrete),
        vec_env.draw(env_key, num_steps),
    )

    def env_step(runner: RunnerState, inputs: _StepInputs) -> tuple[RunnerState, Transition]:
        policy_params, value = train_state.apply_fn(
            train_state.params, runner.obs, method="policy_params_and_value"
        )
        action = sample_with_noise(policy_params, inputs.action_noise)
        log_prob = make_distribution(policy_params).log_prob(action)
        step, env_state = vec_env.step_drawn(inputs.env_draws, runner.env_state, action, gamma)
        transition = Transition(runner.obs, action, policy_params, log_prob, value, step)
        return runner._replace(env_state=env_state, obs=step.obs), transition

    runner, traj = jax.lax.scan(env_step, runner, inputs)
    return runner._replace(rng=rng), traj
