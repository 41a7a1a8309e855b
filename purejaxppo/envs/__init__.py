"""Environments: one contract (gymnax >= 1.0's step, auto-reset, ``final_observation``),
:class:`VecEnv` to batch it, and one adapter module per env suite.

- :mod:`~purejaxppo.envs.spaces`: action specs, :class:`MultiDiscrete`, action masks and
  structured observations.
- :mod:`~purejaxppo.envs.vec_env`: :class:`VecEnv`, episode statistics, normalisation.
- :mod:`~purejaxppo.envs.reset_pool`: a pool of fresh resets for envs whose reset is
  costly (``resets_per_step``).
- :mod:`~purejaxppo.envs.registry`: :func:`make_env` for gymnax names and prefixed
  suite names (``"brax:ant"``, ``"craftax:..."``, ``"pgx:2048"``, ``"jumanji:..."``).
- ``brax_suite``, ``craftax_suite``, ``pgx_suite``, ``jumanji_suite``: the adapters,
  imported only when their suite is asked for.
"""

from purejaxppo.envs.extra import ENV_ALIASES, EXTRA_ENVS, StatelessCartPole
from purejaxppo.envs.registry import (
    NEEDS_DOWNLOAD,
    SUITES,
    Suite,
    make_env,
    offline_env_names,
    suite_env_names,
    suite_of,
)
from purejaxppo.envs.reset_pool import ResetPool, take_resets
from purejaxppo.envs.spaces import (
    ACTION_MASK_KEY,
    ActionSpec,
    MultiDiscrete,
    action_mask_of,
    action_spec,
    observation_layout,
)
from purejaxppo.envs.vec_env import (
    MAX_RESET_DRAW_BYTES,
    EnvDraws,
    EnvStep,
    ObsStats,
    RunningMeanStd,
    VecEnv,
    VecEnvState,
    normalize_observation,
    observation_stats,
    update_observation_stats,
    uses_gymnax_step,
)

__all__ = [
    "ACTION_MASK_KEY",
    "ENV_ALIASES",
    "EXTRA_ENVS",
    "MAX_RESET_DRAW_BYTES",
    "NEEDS_DOWNLOAD",
    "SUITES",
    "ActionSpec",
    "EnvDraws",
    "EnvStep",
    "MultiDiscrete",
    "ObsStats",
    "ResetPool",
    "RunningMeanStd",
    "StatelessCartPole",
    "Suite",
    "VecEnv",
    "VecEnvState",
    "action_mask_of",
    "action_spec",
    "make_env",
    "normalize_observation",
    "observation_layout",
    "observation_stats",
    "offline_env_names",
    "suite_env_names",
    "suite_of",
    "take_resets",
    "update_observation_stats",
    "uses_gymnax_step",
]
