"""purejaxppo against Stable-Baselines3 PPO (PyTorch, CPU) on CartPole-v1, same hyperparameters.

Both sides use PureJaxRL's CartPole config: 4 envs x 128 steps, 4 epochs x 4 minibatches,
lr 2.5e-4 annealed linearly to 0, gamma 0.99, GAE lambda 0.95, clip 0.2, entropy 0.01,
value coefficient 0.5, grad-norm clip 0.5, separate 64-64 tanh actor and critic with
orthogonal init, Adam eps 1e-5, advantages normalised per minibatch, no value-loss clipping
(SB3 has no pessimistic clipped form), bootstrapping on truncation. Left different: SB3
anneals the learning rate by the fraction of steps done, purejaxppo once per update. SB3
runs its seeds one after another (its usual use, on gymnasium's CartPole-v1); purejaxppo
trains all seeds in one vmapped compiled call, its compile time reported apart.

purejaxppo's default (PureJaxRL's) clips the value loss; it is run as well and reported
as ``purejaxppo_value_clip``: on CartPole, without the clip, early value errors of ~100
dominate the 0.5 global gradient-norm clip and shrink the policy's step.

The score of a run is its final return: the mean return of the episodes finished in the
last 10% of training (SB3: by env steps, from its Monitor; ours: the last 10% of updates).
Needs the ``bench`` extra: ``pip install ".[bench]"``.

    python benchmarks/vs_sb3.py [--quick] [--seeds 5] [--total-timesteps 5e5] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from bench_util import machine, time_compiled, write_json

from purejaxppo import PPOConfig, final_return, make_train
from purejaxppo.stats import summarize

HERE = Path(__file__).resolve().parent


def sb3_run(config: PPOConfig, seed: int) -> dict[str, Any]:
    """One SB3 PPO run with ``config``'s hyperparameters; wall time of ``learn`` only."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(config.env_name, n_envs=config.num_envs, seed=seed)
    model = PPO(
        "MlpPolicy",
        envs,
        learning_rate=lambda progress_remaining: config.lr * progress_remaining,
        n_steps=config.num_steps,
        batch_size=config.minibatch_size,
        n_epochs=config.update_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_eps,
        ent_coef=config.ent_coef,
        vf_coef=0.5 * config.vf_coef,  # SB3's value loss is E[(V - R)^2], ours 0.5 E[...]
        max_grad_norm=config.max_grad_norm,
        policy_kwargs={"net_arch": list(config.hidden_sizes), "activation_fn": torch.nn.Tanh},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=config.trained_timesteps)
    run_s = time.perf_counter() - start
    monitor = envs.envs  # Monitor-wrapped envs record every finished episode
    episodes = sorted(
        (end_step, ret) for env in monitor for end_step, ret in _episode_ends(env, config.num_envs)
    )
    cutoff = 0.9 * config.trained_timesteps
    last = [ret for end_step, ret in episodes if end_step >= cutoff]
    return {"seed": seed, "run_s": run_s, "final_return": float(np.mean(last))}


def _episode_ends(monitored_env, num_envs: int) -> list[tuple[int, float]]:
    """(total env steps across all envs when the episode ended, its return)."""
    lengths = np.cumsum(monitored_env.get_episode_lengths())
    returns = monitored_env.get_episode_rewards()
    return [
        (int(length) * num_envs, float(ret)) for length, ret in zip(lengths, returns, strict=True)
    ]


def ours(config: PPOConfig, seeds: int) -> dict[str, Any]:
    """All seeds in one compiled vmapped call: compile and run timed apart."""
    keys = jax.random.split(jax.random.key(0), seeds)
    out, timing = time_compiled(jax.vmap(make_train(config)), keys)
    return {
        "compile_s": timing["compile_s"],
        "run_s": timing["run_s_median"],
        "final_return": final_return(out.metrics["episode_return"]).tolist(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two updates, 2 seeds (smoke test)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--total-timesteps", type=float, default=500_000)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error(f"--seeds must be at least 2 for a confidence interval, got {args.seeds}")
    try:
        import stable_baselines3
    except ImportError:
        parser.error('needs Stable-Baselines3: pip install ".[bench]"')

    config = PPOConfig(
        env_name="CartPole-v1", total_timesteps=args.total_timesteps, clip_value_loss=False
    )
    if args.quick:
        config = config.replace(total_timesteps=2 * config.batch_size)
    steps = args.seeds * config.trained_timesteps

    mine = ours(config, args.seeds)
    value_clip = ours(config.replace(clip_value_loss=True), args.seeds)
    theirs = [sb3_run(config, seed) for seed in range(args.seeds)]
    sb3_run_s = sum(run["run_s"] for run in theirs)
    report = {
        "env_name": config.env_name,
        "trained_timesteps": config.trained_timesteps,
        "seeds": args.seeds,
        "purejaxppo": {
            **mine,
            "sps": steps / mine["run_s"],
            "sps_including_compile": steps / (mine["run_s"] + mine["compile_s"]),
            "summary": summarize(mine["final_return"])._asdict(),
        },
        "purejaxppo_value_clip": {
            **value_clip,
            "sps": steps / value_clip["run_s"],
            "summary": summarize(value_clip["final_return"])._asdict(),
        },
        "sb3": {
            "runs": theirs,
            "run_s": sb3_run_s,
            "sps": steps / sb3_run_s,
            "final_return": [run["final_return"] for run in theirs],
            "summary": summarize([run["final_return"] for run in theirs])._asdict(),
        },
        "config": config.to_dict(),
        "machine": {
            **machine(),
            "torch": __import__("torch").__version__,
            "stable_baselines3": stable_baselines3.__version__,
        },
    }
    report["speedup"] = report["purejaxppo"]["sps"] / report["sb3"]["sps"]
    report["speedup_including_compile"] = (
        report["purejaxppo"]["sps_including_compile"] / report["sb3"]["sps"]
    )
    for name in ("purejaxppo", "purejaxppo_value_clip", "sb3"):
        side, s = report[name], report[name]["summary"]
        print(
            f"{name:21s} final return {s['mean']:6.1f} [{s['ci_low']:.1f}, {s['ci_high']:.1f}]  "
            f"run {side['run_s']:7.1f} s  {side['sps']:>10,.0f} steps/s"
        )
    print(
        f"purejaxppo is {report['speedup']:.1f}x faster "
        f"({report['speedup_including_compile']:.1f}x counting its "
        f"{mine['compile_s']:.1f} s compile)"
    )
    stem = f"vs_sb3_{config.env_name}" + ("_quick" if args.quick else "")
    print(f"wrote {write_json(args.out, stem, report)}")
    return report


if __name__ == "__main__":
    main()
