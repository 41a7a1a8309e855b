"""Run by tests/test_data_parallel.py in a subprocess with 4 virtual CPU devices: one agent
split over meshes of devices (purejaxppo.parallel.make_data_parallel_trainer) next to the
same agent on one device; writes every output leaf to ``--out``.npz and the host calls
to ``--out``.json."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from purejaxppo import (
    PPOConfig,
    load_checkpoint,
    make_train,
    make_trainer,
    parallel,
    save_checkpoint,
)
from purejaxppo.collectives import Collectives
from purejaxppo.envs.vec_env import RunningMeanStd, merge_running_stats

# one minibatch (two epochs on it): the claim is equality with one device
EXACT = PPOConfig(
    num_envs=8,
    num_steps=16,
    num_minibatches=1,
    update_epochs=2,
    total_timesteps=8 * 16 * 3,
    hidden_sizes=(16,),
)
RECURRENT = EXACT.replace(network="gru", rnn_hidden_size=8, update_epochs=1)
# everything that is reduced: normalisation, minibatches shuffled per device, the
# adaptive KL penalty, target_kl's early stop. Discrete actions (Gumbel-max samples):
# the first rollout's actions come out the same on 4 devices as on one although each
# device normalises with its own statistics until the rollout ends, so the merged
# statistics after it must be the one-device run's
REDUCED = EXACT.replace(
    num_minibatches=2,
    total_timesteps=8 * 16 * 2,
    normalize_obs=True,
    normalize_reward=True,
    policy_objective="kl_penalty",
    target_kl=0.02,
)
SEEDS = 2


def _flat(tree, prefix: str) -> dict[str, np.ndarray]:
    """Every leaf as a NumPy array (typed keys as their raw data), by key path."""
    flat = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(parallel.gather(tree)):
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        flat[prefix + jax.tree_util.keystr(path)] = np.asarray(leaf)
    return flat


def _runner(trainer):
    """``run_many`` jitted once per trainer (its programs are reused across calls)."""
    return jax.jit(trainer.run_many, static_argnums=1)


def _replicas_differ(tree) -> list[str]:
    """The key paths of replicated leaves whose copies differ between devices."""
    differ = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        copies = [np.asarray(shard.data) for shard in leaf.addressable_shards]
        if any(not np.array_equal(copies[0], c, equal_nan=True) for c in copies[1:]):
            differ.append(jax.tree_util.keystr(path))
    return differ


def _merged_statistics(devices: int) -> dict[str, np.ndarray]:
    """merge_running_stats over ``devices`` devices, each folding 3 batches of its own
    into the same start, against the start folded with all of them in float64 NumPy."""
    mesh = parallel.device_mesh(devices, axis="data")
    collectives = Collectives("data", devices)
    rng = np.random.default_rng(0)
    start_data = rng.normal(3.0, 2.0, (50, 3)).astype(np.float32)
    start = RunningMeanStd.create((3,)).update(jnp.asarray(start_data))
    # each device: 3 batches of 7 observations, a different scale per device
    data = rng.normal(3.0, 2.0, (devices, 3, 7, 3)) * np.arange(1, devices + 1)[:, None, None, None]
    data = data.astype(np.float32)

    def fold(own: jax.Array) -> RunningMeanStd:
        local = start
        for batch in own[0]:
            local = local.update(batch)
        return merge_running_stats(collectives, start, local)

    merged = jax.jit(
        jax.shard_map(fold, mesh=mesh, in_specs=P("data"), out_specs=P(), check_vma=False)
    )(jnp.asarray(data))
    every = np.concatenate([start_data, data.reshape(-1, 3)]).astype(np.float64)
    # the prior count 1e-4 at mean 0, var 1, as RunningMeanStd.create
    count = len(every) + 1e-4
    mean = every.sum(0) / count
    var = (np.square(every - mean).sum(0) + 1e-4 * (1.0 + mean**2)) / count
    return {
        "merged_mean": np.asarray(merged.mean),
        "merged_var": np.asarray(merged.var),
        "merged_count": np.asarray(merged.count),
        "numpy_mean": mean,
        "numpy_var": var,
        "numpy_count": np.asarray(count),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--checkpoint", required=True)
    args = parser.parse_args()
    keys = jax.random.split(jax.random.key(0), SEEDS)
    results: dict[str, np.ndarray] = {}
    report: dict[str, object] = {}
    calls: list[list[int]] = []

    def on_update(metrics):
        calls.append([int(metrics["update"]), *np.shape(metrics["kl"])])

    # one minibatch, 3 updates as 2 + 1: one device, and 4 devices (reporting to the
    # host) whose state after 2 is saved and resumed for the third on 2 devices and on one
    mesh4 = parallel.device_mesh(4, axis="data")
    plain = make_trainer(EXACT)
    dp4 = parallel.make_data_parallel_trainer(EXACT, mesh4, on_update=on_update)
    dp2 = parallel.make_data_parallel_trainer(EXACT, parallel.device_mesh(2, axis="data"))
    run_plain, run_dp4, run_dp2 = _runner(plain), _runner(dp4), _runner(dp2)
    state, first = run_plain(plain.init_many(keys), 2)
    results.update(_flat((run_plain(state, 1), first), "exact_one"))
    state, first = run_dp4(dp4.init_many(keys), 2)
    save_checkpoint(args.checkpoint, state, EXACT)
    results.update(_flat((run_dp4(state, 1), first), "exact_dp4"))
    report["calls"] = list(calls)
    report["env_sharding"] = str(state.runner.obs.sharding.spec)
    report["params_sharding"] = str(
        jax.tree.leaves(state.runner.train_state.params)[0].sharding.spec
    )
    for name, trainer, run in (("dp2", dp2, run_dp2), ("one", plain, run_plain)):
        restored = load_checkpoint(args.checkpoint, trainer, batch_shape=(SEEDS,))
        results.update(_flat((run(restored, 1), first), f"resumed_{name}"))

    # a recurrent network, through make_data_parallel_train (one seed)
    for name, train in (
        ("one", jax.jit(jax.vmap(make_train(RECURRENT)))),
        ("dp4", jax.jit(jax.vmap(parallel.make_data_parallel_train(RECURRENT, mesh4)))),
    ):
        out = train(keys[:1])
        results.update(_flat((out.train_state.params, out.metrics), f"gru_{name}"))

    # everything reduced: statistics after one update against one device's; after two,
    # the replicated parts are still the same on every device
    for name, trainer in (
        ("one", make_trainer(REDUCED)),
        ("dp4", parallel.make_data_parallel_trainer(REDUCED, mesh4)),
    ):
        run = _runner(trainer)
        state, metrics = run(trainer.init_many(keys), 1)
        env_state = state.runner.env_state
        stats = (env_state.obs_stats, env_state.return_stats, metrics["episodes"])
        results.update(_flat(stats, f"stats_{name}"))
    state, metrics = run(state, 1)
    report["replicas_differ"] = _replicas_differ(
        (state.runner.train_state, state.runner.env_state.obs_stats,
         state.runner.env_state.return_stats, state.runner.kl_beta, metrics)
    )  # fmt: skip
    results.update(_flat(metrics, "reduced_dp4"))

    results.update(_merged_statistics(4))
    np.savez(f"{args.out}.npz", **results)
    with open(f"{args.out}.json", "w") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main()
