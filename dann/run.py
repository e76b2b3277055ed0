"""Entry point: `python -m dann.run [overrides…]`, or `-m` for a Hydra multirun.

config → validate → data → network → method → training loop → metrics.jsonl, summary.json, W&B.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dann.checkpoint import load_checkpoint
from dann.config import validate, validate_against_data
from dann.data import labelled_subset, load_domain_data, resolve_domains
from dann.errors import ConfigError, DannError
from dann.methods import build_method
from dann.models import build_network
from dann.tracking import RunLogger, write_json_atomic
from dann.train import train

log = logging.getLogger("dann")

# What a run returns to a sweeper (Optuna) to maximise, by `trainer.objective`.
OBJECTIVES = {
    "source_val": ("source_val", "source/acc"),  # best source validation accuracy: needs no target labels
    "oracle": ("oracle", "target/acc"),  # best target test accuracy: an oracle, for upper bounds only
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def finished_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary of a run that already finished in `run_dir`, else None."""
    path = run_dir / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("status") == "finished" else None


def run(cfg: DictConfig, run_dir: Path, wandb_group: str | None = None, wandb_name: str | None = None) -> dict[str, Any]:
    """Train and evaluate one configuration in `run_dir`; write and return its summary.

    A run that already finished there is not repeated (unless `trainer.rerun_finished`);
    one that was interrupted resumes from its last checkpoint (unless not `trainer.resume`).
    """
    done = finished_summary(run_dir)
    if done is not None and not cfg.trainer.rerun_finished:
        log.info("%s already finished; not run again (trainer.rerun_finished=true to force)", run_dir)
        return done

    started = time.time()
    summary: dict[str, Any] = {
        "method": cfg.method.name,
        "lambda": cfg["lambda"],
        "dataset": cfg.dataset.name,
        "source": str(cfg.dataset.source),
        "target": str(cfg.dataset.target),
        "seed": cfg.seed,
        "steps": cfg.trainer.steps,
        "protocol": cfg.dataset.protocol,
        "status": "failed",
        # The whole resolved config: what `dann.report` and reruns identify this run by (dann.identity).
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    try:
        validate(cfg)
        summary["lambda"] = float(cfg["lambda"])  # `lambda=1` on the command line is an int
        source, target = resolve_domains(cfg.dataset)
        summary["source"], summary["target"] = source.name, target.name
        checkpoint = load_checkpoint(run_dir, cfg) if cfg.trainer.resume else None
        if checkpoint is not None:
            started -= checkpoint["elapsed_s"]
        seed_everything(cfg.seed)
        device = pick_device(cfg.trainer.device)
        data = load_domain_data(cfg.dataset)
        network = build_network(cfg.model, data.input_shape, data.num_classes).to(device)
        method = build_method(cfg, network)
        fraction = cfg.dataset.target_labeled_fraction
        summary["target_labeled_fraction"] = fraction if method.uses_target_labels else 0.0
        if method.uses_target_labels and fraction < 1:
            data = replace(data, target_train=labelled_subset(data.target_train, fraction))
        validate_against_data(cfg, data)
        log.info("%s on %s → %s (%s), λ=%s, %d steps on %s",
                 cfg.method.name, data.source, data.target, cfg.dataset.name, cfg["lambda"], cfg.trainer.steps, device)
        with RunLogger(run_dir, cfg,
                       resume_step=checkpoint["step"] if checkpoint else None,
                       wandb_run_id=checkpoint["wandb_run_id"] if checkpoint else None,
                       group=wandb_group, name=wandb_name) as logger:
            summary |= train(cfg, method, data, logger, device, run_dir, checkpoint, started)
            summary["skipped_images"] = data.skipped_images
            summary["status"] = "finished"
            summary["wall_time_s"] = round(time.time() - started, 3)
            logger.log_summary(summary)
    except BaseException as e:
        summary["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        summary.setdefault("wall_time_s", round(time.time() - started, 3))
        write_json_atomic(run_dir / "summary.json", summary)
    return summary


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


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = list(hydra_cfg.overrides.task)
    job = f"job {hydra_cfg.job.num} [{' '.join(overrides)}]" if multirun else "run"
    try:
        summary = run(cfg, run_dir,
                      wandb_group=sweep_group(hydra_cfg.sweep.dir) if multirun else None,
                      wandb_name=run_name(overrides))
    except ConfigError as e:
        if multirun:
            # An invalid combination in a grid (source = target, …): skipped, never run.
            _mark_skipped(run_dir)
            print(f"skipping {job}: {e}", file=sys.stderr)
            return None
        print(f"error: {e}", file=sys.stderr)  # one clear line, no traceback; summary.json has it too
        sys.exit(2)
    except DannError as e:
        if multirun:
            log.error("%s failed: %s", job, e)
            return None  # one failing job never takes the sweep down
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        if not multirun:
            raise
        log.exception("%s failed; its summary.json has status 'failed'", job)
        return None
    final = summary["final"]
    print(f"source/acc {final['source/acc']:.4f}  target/acc {final['target/acc']:.4f}  "
          f"({summary['method']}, {summary['source']} → {summary['target']}, seed {summary['seed']})")
    print(f"outputs in {run_dir}")
    criterion, metric = OBJECTIVES[cfg.trainer.objective]
    return summary["selection"][criterion][metric]


def _mark_skipped(run_dir: Path) -> None:
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    summary["status"] = "skipped"
    write_json_atomic(path, summary)


if __name__ == "__main__":
    main()
