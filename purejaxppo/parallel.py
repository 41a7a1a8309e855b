"""Placement: independent runs (seeds, a sweep's grid points) spread over devices and hosts.

The trainer is a pure function of arrays and knows nothing of devices; this module only
decides where the arrays of a *batch of runs* live. A vmapped batch axis is split over a
one-dimensional :class:`~jax.sharding.Mesh` (``jax.sharding.NamedSharding``): every device
holds its share of the runs, XLA compiles one program for all of them (GSPMD), and the
outputs stay sharded until asked for (:func:`gather`). Runs never exchange data, so no
collective runs in training; a host callback (``on_update``, ``progress``) still sees every
run at once, once per update, in the process that holds the first device.

On CPU a run's results are bit-identical whatever the number of devices it is split over
(tested for 1, 2 and 4 devices and across two processes): each device runs the same
per-run arithmetic on fewer runs.

Several hosts: call :func:`initialize` (``jax.distributed.initialize``; the coordinator,
process count and id from arguments, ``PUREJAXPPO_COORDINATOR`` /
``PUREJAXPPO_NUM_PROCESSES`` / ``PUREJAXPPO_PROCESS_ID``, or JAX's own cluster detection
such as SLURM's) in every process before anything else touches JAX, then build the mesh
over all devices (:func:`device_mesh`) and run the same program everywhere.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

RUNS_AXIS = "runs"
COORDINATOR_ENV = "PUREJAXPPO_COORDINATOR"
NUM_PROCESSES_ENV = "PUREJAXPPO_NUM_PROCESSES"
PROCESS_ID_ENV = "PUREJAXPPO_PROCESS_ID"


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process run (``jax.distributed.initialize``), once per process, before
    any other JAX call. Values not given come from ``PUREJAXPPO_COORDINATOR``
    (``host:port`` of process 0), ``PUREJAXPPO_NUM_PROCESSES`` and ``PUREJAXPPO_PROCESS_ID``;
    with none of them set, JAX detects the cluster itself (SLURM, Open MPI, TPU pods).
    On CPU, cross-process collectives use gloo."""
    coordinator_address = coordinator_address or os.environ.get(COORDINATOR_ENV)
    if num_processes is None and NUM_PROCESSES_ENV in os.environ:
        num_processes = _env_int(NUM_PROCESSES_ENV)
    if process_id is None and PROCESS_ID_ENV in os.environ:
        process_id = _env_int(PROCESS_ID_ENV)
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "a multi-process run needs all of the coordinator address, the number of "
            f"processes and this process's id (flags, or {COORDINATOR_ENV}, "
            f"{NUM_PROCESSES_ENV}, {PROCESS_ID_ENV}); got coordinator={coordinator_address!r}, "
            f"num_processes={num_processes!r}, process_id={process_id!r}"
        )
    if all(given) and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {os.environ[name]!r}") from None


def device_mesh(devices: int | str | Sequence[Any] | None = "all", axis: str = RUNS_AXIS) -> Mesh:
    """A one-dimensional mesh (axis ``axis``, ``"runs"`` by default) over ``devices``:
    ``"all"`` or None for every device of every process (``jax.devices()``), an int ``N``
    for the first ``N``, or a sequence of devices."""
    available = jax.devices()
    if devices is None or devices == "all":
        chosen = available
    elif isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices={devices}: this run has {len(available)} device(s) "
                f"({available[0].platform}); use 1 to {len(available)} or 'all'"
            )
        chosen = available[:devices]
    elif isinstance(devices, str):
        raise ValueError(f"devices must be 'all', a positive integer or devices, got {devices!r}")
    else:
        chosen = list(devices)
    return Mesh(np.asarray(chosen), (axis,))


def check_split(count: int, mesh: Mesh, what: str = "runs") -> None:
    """``ValueError`` unless ``count`` runs split evenly over the mesh's devices, saying
    which counts (and which device counts) would."""
    devices = mesh.devices.size
    if count % devices == 0:
        return
    fitting = [d for d in range(1, min(devices, count) + 1) if count % d == 0]
    multiples = [m for m in ((count // devices) * devices, -(-count // devices) * devices) if m]
    raise ValueError(
        f"{count} {what} cannot be split evenly over {devices} devices: use a multiple of "
        f"{devices} ({' or '.join(map(str, multiples))}), or {' or '.join(map(str, fitting))} "
        "device(s)"
    )


def _spec(axis: int | None) -> P:
    """Split along ``axis`` over the mesh (replicated if None)."""
    if axis is None:
        return P()
    return P(*([None] * axis), RUNS_AXIS)


def shardings(mesh: Mesh, axes: Any, tree: Any) -> Any:
    """A ``NamedSharding`` per leaf of ``tree``: split over the mesh along the axis that
    ``axes`` (a prefix of ``tree``, as ``jax.vmap``'s ``in_axes``: an int or None per
    subtree) names for it, replicated where that is None."""
    leaves, treedef = jax.tree.flatten(tree)
    specs = [NamedSharding(mesh, _spec(axis)) for axis in _leaf_axes(axes, tree)]
    assert len(specs) == len(leaves)
    return jax.tree.unflatten(treedef, specs)


def place(tree: Any, sharding: Any) -> Any:
    """``tree`` on the devices ``sharding`` (a matching tree of shardings) names. Works in
    a multi-process run too: every process passes the same values, each keeps its share."""

    def put(leaf: Any, where: NamedSharding) -> jax.Array:
        if isinstance(leaf, jax.Array) and leaf.sharding == where:
            return leaf
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return jax.device_put(leaf, where)
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = np.asarray(jax.random.key_data(leaf))
            impl = jax.random.key_impl(leaf)
            placed = jax.make_array_from_callback(
                data.shape, _key_data_sharding(where, leaf.ndim), lambda index: data[index]
            )
            return jax.random.wrap_key_data(placed, impl=impl)
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, where, lambda index: host[index])

    return jax.tree.map(put, tree, sharding)


def _key_data_sharding(where: NamedSharding, key_ndim: int) -> NamedSharding:
    """The sharding of a key array's raw data: the key's, with the data axis unsplit."""
    spec = tuple(where.spec) + (None,) * (key_ndim - len(where.spec))
    return NamedSharding(where.mesh, P(*spec, None))


def gather(tree: Any) -> Any:
    """Every leaf of ``tree`` as a NumPy array holding all runs, in every process (the
    shares of other processes are fetched; within one process nothing moves but to host)."""
    from jax.experimental import multihost_utils

    def fetch(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                data = multihost_utils.process_allgather(jax.random.key_data(leaf), tiled=True)
                return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return leaf
        return np.asarray(leaf)

    return jax.tree.map(fetch, tree)


def _leaf_axes(axes: Any, tree: Any) -> list[int | None]:
    """The mapped axis of every leaf of ``tree`` (in ``jax.tree.leaves`` order), from
    ``axes``, a prefix of ``tree`` (an int or None per subtree)."""
    marked = jax.tree.map(
        lambda axis, sub: jax.tree.map(lambda _: -1 if axis is None else axis, sub),
        axes,
        tree,
        is_leaf=lambda x: x is None,
    )
    return [None if axis == -1 else axis for axis in jax.tree.leaves(marked)]


def _per_argument(in_axes: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``jax.vmap``'s ``in_axes`` as one entry per positional argument."""
    if isinstance(in_axes, (tuple, list)):
        if len(in_axes) != len(args):
            raise ValueError(f"in_axes has {len(in_axes)} entries for {len(args)} arguments")
        return tuple(in_axes)
    return (in_axes,) * len(args)


def _mapped_size(leaf_axes: list[int | None], leaves: list[Any]) -> int:
    """The one size of the mapped axes (``ValueError`` if they differ or none is mapped)."""
    sizes = {
        np.shape(leaf)[axis]
        for leaf, axis in zip(leaves, leaf_axes, strict=True)
        if axis is not None
    }
    if len(sizes) != 1:
        raise ValueError(f"the mapped axes have sizes {sorted(sizes)}: expected one size")
    return sizes.pop()


def map_in_groups(
    fn: Callable[..., Any], width: int | None, in_axes: Any = 0, out_axes: Any = 0
) -> Callable[..., Any]:
    """``jax.vmap(fn, in_axes, out_axes)``, computed ``width`` runs at a time: a
    ``lax.scan`` over groups of ``width`` runs, each group ``jax.vmap``-ed (None: all runs
    in one ``vmap``). Mapped axes must be 0; an output whose ``out_axes`` is None (the same
    for every run, such as ``Trainer.run_many``'s shared update counter) is the last
    group's.

    Why: XLA compiles a ``vmap`` of ``B`` runs into code whose float rounding depends on
    ``B`` (on CPU, measured: the last bits of the losses differ between 8 runs at once and
    2 + 2 + 2 + 2). A fixed ``width`` makes every run's arithmetic the same however many
    runs a device holds, so results are bit-identical across device counts.
    """
    vmapped = jax.vmap(fn, in_axes=in_axes, out_axes=out_axes)
    if width is None:
        return vmapped

    def grouped(*args: Any) -> Any:
        leaves, treedef = jax.tree.flatten(args)
        axes = _leaf_axes(_per_argument(in_axes, args), args)
        count = _mapped_size(axes, leaves)
        if count % width:
            raise ValueError(f"{count} runs cannot be computed in groups of width {width}")
        mapped = [
            x.reshape(count // width, width, *x.shape[1:])
            for x, axis in zip(leaves, axes, strict=True)
            if axis is not None
        ]

        def step(_: None, group: list[Any]) -> tuple[None, Any]:
            it = iter(group)
            full = [
                next(it) if axis is not None else x for x, axis in zip(leaves, axes, strict=True)
            ]
            return None, vmapped(*jax.tree.unflatten(treedef, full))

        _, outputs = jax.lax.scan(step, None, mapped)
        out_leaves, out_treedef = jax.tree.flatten(outputs)
        out_axes_flat = _leaf_axes(out_axes, jax.eval_shape(vmapped, *args))
        joined = [
            x[-1] if axis is None else x.reshape(count, *x.shape[2:])
            for x, axis in zip(out_leaves, out_axes_flat, strict=True)
        ]
        return jax.tree.unflatten(out_treedef, joined)

    return grouped


def shard_vmap(
    fn: Callable[..., Any],
    mesh: Mesh,
    in_axes: Any = 0,
    out_axes: Any = 0,
    width: int | None = None,
) -> Callable[..., Any]:
    """``jax.jit(jax.vmap(fn, in_axes, out_axes))`` with the mapped axis split over
    ``mesh``: each device computes its share of the runs. ``in_axes`` / ``out_axes`` are
    ``jax.vmap``'s (pytree prefixes), restricted to 0 or None (None: the same value for
    every run, replicated). The inputs are placed on the mesh (:func:`place`), the number
    of runs is checked to split evenly before anything is traced (:func:`check_split`),
    and the outputs come back sharded along their mapped axis.

    ``width``: None vmaps all runs in one program that XLA splits over the devices
    (fastest; a host callback is called once per update with every run, in the process of
    the first device); ``w`` has each device compute its share ``w`` runs at a time
    (``shard_map`` over :func:`map_in_groups`), which makes the results bit-identical for
    any number of devices whose shares are multiples of ``w`` (a callback is then called
    per device and group). Compiled once per input shapes.

    >>> sharded = shard_vmap(make_train(config), device_mesh())
    >>> out = sharded(jax.random.split(jax.random.key(0), 64))  # 64 seeds over all devices
    """
    devices = mesh.devices.size
    compiled: dict[Any, Callable[..., Any]] = {}

    def prepare(*args: Any) -> tuple[Callable[..., Any], Any]:
        """Check and place ``args``; the compiled program for them (compiled if new)."""
        arg_axes = _per_argument(in_axes, args)
        axes = _leaf_axes(arg_axes, args)
        if any(axis not in (0, None) for axis in axes):
            raise ValueError(f"shard_vmap maps axis 0 (or None), got in_axes={in_axes!r}")
        count = _mapped_size(axes, jax.tree.leaves(args))
        check_split(count, mesh)
        if width is not None and (count // devices) % width:
            raise ValueError(
                f"{count} runs over {devices} devices are {count // devices} per device, "
                f"which groups of width={width} do not divide"
            )
        in_shardings = shardings(mesh, arg_axes, args)
        placed = place(args, in_shardings)
        signature = (
            jax.tree.structure(placed),
            tuple((np.shape(x), str(getattr(x, "dtype", ""))) for x in jax.tree.leaves(placed)),
        )
        if signature not in compiled:
            out_shape = jax.eval_shape(jax.vmap(fn, in_axes=in_axes, out_axes=out_axes), *placed)
            out_shardings = shardings(mesh, out_axes, out_shape)
            if width is None:
                program = jax.vmap(fn, in_axes=in_axes, out_axes=out_axes)
            else:
                program = jax.shard_map(
                    map_in_groups(fn, width, in_axes, out_axes),
                    mesh=mesh,
                    in_specs=jax.tree.map(lambda s: s.spec, in_shardings),
                    out_specs=jax.tree.map(lambda s: s.spec, out_shardings),
                    check_vma=False,
                )
            jitted = jax.jit(program, out_shardings=out_shardings)
            compiled[signature] = jitted.lower(*placed).compile()
        return compiled[signature], placed

    def sharded(*args: Any) -> Any:
        program, placed = prepare(*args)
        return program(*placed)

    def compile_for(*args: Any) -> None:
        """Compile the program for ``args`` now, without running it (to time compilation
        apart from running)."""
        prepare(*args)

    sharded.compile_for = compile_for  # type: ignore[attr-defined]
    return sharded


def runs_per_device(count: int, mesh: Mesh) -> int:
    """How many of ``count`` runs each device holds."""
    check_split(count, mesh)
    return count // mesh.devices.size


def describe(mesh: Mesh) -> dict[str, Any]:
    """The mesh as the command line's summary reports it."""
    mine = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    return {
        "devices": int(mesh.devices.size),
        "processes": len({d.process_index for d in mesh.devices.flat}),
        "devices_in_this_process": len(mine),
        "platform": mesh.devices.flat[0].platform,
    }


DATA_AXIS = "data"


def make_data_parallel_trainer(
    config: Any,
    mesh: Mesh,
    env: Any = None,
    env_params: Any = None,
    on_update: Any = None,
    progress: bool = False,
    network: Any = None,
) -> Any:
    """One agent whose ``config.num_envs`` envs are split over ``mesh``'s devices (data
    parallel): a :class:`~purejaxppo.train.Trainer` whose ``init`` / ``run`` (and so
    ``init_many`` / ``run_many``, a ``vmap`` over them) are ``jax.shard_map``-ed over the
    mesh's one axis. Arguments as :func:`purejaxppo.make_trainer`.

    Each device steps ``num_envs / devices`` envs, computes their advantages, shuffles
    its own samples into ``num_minibatches`` shares and computes gradients on them; the
    reductions (:mod:`purejaxppo.collectives`) are a mean of the gradients in every
    minibatch step, the advantage normalisation's mean and std per minibatch, the exact
    KL for the adaptive penalty and ``target_kl``, the normalisation statistics once per
    rollout, and the update's metrics. No sample moves between devices. The states that
    come out hold all ``num_envs`` envs, split over the devices
    (:func:`~purejaxppo.train.state_layout`), with parameters replicated: a checkpoint of
    one restores on any device count that divides ``num_envs``, or on one device with the
    plain trainer.

    Equal to a single-device run with the same config and key (up to float rounding:
    the sums run in another order) when ``num_minibatches = 1`` and neither
    observations nor rewards are normalised: the rollouts step the same envs with the
    same random draws. With several minibatches the shuffle differs (per device), and
    with normalisation a rollout normalises with its own device's running statistics,
    merged at its end: both are as good, not the same numbers.

    ``on_update`` / ``progress`` report once per update, from the first device. The
    pieces ``collect`` / ``make_batch`` / ``learn`` are one device's and only run under
    ``shard_map``; periodic evaluation runs on every device alike.

    >>> trainer = make_data_parallel_trainer(PPOConfig(num_envs=64), device_mesh(4))
    >>> state, metrics = jax.jit(trainer.run, static_argnums=1)(trainer.init(key), 10)
    """
    from purejaxppo.collectives import Collectives
    from purejaxppo.config import PPOConfig, as_config
    from purejaxppo.train import make_trainer, state_layout

    if len(mesh.axis_names) != 1:
        raise ValueError(f"a data-parallel mesh has one axis, got {mesh.axis_names}")
    config = PPOConfig() if config is None else as_config(config)
    axis = mesh.axis_names[0]
    collectives = Collectives(axis_name=axis, size=int(mesh.devices.size))
    local = make_trainer(config, env, env_params, on_update, progress, network, collectives)
    specs = state_layout(per_env=P(axis), shared=P())

    def shard(fn: Callable[..., Any], in_specs: Any, out_specs: Any) -> Callable[..., Any]:
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)

    def init(rng: jax.Array, hyperparams: Any = None) -> Any:
        if hyperparams is None:
            hyperparams = config.hyperparams()
        return shard(local.init, (P(), P()), specs)(rng, hyperparams)

    def run(state: Any, num_updates: int) -> tuple[Any, dict[str, jax.Array]]:
        def run_local(state: Any) -> tuple[Any, dict[str, jax.Array]]:
            return local.run(state, num_updates)

        return shard(run_local, (specs,), (specs, P()))(state)

    def one_device_only(*_: Any, **__: Any) -> Any:
        raise ValueError(
            "collect / make_batch / learn of a data-parallel trainer are one device's "
            "part and run only under shard_map: use init and run (or init_many / run_many)"
        )

    return dataclasses.replace(
        local,
        init=init,
        run=run,
        collect=one_device_only,
        make_batch=one_device_only,
        learn=one_device_only,
    )


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of an array every device of ``mesh`` holds whole."""
    return NamedSharding(mesh, P())


def data_parallel_shardings(mesh: Mesh, state: Any, batch_ndim: int = 0) -> Any:
    """The shardings of a data-parallel ``TrainerState`` (``batch_ndim`` leading axes of
    runs): the envs' parts split along the axis after those (:func:`state_layout`), the
    rest replicated; for :func:`place`, e.g. a state restored from a checkpoint."""
    from purejaxppo.train import state_layout

    per_env = NamedSharding(mesh, P(*([None] * batch_ndim), mesh.axis_names[0]))
    layout = state_layout(per_env=per_env, shared=replicated(mesh))
    return jax.tree.map(
        lambda sharding, sub: jax.tree.map(lambda _: sharding, sub),
        layout,
        state,
        is_leaf=lambda x: isinstance(x, NamedSharding),
    )


def make_data_parallel_train(
    config: Any,
    mesh: Mesh,
    env: Any = None,
    env_params: Any = None,
    on_update: Any = None,
    progress: bool = False,
    network: Any = None,
) -> Callable[..., Any]:
    """:func:`purejaxppo.make_train` for one agent split over ``mesh``'s devices (see
    :func:`make_data_parallel_trainer`): ``train(rng, hyperparams=None) -> TrainOutput``;
    jit it, vmap it over seeds as the single-device one."""
    trainer = make_data_parallel_trainer(
        config, mesh, env, env_params, on_update, progress, network
    )

    def train(rng: jax.Array, hyperparams: Any = None) -> Any:
        state, metrics = trainer.run(trainer.init(rng, hyperparams), trainer.config.num_updates)
        return trainer.output(state, metrics)

    return train
