"""purejaxppo against PureJaxRL's own ``ppo.py`` on the same config and machine.

PureJaxRL is not a dependency and none of its code ships here: point ``--purejaxrl-dir``
at a checkout of https://github.com/luchris429/purejaxrl (the folder holding the
``purejaxrl`` folder; tried at its commits 31756b1 and 146b485). Its ``ppo.py`` is a
script that does ``from wrappers import ...`` (``from purejaxrl.wrappers`` in older
commits), so both the checkout and its ``purejaxrl/`` folder go on ``sys.path`` while it
is imported (as the module ``ppo``). Its ``wrappers.py`` imports
``brax`` (``brax.envs``, ``brax.envs.wrappers.training``) and ``navix`` at module level,
though only its Brax and navix env wrappers, unused here, need them: where either package
is not installed, the script stands in stub packages that define just the names those
imports bind (using any of them raises an error saying so). The stubs, PureJaxRL's own
modules and the ``sys.path`` entries are taken out again once ``ppo`` is imported, so
nothing of them stays in ``sys.modules``. ``ppo.py`` predates gymnax 1.0, whose ``step``
returns ``(obs, state, reward, terminated, truncated, info)``; this script adapts
gymnax's envs back to the old 5-tuple (``done = terminated | truncated``, i.e.
PureJaxRL's semantics). PureJaxRL's code runs unmodified otherwise. Its other
requirements (flax, optax, distrax, chex, gymnax) are purejaxppo's too.

Both sides train CartPole-v1 with PureJaxRL's config (4 envs x 128 steps, 500k steps,
one seed) and are timed the same way, in one process: ``--compile-repeats`` rounds of
compiling from scratch (``jax.clear_caches()``; each split into tracing, lowering and
XLA's compilation), interleaved; then one warm-up call and ``--repeats`` rounds of one
timed call each, interleaved (so that drift in the machine's speed hits both alike);
medians and the median of the per-round ratios. Writes ``vs_purejaxrl_<backend>.json``
(``..._quick.json`` with ``--quick``).

    python benchmarks/vs_purejaxrl.py --purejaxrl-dir PATH [--quick] [--repeats 3]
        [--compile-repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.machinery
import importlib.util
import statistics
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
from bench_util import machine, time_compiled_interleaved, write_json

from purejaxppo import PPOConfig, make_train

HERE = Path(__file__).resolve().parent
PUREJAXRL_CONFIG = {
    "LR": 2.5e-4,
    "NUM_ENVS": 4,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 500_000,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True,
}
# What PureJaxRL's wrappers.py imports at module level from packages that only its Brax
# and navix env wrappers use: each module it imports, with the names it binds from it.
OPTIONAL_IMPORTS: dict[str, tuple[str, ...]] = {
    "brax": (),
    "brax.envs": (),  # `from brax import envs`
    "brax.envs.wrappers": (),
    "brax.envs.wrappers.training": ("EpisodeWrapper", "AutoResetWrapper"),
    "navix": (),  # `import navix as nx`
}


def _five_tuple_make(make):
    """``gymnax.make`` whose envs' ``step`` returns the pre-1.0 5-tuple."""

    def patched(*args, **kwargs):
        env, params = make(*args, **kwargs)
        step = env.step

        def old_step(key, state, action, params=None):
            obs, state, reward, terminated, truncated, info = step(key, state, action, params)
            return obs, state, reward, jax.numpy.logical_or(terminated, truncated), info

        env.step = old_step  # instance attribute shadows the method for this env only
        return env, params

    return patched


def _unavailable(module: str, name: str) -> type:
    """Stand-in for ``module.name`` of a package that is not installed: a class (so that
    class statements could also inherit from it) that raises when called."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ModuleNotFoundError(_stub_message(f"{module}.{name}"), name=module)

    return type(name, (), {"__init__": __init__, "__module__": module})


def _stub_message(what: str) -> str:
    """The error for using ``what`` from a stub."""
    top = what.partition(".")[0]
    return (
        f"{what} is a stub: {top} is not installed, and vs_purejaxrl.py stubs it only so "
        f"that PureJaxRL's wrappers.py imports; install {top} to use its envs"
    )


def _stub_getattr(module: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for a stub: any name it does not define is an error."""

    def __getattr__(name: str) -> Any:
        raise AttributeError(_stub_message(f"{module}.{name}"))

    return __getattr__


def make_stubs(
    missing: set[str], imports: Mapping[str, tuple[str, ...]] = OPTIONAL_IMPORTS
) -> dict[str, types.ModuleType]:
    """Stub modules, by name, for the entries of ``imports`` whose top-level package is in
    ``missing``: a module (a package, with ``__path__``, where ``imports`` lists modules
    under it) per entry, defining the names listed for it, each submodule also bound as
    an attribute of its parent. Parents must come before their submodules."""
    stubs: dict[str, types.ModuleType] = {}
    for name, names in imports.items():
        if name.partition(".")[0] not in missing:
            continue
        parent, _, child = name.rpartition(".")
        if parent and parent not in stubs:
            raise ValueError(f"stub {name!r} is listed before its parent {parent!r}")
        is_package = any(other.startswith(name + ".") for other in imports)
        module = types.ModuleType(name, f"Stub: {name} is not installed.")
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=is_package)
        if is_package:
            module.__path__ = []
        for attr in names:
            setattr(module, attr, _unavailable(name, attr))
        module.__getattr__ = _stub_getattr(name)
        if parent:
            setattr(stubs[parent], child, module)
        stubs[name] = module
    return stubs


def _owned(name: str, tops: set[str]) -> bool:
    return name.partition(".")[0] in tops


@contextlib.contextmanager
def import_scope(
    paths: list[Path], local: set[str], stubs: dict[str, types.ModuleType]
) -> Iterator[None]:
    """Import with ``paths`` first on ``sys.path`` and ``stubs`` in ``sys.modules``; on
    exit, take out the paths, the stubs and every module whose top-level name is in
    ``local`` (the checkout's own modules, e.g. ``ppo``, ``wrappers``, ``purejaxrl``),
    putting back any same-named module that was there before. Real packages imported on
    the way (distrax...) stay."""
    tops = local | {name.partition(".")[0] for name in stubs}
    hidden = {name: mod for name, mod in sys.modules.items() if _owned(name, tops)}
    for name in hidden:
        del sys.modules[name]
    sys.modules.update(stubs)
    entries = [str(path) for path in paths]
    sys.path[:0] = entries
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for entry in entries:
            sys.path.remove(entry)
        for name in [name for name in sys.modules if _owned(name, tops)]:
            del sys.modules[name]
        sys.modules.update(hidden)


def load_purejaxrl_make_train(purejaxrl_dir: Path) -> Callable[[dict[str, Any]], Any]:
    """PureJaxRL's ``make_train`` from the checkout ``purejaxrl_dir``, adapted to gymnax 1.0."""
    import gymnax

    package = purejaxrl_dir / "purejaxrl"
    if not (package / "ppo.py").exists():
        raise SystemExit(f"error: {package}/ppo.py not found")
    tops = {name.partition(".")[0] for name in OPTIONAL_IMPORTS}
    missing = {top for top in tops if importlib.util.find_spec(top) is None}
    local = {"purejaxrl"} | {p.stem for p in package.iterdir() if p.suffix == ".py" or p.is_dir()}
    try:
        with import_scope([package, purejaxrl_dir], local, make_stubs(missing)):
            ppo = importlib.import_module("ppo")
    except ModuleNotFoundError as error:
        raise SystemExit(
            f"error: importing {package}/ppo.py needs {error.name!r}, which is not found ({error})"
        ) from error
    ppo.gymnax = types.SimpleNamespace(make=_five_tuple_make(gymnax.make))
    return ppo.make_train


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--purejaxrl-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="two updates (smoke test)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    if args.compile_repeats < 1:
        parser.error(f"--compile-repeats must be a positive integer, got {args.compile_repeats}")

    purejaxrl_config = dict(PUREJAXRL_CONFIG)
    if args.quick:
        purejaxrl_config["TOTAL_TIMESTEPS"] = 2 * 4 * 128
    theirs_make_train = load_purejaxrl_make_train(args.purejaxrl_dir.resolve())
    config = PPOConfig.from_dict(purejaxrl_config)
    timings = time_compiled_interleaved(
        {
            # PureJaxRL uses raw uint32 keys; ours takes a typed key
            "purejaxrl": (theirs_make_train(dict(purejaxrl_config)), (jax.random.PRNGKey(0),)),
            "purejaxppo": (make_train(config), (jax.random.key(0),)),
        },
        repeats=args.repeats,
        compile_repeats=args.compile_repeats,
    )
    ours, theirs = timings["purejaxppo"], timings["purejaxrl"]
    paired = [t / o for t, o in zip(theirs["run_s"], ours["run_s"], strict=True)]
    report = {
        "config": purejaxrl_config,
        "trained_timesteps": config.trained_timesteps,
        "purejaxppo": ours,
        "purejaxrl": theirs,
        "timing": "timed calls interleaved, one call of each per round",
        "run_speedup": theirs["run_s_median"] / ours["run_s_median"],
        "run_speedup_paired_median": statistics.median(paired),
        "compile_speedup": theirs["compile_s"] / ours["compile_s"],
        "compile_ratio": ours["compile_s"] / theirs["compile_s"],
        "startup_ratio": ours["startup_s"] / theirs["startup_s"],
        "machine": machine(),
    }
    for name in ("purejaxppo", "purejaxrl"):
        side = report[name]
        print(
            f"{name:10s} trace {side['trace_s']:4.2f} s  lower {side['lower_s']:4.2f} s  "
            f"compile {side['compile_s']:4.2f} s  run {side['run_s_median']:5.2f} s "
            f"(median of {args.repeats}: {', '.join(f'{t:.2f}' for t in side['run_s'])})"
        )
    print(
        f"purejaxppo runs {report['run_speedup']:.2f}x as fast (median of the per-round "
        f"ratios: {report['run_speedup_paired_median']:.2f}x); its XLA compilation takes "
        f"{report['compile_ratio']:.2f}x PureJaxRL's, trace + lower + compile "
        f"{report['startup_ratio']:.2f}x"
    )
    stem = f"vs_purejaxrl_{jax.default_backend()}" + ("_quick" if args.quick else "")
    print(f"wrote {write_json(args.out, stem, report)}")
    return report


if __name__ == "__main__":
    main()
