"""`dataset.protocol=heldout`: a fixed part of the target's training split is held out as the target test.

Adaptation never sees the held-out part; it is drawn per class with a fixed seed (not the run's),
so every seed and method is measured on the same examples.
"""

from __future__ import annotations

import json

import pytest
import torch

from dann.builders import build_dataset
from dann.config.validate import validate
from dann.data import DomainData, ImageSplit, Moons, Office31, Split
from dann.data.base import heldout_split
from dann.errors import ConfigError
from dann.runs.launch import run
from tests.helpers import compose_config
from tests.helpers.image_files import write_office31

SMALL_IMAGES = ["dataset.num_workers=0", "dataset.image_size=16", "dataset.resize_size=18", "dataset.download=false"]


def rows(split) -> set[tuple[float, ...]]:
    """The examples of an in-memory split, as a set of (inputs…, label) rows."""
    return {(*x.tolist(), int(y)) for x, y in zip(split.inputs, split.labels, strict=True)}


def heldout_moons(*overrides: str) -> DomainData:
    return build_dataset(compose_config("dataset.protocol=heldout", *overrides)).load()


def test_the_held_out_part_and_the_adapted_part_make_the_whole_target_training_split():
    whole = Moons().load().target_train
    data = heldout_moons()

    adapted, held_out = rows(data.target_train), rows(data.target_test)
    assert len(adapted) == len(data.target_train) and len(held_out) == len(data.target_test)  # no duplicates
    assert adapted.isdisjoint(held_out)
    assert adapted | held_out == rows(whole)
    assert len(data.target_test) == round(0.2 * len(whole))


def test_the_held_out_part_is_the_same_for_every_run_seed_and_every_call():
    first = heldout_moons("seed=0")
    torch.manual_seed(123)  # a run seeds the global generator before loading: the draw must not follow it
    again = heldout_moons("seed=7")
    for split in ("target_train", "target_test"):
        assert torch.equal(getattr(first, split).inputs, getattr(again, split).inputs)
        assert torch.equal(getattr(first, split).labels, getattr(again, split).labels)


def test_the_held_out_part_is_drawn_per_class():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    split = Split(inputs=torch.arange(100, dtype=torch.float32)[:, None], labels=labels)

    adapted, held_out = heldout_split(split, split, 0.2)

    assert torch.bincount(held_out.labels).tolist() == [10, 6, 4]
    assert torch.bincount(adapted.labels).tolist() == [40, 24, 16]
    together = torch.cat([adapted.inputs[:, 0], held_out.inputs[:, 0]]).sort().values
    assert torch.equal(together, split.inputs[:, 0])  # disjoint, and the whole split
    # a class of one example stays with adaptation; every class keeps at least one example there
    lonely = Split(inputs=torch.zeros(3, 1), labels=torch.tensor([0, 1, 1]))
    adapted, held_out = heldout_split(lonely, lonely, 0.9)
    assert held_out.labels.tolist() == [1] and sorted(adapted.labels.tolist()) == [0, 1]


def test_the_other_protocols_are_unchanged():
    inductive = Moons().load()
    assert len(inductive.target_train) == 300 and len(inductive.target_test) == 1000


@pytest.mark.parametrize("fraction", ["0", "1", "1.5"])
def test_a_heldout_fraction_outside_the_open_unit_interval_is_refused(fraction):
    with pytest.raises(ConfigError, match="dataset.heldout_fraction"):
        validate(compose_config("dataset.protocol=heldout", f"dataset.heldout_fraction={fraction}"))
    with pytest.raises(ConfigError, match=r"^dataset.heldout_fraction: expected a fraction in \(0, 1\)"):
        Moons(protocol="heldout", heldout_fraction=float(fraction))  # built in code: the same declaration


def test_an_unknown_protocol_is_refused():
    with pytest.raises(ConfigError, match="dataset.protocol"):
        validate(compose_config("dataset.protocol=held_out"))
    with pytest.raises(ConfigError, match="^dataset.protocol: expected one of inductive, transductive, heldout"):
        Moons(protocol="held_out")


def test_a_short_moons_run_reports_on_the_held_out_part(tmp_path, caplog):
    # In this process: what is tested is the protocol, not the command line (tests/test_run.py tests that).
    with caplog.at_level("INFO", logger="dann"):
        run(compose_config("dataset.protocol=heldout", "logger=none", "trainer=debug"), tmp_path / "run")

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["protocol"] == "heldout"
    held_out = len(heldout_moons().target_test)
    assert held_out == 60
    # the target test size as the run saw it: in its log, and in its accuracy's denominator
    assert "60 of its 300 training examples held out as the target test, 240 left for adaptation" in caplog.text
    correct = summary["final"]["target/acc"] * held_out
    assert correct == pytest.approx(round(correct), abs=1e-6)
    sizes = {"source_train": 300, "source_val": 1000, "target_train": 240, "target_test": 60}
    assert summary["split_sizes"] == sizes  # what the run trained and reported on, in its summary


def test_office31_held_out_images_are_never_the_images_adapted_on(tmp_path):
    write_office31(tmp_path, images_per_class=5, size=20, domains=("amazon", "webcam"))
    cfg = compose_config("dataset=office31", f"dataset.root={tmp_path}", "dataset.protocol=heldout", *SMALL_IMAGES)
    pair = build_dataset(cfg)
    data = pair.load()
    transductive = build_dataset(compose_config("dataset=office31", f"dataset.root={tmp_path}", *SMALL_IMAGES)).load()

    adapted = {data.target_train.path(i) for i in range(len(data.target_train))}
    held_out = {data.target_test.path(i) for i in range(len(data.target_test))}
    whole = {transductive.target_train.path(i) for i in range(len(transductive.target_train))}
    assert adapted.isdisjoint(held_out)
    assert adapted | held_out == whole and len(whole) == 31 * 5
    assert torch.bincount(data.target_test.labels, minlength=31).tolist() == [1] * 31  # one of each class's five
    assert all(path.parent.parent.parent.name == "webcam" for path in held_out)
    # tested as the target is evaluated (eval transforms), and with the same draw from a class built in Python
    assert isinstance(data.target_test, ImageSplit)
    assert repr(data.target_test.transform) == repr(transductive.target_test.transform)
    assert repr(data.target_train.transform) == repr(transductive.target_train.transform)
    assert data.target_test.name == "office31/webcam (held out)"
    plain = Office31(root=tmp_path, protocol="heldout", num_workers=0, image_size=16, resize_size=18).load()
    assert plain.target_test.files.tolist() == data.target_test.files.tolist()
    # source splits are untouched
    assert data.source_train.files.tolist() == transductive.source_train.files.tolist()
    assert data.source_val.files.tolist() == transductive.source_val.files.tolist()
