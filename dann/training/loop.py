"""The step-based training loop: paired source/target streams → `engine.step` → logs and evaluations."""

from __future__ import annotations

import logging
import math
import signal
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dann.data import DomainData, ImageSplit, make_stream, to_device
from dann.errors import Diverged, Interrupted
from dann.methods import Batch
from dann.runs.checkpoint import (
    checkpoint_path,
    missing_and_extra,
    refuse,
    rng_state,
    save_checkpoint,
    set_rng_state,
    structure_difference,
)
from dann.runs.signals import StopRequests
from dann.runs.tracking import RunLogger
from dann.selection.criteria import label_free_criteria
from dann.selection.pick import summarise
from dann.training import distributed
from dann.training.engine import Engine
from dann.training.evaluate import accuracy, predict_split
from dann.training.progress import Progress
from dann.training.settings import TrainerSettings

log = logging.getLogger(__name__)


class TrainState:
    """Everything a checkpoint saves and a resume restores, in one place: the method (network) and
    its engine (optimiser, lr schedule, gradient scaler), the data streams' positions, every random
    generator, and the loop's own bookkeeping."""

    def __init__(self, engine: Engine, source: Any, target: Any):
        self.engine, self.source, self.target = engine, source, target
        self.step = 0
        self.pending: dict[str, list[Tensor]] = {}  # device tensors since the last log, read in one sync
        self.latest: dict[str, float] = {}  # schedule values (λ, lr): plain floats, logged as of the last step
        self.logged: dict[str, float] = {}  # the last logged training metrics
        self.evaluations: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain data only (loadable with weights_only=True)."""
        return self._own_state() | self._ranks_state()

    def _own_state(self) -> dict[str, Any]:
        """This process's state (what a one-process checkpoint holds beside the run's facts)."""
        return {
            "step": self.step,
            "method": self.engine.method.state_dict(),
            **self.engine.state_dict(),  # optimizer, lr_scheduler, grad_scaler (fp16 only)
            "streams": {"source": self.source.state_dict(), "target": self.target.state_dict()},
            "pending": self._pending_on_cpu(),
            "latest": self.latest,
            "logged": self.logged,
            "evaluations": self.evaluations,
            "rng": rng_state(),
        }

    def _ranks_state(self) -> dict[str, Any]:
        """Several processes: every rank's own random generators (dropout) and unlogged metrics, gathered
        on rank 0 (which alone saves; a collective, so every rank calls it), so that each resumes exactly."""
        if distributed.world_size() == 1:
            return {}
        own = {"rng": rng_state(), "pending": self._pending_on_cpu()}
        return {"ranks": distributed.gather_to_main(own)}

    def _pending_on_cpu(self) -> dict[str, Tensor]:
        """The metrics not logged yet, one CPU tensor per name (what a checkpoint holds of them)."""
        return {name: torch.stack(values).cpu() for name, values in self.pending.items()}

    def check_state_dict(self, state: dict[str, Any], path: Path) -> None:
        """Refuse (one `RunDirError` naming `path`) a checkpoint whose structure is not what this run
        writes: the same keys, kinds of values, tensor shapes and dtypes as `state_dict()` of the
        method just built, the step an int in [0, total steps], every generator state one that loads.
        Checked before any of it is used, so that a refused checkpoint changes nothing."""
        fresh = self._own_state()
        # dann.run's facts beside it (checked by load_checkpoint) may be there; a bare state_dict() has none.
        missing, extra = sorted(fresh.keys() - state.keys()), sorted(state.keys() - {*fresh, *RUN_FACTS, "ranks"})
        if missing or extra:
            raise refuse(path, missing_and_extra(missing, extra))
        steps = self.engine.total_steps
        if type(state["step"]) is not int or not 0 <= state["step"] <= steps:
            raise refuse(path, f"step: expected an integer in [0, {steps}] (trainer.steps), got {state['step']!r}")
        problem = None
        for key in ("method", "lr_scheduler", "streams"):
            problem = problem or structure_difference(state[key], fresh[key], key)
        problem = problem or self._optimizer_difference(state["optimizer"], fresh["optimizer"])
        scaler = state["grad_scaler"]
        if scaler is not None and fresh["grad_scaler"] is not None:
            problem = problem or structure_difference(scaler, fresh["grad_scaler"], "grad_scaler")
        elif scaler is not None and not isinstance(scaler, dict):
            problem = f"grad_scaler: expected a mapping or None, got {type(scaler).__name__}"
        for domain, stream in state["streams"].items() if not problem else ():
            if any(value < 0 for value in stream.values()):
                problem = f"streams.{domain}: expected positions >= 0, got {stream}"
        problem = problem or _metrics_difference(state)
        ranks = state.get("ranks")
        if ranks is not None and not problem:
            if not isinstance(ranks, list) or not all(isinstance(r, dict) and r.keys() == RANK_KEYS for r in ranks):
                problem = "ranks: expected a list of {rng, pending} per process"
            for i, rank_state in enumerate(ranks if not problem else ()):
                problem = problem or _metrics_difference(rank_state, f"ranks[{i}].")
        for where, rng in [("rng", state["rng"])] + [(f"ranks[{i}].rng", r["rng"]) for i, r in enumerate(ranks or [])]:
            problem = problem or _rng_difference(rng, fresh["rng"], where)
        if not problem and state["step"] == self.engine.total_steps and not state["evaluations"]:
            problem = "evaluations: a checkpoint of the last step holds its evaluation, this one none"
        if problem:
            raise refuse(path, problem)

    def _optimizer_difference(self, saved: Any, fresh: dict[str, Any]) -> str | None:
        """The optimiser's groups as this run builds them; its per-parameter state (momentum, Adam's
        moments) only for parameters it has, each tensor of that parameter's shape (or a scalar)."""
        if not isinstance(saved, dict) or saved.keys() != fresh.keys():
            return "optimizer: expected a mapping with state and param_groups"
        problem = structure_difference(saved["param_groups"], fresh["param_groups"], "optimizer.param_groups")
        if problem or not isinstance(saved["state"], dict):
            return problem or "optimizer.state: expected a mapping"
        shapes = [p.shape for group in self.engine.optimizer.param_groups for p in group["params"]]
        for index, values in saved["state"].items():
            if type(index) is not int or not 0 <= index < len(shapes) or not isinstance(values, dict):
                return f"optimizer.state: no parameter {index!r} in this run's optimizer"
            for name, value in values.items():
                if isinstance(value, Tensor) and value.dim() > 0 and value.shape != shapes[index]:
                    return (
                        f"optimizer.state.{index}.{name}: expected shape {tuple(shapes[index])}, "
                        f"got {tuple(value.shape)}"
                    )
        return None

    def load_state_dict(self, state: dict[str, Any], device: torch.device, path: Path | None = None) -> None:
        """Restore `state` (a checkpoint), once `check_state_dict` has accepted it (`path`: its file, named
        in the error)."""
        self.check_state_dict(state, path or Path("the checkpoint"))
        ranks = state.get("ranks") or [state]  # a checkpoint of one process holds only rank 0's
        if len(ranks) != distributed.world_size():
            log.warning(
                "resuming on %d processes a checkpoint of %d: weights and batches continue exactly, random "
                "generators (dropout) and the metrics logged at the next log interval do not",
                distributed.world_size(),
                len(ranks),
            )
        elif distributed.world_size() > 1:
            state = state | ranks[distributed.rank()]
        self.step = state["step"]
        self.engine.method.load_state_dict(state["method"])
        self.engine.load_state_dict(state)
        self.source.load_state_dict(state["streams"]["source"])
        self.target.load_state_dict(state["streams"]["target"])
        self.pending = {name: list(values.to(device).unbind()) for name, values in state["pending"].items()}
        self.latest, self.logged, self.evaluations = state["latest"], state["logged"], state["evaluations"]
        set_rng_state(state["rng"])


# What dann.run saves beside the training state in each checkpoint (`run_facts`, the W&B run, the time).
RUN_FACTS = ("config", "runtime", "threads", "wandb_run_id", "elapsed_s")
RANK_KEYS = {"rng", "pending"}  # each process's own part of a multi-process checkpoint (`_ranks_state`)


def _metrics_difference(state: dict[str, Any], prefix: str = "") -> str | None:
    """The loop's bookkeeping: unlogged metrics (name → 1-d float tensor), logged values (name →
    number), evaluations (a list of name → number); `prefix`: where in the checkpoint."""

    def numbers(value: Any) -> bool:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in value.items()
        )

    pending = state["pending"]
    if not isinstance(pending, dict) or not all(
        isinstance(v, Tensor) and v.dim() == 1 and v.is_floating_point() for v in pending.values()
    ):
        return f"{prefix}pending: expected metric name → 1-d float tensor"
    for key in ("latest", "logged") if not prefix else ():
        if not numbers(state[key]):
            return f"{key}: expected metric name → number"
    if not prefix and not (isinstance(state["evaluations"], list) and all(map(numbers, state["evaluations"]))):
        return "evaluations: expected a list of metric name → number"
    return None


def _rng_difference(saved: Any, fresh: dict[str, Any], where: str) -> str | None:
    """A generator state of the structure `rng_state()` gives, that the generators accept (tried,
    then the current states put back)."""
    if not isinstance(saved, dict):
        return f"{where}: expected a mapping, got {type(saved).__name__}"
    cuda = saved.get("cuda")
    problem = structure_difference({k: v for k, v in saved.items() if k != "cuda"}, fresh | {"cuda": None}, where)
    problem = problem if problem != f"{where}: missing cuda" else None
    if not problem and not (
        isinstance(cuda, list) and all(isinstance(t, Tensor) and t.dtype == torch.uint8 for t in cuda)
    ):
        problem = f"{where}.cuda: expected a list of byte tensors"
    if problem:
        return problem
    current = rng_state()
    try:
        set_rng_state(saved | {"cuda": []})
    except Exception as e:  # noqa: BLE001 - any refusal of a generator is the checkpoint's fault
        return f"{where}: a generator refuses it ({type(e).__name__}: {' '.join(str(e).split())[:100]})"
    finally:
        set_rng_state(current)
    return None


def check_resumable(path: Path, checkpoint: dict[str, Any], engine: Engine) -> None:
    """`TrainState.check_state_dict` before the data streams exist (dann.run, before metrics.jsonl is
    rewound to the checkpoint's step): theirs are checked against the state a fresh stream has."""
    fresh_stream = _FreshStream()
    TrainState(engine, fresh_stream, fresh_stream).check_state_dict(checkpoint, path)


class _FreshStream:
    """The state both kinds of stream (dann.data.stream) start from."""

    def state_dict(self) -> dict[str, int]:
        return {"epoch": 0, "position": 0}


def train(
    engine: Engine,
    data: DomainData,
    logger: RunLogger,
    loop: TrainerSettings,
    seed: int,
    device: torch.device,
    run_dir: Path,
    run_facts: dict[str, Any],
    checkpoint: dict[str, Any] | None = None,
    started: float | None = None,
    stop: StopRequests | None = None,
) -> dict:
    """Run `loop.steps` updates, from `checkpoint` if given; return the final evaluation and the
    one each selection criterion picks.

    `seed`: the run's seed, from which the source and target batch orders are drawn.
    `run_facts`: saved in each checkpoint beside the training state (the run's identity: its config).
    `started`: the run's wall-clock origin (`time.time()`, moved back by the time spent
    before a resume), so that checkpoints record the run's whole elapsed time.
    `stop`: when it has a request (SIGTERM, SIGINT), the loop writes a checkpoint after the
    current step and raises `Interrupted`.
    The engine's `runtime` (precision, memory layout, compilation): batches are put in its layout.
    Raises `Diverged` when a logged training metric is NaN or infinite (checked at log
    intervals, where the values are read anyway: no extra host sync).
    """
    steps = loop.steps
    streams = dict(mean=data.mean, std=data.std, device=device, num_workers=data.num_workers)
    # Different seeds per domain, so that the source and target orders are not the same permutation.
    streams["shard"] = (distributed.rank(), distributed.world_size())  # the global batch, split over the ranks
    source = make_stream(data.source_train, loop.batch_size, seed=2 * seed, **streams)
    target = make_stream(data.target_train, loop.batch_size, seed=2 * seed + 1, **streams)
    eval_splits = {"source": to_device(data.source_val, device), "target": to_device(data.target_test, device)}

    state = TrainState(engine, source, target)
    method, runtime = engine.method, engine.runtime
    if checkpoint is not None:
        state.load_state_dict(checkpoint, device, checkpoint_path(run_dir))
        log.info("resumed from step %d of %d", state.step, steps)
    start = state.step
    pending, latest, evaluations = state.pending, state.latest, state.evaluations  # updated in place below
    if started is None:
        started = time.time()

    signum = distributed.agreed_signal(stop.signum if stop is not None else None)
    if signum is not None and start < steps:  # before any step: the state is the checkpoint's
        raise Interrupted(start, signal.Signals(signum).name, 128 + signum)
    method.train()
    progress = Progress(steps, loop.progress if distributed.is_main() else "off", start_step=start)
    for step in range(start + 1, steps + 1):
        state.step = step
        source_x, source_y = next(source)
        target_x, target_y = next(target)
        source_x, target_x = runtime.to_input(source_x), runtime.to_input(target_x)
        batch = Batch(source_x, source_y, target_x, target_y if method.uses_target_labels else None)
        logging_step = step % loop.log_every == 0 or step == steps
        # On logged steps the engine also measures the gradients at the features.
        metrics = engine.step(batch, progress=(step - 1) / steps, diagnose=logging_step)
        for name, value in metrics.items():
            if isinstance(value, Tensor):
                pending.setdefault(name, []).append(value)
            else:
                latest[name] = value

        if logging_step:
            means = {name: torch.stack(values).mean() for name, values in pending.items()}
            means = distributed.all_reduce_mean(means)  # over the ranks, in one collective; one process: as is
            state.logged = {name: value.item() for name, value in means.items()} | latest
            logger.log(step, state.logged)
            pending.clear()
            # The line ends before an evaluation (at this step or before the next log), whose log line follows.
            progress.update(step, state.logged, end_line=(-step) % loop.eval_every < loop.log_every or step == steps)
            non_finite = {name: value for name, value in state.logged.items() if not math.isfinite(value)}
            if non_finite:
                progress.close()
                raise Diverged(step, non_finite)

        evaluating = step % loop.eval_every == 0 or step == steps
        if evaluating and distributed.is_main():  # several processes: rank 0 evaluates, the others wait below
            # One pass per split; the accuracies and the selection criteria all read its outputs.
            source_out, target_out = (
                predict_split(method, split, loop.eval_batch_size, data.mean, data.std, data.num_workers)
                for split in (eval_splits["source"], eval_splits["target"])
            )
            source_acc, target_acc = accuracy(source_out, data.num_classes), accuracy(target_out, data.num_classes)
            record = {
                "step": step,
                "source/acc": source_acc["acc"],
                "target/acc": target_acc["acc"],
                "target/acc_per_class_mean": target_acc["acc_per_class_mean"],
            }
            # Counted from the evaluations so far, which a checkpoint restores: resume keeps the same schedule.
            every = loop.reverse_validation_every
            reverse = every > 0 and (len(evaluations) + 1) % every == 0
            # The target's labels are not passed: these criteria are what a user without them can compute.
            record |= label_free_criteria(
                source_out.features,
                source_out.logits,
                source_out.labels,
                target_out.features,
                target_out.logits,
                reverse=reverse,
            )
            logger.log(step, {k: v for k, v in record.items() if k != "step"})
            evaluations.append(record)
            log.info(
                "step %d/%d  source/acc %.4f  target/acc %.4f  train/domain_acc %s",
                step,
                steps,
                record["source/acc"],
                record["target/acc"],
                f"{state.logged['train/domain_acc']:.3f}" if "train/domain_acc" in state.logged else "n/a",
            )

        if evaluating and distributed.world_size() > 1:  # rank 0's new record, so that every rank has them all
            record = distributed.broadcast_object(evaluations[-1] if distributed.is_main() else None)
            if not distributed.is_main():
                evaluations.append(record)

        signum = stop.signum if stop is not None else None
        if distributed.world_size() > 1:  # every rank stops at the same step: the first log step after a signal
            signum = distributed.agreed_signal(signum) if logging_step else None
        if step % loop.checkpoint_every == 0 or step == steps or signum is not None:
            # The run's own facts beside the training state: what config wrote it, its W&B run, its time.
            saved = state.state_dict()  # on every rank: it gathers the ranks' generators
            if distributed.is_main():
                save_checkpoint(
                    run_dir,
                    saved | run_facts | {"wandb_run_id": logger.wandb_run_id, "elapsed_s": time.time() - started},
                )
        if signum is not None and step < steps:
            progress.close()
            raise Interrupted(step, signal.Signals(signum).name, 128 + signum)

    progress.close()
    distributed.check_same_parameters(method)  # several processes: they must end as one model
    for split in (data.source_train, data.target_train):  # each rank met the unreadable images of its own part
        if isinstance(split, ImageSplit):
            split.skipped.update(distributed.merged(split.skipped))
    return {"final": evaluations[-1]} | summarise(evaluations)  # selection, and what it had to leave out
