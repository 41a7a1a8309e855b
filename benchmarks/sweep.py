"""A hyperparameter sweep as one compiled call: learning rate x entropy coefficient x seeds.

The float hyperparameters are pytree leaves (``PPOHyperparams``), so the grid is a vmap
over a batched ``PPOHyperparams`` inside a vmap over seeds: ``train`` is traced once for
the whole grid (the script counts traces and fails otherwise). Writes JSON and a heatmap
PNG of the final return (mean over seeds of the last 10% of updates).

    python benchmarks/sweep.py [--quick] [--env CartPole-v1] [--seeds 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from bench_util import machine, time_compiled, write_json

from purejaxppo import PPOConfig, final_return, make_train

LEARNING_RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
ENT_COEFS = (0.0, 0.01, 0.05)


def run_sweep(
    config: PPOConfig, learning_rates, ent_coefs, seeds: int
) -> tuple[np.ndarray, dict[str, float]]:
    """Final returns ``[len(learning_rates), len(ent_coefs), seeds]`` and timings."""
    grid = list(itertools.product(learning_rates, ent_coefs))
    hyperparams = jax.tree.map(
        lambda *xs: jnp.stack(xs),
        *[config.replace(lr=lr, ent_coef=ent).hyperparams() for lr, ent in grid],
    )
    keys = jax.random.split(jax.random.key(0), seeds)
    train = make_train(config)
    traces = []

    def counted_train(rng, hps):
        traces.append(1)
        return train(rng, hps).metrics["episode_return"]

    over_seeds = jax.vmap(counted_train, in_axes=(0, None))
    over_grid = jax.vmap(over_seeds, in_axes=(None, 0))
    returns, timing = time_compiled(over_grid, keys, hyperparams)
    returns = np.asarray(returns)
    if len(traces) != 1:
        raise RuntimeError(f"train was traced {len(traces)} times for one sweep; expected 1")

    final = final_return(returns).reshape(len(learning_rates), len(ent_coefs), seeds)
    return final, {
        "compile_s": timing["compile_s"],
        "run_s": timing["run_s_median"],
        "traces": len(traces),
    }


def plot(final: np.ndarray, learning_rates, ent_coefs, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = final.mean(axis=-1)
    fig, ax = plt.subplots(figsize=(1.6 * len(ent_coefs) + 2.5, 0.7 * len(learning_rates) + 2))
    image = ax.imshow(mean, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(ent_coefs)), [f"{e:g}" for e in ent_coefs])
    ax.set_yticks(range(len(learning_rates)), [f"{lr:g}" for lr in learning_rates])
    ax.set_xlabel("entropy coefficient")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    middle = (np.nanmin(mean) + np.nanmax(mean)) / 2
    for (i, j), value in np.ndenumerate(mean):
        color = "black" if value > middle else "white"  # readable on viridis' light end
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", color=color, fontsize=9)
    fig.colorbar(image, ax=ax, label=f"final return (mean of {final.shape[-1]} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 x 2 grid, tiny budget")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--total-timesteps", type=float, default=200_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be a positive integer, got {args.seeds}")

    learning_rates, ent_coefs = LEARNING_RATES, ENT_COEFS
    total = args.total_timesteps
    if args.quick:
        learning_rates, ent_coefs, total = (3e-4, 3e-3), (0.0, 0.01), 2048
    config = PPOConfig(env_name=args.env, total_timesteps=total)
    final, timing = run_sweep(config, learning_rates, ent_coefs, args.seeds)

    runs = len(learning_rates) * len(ent_coefs) * args.seeds
    print(
        f"{runs} runs of {config.trained_timesteps:,} steps in one call: "
        f"compile {timing['compile_s']:.1f} s, run {timing['run_s']:.1f} s"
    )
    best = np.unravel_index(np.argmax(final.mean(-1)), final.shape[:2])
    print(
        f"best: lr={learning_rates[best[0]]:g}, ent_coef={ent_coefs[best[1]]:g}, "
        f"final return {final.mean(-1)[best]:.1f}"
    )
    report = {
        "env_name": config.env_name,
        "trained_timesteps": config.trained_timesteps,
        "learning_rates": list(learning_rates),
        "ent_coefs": list(ent_coefs),
        "seeds": args.seeds,
        "final_return": final.tolist(),
        "timing": timing,
        **{key: machine()[key] for key in ("backend", "device", "jax")},
    }
    stem = f"sweep_{config.env_name}_{jax.default_backend()}" + ("_quick" if args.quick else "")
    write_json(args.out, stem, report)
    title = f"PPO on {config.env_name}, {config.trained_timesteps:,} steps"
    plot(final, learning_rates, ent_coefs, title, args.out / f"{stem}.png")
    print(f"wrote {args.out / stem}.json and .png")
    return report


if __name__ == "__main__":
    main()
