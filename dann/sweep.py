"""What a finished Hydra multirun left behind: one line per job that did not finish, and a file.

Registered as a Hydra callback in conf/config.yaml, so it runs in the launching process
once every job is done, whichever launcher ran them (local, submitit, SLURM).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dann.rundir import previous_summary
from dann.tracking import write_json_atomic

log = logging.getLogger(__name__)


def job_status(job_dir: Path) -> dict[str, Any]:
    """A job's status from its summary.json (finished, failed, skipped, diverged, interrupted), or
    unfinished when it has none (killed, still running) or an unreadable one."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = list(OmegaConf.load(overrides_file)) if overrides_file.exists() else []
    summary = previous_summary(job_dir)
    if summary is None:
        return {"job": job_dir.name, "status": "unfinished", "overrides": overrides}
    status = {"job": job_dir.name, "status": summary["status"], "overrides": overrides}
    if "error" in summary:
        status["error"] = summary["error"]
    return status


def summarize_sweep(sweep_dir: Path) -> dict[str, Any]:
    job_dirs = sorted((d for d in sweep_dir.iterdir() if (d / ".hydra").is_dir()), key=lambda d: (len(d.name), d.name))
    jobs = [job_status(d) for d in job_dirs]
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    return {"sweep_dir": str(sweep_dir), "counts": counts, "jobs": jobs}


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        summary = summarize_sweep(sweep_dir)
        write_json_atomic(sweep_dir / "sweep_summary.json", summary)
        for job in summary["jobs"]:
            if job["status"] != "finished":
                detail = f": {job['error']}" if "error" in job else ""
                log.warning("job %s %s [%s]%s", job["job"], job["status"], " ".join(job["overrides"]), detail)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
        log.info("sweep done: %s; see %s", counts, sweep_dir / "sweep_summary.json")
