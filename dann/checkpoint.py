"""Checkpoints for exact resume: `checkpoints/last.pt` in the run directory, written atomically.

A checkpoint holds everything the rest of the run depends on: the network, optimiser
and lr-schedule state, the step (which fixes λ_p, a pure function of progress), every
random-number generator, the data streams' positions, and the training loop's own
bookkeeping (metrics accumulated since the last log, past evaluations). Resuming from
it on the same device gives the same weights and metrics as a run never interrupted.

It holds only tensors, plain containers, numbers and strings, and is read with
`torch.load(..., weights_only=True)`: a crafted file in a run directory cannot run code.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dann.errors import Interrupted, RunDirError
from dann.identity import differing_keys, flatten, identity
from dann.interrupt import second_interrupt_deferred
from dann.rundir import atomic_write, make_subdir, unwritable

CHECKPOINT = Path("checkpoints") / "last.pt"


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, fsync, then rename (`dann.rundir.atomic_write`): a kill leaves
    the old or the new file, a full disk one `RunDirUnwritable` and no temporary file.

    A second Ctrl-C during the write lets it complete, then stops the run as interrupted at this
    checkpoint's step, which a resume continues from.
    """
    path = checkpoint_path(run_dir)
    make_subdir(path.parent)
    stopped = lambda: Interrupted(state["step"], "SIGINT", 128 + signal.SIGINT)  # noqa: E731
    with second_interrupt_deferred(then=stopped), atomic_write(path, "wb") as f:
        torch.save(state, f)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at `path`, read as data only; one `RunDirError` if it is unreadable or untrusted."""
    fix = "start over with trainer.resume=false (which replaces it), or delete it; or use another output directory"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated, corrupt, or holding objects that would run code
        reason = " ".join(str(e).split())[:200]
        raise RunDirError(
            f"{path}: cannot be read as a dann checkpoint ({type(e).__name__}: {reason}); {fix}"
        ) from None
    if not isinstance(state, dict) or not {"step", "config", "method"} <= state.keys():
        raise RunDirError(f"{path}: not a dann checkpoint (expected a dict with step, config, method, …); {fix}")
    return state


def load_checkpoint(run_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The run directory's last checkpoint, or None. Refuses one made with a config other than
    `config` (the resolved config of the run about to start)."""
    path = checkpoint_path(run_dir)
    if not path.exists():
        return None
    state = read_checkpoint(path)
    differences = describe_differences(state["config"], config)
    if differences:
        raise RunDirError(
            f"{path} was written by a run with a different config ({differences}), "
            "so it cannot be resumed; use another output directory, or trainer.resume=false to start over here"
        )
    return state


def discard_checkpoint(run_dir: Path) -> None:
    """Remove the directory's checkpoint (starting over), so it can never be resumed by mistake."""
    try:
        checkpoint_path(run_dir).unlink(missing_ok=True)  # a link is removed itself, not what it points to
    except OSError as e:
        raise unwritable(checkpoint_path(run_dir), e) from None


def describe_differences(stored: dict[str, Any], given: dict[str, Any], most: int = 4) -> str:
    """`lambda: 1.0 → 0.5, seed: 0 → 1 differ`, for a resolved config stored with a run and the one
    given now; "" when their identities (`dann.identity`) are the same."""
    stored, given = identity(stored), identity(given)
    old, new = flatten(stored), flatten(given)
    keys = differing_keys(stored, given)
    if not keys:
        return ""
    words = [f"{key}: {old.get(key, '(absent)')} → {new.get(key, '(absent)')}" for key in keys[:most]]
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(words) + more + (" differ" if len(keys) > 1 else " differs")


def rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain values (loadable with weights_only=True)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),  # (version, tuple of ints, None)
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["name"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
