"""What a finished Hydra multirun left behind: one line per job that did not finish, and a file.

Registered as a Hydra callback in conf/config.yaml, so it runs in the launching process
once every job is done, whichever launcher ran them (local, submitit, SLURM). An Optuna search
none of whose trials returned a score ends in `optuna_sweep` instead (see there).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dann.runs.directory import previous_summary
from dann.runs.tracking import write_json_atomic

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


def write_sweep_summary(sweep_dir: Path, **extra: Any) -> dict[str, Any]:
    """`<sweep dir>/sweep_summary.json` (with the `extra` fields), and a line for each job that did not finish."""
    summary = summarize_sweep(sweep_dir) | extra
    write_json_atomic(sweep_dir / "sweep_summary.json", summary)
    for job in summary["jobs"]:
        if job["status"] != "finished":
            detail = f": {job['error']}" if "error" in job else ""
            log.warning("job %s %s [%s]%s", job["job"], job["status"], " ".join(job["overrides"]), detail)
    return summary


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        summary = write_sweep_summary(sweep_dir)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
        log.info("sweep done: %s; see %s", counts, sweep_dir / "sweep_summary.json")


# What optuna.Study.best_trial raises when no trial completed (optuna 2.x, which the Optuna sweeper requires).
NO_COMPLETED_TRIAL = "No trials are completed yet"


def optuna_sweep(sweep: Callable[[list[str]], Any], arguments: list[str], sweep_dir: Path) -> Any:
    """Run the Optuna sweeper's `sweep`; when no trial returned a score (every one skipped for its config,
    failed or diverged), end with sweep_summary.json and one line, exit 2.

    Each such trial already ended as one line, and returned no score (`dann.run.hydra_main`); Optuna marks it
    failed and goes on. With none completed, the sweeper's last step (the best trial) raises, and Hydra
    would print that as a traceback, before the sweep_summary.json callback runs.
    """
    try:
        return sweep(arguments)
    except ValueError as e:
        if NO_COMPLETED_TRIAL not in str(e) or not sweep_dir.is_dir():
            raise
    error = "no trial returned a score, so the search has no best parameters"
    summary = write_sweep_summary(sweep_dir, error=error)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary["counts"].items()))
    first = next((f"; the first: {job['error']}" for job in summary["jobs"] if "error" in job), "")
    print(
        f"error: Optuna search: {error} ({counts}){first}; see {sweep_dir / 'sweep_summary.json'}",
        file=sys.stderr,
    )
    sys.exit(2)
