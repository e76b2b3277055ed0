"""The analysis figures say what they show: legends name the domains and the classes, axes are labelled,
a confusion matrix keeps its class names at any size, and each figure is written as PNG and PDF.

Asserted on the matplotlib Figure objects the plot functions return, never on pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.legend import Legend
from PIL import Image

from dann.analyze.plots import MOST_LEGEND_CLASSES, confusion_figure, decision_boundary_figure, save_figure, tsne_figure

DOMAINS = ("moons", "moons_rotated")


def legends(ax) -> list[Legend]:
    """The axes' legends, those kept beside another with add_artist included."""
    return [a for a in ax.get_children() if isinstance(a, Legend)]


def legend_texts(fig) -> list[str]:
    """Every legend's title and entries, of every axes."""
    return [
        text
        for ax in fig.axes
        for legend in legends(ax)
        for text in [legend.get_title().get_text(), *(t.get_text() for t in legend.get_texts())]
    ]


def two_blobs(k: int, n: int = 120):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, k, n)
    labels[:k] = np.arange(k)  # every class present
    domains = np.repeat([0, 1], n // 2)
    features = rng.normal(size=(n, 6)) + 3 * np.eye(6)[labels % 6]
    return features, labels, domains


def test_decision_boundary_legends_say_marker_is_domain_and_colour_is_class():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(50, 2)), rng.integers(0, 2, 50)
    target = rng.normal(size=(50, 2)) + 1, rng.integers(0, 2, 50)
    fig = decision_boundary_figure(
        lambda grid: (grid[:, 0] > 0).astype(int), source, target, "dann seed 0", DOMAINS, ["upper", "lower"]
    )
    (ax,) = fig.axes
    texts = legend_texts(fig)
    assert "domain (marker)" in texts and "source: moons" in texts and "target: moons_rotated" in texts
    assert "true class (colour)" in texts and "upper" in texts and "lower" in texts
    assert any("predicted class" in t for t in texts)  # what the shading is
    assert ax.get_xlabel() and ax.get_ylabel()
    assert "decision boundary" in ax.get_title() and "dann seed 0" in ax.get_title()
    # The domain legend's markers are neutral: the same grey for both domains, unlike the class colours.
    domain_legend = next(legend for legend in legends(ax) if "domain" in legend.get_title().get_text())
    markers = [h.get_marker() for h in domain_legend.legend_handles]
    colours = {h.get_color() for h in domain_legend.legend_handles}
    assert markers == ["o", "x"] and len(colours) == 1


def test_tsne_has_a_class_legend_with_names_domains_apart_and_labelled_axes():
    features, labels, domains = two_blobs(3)
    fig = tsne_figure(features, labels, domains, "t-SNE", 0, ("amazon", "webcam"), ["bike", "mug", "pen"])
    by_domain, by_class = fig.axes
    texts = legend_texts(fig)
    assert {"source: amazon", "target: webcam", "bike", "mug", "pen"} <= set(texts)
    assert all(ax.get_xlabel() == "t-SNE 1" and ax.get_ylabel() == "t-SNE 2" for ax in (by_domain, by_class))
    assert by_domain.get_title() and by_class.get_title()
    # The class panel tells the domains apart: source filled, target hollow.
    source, target = by_class.collections
    assert source.get_facecolors()[:, 3].min() > 0
    assert len(target.get_facecolors()) == 0 or target.get_facecolors()[:, 3].max() == 0


def test_tsne_of_many_classes_gets_a_colour_bar_instead_of_a_huge_legend():
    k = MOST_LEGEND_CLASSES + 5
    features, labels, domains = two_blobs(k, n=200)
    fig = tsne_figure(features, labels, domains, "t-SNE", 0, class_names=[f"c{i}" for i in range(k)])
    texts = legend_texts(fig)
    assert "c0" not in texts and "source" in texts  # the domain legend stays
    colour_bar = fig.axes[-1]  # matplotlib adds the colour bar's own axes
    assert "class index" in colour_bar.get_xlabel() + colour_bar.get_ylabel()


@pytest.mark.parametrize("k", [2, 30, 65])
def test_confusion_keeps_every_class_name(k):
    names = [f"class_name_{i}" for i in range(k)]
    confusion = np.arange(k * k).reshape(k, k) % 7
    fig = confusion_figure(confusion, names, "target test confusion")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert all(t.get_rotation() == 90 for t in ax.get_xticklabels())
    assert min(fig.get_size_inches()) > 4  # two classes are no thumbnail either
    if k == 65:  # more classes, a larger figure and a smaller font
        small = confusion_figure(confusion[:30, :30], names[:30], "")
        assert fig.get_size_inches()[0] > small.get_size_inches()[0]
        assert ax.get_xticklabels()[0].get_fontsize() < small.axes[0].get_xticklabels()[0].get_fontsize()


def test_every_figure_is_written_as_png_and_pdf(tmp_path: Path):
    fig = confusion_figure(np.eye(3, dtype=int) * 5, ["a", "b", "c"], "confusion")
    png, pdf = save_figure(fig, tmp_path / "confusion")
    assert (png.name, pdf.name) == ("confusion.png", "confusion.pdf")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        image.verify()
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.pdf", "confusion.png"]  # no temporary left
