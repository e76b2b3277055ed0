"""Reading back a file dann writes (summary.json, analysis.json, .hydra/config.yaml), without trusting it.

dann writes each of them at a few kilobytes; a file planted under one of those names may be of
any size, or no file at all (a FIFO, a link to /dev/zero), and is never read whole into memory.
This module imports nothing heavy, so that `dann.report` (no torch) and `dann.runs.directory` share it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_BYTES = 4 * 2**20  # far more than any file dann writes and reads back


class NotReadBack(ValueError):
    """A file no dann run wrote: larger than the bound, or not a regular file. It was not read."""


def read_bounded(path: Path, limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of the regular file `path`, reading at most `limit` + 1 bytes of it.

    Raises NotReadBack (its message says why, without the path), OSError or UnicodeDecodeError.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO opens at once: no wait for a writer
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotReadBack("not a regular file; not read")
        data = f.read(limit + 1)  # never the whole of a huge file, nor an endless one
    if len(data) > limit:
        raise NotReadBack(f"larger than {limit // 2**20} MiB, which no file dann writes is; not read")
    return data.decode("utf-8")
