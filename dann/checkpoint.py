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

CHECKPOINT = Path("checkpoints") / "last.pt"

# Keys that may change between a run and its resumption without changing its result.
RESUME_MAY_CHANGE = ("trainer.resume", "trainer.rerun_finished", "trainer.checkpoint_every",
                     "trainer.eval_batch_size", "logger", "dataset.root", "dataset.download")


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
    differing = _differing_keys(state["config"], run_config(cfg))
    if differing:
        raise ConfigError(
            f"{path} was written by a run with a different config ({', '.join(differing)} differ), so it "
            "cannot be resumed; use another output directory, or trainer.resume=false to start over here"
        )
    return state


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus the keys that may change on resume."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for dotted in RESUME_MAY_CHANGE:
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    return config


def _differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [k for key in keys for k in _differing_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


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
