"""The dataset pair classes as components: what Hydra builds from `dataset._target_`, and the same
classes used from Python with plain arguments. Loading each benchmark is tested in tests/data/test_digits.py
and tests/data/test_office_data.py.
"""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest
import torch
from hydra.utils import get_class
from torchvision import transforms as T

from dann.builders import build_dataset
from dann.config.compose import CONF_DIR
from dann.data import Digits, DomainNet, DomainPair, Folder, Moons, Office31, OfficeHome, VisDA2017
from dann.errors import ConfigError
from tests.helpers import compose_config
from tests.helpers.image_files import paths_touched, write_class_folders, write_office31

DATASETS = sorted(path.stem for path in (CONF_DIR / "dataset").glob("*.yaml"))
# The config each class's defaults are (dataset=folder needs its two directories).
DEFAULTS = {
    "moons": Moons,
    "mnist_mnistm": Digits,
    "office31": Office31,
    "office_home": OfficeHome,
    "visda2017": VisDA2017,
    "domainnet": DomainNet,
}


def folder_dirs(tmp_path) -> list[str]:
    return [f"dataset.source_dir={tmp_path / 'a'}", f"dataset.target_dir={tmp_path / 'b'}"]


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_key_is_a_typed_constructor_argument_with_a_default(name):
    node = compose_config(f"dataset={name}").dataset
    parameters = inspect.signature(get_class(node._target_)).parameters
    for key in node:
        if key in ("_target_", "name"):  # name labels the dataset in summaries; it is not an argument
            continue
        assert key in parameters, f"dataset={name}: dataset.{key} is not an argument of {node._target_}"
        assert parameters[key].annotation is not inspect.Parameter.empty, key
        assert parameters[key].default is not inspect.Parameter.empty, key


@pytest.mark.parametrize("name", DEFAULTS)
def test_a_class_built_without_arguments_is_its_dataset_config(name, monkeypatch):
    monkeypatch.delenv("DANN_DATA", raising=False)  # the config's root and the class's default both read it
    from_config = build_dataset(compose_config(f"dataset={name}"))
    plain = DEFAULTS[name]()
    assert type(plain) is type(from_config)
    assert settings(plain) == settings(from_config)


def settings(pair: DomainPair) -> dict:
    """Every setting as built; transforms by their description (torchvision's repr gives every parameter)."""
    built = {f.name: getattr(pair, f.name) for f in fields(pair) if f.name != "transforms"}
    for split in ("train_transform", "eval_transform"):
        if hasattr(pair, split):
            built[split] = repr(getattr(pair, split))
    return built


@pytest.mark.parametrize("name", DATASETS)
def test_building_reads_no_file(tmp_path, name):
    cfg = compose_config(f"dataset={name}", f"dataset.root={tmp_path}", *(folder_dirs(tmp_path) * (name == "folder")))
    with paths_touched() as touched:
        pair = build_dataset(cfg)
    assert touched == []
    assert pair.source.name and pair.target.name and pair.target_labeled_fraction == 1.0


def test_a_pair_built_in_python_loads_what_the_config_loads(tmp_path):
    write_office31(tmp_path, images_per_class=1, domains=("dslr", "amazon"))
    small = ["dataset.num_workers=0", "dataset.image_size=16", "dataset.resize_size=18"]
    cfg = compose_config("dataset=office31", f"dataset.root={tmp_path}", "dataset.source=D", "dataset.target=A", *small)
    plain = Office31(
        source="D",
        target="A",
        root=tmp_path,
        num_workers=0,
        image_size=16,
        transforms={  # torchvision objects, as Hydra builds them from the config's _target_s
            "train": [T.RandomResizedCrop(16), T.RandomHorizontalFlip()],
            "eval": [T.Resize(18), T.CenterCrop(16)],
        },
    )

    expected, data = build_dataset(cfg).load(), plain.load()

    assert (data.source, data.target, data.num_classes) == ("dslr", "amazon", 31)
    for split in ("source_train", "source_val", "target_train", "target_test"):
        a, b = getattr(expected, split), getattr(data, split)
        assert a.files.tolist() == b.files.tolist() and torch.equal(a.labels, b.labels)
        assert repr(a.transform) == repr(b.transform)


def test_moons_built_in_python_are_the_default_run_s_data():
    expected, data = build_dataset(compose_config()).load(), Moons().load()
    for split in ("source_train", "source_val", "target_train", "target_test"):
        assert torch.equal(getattr(expected, split).inputs, getattr(data, split).inputs)
        assert torch.equal(getattr(expected, split).labels, getattr(data, split).labels)


@pytest.mark.parametrize(
    "pair, message",
    [
        (
            lambda: Digits(source="M", target="mnist"),
            "dataset.source and dataset.target are both 'mnist': adaptation needs two different domains",
        ),
        (
            lambda: Moons(target="usps"),
            "dataset.target: 'usps' has 10 classes but dataset.source 'moons' has 2; "
            "source and target must share one label set",
        ),
        (
            lambda: Digits(source="moons", target="moons_rotated"),
            "dataset.source: Digits cannot load domain 'moons'; "
            "choose one of mnist (M), mnistm (MM), svhn (S), usps (U)",
        ),
        (lambda: Office31(source="amazon", target="Art"), "dataset.target: unknown domain 'Art' in dataset=office31"),
    ],
)
def test_a_pair_that_makes_no_task_is_refused_when_built(pair, message):
    with pytest.raises(ConfigError) as error:
        pair()
    assert str(error.value).startswith(message)


def test_folder_classes_are_known_once_loaded(tmp_path):
    write_class_folders(tmp_path / "a", ["cat", "dog"], 1)
    write_class_folders(tmp_path / "b", ["cat", "dog"], 2, seed=1)
    pair = Folder(source_dir=str(tmp_path / "a"), target_dir=str(tmp_path / "b"), num_workers=0)
    assert pair.source.num_classes is None
    data = pair.load()
    assert data.num_classes == 2 and len(data.target_test) == 4
