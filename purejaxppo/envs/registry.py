"""Environment look-up: gymnax names as they are, other suites by a prefix.

``"CartPole-v1"`` is gymnax's; ``"brax:ant"``, ``"craftax:Craftax-Classic-Symbolic-v1"``,
``"pgx:2048"`` and ``"jumanji:Snake-v1"`` come from the suite the prefix names, through
that suite's adapter module (:data:`SUITES`), which imports the suite only when asked
and returns an env that follows the contract (:mod:`purejaxppo.envs.vec_env`). An env
object of any of these suites passed as ``env=`` is adapted the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any

import gymnax

from purejaxppo.envs.extra import ENV_ALIASES, EXTRA_ENVS

# Registered gymnax environments that cannot be built offline.
NEEDS_DOWNLOAD = {
    "MNISTBandit-bsuite": "it downloads the MNIST data set when constructed, and this "
    "library never fetches data at run time",
}


@dataclasses.dataclass(frozen=True)
class Suite:
    """An env suite reached by ``"<prefix>:<name>"``.

    ``package``: the suite's import name; ``extra``: the purejaxppo extra that installs it;
    ``adapter``: the module with ``env_names()``, ``make(name)`` and ``adapt(env)``
    (each returning ``(env, env_params)`` for the contract).
    """

    prefix: str
    title: str
    package: str
    extra: str
    adapter: str


SUITES: dict[str, Suite] = {
    suite.prefix: suite
    for suite in (
        Suite("brax", "Brax", "brax", "brax", "purejaxppo.envs.brax_suite"),
        Suite("craftax", "Craftax", "craftax", "craftax", "purejaxppo.envs.craftax_suite"),
        Suite("pgx", "pgx", "pgx", "pgx", "purejaxppo.envs.pgx_suite"),
        Suite("jumanji", "Jumanji", "jumanji", "jumanji", "purejaxppo.envs.jumanji_suite"),
    )
}


def offline_env_names() -> tuple[str, ...]:
    """Every unprefixed name :func:`make_env` takes: gymnax's registered envs that can
    be built without a download, and this library's own. Suites' names:
    :func:`suite_env_names`."""
    gymnax_names = (name for name in gymnax.registered_envs if name not in NEEDS_DOWNLOAD)
    return (*gymnax_names, *EXTRA_ENVS)


def _adapter(suite: Suite, what: str) -> Any:
    """The suite's adapter module; ``ValueError`` naming the extra if the suite is absent."""
    try:
        return importlib.import_module(suite.adapter)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != suite.package:
            raise
        raise ValueError(
            f"{what} needs {suite.title}, which is not installed: "
            f'pip install "purejaxppo[{suite.extra}]"'
        ) from error


def suite_env_names(prefix: str) -> tuple[str, ...]:
    """The prefixed names a suite offers (``"brax:ant"``, ...); needs the suite installed."""
    suite = _suite(prefix, f"{prefix}:")
    return tuple(f"{prefix}:{name}" for name in _adapter(suite, f"suite {prefix!r}").env_names())


def _suite(prefix: str, env_name: str) -> Suite:
    if prefix not in SUITES:
        close = difflib.get_close_matches(prefix, SUITES, n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c + ':') for c in close)}?" if close else ""
        raise ValueError(
            f"env_name={env_name!r} has an unknown suite prefix {prefix!r}.{hint} Valid "
            f"prefixes: {', '.join(p + ':' for p in SUITES)} (gymnax names take none)"
        )
    return SUITES[prefix]


def suite_of(env: Any) -> Suite | None:
    """The suite an env object comes from (by the package defining its class), or None."""
    package = type(env).__module__.split(".")[0]
    return next((s for s in SUITES.values() if s.package == package), None)


def _with_params(made: tuple[Any, Any], env_params: Any) -> tuple[Any, Any]:
    env, default_params = made
    return env, default_params if env_params is None else env_params


def make_env(env_name: str, env: Any = None, env_params: Any = None) -> tuple[Any, Any]:
    """The ``(env, env_params)`` to train on, following the contract.

    A user-supplied ``env`` wins over ``env_name``: a gymnax Environment is used as it is,
    an env of another suite is adapted; its params default to the env's defaults.
    Raises ``ValueError`` for unknown names (suggesting close ones), names that cannot be
    built offline, and suites that are not installed (naming the extra to install).
    """
    if env is not None:
        suite = suite_of(env)
        if suite is not None:
            return _with_params(_adapter(suite, f"a {suite.title} env").adapt(env), env_params)
        missing = [a for a in ("reset", "step", "action_space") if not hasattr(env, a)]
        if missing:
            raise ValueError(
                f"env must be a gymnax Environment (with reset, step, action_space) or an "
                f"env of {', '.join(s.title for s in SUITES.values())}; "
                f"{type(env).__name__} lacks {missing}"
            )
        return env, env.default_params if env_params is None else env_params
    if ":" in env_name:
        prefix, name = env_name.split(":", 1)
        adapter = _adapter(_suite(prefix, env_name), f"env_name={env_name!r}")
        names = adapter.env_names()
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
            hint = f" Did you mean {' or '.join(repr(f'{prefix}:{c}') for c in close)}?"
            raise ValueError(
                f"env_name={env_name!r}: {SUITES[prefix].title} has no env {name!r}."
                f"{hint if close else ''} Valid names: purejaxppo.suite_env_names({prefix!r})"
            )
        return _with_params(adapter.make(name), env_params)
    if env_name in NEEDS_DOWNLOAD:
        raise ValueError(
            f"env_name={env_name!r} cannot be used: {NEEDS_DOWNLOAD[env_name]}. "
            "Pass a gymnax Environment with env=... instead."
        )
    if env_name in EXTRA_ENVS or env_name in ENV_ALIASES:
        return _with_params(_made(EXTRA_ENVS[ENV_ALIASES.get(env_name, env_name)]()), env_params)
    if env_name not in gymnax.registered_envs:
        close = difflib.get_close_matches(env_name, offline_env_names(), n=3, cutoff=0.4)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"env_name={env_name!r} is not a registered environment (gymnax's or this "
            f"library's).{hint} Valid names: {', '.join(offline_env_names())}; other "
            f"suites with a prefix: {', '.join(p + ':<name>' for p in SUITES)}"
        )
    return _with_params(gymnax.make(env_name), env_params)


def _made(env: Any) -> tuple[Any, Any]:
    return env, env.default_params
