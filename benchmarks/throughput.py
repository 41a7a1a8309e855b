"""Training throughput against its floor: PPO steps/s vs random-action env stepping.

For each case it compiles ``jax.jit(jax.vmap(train))`` ahead of time (compile time is
reported separately), makes one warm-up call, then times ``--repeats`` calls. The floor is
the same envs stepped with uniformly random actions for the same number of steps (no
network, no update), compiled and timed the same way; ``train_sps / env_sps`` says how
much of the ceiling training reaches. Also records XLA's memory analysis of each compiled
training program (``train.memory.temp_bytes``: the rollout, batch and activations held
during a run), and its arithmetic: the floating-point operations of one call (counted on
the jaxpr by ``bench_util.flop_count``, since XLA's cost analysis counts a loop body once),
the FLOP/s the run achieved, and that as a fraction of this machine's measured float32
matmul rate (``bench_util.matmul_peak``, a 2048 x 2048 matmul: the hardware limit the
program is compared with). Writes JSON (with jax version, backend, device and CPU count)
and a PNG of steps/s against the number of parallel seeds and envs.

``--cases NAME ... --tag T`` measures some cases only (the networks' costs:
``breakout_minatar_64x128_cnn``, ``stateless_cartpole_16x128_seeds8_{mlp,gru,lstm}``).

``--long-runs`` measures instead what the command line's long-run machinery costs on its
default run (CartPole-v1, 4 seeds x 500k steps, 976 updates): one uninterrupted call of
``run_many`` against the same updates in the CLI's chunks (``purejaxppo.runs``, with the
divergence guard after every chunk), with periodic checkpoints as well, and with the CSV
log as well; interleaved rounds, compile time apart. The guard's own host time is timed
on its own too.

    python benchmarks/throughput.py [--quick] [--repeats 3] [--cases NAME ...] [--tag T]
                                    [--long-runs] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NamedTuple

import jax
from bench_util import flop_count, machine, matmul_peak, time_compiled, write_json

from purejaxppo import PPOConfig, VecEnv, make_env, make_train


class Case(NamedTuple):
    name: str
    config: PPOConfig
    seeds: int
    on_update: bool = False  # a no-op host callback every update: the cost of live progress


def cases(quick: bool) -> list[Case]:
    """The measured configurations (``quick``: tiny budgets, for the smoke test)."""
    cartpole = PPOConfig(env_name="CartPole-v1", total_timesteps=500_000)
    if quick:  # one discrete single-seed case, one continuous vmapped-seeds case with on_update
        tiny = cartpole.replace(total_timesteps=4 * 128 * 4)
        pendulum = tiny.replace(env_name="Pendulum-v1", num_envs=16, total_timesteps=16 * 128 * 2)
        pendulum = pendulum.replace(network="gru", rnn_hidden_size=16)  # the recurrent path
        return [
            Case("cartpole_4x128_seeds1", tiny, 1),
            Case("pendulum_16x128_seeds2_on_update_gru", pendulum, 2, on_update=True),
        ]
    # the networks' cost: the same env and sizes, only the network differs
    stateless = PPOConfig(
        env_name="StatelessCartPole-v1",
        num_envs=16,
        num_steps=128,
        hidden_sizes=(64,),
        rnn_hidden_size=64,
        total_timesteps=262_144,
    )
    breakout = PPOConfig(
        env_name="Breakout-MinAtar",
        num_envs=64,
        num_steps=128,
        num_minibatches=8,
        total_timesteps=1_048_576,
    )
    return [
        Case("cartpole_4x128_seeds1", cartpole, 1),  # PureJaxRL's default config
        Case("cartpole_4x128_seeds1_on_update", cartpole, 1, on_update=True),
        Case(
            "cartpole_4x128_seeds64_on_update", cartpole.replace(total_timesteps=100_352), 64, True
        ),
        Case("cartpole_4x128_seeds8", cartpole, 8),
        Case("cartpole_4x128_seeds64", cartpole.replace(total_timesteps=100_352), 64),
        Case("cartpole_256envs", cartpole.replace(num_envs=256, total_timesteps=2_097_152), 1),
        Case("cartpole_2048envs", cartpole.replace(num_envs=2048, total_timesteps=4_194_304), 1),
        Case("breakout_minatar_64x128", breakout, 1),
        Case("breakout_minatar_64x128_cnn", breakout.replace(network="cnn"), 1),
        Case("stateless_cartpole_16x128_seeds8_mlp", stateless, 8),
        Case("stateless_cartpole_16x128_seeds8_gru", stateless.replace(network="gru"), 8),
        Case("stateless_cartpole_16x128_seeds8_lstm", stateless.replace(network="lstm"), 8),
        Case(
            "pendulum_16x128",
            PPOConfig(
                env_name="Pendulum-v1",
                num_envs=16,
                num_steps=128,
                update_epochs=10,
                num_minibatches=32,
                normalize_obs=True,
                normalize_reward=True,
                total_timesteps=1_048_576,
            ),
            1,
        ),
    ]


def make_random_rollout(config: PPOConfig):
    """``run(rng)``: ``num_envs`` envs stepped ``trained_timesteps / num_envs`` times with
    uniformly random actions: the env-only floor of a training run's cost."""
    env, env_params = make_env(config.env_name)
    vec_env = VecEnv(env=env, env_params=env_params, num_envs=config.num_envs)
    spec = vec_env.action_spec
    steps_per_env = config.trained_timesteps // config.num_envs

    def random_action(key: jax.Array) -> jax.Array:
        if spec.discrete:
            return jax.random.randint(key, (config.num_envs,), 0, spec.dim)
        return jax.random.uniform(
            key, (config.num_envs, spec.dim), minval=spec.low, maxval=spec.high
        )

    def run(rng: jax.Array) -> jax.Array:
        _, state = vec_env.reset(rng)

        def step(state, key):
            action_key, step_key = jax.random.split(key)
            transition, state = vec_env.step(step_key, state, random_action(action_key), 0.99)
            return state, transition.reward.sum()

        _, rewards = jax.lax.scan(step, state, jax.random.split(rng, steps_per_env))
        return rewards.sum()

    return run


def measure(case: Case, repeats: int, peak_flops_per_s: float) -> dict[str, Any]:
    keys = jax.random.split(jax.random.key(0), case.seeds)
    steps = case.seeds * case.config.trained_timesteps
    on_update = (lambda metrics: None) if case.on_update else None
    train_fn = jax.vmap(make_train(case.config, on_update=on_update))
    _, train = time_compiled(train_fn, keys, repeats=repeats, warmup=True)
    _, floor = time_compiled(
        jax.vmap(make_random_rollout(case.config)), keys, repeats=repeats, warmup=True
    )
    train_sps = steps / train["run_s_median"]
    env_sps = steps / floor["run_s_median"]
    flops = flop_count(train_fn, keys)
    achieved = flops["flops"] / train["run_s_median"]
    return {
        "case": case.name,
        "env_name": case.config.env_name,
        "seeds": case.seeds,
        "on_update": case.on_update,
        "num_envs": case.config.num_envs,
        "num_steps": case.config.num_steps,
        "env_steps": steps,
        "train": train,
        "env_only": floor,
        "train_sps": train_sps,
        "env_sps": env_sps,
        "train_over_env": train_sps / env_sps,
        "train_flops": flops["flops"],
        "train_matmul_flops": flops["matmul_flops"],
        "train_flops_per_s": achieved,
        "fraction_of_matmul_peak": achieved / peak_flops_per_s,
        "config": case.config.to_dict(),
    }


def measure_long_runs(repeats: int, quick: bool) -> dict[str, Any]:
    """One call of ``run_many`` vs the CLI's chunked loop (guard; + checkpoints; + CSV),
    ``repeats`` interleaved rounds; medians of the run times (compilation excluded)."""
    import statistics
    import tempfile
    import time

    import numpy as np

    from purejaxppo import make_trainer
    from purejaxppo.guard import finite_parameters, first_nonfinite
    from purejaxppo.runs import RunOptions, chunk_plan, train_in_chunks

    seeds = 2 if quick else 4
    config = PPOConfig(total_timesteps=4 * 128 * (24 if quick else 976))
    trainer = make_trainer(config)
    updates = config.num_updates
    every = updates // 8  # 8 checkpoints per run
    state = jax.jit(trainer.init_many)(jax.random.split(jax.random.key(0), seeds))
    one_call = jax.jit(trainer.run_many, static_argnums=1).lower(state, updates).compile()
    variants = {
        "chunks_with_guard": RunOptions(seeds=seeds),
        "chunks_with_guard_and_8_checkpoints": RunOptions(seeds=seeds, checkpoint_every=every),
        "chunks_with_guard_checkpoints_and_csv": RunOptions(
            seeds=seeds, checkpoint_every=every, log=("csv",)
        ),
    }
    run_s: dict[str, list[float]] = {"one_call": [], **{name: [] for name in variants}}
    compile_s: dict[str, list[float]] = {name: [] for name in variants}
    saves: dict[str, int] = {}
    save_s: dict[str, list[float]] = {name: [] for name in variants}
    jax.block_until_ready(one_call(state))  # warm-up
    reference = None
    for round_index in range(repeats):
        names = list(run_s) if round_index % 2 == 0 else list(reversed(run_s))
        for name in names:
            if name == "one_call":
                start = time.perf_counter()
                _, metrics = jax.block_until_ready(one_call(state))
                run_s[name].append(time.perf_counter() - start)
                reference = {key: np.asarray(value) for key, value in metrics.items()}
                continue
            with tempfile.TemporaryDirectory() as folder:
                result = train_in_chunks(trainer, state, Path(folder), variants[name])
            run_s[name].append(result.run_s)
            compile_s[name].append(result.compile_s)
            saves[name] = result.saves
            save_s[name].append(result.save_s)
            for key, value in reference.items() if reference else ():
                np.testing.assert_array_equal(result.metrics[key], value, err_msg=key)
    # the guard alone, on the run's own metrics and state, once per chunk of the plan
    plan = chunk_plan(0, updates)
    guard_s = []
    final_state, metrics = one_call(state)
    host = {key: np.asarray(value) for key, value in metrics.items()}
    params = final_state.runner.train_state.params
    jax.block_until_ready(finite_parameters(params))
    for _ in range(repeats):
        start = time.perf_counter()
        first = 0
        for length in plan:
            chunk = {key: value[:, first : first + length] for key, value in host.items()}
            assert first_nonfinite(chunk, first, finite_parameters(params)) is None
            first += length
        guard_s.append(time.perf_counter() - start)
    medians = {name: statistics.median(times) for name, times in run_s.items()}
    base = medians["one_call"]
    return {
        "config": config.to_dict(),
        "seeds": seeds,
        "num_updates": updates,
        "chunks": len(plan),
        "checkpoint_every": every,
        "checkpoints_saved": saves,
        "checkpoint_s_median": {name: statistics.median(v) for name, v in save_s.items()},
        "repeats": repeats,
        "run_s": run_s,
        "run_s_median": medians,
        "overhead_vs_one_call": {name: medians[name] / base - 1 for name in variants},
        "compile_s_median": {name: statistics.median(v) for name, v in compile_s.items()},
        "guard_host_s_per_run_median": statistics.median(guard_s),
        # every chunked round's metrics were asserted equal to the one call's, bit for bit
        "metrics_equal_to_one_call": "asserted",
    }


def _megabytes(memory: dict[str, int] | None) -> str:
    return "n/a" if memory is None else f"{memory['temp_bytes'] / 1e6:.1f} MB"


def plot(results: list[dict[str, Any]], path: Path) -> bool:
    """Steps/s of the CartPole cases against parallel envs; False (nothing drawn) when
    ``results`` has no CartPole case (a ``--cases`` selection without one)."""
    if not any(r["env_name"] == "CartPole-v1" and not r.get("on_update") for r in results):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cartpole = [r for r in results if r["env_name"] == "CartPole-v1" and not r.get("on_update")]
    series = {  # two ways to add parallelism, each starting from the 1-seed 4-env case
        "vmapped seeds x 4 envs": sorted(
            (r for r in cartpole if r["num_envs"] == 4), key=lambda r: r["seeds"]
        ),
        "1 seed x more envs": sorted(
            (r for r in cartpole if r["seeds"] == 1), key=lambda r: r["num_envs"]
        ),
    }
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, rows), style in zip(series.items(), ("-", "--"), strict=True):
        xs = [r["seeds"] * r["num_envs"] for r in rows]
        ax.plot(
            xs,
            [r["train_sps"] for r in rows],
            "o" + style,
            color="C0",
            label=f"PPO training, {label}",
        )
        ax.plot(
            xs,
            [r["env_sps"] for r in rows],
            "s" + style,
            color="C1",
            label=f"random-action env only, {label}",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("parallel environments (seeds x num_envs)")
    ax.set_ylabel("environment steps per second")
    where = machine()
    ax.set_title(f"CartPole-v1 throughput ({where['device']}, {where['cpu_count']} CPUs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--cases", nargs="+", metavar="NAME", help="only these cases (default: all)"
    )
    parser.add_argument("--tag", help="appended to the output file names")
    parser.add_argument(
        "--long-runs",
        action="store_true",
        help="the cost of chunks, the divergence guard, checkpoints and logs instead",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    if args.long_runs:
        result = measure_long_runs(args.repeats, args.quick)
        for name, seconds in result["run_s_median"].items():
            overhead = result["overhead_vs_one_call"].get(name)
            extra = "" if overhead is None else f"  {100 * overhead:+.1f}% vs one call"
            print(f"{name:40s} run {seconds:7.2f} s{extra}")
        print(f"guard alone: {result['guard_host_s_per_run_median'] * 1e3:.1f} ms per run")
        stem = f"throughput_{jax.default_backend()}_long_runs" + ("_quick" if args.quick else "")
        report = {"machine": machine(), "quick": args.quick, "long_runs": result}
        write_json(args.out, stem, report, default=float)
        print(f"wrote {args.out / stem}.json")
        return report

    peak = matmul_peak()
    print(f"matmul peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s (float32, 2048 x 2048)")
    results = []
    chosen = cases(args.quick)
    if args.cases:
        unknown = set(args.cases) - {case.name for case in chosen}
        if unknown:
            parser.error(f"unknown --cases {sorted(unknown)}; known: {[c.name for c in chosen]}")
        chosen = [case for case in chosen if case.name in args.cases]
    for case in chosen:
        result = measure(case, args.repeats, peak["flops_per_s"])
        results.append(result)
        print(
            f"{case.name:28s} compile {result['train']['compile_s']:6.1f} s  "
            f"run {result['train']['run_s_median']:7.2f} s  train {result['train_sps']:>12,.0f} "
            f"sps  env-only {result['env_sps']:>12,.0f} sps  ratio {result['train_over_env']:.3f}"
            f"  temp memory {_megabytes(result['train']['memory'])}  "
            f"{result['train_flops_per_s'] / 1e9:.1f} GFLOP/s "
            f"({100 * result['fraction_of_matmul_peak']:.0f}% of matmul peak)",
            flush=True,
        )
    report = {
        "machine": machine(),
        "repeats": args.repeats,
        "quick": args.quick,
        "matmul_peak": peak,
        "results": results,
    }
    stem = f"throughput_{jax.default_backend()}" + (f"_{args.tag}" if args.tag else "")
    stem += "_quick" if args.quick else ""
    write_json(args.out, stem, report, default=float)
    drawn = plot(results, args.out / f"{stem}.png")
    figure = " and .png" if drawn else " (no CartPole case: no figure)"
    print(f"wrote {args.out / stem}.json{figure}")
    return report


if __name__ == "__main__":
    main()
