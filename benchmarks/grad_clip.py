"""Global vs per-network gradient clipping, on the configuration of ``vs_sb3.py``.

``max_grad_norm`` clips either the norm of all gradients together (``grad_clip="global"``,
PureJaxRL's choice) or the actor's and the critic's each on its own (``"per_network"``).
With value-loss clipping off, CartPole's early value errors of ~100 dominate one global
norm of 0.5 and shrink the policy's step; this measures whether clipping per network
helps, with value-loss clipping off (``vs_sb3.py``'s setting) and on (the default).
Every cell trains ``--seeds`` seeds (the same keys for every cell) in one vmapped call.
Score: the final return (mean over the last 10% of updates). Writes ``grad_clip_<backend>.json``.

    python benchmarks/grad_clip.py [--quick] [--seeds 32] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import jax
from bench_util import machine, time_compiled, write_json

from purejaxppo import PPOConfig, final_return, make_train
from purejaxppo.config import GRAD_CLIPS
from purejaxppo.stats import summarize

HERE = Path(__file__).resolve().parent


def score(config: PPOConfig, seeds: int) -> dict[str, Any]:
    """Final returns of ``seeds`` seeds of ``config`` and their summary."""
    keys = jax.random.split(jax.random.key(0), seeds)
    out, timing = time_compiled(jax.vmap(make_train(config)), keys)
    scores = final_return(out.metrics["episode_return"])
    return {
        "final_return": scores.tolist(),
        "summary": summarize(scores)._asdict(),
        "below_400": int((scores < 400).sum()),
        "compile_s": timing["compile_s"],
        "run_s": timing["run_s_median"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="two updates, 2 seeds, 2 cells (smoke test)"
    )
    parser.add_argument("--seeds", type=int, default=32)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    seeds = 2 if args.quick else args.seeds
    base = PPOConfig(env_name="CartPole-v1", total_timesteps=500_000)
    if args.quick:
        base = base.replace(total_timesteps=2 * base.batch_size)
    grid = [(value_clip, grad_clip) for value_clip in (False, True) for grad_clip in GRAD_CLIPS]
    if args.quick:  # each setting once, in two cells (each cell is a program to compile)
        grid = [(False, GRAD_CLIPS[0]), (True, GRAD_CLIPS[1])]
    cells: dict[str, Any] = {}
    for clip_value_loss, grad_clip in grid:
        name = f"value_clip_{'on' if clip_value_loss else 'off'}/{grad_clip}"
        config = base.replace(clip_value_loss=clip_value_loss, grad_clip=grad_clip)
        cells[name] = score(config, seeds)
        summary = cells[name]["summary"]
        print(
            f"{name:<32} {summary['mean']:7.1f} [{summary['ci_low']:.1f}, "
            f"{summary['ci_high']:.1f}]  below 400: {cells[name]['below_400']}/{seeds}",
            flush=True,
        )
    report = {
        "env_name": base.env_name,
        "trained_timesteps": base.trained_timesteps,
        "seeds": seeds,
        "cells": cells,
        "machine": machine(),
    }
    stem = f"grad_clip_{jax.default_backend()}{'_quick' if args.quick else ''}"
    print(f"wrote {write_json(args.out, stem, report)}")
    return report


if __name__ == "__main__":
    main()
