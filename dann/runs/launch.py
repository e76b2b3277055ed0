"""One run of one config in its run directory: claim the directory (lock, validate, resume or start over),
train, and write its summary.json. `dann.run` (the Hydra entry) imports this only once Hydra has composed a
config, so that `dann-run --help`, a shell completion or a Hydra error never wait for torch.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dann.builders import build_dataset, build_engine, build_network
from dann.config.validate import drop_unused_lambda_schedule, validate, validate_against_data, validate_model_input
from dann.data import DomainData, DomainPair, labeled_subset
from dann.errors import ConfigError, RunDirError, describe_error
from dann.runs.checkpoint import (
    checkpoint_path,
    describe_differences,
    discard_checkpoint,
    load_checkpoint,
    read_checkpoint,
)
from dann.runs.directory import (
    RunDirLock,
    check_not_a_sweep,
    previous_summary,
    unwritable,
    write_hydra_files,
)
from dann.runs.identity import identity
from dann.runs.outcome import RunOutcome
from dann.runs.signals import StopRequests
from dann.runs.tracking import RunLogger, write_json_atomic
from dann.training import distributed
from dann.training.engine import Engine
from dann.training.loop import RunContext, check_resumable, train
from dann.training.precision import Runtime, cpu_threads, keep_freed_memory, prepare, resolve_runtime
from dann.training.settings import TrainerSettings

log = logging.getLogger("dann")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def run(
    cfg: DictConfig,
    run_dir: Path,
    wandb_group: str | None = None,
    wandb_name: str | None = None,
    hydra_files: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one configuration in `run_dir`; write and return its summary.

    The directory holds one configuration, used by one process at a time (`RunDirLock`).
    A run that already finished there with the same config is not repeated (unless
    `trainer.rerun_finished`); with another config it is refused. A run that was interrupted
    resumes from its last checkpoint (unless not `trainer.resume`, which starts over).
    `hydra_files`: `.hydra/` files to write once the directory is known to be this run's.
    An invalid config raises `ConfigError` (recorded as a failed summary) before anything else.
    """
    drop_unused_lambda_schedule(cfg)  # a preset's λ-schedule settings, switched to a method without one
    with ExitStack() as held:
        # On several processes (dann.training.distributed) rank 0 alone locks, checks and writes the directory;
        # the others follow its decision, and read the checkpoint it chose themselves.
        finished, checkpoint = distributed.main_decides(
            lambda: _claim(cfg, run_dir, hydra_files, held), for_others=lambda claim: (claim[0], claim[1] is not None)
        )
        if finished is not None:
            return finished
        if not distributed.is_main():  # told whether rank 0 resumes
            checkpoint = read_checkpoint(checkpoint_path(run_dir)) if checkpoint else None
        config = OmegaConf.to_container(cfg, resolve=True)  # validate checked that it resolves
        return _train_run(cfg, config, run_dir, checkpoint, wandb_group, wandb_name)


def _claim(
    cfg: DictConfig, run_dir: Path, hydra_files: dict[str, str] | None, held: ExitStack
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Lock `run_dir` (for as long as `held`) and decide what this launch does there: (the finished
    run's summary to return instead of training, or None; the checkpoint to resume from, or None)."""
    check_not_a_sweep(run_dir)  # before the lock, whose file would be the first thing written there
    held.enter_context(RunDirLock(run_dir))
    try:
        validate(cfg)  # first: everything below reads the config (and resolves it)
        trainer = TrainerSettings.from_config(cfg.trainer)
        distributed.check_settings(trainer.batch_size, trainer.device)
    except ConfigError as e:
        _record_invalid(run_dir, cfg, e, hydra_files)
        raise
    config = OmegaConf.to_container(cfg, resolve=True)  # validate checked that it resolves
    previous = previous_summary(run_dir)
    finished = previous is not None and previous["status"] == "finished"
    if finished and not trainer.rerun_finished:
        _check_same_config(run_dir, previous, config)
        _check_result(run_dir, previous)
        log.info("%s already finished; not run again (trainer.rerun_finished=true to force)", run_dir)
        return previous, None
    if finished and trainer.resume:  # a rerun of the same config; another one replaces it only on request
        _check_same_config(run_dir, previous, config)
    # A rerun trains from step 0: resuming the final checkpoint would train nothing and report the old numbers.
    start_over = finished or not trainer.resume
    checkpoint = None if start_over else load_checkpoint(run_dir, config)
    if start_over:
        discard_checkpoint(run_dir)
        _discard_metrics(run_dir)
    if hydra_files:
        write_hydra_files(run_dir, hydra_files)
    return None, checkpoint


def _discard_metrics(run_dir: Path) -> None:
    """Remove the old run's metrics.jsonl when starting over: none of its records belong to the new run
    (and a corrupt line in it must not stop the run that replaces it)."""
    path = run_dir / "metrics.jsonl"
    try:
        path.unlink(missing_ok=True)  # a link is removed itself, not the file it points to
    except OSError as e:
        raise unwritable(path, e) from None


def holds_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds a run (finished, interrupted, diverged, failed in training…): anything but
    nothing at all or the record of a config refused before it ran (a summary without `config`)."""
    if checkpoint_path(run_dir).exists() or (run_dir / "metrics.jsonl").exists():
        return True
    if not (run_dir / "summary.json").exists():
        return False
    summary = previous_summary(run_dir)
    return summary is None or summary["status"] not in ("failed", "skipped") or "config" in summary


def _check_same_runtime(checkpoint: dict[str, Any] | None, runtime: Runtime, device: torch.device) -> None:
    """Refuse to resume in another precision or layout than the checkpoint's: `auto` resolves per
    device, so a bf16 run resumed on a CPU would quietly go on in float32 under the same config."""
    before = checkpoint.get("runtime") if checkpoint is not None else None
    if before is not None and before != runtime.as_dict():
        changed = ", ".join(
            f"{key} {before.get(key)} → {value}" for key, value in runtime.as_dict().items() if before.get(key) != value
        )
        raise ConfigError(
            f"trainer: the checkpoint was trained with {before}; on {device} the settings resolve otherwise "
            f"({changed}). Resume it on the kind of device it started on, or start over with trainer.resume=false"
        )


def _corrupt_summary(run_dir: Path, what: str) -> RunDirError:
    return RunDirError(
        f"{run_dir / 'summary.json'}: {what}, so the finished run it records cannot be used; "
        "trainer.rerun_finished=true trainer.resume=false runs it again from the start (replacing it), "
        "or use another output directory (hydra.run.dir=…)"
    )


def _check_same_config(run_dir: Path, summary: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuse to report a finished run's result for a config (resolved) other than the one that produced it."""
    stored = summary.get("config")
    if stored is None and checkpoint_path(run_dir).exists():  # written before summaries carried the config
        stored = read_checkpoint(checkpoint_path(run_dir))["config"]
    if stored is None:
        raise RunDirError(
            f"{run_dir} holds a finished run whose config is not recorded, so it cannot be matched to this one; "
            "use another output directory (hydra.run.dir=…)"
        )
    if not isinstance(stored, dict):
        raise _corrupt_summary(run_dir, f"its config is a {type(stored).__name__}, not a mapping")
    try:
        differences = describe_differences(stored, config)
    except (TypeError, KeyError, AttributeError, ValueError) as e:  # a hand-edited or damaged config
        raise _corrupt_summary(run_dir, f"its config cannot be read ({describe_error(e)})") from None
    if differences:
        raise RunDirError(
            f"{run_dir} already holds a finished run of another config ({differences}); "
            "use another output directory (hydra.run.dir=…), or trainer.rerun_finished=true "
            "trainer.resume=false to replace it"
        )


def _check_result(run_dir: Path, summary: dict[str, Any]) -> None:
    """A finished summary must hold what is returned and printed of it: `final` accuracies, `selection`."""
    final = summary.get("final")
    if not isinstance(final, dict):
        raise _corrupt_summary(run_dir, "it says finished but has no final evaluation ('final')")
    for metric in ("source/acc", "target/acc"):
        if not isinstance(final.get(metric), (int, float)) or isinstance(final.get(metric), bool):
            raise _corrupt_summary(run_dir, f"its final evaluation has no number for {metric}")
    if not isinstance(summary.get("selection"), dict):
        raise _corrupt_summary(run_dir, "it says finished but has no 'selection'")
    missing = [key for key in ("method", "source", "target", "seed") if key not in summary]
    if missing:
        raise _corrupt_summary(run_dir, f"it lacks {', '.join(missing)}")


def base_summary(cfg: DictConfig, config: dict[str, Any], dataset: DomainPair, status: str) -> dict[str, Any]:
    """The fields every summary.json has, whatever its status; `cfg` must have passed `validate`,
    `config` is it resolved, `dataset` its dataset pair (built, not loaded)."""
    source, target = dataset.source, dataset.target
    return {
        "method": cfg.method.name,
        "lambda": float(cfg["lambda"]),  # `lambda=1` on the command line is an int
        "dataset": cfg.dataset.name,
        "source": source.name,  # canonical names, not the aliases given (`A` → `amazon`)
        "target": target.name,
        "seed": cfg.seed,
        "steps": TrainerSettings.from_config(cfg.trainer).steps,
        "protocol": dataset.protocol,
        "status": status,
        # The whole resolved config: what `dann.report` and reruns identify this run by (dann.runs.identity).
        "config": config,
    }


def _train_run(
    cfg: DictConfig,
    config: dict[str, Any],
    run_dir: Path,
    checkpoint: dict[str, Any] | None,
    wandb_group: str | None,
    wandb_name: str | None,
) -> dict[str, Any]:
    """Train in `run_dir`, from `checkpoint` if given, and return the summary: seed, device, data, network,
    engine, checks, logger, train. `RunOutcome` writes the summary however the run ends."""
    keep_freed_memory()  # a CPU step no longer faults its activations back in from the kernel each time
    started = time.time()
    dataset = build_dataset(cfg)  # reads no file: validate built it already
    summary = base_summary(cfg, config, dataset, status="failed")
    if distributed.world_size() > 1:  # one process: the summary is as it always was
        summary["world_size"] = distributed.world_size()
    if checkpoint is not None:
        started -= checkpoint["elapsed_s"]
    resumed_step = checkpoint["step"] if checkpoint is not None else None
    trainer = TrainerSettings.from_config(cfg.trainer)
    # Signals are caught from here: one while data loads or W&B starts is honoured before the first step.
    with _threads_restored(), StopRequests() as stop, RunOutcome(run_dir, summary, started, resumed_step) as outcome:
        seed_everything(cfg.seed)
        device = distributed.device(trainer.device)
        data, threads = _load(cfg, dataset, trainer)
        engine = _build_engine(cfg, data, device, trainer)
        runtime, method = engine.runtime, engine.method
        summary["runtime"] = runtime.as_dict() | {"device": str(device), "threads": threads}  # what actually ran
        if checkpoint is not None:  # before metrics.jsonl is rewound to its step: a refused one changes nothing
            _check_resumable(run_dir, checkpoint, engine, device)
        fraction = dataset.target_labeled_fraction
        summary["target_labeled_fraction"] = fraction if method.uses_target_labels else 0.0
        if method.uses_target_labels and fraction < 1:
            data = replace(data, target_train=labeled_subset(data.target_train, fraction))
        validate_against_data(cfg, data)
        log.info(
            "%s on %s → %s (%s), λ=%s, %d steps on %s",
            cfg.method.name,
            data.source,
            data.target,
            cfg.dataset.name,
            cfg["lambda"],
            trainer.steps,
            device,
        )
        with _run_logger(cfg, config, run_dir, checkpoint, wandb_group, wandb_name) as logger:
            # The checkpoint carries the run's identity: resuming checks it against the config given then.
            # The thread count too: CPU kernels reduce in another order on another count (see _check_same_threads).
            facts = {"config": identity(config), "runtime": runtime.as_dict(), "threads": torch.get_num_threads()}
            outcome.committed()  # from here the run writes its files: its summary must say how it ended
            context = RunContext(cfg.seed, device, run_dir, facts, started)
            summary |= train(engine, data, logger, trainer, context, checkpoint, stop)
            summary["skipped_images"] = data.skipped_images
            summary["split_sizes"] = data.split_sizes
            outcome.finished()
            logger.log_summary(summary)
    return summary


@contextmanager
def _threads_restored() -> Iterator[None]:
    """The run sets torch's CPU thread count; an in-process caller (a notebook) gets its own back after."""
    inherited = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(inherited)


def _load(cfg: DictConfig, dataset: DomainPair, trainer: TrainerSettings) -> tuple[DomainData, int]:
    """The dataset's splits, and the CPU thread count set for the run (before the network's first op:
    results depend on it); the input shape checked against the model before a network that could not
    take it is built."""
    data = dataset.load()
    threads = cpu_threads(trainer.threads, data.input_shape)
    torch.set_num_threads(threads)
    validate_model_input(cfg, data.input_shape)
    return data, threads


def _build_engine(cfg: DictConfig, data: DomainData, device: torch.device, trainer: TrainerSettings) -> Engine:
    """The network on `device` (wrapped for several processes) in the run's precision and layout, and the
    engine that trains the method on it."""
    network = build_network(cfg, data.input_shape, data.num_classes).to(device)
    network = distributed.prepare_network(network, device, cfg.seed)  # one process: unchanged
    runtime = resolve_runtime(trainer.precision, trainer.channels_last, trainer.compile, device, data.input_shape)
    prepare(network, runtime)
    return build_engine(cfg, network, runtime)


def _check_resumable(run_dir: Path, checkpoint: dict[str, Any], engine: Engine, device: torch.device) -> None:
    """Refuse a checkpoint this run cannot continue exactly: another precision or layout, a structure
    other than this engine's; warn of another CPU thread count."""
    _check_same_runtime(checkpoint, engine.runtime, device)
    _check_same_threads(checkpoint)
    check_resumable(checkpoint_path(run_dir), checkpoint, engine)


def _run_logger(
    cfg: DictConfig,
    config: dict[str, Any],
    run_dir: Path,
    checkpoint: dict[str, Any] | None,
    wandb_group: str | None,
    wandb_name: str | None,
) -> RunLogger:
    """metrics.jsonl (rewound to the checkpoint's step) and W&B (the checkpoint's run, resumed), rank 0's."""
    return RunLogger(
        run_dir,
        wandb=config["logger"]["wandb"],
        config=config,
        job_type=cfg.method.name,
        resume_step=checkpoint["step"] if checkpoint else 0,
        wandb_run_id=checkpoint["wandb_run_id"] if checkpoint else None,
        group=wandb_group,
        name=wandb_name,
        enabled=distributed.is_main(),  # the other ranks write nothing, and start no W&B run
    )


def _check_same_threads(checkpoint: dict[str, Any] | None) -> None:
    """Warn when resuming under another CPU thread count: CPU kernels split their sums by thread, so the
    run goes on from the same state but not bitwise as it would have (docs/reference/run-directory.md, "Stopping a
    run")."""
    before = checkpoint.get("threads") if checkpoint is not None else None
    if before is not None and before != torch.get_num_threads():
        log.warning(
            "resuming with %d CPU threads a run checkpointed with %d: it continues from the same state, but "
            "not bitwise as it would have (trainer.threads=%d for an exact resume)",
            torch.get_num_threads(),
            before,
            before,
        )


def _record_invalid(run_dir: Path, cfg: DictConfig, error: ConfigError, files: dict[str, str] | None) -> None:
    """A failed summary for a config refused by `validate`, only in a directory that holds no run yet:
    an interrupted run's record (and its `.hydra/`, which its checkpoint matches) must survive a bad
    relaunch, and so must a finished one's."""
    if holds_run(run_dir):
        return
    if files:
        write_hydra_files(run_dir, files)

    def value(key: str) -> Any:  # the config may not even resolve
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)

    write_json_atomic(
        run_dir / "summary.json",
        {
            "method": value("method.name"),
            "lambda": value("lambda"),
            "dataset": value("dataset.name"),
            "source": str(value("dataset.source")),
            "target": str(value("dataset.target")),
            "seed": value("seed"),
            "steps": value("trainer.steps"),
            "status": "failed",
            "error": str(error),
        },
    )


def mark_skipped(run_dir: Path) -> None:
    """A sweep job refused for its config: skipped, not failed (unless the directory holds a result)."""
    summary = previous_summary(run_dir)
    if summary is not None and summary["status"] == "failed":
        write_json_atomic(run_dir / "summary.json", summary | {"status": "skipped"})
