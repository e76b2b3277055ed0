"""The contract between every method and the engine, checked for each config in conf/method/.

A new method gets every test here by adding its `conf/method/<name>.yaml`, with nothing else to write:
- its metrics: the names that the progress line, the reports and the charts read;
- no host sync on the steps the loop does not log;
- the gradient diagnostics: present on logged steps, equal to `torch.autograd.grad` at the features;
- an exact resume after SIGTERM, through the real signal handler and checkpoint file;
- two gloo processes (DistributedDataParallel) train the one-process recipe.

Each builds the method from the real composed config on the moons toy, the way `dann.run` does.
"""

from __future__ import annotations

import ast
import functools
import operator
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omegaconf import OmegaConf

import dann.methods
from dann.builders import build_dataset, build_engine, build_network
from dann.config.compose import CONF_DIR
from dann.config.validate import drop_unused_lambda_schedule
from dann.errors import Interrupted
from dann.methods import Batch
from dann.runs.checkpoint import checkpoint_path, read_checkpoint
from dann.runs.launch import seed_everything
from dann.runs.signals import StopRequests
from dann.runs.tracking import RunLogger
from dann.training import distributed
from dann.training.engine import Engine
from dann.training.loop import RunContext, train
from dann.training.settings import TrainerSettings
from tests.helpers import compose_config, read_jsonl

METHODS = sorted(path.stem for path in (CONF_DIR / "method").glob("*.yaml"))
CPU = torch.device("cpu")
LOGGED = {"train/label_loss", "train/domain_loss", "train/domain_acc", "train/lambda", "train/lr"}
ALWAYS = {"train/domain_loss", "train/lambda", "train/lr"}  # in every stage; label_loss and domain_acc where there are
DIAGNOSTICS = {"train/grad_norm_label", "train/grad_norm_domain", "train/grad_ratio"}
BATCH = 16  # per domain; the moons training splits hold 300 examples each


def build(name: str, *overrides: str):
    """(config, data, engine) for `method=<name>` on the moons, seeded and built as `dann.run` builds them."""
    cfg = compose_config(f"method={name}", "logger=none", *overrides)
    drop_unused_lambda_schedule(cfg)
    seed_everything(cfg.seed)
    data = build_dataset(cfg).load()
    network = distributed.prepare_network(build_network(cfg, data.input_shape, data.num_classes), CPU, cfg.seed)
    engine = build_engine(cfg, network)
    engine.method.train()
    return cfg, data, engine


def batch(data, step: int, rows: slice = slice(0, BATCH)) -> Batch:
    """The `step`-th fixed batch of the training splits (`rows` of it), target labels included."""
    start = step * BATCH
    part = slice(start + rows.start, start + rows.stop)
    source, target = data.source_train, data.target_train
    return Batch(source.inputs[part], source.labels[part], target.inputs[part], target.labels[part])


@pytest.mark.parametrize("name", METHODS)
def test_every_method_logs_the_metrics_reports_read(name: str):
    _, data, engine = build(name)
    for step, diagnose in enumerate([False, True]):
        metrics = engine.step(batch(data, step), progress=step / 2, diagnose=diagnose)
        # The first stage logs them all; a later one may have no label loss or no domain classifier (ADDA, SHOT).
        assert metrics.keys() >= (LOGGED if step == 0 else ALWAYS) | (DIAGNOSTICS if diagnose else set())
        assert diagnose or not metrics.keys() & DIAGNOSTICS  # measured only when asked
        for key, value in metrics.items():
            assert key.startswith("train/"), key
            if isinstance(value, torch.Tensor):  # read at log steps only: a detached scalar on the device
                assert value.shape == () and not value.requires_grad and value.device == CPU, key
                assert torch.isfinite(value), key
            else:
                assert isinstance(value, float), key


@pytest.mark.parametrize("name", METHODS)
def test_no_step_the_loop_does_not_log_reads_a_value_back(name: str, host_reads: list[str]):
    _, data, engine = build(name)
    engine.step(batch(data, 0), progress=0.0)  # the first step may set up (optimiser state)
    host_reads.clear()
    for step in range(1, 4):  # through both stages of two_stage (stage1_fraction 0.5)
        metrics = engine.step(batch(data, step), progress=step / 4)
    assert host_reads == []
    metrics["train/domain_loss"].item()  # what the loop does at a log step: the recorder does see it
    assert host_reads == ["item"]


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("progress", [0.3, 0.9])  # λ > 0 (0 at the start); two_stage: both stages
def test_the_diagnostics_are_the_gradients_at_the_features(name: str, progress: float):
    _, data, engine = build(name)
    engine.step(batch(data, 0), progress=0.0)  # trained a step: the heads are not at their initial values
    method, step_batch = engine.method, batch(data, 1)
    # By hand, on the same parameters: each loss's gradient with respect to the features the method returns.
    phase = method.phases(progress)[0]
    output = method(step_batch, method.scalars(progress), phase)
    features = output.features
    assert features is not None and len(features) >= BATCH  # every method says where its features are
    expected = {}
    for key, names in (("label", ["label"]), ("domain", [n for n in output.losses if n != "label"])):
        losses = [output.losses[n] for n in names if n in output.losses and output.losses[n].requires_grad]
        grad = None
        if losses and features.requires_grad:
            total = functools.reduce(operator.add, losses)
            (grad,) = torch.autograd.grad(total, features, retain_graph=True, allow_unused=True)
        expected[key] = torch.zeros(()) if grad is None else torch.linalg.vector_norm(grad)

    metrics = engine.step(step_batch, progress=progress, diagnose=True)
    assert torch.equal(metrics["train/grad_norm_label"], expected["label"])
    assert torch.equal(metrics["train/grad_norm_domain"], expected["domain"])
    label = expected["label"]
    assert torch.equal(metrics["train/grad_ratio"], expected["domain"] / label if label > 0 else torch.zeros(()))
    if "label" in output.losses and features.requires_grad:  # not vacuous: the label loss does reach them
        assert label > 0


# --- exact resume after SIGTERM ------------------------------------------------------------------

LOOP = TrainerSettings(
    steps=16,
    batch_size=BATCH,
    log_every=4,
    eval_every=8,
    checkpoint_every=8,
    progress="off",
    reverse_validation_every=0,
)


def train_moons(name: str, run_dir: Path, stop_after: int | None = None) -> dict | None:
    """Train `name` on the moons in `run_dir` through `dann.training.loop.train`, resuming from its checkpoint
    if it has one; with `stop_after`, SIGTERM this process during that step. None when interrupted."""
    run_dir.mkdir(exist_ok=True)  # dann.run makes it (Hydra); the loop writes into it
    cfg, data, engine = build(name)
    path = checkpoint_path(run_dir)
    checkpoint = read_checkpoint(path) if path.exists() else None
    if stop_after is not None:
        step, calls = engine.step, []

        def step_then_signal(*args, **kwargs):
            calls.append(1)
            if len(calls) + (checkpoint["step"] if checkpoint else 0) == stop_after:
                os.kill(os.getpid(), signal.SIGTERM)  # the real handler records it; the loop stops after this step
            return step(*args, **kwargs)

        engine.step = step_then_signal
    wandb = OmegaConf.to_container(compose_config("logger=none").logger.wandb)
    resume_step = checkpoint["step"] if checkpoint else None
    with (
        StopRequests() as stop,
        RunLogger(run_dir, wandb=wandb, config={}, job_type=name, resume_step=resume_step) as log,
    ):
        try:
            facts = {"config": {"method": name}}  # what dann.run saves beside the state (its identity)
            return train(engine, data, log, LOOP, RunContext(cfg.seed, CPU, run_dir, facts), checkpoint, stop)
        except Interrupted:
            return None


@pytest.mark.parametrize("name", METHODS)
def test_a_run_stopped_by_sigterm_resumes_exactly(name: str, tmp_path: Path):
    whole = train_moons(name, tmp_path / "whole")
    assert train_moons(name, tmp_path / "stopped", stop_after=5) is None  # between two checkpoints
    assert read_checkpoint(checkpoint_path(tmp_path / "stopped"))["step"] == 5
    resumed = train_moons(name, tmp_path / "stopped")
    assert resumed == whole
    records = [read_jsonl(tmp_path / run / "metrics.jsonl") for run in ("whole", "stopped")]
    assert records[0] == records[1] and len(records[0]) == LOOP.steps // LOOP.log_every + 2  # + 2 evaluations
    weights = [read_checkpoint(checkpoint_path(tmp_path / run))["method"] for run in ("whole", "stopped")]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


# --- two processes ---------------------------------------------------------------------------------

STEPS = 12  # of the global batch BATCH: 192 of the 300 examples, no wrap-around


def train_steps(name: str) -> dict[str, torch.Tensor]:
    """`name`'s weights after STEPS engine steps on the fixed global batches, each process taking its share."""
    _, data, engine = build(name)
    assert isinstance(engine, Engine)
    share = BATCH // distributed.world_size()
    rows = slice(distributed.rank() * share, (distributed.rank() + 1) * share)
    for step in range(STEPS):
        engine.step(batch(data, step, rows), progress=step / STEPS, diagnose=step % 4 == 0)
    return {key: value.clone() for key, value in engine.method.state_dict().items()}


def _two_processes(rank: int, store: str, result: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        trained = {name: train_steps(name) for name in METHODS}
        torch.save(trained, f"{result}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_weights(tmp_path_factory) -> list[dict]:
    """Every method trained by 2 gloo processes through DistributedDataParallel: each rank's weights."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_two_processes, args=(str(folder / "store"), str(folder / "result")), nprocs=2)
    return [torch.load(f"{folder / 'result'}.{rank}", weights_only=True) for rank in (0, 1)]


@pytest.mark.parametrize("name", METHODS)
def test_two_gloo_processes_train_the_one_process_recipe(name: str, two_process_weights: list[dict]):
    one = train_steps(name)
    zero, other = (weights[name] for weights in two_process_weights)
    assert all(torch.equal(zero[key], other[key]) for key in zero)  # DDP keeps the ranks one model
    # The mean of two half-batch gradients is the full batch's up to rounding; CDAN+E normalises its
    # entropy weights per process batch, which moves it by about 1e-5 in 12 steps.
    for key in one:
        torch.testing.assert_close(zero[key], one[key], rtol=1e-4, atol=1e-4, msg=lambda m, key=key: f"{key}: {m}")


def test_the_contract_covers_every_method_config():
    assert len(METHODS) >= 8 and "dann" in METHODS  # an empty glob would leave every test above with no case


def test_no_method_takes_an_optimisation_step_itself():
    """The engine owns the step: no file in dann/methods/ calls backward(), zero_grad() or step()."""
    calls = []
    for path in sorted((Path(dann.methods.__file__).parent).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in ("backward", "zero_grad", "step"):
                    calls.append(f"{path.name}:{node.lineno} {node.func.attr}()")
    assert len(list(Path(dann.methods.__file__).parent.glob("*.py"))) >= 5
    assert calls == []
