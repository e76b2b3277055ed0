"""Entry point: `python -m dann.run [overrides…]`, or `-m` for a Hydra multirun.

config → validate → data → network → method → training loop → metrics.jsonl, summary.json, W&B
(the run itself: `dann.runs.launch`). This module imports no torch: `dann-run --help`, a shell
completion (TAB) and Hydra's own errors are answered before `hydra_main` runs, without waiting for it.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dann.config.compose import compose_done, one_line_errors
from dann.config.user_dirs import check_user_configs
from dann.errors import ConfigError, DannError, DataError, Diverged, Interrupted, RunDirError
from dann.selection.pick import CRITERIA
from dann.training.settings import TrainerSettings

log = logging.getLogger("dann")


def run_name(overrides: list[str]) -> str | None:
    """A W&B run name from a job's overrides: `A→W lambda=0.1 seed=1`."""
    values = dict(o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("hydra", "logger")))
    task = ""
    if "dataset.source" in values or "dataset.target" in values:
        task = f"{values.pop('dataset.source', '?')}→{values.pop('dataset.target', '?')}"
    words = [task] + [f"{k}={v}" for k, v in values.items()]
    return " ".join(w for w in words if w) or None


def sweep_group(sweep_dir: str) -> str:
    """The W&B group of a sweep's jobs: its directory, relative to where it was launched if inside."""
    path = Path(sweep_dir).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return path.name


# conf/ installs as the package dann.conf (pyproject.toml): found the same way in a clone's editable
# install and in a wheel installed anywhere, whatever the working directory.
@hydra.main(version_base="1.3", config_path="pkg://dann.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    compose_done()  # from here on, Hydra reports errors its own way
    # Imported here, once Hydra has composed a config: torch and what builds on it take seconds.
    from dann.config.validate import drop_unused_lambda_schedule
    from dann.runs.directory import hydra_job_files
    from dann.runs.launch import holds_run, run
    from dann.training import distributed

    hydra_cfg = HydraConfig.get()
    drop_unused_lambda_schedule(cfg)  # before .hydra/config.yaml is taken from it: the config that runs
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = list(hydra_cfg.overrides.task)
    job = f"job {hydra_cfg.job.num} [{' '.join(overrides)}]" if multirun else "run"
    held_run = False  # whether run_dir held a run before this launch: what a refusal must keep
    try:
        # Inside: a launch whose processes never all arrive (stray RANK/WORLD_SIZE) is one ConfigError line.
        distributed.setup(str(OmegaConf.select(cfg, "trainer.device", throw_on_resolution_failure=False)))
        if not distributed.is_main():  # rank 0 logs and prints the run; the others only their warnings
            logging.getLogger().setLevel(logging.WARNING)
        held_run = distributed.is_main() and holds_run(run_dir)
        summary = run(
            cfg,
            run_dir,
            wandb_group=sweep_group(hydra_cfg.sweep.dir) if multirun else None,
            wandb_name=run_name(overrides),
            hydra_files=hydra_job_files(cfg, hydra_cfg),
        )
    except Interrupted as e:
        # Not a failure to contain: the user or the scheduler wants this process to stop, sweep included.
        if distributed.is_main():  # every rank stops at the same step
            print(f"{job} {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C, outside a file write (which it waits for)
        if distributed.is_main():
            print(
                f"{job} stopped at once by a second Ctrl-C; run the same command again to resume from its last "
                "checkpoint",
                file=sys.stderr,
            )
        sys.exit(128 + signal.SIGINT)
    except DannError as e:  # the user's config, data or directory, or a diverged run: one line, no traceback
        _not_run(e, job, run_dir, multirun, held_run)  # exits, unless one job of a sweep
        return None
    except Exception:
        if not multirun:
            raise
        log.exception("%s failed; its summary.json has status 'failed'", job)
        return None
    return _objective(summary, TrainerSettings.from_config(cfg.trainer).objective, job, run_dir)


def _not_run(error: DannError, job: str, run_dir: Path, multirun: bool, held_run: bool) -> None:
    """A `DannError` ended the job: one line, no traceback. A single run exits (2; 3 when it diverged);
    one job of a sweep only says so and returns: it never takes the sweep down."""
    from dann.runs.launch import mark_skipped
    from dann.training import distributed

    if not multirun:
        if not _reported_by_main(error):
            print(f"error: {error}", file=sys.stderr)  # summary.json has it too, unless the directory was refused
        sys.exit(3 if isinstance(error, Diverged) else 2)
    if isinstance(error, ConfigError) and held_run:  # e.g. a GPU job's relaunch on a CPU node: its run stays
        log.error("%s not run here: %s (%s keeps its earlier run as it was)", job, error, run_dir)
    elif isinstance(error, ConfigError):  # an invalid combination in a grid (source = target, …): never run
        if distributed.is_main():
            mark_skipped(run_dir)
        print(f"skipping {job}: {error}", file=sys.stderr)
    else:  # a refused directory (nothing was written there), a data error, or a diverged run
        outcome = (
            "not run" if isinstance(error, RunDirError) else "stopped" if isinstance(error, Diverged) else "failed"
        )
        log.error("%s %s: %s", job, outcome, error)


def _objective(summary: dict[str, Any], objective: str, job: str, run_dir: Path) -> float | None:
    """Print the finished run's result (rank 0), and return what a sweeper (Optuna) maximises: the metric
    of the evaluation the `objective` criterion picks (None when it never gave a finite value)."""
    from dann.training import distributed

    final = summary["final"]
    if distributed.is_main():
        print(
            f"source/acc {final['source/acc']:.4f}  target/acc {final['target/acc']:.4f}  "
            f"({summary['method']}, {summary['source']} → {summary['target']}, seed {summary['seed']})"
        )
        print(f"outputs in {run_dir}")
    picked = summary["selection"].get(objective)
    if picked is None:  # the criterion never gave a finite value: nothing for the sweeper to maximise
        log.warning("%s: no evaluation has a finite %s; returning no objective", job, objective)
        return None
    return picked[CRITERIA[objective].metric]


def _reported_by_main(error: DannError) -> bool:
    """On ranks but 0, an error rank 0 prints too: its own (`main_decides`), or one every rank meets
    (config, diverged). A data error may be this rank's alone (an unreadable image of its shard)."""
    from dann.training import distributed

    if distributed.is_main():
        return False
    return distributed.reported_by_main(error) or not isinstance(error, DataError)


def main() -> None:
    """`python -m dann.run` and the `dann-run` script. The user's config folders named on the command line
    are checked first (`dann.config.user_dirs`): Hydra reads them while composing, before any code of ours runs."""
    try:
        check_user_configs(sys.argv[1:])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    register_sweeper()
    with one_line_errors():  # `trainer.stpes=10`: one line, as for `+trainer.stpes=10`
        hydra_main()


def register_sweeper() -> None:
    """Make dann's Optuna sweeper (hydra_plugins/dann_sweeper, named by conf/hparams_search) known to Hydra.

    Hydra finds plugins by walking the folders of the `hydra_plugins` namespace; an editable install
    (`pip install -e .`, the README's) serves dann's modules through an import hook that walk does not
    see, so the sweeper is registered here by name, the same under every kind of install.
    """
    try:
        from hydra_plugins.dann_sweeper.optuna_sweeper import DannOptunaSweeper
    except ImportError:  # the sweeps extra (hydra-optuna-sweeper) is not installed
        return
    from hydra.core.plugins import Plugins

    name = f"{DannOptunaSweeper.__module__}.{DannOptunaSweeper.__qualname__}"
    Plugins.instance().class_name_to_class.setdefault(name, DannOptunaSweeper)


if __name__ == "__main__":
    main()
