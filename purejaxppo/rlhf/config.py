"""RLHFConfig: every setting of RLHF in miniature, validated before anything is traced."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax.numpy as jnp

from purejaxppo.rlhf.language import MAX_SENTENCE_RESPONSE, PROMPT_LENGTH, VOCAB_SIZE

RLHF_OBJECTIVES = ("clip", "unclipped")


class RLHFHyperparams(NamedTuple):
    """The PPO stage's float settings as arrays: ``jax.vmap`` over them is a sweep (e.g.
    over ``beta``) in one program. ``kl_target`` is read only when the config adapts
    beta (``RLHFConfig.kl_target`` set)."""

    lr: jnp.ndarray
    beta: jnp.ndarray
    kl_target: jnp.ndarray
    clip_eps: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class RLHFConfig:
    """The three stages: supervised pre-training of the reference LM (``sft_*``), the
    reward model from preferences (``rm_*``, ``preference_*``), and PPO on generated
    responses with a per-token KL penalty to the reference (the rest).

    Model: ``width``, ``heads``, ``layers``; ``max_length`` positions must hold the
    prompt and ``response_length`` generated tokens. PPO: each update samples one
    response to each of ``num_prompts`` prompts, then runs ``update_epochs`` x
    ``num_minibatches`` gradient steps over them (minibatches of whole responses).
    ``beta``: the KL coefficient in the reward ``r_t = -beta (log pi - log pi_ref)``
    (plus the reward model's score at the last token); with ``kl_target`` (nats per
    response) beta adapts after every update by the PPO paper's rule (halve below
    ``target / 1.5``, double above ``target * 1.5``); None keeps it fixed.
    ``preference_temperature``: the labeller's noise, ``P(a > b) = sigmoid((q_a - q_b) /
    temperature)`` with ``q`` the hidden true quality.
    """

    response_length: int = 12
    max_length: int = 16
    width: int = 32
    heads: int = 4
    layers: int = 2
    sft_steps: int = 1500
    sft_batch_size: int = 64
    sft_lr: float = 1e-3
    preference_pairs: int = 2048
    preference_held_out: int = 512
    preference_temperature: float = 0.25
    rm_epochs: int = 4
    rm_batch_size: int = 64
    rm_lr: float = 3e-4
    num_prompts: int = 64
    num_updates: int = 200
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 1e-4
    max_grad_norm: float = 1.0
    clip_eps: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    gae_lambda: float = 0.95
    objective: str = "clip"
    beta: float = 0.05
    kl_target: float | None = None
    normalize_advantages: bool = True
    temperature: float = 1.0

    def __post_init__(self) -> None:
        positive_ints = (
            "response_length", "max_length", "width", "heads", "layers", "sft_steps",
            "sft_batch_size", "preference_pairs", "preference_held_out", "rm_epochs",
            "rm_batch_size", "num_prompts", "num_updates", "update_epochs", "num_minibatches",
        )  # fmt: skip
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("sft_lr", "rm_lr", "lr", "max_grad_norm", "clip_eps", "temperature",
                     "preference_temperature"):  # fmt: skip
            _check_positive(name, getattr(self, name))
        if self.response_length < MAX_SENTENCE_RESPONSE:
            raise ValueError(
                f"response_length = {self.response_length} cannot hold the language's "
                f"longest sentence ({MAX_SENTENCE_RESPONSE} tokens with EOS); use at least "
                f"{MAX_SENTENCE_RESPONSE}"
            )
        if PROMPT_LENGTH + self.response_length > self.max_length:
            raise ValueError(
                f"the model's max_length = {self.max_length} positions cannot hold a prompt "
                f"({PROMPT_LENGTH} tokens) and response_length = {self.response_length}; use "
                f"max_length >= {PROMPT_LENGTH + self.response_length}"
            )
        if self.width % self.heads:
            raise ValueError(f"width = {self.width} must be divisible by heads = {self.heads}")
        if self.num_prompts % self.num_minibatches:
            raise ValueError(
                f"num_minibatches = {self.num_minibatches} must divide num_prompts = "
                f"{self.num_prompts} (minibatches are whole responses)"
            )
        if self.preference_held_out >= self.preference_pairs:
            raise ValueError(
                f"preference_held_out = {self.preference_held_out} must be smaller than "
                f"preference_pairs = {self.preference_pairs}"
            )
        if self.objective not in RLHF_OBJECTIVES:
            raise ValueError(f"objective must be one of {RLHF_OBJECTIVES}, got {self.objective!r}")
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta)) or (
            self.beta < 0
        ):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta!r}")
        if self.kl_target is not None:
            _check_positive("kl_target", self.kl_target)
            if self.beta == 0:
                raise ValueError(
                    "kl_target adapts beta by halving and doubling it, which cannot leave 0: "
                    "start from beta > 0"
                )
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {self.gae_lambda!r}")

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    @property
    def prompt_length(self) -> int:
        return PROMPT_LENGTH

    @property
    def adaptive_kl(self) -> bool:
        return self.kl_target is not None

    def hyperparams(self) -> RLHFHyperparams:
        """This config's traced PPO settings (``kl_target`` 0 when beta is fixed)."""
        return RLHFHyperparams(
            lr=jnp.float32(self.lr),
            beta=jnp.float32(self.beta),
            kl_target=jnp.float32(self.kl_target or 0.0),
            clip_eps=jnp.float32(self.clip_eps),
        )

    def replace(self, **changes: Any) -> RLHFConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
