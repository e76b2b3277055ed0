"""Where a run's numbers go: `metrics.jsonl`, `summary.json`, and Weights & Biases.

W&B is a guest: if it cannot start or fails mid-run, a warning is logged, it is
switched off, and training goes on. The files are always written.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from dann.config.spec import Setting
from dann.errors import RunDirError
from dann.runs.directory import atomic_write, link_refused, open_for_writing, unwritable

log = logging.getLogger(__name__)

WandbMode = Literal["online", "offline", "disabled"]
WANDB_MODES = get_args(WandbMode)


@dataclass(frozen=True)
class WandbSettings:
    """`logger.wandb`: where W&B records the run (`RunLogger`). metrics.jsonl and summary.json are written anyway."""

    mode: Annotated[WandbMode, Setting("offline, online or disabled; the WANDB_MODE environment variable wins")]
    project: Annotated[str, Setting("the W&B project")]
    entity: Annotated[str | None, Setting("the W&B team or user; null: your default")]
    group: Annotated[str | None, Setting("the W&B group; null: a sweep's directory")]
    name: Annotated[str | None, Setting("the W&B run name; null: from the overrides")]
    tags: Annotated[list[str], Setting("W&B tags")]


@dataclass(frozen=True)
class LoggerSettings:
    """`logger`: where a run's numbers go besides its files."""

    wandb: WandbSettings


def wandb_mode(configured: str) -> str:
    """`WANDB_MODE` from the environment wins over `logger.wandb.mode` (compute nodes set it per job)."""
    return os.environ.get("WANDB_MODE") or configured


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary file, then rename: a kill leaves the old file or the new one, never half of one
    (`dann.runs.directory.atomic_write`: no link followed; a full disk is one `RunDirUnwritable`)."""
    with atomic_write(path) as f:
        json.dump(data, f, indent=2, allow_nan=True)
        f.write("\n")


class RunLogger:
    """One run's metrics stream. Use as a context manager so that W&B is finished even on failure.

    `resume_step`: this run continues from a checkpoint at that step (0: from the start); records
    logged after it (by an interrupted process, and about to be redone) are dropped from metrics.jsonl.
    `wandb_run_id`: the interrupted run's W&B id, to continue the same W&B run.
    `wandb`: the `logger.wandb` settings (mode, project, entity, group, name, tags); `config`: the
    run's resolved config, shown in W&B; `job_type`: the method's name.
    `group`, `name`: W&B grouping for sweeps (see `sweep_group` and `run_name`), unless `wandb` sets them.
    `enabled`: False on the ranks of a multi-process run but 0 (dann.training.distributed): they write no file
    and start no W&B run, and every method is a no-op.
    """

    def __init__(
        self,
        run_dir: Path,
        wandb: dict[str, Any],
        config: dict[str, Any],
        job_type: str,
        resume_step: int | None = None,
        wandb_run_id: str | None = None,
        group: str | None = None,
        name: str | None = None,
        enabled: bool = True,
    ):
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        self._metrics_file, self._wandb_run = None, None
        if not enabled:
            return
        if resume_step is not None:
            self._rewind(resume_step)
        self._metrics_file = open_for_writing(self.metrics_path, "a")
        self._wandb_run = self._start_wandb(wandb, config, job_type, wandb_run_id, group, name)

    @property
    def wandb_run_id(self) -> str | None:
        return self._wandb_run.id if self._wandb_run is not None else None

    def _rewind(self, step: int) -> None:
        """Keep the records up to `step`. A kill can truncate the last line: it is dropped; a
        corrupt line before it is an error (the records it holds would be lost silently)."""
        if self.metrics_path.is_symlink():  # read or rewritten, it would be the file it points to
            raise link_refused(self.metrics_path)
        if not self.metrics_path.exists():
            return
        # Numbered as in the file, blank lines included: the number the error gives is the one an editor shows.
        lines = [(n, line) for n, line in enumerate(self.metrics_path.read_text(errors="replace").splitlines(), 1)]
        lines = [(n, line) for n, line in lines if line.strip()]
        kept = []
        for index, (number, line) in enumerate(lines):
            try:
                record = json.loads(line)
                record_step = record["step"]
            except (json.JSONDecodeError, TypeError, KeyError):
                if index == len(lines) - 1:
                    log.warning("%s: dropping its truncated last line", self.metrics_path)
                    break
                raise RunDirError(
                    f"{self.metrics_path}: line {number} is not a metrics record ({line[:60]!r}); "
                    "trainer.resume=false starts this run over (replacing it), or use another output directory"
                ) from None
            if record_step <= step:
                kept.append(line)
        with atomic_write(self.metrics_path) as f:
            f.write("".join(line + "\n" for line in kept))

    def _start_wandb(
        self,
        settings: dict[str, Any],
        config: dict[str, Any],
        job_type: str,
        run_id: str | None,
        group: str | None,
        name: str | None,
    ):
        wanted = WandbSettings(**settings)
        mode = wandb_mode(wanted.mode)
        if mode == "disabled":
            return None
        try:
            import wandb

            return wandb.init(
                project=wanted.project,
                entity=wanted.entity,
                group=wanted.group or group,
                name=wanted.name or name,
                tags=list(wanted.tags),
                job_type=job_type,
                config=config,
                dir=str(self.run_dir),
                mode=mode,
                id=run_id,
                resume="allow" if run_id else None,
                # A multirun's jobs share one process: each must get a fresh run.
                reinit="finish_previous",
                # quiet: no 20-line run history and summary at the end (our own result line says what
                # matters, summary.json has it all); W&B still says where the run is, and its warnings.
                settings=wandb.Settings(quiet=True),
            )
        except Exception as e:  # noqa: BLE001 - logging must never stop training
            log.warning("W&B could not start (%s: %s); continuing with metrics.jsonl only", type(e).__name__, e)
            return None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self._metrics_file is None:  # not enabled
            return
        record = {"step": step, **metrics}
        try:
            self._metrics_file.write(json.dumps(record) + "\n")
            self._metrics_file.flush()
        except OSError as e:  # a full disk: one line, not a traceback
            raise unwritable(self.metrics_path, e) from None
        if self._wandb_run is not None:
            try:
                self._wandb_run.log(metrics, step=step)
            except Exception as e:  # noqa: BLE001
                log.warning("W&B logging failed (%s: %s); switching W&B off for this run", type(e).__name__, e)
                self._wandb_run = None

    def log_summary(self, summary: dict[str, Any]) -> None:
        """Copy the run's summary into W&B's run summary (the file is written by the caller)."""
        if self._wandb_run is not None:
            try:
                for key, value in _flatten(summary).items():
                    self._wandb_run.summary[key] = value
            except Exception as e:  # noqa: BLE001
                log.warning("W&B summary failed (%s: %s)", type(e).__name__, e)

    def close(self, failed: bool = False) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
        if self._wandb_run is not None:
            try:
                self._wandb_run.finish(exit_code=1 if failed else 0)
            except Exception as e:  # noqa: BLE001
                log.warning("W&B finish failed (%s: %s)", type(e).__name__, e)
            self._wandb_run = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (int, str, bool)) or (isinstance(value, float) and math.isfinite(value)):
            flat[name] = value
    return flat
