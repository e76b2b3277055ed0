"""The image benchmarks (Office-31, Office-Home, VisDA-2017, DomainNet, folder), their streams and evaluation.

Data comes from `image_files`, which writes tiny trees of small images in the real layouts;
everything is built from the real Hydra config (`dataset._target_`) and loaded with `.load()`. Nothing here
reaches the network: the autouse `network` fixture lets urlopen serve file:// URLs only
and records every other URL something tried to fetch.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from torch import nn

from dann.builders import build_dataset
from dann.config.validate import validate
from dann.data import (
    DomainData,
    DomainSpec,
    ImageSplit,
    Split,
    base,
    catalog,
    eval_batches,
    make_stream,
    register_domain,
    subset,
    to_device,
)
from dann.data.class_names import DOMAINNET_CLASSES, OFFICE31_CLASSES, OFFICE_HOME_CLASSES, VISDA2017_CLASSES
from dann.errors import ConfigError, DataError
from dann.training.evaluate import accuracy, predict_split
from tests.helpers import compose_config, served_from
from tests.helpers.image_files import (
    corrupt,
    paths_touched,
    write_class_folders,
    write_domainnet,
    write_office31,
    write_office31_archive,
    write_office_home,
    write_visda2017,
)

SMALL = ["dataset.num_workers=0", "dataset.image_size=16", "dataset.resize_size=18"]  # fast decoding
CPU = torch.device("cpu")


def dataset_cfg(name: str, root: Path | None, *overrides: str) -> DictConfig:
    """The real config of dataset `name` (small images, no workers), as `dann.run` sees it."""
    root_override = [f"dataset.root={root}"] if root is not None else []
    return compose_config(f"dataset={name}", *root_override, *SMALL, *overrides)


def load(cfg: DictConfig) -> DomainData:
    """The four splits, built and loaded as `dann.run` does."""
    return build_dataset(cfg).load()


def files_and_labels(split: ImageSplit) -> list[tuple[Path, int]]:
    return [(split.path(i), int(split.labels[i])) for i in range(len(split))]


# --- Loading each benchmark ------------------------------------------------------------------


BENCHMARKS = {  # dataset → (writer, source, target, class list)
    "office31": (write_office31, "amazon", "webcam", OFFICE31_CLASSES),
    "office_home": (write_office_home, "Art", "Clipart", OFFICE_HOME_CLASSES),
    "visda2017": (write_visda2017, "train", "validation", VISDA2017_CLASSES),
}


@pytest.mark.parametrize("dataset", BENCHMARKS)
def test_transductive_benchmark_loads_its_classes_and_every_image(tmp_path, network, dataset):
    writer, source, target, classes = BENCHMARKS[dataset]
    written = writer(tmp_path, domains=(source, target))

    data = load(dataset_cfg(dataset, tmp_path, "dataset.image_size=224", "dataset.resize_size=256"))

    assert (data.source, data.target, data.num_classes) == (source, target, len(classes))
    assert data.input_shape == (3, 224, 224)
    assert data.mean == (0.485, 0.456, 0.406) and data.std == (0.229, 0.224, 0.225)
    assert data.source_train.classes == data.target_test.classes == tuple(classes)
    assert sorted(files_and_labels(data.source_train)) == sorted(written[source])
    # Transductive: the target is adapted on and evaluated on the same images; source validation
    # is the source images again (with the eval transforms).
    assert files_and_labels(data.target_train) == files_and_labels(data.target_test)
    assert files_and_labels(data.source_train) == files_and_labels(data.source_val)
    assert data.skipped_images == {"source_train": 0, "source_val": 0, "target_train": 0, "target_test": 0}
    assert network == []


def test_office_home_accepts_the_official_archive_folder_real_world_with_a_space(tmp_path):
    written = write_office_home(tmp_path, 1, domains=("Art", "Real_World"))
    (tmp_path / "office_home" / "Real_World").rename(tmp_path / "office_home" / "Real World")

    data = load(dataset_cfg("office_home", tmp_path, "dataset.target=Rw"))

    assert data.target == "Real_World" and len(data.target_test) == len(written["Real_World"])


def test_visda_reads_class_folders_when_there_is_no_image_list(tmp_path):
    written = write_visda2017(tmp_path, list_file=False)
    data = load(dataset_cfg("visda2017", tmp_path))
    assert sorted(files_and_labels(data.target_train)) == sorted(written["validation"])


def test_domainnet_uses_the_official_train_and_test_lists(tmp_path):
    written = write_domainnet(tmp_path, domains=("clipart", "painting"))

    data = load(dataset_cfg("domainnet", tmp_path))

    assert (data.source, data.target, data.num_classes) == ("clipart", "painting", 345)
    assert data.source_train.classes == DOMAINNET_CLASSES
    assert files_and_labels(data.source_train) == written["train"]["clipart"]
    assert files_and_labels(data.source_val) == written["test"]["clipart"]
    assert files_and_labels(data.target_train) == written["train"]["painting"]
    assert files_and_labels(data.target_test) == written["test"]["painting"]


def test_domainnet_split_may_lack_a_class(tmp_path):
    # As the release's painting_train.txt lists no t-shirt: legal, the class folder exists.
    write_domainnet(tmp_path)
    lines = (tmp_path / "domainnet" / "painting_train.txt").read_text().splitlines()
    kept = [line for line in lines if "/t-shirt/" not in line]
    (tmp_path / "domainnet" / "painting_train.txt").write_text("\n".join(kept) + "\n")

    data = load(dataset_cfg("domainnet", tmp_path))

    assert len(data.target_train) == len(lines) - 1
    assert DOMAINNET_CLASSES.index("t-shirt") not in data.target_train.labels.tolist()


@pytest.mark.parametrize(
    "dataset, source, target, names",
    [
        ("office31", "D", "A", ("dslr", "amazon")),
        ("office_home", "Pr", "Rw", ("Product", "Real_World")),
        ("visda2017", "T", "V", ("train", "validation")),
        ("domainnet", "c", "p", ("clipart", "painting")),
    ],
)
def test_aliases_name_the_same_domains(tmp_path, dataset, source, target, names):
    cfg = dataset_cfg(dataset, tmp_path, f"dataset.source={source}", f"dataset.target={target}")
    pair = build_dataset(cfg)
    assert (pair.source.name, pair.target.name) == names


# --- Domain names are scoped by dataset --------------------------------------------------------


def test_a_benchmark_only_knows_its_own_domains():
    with pytest.raises(
        ConfigError,
        match=r"^dataset.source: unknown domain 'mnist' in dataset=office31; "
        r"known domains: amazon \(A\), dslr \(D\), webcam \(W\)",
    ):
        build_dataset(dataset_cfg("office31", None, "dataset.source=mnist"))


def test_a_domain_of_another_benchmark_is_named_in_the_error():
    with pytest.raises(ConfigError, match=r"^dataset.target: unknown domain 'real'.*dataset=domainnet"):
        build_dataset(compose_config("dataset.target=real"))  # moons names the shared domains


def test_register_domain_refuses_a_name_twice_in_one_dataset_only(monkeypatch):
    monkeypatch.setattr(base, "DOMAINS", {scope: dict(table) for scope, table in base.DOMAINS.items()})
    spec = DomainSpec("sketch", 7, aliases=("S",), dataset="pacs")
    register_domain(spec)  # DomainNet's sketch and SVHN's S live in other scopes
    assert base.resolve_domain("S", "dataset.source", "pacs") is spec
    with pytest.raises(ValueError, match="'s' is registered twice in dataset domainnet"):
        register_domain(DomainSpec("spectral", 345, aliases=("s",), dataset="domainnet"))
    assert "spectral" not in base.DOMAINS["domainnet"]  # nothing half-registered


# --- Partial copies and missing data -------------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "empty"])
def test_a_partial_copy_names_the_class_folder(tmp_path, damage):
    write_office31(tmp_path, domains=("amazon", "webcam"))
    folder = tmp_path / "office31" / "webcam" / "images" / "ring_binder"
    for image in folder.iterdir():
        image.unlink()
    if damage == "missing":
        folder.rmdir()

    with pytest.raises(DataError, match=f"{damage} class folders.*: ring_binder") as error:
        load(dataset_cfg("office31", tmp_path))
    assert str(folder.parent) in str(error.value)


def test_an_unexpected_class_folder_is_refused(tmp_path):
    write_office_home(tmp_path, domains=("Art", "Clipart"))
    write_class_folders(tmp_path / "office_home" / "Clipart", ["Toothbrush"], 1)  # the release writes ToothBrush

    with pytest.raises(DataError, match="unexpected class folders: Toothbrush"):
        load(dataset_cfg("office_home", tmp_path))


def test_domainnet_list_naming_a_missing_file_is_refused(tmp_path):
    written = write_domainnet(tmp_path)
    gone = written["test"]["painting"][5][0]
    gone.unlink()

    with pytest.raises(DataError, match="1 images listed in .*painting_test.txt are missing") as error:
        load(dataset_cfg("domainnet", tmp_path))
    assert str(gone) in str(error.value)


def test_domainnet_label_that_disagrees_with_the_class_order_is_named_with_its_line(tmp_path):
    write_domainnet(tmp_path)
    list_file = tmp_path / "domainnet" / "clipart_test.txt"
    lines = list_file.read_text().splitlines()
    lines[2] = lines[2].rsplit(maxsplit=1)[0] + " 7"  # line 3 is the third class, label 2
    list_file.write_text("\n".join(lines) + "\n")

    with pytest.raises(DataError, match=f"{list_file}, line 3: label 7 for class 'alarm_clock', whose label is 2"):
        load(dataset_cfg("domainnet", tmp_path))


# --- List files name files inside their dataset's folder only ------------------------------------


LIST_FILES = {  # dataset → (writer, its list file and the folder that file's paths are relative to, under the root)
    "domainnet": (write_domainnet, "domainnet/clipart_train.txt", "domainnet"),
    "visda2017": (write_visda2017, "visda2017/train/image_list.txt", "visda2017/train"),
}


def insert_line(list_file: Path, line: str, index: int = 2) -> None:
    lines = list_file.read_text().splitlines()
    lines.insert(index, line)
    list_file.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
@pytest.mark.parametrize("dataset", LIST_FILES)
def test_list_line_naming_a_file_outside_the_dataset_is_refused_unread(tmp_path, dataset, how):
    writer, list_name, folder_name = LIST_FILES[dataset]
    root = tmp_path / "data"
    writer(root)
    list_file, folder = root / list_name, root / folder_name
    # A real image of class 0, outside the root: today's checks (class, label, file present) all pass.
    first_class = (DOMAINNET_CLASSES if dataset == "domainnet" else VISDA2017_CLASSES)[0]
    secret = write_class_folders(tmp_path / "outside", [first_class], 1)[0][0]
    prefix = f"clipart/{first_class}" if dataset == "domainnet" else first_class  # a class folder, as listed
    entry = f"{prefix}/{os.path.relpath(secret, folder / prefix)}" if how == "dotdot" else str(secret)
    insert_line(list_file, f"{entry} 0")

    with paths_touched() as touched, pytest.raises(DataError) as error:
        load(dataset_cfg(dataset, root))

    assert str(error.value).startswith(f"{list_file}, line 3: {entry!r} is not a path inside {folder}")
    assert f"get the release's {list_file.name} again, or remove that line" in str(error.value)
    assert str(list_file) in touched  # the recorder works …
    assert not [p for p in touched if Path(p).resolve().is_relative_to(secret.parent.parent)]  # … nothing outside


def test_symlinked_data_root_and_dataset_folder_still_load(tmp_path):
    written = write_domainnet(tmp_path / "disk")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "domainnet").symlink_to(tmp_path / "disk" / "domainnet")
    (tmp_path / "root").symlink_to(tmp_path / "data")

    data = load(dataset_cfg("domainnet", tmp_path / "root"))

    assert len(data.source_train) == len(written["train"]["clipart"])


def test_symlink_inside_the_dataset_leading_out_is_refused(tmp_path):
    written = write_domainnet(tmp_path / "data")
    secret = write_class_folders(tmp_path / "outside", ["aircraft_carrier"], 1)[0][0]
    image = written["train"]["clipart"][0][0]
    image.unlink()
    image.symlink_to(secret)
    list_file = tmp_path / "data" / "domainnet" / "clipart_train.txt"

    with pytest.raises(DataError) as error:
        load(dataset_cfg("domainnet", tmp_path / "data"))

    entry = image.relative_to(tmp_path / "data" / "domainnet").as_posix()
    assert str(error.value).startswith(
        f"{list_file}, line 1: {entry!r} leads to {secret}, outside "
        f"{tmp_path / 'data' / 'domainnet'}, through a symlink"
    )


def test_visda_image_list_must_list_every_image_of_its_class_folders(tmp_path):
    written = write_visda2017(tmp_path)
    list_file = tmp_path / "visda2017" / "validation" / "image_list.txt"
    lines = list_file.read_text().splitlines()
    list_file.write_text("\n".join(lines[1:]) + "\n")  # a truncated list: its first image would be left out
    unlisted = written["validation"][0][0].relative_to(list_file.parent).as_posix()

    with pytest.raises(DataError) as error:
        load(dataset_cfg("visda2017", tmp_path))

    assert str(error.value).startswith(
        f"{list_file} has {len(lines) - 1} image lines but the class folders of {list_file.parent} hold "
        f"{len(lines)} images; not listed: {unlisted}; each image needs exactly one line."
    )


def test_office31_without_download_says_where_to_get_it(tmp_path, network):
    with pytest.raises(DataError) as error:
        load(dataset_cfg("office31", tmp_path, "dataset.download=false"))
    message = str(error.value)
    assert str(tmp_path / "office31" / "amazon" / "images") in message
    assert "dataset.download=true" in message and catalog.OFFICE31.home in message
    assert network == []


def test_office31_offline_download_is_one_clear_data_error(tmp_path, network):
    with pytest.raises(DataError) as error:
        load(dataset_cfg("office31", tmp_path))
    message = str(error.value)
    assert network == list(catalog.OFFICE31.downloads[0].mirrors)
    assert "downloading it failed" in message and "network disabled in tests" in message
    assert str(tmp_path / "office31" / "amazon" / "images") in message and catalog.OFFICE31.home in message
    assert "\n" not in message
    assert not (tmp_path / catalog.OFFICE31.downloads[0].path).exists()


def test_office31_downloads_and_unpacks_a_checked_archive(tmp_path, monkeypatch):
    archive = tmp_path / "served" / "office31.tar.gz"
    archive.parent.mkdir()
    md5 = write_office31_archive(archive)
    mirrors = [(tmp_path / "absent").as_uri(), archive.as_uri()]
    monkeypatch.setattr(catalog, "OFFICE31", served_from(catalog.OFFICE31, mirrors, md5))
    root = tmp_path / "data"

    data = load(dataset_cfg("office31", root))

    assert len(data.source_train) == len(OFFICE31_CLASSES)  # one image per class in the archive
    assert (root / "office31" / "webcam" / "images" / "trash_can").is_dir()


@pytest.mark.parametrize(
    "dataset, expected, where",
    [
        ("office_home", "office_home/Art/<class>/<image>", "https://www.hemanthdv.org/officeHomeDataset.html"),
        ("visda2017", "visda2017/train/image_list.txt", "http://csr.bu.edu/ftp/visda17/clf/train.tar"),
        ("domainnet", "domainnet/clipart,", "http://csr.bu.edu/ftp/visda/2019/multi-source/groundtruth/clipart.zip"),
    ],
)
def test_missing_benchmark_names_its_layout_and_where_to_get_it(tmp_path, network, dataset, expected, where):
    with pytest.raises(DataError) as error:
        load(dataset_cfg(dataset, tmp_path))
    assert f"{tmp_path}/{expected}" in str(error.value) and where in str(error.value)
    assert network == []


# --- dataset=folder -----------------------------------------------------------------------------


def test_folder_matches_classes_by_name(tmp_path):
    source = write_class_folders(tmp_path / "photos", ["cat", "dog", "owl"], 2, seed=0)
    target = write_class_folders(tmp_path / "sketches", ["owl", "dog", "cat"], 3, seed=1)

    data = load(
        dataset_cfg(
            "folder", None, f"dataset.source_dir={tmp_path / 'photos'}", f"dataset.target_dir={tmp_path / 'sketches'}"
        )
    )

    assert data.num_classes == 3 and data.source_train.classes == data.target_train.classes == ("cat", "dog", "owl")
    assert sorted(files_and_labels(data.source_train)) == sorted(source)
    assert sorted(files_and_labels(data.target_test)) == sorted(target)


def test_folder_with_different_classes_lists_them(tmp_path):
    write_class_folders(tmp_path / "a", ["cat", "dog", "emu"], 1)
    write_class_folders(tmp_path / "b", ["cat", "dog", "owl", "yak"], 1)

    with pytest.raises(DataError, match=r"only in the source \(.*/a\): emu; only in the target \(.*/b\): owl, yak"):
        load(
            dataset_cfg("folder", None, f"dataset.source_dir={tmp_path / 'a'}", f"dataset.target_dir={tmp_path / 'b'}")
        )


@pytest.mark.parametrize("source, target", [("x", "./x/"), ("x", "link")])
def test_folder_refuses_the_same_directory_as_source_and_target(tmp_path, monkeypatch, source, target):
    write_class_folders(tmp_path / "x", ["cat", "dog"], 1)
    (tmp_path / "link").symlink_to(tmp_path / "x")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ConfigError) as error:
        load(dataset_cfg("folder", None, f"dataset.source_dir={source}", f"dataset.target_dir={target}"))

    assert str(error.value) == (
        f"dataset.source_dir and dataset.target_dir are the same directory ({tmp_path / 'x'}): "
        "a source domain would be adapted to itself; point dataset.target_dir at the target "
        "domain's class folders"
    )


def test_folder_requires_both_directories():
    with pytest.raises(ConfigError, match="^dataset.source_dir: required for dataset=folder"):
        build_dataset(dataset_cfg("folder", None))


# --- Config checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, key",
    [
        ("dataset.on_corrupt=ignore", "dataset.on_corrupt"),
        ("dataset.num_workers=-1", "dataset.num_workers"),
        ("dataset.std=[0.2,0.2]", "dataset.std"),
        ("dataset.transforms.eval=[{_target_:torchvision.transforms.Resize,size:16}]", "dataset.transforms.eval"),
        ("dataset.transforms.train=[{_target_:torchvision.transforms.ToTensor}]", "dataset.transforms.train"),
    ],
)
def test_bad_image_settings_are_config_errors_naming_the_key(tmp_path, override, key):
    # Refused when the config is checked (by its schema, or as the dataset is built): no file is needed.
    with pytest.raises(ConfigError, match=f"^{key}"):
        validate(dataset_cfg("office31", tmp_path, override))


# --- Unreadable images -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_unreadable_image_is_skipped_with_a_warning_and_counted(tmp_path, caplog, how):
    written = write_office31(tmp_path, domains=("amazon", "webcam"), size=64)
    bad, bad_label = written["webcam"][0]
    corrupt(bad, how)
    data = load(dataset_cfg("office31", tmp_path))

    with caplog.at_level(logging.WARNING, logger="dann.data.decode"):
        labels = torch.cat([y for _, y in eval_batches(data.target_test, 16, CPU)])
        list(eval_batches(data.target_test, 16, CPU))  # a second pass: counted and warned once

    assert len(labels) == len(written["webcam"]) - 1  # evaluation leaves it out
    assert [r.getMessage() for r in caplog.records if str(bad) in r.getMessage()] == [
        f"office31/webcam (eval): skipping unreadable image {bad} ({data.target_test.skipped[str(bad)]})"
    ]
    assert data.skipped_images == {"source_train": 0, "source_val": 0, "target_train": 0, "target_test": 1}

    stream = make_stream(data.target_train, batch_size=len(written["webcam"]) - 1, seed=0, device=CPU)
    for _ in range(3):  # a training batch stays full: the next image stands in
        x, y = next(stream)
        assert len(y) == len(written["webcam"]) - 1
    assert data.skipped_images["target_train"] == 1


def test_unreadable_image_with_on_corrupt_error_names_the_file(tmp_path):
    written = write_office31(tmp_path, domains=("amazon", "webcam"))
    bad = written["amazon"][3][0]
    corrupt(bad)
    data = load(dataset_cfg("office31", tmp_path, "dataset.on_corrupt=error"))

    stream = make_stream(data.source_train, batch_size=31, seed=0, device=CPU)  # 62 images: 2 batches an epoch
    with pytest.raises(DataError, match=f"unreadable image {bad} .*dataset.on_corrupt=skip"):
        take(stream, 2)
    with pytest.raises(DataError, match=f"unreadable image {bad}"):
        list(eval_batches(data.source_val, 16, CPU))


# --- The image stream ----------------------------------------------------------------------------


@pytest.fixture
def office31_data(tmp_path) -> DomainData:
    write_office31(tmp_path, images_per_class=1, domains=("amazon", "webcam"))  # 31 images per domain
    return load(dataset_cfg("office31", tmp_path))


def take(stream, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [next(stream) for _ in range(n)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_image_stream_serves_normalised_full_size_batches(tmp_path):
    write_office31(tmp_path, images_per_class=1, domains=("amazon", "webcam"))
    data = load(compose_config("dataset=office31", f"dataset.root={tmp_path}", "dataset.num_workers=0"))  # 224 crops
    x, y = next(make_stream(data.source_train, 4, seed=0, device=CPU, mean=data.mean, std=data.std))
    unnormalised, _ = next(make_stream(data.source_train, 4, seed=0, device=CPU))

    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and x.device == CPU
    assert y.shape == (4,) and y.dtype == torch.int64
    assert 0 <= unnormalised.min() < unnormalised.max() <= 1  # pixels scaled to [0, 1] …
    mean, std = torch.tensor(data.mean).view(3, 1, 1), torch.tensor(data.std).view(3, 1, 1)
    assert torch.allclose(x, (unnormalised - mean) / std, atol=1e-6)  # … then ImageNet-normalised


def test_image_stream_is_deterministic_for_a_seed(office31_data):
    split = office31_data.source_train
    first = take(make_stream(split, 4, seed=3, device=CPU), 9)  # past the end of the 7-batch epoch
    again = take(make_stream(split, 4, seed=3, device=CPU), 9)
    other = take(make_stream(split, 4, seed=4, device=CPU), 1)

    assert_same_batches(first, again)
    assert not torch.equal(first[0][1], other[0][1])
    epoch = torch.cat([y for _, y in first[:7]])
    assert len(set(epoch.tolist())) == 28  # an epoch: 7 full batches of distinct images, the last 3 dropped


@pytest.mark.parametrize("served, epoch, position", [(2, 0, 2), (7, 0, 7), (8, 1, 1)])  # mid-epoch, at its end, next
def test_image_stream_resumes_at_exactly_the_next_batch(office31_data, served, epoch, position):
    split = office31_data.source_train
    uninterrupted = make_stream(split, 4, seed=1, device=CPU)
    take(uninterrupted, served)
    state = uninterrupted.state_dict()

    resumed = make_stream(split, 4, seed=1, device=CPU)
    resumed.load_state_dict(state)

    assert state == {"epoch": epoch, "position": position}
    assert_same_batches(take(resumed, 3), take(uninterrupted, 3))


def test_image_stream_refuses_a_batch_larger_than_the_split(office31_data):
    with pytest.raises(ConfigError, match="^trainer.batch_size: 32 is larger than office31/amazon"):
        make_stream(office31_data.source_train, 32, seed=0, device=CPU)


def test_subset_of_an_image_split_keeps_its_files_and_labels(office31_data):
    split = office31_data.target_train
    picked = subset(split, torch.tensor([30, 2, 5]))
    assert files_and_labels(picked) == [files_and_labels(split)[i] for i in (30, 2, 5)]
    assert picked.transform is split.transform and picked.skipped is not split.skipped


def test_workers_serve_the_same_batches_as_the_main_process(office31_data):
    # Augmentation is seeded per image, not per worker: the worker count changes nothing.
    split = office31_data.target_train
    in_process = take(make_stream(split, 4, seed=5, device=CPU, num_workers=0), 8)
    stream = make_stream(split, 4, seed=5, device=CPU, num_workers=2)
    with_workers = take(stream, 8)
    assert_same_batches(in_process, with_workers)

    stream.load_state_dict({"epoch": 0, "position": 3})  # resuming restarts the persistent workers' pass
    assert_same_batches(take(stream, 2), in_process[3:5])


# --- Evaluation ----------------------------------------------------------------------------------------


class ConstantClassifier(nn.Module):
    """Predicts class 0 for every input."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.logits = nn.Parameter(torch.eye(num_classes)[0])

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.flatten(1), self.predict(x)


def test_evaluate_counts_an_image_split_like_a_tensor_split(tmp_path):
    written = write_office31(tmp_path, images_per_class=1, domains=("amazon", "webcam"))
    first = written["webcam"][0][0]  # of class 0, back_pack
    shutil.copy(first, first.with_name("copy.jpg"))  # 32 images, 2 of them of class 0
    data = load(dataset_cfg("office31", tmp_path))
    method = ConstantClassifier(31)

    result = accuracy(predict_split(method, data.target_test, batch_size=5, mean=data.mean, std=data.std), 31)

    labels = data.target_test.labels
    as_tensors = Split(torch.zeros(len(labels), 3, 16, 16, dtype=torch.uint8), labels)
    assert result == accuracy(predict_split(method, to_device(as_tensors, CPU), batch_size=5), 31)
    assert result == {"acc": pytest.approx(2 / 32), "acc_per_class_mean": pytest.approx(1 / 31)}
    assert to_device(data.target_test, CPU) is data.target_test  # image splits are decoded per batch
