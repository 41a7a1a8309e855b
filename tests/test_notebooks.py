"""The notebooks run top to bottom (at tiny budgets), and the committed ones hold the
outputs of a full-budget run of the current code.

Executing them needs nbclient and an IPython kernel (the dev extra installs both).
"""

import re
from pathlib import Path

import nbformat
import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
EXPECTED = ["01_quickstart.ipynb", "02_ppo_explained.ipynb", "03_sweeps.ipynb"]


runner = load_script(NOTEBOOK_DIR / "run_notebooks.py")


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_the_notebooks_are_the_three_the_readme_links():
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
    assert executed.metadata[runner.STAMP_KEY]["budget"] == "quick"


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebook_holds_full_budget_outputs_of_the_current_code(name):
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    stamp = notebook.metadata.get(runner.STAMP_KEY, {})
    assert stamp.get("budget") == "full", f"{name}: not executed at the full budget"
    assert stamp.get("purejaxppo_source_sha256") == runner.source_fingerprint(), (
        f"{name}: its outputs come from other purejaxppo sources than these; rerun "
        "`python notebooks/run_notebooks.py`"
    )
    cells = code_cells(notebook)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    outputs = [out for cell in cells for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    figures = [out for out in outputs if "image/png" in out.get("data", {})]
    shows = sum(cell.source.count("plt.show()") for cell in cells)
    assert shows > 0 and len(figures) == shows, f"{name}: {len(figures)} figures, {shows} shows"
