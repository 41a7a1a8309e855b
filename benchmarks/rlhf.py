"""RLHF in miniature, measured: the KL leash, reward over-optimisation, and clipping.

One reference LM (supervised pre-training) and one reward model (Bradley-Terry on noisy
preferences between the reference's samples) are trained, then PPO runs ``--seeds`` seeds
(vmapped) of each experiment:

- ``leash``: beta adapted towards ``kl_target`` nats per response (the PPO paper's rule):
  the reward model's score rises while the KL to the reference stays near the target.
- ``sweep``: fixed beta in ``--betas`` (0 included), at a learning rate high enough to
  over-optimise: the true quality and the proxy score against KL(pi || pi_ref).
- ``clipping``: the clipped objective against the unclipped one at a learning rate that
  breaks the unclipped one.

Every experiment's per-update curves (mean and 95% bootstrap band over seeds) and final
values (the mean over the last 10% of updates per seed: mean, IQM, 95% CI) go to
``rlhf_<backend>.json``, the figures to ``rlhf_<backend>.png``.

    python benchmarks/rlhf.py [--quick] [--seeds 16] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from bench_util import machine, write_json

from purejaxppo import rlhf
from purejaxppo.stats import summarize

CURVES = ("score", "true_quality", "kl_to_reference", "beta", "clip_fraction", "approx_kl")
FINAL_FRACTION = 0.1


def configs(quick: bool) -> dict[str, Any]:
    """The base config and each experiment's changes to it."""
    base = rlhf.RLHFConfig()
    if quick:
        base = base.replace(
            width=32, heads=2, layers=1, sft_steps=50, preference_pairs=256,
            preference_held_out=64, rm_epochs=1, num_prompts=16, num_updates=4,
            update_epochs=1, num_minibatches=2,
        )  # fmt: skip
    return {
        "base": base,
        "leash": base.replace(kl_target=3.0, beta=0.1, lr=1e-4),
        "sweep": base.replace(lr=2e-4),
        "clipping": base.replace(lr=1e-3, beta=0.1, num_updates=max(base.num_updates // 2, 2)),
    }


def _band(values: np.ndarray) -> dict[str, list[float]]:
    """Mean over seeds (axis 0) per update, and a 95% bootstrap band of that mean."""
    rng = np.random.default_rng(0)
    resampled = values[rng.integers(0, len(values), (2000, len(values)))].mean(axis=1)
    low, high = np.quantile(resampled, [0.025, 0.975], axis=0)
    return {"mean": values.mean(0).tolist(), "ci_low": low.tolist(), "ci_high": high.tolist()}


def _describe(metrics: dict[str, Any]) -> dict[str, Any]:
    """Curves and final values of one experiment's ``[seeds, updates]`` metrics."""
    updates = np.asarray(metrics["score"]).shape[-1]
    last = max(1, int(updates * FINAL_FRACTION))
    out: dict[str, Any] = {"curves": {}, "final": {}}
    for name in CURVES:
        values = np.asarray(metrics[name], dtype=np.float64)
        out["curves"][name] = _band(values)
        out["final"][name] = summarize(values[:, -last:].mean(axis=1))._asdict()
    return out


_sample = jax.jit(rlhf.sample_responses, static_argnums=(0, 4))


def _samples(config, params, key, count: int = 6) -> list[str]:
    """A few responses of ``params``' policy, decoded (prompt | response)."""
    model = rlhf.make_model(config)
    prompt = rlhf.sample_prompts(key, count)
    response = _sample(model, params, prompt, key, config.response_length)
    return [
        f"{rlhf.decode(p)} | {rlhf.decode(r)}"
        for p, r in zip(np.asarray(prompt), np.asarray(response), strict=True)
    ]


def run(seeds: int, quick: bool, betas: list[float]) -> dict[str, Any]:
    chosen = configs(quick)
    base = chosen["base"]
    key = jax.random.key(0)
    start = time.perf_counter()
    reference, sft_losses = jax.jit(rlhf.pretrain_reference, static_argnums=0)(base, key)
    reward = jax.jit(rlhf.train_reward_model, static_argnums=0)(base, reference, jax.random.key(1))
    jax.block_until_ready(reward.params)
    stages_s = time.perf_counter() - start
    seed_keys = jax.random.split(jax.random.key(2), seeds)
    report: dict[str, Any] = {
        "reference": {
            "sft_loss_first": float(sft_losses[0]),
            "sft_loss_last": float(sft_losses[-20:].mean()),
            "samples": _samples(base, reference, jax.random.key(3)),
        },
        "reward_model": {
            "held_out_accuracy": float(reward.held_out_accuracy),
            "held_out_true_accuracy": float(reward.held_out_true_accuracy),
            "label_agreement": float(reward.label_agreement),
            "final_loss": float(reward.losses[-20:].mean()),
        },
        "pretraining_and_reward_model_s": stages_s,
        "experiments": {},
    }

    def timed(config, hyperparams=None, axes=None):
        train = rlhf.make_rlhf_train(config, reference, reward.params)
        over_seeds = jax.vmap(train, in_axes=(0, None))
        program = over_seeds if axes is None else jax.vmap(over_seeds, in_axes=(None, 0))
        hyperparams = config.hyperparams() if hyperparams is None else hyperparams
        begin = time.perf_counter()
        state, metrics = jax.block_until_ready(jax.jit(program)(seed_keys, hyperparams))
        seconds = time.perf_counter() - begin
        print(f"  PPO ({config.num_updates} updates, objective {config.objective}, "
              f"kl_target {config.kl_target}): {seconds:.0f} s", flush=True)  # fmt: skip
        return state, jax.tree.map(np.asarray, metrics), seconds

    config = chosen["leash"]
    state, metrics, seconds = timed(config)
    final_params = jax.tree.map(lambda x: x[0], state.train_state.params)
    report["experiments"]["leash"] = {
        "config": config.to_dict(),
        "seconds": seconds,
        **_describe(metrics),
        "samples_after": _samples(config, final_params, jax.random.key(3)),
    }

    config = chosen["sweep"]
    hyperparams = config.hyperparams()
    grid = jnp.asarray(betas, jnp.float32)
    swept = jax.tree.map(lambda x: jnp.broadcast_to(x, grid.shape), hyperparams)._replace(beta=grid)
    state, metrics, seconds = timed(config, swept, axes=0)
    report["experiments"]["sweep"] = {
        "config": config.to_dict(),
        "seconds": seconds,
        "betas": list(map(float, betas)),
        "runs": [_describe(jax.tree.map(lambda x, i=i: x[i], metrics)) for i in range(len(betas))],
        "samples_after_beta0": _samples(
            config, jax.tree.map(lambda x: x[0, 0], state.train_state.params), jax.random.key(3)
        ),
    }

    clipping = {"config": chosen["clipping"].to_dict(), "runs": {}}
    for objective in rlhf.RLHF_OBJECTIVES:
        config = chosen["clipping"].replace(objective=objective)
        _, metrics, seconds = timed(config)
        clipping["runs"][objective] = {"seconds": seconds, **_describe(metrics)}
    report["experiments"]["clipping"] = clipping
    return report


def plot(report: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    leash = report["experiments"]["leash"]
    ax = axes[0]
    for name, color in (("score", "C0"), ("true_quality", "C2")):
        curve = leash["curves"][name]
        x = np.arange(len(curve["mean"]))
        ax.plot(x, curve["mean"], color=color, label=name.replace("_", " "))
        ax.fill_between(x, curve["ci_low"], curve["ci_high"], color=color, alpha=0.2)
    twin = ax.twinx()
    kl = leash["curves"]["kl_to_reference"]
    twin.plot(np.arange(len(kl["mean"])), kl["mean"], color="C3", label="KL(pi || pi_ref)")
    twin.axhline(leash["config"]["kl_target"], color="C3", ls=":", lw=1)
    twin.set_ylabel("KL to the reference (nats per response)", color="C3")
    ax.set_xlabel("PPO update")
    ax.set_title(f"adaptive beta, KL target {leash['config']['kl_target']}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)

    ax = axes[1]
    sweep = report["experiments"]["sweep"]
    for index, (beta, run) in enumerate(zip(sweep["betas"], sweep["runs"], strict=True)):
        kl = np.asarray(run["curves"]["kl_to_reference"]["mean"])
        for name, style in (("true_quality", "-"), ("score", "--")):
            ax.plot(kl, run["curves"][name]["mean"], style, color=f"C{index}", lw=1,
                    label=f"beta {beta:g}" if name == "true_quality" else None)  # fmt: skip
    ax.set_xlabel("KL(pi || pi_ref), nats per response")
    ax.set_ylabel("true quality (solid), reward-model score (dashed)")
    ax.set_title("over-optimisation: along each run", fontsize=9)
    ax.legend(fontsize=8)

    ax = axes[2]
    for objective, color in (("clip", "C0"), ("unclipped", "C3")):
        run = report["experiments"]["clipping"]["runs"][objective]
        curve = run["curves"]["true_quality"]
        x = np.arange(len(curve["mean"]))
        ax.plot(x, curve["mean"], color=color, label=f"{objective}: true quality")
        ax.fill_between(x, curve["ci_low"], curve["ci_high"], color=color, alpha=0.2)
        ax.plot(x, run["curves"]["score"]["mean"], "--", color=color, lw=1,
                label=f"{objective}: score")  # fmt: skip
    lr = report["experiments"]["clipping"]["config"]["lr"]
    ax.set_xlabel("PPO update")
    ax.set_title(f"clipping at lr {lr:g}", fontsize=9)
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget (smoke test)")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--betas", type=float, nargs="+", default=[0.0, 0.03, 0.1, 0.3])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the summaries have confidence intervals)")
    start = time.perf_counter()
    report = {"machine": machine(), "quick": args.quick, "seeds": args.seeds}
    report.update(run(args.seeds, args.quick, args.betas))
    report["total_s"] = time.perf_counter() - start
    stem = f"rlhf_{report['machine']['backend']}" + ("_quick" if args.quick else "")
    write_json(args.out, stem, report, default=float)
    plot(report, args.out / f"{stem}.png", f"RLHF in miniature, {args.seeds} seeds "
         f"({report['machine']['device']})")  # fmt: skip
    reward = report["reward_model"]
    print(f"reward model: held-out accuracy {reward['held_out_accuracy']:.3f} "
          f"(vs true quality {reward['held_out_true_accuracy']:.3f})")  # fmt: skip
    leash = report["experiments"]["leash"]["final"]
    print(f"leash: score {leash['score']['mean']:.3f}, KL {leash['kl_to_reference']['mean']:.2f}")
    finals = [(f"beta {beta:g}", r["final"]) for beta, r in
              zip(args.betas, report["experiments"]["sweep"]["runs"], strict=True)]  # fmt: skip
    finals += [(k, r["final"]) for k, r in report["experiments"]["clipping"]["runs"].items()]
    for name, final in finals:
        score, true = final["score"]["mean"], final["true_quality"]["mean"]
        print(f"{name:10s} score {score:.3f}  true {true:.3f}  "
              f"KL {final['kl_to_reference']['mean']:.2f}")  # fmt: skip
    print(f"wrote {args.out / stem}.json and .png ({report['total_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
