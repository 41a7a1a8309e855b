"""Brax's own PPO trainer on Brax envs: a side-by-side reference for purejaxppo's Brax numbers.

This trains with ``brax.training.agents.ppo.train`` (Brax's trainer, not purejaxppo) on one
Brax env for ``--seeds`` seeds, one after another (seed 0..n-1), with the hyperparameters of
Brax's training notebook for that env (``notebooks/training.ipynb``; the same table is in
Brax's README-linked colab), except ``num_timesteps``, which defaults to 1M to match
purejaxppo's Brax benchmark. ``progress_fn`` records (env steps, ``eval/episode_reward``) at
every eval. Results are written (merged per env) to
``benchmarks/results/brax_reference_cpu.json``: versions, hyperparameters, per-seed eval
curves, per-seed final eval return, mean and 95% bootstrap CI of the mean over seeds
(10,000 resamples, numpy, seed 0), wall time per seed and the machine.

Nothing of this ships with purejaxppo, and it does not import purejaxppo: it runs only in
its own virtual environment, because Brax 0.14.2's trainer calls ``jax.device_put_replicated``,
which the jax that purejaxppo is tested with (0.10.2) no longer has. Make that venv with
(versions that worked on CPU, Python 3.11)::

    python -m venv .venv-brax
    .venv-brax/bin/pip install "jax[cpu]==0.7.2" "brax==0.14.2"

and run, from the repository root::

    .venv-brax/bin/python benchmarks/brax_reference.py --env inverted_pendulum --seeds 16
    .venv-brax/bin/python benchmarks/brax_reference.py \\
        --env inverted_double_pendulum --seeds 16 [--num-timesteps 1000000] [--out FILE] \\
        [--time-budget-s 720 --min-seeds 5] [--backend generalized] [--deterministic-eval]

``--time-budget-s`` starts no further seed once the mean seed time so far would take the
whole run past it (never before ``--min-seeds`` seeds); the seeds run are recorded.

How Brax counts steps: one training step is ``batch_size * unroll_length * num_minibatches
* action_repeat`` env steps (163,840 with the notebook's values), and Brax runs
``num_evals - 1`` epochs of ``ceil(num_timesteps / ((num_evals - 1) * that))`` training steps
each, so with the notebook's ``num_evals=20`` a 1M-step request would run 19 training steps
(3.1M env steps). This script therefore lowers ``num_evals`` to ``ceil(num_timesteps /
steps_per_training_step) + 1`` where that is smaller (which changes only how often Brax
evaluates, not the training), so that training stops at the first multiple of 163,840 at or
past ``num_timesteps`` (1,146,880 for 1M). The score of a seed (``final``) is the eval at the
end of training; ``at_or_before`` is the last eval at or before ``num_timesteps`` (983,040
for 1M). Both are summarised.

Protocol: Brax's evaluator, on a separate eval env (the training env wrapped again, 128
envs, ``episode_length`` 1000), one episode per env from a fresh reset, after each training
epoch; ``eval/episode_reward`` is the mean undiscounted, unscaled return over those 128
episodes. The policy is sampled (``deterministic_eval`` is False, Brax's default and the
notebook's) unless ``--deterministic-eval`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "brax_reference_cpu.json"

# Brax's training notebook (notebooks/training.ipynb), the ``train_fn`` table, minus ``seed``.
NOTEBOOK_HPARAMS: dict[str, dict[str, Any]] = {
    "inverted_pendulum": {
        "num_timesteps": 2_000_000,
        "num_evals": 20,
        "reward_scaling": 10,
        "episode_length": 1000,
        "normalize_observations": True,
        "action_repeat": 1,
        "unroll_length": 5,
        "num_minibatches": 32,
        "num_updates_per_batch": 4,
        "discounting": 0.97,
        "learning_rate": 3e-4,
        "entropy_cost": 1e-2,
        "num_envs": 2048,
        "batch_size": 1024,
    },
}
NOTEBOOK_HPARAMS["inverted_double_pendulum"] = {
    **NOTEBOOK_HPARAMS["inverted_pendulum"],
    "num_timesteps": 20_000_000,
}

VERSION_PACKAGES = ("jax", "jaxlib", "brax", "mujoco", "mujoco-mjx", "flax", "optax", "numpy")


def versions() -> dict[str, str | None]:
    """Installed versions of the packages the result depends on."""
    found: dict[str, str | None] = {}
    for name in VERSION_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict[str, Any]:
    """Where the run happened."""
    import jax

    return {
        "processor": platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "description": f"{os.cpu_count()}-core CPU, jax backend {jax.default_backend()}",
        "jax_backend": jax.default_backend(),
        "python": platform.python_version(),
    }


def bootstrap_ci(
    scores: np.ndarray, num_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile 95% bootstrap CI of the mean of ``scores`` (seeds resampled)."""
    scores = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, scores.size, size=(num_resamples, scores.size))].mean(-1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(low), float(high)


def summary(scores: list[float]) -> dict[str, Any]:
    """Mean, 95% bootstrap CI of the mean, std and count of per-seed scores."""
    array = np.asarray(scores, dtype=np.float64)
    low, high = bootstrap_ci(array)
    return {
        "mean": float(array.mean()),
        "ci95": [low, high],
        "std": float(array.std()),
        "num_seeds": int(array.size),
    }


def effective_hparams(env_name: str, num_timesteps: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The notebook's hyperparameters with ``num_timesteps`` overridden and ``num_evals``
    lowered so that Brax stops at the first training step at or past ``num_timesteps``.
    Returns ``(kwargs for ppo.train, derived step counts)``."""
    hparams = dict(NOTEBOOK_HPARAMS[env_name])
    hparams["num_timesteps"] = num_timesteps
    step = (
        hparams["batch_size"]
        * hparams["unroll_length"]
        * hparams["num_minibatches"]
        * hparams["action_repeat"]
    )
    hparams["num_evals"] = min(hparams["num_evals"], math.ceil(num_timesteps / step) + 1)
    epochs = max(hparams["num_evals"] - 1, 1)
    per_epoch = math.ceil(num_timesteps / (epochs * step))
    derived = {
        "env_steps_per_training_step": step,
        "training_epochs": epochs,
        "training_steps_per_epoch": per_epoch,
        "total_env_steps": epochs * per_epoch * step,
    }
    return hparams, derived


def run_seed(
    env_name: str, backend: str | None, hparams: dict[str, Any], seed: int, deterministic: bool
) -> dict[str, Any]:
    """One Brax PPO training run; its eval curve and timings."""
    from brax import envs
    from brax.training.agents.ppo import train as ppo

    kwargs = {} if backend is None else {"backend": backend}
    env = envs.get_environment(env_name, **kwargs)
    curve: list[dict[str, float]] = []
    last: dict[str, float] = {}

    def progress_fn(num_steps: int, metrics: dict[str, Any]) -> None:
        point = {
            "env_steps": int(num_steps),
            "episode_reward": float(metrics["eval/episode_reward"]),
            "episode_reward_std": float(metrics["eval/episode_reward_std"]),
            "avg_episode_length": float(metrics["eval/avg_episode_length"]),
            "elapsed_s": time.perf_counter() - start,
        }
        curve.append(point)
        last.update({k: float(v) for k, v in metrics.items() if np.ndim(v) == 0})
        print(
            f"  seed {seed} step {point['env_steps']:>9d}  eval/episode_reward "
            f"{point['episode_reward']:9.2f}  ({point['elapsed_s']:6.1f} s)",
            flush=True,
        )

    start = time.perf_counter()
    ppo.train(
        environment=env,
        seed=seed,
        deterministic_eval=deterministic,
        progress_fn=progress_fn,
        **hparams,
    )
    wall_s = time.perf_counter() - start
    return {
        "seed": seed,
        "curve": curve,
        "final_return": curve[-1]["episode_reward"],
        "final_env_steps": curve[-1]["env_steps"],
        "wall_s": wall_s,
        "training_walltime_s": last.get("training/walltime"),
        "eval_walltime_s": last.get("eval/walltime"),
    }


def at_or_before(curve: list[dict[str, float]], num_timesteps: int) -> dict[str, float]:
    """The last eval point at or before ``num_timesteps`` env steps."""
    return [p for p in curve if p["env_steps"] <= num_timesteps][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, choices=sorted(NOTEBOOK_HPARAMS))
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--num-timesteps", type=int, default=1_000_000)
    parser.add_argument("--backend", default=None, help="Brax backend; default: Brax's own")
    parser.add_argument("--deterministic-eval", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--time-budget-s",
        type=float,
        default=None,
        help="start no further seed once the mean seed time would take the run past this",
    )
    parser.add_argument("--min-seeds", type=int, default=1, help="seeds run despite the budget")
    args = parser.parse_args()

    hparams, derived = effective_hparams(args.env, args.num_timesteps)
    print(f"{args.env}: {hparams} {derived}", flush=True)
    runs: list[dict[str, Any]] = []
    begin = time.perf_counter()
    for seed in range(args.seeds):
        elapsed = time.perf_counter() - begin
        if (
            args.time_budget_s is not None
            and len(runs) >= args.min_seeds
            and elapsed + elapsed / len(runs) > args.time_budget_s
        ):
            print(f"time budget: stopping after {len(runs)} seeds ({elapsed:.0f} s)", flush=True)
            break
        runs.append(run_seed(args.env, args.backend, hparams, seed, args.deterministic_eval))
        print(
            f"seed {seed}: final {runs[-1]['final_return']:.2f} at "
            f"{runs[-1]['final_env_steps']} steps, {runs[-1]['wall_s']:.1f} s",
            flush=True,
        )

    seeds = [r["seed"] for r in runs]
    before = [at_or_before(r["curve"], args.num_timesteps) for r in runs]
    policy = "deterministic (mode)" if args.deterministic_eval else "stochastic (sampled)"
    result = {
        "trainer": "brax.training.agents.ppo.train",
        "versions": versions(),
        "backend": args.backend or "brax default (envs.get_environment's, 'generalized')",
        "hyperparameters": hparams,
        "hyperparameters_source": (
            "Brax's notebooks/training.ipynb train_fn table; num_timesteps overridden, "
            "num_evals lowered so training stops at the first training step >= num_timesteps"
        ),
        "notebook_hyperparameters": NOTEBOOK_HPARAMS[args.env],
        "derived": derived,
        "protocol": (
            "Brax's evaluator on a separate eval env (128 envs, episode_length 1000, one "
            f"episode each from a fresh reset) after every training epoch; {policy} policy; "
            "eval/episode_reward = mean undiscounted unscaled return over the 128 episodes. "
            "final = the eval at the end of training (final_env_steps); at_or_before = the "
            "last eval at or before num_timesteps."
        ),
        "seeds": seeds,
        "seeds_requested": args.seeds,
        "time_budget_s": args.time_budget_s,
        "runs": runs,
        "final_returns": [r["final_return"] for r in runs],
        "final": summary([r["final_return"] for r in runs]),
        "at_or_before_returns": [p["episode_reward"] for p in before],
        "at_or_before_env_steps": before[0]["env_steps"],
        "at_or_before": summary([p["episode_reward"] for p in before]),
        "wall_s_per_seed": [r["wall_s"] for r in runs],
        "wall_s_per_seed_mean": float(np.mean([r["wall_s"] for r in runs])),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }

    data: dict[str, Any] = {}
    if args.out.exists():
        data = json.loads(args.out.read_text())
    data.setdefault(
        "description",
        "Brax's own PPO trainer (benchmarks/brax_reference.py, own venv; not purejaxppo) "
        "on Brax envs on CPU, for comparison with purejaxppo's Brax results.",
    )
    data.setdefault("envs", {})[args.env] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    final = result["final"]
    print(
        f"{args.env}: final {final['mean']:.1f} [{final['ci95'][0]:.1f}, {final['ci95'][1]:.1f}]"
        f" over {len(seeds)} seeds; wrote {args.out}",
        flush=True,
    )


if __name__ == "__main__":
    main()
