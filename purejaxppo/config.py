"""PPOConfig: every setting of a training run, validated before anything is traced.

Field names are PureJaxRL's config keys in lower_snake_case (``LR`` -> ``lr``), so a
PureJaxRL config dict can be passed to :meth:`PPOConfig.from_dict` unchanged
(:func:`map_config_keys` does the key mapping, for the CLI too).
Sizes that fix array shapes are Python ints; the float hyperparameters that do not fix
a shape are also exposed as a pytree (:class:`PPOHyperparams`) so ``jax.vmap`` can sweep
them without retracing.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

ACTIVATIONS = ("tanh", "relu", "elu", "gelu", "silu")
POLICY_OBJECTIVES = ("clip", "kl_penalty", "kl_fixed", "unclipped")
GRAD_CLIPS = ("global", "per_network")
NETWORKS = ("mlp", "cnn", "gru", "lstm")
RECURRENT_NETWORKS = ("gru", "lstm")

# PureJaxRL keys that do not map one-to-one onto a field (after lower-casing).
_PUREJAXRL_ALIASES: dict[str, tuple[str, ...]] = {
    "normalize_env": ("normalize_obs", "normalize_reward"),
}
# PureJaxRL keys (in its ppo*.py scripts) that do not change what is trained: accepted and
# ignored, with what to use here instead.
_PUREJAXRL_IGNORED: dict[str, str] = {
    "debug": "prints episode returns from inside the jitted loop; here use progress=True "
    "or the episode_return metric",
}
# Sizes PureJaxRL's make_train derives and writes into the dict it is given; a dict that
# went through it carries them. Accepted when they equal this config's property of that name.
_PUREJAXRL_DERIVED = ("num_updates", "minibatch_size")
# PureJaxRL keys that would change training but have no counterpart here.
_PUREJAXRL_UNSUPPORTED: dict[str, str] = {
    "dpo_alpha": "DPO (PureJaxRL's dpo_continuous_action.py) is not implemented here; remove "
    "DPO_ALPHA and DPO_BETA to train PPO, or see policy_objective for the objectives "
    f"available {POLICY_OBJECTIVES}",
}
_PUREJAXRL_UNSUPPORTED["dpo_beta"] = _PUREJAXRL_UNSUPPORTED["dpo_alpha"]
# NumPy dtype kinds converted to Python scalars: bool, signed/unsigned int, float, str.
_NUMPY_KINDS = "biufU"


class PPOHyperparams(NamedTuple):
    """The float hyperparameters of a run, as arrays so that ``vmap`` can sweep them.

    None of these fixes a shape, so a batch of them (leading axis) passed to
    ``jax.vmap(train)`` trains one agent per value inside a single compiled program.
    """

    lr: Any
    gamma: Any
    gae_lambda: Any
    clip_eps: Any
    ent_coef: Any
    vf_coef: Any
    max_grad_norm: Any
    kl_target: Any
    kl_beta_init: Any


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """A PPO training run. Defaults are PureJaxRL's CartPole-v1 configuration.

    ``num_updates = total_timesteps // (num_envs * num_steps)``: a budget that is not a
    multiple of one batch trains ``num_updates * batch_size`` steps (as PureJaxRL does),
    which :attr:`trained_timesteps` reports and the ``env_steps`` metric counts.

    Values may be Python or NumPy scalars (``np.float32(3e-4)``, ``np.int64(8)``,
    ``np.bool_(True)``, 0-d arrays): NumPy ones are stored as the Python scalar of the same
    kind with the same value (``float(np.float32(3e-4))``), so a config stays hashable and
    :meth:`to_dict` stays JSON-serialisable. An int field takes a whole float (``5e5`` is
    500000) and refuses any other float.

    Fields beyond PureJaxRL's (their defaults are its behaviour):

    - ``grad_clip``: how ``max_grad_norm`` clips the gradients. ``"global"``: one global
      norm over the actor's and the critic's gradients together (PureJaxRL);
      ``"per_network"``: the actor's and the critic's gradients are each clipped to
      ``max_grad_norm`` separately. One of :data:`GRAD_CLIPS`.
    - ``value_clip_eps``: the range of the clipped value loss,
      ``|V - V_old| <= value_clip_eps`` (with ``clip_value_loss``). None (default) uses the
      policy's clip range, ``clip_eps``, following its schedule (``clip_eps_final``); a
      number must be finite and > 0 and stays constant.

    - ``network``: the built-in network, one of :data:`NETWORKS`: ``"mlp"`` (separate
      actor and critic MLPs of ``hidden_sizes``), ``"cnn"`` (a conv torso for image
      observations, then MLP heads), ``"gru"`` / ``"lstm"`` (recurrent: an embedding, a
      cell of ``rnn_hidden_size`` units, then MLP heads). A recurrent network trains on
      whole rollouts of each env, so its minibatches split the envs: ``num_envs`` must
      be divisible by ``num_minibatches``. ``make_train(config, network=...)`` takes
      your own module instead.
    - ``resets_per_step``: None (default) lets every env draw a fresh reset at every
      step, as gymnax's ``step`` does. ``K`` draws only ``K`` per step (of all
      ``num_envs``) into a pool the envs whose episodes end take from
      (:mod:`purejaxppo.envs.reset_pool`): for envs whose reset costs far more than a
      step (Craftax: 18x). Same distribution while the pool holds enough; the metric
      ``reset_pool_shortfall`` counts the episodes that had to share a reset.

    None of these is a traced hyperparameter: :meth:`hyperparams` does not include them.
    """

    env_name: str = "CartPole-v1"
    total_timesteps: int = 500_000
    num_envs: int = 4
    num_steps: int = 128
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    activation: str = "tanh"
    hidden_sizes: tuple[int, ...] = (64, 64)
    normalize_advantages: bool = True
    clip_value_loss: bool = True
    normalize_obs: bool = False
    normalize_reward: bool = False
    obs_clip: float = 10.0
    reward_clip: float = 10.0
    log_std_init: float = 0.0
    policy_objective: str = "clip"
    kl_target: float = 0.01
    kl_beta_init: float = 1.0
    clip_eps_final: float | None = None
    target_kl: float | None = None
    eval_every: int | None = None
    eval_episodes: int = 16
    grad_clip: str = "global"
    value_clip_eps: float | None = None
    network: str = "mlp"
    rnn_hidden_size: int = 128
    resets_per_step: int | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _python_scalar(getattr(self, field.name)))
        for name in (
            "total_timesteps",
            "num_envs",
            "num_steps",
            "update_epochs",
            "num_minibatches",
            "eval_episodes",
            "rnn_hidden_size",
        ):
            object.__setattr__(self, name, _positive_int(name, getattr(self, name)))
        if self.eval_every is not None:
            object.__setattr__(self, "eval_every", _positive_int("eval_every", self.eval_every))
        if self.resets_per_step is not None:
            resets = _positive_int("resets_per_step", self.resets_per_step)
            if resets > self.num_envs:
                raise ValueError(
                    f"resets_per_step = {resets} exceeds num_envs = {self.num_envs}: use at "
                    "most num_envs resets per step (or None: every env draws its own)"
                )
            object.__setattr__(self, "resets_per_step", resets)
        for name in (
            "anneal_lr",
            "normalize_advantages",
            "clip_value_loss",
            "normalize_obs",
            "normalize_reward",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.env_name, str) or not self.env_name:
            raise ValueError(f"env_name must be a non-empty string, got {self.env_name!r}")

        _check_range("lr", self.lr, low=0.0, low_open=True)
        _check_range("gamma", self.gamma, low=0.0, high=1.0)
        _check_range("gae_lambda", self.gae_lambda, low=0.0, high=1.0)
        _check_range("clip_eps", self.clip_eps, low=0.0, low_open=True)
        _check_range("ent_coef", self.ent_coef, low=0.0)
        _check_range("vf_coef", self.vf_coef, low=0.0)
        _check_range("max_grad_norm", self.max_grad_norm, low=0.0, low_open=True)
        _check_range("obs_clip", self.obs_clip, low=0.0, low_open=True)
        _check_range("reward_clip", self.reward_clip, low=0.0, low_open=True)
        _check_range("log_std_init", self.log_std_init)
        _check_range("kl_target", self.kl_target, low=0.0, low_open=True)
        _check_range("kl_beta_init", self.kl_beta_init, low=0.0)
        if self.clip_eps_final is not None:
            _check_range("clip_eps_final", self.clip_eps_final, low=0.0, low_open=True)
        if self.target_kl is not None:
            _check_range("target_kl", self.target_kl, low=0.0, low_open=True)
        if self.value_clip_eps is not None:
            _check_range("value_clip_eps", self.value_clip_eps, low=0.0, low_open=True)
        if self.policy_objective not in POLICY_OBJECTIVES:
            raise ValueError(
                f"policy_objective must be one of {POLICY_OBJECTIVES}, "
                f"got {self.policy_objective!r}"
            )

        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.network not in NETWORKS:
            raise ValueError(
                f"network must be one of {NETWORKS}{_suggest(str(self.network), list(NETWORKS))}"
                f", got {self.network!r} (or pass your own module: make_train(config, "
                "network=...))"
            )
        if self.grad_clip not in GRAD_CLIPS:
            raise ValueError(f"grad_clip must be one of {GRAD_CLIPS}, got {self.grad_clip!r}")
        sizes = self.hidden_sizes
        if isinstance(sizes, np.ndarray) and sizes.ndim == 1:
            sizes = list(sizes)
        if isinstance(sizes, Sequence) and not isinstance(sizes, str):
            sizes = tuple(_python_scalar(size) for size in sizes)
        if (
            not isinstance(sizes, tuple)
            or len(sizes) == 0
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)
        ):
            raise ValueError(
                "hidden_sizes must be a non-empty sequence of positive ints, e.g. (64, 64); "
                f"got {self.hidden_sizes!r}"
            )
        object.__setattr__(self, "hidden_sizes", sizes)

        if self.batch_size % self.num_minibatches:
            divisors = [
                d for d in range(1, min(self.batch_size, 64) + 1) if self.batch_size % d == 0
            ]
            raise ValueError(
                f"num_envs * num_steps = {self.num_envs} * {self.num_steps} = {self.batch_size}"
                f" must be divisible by num_minibatches = {self.num_minibatches}; "
                f"valid num_minibatches include {divisors}"
            )
        if self.network in RECURRENT_NETWORKS:
            check_sequence_minibatches(self.num_envs, self.num_minibatches, self.network)
        if self.total_timesteps < self.batch_size:
            raise ValueError(
                f"total_timesteps = {self.total_timesteps} is smaller than one batch "
                f"(num_envs * num_steps = {self.batch_size}); use total_timesteps >= "
                f"{self.batch_size} or a smaller num_envs / num_steps"
            )

    # Derived sizes: properties, never stored, so they cannot go stale.
    @property
    def batch_size(self) -> int:
        """Transitions collected per update: ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Transitions per gradient step: ``batch_size // num_minibatches``."""
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        """Rollout-then-update iterations: ``total_timesteps // batch_size``."""
        return self.total_timesteps // self.batch_size

    @property
    def trained_timesteps(self) -> int:
        """Environment steps actually taken: ``num_updates * batch_size``."""
        return self.num_updates * self.batch_size

    def hyperparams(self) -> PPOHyperparams:
        """This config's float hyperparameters as float32 scalars (a vmappable pytree)."""
        return PPOHyperparams(
            **{name: jnp.float32(getattr(self, name)) for name in PPOHyperparams._fields}
        )

    def replace(self, **changes: Any) -> PPOConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields (JSON-serialisable)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> PPOConfig:
        """Build from field names or PureJaxRL's UPPERCASE keys (``{"LR": 2.5e-4, ...}``).

        Keys are mapped by :func:`map_config_keys`: lower-cased; ``NORMALIZE_ENV`` sets both
        ``normalize_obs`` and ``normalize_reward``. Other keys of PureJaxRL's PPO scripts:

        - ``DEBUG`` is accepted and ignored: it only prints episode returns from inside
          PureJaxRL's jitted loop (here: ``progress=True`` or the ``episode_return`` metric).
        - ``NUM_UPDATES`` and ``MINIBATCH_SIZE``, which PureJaxRL's ``make_train`` writes
          into the dict it is given, are accepted when they equal :attr:`num_updates` and
          :attr:`minibatch_size` of the built config (they cannot set them: change
          ``total_timesteps`` / ``num_minibatches``); otherwise ``ValueError``.
        - ``DPO_ALPHA`` / ``DPO_BETA`` (PureJaxRL's DPO script) raise ``ValueError``: DPO
          is not implemented here.

        Unknown keys raise ``ValueError`` naming the closest valid key.
        """
        if isinstance(config, PPOConfig):
            return config
        values = map_config_keys(config)
        stated = {name: values.pop(name) for name in _PUREJAXRL_DERIVED if name in values}
        built = cls(**values)
        for name, value in stated.items():
            actual, number = getattr(built, name), _python_scalar(value)
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number != actual:
                raise ValueError(
                    f"config key {name!r} = {value!r} disagrees with this config's {name} = "
                    f"{actual} (derived from total_timesteps, num_envs, num_steps and "
                    f"num_minibatches); remove it or change those fields"
                )
        return built


def check_sequence_minibatches(num_envs: int, num_minibatches: int, network: str) -> None:
    """A recurrent network's minibatches are whole env sequences: ``ValueError`` unless
    ``num_envs`` is divisible by ``num_minibatches``."""
    if num_envs % num_minibatches:
        divisors = [d for d in range(1, num_envs + 1) if num_envs % d == 0]
        raise ValueError(
            f"network {network!r} is recurrent: its minibatches split the envs (whole "
            f"rollouts of {num_envs} envs), so num_envs = {num_envs} must be divisible by "
            f"num_minibatches = {num_minibatches}; valid num_minibatches: {divisors}"
        )


def map_config_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config``'s keys as PPOConfig field names; values are passed on unvalidated.

    Keys are field names or PureJaxRL's UPPERCASE keys: lower-cased, ``NORMALIZE_ENV``
    expanded to ``normalize_obs`` and ``normalize_reward``, ``DEBUG`` dropped. PureJaxRL's
    derived ``NUM_UPDATES`` / ``MINIBATCH_SIZE`` are kept as ``num_updates`` /
    ``minibatch_size`` for :meth:`PPOConfig.from_dict` to check. Mapping the result again
    gives it back unchanged, so mapped dicts can be merged (the CLI merges a config file with
    its flags) and validated once by ``from_dict``. Raises ``ValueError`` for an unknown key
    (naming the closest valid one), a PureJaxRL key with no counterpart here, or two keys
    that set the same field.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a PPOConfig or a dict, got {type(config).__name__}")
    field_names = [f.name for f in dataclasses.fields(PPOConfig)]
    values: dict[str, Any] = {}
    for key, value in config.items():
        name = str(key).lower()
        if name in _PUREJAXRL_IGNORED:
            continue
        if name in _PUREJAXRL_UNSUPPORTED:
            raise ValueError(
                f"config key {key!r} is a PureJaxRL key this library does not support: "
                f"{_PUREJAXRL_UNSUPPORTED[name]}"
            )
        for target in _PUREJAXRL_ALIASES.get(name, (name,)):
            if target not in field_names and target not in _PUREJAXRL_DERIVED:
                raise ValueError(
                    f"unknown config key {key!r}{_suggest(name, field_names)}; "
                    f"valid keys: {', '.join(field_names)}"
                )
            if target in values:
                raise ValueError(f"config key {key!r} sets {target!r} twice")
            values[target] = value
    return values


def _python_scalar(value: Any) -> Any:
    """A NumPy bool/int/float/str scalar or 0-d array as the Python scalar with the same value
    (``.item()``, exact: ``np.float32(3e-4)`` -> ``float(np.float32(3e-4))``); anything else
    unchanged, for the field's own check to accept or refuse."""
    is_numpy = isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0)
    if is_numpy and value.dtype.kind in _NUMPY_KINDS:
        return value.item()
    return value


def _positive_int(name: str, value: Any) -> int:
    """``value`` as an int if it is a positive whole number (5e5 is accepted as 500000)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_range(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
) -> None:
    """Raise unless ``value`` is a finite real number in ``[low, high]`` (``(low, high]``)."""
    valid = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > low if low_open else value >= low)
        and value <= high
    )
    if not valid:
        bracket = "(" if low_open else "["
        interval = f"{bracket}{low:g}, {high:g}]".replace("inf]", "inf)")
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def as_config(config: PPOConfig | Mapping[str, Any]) -> PPOConfig:
    """Accept a :class:`PPOConfig` or a (PureJaxRL-style) dict."""
    return PPOConfig.from_dict(config)
