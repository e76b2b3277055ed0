"""Making sure a dataset's files are here: download and verify them where allowed, else say where to get them.

Every benchmark goes through `ensure_files`, so that a missing dataset always gets the
same advice: what is missing, where to get it by hand, whether `dataset.download=true`
would fetch it, and that `dataset.root` (or `DANN_DATA`) may point at an existing copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dann.data.download import network_timeout
from dann.errors import DataError, describe_error

ELSEWHERE = "or point dataset.root= (or the DANN_DATA environment variable) at a directory that already holds it"


@dataclass(frozen=True)
class Release:
    """Where a dataset's files come from.

    title: the dataset in messages, e.g. "MNIST-M" or "DomainNet domain 'clipart'".
    folder: its own folder under the data root, e.g. <root>/mnist_m.
    by_hand: where to get the files by hand and what to do with them (URLs, where to unpack).
    download: fetches them, checksummed; None where no checksummed address is known, so that
        nothing unverified is ever downloaded.
    """

    title: str
    folder: Path
    by_hand: str
    download: Callable[[], Any] | None = None


def ensure_files(release: Release, expected: Sequence[Path], download: bool, layout: str | None = None) -> None:
    """Make sure every path in `expected` exists: download the release if it can be and
    `download` allows it, else raise a `DataError` saying how to get it.

    `layout` describes what is expected in messages (e.g. "<folder>/<class>/*.jpg"); by
    default, the missing paths are listed.
    """
    missing = [path for path in expected if not path.exists()]
    if not missing:
        return
    what = f"expected {layout}" if layout else f"missing {', '.join(map(str, missing))}"
    by_hand = f"by hand from {release.by_hand}, {ELSEWHERE}"
    if release.download is None:
        raise DataError(
            f"{release.title} not found: {what}. It is not downloaded (no checksum of it is known): get it {by_hand}."
        )
    if not download:
        raise DataError(
            f"{release.title} not found: {what}. Set dataset.download=true to fetch it, or get it {by_hand}."
        )
    try:
        with network_timeout():  # for third-party downloaders (torchvision's) that set no timeout
            release.download()
    except Exception as e:  # offline, a dead mirror, a checksum mismatch, a broken archive: the same advice
        raise DataError(
            f"{release.title} not found under {release.folder} and downloading it failed: {describe_error(e)}; "
            f"{what}. Get it {by_hand}; dataset.download=false stops download attempts."
        ) from e
    still_missing = [path for path in expected if not path.exists()]
    if still_missing:
        raise DataError(
            f"{release.title}: the download finished but {', '.join(map(str, still_missing))} is still missing. "
            f"Get it {by_hand}."
        )
