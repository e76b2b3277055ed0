"""Checkpoints for exact resume: `checkpoints/last.pt` in the run directory, written atomically.

A checkpoint holds everything the rest of the run depends on: the network, optimiser
and lr-schedule state, the step (which fixes λ_p, a pure function of progress), every
random-number generator, the data streams' positions, and the training loop's own
bookkeeping (metrics accumulated since the last log, past evaluations). Resuming from
it on the same device gives the same weights and metrics as a run never interrupted.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dann.errors import ConfigError
from dann.identity import differing_keys, identity

CHECKPOINT = Path("checkpoints") / "last.pt"


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, fsync, then rename: a kill leaves the old or the new file."""
    path = checkpoint_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(run_dir: Path, cfg: DictConfig) -> dict[str, Any] | None:
    """The run directory's last checkpoint, or None. Refuses one made with a different config."""
    path = checkpoint_path(run_dir)
    if not path.exists():
        return None
    # weights_only=False: the file holds RNG states (numpy arrays, tuples) and was written by us.
    state = torch.load(path, map_location="cpu", weights_only=False)
    differing = differing_keys(identity(state["config"]), run_config(cfg))
    if differing:
        raise ConfigError(
            f"{path} was written by a run with a different config ({', '.join(differing)} differ), so it "
            "cannot be resumed; use another output directory, or trainer.resume=false to start over here"
        )
    return state


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's identity: its resolved config minus the keys that cannot change its result."""
    return identity(OmegaConf.to_container(cfg, resolve=True))


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
