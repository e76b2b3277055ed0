"""The notebooks run as notebooks: each .ipynb is executed by a Jupyter kernel (nbclient), on real runs,
and each stays paired with its jupytext .py (the file to review and edit)."""

import json

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from dann.runs.launch import run
from tests.helpers import REPO, SHORT_RUN, compose_config

NOTEBOOKS = REPO / "notebooks"
KERNEL_TIMEOUT = 900  # seconds per cell: generous for a busy machine, never a measure of speed


def execute(name: str, cwd, monkeypatch, **env: str) -> nbformat.NotebookNode:
    """Run every cell of notebooks/<name> in a fresh kernel, as `jupyter nbconvert --execute` would."""
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows the figures
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, timeout=KERNEL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return notebook


def figures(notebook: nbformat.NotebookNode) -> int:
    """How many images the code cells displayed."""
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


def outputs(notebook: nbformat.NotebookNode) -> str:
    """What the code cells printed or displayed, as text."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


@pytest.mark.parametrize("name", sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")))
def test_each_notebook_is_paired_with_its_py_file(name):
    notebook = jupytext.read(NOTEBOOKS / name)
    paired = jupytext.read(NOTEBOOKS / name.replace(".ipynb", ".py"))
    code = [[c.source for c in nb.cells if c.cell_type == "code"] for nb in (notebook, paired)]
    assert code[0] == code[1], f"{name} and its .py differ: run `jupytext --sync notebooks/*.py`"
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,py:percent"


def test_learning_curves_plots_every_run(tmp_path, monkeypatch):
    for method in ("dann", "source_only"):
        run_dir = tmp_path / "runs" / method
        run_dir.mkdir(parents=True)
        run(compose_config(f"method={method}", *SHORT_RUN), run_dir)
    notebook = execute("learning_curves.ipynb", tmp_path, monkeypatch, DANN_RUNS=str(tmp_path / "runs" / "*"))
    assert "2 runs" in outputs(notebook) and figures(notebook) >= 1


def test_moons_notebook_trains_analyses_and_tabulates_both_methods(tmp_path, monkeypatch):
    out = tmp_path / "moons"
    notebook = execute(
        "moons.ipynb",
        tmp_path,
        monkeypatch,
        DANN_NOTEBOOK_DIR=str(out),
        DANN_NOTEBOOK_STEPS="300",
        DANN_NOTEBOOK_POINTS="100",
    )
    for method in ("source_only", "dann"):
        analysis = json.loads((out / method / "analysis.json").read_text())
        summary = json.loads((out / method / "summary.json").read_text())
        assert analysis["target_acc"] == summary["final"]["target/acc"] and summary["steps"] == 300
        assert (out / method / "analysis" / "decision_boundary.png").exists()
        assert figures(notebook) == 1  # the four pictures, in one figure
        pad = analysis["pad"]
        row = f"| {method} | {analysis['target_acc']:.3f} | {pad['features']:.3f} | {pad['features_rbf']:.3f} |"
        assert row in outputs(notebook)


def test_selection_notebook_tabulates_every_criterion(tmp_path, monkeypatch):
    out = tmp_path / "selection"
    notebook = execute("selection.ipynb", tmp_path, monkeypatch, DANN_NOTEBOOK_DIR=str(out), DANN_NOTEBOOK_STEPS="100")
    assert len(list((out / "sweep").glob("*/summary.json"))) == 9  # 3 λ × 3 seeds
    table = (out / "selection.csv").read_text()
    for criterion in ("source_val", "iwv", "dev", "snd", "entropy", "info_max", "reverse_val", "oracle"):
        assert f",{criterion}," in table
    assert figures(notebook) == 1  # the learning curves
