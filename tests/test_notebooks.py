"""The notebooks' code runs on real run directories."""

import json

from dann.run import run
from tests.helpers import REPO, SHORT_RUN, compose_config


def code_cells(name: str) -> list[str]:
    notebook = json.loads((REPO / "notebooks" / name).read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_learning_curves_plots_every_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # matplotlib is a dev dependency: no skip if it is missing
    for method in ("dann", "source_only"):
        run_dir = tmp_path / method
        run_dir.mkdir()
        run(
            compose_config(f"method={method}", *SHORT_RUN),
            run_dir,
        )
    monkeypatch.setenv("DANN_RUNS", str(tmp_path / "*"))
    namespace: dict = {}
    for source in code_cells("learning_curves.ipynb"):
        exec(compile(source, "learning_curves.ipynb", "exec"), namespace)
    assert len(namespace["runs"]) == 2
    for ax in namespace["axes"]:
        lines = [line for line in ax.get_lines() if line.get_label().startswith(("dann", "source_only"))]
        assert len(lines) == 2  # one curve per run on every panel
    target_panel = namespace["axes"][1]
    assert list(target_panel.get_lines()[0].get_xdata()) == [20, 40]
