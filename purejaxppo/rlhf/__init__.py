"""RLHF in miniature: token-level PPO on a tiny transformer language model, with a reward
model learned from noisy preferences and a per-token KL leash to the reference model.

The three stages, each a pure, jittable function of a key (``config`` static):

>>> from purejaxppo import rlhf
>>> config = rlhf.RLHFConfig()
>>> reference, _ = jax.jit(rlhf.pretrain_reference, static_argnums=0)(config, key)
>>> reward_model = jax.jit(rlhf.train_reward_model, static_argnums=0)(config, reference, key)
>>> train = rlhf.make_rlhf_train(config, reference, reward_model.params)
>>> state, metrics = jax.jit(jax.vmap(train))(jax.random.split(key, 16))  # 16 seeds

The task, its hidden true quality and the reward model's blind spot:
:mod:`purejaxppo.rlhf.language`. PPO's pieces (clipped objective, value loss,
diagnostics, GAE, the adaptive-KL rule, the optimiser) are the library's own.
"""

from purejaxppo.rlhf.config import RLHF_OBJECTIVES, RLHFConfig, RLHFHyperparams
from purejaxppo.rlhf.language import decode, sample_prompts, sample_sentences, true_quality
from purejaxppo.rlhf.model import LMOutput, TransformerLM
from purejaxppo.rlhf.ppo import (
    RLHFState,
    Rollout,
    exact_kl,
    make_rlhf_train,
    per_token_rewards,
    token_advantages,
)
from purejaxppo.rlhf.reference import make_model, pretrain_reference, sample_responses
from purejaxppo.rlhf.reward_model import (
    Preferences,
    RewardModelResult,
    bradley_terry_loss,
    sample_preferences,
    score,
    train_reward_model,
)

__all__ = [
    "RLHF_OBJECTIVES",
    "LMOutput",
    "Preferences",
    "RLHFConfig",
    "RLHFHyperparams",
    "RLHFState",
    "RewardModelResult",
    "Rollout",
    "TransformerLM",
    "bradley_terry_loss",
    "decode",
    "exact_kl",
    "make_model",
    "make_rlhf_train",
    "per_token_rewards",
    "pretrain_reference",
    "sample_preferences",
    "sample_prompts",
    "sample_responses",
    "sample_sentences",
    "score",
    "token_advantages",
    "train_reward_model",
    "true_quality",
]
