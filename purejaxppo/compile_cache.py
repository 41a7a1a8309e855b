"""JAX's persistent compilation cache: where purejaxppo keeps it, and turning it on.

With the cache on, a compiled program is written to a folder, and the same program
compiled again later (in this process or another: the next ``purejaxppo train`` with the
same config, the next test run) is read back instead of compiled. The key is JAX's: the
program's StableHLO, the compile options, the jax/jaxlib version and the backend, so a
change of code, config or version is a new entry, never a stale hit. Tracing and
lowering still happen on a hit; XLA's compilation, most of the start-up, does not.

JAX never caches a program that makes host callbacks (``on_update=``, ``progress=True``):
the callback is a Python object of the process that compiled it. The command line
therefore reports progress between chunks of updates, from the host, so its programs
have none (see :mod:`purejaxppo.cli`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

CACHE_DIR_ENV = "PUREJAXPPO_COMPILE_CACHE"  # overrides default_cache_dir()


def default_cache_dir() -> Path:
    """``$PUREJAXPPO_COMPILE_CACHE`` if set, else ``jax-compile`` in purejaxppo's folder of
    the user's cache directory (``$XDG_CACHE_HOME``, default ``~/.cache``)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home).expanduser() / "purejaxppo" / "jax-compile"


def enable_compile_cache(
    cache_dir: str | os.PathLike | None = None, min_compile_time_s: float = 0.5
) -> Path:
    """Turn on JAX's persistent compilation cache for this process, in ``cache_dir``
    (default :func:`default_cache_dir`, created if missing); returns the folder.

    Programs that took at least ``min_compile_time_s`` seconds to compile are written
    (a typical training program: a few hundred kB). Takes effect for every later
    compilation, also when something was compiled before. The folder can be deleted at
    any time; it is only ever read as a cache.
    """
    if min_compile_time_s < 0:
        raise ValueError(f"min_compile_time_s must be >= 0, got {min_compile_time_s!r}")
    path = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    # JAX opens the cache once, at the first compilation: make it open the folder set now
    compilation_cache.reset_cache()
    return path


@contextlib.contextmanager
def compile_cache_scope(
    cache_dir: str | os.PathLike | None, min_compile_time_s: float = 0.5
) -> Iterator[Path | None]:
    """Within the block, the persistent cache is in ``cache_dir`` (as
    :func:`enable_compile_cache`), or off when it is None (even if JAX's own
    ``JAX_COMPILATION_CACHE_DIR`` turned it on); yields the folder. On exit, the cache
    settings are what they were before (the command line uses it, so that calling
    ``purejaxppo.cli.main`` leaves the caller's settings alone)."""
    saved = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
    )
    try:
        if cache_dir is None:
            jax.config.update("jax_compilation_cache_dir", None)
            compilation_cache.reset_cache()
            yield None
        else:
            yield enable_compile_cache(cache_dir, min_compile_time_s)
    finally:
        jax.config.update("jax_compilation_cache_dir", saved[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", saved[1])
        compilation_cache.reset_cache()
