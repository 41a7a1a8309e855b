"""The notebooks run top to bottom (at tiny budgets), the committed ones hold the outputs
of a full-budget run of the current package version, and their install cell never installs
a name from a package index.

The rule: re-run the notebooks (``python notebooks/run_notebooks.py``, about 20 minutes)
whenever ``purejaxppo.__version__`` is bumped. Their stamp also records the git commit and a
SHA-256 of the sources they ran on; those are informational and not compared here, so a
library change between two versions does not fail this file.

Executing them needs nbclient and an IPython kernel (the dev extra installs both).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import load_script

import purejaxppo

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = [
    "01_quickstart.ipynb",
    "02_ppo_explained.ipynb",
    "03_sweeps.ipynb",
    "04_recurrent_ppo.ipynb",
    "05_rlhf_in_miniature.ipynb",
]


runner = load_script(NOTEBOOK_DIR / "run_notebooks.py")


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_the_notebooks_are_the_five_the_readme_links():
    assert [p.name for p in runner.notebook_paths()] == EXPECTED
    readme = (ROOT / "README.md").read_text()
    for name in EXPECTED:
        assert f"](notebooks/{name})" in readme, f"README does not link {name}"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_runs_top_to_bottom_at_the_quick_budget(name, tmp_path):
    """A cell that raises, or a figure without a title or axis labels, fails the run."""
    executed = nbformat.read(
        runner.execute(NOTEBOOK_DIR / name, quick=True, output=tmp_path / name), as_version=4
    )
    cells = code_cells(executed)
    assert all(cell.execution_count is not None for cell in cells)
    install = "".join(out.get("text", "") for out in cells[0].outputs)
    # purejaxppo was importable, so the install cell only reports the versions
    assert re.match(r"purejaxppo \d+\.\d+\.\d+, jax ", install), install
    stamp = executed.metadata[runner.STAMP_KEY]
    assert stamp["budget"] == "quick"
    assert stamp["purejaxppo_version"] == purejaxppo.__version__
    assert stamp["purejaxppo_source_sha256"] == runner.source_fingerprint()
    assert "purejaxppo_git_commit" in stamp


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebook_holds_full_budget_outputs_of_the_current_version(name):
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    stamp = notebook.metadata.get(runner.STAMP_KEY, {})
    assert stamp.get("budget") == "full", f"{name}: not executed at the full budget"
    assert stamp.get("purejaxppo_version") == purejaxppo.__version__, (
        f"{name}: its outputs come from purejaxppo {stamp.get('purejaxppo_version')}, this is "
        f"{purejaxppo.__version__}; after a version bump rerun `python notebooks/run_notebooks.py`"
    )
    cells = code_cells(notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    outputs = [out for cell in cells for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    figures = [out for out in outputs if "image/png" in out.get("data", {})]
    shows = sum(cell.source.count("plt.show()") for cell in cells)
    assert shows > 0 and len(figures) == shows, f"{name}: {len(figures)} figures, {shows} shows"


# The install cell runs in a child Python where `import purejaxppo` fails, as in a fresh Colab
# runtime. An audit hook (which cannot be removed) refuses every new process and any import of
# pip, and pip's environment points at no index, so no test can install anything.
_FRESH_RUNTIME = """
import sys


def _refuse(event, args):
    spawns = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn")
    if event in spawns or (event == "import" and args[0].partition(".")[0] == "pip"):
        print("BLOCKED", event, args[:2], file=sys.stderr, flush=True)
        raise PermissionError(f"the test refuses {event}")


sys.addaudithook(_refuse)
sys.modules["purejaxppo"] = None  # `import purejaxppo` raises; find_spec returns None
"""


def install_cell_source(name):
    return code_cells(nbformat.read(NOTEBOOK_DIR / name, as_version=4))[0].source


def run_install_cell_in_a_fresh_runtime(tmp_path, pip_source):
    env = {k: v for k, v in os.environ.items() if k != "PUREJAXPPO_PIP" and "PIP" not in k}
    env.update(PIP_NO_INDEX="1", PIP_INDEX_URL="file:///nonexistent", PIP_CONFIG_FILE=os.devnull)
    if pip_source is not None:
        env["PUREJAXPPO_PIP"] = pip_source
    code = _FRESH_RUNTIME + install_cell_source(EXPECTED[0])
    return subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_install_cell_is_the_same_in_every_notebook():
    sources = {install_cell_source(name) for name in EXPECTED}
    assert len(sources) == 1
    assert "PUREJAXPPO_PIP" in sources.pop()


@pytest.mark.parametrize("pip_source", [None, "", "purejaxppo[notebooks]", "purejaxppo"])
def test_the_install_cell_never_installs_a_bare_name_from_an_index(pip_source, tmp_path):
    """Unset, empty, or a package name (which an index would resolve to whoever registered
    it): the cell raises an error that says how to install, and never starts pip."""
    result = run_install_cell_in_a_fresh_runtime(tmp_path, pip_source)
    assert "BLOCKED" not in result.stderr, result.stderr
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("ModuleNotFoundError: purejaxppo is not importable"), result.stderr
    assert 'pip install "/path/to/purejaxppo[notebooks]"' in error
    assert "PUREJAXPPO_PIP" in error


def test_the_install_cell_installs_from_the_source_the_user_names(tmp_path):
    source = "/nonexistent/purejaxppo[notebooks]"
    result = run_install_cell_in_a_fresh_runtime(tmp_path, source)
    assert result.returncode != 0
    blocked = [line for line in result.stderr.splitlines() if line.startswith("BLOCKED")]
    assert len(blocked) == 1, result.stderr
    assert blocked[0].startswith("BLOCKED subprocess.Popen")
    assert f"'-m', 'pip', 'install', '-q', '{source}']" in blocked[0], blocked[0]
