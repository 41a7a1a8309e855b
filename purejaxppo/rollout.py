"""Collect one rollout: ``num_steps`` steps of ``num_envs`` environments (a ``lax.scan``)."""

from __future__ import annotations

from typing import NamedTuple

import jax
from flax.training.train_state import TrainState

from purejaxppo.envs import EnvStep, VecEnv, VecEnvState
from purejaxppo.networks import PolicyParams, make_distribution


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


def collect_rollout(
    vec_env: VecEnv, num_steps: int, gamma: jax.Array, runner: RunnerState
) -> tuple[RunnerState, Transition]:
    """Act for ``num_steps`` steps with the current policy; returns ``Transition[T, N]``."""
    train_state = runner.train_state

    def env_step(runner: RunnerState, _: None) -> tuple[RunnerState, Transition]:
        rng, action_key, step_key = jax.random.split(runner.rng, 3)
        policy_params, value = train_state.apply_fn(
            train_state.params, runner.obs, method="policy_params_and_value"
        )
        action, log_prob = make_distribution(policy_params).sample_and_log_prob(seed=action_key)
        step, env_state = vec_env.step(step_key, runner.env_state, action, gamma)
        transition = Transition(runner.obs, action, policy_params, log_prob, value, step)
        runner = runner._replace(env_state=env_state, obs=step.obs, rng=rng)
        return runner, transition

    return jax.lax.scan(env_step, runner, None, length=num_steps)
