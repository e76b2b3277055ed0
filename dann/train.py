"""The step-based training loop: paired source/target streams → `method.update` → logs and evaluations."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from dann.checkpoint import rng_state, run_config, save_checkpoint, set_rng_state
from dann.data import DomainData, make_stream, to_device
from dann.errors import Diverged, Interrupted
from dann.evaluate import evaluate
from dann.interrupt import StopRequests
from dann.methods import Batch, Method
from dann.selection import select
from dann.tracking import RunLogger

log = logging.getLogger(__name__)



def train(
    cfg: DictConfig,
    method: Method,
    data: DomainData,
    logger: RunLogger,
    device: torch.device,
    run_dir: Path,
    checkpoint: dict[str, Any] | None = None,
    started: float | None = None,
    stop: StopRequests | None = None,
) -> dict:
    """Run `cfg.trainer.steps` updates, from `checkpoint` if given; return the final
    evaluation and the one each selection criterion picks.

    `started`: the run's wall-clock origin (`time.time()`, moved back by the time spent
    before a resume), so that checkpoints record the run's whole elapsed time.
    `stop`: when it has a request (SIGTERM, SIGINT), the loop writes a checkpoint after the
    current step and raises `Interrupted`.
    Raises `Diverged` when a logged training metric is NaN or infinite (checked at log
    intervals, where the values are read anyway: no extra host sync).
    """
    trainer = cfg.trainer
    steps = trainer.steps
    streams = dict(mean=data.mean, std=data.std, device=device, num_workers=data.num_workers)
    # Different seeds per domain, so that the source and target orders are not the same permutation.
    source = make_stream(data.source_train, trainer.batch_size, seed=2 * cfg.seed, **streams)
    target = make_stream(data.target_train, trainer.batch_size, seed=2 * cfg.seed + 1, **streams)
    eval_splits = {"source": to_device(data.source_val, device), "target": to_device(data.target_test, device)}

    pending: dict[str, list[Tensor]] = {}  # device tensors since the last log, read in one sync
    latest: dict[str, float] = {}  # schedule values (λ, lr): plain floats, logged as of the last step
    logged: dict[str, float] = {}
    evaluations: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None:
        start = checkpoint["step"]
        method.load_state_dict(checkpoint["method"])
        method.optimizer.load_state_dict(checkpoint["optimizer"])
        method.lr_scheduler.load_state_dict(checkpoint["lr_scheduler"])
        source.load_state_dict(checkpoint["streams"]["source"])
        target.load_state_dict(checkpoint["streams"]["target"])
        pending = {name: list(values.to(device).unbind()) for name, values in checkpoint["pending"].items()}
        latest, logged, evaluations = checkpoint["latest"], checkpoint["logged"], checkpoint["evaluations"]
        set_rng_state(checkpoint["rng"])
        log.info("resumed from step %d of %d", start, steps)
    if started is None:
        started = time.time()

    if stop is not None and stop.requested and start < steps:  # before any step: the state is the checkpoint's
        raise Interrupted(start, stop.signal_name, 128 + stop.signum)
    method.train()
    for step in range(start + 1, steps + 1):
        source_x, source_y = next(source)
        target_x, target_y = next(target)
        batch = Batch(source_x, source_y, target_x, target_y if method.uses_target_labels else None)
        for name, value in method.update(batch, progress=(step - 1) / steps).items():
            if isinstance(value, Tensor):
                pending.setdefault(name, []).append(value)
            else:
                latest[name] = value

        if step % trainer.log_every == 0 or step == steps:
            means = {name: torch.stack(values).mean() for name, values in pending.items()}
            logged = {name: value.item() for name, value in means.items()} | latest
            logger.log(step, logged)
            pending.clear()
            non_finite = {name: value for name, value in logged.items() if not math.isfinite(value)}
            if non_finite:
                raise Diverged(step, non_finite)

        if step % trainer.eval_every == 0 or step == steps:
            record = {"step": step}
            for domain, split in eval_splits.items():
                result = evaluate(method, split, data.num_classes, trainer.eval_batch_size,
                                  data.mean, data.std, data.num_workers)
                record[f"{domain}/acc"] = result["acc"]
                if domain == "target":
                    record["target/acc_per_class_mean"] = result["acc_per_class_mean"]
            logger.log(step, {k: v for k, v in record.items() if k != "step"})
            evaluations.append(record)
            log.info(
                "step %d/%d  source/acc %.4f  target/acc %.4f  train/domain_acc %s",
                step, steps, record["source/acc"], record["target/acc"],
                f"{logged['train/domain_acc']:.3f}" if "train/domain_acc" in logged else "n/a",
            )

        stopping = stop is not None and stop.requested
        if step % trainer.checkpoint_every == 0 or step == steps or stopping:
            save_checkpoint(run_dir, {
                "step": step,
                "method": method.state_dict(),
                "optimizer": method.optimizer.state_dict(),
                "lr_scheduler": method.lr_scheduler.state_dict(),
                "streams": {"source": source.state_dict(), "target": target.state_dict()},
                "pending": {name: torch.stack(values).cpu() for name, values in pending.items()},
                "latest": latest,
                "logged": logged,
                "evaluations": evaluations,
                "rng": rng_state(),
                "config": run_config(cfg),
                "wandb_run_id": logger.wandb_run_id,
                "elapsed_s": time.time() - started,
            })
        if stopping and step < steps:
            raise Interrupted(step, stop.signal_name, 128 + stop.signum)

    return {"final": evaluations[-1], "selection": select(evaluations)}
