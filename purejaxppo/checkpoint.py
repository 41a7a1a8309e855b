"""Save and restore a whole run (:class:`TrainerState`) with orbax, integrity-checked.

A checkpoint is a folder: ``state/`` written by orbax's ``StandardCheckpointer`` and
``manifest.json`` holding the format version, the library version, the config and the
SHA-256 of every file orbax wrote. Loading checks the format version (a newer, unknown
format fails with a message saying so), then every file's hash (a truncated or altered
file fails loudly instead of loading garbage), then restores into the structure that
the config's own ``Trainer.init`` produces, so params, optimiser state, env states,
normalisation statistics, RNG, update counter and adaptive-KL beta all come back.
"""

from __future__ import annotations

import hashlib
import json
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


def _file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def save_checkpoint(path: str | Path, state: TrainerState, config: PPOConfig) -> Path:
    """Write ``state`` (of a run of ``config``, or of a batch of runs from
    ``Trainer.init_many`` / ``run_many``) to the new folder ``path``.

    A state whose ``update_index`` was batched by a plain ``jax.vmap`` is stored with the
    shared scalar counter ``load_checkpoint`` gives back (all its entries must be equal).
    """
    import orbax.checkpoint as ocp

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
    path.mkdir(parents=True)
    with ocp.StandardCheckpointer() as checkpointer:  # closing it ends its async writer
        checkpointer.save(path / "state", _to_storable(state))
        checkpointer.wait_until_finished()
    manifest = {
        "format_version": FORMAT_VERSION,
        "purejaxppo_version": __version__,
        "config": as_config(config).to_dict(),
        "update_index": np.asarray(state.update_index).tolist(),
        "files": _file_hashes(path / "state"),
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return path


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
    import orbax.checkpoint as ocp

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
        with counters.wide(), ocp.StandardCheckpointer() as checkpointer:
            storable_target = jax.eval_shape(_to_storable, target)
            restored = checkpointer.restore(path / "state", storable_target)
    except Exception as error:  # orbax raises various types for a structure mismatch
        raise CheckpointError(
            f"checkpoint {path} does not match this trainer's state (batch_shape "
            f"{batch_shape}?): {error}"
        ) from error
    return jax.tree.map(
        lambda stored, like: jax.random.wrap_key_data(stored) if _is_key(like) else stored,
        restored,
        target,
    )
