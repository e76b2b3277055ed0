"""The analysis figures as PNG files: t-SNE of the features, the decision boundary on 2-d inputs, the confusion matrix.

Figures are drawn on matplotlib `Figure` objects with the Agg canvas, never through pyplot's
global state, so nothing needs a display and nothing leaks between runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from dann.runs.directory import atomic_write

DOMAIN_COLOURS = ("tab:blue", "tab:orange")  # source, target
MOST_ANNOTATED_CLASSES = 20  # confusion matrices larger than this are drawn without numbers in the cells


def tsne_png(
    path: Path, features: np.ndarray, labels: np.ndarray, domains: np.ndarray, title: str, seed: int = 0
) -> None:
    """features [N, F], labels [N], domains [N] (0 source, 1 target): two panels, by domain and by class."""
    x = features.astype(np.float32)
    if x.shape[1] > 50:  # as scikit-learn advises: PCA to 50 dimensions first, for speed and less noise
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(x) - 1) / 3)
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    fig = Figure(figsize=(11, 5))
    by_domain, by_class = fig.subplots(1, 2)
    for d, name in enumerate(("source", "target")):
        at = domains == d
        by_domain.scatter(xy[at, 0], xy[at, 1], s=4, alpha=0.6, c=DOMAIN_COLOURS[d], label=name)
    by_domain.legend(markerscale=3)
    by_domain.set_title("by domain")
    for d, marker in enumerate(("o", "x")):
        at = domains == d
        by_class.scatter(xy[at, 0], xy[at, 1], s=6, alpha=0.6, c=labels[at], marker=marker, **class_colours(labels))
    by_class.set_title("by class (o source, x target)")
    for ax in (by_domain, by_class):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    _save(fig, path)


def decision_boundary_png(
    path: Path,
    predict: Callable[[np.ndarray], np.ndarray],
    source: tuple[np.ndarray, np.ndarray],
    target: tuple[np.ndarray, np.ndarray],
    title: str,
) -> None:
    """2-d inputs: the predicted class over the plane (`predict`: points [G, 2] → classes [G]), with
    source (x [N, 2], y [N]) as dots and target as crosses, both coloured by their true class."""
    points = np.concatenate([source[0], target[0]])
    low, high = points.min(axis=0) - 0.5, points.max(axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], 300), np.linspace(low[1], high[1], 300))
    classes = predict(np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)).reshape(gx.shape)
    k = int(max(classes.max(), source[1].max(), target[1].max())) + 1
    colours = class_colours(np.arange(k))
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    levels = np.arange(k + 1) - 0.5
    ax.contourf(gx, gy, classes, levels=levels, alpha=0.2, **colours)
    ax.contour(gx, gy, classes, levels=levels[1:-1], colors="k", linewidths=1.5)
    # Source faint, target bold: the target points are the ones the adaptation is about.
    ax.scatter(source[0][:, 0], source[0][:, 1], c=source[1], s=8, alpha=0.35, marker="o", label="source", **colours)
    ax.scatter(target[0][:, 0], target[0][:, 1], c=target[1], s=16, marker="x", label="target", **colours)
    ax.legend()
    ax.set_title(title)
    _save(fig, path)


def confusion_png(path: Path, confusion: np.ndarray, class_names: list[str], title: str) -> None:
    """confusion [K, K] counts (rows: true class, columns: predicted), drawn row-normalised."""
    rows = confusion.sum(axis=1, keepdims=True)
    rates = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    k = len(confusion)
    side = min(4 + 0.4 * k, 20)
    fig = Figure(figsize=(side + 1, side))
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    if k <= MOST_ANNOTATED_CLASSES:
        ax.set_xticks(range(k), class_names, rotation=90)
        ax.set_yticks(range(k), class_names)
        for i in range(k):
            for j in range(k):
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8, color=colour)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    _save(fig, path)


def class_colours(labels: np.ndarray) -> dict:
    """One colour per class, the same in every panel: matplotlib's colour keywords for labels 0 … max(labels).

    Qualitative maps are indexed exactly (class i gets the map's i-th colour); past 20 classes, a continuous one.
    """
    k = int(labels.max()) + 1
    for cmap, size in (("Set1", 9), ("tab20", 20)):
        if k <= size:
            return {"cmap": cmap, "vmin": 0, "vmax": size - 1}
    return {"cmap": "turbo", "vmin": 0, "vmax": k - 1}


def _save(fig: Figure, path: Path) -> None:
    """Write the PNG atomically and never through a link planted in the run directory (`atomic_write`):
    a killed analysis never leaves half an image, and a crafted link never leads outside the directory."""
    FigureCanvasAgg(fig)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
