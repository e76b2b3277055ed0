"""`python -m dann.data`: list, verify, fetch and where, on files written in the real on-disk formats.

The commands run as real subprocesses on a data root under tmp_path (DANN_DATA). They never reach the
network: the ones that would try it get a proxy that refuses every connection (urllib honours
http(s)_proxy), so that an offline failure is exercised on any machine. The paths that need a
checksum the test can match (verify ok, fetch from a second mirror) call the library with a
declaration of the test's own, built like the real ones in dann/data/catalog.py.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from dann.data import catalog
from dann.data.__main__ import verify
from dann.data.catalog import BENCHMARKS, Benchmark, Download, fetch
from dann.data.download import file_digests
from tests.helpers import cli_env
from tests.helpers.digit_files import write_mnistm, write_mnistm_archive, write_usps
from tests.helpers.image_files import write_office31

TIMEOUT = 300  # a subprocess that imports torch; never a measure of speed
REFUSED = "http://127.0.0.1:9"  # the discard port: nothing listens, every connection is refused at once


def data_cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = cli_env({"DANN_DATA": str(root), "OMP_NUM_THREADS": "1", "http_proxy": REFUSED, "https_proxy": REFUSED})
    for name in ("no_proxy", "NO_PROXY"):  # a proxy exemption would let a real download through
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "dann.data", *args], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def test_list_shows_what_is_present_and_where_it_goes(tmp_path):
    write_usps(tmp_path, 20, 10)
    write_office31(tmp_path, images_per_class=1)

    result = data_cli("list", root=tmp_path)

    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert set(lines) == set(BENCHMARKS)
    assert "present" in lines["usps"].split() and f"{tmp_path / 'usps'}" in lines["usps"]
    assert "on disk" in lines["usps"] and "present" in lines["office31"].split()
    assert "missing" in lines["mnist"].split() and "11.6 MB to download" in lines["mnist"]
    assert "by hand only" in lines["domainnet"]


def test_verify_names_a_mismatch_and_fails(tmp_path):
    write_usps(tmp_path, 20, 10)  # not the release's files: their MD5s differ

    result = data_cli("verify", "usps", "svhn", root=tmp_path)

    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("usps: "))
    md5, sha256 = file_digests(tmp_path / "usps" / "usps.bz2")
    assert line.startswith(f"usps: {tmp_path / 'usps' / 'usps.bz2'}: mismatch (MD5 {md5}, expected ")
    assert line.endswith(f"; SHA-256 {sha256}")
    assert f"svhn: {tmp_path / 'svhn' / 'train_32x32.mat'}: missing" in result.stdout
    assert result.stderr == ""


def test_verify_of_nothing_named_passes_what_is_absent(tmp_path):
    result = data_cli("verify", root=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "domainnet" in result.stdout and "mismatch" not in result.stdout


def test_verify_passes_a_good_file_and_catches_a_flipped_byte(tmp_path):
    write_usps(tmp_path, 20, 10)
    train = tmp_path / "usps" / "usps.bz2"
    mine = Benchmark(
        "usps", "USPS", "usps", (Download("usps/usps.bz2", md5=file_digests(train)[0]), Download("usps/x.bz2")), (), ""
    )
    sha256 = hashlib.sha256(train.read_bytes()).hexdigest()  # computed apart from the code under test
    assert verify(mine, tmp_path) == [
        (train, f"ok (MD5 matches); SHA-256 {sha256}"),
        (tmp_path / "usps" / "x.bz2", "missing"),
    ]

    data = bytearray(train.read_bytes())
    data[len(data) // 2] ^= 0xFF
    train.write_bytes(bytes(data))
    assert verify(mine, tmp_path)[0][1].startswith("mismatch")


def test_fetch_offline_is_one_line_per_mirror_and_points_to_where(tmp_path):
    result = data_cli("fetch", "mnist", "office_home", root=tmp_path)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    first = catalog.MNIST.downloads[0]
    failed = [line for line in lines if line.startswith("mnist: failed: ")]
    assert len(failed) == len(first.mirrors)  # each mirror tried, in one line each; then it stops
    assert all(url in line for url, line in zip(first.mirrors, failed))
    assert "mnist: every mirror failed; get it by hand: python -m dann.data where mnist" in lines
    assert any(line.startswith("office_home: not downloaded (no checksum") for line in lines)
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == []  # no partial file


def test_fetch_tries_the_mirrors_in_turn_and_unpacks(tmp_path):
    served = tmp_path / "served" / "mnist_m.tar.gz"
    served.parent.mkdir()
    md5 = write_mnistm_archive(served, 20, 10, seed=3)
    mirrors = ((tmp_path / "absent.tar.gz").as_uri(), served.as_uri())
    mine = Benchmark("mnistm", "MNIST-M", "mnist_m", (Download("mnist_m.tar.gz", mirrors, md5, unpack="tar"),), (), "")
    root = tmp_path / "data"
    failures = []

    fetch(mine, root, report=failures.append)

    assert len(failures) == 1 and "absent.tar.gz" in failures[0]
    reference = write_mnistm(tmp_path / "reference", 20, 10, seed=3)
    labels = (root / "mnist_m" / "mnist_m_train_labels.txt").read_text().splitlines()
    assert [int(line.split()[1]) for line in labels] == reference.train_labels.tolist()
    assert verify(mine, root)[0][1].startswith("ok (MD5 matches); SHA-256 ")


def test_where_gives_files_addresses_and_layout(tmp_path):
    result = data_cli("where", "office31", root=tmp_path)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "office31.tar.gz" in out and catalog.OFFICE31.downloads[0].mirrors[0] in out
    assert f"unpack it in {tmp_path}" in out
    assert f"layout under {tmp_path}:\n  office31/\n    amazon/images/<class>/*.jpg" in out


def test_an_unknown_benchmark_is_one_usage_line(tmp_path):
    result = data_cli("where", "mnsit", root=tmp_path)
    assert result.returncode == 2
    assert "no benchmark 'mnsit'; expected one of mnist, mnistm" in result.stderr and "Traceback" not in result.stderr


def test_the_declarations_are_torchvisions_for_the_files_it_reads():
    # MNIST, USPS and SVHN are read by torchvision's classes: the same files, addresses and sums.
    from torchvision.datasets import MNIST, SVHN, USPS

    assert [(Path(d.path).name, d.md5) for d in catalog.MNIST.downloads] == list(map(tuple, MNIST.resources))
    assert [d.mirrors for d in catalog.MNIST.downloads] == [
        tuple(m + name for m in MNIST.mirrors) for name, _ in MNIST.resources
    ]
    for benchmark, torchvision in ((catalog.USPS, USPS), (catalog.SVHN, SVHN)):
        expected = [torchvision.split_list[s] for s in ("train", "test")]
        assert [[d.mirrors[0], Path(d.path).name, d.md5] for d in benchmark.downloads] == expected
