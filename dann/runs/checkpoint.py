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
from dann.runs.directory import atomic_write, make_subdir, unwritable
from dann.runs.identity import differing_keys, flatten, identity
from dann.runs.signals import second_interrupt_deferred
from dann.training.settings import TrainerSettings

CHECKPOINT = Path("checkpoints") / "last.pt"


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, fsync, then rename (`dann.runs.directory.atomic_write`): a kill leaves
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


RESUME_FIX = "start over with trainer.resume=false (which replaces it), or use another output directory"


def refuse(path: Path, problem: str) -> RunDirError:
    """The one error for a checkpoint that reads but is not what this run would have written."""
    return RunDirError(f"{path}: not a checkpoint this run can resume ({problem}); {RESUME_FIX}")


def check_run_facts(path: Path, state: dict[str, Any], steps: int) -> None:
    """The facts dann.run reads before the training state is touched (metrics.jsonl is rewound to
    `step`, W&B resumed by its id): each of the kind a run writes, `step` an int in [0, `steps`]."""
    step = state["step"]
    if type(step) is not int or not 0 <= step <= steps:
        raise refuse(path, f"step: expected an integer in [0, {steps}] (trainer.steps), got {step!r}")
    if not isinstance(state["config"], dict):
        raise refuse(path, f"config: expected a mapping, got {type(state['config']).__name__}")
    kinds = {"elapsed_s": (int, float), "wandb_run_id": (str, type(None)), "runtime": (dict, type(None))}
    for key, kind in kinds.items():
        if key == "runtime" and key not in state:  # written before checkpoints recorded the runtime
            continue
        if key not in state or isinstance(state[key], bool) or not isinstance(state[key], kind):
            raise refuse(path, f"{key}: missing or of the wrong kind ({type(state.get(key)).__name__})")


def missing_and_extra(missing: list, extra: list) -> str:
    """`missing a, b; extra c`."""
    found = (("missing", missing), ("extra", extra))
    return "; ".join(f"{label} {', '.join(map(str, keys))}" for label, keys in found if keys)


def structure_difference(saved: Any, fresh: Any, where: str = "") -> str | None:
    """Where `saved` differs in structure from `fresh` (what this run would write): keys, lengths,
    kinds of values (int and float alike are numbers), tensor shapes and dtypes. None if alike."""
    name = where or "the checkpoint"
    if isinstance(fresh, torch.Tensor):
        if not isinstance(saved, torch.Tensor):
            return f"{name}: expected a tensor, got {type(saved).__name__}"
        if saved.shape != fresh.shape or saved.dtype != fresh.dtype:
            return (
                f"{name}: expected a tensor of shape {tuple(fresh.shape)} {fresh.dtype}, "
                f"got {tuple(saved.shape)} {saved.dtype}"
            )
        return None
    if isinstance(fresh, dict):
        if not isinstance(saved, dict):
            return f"{name}: expected a mapping, got {type(saved).__name__}"
        missing, extra = [k for k in fresh if k not in saved], [k for k in saved if k not in fresh]
        if missing or extra:
            return f"{name}: {missing_and_extra(missing, extra)}"
        for key in fresh:
            found = structure_difference(saved[key], fresh[key], f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    if isinstance(fresh, (list, tuple)):
        if type(saved) is not type(fresh) or len(saved) != len(fresh):
            length = f" of {len(saved)}" if isinstance(saved, (list, tuple)) else ""
            return f"{name}: expected a {type(fresh).__name__} of {len(fresh)}, got {type(saved).__name__}{length}"
        for i, (a, b) in enumerate(zip(saved, fresh, strict=True)):
            found = structure_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(fresh, bool) or fresh is None or isinstance(fresh, str):
        same = type(saved) is type(fresh)
    elif isinstance(fresh, (int, float)):
        same = isinstance(saved, (int, float)) and not isinstance(saved, bool)
    else:
        same = type(saved) is type(fresh)
    return None if same else f"{name}: expected {type(fresh).__name__}, got {type(saved).__name__} {saved!r:.40}"


def load_checkpoint(run_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The run directory's last checkpoint, or None. Refuses one made with a config other than
    `config` (the resolved config of the run about to start), or whose step and run facts are not
    what a run of it writes (the training state itself is checked against the built method by
    `dann.training.loop.check_resumable`)."""
    path = checkpoint_path(run_dir)
    if not path.exists():
        return None
    state = read_checkpoint(path)
    check_run_facts(path, state, TrainerSettings.from_config(config["trainer"]).steps)
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
    given now; "" when their identities (`dann.runs.identity`) are the same."""
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
