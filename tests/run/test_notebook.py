"""The course notebook, notebooks/CA12.ipynb, runs from top to bottom in fast mode.

Executed by nbclient in a Jupyter kernel of this interpreter (ipykernel in the same environment:
its `python3` kernel spec launches `sys.executable`), with `CA12_NOTEBOOK_FAST=1` in the
environment the kernel inherits, so every training budget is the notebook's tiny one. Any cell
that raises fails the test with the cell's traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "CA12.ipynb"
# Fast mode takes about 50 s on 2 idle CPU cores (about a minute under load); the limit is per cell.
CELL_TIMEOUT_S = 300


@pytest.mark.slow
@pytest.mark.xdist_group("notebook")
def test_the_notebook_runs_top_to_bottom_in_fast_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("CA12_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the notebook logs to CSV; never reach for W&B
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's runs (tempfile.mkdtemp) go under tmp_path too
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # A first cell of our own reports the kernel's environment (sys.prefix) and mode; the notebook's cells follow.
    nb.cells.insert(0, nbformat.v4.new_code_cell("import os, sys; print(sys.prefix); print(os.environ['CA12_NOTEBOOK_FAST'])"))
    # The kernel runs in tmp_path: ca12.fit's run index (runs/index.txt) lands there, not in the repository.
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"a notebook cell failed:\n{error}", pytrace=False)

    probe = "".join(output.get("text", "") for output in nb.cells[0].outputs).split()
    assert probe[0] == sys.prefix, f"the kernel runs {probe[0]}'s Python, not this environment's ({sys.prefix})"
    assert probe[1] == "1", "the kernel did not inherit CA12_NOTEBOOK_FAST"
    text = "\n".join(output.get("text", "") for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs)
    assert "FAST=True" in text
    # Every training cell ran: each ca12.train call prints its run's line, and the sweep finished.
    runs = [line for line in text.splitlines() if line.startswith("[") and " frames in " in line]
    assert len(runs) >= 15, runs
    assert "sweep finished" in text
    images = sum("image/png" in output.get("data", {}) for cell in nb.cells for output in cell.get("outputs", []))
    assert images >= 20, f"only {images} plots were drawn"
