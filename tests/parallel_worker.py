"""Run by tests/test_parallel.py in a subprocess with its own ``XLA_FLAGS`` (virtual CPU
devices), so the rest of the suite keeps its single device: trains a tiny config's seeds
over device meshes and writes what it got to ``--out`` (``.npz`` of every output leaf, and
``.json`` with the host calls and the meshes)."""

import argparse
import json

import jax
import numpy as np

from purejaxppo import PPOConfig, parallel

CONFIG = PPOConfig(
    num_envs=4, num_steps=16, num_minibatches=2, total_timesteps=4 * 16 * 3, hidden_sizes=(16,)
)
SEEDS = 8


def _flat(tree) -> dict[str, np.ndarray]:
    """Every leaf as a NumPy array (typed keys as their raw data), by key path."""
    leaves = jax.tree_util.tree_leaves_with_path(parallel.gather(tree))
    flat = {}
    for path, leaf in leaves:
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        flat[jax.tree_util.keystr(path)] = np.asarray(leaf)
    return flat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--width", type=int, default=2)
    args = parser.parse_args()
    from purejaxppo import make_train

    calls: list[list[int]] = []
    train = make_train(
        CONFIG, on_update=lambda m: calls.append([int(m["update"]), *np.shape(m["kl"])])
    )
    keys = jax.random.split(jax.random.key(0), SEEDS)
    results, report = {}, {"meshes": [], "calls": {}}
    for devices in args.devices:
        mesh = parallel.device_mesh(devices)
        # all runs in one program only on the largest mesh (a compile per run is slow)
        for width in [args.width] + ([None] if devices == max(args.devices) else []):
            name = f"devices{mesh.devices.size}_width{width}"
            out = jax.block_until_ready(parallel.shard_vmap(train, mesh, width=width)(keys))
            results.update({f"{name}{key}": value for key, value in _flat(out).items()})
            report["calls"][name] = list(calls)
            calls.clear()
        report["meshes"].append(parallel.describe(mesh))
    # the library's own vmap of 2 seeds at a time, on one device (no mesh)
    plain = jax.jit(jax.vmap(make_train(CONFIG)))
    metrics = [plain(keys[i : i + 2]).metrics for i in range(0, SEEDS, 2)]
    for name in metrics[0]:
        joined = np.concatenate([np.asarray(m[name]) for m in metrics])
        results[f"library_width2.metrics['{name}']"] = joined
    try:
        parallel.shard_vmap(train, parallel.device_mesh())(jax.random.split(keys[0], 10))
    except ValueError as error:
        report["uneven"] = str(error)
    np.savez(f"{args.out}.npz", **results)
    with open(f"{args.out}.json", "w") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main()
