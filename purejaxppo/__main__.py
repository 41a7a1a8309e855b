"""``python -m purejaxppo``: train the default agent on several seeds and report the result.

python -m purejaxppo [--env CartPole-v1] [--seeds 4] [--total-timesteps 500000]
"""

from __future__ import annotations

import argparse
import sys
import time


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m purejaxppo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--env", default="CartPole-v1", help="gymnax environment name")
    parser.add_argument("--seeds", type=int, default=4, help="seeds trained at once (vmap)")
    parser.add_argument(
        "--total-timesteps",
        type=float,
        default=500_000,
        help="environment steps per seed (5e5 accepted)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be a positive integer, got {args.seeds}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    import jax

    from purejaxppo import PPOConfig, final_return, make_train

    try:
        config = PPOConfig(env_name=args.env, total_timesteps=args.total_timesteps)
        train = jax.jit(jax.vmap(make_train(config)))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    keys = jax.random.split(jax.random.key(0), args.seeds)

    print(
        f"Training PPO on {config.env_name}: {args.seeds} seeds x "
        f"{config.trained_timesteps:,} steps ({jax.default_backend()})",
        flush=True,
    )
    start = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - start

    final = final_return(out.metrics["episode_return"])
    sps = args.seeds * config.trained_timesteps / run_s
    print(f"compile {compile_s:.1f} s, run {run_s:.1f} s, {sps:,.0f} env steps/s")
    print(
        "final return (mean of last 10% of updates) per seed: "
        + " ".join(f"{r:.1f}" for r in final)
    )
    print(f"mean over seeds: {final.mean():.1f} +/- {final.std():.1f} (std)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
