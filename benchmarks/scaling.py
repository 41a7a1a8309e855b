"""Independent seeds, and one data-parallel agent, over 1, 2, 4, 8 devices: steps/s against
the device count, and a check that every count gives the same bits (independent seeds).

For each device count ``d`` it trains the same ``--seeds`` seeds split over a mesh of ``d``
devices (``purejaxppo.parallel.shard_vmap``) two ways: all of a device's seeds in one
``vmap`` (``width=None``, the fastest) and ``--width`` at a time (the results are then
bit-identical for every ``d``, which the script checks). Compile time is reported apart;
run times are medians of ``--repeats`` interleaved rounds. Writes JSON and a PNG.

On a machine without accelerators the devices are virtual CPU devices
(``--xla_force_host_platform_device_count``, set by this script before JAX starts) that
share the same cores: the curve then shows that splitting costs little and changes no
result, not a speed-up. On a multi-GPU machine it is the real scaling curve.

One agent across devices (data parallel: one run's ``--dp-envs`` envs split over the mesh,
``purejaxppo.parallel.make_data_parallel_train``) is timed the same way, next to the plain
single-device trainer on the same config (its equality with that one, with one
minibatch, is what tests/test_data_parallel.py checks).

    python benchmarks/scaling.py [--quick] [--seeds 8] [--width 1] [--repeats 3]
                                 [--devices 1 2 4 8] [--dp-envs 64] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

VIRTUAL_DEVICES = 8
if "jax" not in sys.modules and "xla_force_host_platform_device_count" not in os.environ.get(
    "XLA_FLAGS", ""
):
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={VIRTUAL_DEVICES}"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from bench_util import machine, write_json  # noqa: E402

from purejaxppo import PPOConfig, make_train, parallel  # noqa: E402
from purejaxppo.train import final_return  # noqa: E402


def interleaved_rounds(
    programs: dict[str, Any], args: tuple[Any, ...], repeats: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Run every program on ``args`` in ``repeats`` rounds, the order reversed every other
    round; their run times per round, and each one's last output."""
    run_s: dict[str, list[float]] = {name: [] for name in programs}
    outputs = {}
    for round_index in range(repeats):
        names = list(programs) if round_index % 2 == 0 else list(reversed(programs))
        for name in names:
            start = time.perf_counter()
            outputs[name] = jax.block_until_ready(programs[name](*args))
            run_s[name].append(time.perf_counter() - start)
    return run_s, outputs


def measure(
    config: PPOConfig, seeds: int, device_counts: list[int], width: int, repeats: int
) -> dict[str, Any]:
    """Compile every (device count, width) program, then time ``repeats`` interleaved rounds;
    returns timings, steps/s and whether the fixed-width runs agree bit for bit."""
    train = make_train(config)
    keys = jax.random.split(jax.random.key(0), seeds)
    programs, compile_s = {}, {}
    for devices in device_counts:
        for w in (None, width):
            name = f"devices{devices}_width{w}"
            sharded = parallel.shard_vmap(train, parallel.device_mesh(devices), width=w)
            start = time.perf_counter()
            sharded.compile_for(keys)
            compile_s[name] = time.perf_counter() - start
            programs[name] = sharded
            jax.block_until_ready(sharded(keys))  # warm-up
    run_s, outputs = interleaved_rounds(programs, (keys,), repeats)
    steps = seeds * config.trained_timesteps
    reference = parallel.gather(outputs[f"devices{device_counts[0]}_width{width}"].metrics)
    identical = {
        devices: all(
            np.array_equal(
                parallel.gather(outputs[f"devices{devices}_width{width}"].metrics)[key],
                reference[key],
                equal_nan=True,
            )
            for key in reference
        )
        for devices in device_counts
    }
    return {
        "seeds": seeds,
        "width": width,
        "device_counts": device_counts,
        "env_steps_per_call": steps,
        "compile_s": compile_s,
        "run_s": run_s,
        "run_s_median": {name: statistics.median(t) for name, t in run_s.items()},
        "env_steps_per_s": {name: steps / statistics.median(t) for name, t in run_s.items()},
        "fixed_width_bit_identical_to_first_count": identical,
        "config": config.to_dict(),
    }


def measure_data_parallel(
    config: PPOConfig, device_counts: list[int], repeats: int
) -> dict[str, Any]:
    """One agent (one seed) with ``config.num_envs`` envs split over each device count,
    and the plain trainer: compile time apart, run times over interleaved rounds."""
    key = jax.random.key(0)
    programs, compile_s = {}, {}
    candidates = {"plain": make_train(config)}
    for devices in device_counts:
        mesh = parallel.device_mesh(devices, axis=parallel.DATA_AXIS)
        candidates[f"devices{devices}"] = parallel.make_data_parallel_train(config, mesh)
    for name, train in candidates.items():
        start = time.perf_counter()
        programs[name] = jax.jit(train).lower(key).compile()
        compile_s[name] = time.perf_counter() - start
        jax.block_until_ready(programs[name](key))  # warm-up
    run_s, outputs = interleaved_rounds(programs, (key,), repeats)
    returns = {
        name: float(final_return(parallel.gather(out.metrics)["episode_return"]))
        for name, out in outputs.items()
    }
    steps = config.trained_timesteps
    return {
        "num_envs": config.num_envs,
        "device_counts": device_counts,
        "env_steps_per_call": steps,
        "compile_s": compile_s,
        "run_s": run_s,
        "run_s_median": {name: statistics.median(t) for name, t in run_s.items()},
        "env_steps_per_s": {name: steps / statistics.median(t) for name, t in run_s.items()},
        "final_return": returns,
        "config": config.to_dict(),
    }


def plot(result: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = result["device_counts"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for width, style in ((None, "o-"), (result["width"], "s--")):
        label = "all of a device's seeds at once" if width is None else f"{width} at a time"
        sps = [result["env_steps_per_s"][f"devices{d}_width{width}"] for d in counts]
        ax.plot(counts, sps, style, label=f"{result['seeds']} seeds, {label}")
    agent = result.get("data_parallel")
    if agent is not None:
        sps = [agent["env_steps_per_s"][f"devices{d}"] for d in counts]
        label = f"one agent, its {agent['num_envs']} envs split (data parallel)"
        ax.plot(counts, sps, "^-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(c) for c in counts])
    ax.set_xlabel("devices")
    ax.set_ylabel("environment steps per second")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget (smoke test)")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", type=int, nargs="+", default=None)
    parser.add_argument("--dp-envs", type=int, default=64, help="the data-parallel agent's envs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    available = jax.device_count()
    counts = args.devices or [d for d in (1, 2, 4, 8) if d <= available]
    for devices in counts:
        if devices > available:
            parser.error(f"--devices {devices}: only {available} device(s) here")
        if args.seeds % devices or (args.seeds // devices) % args.width:
            parser.error(
                f"--seeds {args.seeds} must split into --width {args.width} groups "
                f"on {devices} devices"
            )
        if args.dp_envs % devices:
            parser.error(f"--dp-envs {args.dp_envs} must split over {devices} devices")
    if args.quick:
        config = PPOConfig(num_envs=4, num_steps=16, num_minibatches=2, total_timesteps=128)
        agent_config = config.replace(num_envs=args.dp_envs, total_timesteps=args.dp_envs * 32)
    else:
        config = PPOConfig(total_timesteps=100_352)  # CartPole-v1, 196 updates per seed
        # the same 196 updates of PureJaxRL's recipe, 16x the envs, one agent
        agent_config = config.replace(
            num_envs=args.dp_envs, total_timesteps=args.dp_envs * 128 * 196
        )
    repeats = 1 if args.quick else args.repeats
    result = measure(config, args.seeds, counts, args.width, repeats)
    result["data_parallel"] = measure_data_parallel(agent_config, counts, repeats)
    where = machine()
    virtual = where["backend"] == "cpu"
    for name, sps in result["env_steps_per_s"].items():
        print(f"{name:22s} {sps:>12,.0f} steps/s  compile {result['compile_s'][name]:5.1f} s")
    identical = result["fixed_width_bit_identical_to_first_count"]
    print(f"bit-identical with width {args.width}: {identical}")
    agent = result["data_parallel"]
    for name, sps in agent["env_steps_per_s"].items():
        print(
            f"one agent {name:12s} {sps:>12,.0f} steps/s  compile "
            f"{agent['compile_s'][name]:5.1f} s  final return {agent['final_return'][name]:.1f}"
        )
    report = {
        "machine": where,
        "virtual_cpu_devices": virtual,
        "note": "virtual CPU devices share the machine's cores: correctness, not speed-up"
        if virtual
        else "real devices",
        "quick": args.quick,
        "independent_seeds": {k: v for k, v in result.items() if k != "data_parallel"},
        "data_parallel": result["data_parallel"],
    }
    stem = f"scaling_{where['backend']}" + ("_quick" if args.quick else "")
    write_json(args.out, stem, report, default=float)
    title = (
        f"CartPole-v1, {args.seeds} seeds over devices ({where['device']}"
        + (f", {where['cpu_count']} cores shared" if virtual else "")
        + ")"
    )
    plot(result, args.out / f"{stem}.png", title)
    print(f"wrote {args.out / stem}.json and .png")
    return report


if __name__ == "__main__":
    main()
