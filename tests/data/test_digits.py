"""The digit domains, built from the real Hydra config (`dataset._target_`) and loaded with `.load()`.

Data comes from `digit_files`, which writes tiny datasets in the real on-disk formats.
Nothing here reaches the network: the autouse `network` fixture lets urlopen serve
file:// URLs only and records every other URL something tried to fetch.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from dann.builders import build_dataset
from dann.config.validate import validate
from dann.data import DomainData, catalog
from dann.data.download import download_file, extract_tar
from dann.errors import ConfigError, DataError
from tests.helpers import compose_config, run_cli, served_from
from tests.helpers.digit_files import Written, write_mnist, write_mnistm, write_mnistm_archive, write_svhn, write_usps
from tests.helpers.image_files import paths_touched

N_TRAIN, N_TEST = 30, 20

WRITERS = {"mnist": write_mnist, "mnistm": write_mnistm, "usps": write_usps, "svhn": write_svhn}
PAIRS = {  # dataset config → (source, target, input shape the config asks for)
    "mnist_mnistm": ("mnist", "mnistm", (3, 28, 28)),
    "svhn_mnist": ("svhn", "mnist", (3, 32, 32)),
    "mnist_usps": ("mnist", "usps", (1, 28, 28)),
    "usps_mnist": ("usps", "mnist", (1, 28, 28)),
}


def dataset_cfg(name: str, root: Path | None, *overrides: str) -> DictConfig:
    """The real config of dataset `name`, as `dann.run` sees it."""
    root_override = [f"dataset.root={root}"] if root is not None else []
    return compose_config(f"dataset={name}", *root_override, *overrides)


def load(cfg: DictConfig) -> DomainData:
    """The four splits, built and loaded as `dann.run` does."""
    return build_dataset(cfg).load()


def write(root: Path, *domains: str) -> dict[str, Written]:
    # A different seed per domain, so that no two domains share labels by construction.
    return {d: WRITERS[d](root, N_TRAIN, N_TEST, seed=i) for i, d in enumerate(domains)}


# --- Loading ----------------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS)
def test_pair_loads_with_the_configured_shape_and_the_written_labels(tmp_path, network, pair):
    source, target, shape = PAIRS[pair]
    written = write(tmp_path, source, target)

    data = load(dataset_cfg(pair, tmp_path))

    assert (data.source, data.target, data.num_classes, data.input_shape) == (source, target, 10, shape)
    assert data.mean == data.std == (0.5,) * shape[0]
    splits = {
        (source, "train"): data.source_train,
        (source, "test"): data.source_val,
        (target, "train"): data.target_train,
        (target, "test"): data.target_test,
    }
    for (domain, split), loaded in splits.items():
        assert loaded.inputs.dtype == torch.uint8 and loaded.labels.dtype == torch.int64
        assert tuple(loaded.inputs.shape) == (len(loaded), *shape)
        expected = getattr(written[domain], f"{split}_labels")
        assert torch.equal(loaded.labels, torch.from_numpy(expected)), (domain, split)
    assert network == []  # the files were there: download: true did not fetch anything


@pytest.mark.parametrize(
    "pair, overrides, side, domain",
    [
        ("mnist_mnistm", [], "source", "mnist"),  # grey, repeated to RGB
        ("mnist_mnistm", [], "target", "mnistm"),
        ("svhn_mnist", [], "source", "svhn"),
        ("usps_mnist", ["dataset.image_size=16"], "source", "usps"),  # USPS at its native 16×16
    ],
)
def test_pixels_at_native_size_read_back_exactly(tmp_path, pair, overrides, side, domain):
    written = write(tmp_path, *PAIRS[pair][:2])[domain]
    data = load(dataset_cfg(pair, tmp_path, *overrides))

    train = data.source_train if side == "source" else data.target_train
    expected = torch.from_numpy(written.train_images)
    assert torch.equal(train.inputs, expected.expand(-1, train.inputs.shape[1], -1, -1))


def test_rgb_to_grey_uses_bt601_luma(tmp_path):
    written = write(tmp_path, "svhn", "mnist")["svhn"]
    data = load(dataset_cfg("svhn_mnist", tmp_path, "dataset.channels=1", "dataset.mean=[0.5]", "dataset.std=[0.5]"))

    r, g, b = written.train_images.astype(np.float64).transpose(1, 0, 2, 3)
    luma = np.rint(0.299 * r + 0.587 * g + 0.114 * b)[:, None]
    assert data.input_shape == (1, 32, 32)
    assert np.abs(data.source_train.inputs.numpy().astype(int) - luma).max() <= 1


@pytest.mark.parametrize(
    "pair, overrides, domain, size",
    [
        ("usps_mnist", [], "usps", 28),  # upsampled from 16
        ("svhn_mnist", ["dataset.image_size=28"], "svhn", 28),  # downsampled from 32
    ],
)
def test_resizing_is_bilinear_like_pil(tmp_path, pair, overrides, domain, size):
    written = write(tmp_path, *PAIRS[pair][:2])[domain]
    data = load(dataset_cfg(pair, tmp_path, *overrides))

    # PIL's bilinear resize, an independent implementation, per image and channel.
    expected = np.stack(
        [
            np.stack([np.asarray(Image.fromarray(channel).resize((size, size), Image.BILINEAR)) for channel in image])
            for image in written.train_images
        ]
    )
    assert np.abs(data.source_train.inputs.numpy().astype(int) - expected).max() <= 1


@pytest.mark.parametrize(
    "pair, source, target",
    [
        ("mnist_mnistm", "M", "MM"),
        ("svhn_mnist", "S", "M"),
        ("usps_mnist", "U", "M"),
    ],
)
def test_aliases_name_the_same_domains(tmp_path, pair, source, target):
    write(tmp_path, *PAIRS[pair][:2])
    cfg = dataset_cfg(pair, tmp_path, f"dataset.source={source}", f"dataset.target={target}")

    data = load(cfg)

    assert (data.source, data.target) == PAIRS[pair][:2]


@pytest.mark.parametrize(
    "override, key", [("dataset.mean=[0.5]", "dataset.mean"), ("dataset.std=[0.5]", "dataset.std")]
)
def test_normalisation_needs_one_statistic_per_channel(tmp_path, override, key):
    # mnist_mnistm is 3-channel: a single mean would otherwise only fail later, inside a batch.
    with pytest.raises(ConfigError, match=f"^{key}: expected 3 numbers, one per channel"):
        build_dataset(dataset_cfg("mnist_mnistm", tmp_path, override))  # before any file is read


def test_root_defaults_to_the_dann_data_environment_variable(tmp_path, monkeypatch):
    write(tmp_path, "mnist", "usps")
    monkeypatch.setenv("DANN_DATA", str(tmp_path))

    data = load(dataset_cfg("mnist_usps", None))

    assert len(data.source_train) == N_TRAIN


@pytest.mark.parametrize(
    "override, key",
    [
        ("dataset.channels=2", "dataset.channels"),
        ("dataset.image_size=0", "dataset.image_size"),
        ("dataset.download=maybe", "dataset.download"),
        ("dataset.std=[0.5,0,0.5]", "dataset.std"),
    ],
)
def test_bad_image_settings_are_config_errors_naming_the_key(tmp_path, override, key):
    # Refused by the config schema, before the dataset is built: no file is needed.
    with pytest.raises(ConfigError, match=f"^{key}: expected "):
        validate(dataset_cfg("mnist_usps", tmp_path, override))


# --- Missing data -----------------------------------------------------------------------


MISSING = [  # (pair, domains written, the first file the loader must report missing)
    ("mnist_mnistm", [], "MNIST/raw/train-images-idx3-ubyte"),
    ("mnist_mnistm", ["mnist"], "mnist_m/mnist_m_train_labels.txt"),
    ("usps_mnist", [], "usps/usps.bz2"),
    ("svhn_mnist", [], "svhn/train_32x32.mat"),
]


@pytest.mark.parametrize("pair, present, missing", MISSING)
def test_missing_files_without_download_name_the_file(tmp_path, network, pair, present, missing):
    write(tmp_path, *present)
    with pytest.raises(DataError) as error:
        load(dataset_cfg(pair, tmp_path, "dataset.download=false"))

    message = str(error.value)
    assert str(tmp_path / missing) in message
    assert "dataset.download=true" in message and "http" in message
    assert network == []


@pytest.mark.parametrize("pair, present, missing", MISSING)
def test_failed_download_is_a_clear_data_error(tmp_path, network, pair, present, missing):
    write(tmp_path, *present)
    with pytest.raises(DataError) as error:
        load(dataset_cfg(pair, tmp_path, "dataset.download=true"))

    message = str(error.value)
    assert network, "a download should have been attempted"
    assert "downloading it failed" in message and "network disabled in tests" in message
    assert str(tmp_path / missing) in message and "dataset.download=false" in message
    assert "\n" not in message
    assert not (tmp_path / missing).exists()


def test_download_with_a_bad_checksum_leaves_no_file(tmp_path, monkeypatch):
    # A file under its final name is taken for data by the next run: a download that fails its
    # checksum must leave none.
    served = tmp_path / "served"
    write_usps(served, N_TRAIN, N_TEST)
    filename = "usps.bz2"  # served, but not the release's file: its MD5 differs
    monkeypatch.setattr(catalog, "USPS", served_from(catalog.USPS, [(served / "usps" / filename).as_uri()]))
    root = tmp_path / "data"

    with pytest.raises(DataError, match="USPS not found under .* downloading it failed"):
        load(dataset_cfg("usps_mnist", root))

    assert not (root / "usps" / filename).exists()


# --- MNIST-M download -------------------------------------------------------------------


def test_mnistm_downloads_from_the_first_working_mirror(tmp_path, monkeypatch):
    archive = tmp_path / "served" / "mnist_m.tar.gz"
    archive.parent.mkdir()
    md5 = write_mnistm_archive(archive, N_TRAIN, N_TEST, seed=3)
    reference = write_mnistm(tmp_path / "reference", N_TRAIN, N_TEST, seed=3)
    root = tmp_path / "data"
    write_mnist(root, N_TRAIN, N_TEST)
    mirrors = [(tmp_path / "absent.tar.gz").as_uri(), archive.as_uri()]
    monkeypatch.setattr(catalog, "MNISTM", served_from(catalog.MNISTM, mirrors, md5))

    data = load(dataset_cfg("mnist_mnistm", root))

    assert (root / "mnist_m" / "mnist_m_train" / "00000000.png").is_file()
    assert torch.equal(data.target_train.labels, torch.from_numpy(reference.train_labels))
    assert torch.equal(data.target_test.inputs, torch.from_numpy(reference.test_images))


def test_mnistm_download_with_a_wrong_checksum_is_refused(tmp_path, monkeypatch):
    archive = tmp_path / "served" / "mnist_m.tar.gz"
    archive.parent.mkdir()
    md5 = write_mnistm_archive(archive, N_TRAIN, N_TEST)
    root = tmp_path / "data"
    write_mnist(root, N_TRAIN, N_TEST)
    monkeypatch.setattr(catalog, "MNISTM", served_from(catalog.MNISTM, [archive.as_uri()], "0" * 32))

    with pytest.raises(DataError, match="checksum") as error:
        load(dataset_cfg("mnist_mnistm", root))

    assert md5 in str(error.value)  # the MD5 actually received
    assert sorted(p.name for p in root.iterdir()) == ["MNIST"]  # no archive, no temporary file, no mnist_m/


def test_download_file_lists_every_mirror_and_its_failure(tmp_path):
    urls = [(tmp_path / "one").as_uri(), (tmp_path / "two").as_uri()]
    with pytest.raises(DataError) as error:
        download_file(urls, tmp_path / "file.bin", md5="0" * 32)
    assert all(url in str(error.value) for url in urls)
    assert str(error.value).count("No such file") == 2


def test_extract_tar_refuses_members_outside_the_destination(tmp_path):
    archive = tmp_path / "evil.tar"
    (tmp_path / "payload").write_text("x")
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "payload", arcname="../escaped")

    with pytest.raises(DataError, match="evil.tar"):
        extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "escaped").exists()


# --- Corrupt MNIST-M ----------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["corrupt", "deleted"])
def test_unreadable_mnistm_image_is_named(tmp_path, damage):
    write(tmp_path, "mnist", "mnistm")
    image = tmp_path / "mnist_m" / "mnist_m_train" / "00000007.png"
    if damage == "corrupt":
        image.write_bytes(b"\x89PNG not really")
    else:
        image.unlink()

    with pytest.raises(DataError, match="00000007.png") as error:
        load(dataset_cfg("mnist_mnistm", tmp_path))
    assert str(image) in str(error.value)
    assert f"delete {tmp_path / 'mnist_m'} and download it again" in str(error.value)  # MNIST-M's folder, no higher


@pytest.mark.parametrize("bad_line", ["00000002.png seven", "00000002.png 10", "00000002.png"])
def test_bad_mnistm_labels_line_is_named_with_its_number(tmp_path, bad_line):
    write(tmp_path, "mnist", "mnistm")
    labels_file = tmp_path / "mnist_m" / "mnist_m_test_labels.txt"
    lines = labels_file.read_text().splitlines()
    lines[2] = bad_line
    labels_file.write_text("\n".join(lines) + "\n")

    with pytest.raises(DataError) as error:
        load(dataset_cfg("mnist_mnistm", tmp_path))
    assert f"{labels_file}, line 3" in str(error.value)


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_mnistm_labels_line_naming_a_file_outside_the_dataset_is_refused_unread(tmp_path, how):
    root = tmp_path / "data"
    write(root, "mnist", "mnistm")
    secret = tmp_path / "outside" / "secret.png"  # a real 28×28 RGB image: reading it would succeed
    secret.parent.mkdir()
    Image.new("RGB", (28, 28)).save(secret)
    labels_file, image_dir = root / "mnist_m" / "mnist_m_train_labels.txt", root / "mnist_m" / "mnist_m_train"
    entry = os.path.relpath(secret, image_dir) if how == "dotdot" else str(secret)
    lines = labels_file.read_text().splitlines()
    lines.insert(2, f"{entry} 3")
    labels_file.write_text("\n".join(lines) + "\n")

    with paths_touched() as touched, pytest.raises(DataError) as error:
        load(dataset_cfg("mnist_mnistm", root))

    assert str(error.value).startswith(f"{labels_file}, line 3: {entry!r} is not a path inside {image_dir}")
    assert str(labels_file) in touched  # the recorder works …
    assert not [p for p in touched if Path(p).resolve().is_relative_to(secret.parent)]  # … nothing outside


@pytest.mark.parametrize("damage, lines", [("line removed", N_TRAIN - 1), ("line repeated", N_TRAIN + 1)])
def test_mnistm_labels_file_must_have_one_line_per_image(tmp_path, damage, lines):
    write(tmp_path, "mnist", "mnistm")
    labels_file = tmp_path / "mnist_m" / "mnist_m_train_labels.txt"
    kept = labels_file.read_text().splitlines()
    kept = kept[1:] if damage == "line removed" else kept + kept[:1]
    labels_file.write_text("\n".join(kept) + "\n")

    with pytest.raises(DataError) as error:
        load(dataset_cfg("mnist_mnistm", tmp_path))

    assert str(error.value) == (
        f"MNIST-M labels file {labels_file} has {lines} lines but {tmp_path / 'mnist_m' / 'mnist_m_train'} holds "
        f"{N_TRAIN} PNG images; each image needs exactly one line: the copy is partial or mixed. "
        f"Delete {tmp_path / 'mnist_m'} and download it again"
    )


def test_truncated_mnist_file_is_a_data_error(tmp_path):
    write(tmp_path, "mnist", "usps")
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])

    with pytest.raises(DataError, match="MNIST files in .* are unreadable"):
        load(dataset_cfg("mnist_usps", tmp_path))


# --- The command line ---------------------------------------------------------------------


@pytest.mark.slow
def test_cli_reports_missing_data_in_one_line_without_traceback(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    result = run_cli(
        "dataset=mnist_mnistm",
        f"dataset.root={root}",
        "dataset.download=false",
        "logger=none",
        "trainer.steps=2",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert str(root / "MNIST" / "raw" / "train-images-idx3-ubyte") in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
