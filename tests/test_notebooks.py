"""The notebooks run top to bottom with tiny budgets, so they cannot rot."""

import re

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("PGKERAS_NOTEBOOK_STEPS", "3000")
    monkeypatch.setenv("PGKERAS_NOTEBOOK_PLAY_STEPS", "60")
    monkeypatch.setenv("PGKERAS_NOTEBOOK_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = nbformat.read(path, as_version=4)
    # The kernel starts in a folder of its own: the notebooks run from any working directory.
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {}) or "image/gif" in o.get("data", {})]
    assert images, "the notebook should show its curves and GIF inline"
    if path.name.startswith("01_"):
        text = "".join(o.get("text", "") for o in outputs)
        gaps = [float(value) for value in re.findall(r"largest gap (\S+)", text)]
        assert len(gaps) == 7 and max(gaps) < 1e-5, gaps  # the three ways agree for every family
