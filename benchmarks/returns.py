"""Learning quality over the gymnax suite: many vmapped seeds per env, against references.

For each environment it loads ``benchmarks/configs/<env>.json`` (a ``PPOConfig`` as data),
compiles ``jax.jit(jax.vmap(train))`` over ``--seeds`` keys ahead of time and runs it
once: compile and run time are reported apart. The score of a seed is its final return
(mean episode return over the last 10% of updates); across seeds the script reports the
mean, the interquartile mean and a 95% bootstrap confidence interval of the mean, and
compares with the published numbers in ``benchmarks/references.json``:

- ``beats``: the whole CI is strictly above the reference;
- ``matches``: the reference lies inside the CI, bounds included (so a CI whose lower
  bound equals the reference, e.g. 500 at CartPole's cap of 500, matches it);
- ``below``: the whole CI is under the reference.

A verdict reached with more environment steps than the reference used is marked ``*``.
Writes ``returns_<backend>[_<tag>].json``, one learning-curve PNG per env (mean and 95%
CI band over seeds against environment steps) and a grid of all of them.

``--networks mlp gru`` trains every env with each network (the config's ``network``
replaced, nothing else) and draws them on the same axes: the ablations of the README's
"Networks on memory and image tasks" (``--tag`` keeps their files apart).

    python benchmarks/returns.py [--quick] [--seeds 16] [--envs CartPole-v1 ...]
                                 [--networks mlp gru] [--tag NAME] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
from bench_util import machine, time_compiled, write_json

from purejaxppo import PPOConfig, final_return, make_train
from purejaxppo.plotting import draw_curve, format_steps
from purejaxppo.stats import learning_curve, summarize

HERE = Path(__file__).resolve().parent
CONFIG_DIR = HERE / "configs"
REFERENCES = HERE / "references.json"
SUITE = (
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "Pendulum-v1",
    "MountainCarContinuous-v0",
    "Breakout-MinAtar",
    "SpaceInvaders-MinAtar",
    "Asterix-MinAtar",
    "Freeway-MinAtar",
    "Catch-bsuite",
    "DeepSea-bsuite",
)
# The network ablations (``--networks``): envs outside the suite whose point is the network.
NETWORK_ABLATIONS = {
    "StatelessCartPole-v1": ("mlp", "gru"),
    "MemoryChain-bsuite": ("mlp", "gru"),
    "Breakout-MinAtar": ("mlp", "cnn"),
}
# Other env suites (``--envs`` takes them; each needs its extra, e.g. purejaxppo[brax]).
SUITE_ENVS = (
    "brax:inverted_pendulum",
    "brax:inverted_double_pendulum",
    "pgx:2048",
    "jumanji:Snake-v1",
    "craftax:Craftax-Classic-Symbolic-v1",
)
CURVE_POINTS = 100  # learning curves are averaged into this many windows of updates


def config_path(env_name: str, config_dir: Path = CONFIG_DIR) -> Path:
    """``<config_dir>/<env_name>.json``, a suite prefix's colon as a dash (``brax-ant``)."""
    return config_dir / f"{env_name.replace(':', '-')}.json"


def load_config(env_name: str, config_dir: Path = CONFIG_DIR) -> PPOConfig:
    """The env's config file as a validated ``PPOConfig`` (its ``env_name`` must match)."""
    path = config_path(env_name, config_dir)
    if not path.exists():
        raise ValueError(f"no config for {env_name!r}: expected {path}")
    config = PPOConfig.from_dict(json.loads(path.read_text()))
    if config.env_name != env_name:
        raise ValueError(f"{path} has env_name {config.env_name!r}, expected {env_name!r}")
    return config


def load_references(env_name: str, path: Path = REFERENCES) -> list[dict[str, Any]]:
    """Published reference results for ``env_name`` (possibly none)."""
    return [r for r in json.loads(path.read_text())["references"] if r["env_name"] == env_name]


def quick_config(config: PPOConfig) -> PPOConfig:
    """Two updates of the same config: exercises every code path in seconds."""
    return config.replace(total_timesteps=2 * config.batch_size)


def train_seeds(config: PPOConfig, seeds: int) -> dict[str, Any]:
    """Train ``seeds`` seeds in one compiled call; episode returns ``[seeds, updates]``."""
    keys = jax.random.split(jax.random.key(0), seeds)

    def returns_only(rng):  # only the curve leaves the device
        metrics = make_train(config)(rng).metrics
        return metrics["episode_return"], metrics["env_steps"]

    (episode_return, env_steps), timing = time_compiled(jax.vmap(returns_only), keys)
    return {
        "episode_return": np.asarray(episode_return, dtype=np.float64),
        "env_steps": np.asarray(env_steps[0]),
        "compile_s": timing["compile_s"],
        "run_s": timing["run_s_median"],
    }


def verdict(ci_low: float, ci_high: float, reference: float) -> str:
    """``beats`` / ``matches`` / ``below`` a reference return, from our 95% CI.

    ``beats`` needs the whole CI strictly above the reference: a lower bound equal to it
    (e.g. every seed at CartPole's cap of 500 against a reference of 500) only matches.
    ``matches`` means ``ci_low <= reference <= ci_high``; ``below`` means ``ci_high <
    reference``.
    """
    if ci_low > reference:
        return "beats"
    if ci_high >= reference:
        return "matches"
    return "below"


def evaluate_env(
    env_name: str,
    seeds: int,
    quick: bool = False,
    config_dir: Path = CONFIG_DIR,
    total_timesteps: float | None = None,
    network: str | None = None,
) -> dict[str, Any]:
    config = load_config(env_name, config_dir)
    if network is not None:
        config = config.replace(network=network)
    if total_timesteps is not None:
        config = config.replace(total_timesteps=total_timesteps)
    if quick:
        config = quick_config(config)
    run = train_seeds(config, seeds)
    scores = final_return(run["episode_return"])
    summary = summarize(scores)
    references = []
    for reference in load_references(env_name):
        references.append(
            {
                **reference,
                "verdict": verdict(summary.ci_low, summary.ci_high, reference["return"]),
                "more_steps_than_reference": config.trained_timesteps > reference["timesteps"],
            }
        )
    return {
        "env_name": env_name,
        "network": config.network,
        "seeds": seeds,
        "trained_timesteps": config.trained_timesteps,
        "final_return": scores.tolist(),
        "summary": summary._asdict(),
        "compile_s": run["compile_s"],
        "run_s": run["run_s"],
        "env_steps_per_s": seeds * config.trained_timesteps / run["run_s"],
        "references": references,
        "curve": learning_curve(run["episode_return"], run["env_steps"], CURVE_POINTS),
        "config": config.to_dict(),
    }


def table(results: list[dict[str, Any]]) -> str:
    """The comparison as a Markdown table: one row per (env, reference)."""
    lines = [
        "| env | network | steps | ours: mean [95% CI] | IQM | reference | ref. steps | verdict "
        "| source |",
        "|---|---|---:|---|---:|---:|---:|---|---|",
    ]
    for result in results:
        s = result["summary"]
        ours = f"{s['mean']:.1f} [{s['ci_low']:.1f}, {s['ci_high']:.1f}]"
        network = result.get("network", "mlp")
        head = (
            f"| {result['env_name']} | {network} | {result['trained_timesteps']:,} | {ours} "
            f"| {s['iqm']:.1f}"
        )
        if not result["references"]:
            lines.append(f"{head} | - | - | no published reference | - |")
        for ref in result["references"]:
            mark = "*" if ref["more_steps_than_reference"] else ""
            published = f"{ref['return']:g}" + (f" +/- {ref['std']:g}" if ref["std"] else "")
            steps = f"{ref['timesteps']:,}"
            lines.append(
                f"{head} | {published} | {steps} | {ref['verdict']}{mark} | {ref['label']} |"
            )
    return "\n".join(lines)


def plot_curve(ax, group: list[dict[str, Any]]) -> None:
    """An env's learning curves (one per network trained) with its references as dashed
    lines."""
    result = group[0]
    title = f"{result['env_name']} ({result['trained_timesteps']:,} steps)"
    for i, run in enumerate(group):
        label = run.get("network", "mlp") if len(group) > 1 else None
        draw_curve(ax, run["curve"], run["seeds"], title, color=f"C{i}", label=label)
    for i, ref in enumerate(result["references"]):
        ax.axhline(
            ref["return"],
            color=f"C{i + len(group)}",
            ls="--",
            lw=1,
            label=f"{ref['label']} at {format_steps(ref['timesteps'])} steps",
        )
    ax.legend(fontsize=7, loc="best")


def plot(report: dict[str, Any], out: Path, suffix: str) -> None:
    """One PNG per env under ``out/curves`` and a grid of all of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[dict[str, Any]]] = {}
    for result in report["results"]:
        groups.setdefault(result["env_name"], []).append(result)
    curves = out / "curves"
    curves.mkdir(parents=True, exist_ok=True)
    for env_name, group in groups.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        plot_curve(ax, group)
        fig.tight_layout()
        fig.savefig(curves / f"{env_name.replace(':', '-')}{suffix}.png", dpi=110)
        plt.close(fig)
    columns = min(4, len(groups))
    rows = -(-len(groups) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.4 * rows), squeeze=False)
    for ax, group in zip(axes.flat, groups.values(), strict=False):
        plot_curve(ax, group)
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    fig.suptitle(
        f"PPO learning curves, {report['seeds']} seeds per env ({report['machine']['device']})"
    )
    fig.tight_layout()
    fig.savefig(out / f"returns_grid{suffix}.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two updates per env (smoke test)")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--envs", nargs="+", default=list(SUITE), metavar="ENV")
    parser.add_argument(
        "--total-timesteps", type=float, help="override every config's budget (e.g. 1e6)"
    )
    parser.add_argument(
        "--networks",
        nargs="+",
        metavar="NETWORK",
        help="train every env with each of these networks (default: the config's)",
    )
    parser.add_argument("--tag", help="appended to the output file names")
    parser.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--replot", type=Path, metavar="JSON", help="only redraw the figures of a saved report"
    )
    args = parser.parse_args(argv)
    if args.replot is not None:
        report = json.loads(args.replot.read_text())
        suffix = args.replot.stem.removeprefix("returns")
        plot(report, args.replot.parent, suffix)
        print(f"redrew returns_grid{suffix}.png and curves/ in {args.replot.parent}")
        return report
    if args.seeds < 2:
        parser.error(f"--seeds must be at least 2 for a confidence interval, got {args.seeds}")
    for env_name in args.envs:
        if not config_path(env_name, args.config_dir).exists():
            parser.error(f"no config for --envs {env_name!r} in {args.config_dir}")

    results = []
    for env_name in args.envs:
        for network in args.networks or [None]:
            result = evaluate_env(
                env_name, args.seeds, args.quick, args.config_dir, args.total_timesteps, network
            )
            results.append(result)
            s = result["summary"]
            print(
                f"{env_name:22s} {result['network']:5s} {result['trained_timesteps']:>11,} steps "
                f"x {args.seeds} seeds: mean {s['mean']:8.1f} [{s['ci_low']:.1f}, "
                f"{s['ci_high']:.1f}] IQM {s['iqm']:8.1f}  compile {result['compile_s']:5.1f} s"
                f"  run {result['run_s']:7.1f} s",
                flush=True,
            )
    print(table(results))
    report = {
        "machine": machine(),
        "seeds": args.seeds,
        "quick": args.quick,
        "command": " ".join(["python benchmarks/returns.py", *(argv or sys.argv[1:])]),
        "results": results,
    }
    suffix = f"_{jax.default_backend()}" + (f"_{args.tag}" if args.tag else "")
    suffix += "_quick" if args.quick else ""
    write_json(args.out, f"returns{suffix}", report)
    (args.out / f"returns{suffix}.md").write_text(table(results) + "\n")
    plot(report, args.out, suffix)
    print(f"wrote {args.out}/returns{suffix}.json, .md, returns_grid{suffix}.png and curves/")
    return report


if __name__ == "__main__":
    main()
