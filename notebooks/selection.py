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
# # Choosing λ without target labels (moons)
#
# A small λ × seed sweep of DANN on the moons with `python -m dann.run -m`, then, for each
# model-selection criterion, the λ it picks and its regret (the oracle's target accuracy minus
# the pick's), from `python -m dann.report --select all`; and the learning curves, mean ± std
# over seeds per λ. About a minute on 2 idle CPU cores at the default `DANN_NOTEBOOK_STEPS=2000`
# (the table of docs/results/selection.md uses the full 6000 steps and four λ). Set `DANN_NOTEBOOK_DIR`
# to keep the runs.

# %%
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

STEPS = int(os.environ.get("DANN_NOTEBOOK_STEPS", "2000"))
LAMBDAS = "0,0.3,1"
SEEDS = "0,1,2"
OUT = Path(os.environ.get("DANN_NOTEBOOK_DIR") or tempfile.mkdtemp(prefix="selection_"))
SWEEP = OUT / "sweep"

subprocess.run(
    [
        sys.executable,
        "-m",
        "dann.run",
        "-m",
        f"lambda={LAMBDAS}",
        f"seed={SEEDS}",
        f"trainer.steps={STEPS}",
        f"trainer.eval_every={STEPS // 5}",
        "trainer.progress=off",
        "logger=none",
        f"hydra.sweep.dir={SWEEP}",
    ],
    check=True,
)

# %% [markdown]
# Each criterion picks, per task, the λ whose runs score best on it (mean over seeds);
# `target labels` says which criteria peek at the target test labels (only the oracle).

# %%
subprocess.run(
    [sys.executable, "-m", "dann.report", str(SWEEP), "--select", "all", "--csv", str(OUT / "selection.csv")],
    check=True,
)
selection = pd.read_csv(OUT / "selection.csv")
selection[["criterion", "picks", "mean", "oracle", "regret"]]

# %% [markdown]
# Learning curves: source validation and target test accuracy, mean ± std over seeds, one colour per λ.

# %%
curves: dict[float, list[pd.DataFrame]] = {}
for summary_path in sorted(SWEEP.glob("*/summary.json")):
    summary = json.loads(summary_path.read_text())
    records = [json.loads(line) for line in (summary_path.parent / "metrics.jsonl").read_text().splitlines()]
    evaluations = pd.DataFrame([r for r in records if "target/acc" in r]).set_index("step")
    curves.setdefault(summary["lambda"], []).append(evaluations)

fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, metric in zip(axes, ("source/acc", "target/acc")):
    for lam, runs in sorted(curves.items()):
        values = np.stack([run[metric].to_numpy() for run in runs])  # [seeds, evaluations]
        steps = runs[0].index.to_numpy()
        mean, std = values.mean(axis=0), values.std(axis=0, ddof=1) if len(runs) > 1 else 0 * values[0]
        ax.plot(steps, mean, label=f"λ={lam:g} ({len(runs)} seeds)")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_title(metric)
    ax.set_xlabel("step")
axes[0].set_ylabel("accuracy")
axes[1].legend()
fig.tight_layout()
