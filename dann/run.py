"""Entry point: `python -m dann.run [overrides…]`, or `-m` for a Hydra multirun.

config → validate → data → network → method → training loop → metrics.jsonl, summary.json, W&B.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dann.config import validate, validate_against_data
from dann.data import load_domain_data, resolve_domain
from dann.errors import DannError
from dann.methods import build_method
from dann.models import build_network
from dann.tracking import RunLogger, write_json_atomic
from dann.train import train

log = logging.getLogger("dann")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train and evaluate one configuration; write and return its summary."""
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
    }
    try:
        validate(cfg)
        summary["lambda"] = float(cfg["lambda"])  # `lambda=1` on the command line is an int
        summary["source"] = resolve_domain(cfg.dataset.source, "dataset.source").name
        summary["target"] = resolve_domain(cfg.dataset.target, "dataset.target").name
        seed_everything(cfg.seed)
        device = pick_device(cfg.trainer.device)
        data = load_domain_data(cfg.dataset)
        validate_against_data(cfg, data)
        network = build_network(cfg.model, data.input_shape, data.num_classes).to(device)
        method = build_method(cfg, network)
        log.info("%s on %s → %s (%s), λ=%s, %d steps on %s",
                 cfg.method.name, data.source, data.target, cfg.dataset.name, cfg["lambda"], cfg.trainer.steps, device)
        with RunLogger(run_dir, cfg) as logger:
            summary |= train(cfg, method, data, logger, device)
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, run_dir)
    except DannError as e:
        # The user's config or data is at fault: one clear line, no traceback.
        # (summary.json records it too, for sweeps.)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    final = summary["final"]
    print(f"source/acc {final['source/acc']:.4f}  target/acc {final['target/acc']:.4f}  "
          f"({summary['method']}, {summary['source']} → {summary['target']}, seed {summary['seed']})")
    print(f"outputs in {run_dir}")
    # Returned for sweepers (Optuna): a score that needs no target labels.
    return summary["selection"]["source_val"]["source/acc"]


if __name__ == "__main__":
    main()
