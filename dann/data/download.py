"""Fetching one file from a list of mirrors, checked against its MD5, and unpacking tar archives.

Plain urllib, so that datasets torchvision does not know (MNIST-M) need no extra dependency.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path

from dann.errors import DataError, describe_error

# Seconds a connection or a read may stall. Short, so that an offline machine or a dead
# mirror fails within a minute and the next mirror (or the error message) comes quickly.
TIMEOUT_S = 30.0

_CHUNK = 1 << 20


class _ChecksumMismatch(DataError):
    """A download completed but is not the expected file (truncated, or a mirror's error page)."""


# What a failed fetch can raise: URLError, HTTPError and timeouts are OSErrors; a malformed
# URL is a ValueError; a connection dropped mid-response is an HTTPException; and a
# completed download with the wrong checksum is a _ChecksumMismatch.
_FETCH_ERRORS = (OSError, ValueError, HTTPException, _ChecksumMismatch)


def file_md5(path: Path) -> str:
    return file_digests(path)[0]


def file_digests(path: Path) -> tuple[str, str]:
    """(MD5, SHA-256) of a file, in one read: the releases publish MD5s; the SHA-256 is for a user's own records."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def download_file(urls: list[str], dest: Path, md5: str, report: Callable[[str], None] | None = None) -> Path:
    """Download `dest` from the first of `urls` that serves a file with this MD5; return `dest`.

    An existing `dest` with the right checksum is kept. Each attempt writes to a temporary
    file beside `dest` and renames it only once verified, so an interrupted or wrong download
    never looks like the real file. `report`, if given, is told each failed URL in one line as it
    fails. Raises `DataError` listing every URL tried and its failure.
    """
    dest = Path(dest)
    if dest.is_file() and file_md5(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _fetch(url, dest, md5)
            return dest
        except _FETCH_ERRORS as e:
            failures.append(f"{url} ({describe_error(e)})")
            if report:
                report(f"{dest.name}: {failures[-1]}")
    raise DataError(f"could not download {dest.name} to {dest.parent}; tried {'; '.join(failures) or 'no URLs'}")


def _fetch(url: str, dest: Path, md5: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise _ChecksumMismatch(f"checksum mismatch: expected MD5 {md5}, got {digest.hexdigest()}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def network_timeout(seconds: float = TIMEOUT_S) -> Iterator[None]:
    """Give sockets opened inside the block a default timeout.

    For third-party downloaders (torchvision's) that call urlopen without one, where a
    stalled connection would otherwise hang the run. The previous default is restored.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def extract_tar(archive: Path, dest_dir: Path) -> None:
    """Unpack a tar archive (any compression tarfile knows) into `dest_dir`.

    The "data" filter (PEP 706) refuses members that would land outside `dest_dir`
    (absolute paths, "..", links pointing out) and device files, so a hostile or broken
    archive cannot write elsewhere. Raises `DataError` if the archive is unreadable.
    """
    Path(dest_dir).mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest_dir, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"could not unpack {archive} into {dest_dir} ({describe_error(e)}); "
            f"delete {archive} so that it is downloaded again"
        ) from e
