"""Shared test helpers: a tiny custom gymnax env, bitwise pytree comparison, and a
primitive count of a jaxpr. Also sets how the suite compiles: XLA's backend optimisation
level 1 and the persistent compilation cache."""

import importlib.util
import os
import sys

# XLA's CPU backend at optimisation level 1 (LLVM's -O1) instead of 2: a sixth to a third
# less compile time and the same run time on this suite's programs, with results equal up
# to float rounding, as on another CPU (test_train.py checks against the default level).
# Set before any backend starts; inherited by the suite's subprocesses and notebook kernels.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1"
    ).strip()
from collections import Counter
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from purejaxppo.compile_cache import CACHE_DIR_ENV, default_cache_dir, enable_compile_cache

# One folder for the xdist workers, the CLI subprocesses and the next run of the suite: a
# program another test (or an earlier run) compiled is loaded instead of compiled again.
# PUREJAXPPO_TEST_COMPILE_CACHE picks another folder; "off" turns the cache off.
_test_cache = os.environ.get("PUREJAXPPO_TEST_COMPILE_CACHE") or default_cache_dir().with_name(
    "jax-compile-tests"
)
if _test_cache != "off":
    try:
        os.environ[CACHE_DIR_ENV] = str(enable_compile_cache(_test_cache, min_compile_time_s=0.25))
    except OSError as error:  # an unwritable home: the suite runs, only slower
        print(f"conftest: no compilation cache ({error})", file=sys.stderr)


# compiler options for a program a test runs for a few steps only: LLVM's optimisation
# level 0 compiles it about twice as fast; its run time does not matter
QUICK_COMPILE = {"xla_backend_optimization_level": 0}


@struct.dataclass
class FixedHorizonParams(environment.EnvParams):
    max_steps_in_episode: int = 5


class ConstantRewardEnv(environment.Environment):
    """Never terminates; truncates every ``max_steps_in_episode`` steps; reward 1 always.

    The observation is constant, so a correct critic must learn the infinite-horizon
    value ``1 / (1 - gamma)``; a critic that treats the time limit as terminal learns
    a finite-horizon average instead.
    """

    @property
    def default_params(self) -> FixedHorizonParams:
        return FixedHorizonParams()

    def step_env(self, key, state, action, params):
        state = environment.EnvState(time=state.time + 1)
        return jnp.zeros(1), state, jnp.float32(1.0), jnp.bool_(False), {}

    def reset_env(self, key, params):
        return jnp.zeros(1), environment.EnvState(time=0)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (1,))


class ClockEnv(ConstantRewardEnv):
    """Observes its own step count: the final observation of an episode ([5]) differs
    from the restart the auto-reset puts in its place ([0])."""

    def step_env(self, key, state, action, params):
        _, state, reward, terminated, info = super().step_env(key, state, action, params)
        return jnp.array([state.time], jnp.float32), state, reward, terminated, info

    def reset_env(self, key, params):
        obs, state = super().reset_env(key, params)
        return obs.astype(jnp.float32), state


def tree_equal(a, b) -> bool:
    """Bit-for-bit equality of two pytrees (NaN equals NaN), compared in NumPy on the host
    (no program to compile per leaf shape, as ``jnp.array_equal`` would)."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        _host(x).dtype == _host(y).dtype and np.array_equal(_host(x), _host(y), equal_nan=True)
        for x, y in zip(leaves_a, leaves_b, strict=True)
    )


def _host(x) -> np.ndarray:
    """``x`` as a NumPy array; a typed PRNG key as its raw key data."""
    if hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def primitive_counts(jaxpr) -> Counter:
    """How often each primitive occurs in ``jaxpr``, nested jaxprs (scan bodies...) included."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    counts = Counter()
    for eqn in jaxpr.eqns:
        counts[eqn.primitive.name] += 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
                    counts += primitive_counts(sub)
    return counts


def load_script(path: Path):
    """Import the script at ``path`` as a module, as running it would: with its folder on
    ``sys.path`` (for sibling imports such as ``bench_util``)."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@struct.dataclass
class PickState:
    target: jax.Array  # [2]: the rewarded choice of each component
    mask: jax.Array  # [7]: legal choices, 3 of component 0 then 4 of component 1
    time: int = 0


class MaskedPickEnv(environment.Environment):
    """A one-step contextual bandit with a dict observation, an action mask and a
    MultiDiscrete(3, 4) action: ``{"target": one-hot [7], "action_mask": bool [7]}``.

    Each choice is legal with probability 1/2 (the targets always). Reward: +1 per
    component on its target; -1000 if any choice is illegal, so one illegal action in a
    rollout makes its mean return negative. ``expose_mask=False`` hides the mask (the
    key becomes ``"legal"``, an ordinary input): then nothing stops illegal actions.
    """

    def __init__(self, expose_mask: bool = True):
        self.mask_key = "action_mask" if expose_mask else "legal"

    @property
    def default_params(self) -> FixedHorizonParams:
        return FixedHorizonParams(max_steps_in_episode=1)

    def _obs(self, state):
        target = jnp.zeros(7).at[state.target[0]].set(1.0).at[3 + state.target[1]].set(1.0)
        return {"target": target, self.mask_key: state.mask}

    def reset_env(self, key, params):
        key0, key1, mask_key = jax.random.split(key, 3)
        target = jnp.stack([jax.random.randint(key0, (), 0, 3), jax.random.randint(key1, (), 0, 4)])
        is_target = jnp.arange(7) == target[0]
        is_target |= jnp.arange(7) == 3 + target[1]
        mask = jax.random.bernoulli(mask_key, 0.5, (7,)) | is_target
        state = PickState(target=target, mask=mask)
        return self._obs(state), state

    def step_env(self, key, state, action, params):
        legal = state.mask[action[0]] & state.mask[3 + action[1]]
        hits = jnp.sum(action == state.target).astype(jnp.float32)
        reward = jnp.where(legal, hits, -1000.0)
        return self._obs(state), state.replace(time=state.time + 1), reward, jnp.bool_(True), {}

    def action_space(self, params=None):
        from purejaxppo.envs import MultiDiscrete

        return MultiDiscrete((3, 4))
