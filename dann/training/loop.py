"""The step-based training loop: paired source/target streams → `engine.step` → logs and evaluations."""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class RunContext:
    """What `train` needs to know of the run around it (`dann.runs.launch` builds it from the config)."""

    seed: int  # the source and target batch orders are drawn from it (2·seed and 2·seed + 1)
    device: torch.device
    run_dir: Path  # where checkpoints are written
    # Saved in each checkpoint beside the training state: the run's identity (its config), runtime, threads.
    facts: dict[str, Any] = field(default_factory=dict)
    # The run's wall-clock origin (`time.time()`, moved back by the time spent before a resume), so that
    # checkpoints record the run's whole elapsed time; None: when `train` starts.
    started: float | None = None


def train(
    engine: Engine,
    data: DomainData,
    logger: RunLogger,
    settings: TrainerSettings,
    run: RunContext,
    checkpoint: dict[str, Any] | None = None,
    stop: StopRequests | None = None,
) -> dict:
    """Run `settings.steps` updates, from `checkpoint` if given; return the final evaluation and the
    one each selection criterion picks.

    `stop`: when it has a request (SIGTERM, SIGINT), the loop writes a checkpoint after the
    current step and raises `Interrupted`.
    The engine's `runtime` (precision, memory layout, compilation): batches are put in its layout.
    Raises `Diverged` when a logged training metric is NaN or infinite (checked at log
    intervals, where the values are read anyway: no extra host sync).
    """
    loop = _Loop(engine, data, logger, settings, run, stop)
    if checkpoint is not None:
        loop.resume(checkpoint)
    start, steps = loop.state.step, settings.steps
    signum = loop.requested_signal(agree=True)
    if signum is not None and start < steps:  # before any step: the state is the checkpoint's
        raise _interrupted(start, signum)
    loop.begin()
    for step in range(start + 1, steps + 1):
        logging_step = step % settings.log_every == 0 or step == steps
        loop.step(step, diagnose=logging_step)  # on logged steps the engine also measures the feature gradients
        if logging_step:
            loop.log(step)
        if step % settings.eval_every == 0 or step == steps:
            loop.evaluate(step)
        signum = loop.requested_signal(agree=logging_step)
        if step % settings.checkpoint_every == 0 or step == steps or signum is not None:
            loop.save_checkpoint()
        if signum is not None and step < steps:
            loop.progress.close()
            raise _interrupted(step, signum)
    return loop.finish()


def _interrupted(step: int, signum: int) -> Interrupted:
    return Interrupted(step, signal.Signals(signum).name, 128 + signum)


class _Loop:
    """The parts of one `train` call: its state, what it writes, and one method per thing the loop does
    at a step, each with its own rank checks (one process: `dann.training.distributed` changes nothing)."""

    def __init__(
        self,
        engine: Engine,
        data: DomainData,
        logger: RunLogger,
        settings: TrainerSettings,
        run: RunContext,
        stop: StopRequests | None,
    ):
        self.engine, self.data, self.logger = engine, data, logger
        self.settings, self.run, self.stop = settings, run, stop
        streams = dict(mean=data.mean, std=data.std, device=run.device, num_workers=data.num_workers)
        streams["shard"] = (distributed.rank(), distributed.world_size())  # the global batch, split over the ranks
        # Different seeds per domain, so that the source and target orders are not the same permutation.
        source = make_stream(data.source_train, settings.batch_size, seed=2 * run.seed, **streams)
        target = make_stream(data.target_train, settings.batch_size, seed=2 * run.seed + 1, **streams)
        self.eval_splits = (to_device(data.source_val, run.device), to_device(data.target_test, run.device))
        self.state = TrainState(engine, source, target)
        self.started = run.started
        self.progress: Progress | None = None  # from `begin`

    def resume(self, checkpoint: dict[str, Any]) -> None:
        self.state.load_state_dict(checkpoint, self.run.device, checkpoint_path(self.run.run_dir))
        log.info("resumed from step %d of %d", self.state.step, self.settings.steps)

    def begin(self) -> None:
        """The clock (unless the run's), the network in training mode, the progress line (rank 0's)."""
        if self.started is None:
            self.started = time.time()
        self.engine.method.train()
        mode = self.settings.progress if distributed.is_main() else "off"
        self.progress = Progress(self.settings.steps, mode, start_step=self.state.step)

    def step(self, step: int, diagnose: bool) -> None:
        """One update on the next source and target batches. Its metrics: device tensors wait in
        `pending` for the next log (read in one sync); plain floats (λ, lr) are kept as of this step."""
        state, method, to_input = self.state, self.engine.method, self.engine.runtime.to_input
        state.step = step
        progress = (step - 1) / self.settings.steps
        if method.target_pass_due(progress, step / self.settings.steps):
            self._show_target(method)
        source_x = source_y = None
        if method.reads_source(progress):  # a source-free stage never touches the source stream
            source_x, source_y = next(state.source)
            source_x = to_input(source_x)
        target_x, target_y = next(state.target)
        batch = Batch(source_x, source_y, to_input(target_x), target_y if method.uses_target_labels else None)
        metrics = self.engine.step(batch, progress=progress, diagnose=diagnose)
        for name, value in metrics.items():
            if isinstance(value, Tensor):
                state.pending.setdefault(name, []).append(value)
            else:
                state.latest[name] = value

    def _show_target(self, method) -> None:
        """The method's pass over the target training split (`Method.observe_target`): its labels withheld."""
        data = self.data
        outputs = predict_split(
            method, data.target_train, self.settings.eval_batch_size, data.mean, data.std, data.num_workers
        )
        method.observe_target(outputs.features, outputs.logits)

    def log(self, step: int) -> None:
        """Log the mean of each metric since the last log (over the ranks) with the latest schedule
        values; raise `Diverged` if one is NaN or infinite."""
        state, settings = self.state, self.settings
        means = {name: torch.stack(values).mean() for name, values in state.pending.items()}
        means = distributed.all_reduce_mean(means)  # over the ranks, in one collective; one process: as is
        state.logged = {name: value.item() for name, value in means.items()} | state.latest
        self.logger.log(step, state.logged)
        state.pending.clear()
        # The line ends before an evaluation (at this step or before the next log), whose log line follows.
        end_line = (-step) % settings.eval_every < settings.log_every or step == settings.steps
        self.progress.update(step, state.logged, end_line=end_line)
        non_finite = {name: value for name, value in state.logged.items() if not math.isfinite(value)}
        if non_finite:
            self.progress.close()
            raise Diverged(step, non_finite)

    def evaluate(self, step: int) -> None:
        """Evaluate and log it (rank 0: the others wait), then give every rank the record: each keeps
        them all, as its checkpoint and summary hold them."""
        evaluations = self.state.evaluations
        if distributed.is_main():
            record = self._evaluation(step)
            self.logger.log(step, {k: v for k, v in record.items() if k != "step"})
            evaluations.append(record)
            logged = self.state.logged
            log.info(
                "step %d/%d  source/acc %.4f  target/acc %.4f  train/domain_acc %s",
                step,
                self.settings.steps,
                record["source/acc"],
                record["target/acc"],
                f"{logged['train/domain_acc']:.3f}" if "train/domain_acc" in logged else "n/a",
            )
        if distributed.world_size() > 1:
            record = distributed.broadcast_object(evaluations[-1] if distributed.is_main() else None)
            if not distributed.is_main():
                evaluations.append(record)

    def _evaluation(self, step: int) -> dict[str, float]:
        """The accuracies on the source validation and target test splits, and the label-free
        selection criteria: one pass per split, whose outputs they all read."""
        data, settings = self.data, self.settings
        source_out, target_out = (
            predict_split(self.engine.method, split, settings.eval_batch_size, data.mean, data.std, data.num_workers)
            for split in self.eval_splits
        )
        source_acc, target_acc = accuracy(source_out, data.num_classes), accuracy(target_out, data.num_classes)
        record = {
            "step": step,
            "source/acc": source_acc["acc"],
            "target/acc": target_acc["acc"],
            "target/acc_per_class_mean": target_acc["acc_per_class_mean"],
        }
        # Counted from the evaluations so far, which a checkpoint restores: resume keeps the same schedule.
        every = settings.reverse_validation_every
        reverse = every > 0 and (len(self.state.evaluations) + 1) % every == 0
        # The target's labels are not passed: these criteria are what a user without them can compute.
        return record | label_free_criteria(
            source_out.features,
            source_out.logits,
            source_out.labels,
            target_out.features,
            target_out.logits,
            reverse=reverse,
        )

    def requested_signal(self, agree: bool) -> int | None:
        """The signal to stop on after this step, if any. On several processes, only where `agree` (the
        first step, log steps: a collective): they stop at the first one where a rank has it."""
        signum = self.stop.signum if self.stop is not None else None
        if distributed.world_size() > 1:
            signum = distributed.agreed_signal(signum) if agree else None
        return signum

    def save_checkpoint(self) -> None:
        """The training state, and beside it the run's own facts: what config wrote it, its W&B run, its time."""
        saved = self.state.state_dict()  # on every rank: it gathers the ranks' generators
        if distributed.is_main():
            own = {"wandb_run_id": self.logger.wandb_run_id, "elapsed_s": time.time() - self.started}
            save_checkpoint(self.run.run_dir, saved | self.run.facts | own)

    def finish(self) -> dict:
        """The summary's results: the final evaluation and the one each selection criterion picks."""
        self.progress.close()
        distributed.check_same_parameters(self.engine.method)  # several processes: they must end as one model
        for split in (self.data.source_train, self.data.target_train):  # each rank met its own part's bad images
            if isinstance(split, ImageSplit):
                split.skipped.update(distributed.merged(split.skipped))
        evaluations = self.state.evaluations
        steps, method = self.settings.steps, self.engine.method
        # How many steps drew a source batch (`Method.reads_source`): fewer than all, a source-free adaptation.
        source_steps = sum(method.reads_source((step - 1) / steps) for step in range(1, steps + 1))
        reads = {"source_steps": source_steps, "source_free": source_steps < steps}
        return {"final": evaluations[-1]} | summarise(evaluations) | reads  # selection, and what it had to leave out
