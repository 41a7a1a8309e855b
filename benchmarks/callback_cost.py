"""What a host callback costs: ``make_train`` with and without a no-op ``on_update``.

PureJaxRL's CartPole config (4 envs x 128 steps, 500k steps: 976 updates), one seed and
``--seeds`` vmapped seeds, each ``jax.jit`` compiled ahead of time (compile time reported
apart), one warm-up call each, then ``--repeats`` timed rounds in which the four programs
alternate (order reversed on odd rounds), so a machine that speeds up or slows down during
the measurement affects all alike. The cost per update is the difference of the medians
over the number of updates, and, more robust on a busy machine, the median over rounds of
the paired difference (with and without, same round) over the number of updates.

    python benchmarks/callback_cost.py [--quick] [--seeds 16] [--repeats 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import jax
from bench_util import machine, time_compiled_interleaved, write_json

from purejaxppo import PPOConfig, make_train


def no_op(metrics: dict[str, Any]) -> None:
    """The cheapest possible ``on_update``: what is left is the callback's own cost."""


def programs(config: PPOConfig, seeds: int) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """``name -> (fn, args)`` for :func:`time_compiled_interleaved`: each seed count with
    and without the callback."""
    calls = {}
    for n in (1, seeds):
        keys = jax.random.split(jax.random.key(0), n)
        for callback in (None, no_op):
            train = jax.vmap(make_train(config, on_update=callback))
            calls[f"seeds{n}_{'on_update' if callback else 'plain'}"] = (train, (keys,))
    return calls


def cost(plain: dict[str, Any], with_callback: dict[str, Any], updates: int) -> dict[str, Any]:
    """The callback's cost from two timings of the same rounds."""
    paired = [b - a for a, b in zip(plain["run_s"], with_callback["run_s"], strict=True)]
    return {
        "plain_run_s_median": plain["run_s_median"],
        "on_update_run_s_median": with_callback["run_s_median"],
        "slowdown": with_callback["run_s_median"] / plain["run_s_median"],
        "per_update_ms_from_medians": 1e3
        * (with_callback["run_s_median"] - plain["run_s_median"])
        / updates,
        "per_update_ms_paired_median": 1e3 * statistics.median(paired) / updates,
        "paired_diff_s": paired,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget (smoke test)")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.repeats < 1:
        parser.error(f"--seeds and --repeats must be positive, got {args.seeds}, {args.repeats}")

    config = PPOConfig(env_name="CartPole-v1", total_timesteps=500_000)
    if args.quick:
        config = config.replace(total_timesteps=4 * config.batch_size)
    timings = time_compiled_interleaved(programs(config, args.seeds), args.repeats)
    report: dict[str, Any] = {
        "machine": machine(),
        "config": config.to_dict(),
        "num_updates": config.num_updates,
        "repeats": args.repeats,
        "timings": timings,
        "cost": {},
    }
    for n in (1, args.seeds):
        plain, with_callback = timings[f"seeds{n}_plain"], timings[f"seeds{n}_on_update"]
        report["cost"][f"seeds{n}"] = cost(plain, with_callback, config.num_updates)
        c = report["cost"][f"seeds{n}"]
        print(
            f"{n:3d} seed(s): compile {plain['compile_s']:5.1f} / "
            f"{with_callback['compile_s']:5.1f} s"
            f"  run {c['plain_run_s_median']:7.2f} -> {c['on_update_run_s_median']:7.2f} s"
            f"  (x{c['slowdown']:.3f})  per update {c['per_update_ms_paired_median']:+.3f} ms"
            f" (paired), {c['per_update_ms_from_medians']:+.3f} ms (medians)",
            flush=True,
        )
    stem = f"callback_cost_{jax.default_backend()}" + ("_quick" if args.quick else "")
    print(write_json(args.out, stem, report))
    return report


if __name__ == "__main__":
    main()
