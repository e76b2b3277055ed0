"""A run directory holds the results of exactly one configuration, written by one process at a time.

- `RunDirLock`: an exclusive lock on the directory (the OS releases it when its holder dies,
  so a killed run never blocks its own resume).
- `previous_summary`: what the directory already holds, read without trusting it.
- `write_hydra_files`: `.hydra/` is written by us once the directory is ours, not by Hydra at
  launch (`hydra.output_subdir: null`), so that a refused launch leaves it describing the run
  whose results are there.
- `job_dir_name`: sweep jobs live in directories named by their overrides, not their number,
  so a relaunched sweep with a different grid finds each job's own directory again.
- `CheckOutputDir`: a Hydra callback that turns an unusable output directory into one line.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dann.distributed import share_output_dir
from dann.errors import RunDirError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class RunDirBusy(RunDirError):
    """Another process holds the run directory's lock."""


class RunDirLock:
    """`with RunDirLock(run_dir):` — exclusive use of `run_dir`, or `RunDirBusy` at once.

    flock, not a pid file: the lock dies with its process (even under SIGKILL), so a stale
    lock cannot exist. The file also records who holds it, for the message.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self._file = None

    def __enter__(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise RunDirBusy(
                f"{self.path.parent} is in use by {holder}: one run directory holds one run at a time; "
                "wait for it to finish, or choose another output directory (hydra.run.dir=…)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None


def previous_summary(run_dir: Path) -> dict[str, Any] | None:
    """The directory's summary.json, or None when it has none. A corrupt one is reported and
    treated as absent (it is rewritten when this run ends), so it never blocks the directory."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("%s is unreadable (%s); ignoring it: this run will write a new one", path, e)
        return None
    if not isinstance(summary, dict) or "status" not in summary:
        log.warning("%s is not a run summary; ignoring it: this run will write a new one", path)
        return None
    return summary


def write_hydra_files(run_dir: Path, files: dict[str, str]) -> None:
    """Write `.hydra/<name>` for each (name, YAML text), each atomically."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = hydra_dir / f"{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, hydra_dir / name)


def hydra_job_files(task_cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, str]:
    """What Hydra itself would write into `.hydra/` for this job."""
    return {
        "config.yaml": OmegaConf.to_yaml(task_cfg),
        "hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})),
        "overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task),
    }


_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+\-\[\]@:]")
MAX_DIR_NAME = 120


def job_dir_name(override_dirname: str) -> str:
    """A sweep job's directory name from its overrides (`lambda=0.1,seed=0`, sorted by Hydra).

    Characters a path cannot hold safely (`/`, spaces, quotes) become `_`; a name longer than
    MAX_DIR_NAME keeps its start and gains a hash of the whole, so different jobs never share one.
    """
    if not override_dirname:
        return "default"
    name = _UNSAFE.sub("_", override_dirname)
    if name != override_dirname or len(name) > MAX_DIR_NAME:
        digest = hashlib.sha1(override_dirname.encode()).hexdigest()[:10]
        name = f"{name[: MAX_DIR_NAME - 11]}-{digest}" if len(name) > MAX_DIR_NAME else f"{name}-{digest}"
    return name


OmegaConf.register_new_resolver("dann_job_dir", job_dir_name, replace=True)


class CheckOutputDir(Callback):
    """Refuse an output directory that cannot be created, in one line, before Hydra tries it.

    Hydra would otherwise fail inside its own code with a chained traceback.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        share_output_dir(config, "run")  # several processes (torchrun): rank 0's directory, on every rank
        _check_creatable("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        share_output_dir(config, "sweep")
        _check_creatable("hydra.sweep.dir", config.hydra.sweep.dir)


def _check_creatable(key: str, directory: str) -> None:
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not writable")
    except OSError as e:
        print(
            f"error: {key}: cannot use {directory!r} as the output directory ({e.strerror or e}); "
            f"give a writable path, e.g. {key}=outputs/my_run",
            file=sys.stderr,
        )
        sys.exit(2)
