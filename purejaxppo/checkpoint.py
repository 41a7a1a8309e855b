"""Save and restore a whole run (:class:`TrainerState`) with orbax, integrity-checked.

A checkpoint is a folder: ``state/`` written by orbax's ``StandardCheckpointer`` and
``manifest.json`` holding the format version, the library version, the config and the
SHA-256 of every file orbax wrote. Loading checks the format version (a newer, unknown
format fails with a message saying so), then every file's hash (a truncated or altered
file fails loudly instead of loading garbage), then restores into the structure that
the config's own ``Trainer.init`` produces, so params, optimiser state, env states,
normalisation statistics, RNG, update counter and adaptive-KL beta all come back.

A checkpoint is written under a temporary name beside its destination and renamed into
place once complete (a rename is atomic), so a crash during a save leaves no folder
that looks like a checkpoint. A *series* of checkpoints (:func:`save_in_series`,
:func:`newest_checkpoint`) keeps the last few of a long run, one folder per update
count, and loading picks the newest complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from purejaxppo import counters
from purejaxppo.config import PPOConfig, as_config
from purejaxppo.train import Trainer, TrainerState

# 2: the update counter is one shared scalar for a batch of runs; normalisation counts
# are float64; the runner holds the evaluation's key stream.
# 3: Adam's moments are one flat vector over all parameters (optax.flatten).
# 4: the runner holds the network's carry and the envs' episode-start flags (recurrent
# networks); a feed-forward network's carry is empty.
FORMAT_VERSION = 4
MANIFEST = "manifest.json"
# a series' checkpoint folders: update-000000120 (the updates done); temporary ones start
# with a dot and are never read
SERIES_PATTERN = re.compile(r"^update-(\d{9})$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be trusted or read: missing, corrupt, or incompatible."""


def _to_storable(state: TrainerState) -> Any:
    """Typed PRNG keys become their raw uint32 data (orbax stores plain arrays)."""
    return jax.tree.map(
        lambda x: jax.random.key_data(x) if _is_key(x) else x, state, is_leaf=_is_key
    )


def _is_key(x: Any) -> bool:
    """A typed PRNG key array, or the abstract shape of one."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _checkpointer() -> Any:
    """orbax's ``StandardCheckpointer``, for this process alone: in a multi-process run one
    process writes a checkpoint of arrays it holds whole (:func:`_on_host`), and each process
    reads one by itself, so no process waits for another."""
    import orbax.checkpoint as ocp

    me = jax.process_index()
    options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.StandardCheckpointer(multiprocessing_options=options)


def _on_host(state: Any) -> Any:
    """``state``, after checking this process holds all of it. ``ValueError`` for arrays
    other processes hold parts of: gathering them is a collective every process must
    join, so the caller does it (``purejaxppo.parallel.gather``) and saves from one."""
    if not all(getattr(x, "is_fully_addressable", True) for x in jax.tree.leaves(state)):
        raise ValueError(
            "this state is spread over several processes: call purejaxppo.parallel.gather("
            "state) in every process, then save_checkpoint from one of them"
        )
    return state


def _spread(tree: Any) -> bool:
    """Whether any array of ``tree`` lives on more than one device, or the run has several
    processes."""
    if jax.process_count() > 1:
        return True
    return any(
        isinstance(x, jax.Array) and len(x.sharding.device_set) > 1 for x in jax.tree.leaves(tree)
    )


def _file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def save_checkpoint(
    path: str | Path,
    state: TrainerState,
    config: PPOConfig,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``state`` (of a run of ``config``, or of a batch of runs from
    ``Trainer.init_many`` / ``run_many``) to the new folder ``path``, atomically: it is
    written under a temporary name in the same folder and renamed to ``path`` when complete.

    A state whose ``update_index`` was batched by a plain ``jax.vmap`` is stored with the
    shared scalar counter ``load_checkpoint`` gives back (all its entries must be equal).
    ``extra_files``: more files to keep with it (name -> bytes, e.g. the metrics so far),
    hashed in the manifest like orbax's; :func:`read_extra_file` reads one back.
    """

    from purejaxppo import __version__

    counts = np.unique(np.asarray(state.update_index))
    if counts.size != 1:
        raise ValueError(
            f"state.update_index holds different counts {counts.tolist()}: a checkpoint holds "
            "runs that have all done the same number of updates"
        )
    state = state._replace(update_index=jax.numpy.asarray(counts[0], jax.numpy.int32))
    path = Path(path).resolve()
    if path.exists():
        raise FileExistsError(f"checkpoint folder {path} already exists; pick a new one")
    extra_files = dict(extra_files or {})
    for name in extra_files:
        if name in ("state", MANIFEST) or Path(name).name != name:
            raise ValueError(
                f"extra file name {name!r}: expected a plain file name other than 'state' "
                f"and {MANIFEST!r}"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if temporary.exists():  # left by a crash of an earlier process with this pid
        shutil.rmtree(temporary)
    temporary.mkdir()
    with _checkpointer() as checkpointer:  # closing it ends its async writer
        storable = _to_storable(_on_host(state))
        if _spread(storable):
            # host copies: orbax would record the layout over devices and refuse to restore
            # onto another number of them (and refuses arrays local to one of several
            # processes); a one-device state is saved as it is, weak types and all
            storable = jax.tree.map(np.asarray, storable)
        checkpointer.save(temporary / "state", storable)
        checkpointer.wait_until_finished()
    for name, data in extra_files.items():
        (temporary / name).write_bytes(data)
    manifest = {
        "format_version": FORMAT_VERSION,
        "purejaxppo_version": __version__,
        "config": as_config(config).to_dict(),
        "update_index": np.asarray(state.update_index).tolist(),
        "files": _file_hashes(temporary / "state"),
        "extra_files": {
            name: hashlib.sha256(data).hexdigest() for name, data in extra_files.items()
        },
    }
    (temporary / MANIFEST).write_text(json.dumps(manifest, indent=2))
    _fsync_tree(temporary)
    os.rename(temporary, path)  # atomic: the checkpoint appears whole or not at all
    return path


def _fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` and the folders themselves to disk, so that the
    rename that follows never publishes a checkpoint whose data a power cut could lose."""
    for path in [*sorted(folder.rglob("*")), folder]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        descriptor = os.open(path, flags)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The checkpoint's manifest, after checking its format version and every file hash."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{path} is not a purejaxppo checkpoint: no {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"corrupt checkpoint {path}: {MANIFEST} is not JSON") from error
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}, written by purejaxppo "
            f"{manifest.get('purejaxppo_version')}; this version reads format {FORMAT_VERSION}"
        )
    for name, digest in manifest.get("extra_files", {}).items():
        extra = path / name
        if not extra.is_file():
            raise CheckpointError(f"corrupt checkpoint {path}: {name} is missing")
        if hashlib.sha256(extra.read_bytes()).hexdigest() != digest:
            raise CheckpointError(f"corrupt checkpoint {path}: {name} does not match its SHA-256")
    found = _file_hashes(path / "state")
    expected = manifest["files"]
    for name in sorted(set(expected) | set(found)):
        if name not in found:
            raise CheckpointError(f"corrupt checkpoint {path}: state/{name} is missing")
        if name not in expected:
            raise CheckpointError(f"corrupt checkpoint {path}: unexpected file state/{name}")
        if found[name] != expected[name]:
            raise CheckpointError(
                f"corrupt checkpoint {path}: state/{name} does not match its SHA-256"
            )
    return manifest


def load_checkpoint(
    path: str | Path,
    trainer: Trainer,
    batch_shape: tuple[int, ...] = (),
) -> TrainerState:
    """Restore the :class:`TrainerState` saved at ``path`` for ``trainer``'s config.

    ``batch_shape``: the leading vmapped axes the state was saved with (``(seeds,)`` for
    a state from ``Trainer.init_many`` / ``run_many``); the restored state's
    ``update_index`` is the shared scalar ``run_many`` takes. Raises
    :class:`CheckpointError` if the checkpoint is corrupt, of an unknown format, or was
    written for a different config.
    """

    path = Path(path).resolve()
    manifest = read_manifest(path)
    saved = PPOConfig.from_dict(manifest["config"])
    if saved != trainer.config:
        differing = {
            key: (value, trainer.config.to_dict()[key])
            for key, value in saved.to_dict().items()
            if trainer.config.to_dict()[key] != value
        }
        raise CheckpointError(
            f"checkpoint {path} was written for another config; differing fields "
            f"(saved, given): {differing}"
        )

    keys = jax.random.split(jax.random.key(0), int(np.prod(batch_shape, dtype=int)))
    keys = keys.reshape(batch_shape) if batch_shape else keys[0]
    target = jax.eval_shape(trainer.init_many, keys)
    try:
        # 64-bit mode keeps the float64 counters (counters.py) in their own dtype
        with counters.wide(), _checkpointer() as checkpointer:
            storable_target = jax.eval_shape(_to_storable, target)
            restored = checkpointer.restore(path / "state", storable_target)
    except Exception as error:  # orbax raises various types for a structure mismatch
        raise CheckpointError(
            f"checkpoint {path} does not match this trainer's state (batch_shape "
            f"{batch_shape}?): {error}"
        ) from error
    with counters.wide():  # host copies become arrays in their own dtype (float64 too)
        restored = jax.tree.map(
            lambda x: jax.device_put(x) if isinstance(x, np.ndarray) else x, restored
        )
    return jax.tree.map(
        lambda stored, like: jax.random.wrap_key_data(stored) if _is_key(like) else stored,
        restored,
        target,
    )


def read_extra_file(path: str | Path, name: str) -> bytes:
    """An extra file saved with the checkpoint at ``path``, checked against its hash."""
    path = Path(path)
    manifest = read_manifest(path)
    if name not in manifest.get("extra_files", {}):
        raise CheckpointError(f"checkpoint {path} holds no file {name!r}")
    return (path / name).read_bytes()


def series_path(folder: str | Path, update_index: int) -> Path:
    """The folder of a series' checkpoint after ``update_index`` updates."""
    return Path(folder) / f"update-{int(update_index):09d}"


def save_in_series(
    folder: str | Path,
    state: TrainerState,
    config: PPOConfig,
    keep: int,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Save ``state`` as the newest checkpoint of the series in ``folder`` (named by its
    update count, :func:`series_path`), then delete all but the newest ``keep``.

    The old ones go only after the new one is complete, so a crash at any point leaves
    at least one complete checkpoint once the first save has finished.
    """
    if keep < 1:
        raise ValueError(f"keep must be a positive integer, got {keep}")
    update_index = int(np.unique(np.asarray(state.update_index))[0])
    path = save_checkpoint(series_path(folder, update_index), state, config, extra_files)
    for old in series_checkpoints(folder)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def series_checkpoints(folder: str | Path) -> list[Path]:
    """The checkpoint folders of the series in ``folder``, newest first (by update count);
    temporary folders of unfinished saves are not among them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if SERIES_PATTERN.match(path.name)]
    return sorted(found, key=lambda path: path.name, reverse=True)


def newest_checkpoint(folder: str | Path) -> tuple[Path, dict[str, Any], list[str]]:
    """The newest complete, intact checkpoint of the series in ``folder``.

    Returns ``(path, manifest, problems)``: ``problems`` says, one line each, why newer
    ones were skipped (corrupt, of another format). Raises :class:`CheckpointError` if
    there is no checkpoint, or none can be read (the message names each one's problem).
    """
    problems = []
    candidates = series_checkpoints(folder)
    for path in candidates:
        try:
            return path, read_manifest(path), problems
        except CheckpointError as error:
            problems.append(str(error))
    if not candidates:
        raise CheckpointError(f"{folder} holds no checkpoint")
    raise CheckpointError(
        f"none of the {len(candidates)} checkpoints in {folder} can be read: " + "; ".join(problems)
    )
