"""purejaxppo: fast, correct PPO for JAX environments (gymnax; Brax, Craftax, pgx and
Jumanji by a prefixed name), in one jitted function.

>>> import jax
>>> from purejaxppo import PPOConfig, make_train
>>> train = make_train(PPOConfig(env_name="CartPole-v1", total_timesteps=500_000))
>>> out = jax.jit(train)(jax.random.key(0))          # doctest: +SKIP

The names below are imported on first use (PEP 562), so ``import purejaxppo`` is quick and
touches no JAX backend: a multi-process run can still call
``purejaxppo.parallel.initialize`` (``jax.distributed.initialize``) first.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.5.0"

# public name -> the module that defines it
_EXPORTS = {
    "CheckpointError": "purejaxppo.checkpoint",
    "load_checkpoint": "purejaxppo.checkpoint",
    "save_checkpoint": "purejaxppo.checkpoint",
    "PPOConfig": "purejaxppo.config",
    "PPOHyperparams": "purejaxppo.config",
    "EnvDraws": "purejaxppo.envs",
    "MultiDiscrete": "purejaxppo.envs",
    "RunningMeanStd": "purejaxppo.envs",
    "VecEnv": "purejaxppo.envs",
    "VecEnvState": "purejaxppo.envs",
    "make_env": "purejaxppo.envs",
    "offline_env_names": "purejaxppo.envs",
    "suite_env_names": "purejaxppo.envs",
    "EvalResult": "purejaxppo.evaluate",
    "Policy": "purejaxppo.evaluate",
    "evaluate": "purejaxppo.evaluate",
    "make_policy": "purejaxppo.evaluate",
    "compute_gae": "purejaxppo.gae",
    "Batch": "purejaxppo.losses",
    "LossCoefficients": "purejaxppo.losses",
    "LossInfo": "purejaxppo.losses",
    "LossTerms": "purejaxppo.losses",
    "approx_kl": "purejaxppo.losses",
    "clip_fraction": "purejaxppo.losses",
    "clipped_surrogate": "purejaxppo.losses",
    "clipped_surrogate_loss": "purejaxppo.losses",
    "policy_loss": "purejaxppo.losses",
    "ppo_loss": "purejaxppo.losses",
    "ppo_loss_terms": "purejaxppo.losses",
    "ppo_objective_with_diagnostics": "purejaxppo.losses",
    "summarize_loss_terms": "purejaxppo.losses",
    "value_loss": "purejaxppo.losses",
    "ActorCritic": "purejaxppo.networks",
    "CNNActorCritic": "purejaxppo.networks",
    "NetworkOutput": "purejaxppo.networks",
    "PolicyParams": "purejaxppo.networks",
    "RecurrentActorCritic": "purejaxppo.networks",
    "make_distribution": "purejaxppo.networks",
    "Transition": "purejaxppo.rollout",
    "Trainer": "purejaxppo.train",
    "TrainerState": "purejaxppo.train",
    "TrainOutput": "purejaxppo.train",
    "final_return": "purejaxppo.train",
    "make_train": "purejaxppo.train",
    "make_trainer": "purejaxppo.train",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from purejaxppo.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from purejaxppo.config import PPOConfig, PPOHyperparams
    from purejaxppo.envs import (
        EnvDraws,
        MultiDiscrete,
        RunningMeanStd,
        VecEnv,
        VecEnvState,
        make_env,
        offline_env_names,
        suite_env_names,
    )
    from purejaxppo.evaluate import EvalResult, Policy, evaluate, make_policy
    from purejaxppo.gae import compute_gae
    from purejaxppo.losses import (
        Batch,
        LossCoefficients,
        LossInfo,
        LossTerms,
        approx_kl,
        clip_fraction,
        clipped_surrogate,
        clipped_surrogate_loss,
        policy_loss,
        ppo_loss,
        ppo_loss_terms,
        ppo_objective_with_diagnostics,
        summarize_loss_terms,
        value_loss,
    )
    from purejaxppo.networks import (
        ActorCritic,
        CNNActorCritic,
        NetworkOutput,
        PolicyParams,
        RecurrentActorCritic,
        make_distribution,
    )
    from purejaxppo.rollout import Transition
    from purejaxppo.train import (
        Trainer,
        TrainerState,
        TrainOutput,
        final_return,
        make_train,
        make_trainer,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # a submodule (purejaxppo.networks, ...), as an eager package had
        if name.startswith("_") or importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module 'purejaxppo' has no attribute {name!r}")
        return importlib.import_module(f"{__name__}.{name}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "ActorCritic",
    "Batch",
    "CNNActorCritic",
    "CheckpointError",
    "EnvDraws",
    "EvalResult",
    "LossCoefficients",
    "LossInfo",
    "LossTerms",
    "MultiDiscrete",
    "NetworkOutput",
    "PPOConfig",
    "PPOHyperparams",
    "Policy",
    "PolicyParams",
    "RecurrentActorCritic",
    "RunningMeanStd",
    "TrainOutput",
    "Trainer",
    "TrainerState",
    "Transition",
    "VecEnv",
    "VecEnvState",
    "__version__",
    "approx_kl",
    "clip_fraction",
    "clipped_surrogate",
    "clipped_surrogate_loss",
    "compute_gae",
    "evaluate",
    "final_return",
    "load_checkpoint",
    "make_distribution",
    "make_env",
    "make_policy",
    "make_train",
    "make_trainer",
    "offline_env_names",
    "policy_loss",
    "ppo_loss",
    "ppo_loss_terms",
    "ppo_objective_with_diagnostics",
    "save_checkpoint",
    "suite_env_names",
    "summarize_loss_terms",
    "value_loss",
]
