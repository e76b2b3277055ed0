"""The analysis figures: t-SNE of the features, the decision boundary on 2-d inputs, the confusion matrix.

Each `*_figure` function returns a matplotlib `Figure`, drawn with the Agg canvas and never through
pyplot's global state, so nothing needs a display and nothing leaks between runs; `save_figure`
writes it as PNG (to look at, and for W&B) and PDF (vector, for papers) under one stem.

In every figure colour means class, and the domain is told apart by the marker: source filled
circles, target crosses (decision boundary) or hollow circles (t-SNE), each legend says which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from dann.runs.directory import atomic_write

DOMAIN_COLOURS = ("tab:blue", "tab:orange")  # source, target
NEUTRAL = "0.3"  # the domain legend's markers: grey, since colour means class
MOST_ANNOTATED_CLASSES = 20  # confusion matrices larger than this are drawn without numbers in the cells
MOST_LEGEND_CLASSES = 20  # past this, a class legend would hide the plot: a colour bar of class indices instead
FORMATS = ("png", "pdf")


def tsne_figure(
    features: np.ndarray,
    labels: np.ndarray,
    domains: np.ndarray,
    title: str,
    seed: int = 0,
    domain_names: Sequence[str] = ("source", "target"),
    class_names: Sequence[str] | None = None,
) -> Figure:
    """features [N, F], labels [N], domains [N] (0 source, 1 target): two panels, coloured by domain and by class."""
    x = features.astype(np.float32)
    if x.shape[1] > 50:  # as scikit-learn advises: PCA to 50 dimensions first, for speed and less noise
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(x) - 1) / 3)
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    k = int(labels.max()) + 1
    names = _names(class_names, k)
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    by_domain, by_class = fig.subplots(1, 2)
    for d in (0, 1):
        at = domains == d
        label = _domain_label(d, domain_names)
        by_domain.scatter(xy[at, 0], xy[at, 1], s=6, alpha=0.6, c=DOMAIN_COLOURS[d], label=label)
    by_domain.legend(title="domain", markerscale=2.5, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    by_domain.set_title("coloured by domain")

    # Source filled, target hollow: at this size a filled and an empty circle stay apart where o and x do not.
    colours = class_colour_array(labels, k)
    at = domains == 0
    by_class.scatter(xy[at, 0], xy[at, 1], s=14, alpha=0.6, c=colours[at], linewidths=0)
    at = domains == 1
    by_class.scatter(xy[at, 0], xy[at, 1], s=14, alpha=0.8, facecolors="none", edgecolors=colours[at], linewidths=0.8)
    domain_legend = by_class.legend(
        handles=_domain_handles(domain_names, target_marker="o", hollow_target=True),
        title="domain (marker)",
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    _add_legend(by_class, domain_legend)
    _class_key(fig, by_class, k, names, anchor=(1.0, 0.0), loc="lower left")
    by_class.set_title("coloured by class, marker by domain")
    for ax in (by_domain, by_class):
        ax.set_xticks([])  # t-SNE coordinates have no units: only the neighbourhoods mean something
        ax.set_yticks([])
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    fig.suptitle(title)
    return fig


def decision_boundary_figure(
    predict: Callable[[np.ndarray], np.ndarray],
    source: tuple[np.ndarray, np.ndarray],
    target: tuple[np.ndarray, np.ndarray],
    title: str,
    domain_names: Sequence[str] = ("source", "target"),
    class_names: Sequence[str] | None = None,
) -> Figure:
    """2-d inputs: the predicted class over the plane (`predict`: points [G, 2] → classes [G]) shaded,
    with source (x [N, 2], y [N]) as dots and target as crosses, both coloured by their true class."""
    points = np.concatenate([source[0], target[0]])
    low, high = points.min(axis=0) - 0.5, points.max(axis=0) + 0.5
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], 300), np.linspace(low[1], high[1], 300))
    classes = predict(np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)).reshape(gx.shape)
    k = int(max(classes.max(), source[1].max(), target[1].max())) + 1
    names = _names(class_names, k)
    colours = class_colours(np.arange(k))
    fig = Figure(figsize=(8.5, 5.5), layout="constrained")
    ax = fig.subplots()
    levels = np.arange(k + 1) - 0.5
    ax.contourf(gx, gy, classes, levels=levels, alpha=0.2, **colours)
    ax.contour(gx, gy, classes, levels=levels[1:-1], colors="k", linewidths=1.5)
    # Source faint, target bold: the target points are the ones the adaptation is about.
    ax.scatter(source[0][:, 0], source[0][:, 1], c=source[1], s=8, alpha=0.35, marker="o", **colours)
    ax.scatter(target[0][:, 0], target[0][:, 1], c=target[1], s=16, marker="x", **colours)
    domain_legend = ax.legend(
        handles=_domain_handles(domain_names, target_marker="x"),
        title="domain (marker)",
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
    )
    _add_legend(ax, domain_legend)
    class_handles = [_class_handle(colours, c, name) for c, name in enumerate(names)]
    region = Patch(facecolor="0.85", edgecolor="0.6", label="shaded: predicted class")
    boundary = Line2D([], [], color="k", linewidth=1.5, label="decision boundary")
    ax.legend(
        handles=[*class_handles, region, boundary],
        title="true class (colour)",
        loc="lower left",
        bbox_to_anchor=(1.02, 0.0),
    )
    ax.set_xlabel("x₁ (input feature 1)")
    ax.set_ylabel("x₂ (input feature 2)")
    ax.set_title(f"decision boundary: predicted class over the input plane\n{title}")
    return fig


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str], title: str) -> Figure:
    """confusion [K, K] counts (rows: true class, columns: predicted), drawn row-normalised.

    Every class keeps its name at any K: the figure grows with K and the font shrinks (8 pt up to 40
    classes, with counts in the cells up to 20; 7 pt up to 100, such as Office-Home's 65; 5 pt beyond,
    such as DomainNet's 345: a large figure to zoom into, best read in the PDF)."""
    rows = confusion.sum(axis=1, keepdims=True)
    rates = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    k = len(confusion)
    font = 8 if k <= 40 else 7 if k <= 100 else 5
    cell = max(0.4 if k <= MOST_ANNOTATED_CLASSES else 0, font * 1.8 / 72)  # inches: a label's height, spaced
    labels = font * 0.6 / 72 * max(map(len, class_names), default=1) + 0.6  # inches for the longest name
    side = max(cell * k, 4.0)  # a few classes: still a readable figure
    fig = Figure(figsize=(side + labels + 1.5, side + labels + 0.8), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="fraction of the true class", shrink=min(1.0, 6 / max(side, 1e-9)))
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(k), class_names, fontsize=font)
    if k <= MOST_ANNOTATED_CLASSES:
        for i in range(k):
            for j in range(k):
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8, color=colour)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return fig


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write `fig` as `<stem>.png` and `<stem>.pdf`; the paths written.

    Atomically and never through a link planted in the run directory (`atomic_write`): a killed
    analysis never leaves half an image, and a crafted link never leads outside the directory."""
    FigureCanvasAgg(fig)
    # A very large figure (a confusion matrix of hundreds of classes) gets more pixels: its small
    # labels must stay legible in the PNG too.
    dpi = 150 if max(fig.get_size_inches()) > 25 else 100
    paths = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths


def class_colours(labels: np.ndarray) -> dict:
    """One colour per class, the same in every panel: matplotlib's colour keywords for labels 0 … max(labels).

    Qualitative maps are indexed exactly (class i gets the map's i-th colour); past 20 classes, a continuous one.
    """
    k = int(labels.max()) + 1
    for cmap, size in (("Set1", 9), ("tab20", 20)):
        if k <= size:
            return {"cmap": cmap, "vmin": 0, "vmax": size - 1}
    return {"cmap": "turbo", "vmin": 0, "vmax": k - 1}


def class_colour_array(labels: np.ndarray, k: int) -> np.ndarray:
    """RGBA [N, 4] of each label's class colour (`class_colours` for classes 0 … k-1)."""
    return _mappable(class_colours(np.arange(k))).to_rgba(labels)


def _mappable(colours: dict) -> ScalarMappable:
    return ScalarMappable(Normalize(colours["vmin"], colours["vmax"]), colormaps[colours["cmap"]])


def _names(class_names: Sequence[str] | None, k: int) -> list[str]:
    return list(class_names) if class_names is not None else [str(c) for c in range(k)]


def _domain_label(d: int, domain_names: Sequence[str]) -> str:
    """`source: moons`: the role and, when it says more, the domain's own name."""
    role = ("source", "target")[d]
    return role if domain_names[d] == role else f"{role}: {domain_names[d]}"


def _add_legend(ax, legend) -> None:
    """Keep `legend` on `ax` beside the next one (a second `ax.legend` call replaces the first)."""
    ax.add_artist(legend)
    # add_artist clips it to the axes, and a clipped artist is left out of the layout: a legend outside
    # the axes would be cut off the saved figure.
    legend.set_clip_on(False)


def _domain_handles(domain_names: Sequence[str], target_marker: str, hollow_target: bool = False) -> list[Line2D]:
    """The domain legend's entries: the markers in a neutral grey, since colour means class."""
    source = Line2D([], [], linestyle="", marker="o", color=NEUTRAL, label=_domain_label(0, domain_names))
    target = Line2D(
        [],
        [],
        linestyle="",
        marker=target_marker,
        color=NEUTRAL,
        markerfacecolor="none" if hollow_target else NEUTRAL,
        label=_domain_label(1, domain_names),
    )
    return [source, target]


def _class_handle(colours: dict, c: int, name: str) -> Line2D:
    colour = _mappable(colours).to_rgba(c)
    return Line2D([], [], linestyle="", marker="s", markersize=8, color=colour, label=name)


def _class_key(fig: Figure, ax, k: int, names: list[str], anchor: tuple[float, float], loc: str) -> None:
    """A legend of the class colours, with their names; past `MOST_LEGEND_CLASSES`, a colour bar of class indices."""
    colours = class_colours(np.arange(k))
    if k <= MOST_LEGEND_CLASSES:
        handles = [_class_handle(colours, c, name) for c, name in enumerate(names)]
        ax.legend(handles=handles, title="class (colour)", loc=loc, bbox_to_anchor=anchor, ncols=1 + (k > 10))
        return
    bar = fig.colorbar(_mappable(colours), ax=ax, location="bottom", shrink=0.8, aspect=40)
    bar.set_label(f"class index (0–{k - 1}; names in analysis.json)")
