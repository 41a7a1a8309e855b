"""purejaxppo: fast, correct PPO for JAX environments (gymnax; Brax, Craftax, pgx and
Jumanji by a prefixed name), in one jitted function.

>>> import jax
>>> from purejaxppo import PPOConfig, make_train
>>> train = make_train(PPOConfig(env_name="CartPole-v1", total_timesteps=500_000))
>>> out = jax.jit(train)(jax.random.key(0))          # doctest: +SKIP
"""

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

__version__ = "0.5.0"

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
