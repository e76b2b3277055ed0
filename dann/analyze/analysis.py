"""One run's analysis: features of source validation and target test → proxy A-distance, figures, confusion.

Writes, in the run directory (or the directory `--out` gives), `analysis.json` (atomically, last:
its presence means the files it names are complete) and `analysis/` with `features.npz` and the
figures (each as PNG and PDF); then logs them to the run's own W&B run, if it had one (`wandb_log`).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dann.analyze.features import SplitFeatures, extract, sample_positions
from dann.analyze.pad import proxy_a_distance
from dann.analyze.plots import confusion_figure, decision_boundary_figure, save_figure, tsne_figure
from dann.analyze.restore import read_run, rebuild
from dann.analyze.wandb_log import log_analysis
from dann.errors import RunDirError, describe_error
from dann.runs.directory import atomic_write, make_subdir
from dann.runs.tracking import write_json_atomic
from dann.training import distributed
from dann.training.settings import TrainerSettings

log = logging.getLogger(__name__)

SEED = 0  # subsamples, the SVM's halves and t-SNE: fixed, so that runs are compared on the same footing


@dataclass(frozen=True)
class Options:
    """`max_points`: at most this many examples per domain for the proxy A-distance and t-SNE.
    `data_root`: replaces `dataset.root`. `trust`: build `_target_`s outside dann's components.
    `wandb`: also log the analysis to the run's own W&B run, when it had one."""

    tsne: bool = True
    max_points: int = 1000
    device: str = "auto"
    data_root: str | None = None
    trust: bool = False
    wandb: bool = True


def analyze_run(run_dir: Path, options: Options = Options(), out_dir: Path | None = None) -> dict[str, Any]:
    """Analyse the finished run in `run_dir`; return what `analysis.json` now holds.

    `out_dir`: where `analysis.json` and `analysis/` go (default: `run_dir`, beside the summary)."""
    run = read_run(run_dir)
    out_dir = run_dir if out_dir is None else out_dir
    device = distributed.device(options.device)
    data, network = rebuild(run, device, options.data_root, options.trust)
    check_writable(out_dir)  # before minutes of work, and before anything is written
    batch_size = TrainerSettings.from_config(run.config.trainer).eval_batch_size

    def features_of(split) -> SplitFeatures:
        sample = sample_positions(len(split), options.max_points, SEED)
        return extract(network, split, sample, batch_size, device, data.mean, data.std, data.num_workers)

    source, target = features_of(data.source_val), features_of(data.target_test)
    # Equal numbers of each domain for the SVM and the plots (unreadable images can make them differ).
    n = min(len(source.sample), len(target.sample))
    try:
        analysis = _write(out_dir, run, data, network, device, source, target, n, options)
    except OSError as e:  # the directory went read-only or full on the way
        raise RunDirError(f"{out_dir}: the analysis could not be written ({describe_error(e)}); {_OUT_HINT}") from None
    if options.wandb:
        log_analysis(run, analysis, out_dir)
    return analysis


_OUT_HINT = "write it elsewhere with --out DIR"


def check_writable(out_dir: Path) -> None:
    """A `RunDirError` unless a file can be created in `out_dir` (made if missing); the probe is removed."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as e:
        raise RunDirError(
            f"{out_dir}: cannot be written ({describe_error(e)}), and analysis.json and analysis/ go there; "
            + _OUT_HINT
        ) from None


def _write(out_dir, run, data, network, device, source, target, n, options) -> dict[str, Any]:
    """analysis/ (features, figures) then analysis.json, in `out_dir`; what analysis.json holds."""
    s, t = source.sample[:n], target.sample[:n]
    out = make_subdir(out_dir / "analysis")  # a link there is refused: it could lead outside the directory
    files = {"features": "analysis/features.npz"}
    with atomic_write(out / "features.npz", "wb") as f:
        np.savez(
            f,
            features=np.concatenate([source.features, target.features]),
            labels=np.concatenate([source.labels, target.labels]),
            domains=np.repeat(np.array([0, 1], dtype=np.int64), [len(source.labels), len(target.labels)]),
            predictions=np.concatenate([source.predictions, target.predictions]),
        )
    confusion = confusion_matrix(target.labels, target.predictions, data.num_classes)
    names = _class_names(data)
    domains = (data.source, data.target)
    task = f"{run.summary.get('method')} {data.source} → {data.target}, seed {run.summary.get('seed')}"
    files |= _figure(out, "confusion", confusion_figure(confusion, names, f"target test confusion\n{task}"))
    if options.tsne:
        figure = tsne_figure(
            np.concatenate([source.features[s], target.features[t]]),
            np.concatenate([source.labels[s], target.labels[t]]),
            np.repeat([0, 1], n),
            f"t-SNE of the features: {task}",
            SEED,
            domains,
            names,
        )
        files |= _figure(out, "tsne", figure)
    if data.input_shape == (2,):  # points in the plane (the moons): the paper's figure 2
        figure = decision_boundary_figure(
            lambda grid: _predict(network, grid, device),
            (source.raw[:n], source.labels[s]),
            (target.raw[:n], target.labels[t]),
            task,
            domains,
            names,
        )
        files |= _figure(out, "decision_boundary", figure)

    per_class = per_class_accuracy(confusion)
    analysis = {
        "checkpoint_step": int(run.state["step"]),
        "points_per_domain": int(n),
        "pad": {
            "features": proxy_a_distance(source.features[s], target.features[t], SEED),
            "raw": proxy_a_distance(source.raw[:n], target.raw[:n], SEED),
            # A kernel SVM as well: on curved data (the moons) a hyperplane misses what it sees.
            "features_rbf": proxy_a_distance(source.features[s], target.features[t], SEED, kernel="rbf"),
            "raw_rbf": proxy_a_distance(source.raw[:n], target.raw[:n], SEED, kernel="rbf"),
        },
        "target_acc": float(np.trace(confusion) / max(confusion.sum(), 1)),
        "per_class_acc": per_class,
        "classes": names,
        "confusion": confusion.tolist(),
        "files": files,
    }
    write_json_atomic(out_dir / "analysis.json", analysis)
    return analysis


def _figure(out: Path, name: str, figure) -> dict[str, str]:
    """Save `figure` as analysis/<name>.png and .pdf; their entries in analysis.json's files:
    `<name>` the PNG (as before PDFs were written), `<name>_pdf` the PDF."""
    png, pdf = save_figure(figure, out / name)
    return {name: f"analysis/{png.name}", f"{name}_pdf": f"analysis/{pdf.name}"}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [K, K]: row i, column j counts examples of class i predicted as j."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> list[float | None]:
    """Each class's accuracy (a fraction); None for a class with no example (JSON has no NaN)."""
    totals = confusion.sum(axis=1)
    return [float(confusion[i, i] / totals[i]) if totals[i] else None for i in range(len(confusion))]


@torch.no_grad()
def _predict(network: torch.nn.Module, points: np.ndarray, device: torch.device) -> np.ndarray:
    return network.predict(torch.from_numpy(points).to(device)).argmax(dim=1).cpu().numpy()


def _class_names(data) -> list[str]:
    classes = getattr(data.target_test, "classes", None)  # image splits know their class names
    return list(classes) if classes else [str(i) for i in range(data.num_classes)]
