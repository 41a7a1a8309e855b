"""Execute the notebooks top to bottom, at their full budgets (in place) or tiny ones.

    python notebooks/run_notebooks.py                 # full budgets: rewrites the outputs
    python notebooks/run_notebooks.py --quick --out DIR [01_quickstart.ipynb ...]

The rule: re-run the notebooks at full budget (``python notebooks/run_notebooks.py``, about
20 minutes on 2 CPU cores) whenever the package version (``purejaxppo.__version__``) is
bumped; the test suite checks that the committed notebooks were executed at the full budget
by the current version. Library changes between two versions do not call for a re-run, so
bump the version (and re-run) when a change alters what the notebooks show.

Every run stamps the notebook's metadata (``purejaxppo_run``) with the budget, the version of
the purejaxppo that the kernel imported (always this checkout's, see ``execute``), the machine
and the date, and, for information only (no test compares them with the working tree), the
git commit whose ``purejaxppo/`` the run used (``+dirty`` when it had uncommitted or untracked
changes; null outside a git checkout) and the SHA-256 of those sources (``source_fingerprint``),
so a reader can tell exactly which code produced the outputs.

``--quick`` sets ``PUREJAXPPO_NOTEBOOK_QUICK=1`` in the kernel (the notebooks shrink every
budget) and writes the executed copies to ``--out``: this is what the test suite runs. Either
way a cell that raises fails the run, and so does a figure whose axes lack a title or an axis
label. The kernel never installs anything: it imports this checkout, and ``PUREJAXPPO_PIP``
(the install cell's source) is removed from its environment.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = NOTEBOOK_DIR.parent / "purejaxppo"
QUICK_VARIABLE = "PUREJAXPPO_NOTEBOOK_QUICK"
INSTALL_VARIABLE = "PUREJAXPPO_PIP"  # the install cell's source: never used by these runs
STAMP_KEY = "purejaxppo_run"

# Runs in the kernel before the notebook's first cell: with PUREJAXPPO_COMPILE_CACHE set,
# the persistent compilation cache is on (programs another notebook, test or run compiled
# are loaded, not compiled); and every pyplot figure the notebook creates is remembered
# (matplotlib's figure.hooks), so that the last cell can check them all after the inline
# backend has shown and closed them.
_FIGURE_CHECK = """
import os

import matplotlib

if os.environ.get("PUREJAXPPO_COMPILE_CACHE"):  # the test suite's (see tests/conftest.py)
    from purejaxppo.compile_cache import enable_compile_cache

    enable_compile_cache(min_compile_time_s=0.25)

_purejaxppo_figures = []
matplotlib.rcParams["figure.hooks"] = ["__main__:_purejaxppo_figures.append"]
"""

_FIGURE_VERDICT = """
def _purejaxppo_figure_problems(figure):
    suptitle = figure._suptitle.get_text() if figure._suptitle is not None else ""
    for ax in figure.axes:
        name = f"figure '{suptitle or ax.get_title()}'"
        if hasattr(ax, "_colorbar"):
            if not (ax.get_xlabel() or ax.get_ylabel()):
                yield f"{name}: a colorbar without a label"
            continue
        if ax.get_visible() and not (ax.get_xlabel() and ax.get_ylabel()):
            yield f"{name}: axes without an x or y label"
        if ax.get_visible() and not (ax.get_title() or suptitle):
            yield f"{name}: axes without a title"


assert _purejaxppo_figures, "the notebook drew no figure"
_problems = [p for f in _purejaxppo_figures for p in _purejaxppo_figure_problems(f)]
assert not _problems, _problems
print(f"{len(_purejaxppo_figures)} figures, all titled and labelled")
"""

# Runs after the verdict: which purejaxppo the kernel imported, for the stamp.
_PROVENANCE = """
import json

import purejaxppo

print(json.dumps({"version": purejaxppo.__version__, "file": purejaxppo.__file__}))
"""


def notebook_paths() -> list[Path]:
    """The notebooks, in reading order."""
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def source_fingerprint() -> str:
    """SHA-256 over the path and contents of every ``purejaxppo/*.py`` file."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def source_commit() -> str | None:
    """The git commit checked out in this repository, with ``+dirty`` appended when
    ``purejaxppo/`` differs from it (modified or untracked files); None where this is not
    a git checkout of its own or git is missing. Read-only: no index refresh, no lock."""
    root = PACKAGE_DIR.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    try:
        toplevel, head = git("rev-parse", "--show-toplevel", "HEAD").split()
        if Path(toplevel).resolve() != root.resolve():
            return None  # e.g. an unpacked sdist inside some other repository
        changed = git("status", "--porcelain", "--", PACKAGE_DIR.name).strip()
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if changed else head


def _machine() -> str:
    import jax

    device = jax.devices()[0]
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"jax {jax.__version__} {device.platform} ({device.device_kind}), "
        f"python {platform.python_version()}"
    )


def execute(path: Path, quick: bool, output: Path | None = None, timeout: int = 1800) -> Path:
    """Run ``path`` top to bottom; write the executed notebook to ``output`` (default: in
    place). Raises ``nbclient.exceptions.CellExecutionError`` if a cell fails."""
    notebook = nbformat.read(path, as_version=4)
    cells = notebook.cells
    notebook.cells = [
        nbformat.v4.new_code_cell(_FIGURE_CHECK),
        *cells,
        nbformat.v4.new_code_cell(_FIGURE_VERDICT),
        nbformat.v4.new_code_cell(_PROVENANCE),
    ]
    env = {k: v for k, v in os.environ.items() if k not in (QUICK_VARIABLE, INSTALL_VARIABLE)}
    # the kernel imports this checkout's purejaxppo (the code the fingerprint describes),
    # not whichever copy happens to be installed
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(PACKAGE_DIR.parent), env.get("PYTHONPATH")])
    )
    if quick:
        env[QUICK_VARIABLE] = "1"
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute(env=env)
    printed = "".join(out.get("text", "") for out in notebook.cells[-1].outputs)
    provenance = json.loads(printed)
    if Path(provenance["file"]).resolve().parent != PACKAGE_DIR.resolve():
        raise RuntimeError(
            f"the kernel imported purejaxppo from {provenance['file']}, not from {PACKAGE_DIR}:"
            " the stamp would describe other code than the one that ran"
        )
    notebook.cells = notebook.cells[1:-2]
    for index, cell in enumerate(c for c in notebook.cells if c.cell_type == "code"):
        cell.execution_count = index + 1  # as if run without the three added cells
        for item in cell.outputs:
            if "execution_count" in item:
                item["execution_count"] = index + 1
    notebook.metadata[STAMP_KEY] = {
        "budget": "quick" if quick else "full",
        "purejaxppo_version": provenance["version"],
        "purejaxppo_git_commit": source_commit(),  # informational
        "purejaxppo_source_sha256": source_fingerprint(),  # informational
        "machine": _machine(),
        "executed": datetime.date.today().isoformat(),
    }
    output = path if output is None else output
    nbformat.write(notebook, output)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="file names (default: all)")
    parser.add_argument("--quick", action="store_true", help=f"set {QUICK_VARIABLE}=1")
    parser.add_argument("--out", type=Path, help="folder for the executed copies (--quick)")
    args = parser.parse_args(argv)
    if args.quick and args.out is None:
        parser.error("--quick needs --out: quick outputs must not replace the committed ones")
    paths = [NOTEBOOK_DIR / n for n in args.notebooks] if args.notebooks else notebook_paths()
    for path in paths:
        output = None if args.out is None else args.out / path.name
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
        print(f"executing {path.name} ({'quick' if args.quick else 'full'} budget)", flush=True)
        execute(path, args.quick, output)
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
