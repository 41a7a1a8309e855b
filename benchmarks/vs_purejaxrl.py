"""purejaxppo against PureJaxRL's own ``ppo.py`` on the same config and machine.

PureJaxRL is not a dependency and none of its code ships here: point ``--purejaxrl-dir``
at a checkout of https://github.com/luchris429/purejaxrl (the folder holding the
``purejaxrl`` package). Its ``ppo.py`` predates gymnax 1.0, whose ``step`` returns
``(obs, state, reward, terminated, truncated, info)``; this script adapts gymnax's envs
back to the old 5-tuple (``done = terminated | truncated``, i.e. PureJaxRL's semantics)
and stubs the ``brax`` import its wrappers make at module level. PureJaxRL's code runs
unmodified otherwise.

Both sides train CartPole-v1 with PureJaxRL's config (4 envs x 128 steps, 500k steps,
one seed) and are timed the same way: ahead-of-time compile, one warm-up call, then
``--repeats`` rounds of one timed call each, interleaved (so that drift in the machine's
speed hits both alike); medians and the median of the per-round ratios. Writes
``vs_purejaxrl.json``.

    python benchmarks/vs_purejaxrl.py --purejaxrl-dir PATH [--quick] [--repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import types
from pathlib import Path
from typing import Any

import jax
from bench_util import machine, time_compiled_interleaved, write_json

from purejaxppo import PPOConfig, make_train

HERE = Path(__file__).resolve().parent
PUREJAXRL_CONFIG = {
    "LR": 2.5e-4,
    "NUM_ENVS": 4,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 500_000,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True,
}


def _five_tuple_make(make):
    """``gymnax.make`` whose envs' ``step`` returns the pre-1.0 5-tuple."""

    def patched(*args, **kwargs):
        env, params = make(*args, **kwargs)
        step = env.step

        def old_step(key, state, action, params=None):
            obs, state, reward, terminated, truncated, info = step(key, state, action, params)
            return obs, state, reward, jax.numpy.logical_or(terminated, truncated), info

        env.step = old_step  # instance attribute shadows the method for this env only
        return env, params

    return patched


def load_purejaxrl_make_train(purejaxrl_dir: Path):
    """PureJaxRL's ``make_train`` from ``purejaxrl_dir``, adapted to gymnax 1.0."""
    import gymnax

    if not (purejaxrl_dir / "purejaxrl" / "ppo.py").exists():
        raise SystemExit(f"error: {purejaxrl_dir}/purejaxrl/ppo.py not found")
    sys.modules.setdefault("brax", types.ModuleType("brax"))  # only its Brax wrapper uses it
    sys.modules["brax"].envs = types.SimpleNamespace()
    sys.path.insert(0, str(purejaxrl_dir))
    ppo = importlib.import_module("purejaxrl.ppo")
    ppo.gymnax = types.SimpleNamespace(make=_five_tuple_make(gymnax.make))
    return ppo.make_train


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--purejaxrl-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="two updates (smoke test)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")

    purejaxrl_config = dict(PUREJAXRL_CONFIG)
    if args.quick:
        purejaxrl_config["TOTAL_TIMESTEPS"] = 2 * 4 * 128
    theirs_make_train = load_purejaxrl_make_train(args.purejaxrl_dir.resolve())
    config = PPOConfig.from_dict(purejaxrl_config)
    timings = time_compiled_interleaved(
        {
            # PureJaxRL uses raw uint32 keys; ours takes a typed key
            "purejaxrl": (theirs_make_train(dict(purejaxrl_config)), (jax.random.PRNGKey(0),)),
            "purejaxppo": (make_train(config), (jax.random.key(0),)),
        },
        repeats=args.repeats,
    )
    ours, theirs = timings["purejaxppo"], timings["purejaxrl"]
    paired = [t / o for t, o in zip(theirs["run_s"], ours["run_s"], strict=True)]
    report = {
        "config": purejaxrl_config,
        "trained_timesteps": config.trained_timesteps,
        "purejaxppo": ours,
        "purejaxrl": theirs,
        "timing": "timed calls interleaved, one call of each per round",
        "run_speedup": theirs["run_s_median"] / ours["run_s_median"],
        "run_speedup_paired_median": statistics.median(paired),
        "compile_speedup": theirs["compile_s"] / ours["compile_s"],
        "machine": machine(),
    }
    for name in ("purejaxppo", "purejaxrl"):
        side = report[name]
        print(
            f"{name:10s} compile {side['compile_s']:5.1f} s  run {side['run_s_median']:5.2f} s "
            f"(median of {args.repeats}: {', '.join(f'{t:.2f}' for t in side['run_s'])})"
        )
    print(
        f"purejaxppo runs {report['run_speedup']:.2f}x as fast (median of the per-round "
        f"ratios: {report['run_speedup_paired_median']:.2f}x) and compiles "
        f"{report['compile_speedup']:.2f}x as fast"
    )
    stem = f"vs_purejaxrl_{jax.default_backend()}" + ("_quick" if args.quick else "")
    print(f"wrote {write_json(args.out, stem, report)}")
    return report


if __name__ == "__main__":
    main()
