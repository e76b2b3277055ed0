# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Learning curves
#
# Plots source and target accuracy, and the domain classifier's training accuracy, against
# steps for any number of runs. It only reads each run's `metrics.jsonl` and `summary.json`
# (formats: docs/reference/run-directory.md); training is `python -m dann.run`.
#
# Set `RUNS` to glob patterns of run directories, or set the `DANN_RUNS` environment
# variable (patterns separated by `:`) before starting Jupyter.

# %%
import json
import os
from glob import glob
from pathlib import Path

import matplotlib.pyplot as plt

RUNS = os.environ.get("DANN_RUNS", "../outputs/*/*:../multirun/*/*/*").split(":")


def load_run(run_dir: Path) -> dict:
    """A run's summary and its metric series: {metric: ([steps], [values])}."""
    summary = json.loads((run_dir / "summary.json").read_text())
    series: dict[str, tuple[list, list]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for name, value in record.items():
            if name != "step":
                steps, values = series.setdefault(name, ([], []))
                steps.append(record["step"])
                values.append(value)
    return {"dir": run_dir, "summary": summary, "series": series}


runs = [
    load_run(Path(d))
    for pattern in RUNS
    for d in sorted(glob(pattern))
    if (Path(d) / "metrics.jsonl").exists() and (Path(d) / "summary.json").exists()
]
print(f"{len(runs)} runs")

# %%
METRICS = ["source/acc", "target/acc", "train/domain_acc"]

fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 3.5), sharex=True)
for run in runs:
    s = run["summary"]
    label = f"{s['method']} {s['source']}→{s['target']} λ={s['lambda']} seed={s['seed']}"
    for ax, metric in zip(axes, METRICS):
        if metric in run["series"]:
            ax.plot(*run["series"][metric], label=label)
for ax, metric in zip(axes, METRICS):
    ax.set_title(metric)
    ax.set_xlabel("step")
    ax.set_ylim(0, 1.02)
axes[-1].axhline(0.5, color="grey", linestyle=":", linewidth=1)  # indistinguishable domains
axes[0].legend(fontsize="small")
fig.tight_layout()
