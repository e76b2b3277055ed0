"""trainer.precision, trainer.channels_last, trainer.compile, trainer.threads, and no host sync on the step path.

CPU only: bf16 autocast runs on the CPU, fp16 too (with its gradient scaler), channels-last is a
layout the CPU kernels take, and compilation is checked with a cheap backend. The GPU's own proof
of the no-sync claim is `python -m dann.bench --sync-check`.
"""

import functools
import json
import os
from dataclasses import replace

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from dann.builders import build_engine, build_network
from dann.config.validate import validate
from dann.data import Split, TensorStream
from dann.errors import ConfigError
from dann.methods import Batch
from dann.runs.checkpoint import checkpoint_path, read_checkpoint
from dann.runs.launch import run
from dann.runs.tracking import RunLogger
from dann.training.loop import RunContext, TrainState, train
from dann.training.precision import Runtime, cpu_threads, prepare, resolve_runtime
from dann.training.settings import TrainerSettings
from tests.helpers import SHORT_RUN, compose_config, moons_batch, moons_dann_with_quick_evaluation

CPU = torch.device("cpu")
DIGITS = (3, 28, 28)


def make(method: str, *overrides: str, input_shape=(2,), num_classes=2, seed=0, runtime=Runtime.FP32):
    """The engine training `method` in `runtime`, as dann.run builds it: the network in its layout first."""
    torch.manual_seed(seed)
    cfg = compose_config(f"method={method}", "trainer.steps=100", *overrides)
    network = build_network(cfg, input_shape, num_classes)
    prepare(network, runtime)
    return build_engine(cfg, network, runtime)


def make_digits(method: str = "dann", runtime=Runtime.FP32):
    return make(method, "model=mnist_cnn", "optim=sgd", input_shape=DIGITS, num_classes=10, runtime=runtime)


def digits_batch(n: int = 8) -> Batch:
    g = torch.Generator().manual_seed(2)
    return Batch(torch.randn(n, *DIGITS, generator=g), torch.randint(0, 10, (n,), generator=g), torch.randn(n, *DIGITS))


def test_auto_resolves_to_the_float32_path_on_the_cpu_and_explicit_values_are_kept():
    assert resolve_runtime("auto", "auto", False, CPU, DIGITS) == Runtime.FP32
    assert resolve_runtime("bf16", True, True, CPU, (2,)) == Runtime("bf16", channels_last=True, compile=True)
    defaults = compose_config().trainer
    assert (defaults.precision, defaults.channels_last, defaults.compile) == ("auto", "auto", False)


@pytest.mark.parametrize(
    "override",
    [
        "trainer.precision=fp8",
        "trainer.channels_last=maybe",
        "trainer.compile=1",
        "trainer.compile=auto",
        "trainer.threads=0",
        "trainer.threads=many",
        "trainer.threads=1.5",
    ],
)
def test_a_bad_value_is_refused_naming_its_key(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        validate(compose_config(override))


def test_bf16_autocast_runs_the_network_in_bf16_and_the_losses_in_float32():
    engine = make_digits(runtime=Runtime("bf16"))
    method = engine.method
    seen = []
    method.network.feature_extractor.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    metrics = engine.step(digits_batch(), progress=0.5)  # the engine autocasts the step to its runtime's precision
    assert seen == [torch.bfloat16]  # autocast is on: the convolutions ran in bf16
    # ... and the losses did not: autocast computes cross-entropy and BCE-with-logits in float32.
    assert metrics["train/label_loss"].dtype == metrics["train/domain_loss"].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in method.network.parameters())  # float32 master weights


def test_fp16_uses_a_gradient_scaler_whose_state_a_checkpoint_restores():
    engine = make("dann", runtime=Runtime("fp16"))
    network = engine.method.network
    assert isinstance(engine.grad_scaler, torch.amp.GradScaler)
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    metrics = engine.step(moons_batch(False), progress=0.1)
    assert metrics["train/label_loss"].dtype == torch.float32
    assert any(not torch.equal(before[n], p) for n, p in network.named_parameters())  # it stepped

    engine.grad_scaler.update(1234.0)  # a scale no fresh scaler has
    data = Split(torch.randn(32, 2), torch.randint(0, 2, (32,)))
    streams = [TensorStream(data, 8, seed, CPU) for seed in (0, 1)]
    saved = TrainState(engine, *streams).state_dict()
    assert saved["grad_scaler"]["scale"] == 1234.0

    resumed = make("dann", runtime=Runtime("fp16"))
    TrainState(resumed, *streams).load_state_dict(saved, CPU)
    assert resumed.grad_scaler.get_scale() == 1234.0
    # bf16 and fp32 have no scaler, and their checkpoints save None.
    assert make("dann", runtime=Runtime("bf16")).grad_scaler is None and make("dann").grad_scaler is None
    assert TrainState(make("dann"), *streams).state_dict()["grad_scaler"] is None


def test_channels_last_converts_the_network_and_the_image_batches_and_computes_the_same():
    plain, nhwc = make_digits(), make_digits(runtime=Runtime(channels_last=True))
    convs = [m for m in nhwc.method.network.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert nhwc.method.state_dict().keys() == plain.method.state_dict().keys()

    batch = digits_batch()
    runtime = Runtime(channels_last=True)
    converted = replace(batch, source_x=runtime.to_input(batch.source_x), target_x=runtime.to_input(batch.target_x))
    assert converted.source_x.is_contiguous(memory_format=torch.channels_last)
    assert runtime.to_input(torch.ones(4, 2)).is_contiguous()  # vectors pass through
    a, b = plain.step(batch, 0.3), nhwc.step(converted, 0.3)
    for name in ("train/label_loss", "train/domain_loss"):
        assert torch.allclose(a[name], b[name], atol=1e-5)


def test_compiling_keeps_the_checkpoint_keys_and_lambda_and_lr_changes_do_not_recompile(monkeypatch):
    # The production path (the engine's torch.compile of the whole loss computation), with a backend that
    # compiles in a second on a CPU.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    for name in ("dann", "source_only"):  # source_only also runs its extractor in eval mode: two graphs
        engine = make(name, "optim=sgd", runtime=Runtime(compile=True))  # annealed lr: it changes every step
        data = Split(torch.randn(32, 2), torch.randint(0, 2, (32,)))
        streams = [TensorStream(data, 8, seed, CPU) for seed in (0, 1)]
        keys = make(name, "optim=sgd").method.state_dict().keys()  # the same method, not compiled
        assert TrainState(engine, *streams).state_dict()["method"].keys() == keys  # checkpoints unchanged
        for step in range(2):  # the first steps compile
            engine.step(moons_batch(False), progress=step / 10)
        graphs = counters["stats"]["unique_graphs"]
        assert graphs > 0  # the loss computation is compiled
        lambdas, lrs = set(), set()
        with torch._dynamo.config.patch(error_on_recompile=True):
            for step in range(2, 6):
                metrics = engine.step(moons_batch(False), progress=step / 10)
                lambdas.add(metrics["train/lambda"])
                lrs.add(metrics["train/lr"])
        assert len(lrs) == 4 and (name == "source_only" or len(lambdas) == 4)  # they did change
        assert counters["stats"]["unique_graphs"] == graphs
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ["dann", "source_only"])
def test_a_step_reads_nothing_back_from_the_device(name, host_reads):
    engine = make_digits(name, runtime=Runtime("bf16"))
    for step in range(3):  # as on the loop's non-logging steps: no diagnostics
        engine.step(digits_batch(), progress=step / 3, diagnose=False)
    assert host_reads == []


def test_the_loop_reads_device_values_only_at_log_and_evaluation_steps(tmp_path, host_reads):
    cfg, data, engine = moons_dann_with_quick_evaluation(Runtime("bf16"))
    steps, engine_step = 6, engine.step
    reads_by_step: dict[int, list[str]] = {}

    def counted(batch, progress, diagnose=False):
        step = round(progress * steps) + 1
        reads_by_step[step - 1] = list(host_reads)  # what the loop read after the previous step
        host_reads.clear()
        return engine_step(batch, progress, diagnose)

    engine.step = counted
    # 6 * 16 examples per domain, under one epoch: no epoch boundary (a CPU permutation copied over) inside.
    assert steps * 16 < min(len(data.source_train), len(data.target_train))
    loop = TrainerSettings(
        steps=steps, batch_size=16, log_every=100, eval_every=100, checkpoint_every=100, progress="off"
    )
    wandb = OmegaConf.to_container(cfg.logger.wandb)
    with RunLogger(tmp_path, wandb=wandb, config={}, job_type="dann") as logger:
        train(engine, data, logger, loop, RunContext(seed=0, device=CPU, run_dir=tmp_path))
    assert sorted(reads_by_step) == list(range(steps))
    assert {step: reads for step, reads in reads_by_step.items() if step >= 1 and reads} == {}  # steps 1-5
    assert host_reads  # the last step logs and evaluates: the recorder does see reads


def test_a_run_records_the_resolved_precision_in_its_summary(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    summary = run(compose_config(*SHORT_RUN, "trainer.precision=bf16"), tmp_path)  # dann.run's own, in process
    runtime = {"precision": "bf16", "channels_last": False, "compile": False, "device": "cpu", "threads": 1}
    assert summary["runtime"] == runtime
    assert json.loads((tmp_path / "summary.json").read_text())["runtime"] == summary["runtime"]
    assert summary["config"]["trainer"]["precision"] == "bf16"


def test_a_checkpoint_resumes_only_in_the_runtime_it_was_trained_in():
    """`auto` resolves per device: a bf16 checkpoint (a GPU's auto) must not go on in float32 on a CPU."""
    from dann.runs.launch import _check_same_runtime

    cpu = torch.device("cpu")
    on_cpu = resolve_runtime("auto", "auto", False, cpu, (3, 28, 28))
    _check_same_runtime({"runtime": on_cpu.as_dict()}, on_cpu, cpu)  # the same: resumes
    _check_same_runtime({}, on_cpu, cpu)  # written before checkpoints recorded it: resumes
    _check_same_runtime(None, on_cpu, cpu)  # a fresh start
    on_gpu = Runtime(precision="bf16", channels_last=True, compile=False)
    with pytest.raises(ConfigError, match=r"precision bf16 → fp32, channels_last True → False.*trainer.resume=false"):
        _check_same_runtime({"runtime": on_gpu.as_dict()}, on_cpu, cpu)


# --- trainer.threads: how many CPU threads, chosen on purpose ------------------------------------------------

IMAGES = (3, 32, 32)
VECTORS = (2,)  # the moons


@pytest.mark.parametrize(
    "requested, input_shape, env, threads",
    [
        ("auto", IMAGES, {}, 8),  # every CPU of the affinity mask (8 of the machine's cores, below)
        ("auto", VECTORS, {}, 1),  # a toy MLP: one thread, whatever the cores
        ("auto", IMAGES, {"SLURM_CPUS_PER_TASK": "4"}, 4),
        ("auto", IMAGES, {"SLURM_CPUS_PER_TASK": "16"}, 8),  # SLURM caps the mask, never raises it
        ("auto", IMAGES, {"SLURM_CPUS_PER_TASK": "lots"}, 8),  # not a count: ignored
        ("auto", IMAGES, {"LOCAL_WORLD_SIZE": "2"}, 4),  # torchrun's processes on this node share them
        ("auto", IMAGES, {"LOCAL_WORLD_SIZE": "3", "SLURM_CPUS_PER_TASK": "4"}, 1),
        ("auto", IMAGES, {"LOCAL_WORLD_SIZE": "16"}, 1),  # at least one
        ("auto", VECTORS, {"OMP_NUM_THREADS": "3"}, 3),  # the user's own choice wins over auto
        ("auto", IMAGES, {"OMP_NUM_THREADS": "2", "SLURM_CPUS_PER_TASK": "4"}, 2),
        ("auto", IMAGES, {"OMP_NUM_THREADS": "4,2"}, 4),  # OpenMP's nested levels: the outer one
        ("auto", IMAGES, {"OMP_NUM_THREADS": ""}, 8),  # set but empty: not a choice
        (5, VECTORS, {"OMP_NUM_THREADS": "3"}, 5),  # an explicit trainer.threads is used as given
        (2, IMAGES, {"LOCAL_WORLD_SIZE": "8"}, 2),
    ],
)
def test_the_thread_count_is_what_the_process_may_use(monkeypatch, requested, input_shape, env, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 3, 4, 5, 8, 9, 10, 11})  # 8 of more cores
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert cpu_threads(requested, input_shape, env) == threads


def test_more_threads_than_cpus_are_used_as_asked_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    with caplog.at_level("WARNING", logger="dann"):
        assert cpu_threads(4, IMAGES, {}) == 4
        assert cpu_threads(2, IMAGES, {}) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "trainer.threads=4 exceeds the 2 CPUs this process may use: the threads will share them"
    ]


@pytest.mark.parametrize(
    "override, env, threads",
    [("trainer.threads=1", {}, 1), ("trainer.threads=2", {}, 2), (None, {}, 1), (None, {"OMP_NUM_THREADS": "2"}, 2)],
)
def test_a_run_trains_with_the_threads_it_chose_and_records_them(tmp_path, monkeypatch, override, env, threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = torch.get_num_threads()
    summary = run(compose_config(*SHORT_RUN, *([override] if override else [])), tmp_path)
    assert summary["runtime"]["threads"] == threads
    assert json.loads((tmp_path / "summary.json").read_text())["runtime"]["threads"] == threads
    assert read_checkpoint(checkpoint_path(tmp_path))["threads"] == threads  # torch's count while it trained
    assert torch.get_num_threads() == before  # an in-process caller keeps its own count
