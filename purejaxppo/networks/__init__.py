"""Networks: the protocol every network follows, the action distributions, and the
built-in networks chosen by ``PPOConfig(network=...)``.

``"mlp"`` (:class:`ActorCritic`), ``"cnn"`` (:class:`CNNActorCritic`), ``"gru"`` and
``"lstm"`` (:class:`RecurrentActorCritic`); any flax module that follows
:mod:`purejaxppo.networks.protocol` can be passed as ``network=`` instead.
"""

from __future__ import annotations

from typing import Any

from purejaxppo.networks.cnn import CNNActorCritic, PatchConv, check_image_shape
from purejaxppo.networks.distributions import (
    MASKED_LOGIT,
    PolicyParams,
    action_noise,
    distribution_mode,
    make_distribution,
    mask_policy,
    sample_with_noise,
    shared_log_std,
)
from purejaxppo.networks.init import orthogonal_init, orthogonal_kernels
from purejaxppo.networks.mlp import (
    ACTIVATION_FNS,
    ACTOR_OUT_GAIN,
    CRITIC_OUT_GAIN,
    MLP,
    ActorCritic,
    actor_critic_heads,
    flatten_observation,
    is_structured,
    mlp_kernel_gains,
    observation_size,
)
from purejaxppo.networks.protocol import (
    NetworkOutput,
    apply_network,
    as_obs_spec,
    check_network,
    init_variables,
    is_recurrent,
    reset_carry,
)
from purejaxppo.networks.recurrent import RecurrentActorCritic


def builtin_network(
    config: Any,
    obs_shape: Any,
    action_dim: int,
    discrete: bool,
    nvec: tuple[int, ...] | None = None,
) -> Any:
    """The built-in network ``config.network`` names, for this observation shape (or
    structured layout, :func:`purejaxppo.envs.observation_layout`) and action space
    (``ValueError`` if a ``"cnn"`` would not see an image)."""
    common = {
        "action_dim": action_dim,
        "discrete": discrete,
        "nvec": nvec,
        "obs_shape": tuple(obs_shape),
        "hidden_sizes": config.hidden_sizes,
        "activation": config.activation,
        "log_std_init": config.log_std_init,
    }
    if config.network == "mlp":
        return ActorCritic(**common)
    if config.network == "cnn":
        check_image_shape(tuple(obs_shape))
        return CNNActorCritic(**common)
    return RecurrentActorCritic(cell=config.network, hidden_size=config.rnn_hidden_size, **common)


__all__ = [
    "ACTIVATION_FNS",
    "ACTOR_OUT_GAIN",
    "CRITIC_OUT_GAIN",
    "MASKED_LOGIT",
    "MLP",
    "ActorCritic",
    "CNNActorCritic",
    "NetworkOutput",
    "PatchConv",
    "PolicyParams",
    "RecurrentActorCritic",
    "action_noise",
    "actor_critic_heads",
    "apply_network",
    "as_obs_spec",
    "builtin_network",
    "check_image_shape",
    "check_network",
    "distribution_mode",
    "flatten_observation",
    "init_variables",
    "is_recurrent",
    "is_structured",
    "make_distribution",
    "mask_policy",
    "mlp_kernel_gains",
    "observation_size",
    "orthogonal_init",
    "orthogonal_kernels",
    "reset_carry",
    "sample_with_noise",
    "shared_log_std",
]
