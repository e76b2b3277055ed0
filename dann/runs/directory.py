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
- `open_for_writing`, `atomic_write`, `make_subdir`: every file dann writes in a run directory is
  opened through these, which never follow a symbolic link planted there (it would lead outside
  the directory), and turn a full disk or a refused write into one `RunDirUnwritable` line.
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
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dann.errors import RunDirError
from dann.runs.readback import read_bounded
from dann.runs.signals import second_interrupt_deferred
from dann.training.distributed import share_output_dir

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class RunDirBusy(RunDirError):
    """Another process holds the run directory's lock."""


class RunDirUnwritable(RunDirError):
    """A file of the run directory cannot be written: a full disk, a quota, a read-only file system."""


def unwritable(path: Path, error: OSError) -> RunDirUnwritable:
    """The one line for a failed write of `path`."""
    return RunDirUnwritable(
        f"{path}: cannot be written ({error.strerror or error}); free space (or fix the permissions) there, "
        "or use another output directory (hydra.run.dir=…)"
    )


def link_refused(path: Path) -> RunDirError:
    return RunDirError(
        f"{path} is a symbolic link: dann writes only the run directory's own files, never through a link "
        "(which may lead outside it); remove the link, or use another output directory (hydra.run.dir=…)"
    )


def open_for_writing(path: Path, mode: str = "w", exclusive: bool = False) -> IO:
    """`open(path, mode)` for mode w, wb, a, ab or r+ (created if absent) that refuses a symbolic link
    at `path` instead of writing to the file it points to. `exclusive`: `path` must not exist.

    O_NOFOLLOW applies to the last component only: the run directory itself may be a link (scratch space).
    """
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_RDWR if mode == "r+" else os.O_WRONLY
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC if mode.startswith("w") else 0
    flags |= os.O_EXCL if exclusive else 0
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or (e.errno == errno.EEXIST and path.is_symlink()):
            raise link_refused(path) from None
        raise unwritable(path, e) from None
    return os.fdopen(fd, mode)


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO]:
    """`with atomic_write(path) as f:` — `f` is a new temporary file beside `path`, which replaces
    `path` once written and synced: a kill leaves the old file or the new one, never half of one.

    The temporary file is created anew (a link or file left at its name is removed first, never
    followed), and removed if anything fails; `os.replace` replaces a link at `path`, not its target.
    A second Ctrl-C waits for the write to end (`second_interrupt_deferred`). An `OSError` (a full
    disk) becomes one `RunDirUnwritable` line.
    """
    tmp = path.with_name(path.name + ".tmp")
    with second_interrupt_deferred():
        try:
            tmp.unlink(missing_ok=True)
            with open_for_writing(tmp, mode, exclusive=True) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise unwritable(path, e) from None
            raise


def make_subdir(path: Path) -> Path:
    """Create the run directory's subdirectory `path` (`.hydra`, `checkpoints`); a link there is refused."""
    if path.is_symlink():
        raise link_refused(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unwritable(path, e) from None
    return path


class RunDirLock:
    """`with RunDirLock(run_dir):` — exclusive use of `run_dir`, or `RunDirBusy` at once.

    flock, not a pid file: the lock dies with its process (even under SIGKILL), so a stale
    lock cannot exist. The file also records who holds it, for the message.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self._file = None

    def __enter__(self) -> RunDirLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise unwritable(self.path.parent, e) from None
        f = open_for_writing(self.path, "r+")  # never through a link: it would truncate the file it points to
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
    """The directory's summary.json, or None when it has none. A corrupt one (unreadable, not JSON,
    nested too deep, or no summary by its size: never read whole) is reported and treated as absent
    (it is rewritten when this run ends), so it never blocks the directory."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(read_bounded(path))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: NotReadBack, JSONDecodeError, UnicodeDecodeError
        log.warning("%s is unreadable (%s); ignoring it: this run will write a new one", path, e)
        return None
    if not isinstance(summary, dict) or "status" not in summary:
        log.warning("%s is not a run summary; ignoring it: this run will write a new one", path)
        return None
    return summary


def check_not_a_sweep(run_dir: Path) -> None:
    """Refuse `run_dir` for a single run if it is a sweep's directory: Hydra's `multirun.yaml`, or
    job directories that hold runs. A run there would mix its files with the sweep's (and `dann.report`
    would count it as one more job)."""
    found = "multirun.yaml" if (run_dir / "multirun.yaml").is_file() else None
    if found is None and run_dir.is_dir():
        jobs = (p for p in run_dir.iterdir() if p.is_dir() and not p.is_symlink())
        job = next((p for p in jobs if (p / "summary.json").is_file() or (p / ".hydra").is_dir()), None)
        found = f"the job directory {job.name}" if job is not None else None
    if found is not None:
        raise RunDirError(
            f"{run_dir} holds a sweep ({found}): a single run there would mix its files with the sweep's; "
            f"give the run its own directory (hydra.run.dir=…), or relaunch the sweep with -m hydra.sweep.dir={run_dir}"
        )


def write_hydra_files(run_dir: Path, files: dict[str, str]) -> None:
    """Write `.hydra/<name>` for each (name, YAML text), each atomically."""
    hydra_dir = make_subdir(run_dir / ".hydra")
    for name, text in files.items():
        with atomic_write(hydra_dir / name) as f:
            f.write(text)


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
        try:  # here, before Hydra opens the job's log file in it
            check_not_a_sweep(Path(config.hydra.run.dir))
        except RunDirError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

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
