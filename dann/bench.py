"""`python -m dann.bench`: what a DANN step costs, against the floor and against the usual eager code.

For each model, with the same network, batch and device, each variant in its own process (its own
heap: its page faults depend on no other variant), after warm-up, the variants taking turns, with the
device synchronised around the timed region only, it times (wall and CPU time, page faults):

- `plain`: a supervised step over the combined source+target batch (2B images, one forward and one
  backward pass): the floor, since DANN cannot be cheaper;
- `source_only` and `dann`: the real `Engine.step` of the method, built by `dann.builders` from the
  config `dann.run` composes, under the run's precision, memory layout and compilation (`dann.training.precision`,
  `--compile`: the whole loss computation, as `trainer.compile`);
- `reference`: DANN written the straightforward way, as most public implementations do: two
  feature-extractor passes (source, then target), a `.item()` per metric per step, float32, eager.

Models: `mnist_cnn` and `svhn_cnn` (`digits`: both; the paper presets' networks and batch sizes)
and `resnet50` (Office-31's network at 224 px, random weights). Every variant reads its batches
from device-resident uint8 images through the training loop's own stream (`dann.data.TensorStream`:
a gather and the normalisation per batch), so data costs the same everywhere.

    python -m dann.bench --models digits,resnet50 --json bench.json --markdown bench.md
    python -m dann.bench --sync-check               # CUDA only: a host sync in a step is an error
    python -m dann.bench --input generated --workers 0,1,2   # image decoding throughput

The numbers are the machine's; BENCHMARKS.md holds the measured ones with their commands.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from dann.builders import build_dataset, build_engine, build_network
from dann.config.compose import compose_config
from dann.config.validate import drop_unused_lambda_schedule
from dann.data import make_stream
from dann.data.base import Split
from dann.data.stream import worker_count
from dann.errors import DannError
from dann.grl import grad_reverse
from dann.methods import Batch, Method, StepOutput
from dann.training import distributed
from dann.training.engine import Engine
from dann.training.precision import PRECISIONS, Runtime, keep_freed_memory, prepare, resolve_runtime
from dann.training.settings import TrainerSettings


@dataclass(frozen=True)
class Model:
    """A benchmarked network: the overrides that compose its config, its input and its classes."""

    overrides: tuple[str, ...]
    input_shape: tuple[int, int, int]
    num_classes: int


MODELS = {
    "mnist_cnn": Model(("experiment=ganin2016_mnist_mnistm",), (3, 28, 28), 10),
    "svhn_cnn": Model(("experiment=ganin2016_svhn_mnist",), (3, 32, 32), 10),
    "resnet50": Model(
        (
            "dataset=office31",
            "model=resnet",
            "model.feature_extractor.arch=resnet50",
            "model.feature_extractor.weights=null",
        ),
        (3, 224, 224),
        31,
    ),
}
GROUPS = {"digits": ("mnist_cnn", "svhn_cnn")}
VARIANTS = ("plain", "source_only", "dann", "reference")
PAPER_STEPS = 10_000  # the MNIST → MNIST-M preset's length (conf/experiment/ganin2016_mnist_mnistm.yaml)


def config_of(*overrides: str) -> DictConfig:
    """The config `python -m dann.run logger=none <overrides>` would train."""
    return compose_config("logger=none", *overrides)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the steps ---------------------------------------------------------------------------------


class Plain(Method):
    """A supervised loss over source and target together, labels of both: the floor under a DANN step.

    losses: label = CE(G_y(G_f([x_s; x_t])), [y_s; y_t])
    """

    def forward(self, batch: Batch, scalars: Mapping[str, Any], phase: str = "step") -> StepOutput:
        x = torch.cat([batch.source_x, batch.target_x])
        y = torch.cat([batch.source_y, batch.target_y])
        return StepOutput({"label": F.cross_entropy(self.network.predict(x), y)}, {})


def plain_step(engine: Engine) -> Callable[[Batch, float], Any]:
    """`Plain` through an engine like the method's (same optimiser, precision, compile): the floor."""
    plain = Engine(
        Plain(engine.method.network), engine.optimizer, engine.total_steps, engine.lr_schedule, engine.runtime
    )
    return plain.step


def method_step(engine: Engine) -> Callable[[Batch, float], Any]:
    """`engine.step` as the training loop calls it, on a step it does not log."""
    return engine.step


def reference_step(engine: Engine, device: torch.device) -> Callable[[Batch, float], dict[str, float]]:
    """DANN the way most public implementations write it, over the same network and optimiser:
    G_f run twice (source, then target), fresh domain-label tensors per step, the lr set by hand,
    every metric read back with `.item()` each step; float32, eager, contiguous."""
    network, optimizer = engine.method.network, engine.optimizer
    base_lrs = [group["lr"] for group in optimizer.param_groups]

    def step(batch: Batch, progress: float) -> dict[str, float]:
        grl_lambda = 2.0 / (1.0 + math.exp(-10 * progress)) - 1.0
        for group, lr in zip(optimizer.param_groups, base_lrs):
            group["lr"] = lr / (1 + 10 * progress) ** 0.75
        source_features = network.feature_extractor(batch.source_x)
        target_features = network.feature_extractor(batch.target_x)
        label_loss = F.cross_entropy(network.label_predictor(source_features), batch.source_y)
        source_domain = network.domain_classifier(grad_reverse(source_features, grl_lambda)).squeeze(1)
        target_domain = network.domain_classifier(grad_reverse(target_features, grl_lambda)).squeeze(1)
        zeros = torch.zeros(len(source_domain), device=device)
        ones = torch.ones(len(target_domain), device=device)
        domain_loss = (
            F.binary_cross_entropy_with_logits(source_domain, zeros)
            + F.binary_cross_entropy_with_logits(target_domain, ones)
        ) / 2
        optimizer.zero_grad()
        (label_loss + domain_loss).backward()
        optimizer.step()
        domain_acc = ((source_domain < 0).float().mean() + (target_domain > 0).float().mean()) / 2
        return {"label_loss": label_loss.item(), "domain_loss": domain_loss.item(), "domain_acc": domain_acc.item()}

    return step


# --- timing ------------------------------------------------------------------------------------


class Batches:
    """Endless source+target batches from device-resident uint8 images, through the loop's own streams."""

    def __init__(self, model: Model, batch_size: int, device: torch.device, runtime: Runtime, input_shape: tuple):
        generator = torch.Generator().manual_seed(0)
        n = 4 * batch_size  # an epoch boundary (a CPU permutation copied over) every 4 steps, as in a run

        def stream(seed: int):
            images = torch.randint(0, 256, (n, *input_shape), dtype=torch.uint8, generator=generator)
            labels = torch.randint(0, model.num_classes, (n,), generator=generator)
            half = (0.5,) * input_shape[0]
            return make_stream(Split(images, labels), batch_size, seed=seed, device=device, mean=half, std=half)

        self.source, self.target, self.runtime = stream(0), stream(1), runtime

    def __next__(self) -> Batch:
        (sx, sy), (tx, ty) = next(self.source), next(self.target)
        return Batch(self.runtime.to_input(sx), sy, self.runtime.to_input(tx), ty)


def process_counters() -> tuple[float, int]:
    """This process's CPU seconds (user + system, all its threads) and page faults (minor + major) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_minflt + usage.ru_majflt


def build_variant(name: str, variant: str, args: argparse.Namespace, device: torch.device):
    """The variant's step callable and its batches, built by name (inside its own process)."""
    model, input_shape, batch_size, runtime = model_setup(name, args, device)
    variant_runtime = Runtime.FP32 if variant == "reference" else runtime
    engine = build(
        model, "dann" if variant in ("dann", "reference") else "source_only", device, input_shape, variant_runtime
    )
    engine.method.train()
    if variant == "reference":
        step = reference_step(engine, device)
    else:
        step = (plain_step if variant == "plain" else method_step)(engine)
    return step, Batches(model, batch_size, device, variant_runtime, input_shape)


def variant_process(conn: Connection, name: str, variant: str, args: argparse.Namespace) -> None:
    """A variant's own process: its own heap, so that its page faults depend on no other variant's memory.

    Builds the variant, takes `args.warmup` untimed steps, sends its thread count, then answers each
    `(first, count, total)` with the wall seconds, CPU seconds and page faults of steps first … first+count-1
    (progress i/total), and the peak CUDA memory they needed; `None` ends it. A failure is sent as its
    traceback's text."""
    try:
        torch.set_num_threads(args.threads)
        if args.malloc == "keep":
            keep_freed_memory()  # as dann.run does
        device = distributed.device(args.device)
        step, batches = build_variant(name, variant, args, device)
        total = args.warmup + args.steps
        for i in range(args.warmup):  # allocations, compilation, kernel choice
            step(next(batches), i / total)
        synchronize(device)
        conn.send({"threads": torch.get_num_threads()})
        while (turn := conn.recv()) is not None:
            first, count, total = turn
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            synchronize(device)
            cpu, faults = process_counters()
            started = time.perf_counter()
            for i in range(first, first + count):
                step(next(batches), i / total)
            synchronize(device)
            seconds = time.perf_counter() - started
            cpu_after, faults_after = process_counters()
            peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
            conn.send(
                {"seconds": seconds, "cpu_seconds": cpu_after - cpu, "faults": faults_after - faults, "peak": peak}
            )
    except BaseException:  # the parent reports it; a child's traceback would otherwise be lost in its stderr
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


class VariantProcess:
    """The parent's end of one variant's process (`target`: what the process runs, `variant_process`'s protocol)."""

    def __init__(self, context, name: str, variant: str, args: argparse.Namespace, target: Callable = variant_process):
        self.name, self.variant = name, variant
        self.conn, child = context.Pipe()
        self.process = context.Process(target=target, args=(child, name, variant, args), daemon=True)
        self.process.start()
        child.close()

    def ask(self, message: Any) -> dict[str, Any]:
        self.conn.send(message)
        return self.answer()

    def answer(self) -> dict[str, Any]:
        try:
            reply = self.conn.recv()
        except EOFError:  # killed (out of memory, a signal) before it could say why
            self.process.join(5)
            raise RuntimeError(
                f"{self.name}/{self.variant}: its process ended with exit code {self.process.exitcode} before answering"
            ) from None
        if "error" in reply:
            raise RuntimeError(f"{self.name}/{self.variant} failed in its process:\n{reply['error']}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def time_variants(name: str, args: argparse.Namespace, batch_size: int) -> dict[str, dict]:
    """Per variant, over `args.steps` timed steps after `args.warmup`: steps/s, images/s, CPU ms and page
    faults per step, peak CUDA memory.

    Each variant runs in its own process (spawned: its own heap and allocator state, as a training run
    has), so that one variant's freed memory cannot serve, or fail to serve, another's; all are built
    and warmed up before any is timed. They take turns, `args.rounds` rounds of steps/rounds steps each,
    so that a machine whose load changes (a shared CPU) slows them alike; only one steps at a time. The
    device is synchronised around each timed turn only. Peak memory: CUDA's max_memory_allocated over
    the variant's turns, its network, optimiser state and data included.
    """
    context = multiprocessing.get_context("spawn")  # a fork would share the parent's heap and CUDA state
    processes = {variant: VariantProcess(context, name, variant, args) for variant in VARIANTS}
    totals = {
        variant: {"seconds": 0.0, "cpu_seconds": 0.0, "faults": 0, "steps": 0, "peak": None} for variant in VARIANTS
    }
    try:
        threads = {variant: p.answer()["threads"] for variant, p in processes.items()}
        total = args.warmup + args.steps
        rounds = max(1, min(args.rounds, args.steps))
        done = 0
        for r in range(rounds):
            turn = args.steps * (r + 1) // rounds - done
            for variant, process in processes.items():
                reply = process.ask((args.warmup + done, turn, total))
                counts = totals[variant]
                counts["steps"] += turn
                for key in ("seconds", "cpu_seconds", "faults"):
                    counts[key] += reply[key]
                if reply["peak"] is not None:
                    counts["peak"] = max(counts["peak"] or 0, reply["peak"])
            done += turn
    finally:
        for process in processes.values():
            process.close()
    return {
        variant: {
            "steps_per_s": c["steps"] / c["seconds"],
            "images_per_s": c["steps"] * 2 * batch_size / c["seconds"],
            "seconds": c["seconds"],
            "cpu_seconds": c["cpu_seconds"],
            "cpu_ms_per_step": 1000 * c["cpu_seconds"] / c["steps"],
            "faults_per_step": c["faults"] / c["steps"],
            "threads": threads[variant],
            "peak_mib": None if c["peak"] is None else c["peak"] / 2**20,
        }
        for variant, c in totals.items()
    }


def build(model: Model, method: str, device: torch.device, input_shape: tuple, runtime: Runtime) -> Engine:
    """The engine of `method` over the model's network, as dann.run builds them (random weights, seed 0)."""
    cfg = config_of(*model.overrides, f"method={method}")
    drop_unused_lambda_schedule(cfg)  # as dann.run does: the preset's λ schedule, for a method without one
    torch.manual_seed(0)
    network = build_network(cfg, input_shape, model.num_classes).to(device)
    prepare(network, runtime)
    return build_engine(cfg, network, runtime)


def model_setup(name: str, args: argparse.Namespace, device: torch.device) -> tuple[Model, tuple, int, Runtime]:
    """The model, its input shape (`--image-size` applied), batch size per domain, and resolved runtime."""
    model = MODELS[name]
    input_shape = model.input_shape if args.image_size is None else (model.input_shape[0], *(2 * [args.image_size]))
    batch_size = args.batch_size or TrainerSettings.from_config(config_of(*model.overrides).trainer).batch_size
    runtime = resolve_runtime(args.precision, args.channels_last, args.compile, device, input_shape)
    return model, input_shape, batch_size, runtime


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    _, input_shape, batch_size, runtime = model_setup(name, args, device)
    row: dict[str, Any] = {
        "model": name,
        "batch_size": batch_size,
        "images_per_step": 2 * batch_size,
        "input_shape": list(input_shape),
        "runtime": runtime.as_dict(),
        "variants": time_variants(name, args, batch_size),
    }
    variants = row["variants"]
    # Time per step of DANN over that of the plain step (>= 1): what adversarial training adds.
    row["dann_over_plain"] = variants["plain"]["steps_per_s"] / variants["dann"]["steps_per_s"]
    row["speedup_over_reference"] = variants["dann"]["images_per_s"] / variants["reference"]["images_per_s"]
    row["paper_preset_steps_s"] = PAPER_STEPS / variants["dann"]["steps_per_s"]
    return row


# --- the host-sync proof (CUDA) ----------------------------------------------------------------


def sync_check(names: list[str], args: argparse.Namespace, device: torch.device) -> dict[str, str]:
    """Runs non-logging engine steps of dann and source_only under `torch.cuda.set_sync_debug_mode("error")`:
    any host-device synchronisation inside them raises. Batches are drawn before (an epoch boundary
    copies a CPU permutation to the device: once per epoch, not per step)."""
    results = {}
    for name in names:
        model = MODELS[name]
        input_shape = model.input_shape
        cfg = config_of(*model.overrides)
        batch_size = args.batch_size or TrainerSettings.from_config(cfg.trainer).batch_size
        runtime = resolve_runtime(args.precision, args.channels_last, args.compile, device, input_shape)
        if runtime.precision == "fp16":  # GradScaler.step reads its overflow flag back: one sync per step, by design
            results[name] = "not checked: fp16's gradient scaler syncs once per step; check bf16 or fp32"
            continue
        for method_name in ("dann", "source_only"):
            engine = build(model, method_name, device, input_shape, runtime)
            engine.method.train()
            step = method_step(engine)
            batches = Batches(model, batch_size, device, runtime, input_shape)
            drawn = [next(batches) for _ in range(args.warmup + args.steps)]
            for i in range(args.warmup):  # first steps may allocate, compile, pick kernels
                step(drawn[i], 0.0)
            synchronize(device)
            torch.cuda.set_sync_debug_mode("error")
            try:
                for i in range(args.warmup, len(drawn)):
                    step(drawn[i], i / len(drawn))
            finally:
                torch.cuda.set_sync_debug_mode("default")
            synchronize(device)
            results[f"{name}/{method_name}"] = f"no host sync in {args.steps} steps ({runtime.precision})"
    return results


# --- input pipeline ----------------------------------------------------------------------------


def write_jpegs(root: Path, count: int, classes: int = 4, size: tuple[int, int] = (400, 300)) -> Path:
    """`count` JPEGs in class folders (Office-31-sized photos: smooth gradients and noise, quality 90)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    for i in range(count):
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack([(xs * rng.uniform(0.2, 1)) % 256, (ys * rng.uniform(0.2, 1)) % 256, (xs + ys) % 256], -1)
        image = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def input_throughput(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Images/s of `ImageStream` (decode, RandomResizedCrop 224, flip, collate, copy to the device) per
    worker count, over a folder dataset (`dataset=folder`, the real loading code)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.input) if args.input != "generated" else write_jpegs(Path(tmp) / "photos", args.input_images)
        # dataset=folder wants a target directory other than the source: the same class folders, linked.
        target = Path(tmp) / "target"
        target.mkdir()
        for folder in (f for f in root.iterdir() if f.is_dir()):
            (target / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
        cfg = config_of("dataset=folder", f"dataset.source_dir={root}", f"dataset.target_dir={target}")
        split = build_dataset(cfg).load().source_train
        batch_size = args.batch_size or min(TrainerSettings.from_config(cfg.trainer).batch_size, len(split))
        rows = []
        for workers in args.workers:
            stream = make_stream(split, batch_size, seed=0, device=device, num_workers=workers)
            next(stream)  # starts the workers
            batches = max(1, min(args.steps, len(split) // batch_size - 1))
            started = time.perf_counter()
            for _ in range(batches):
                next(stream)
            synchronize(device)
            seconds = time.perf_counter() - started
            used = worker_count(workers)  # what ImageStream starts: at most half the cores
            rows.append(
                {
                    "workers": workers,
                    "workers_used": used,
                    "batch_size": batch_size,
                    "images_per_s": batches * batch_size / seconds,
                }
            )
            del stream
        return rows


# --- output ------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _loads(loads: list[float]) -> str:
    return ", ".join(f"{load:.2f}" for load in loads)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"device: {report['device_name']} ({report['device']}), torch {report['torch']}, {report['date']}",
        f"command: `{report['command']}`",
        f"threads per variant: {report['settings']['threads']}, malloc: {report['settings']['malloc']}, "
        f"load average (1, 5, 15 min) at start {_loads(report['load_average']['start'])}, "
        f"at end {_loads(report['load_average']['end'])}",
        "",
    ]
    if report["results"]:
        lines += [
            "| model | batch/domain | precision | channels-last | compile | variant | steps/s | images/s | "
            "CPU ms/step | faults/step | peak MiB |",
            "|:--|--:|:--|:--|:--|:--|--:|--:|--:|--:|--:|",
        ]
        for row in report["results"]:
            for variant, result in row["variants"].items():
                runtime = Runtime.FP32.as_dict() if variant == "reference" else row["runtime"]
                lines.append(
                    f"| {row['model']} | {row['batch_size']} | {runtime['precision']} | "
                    f"{str(runtime['channels_last']).lower()} | {str(runtime['compile']).lower()} | {variant} | "
                    f"{_fmt(result['steps_per_s'], 2)} | {_fmt(result['images_per_s'])} | "
                    f"{_fmt(result['cpu_ms_per_step'])} | {_fmt(result['faults_per_step'], 0)} | "
                    f"{_fmt(result['peak_mib'])} |"
                )
        lines += [
            "",
            "| model | DANN/plain (time per step) | DANN over reference (images/s) | 10,000 DANN steps (s, no eval) |",
            "|:--|--:|--:|--:|",
        ]
        for row in report["results"]:
            lines.append(
                f"| {row['model']} | {row['dann_over_plain']:.3f} | {row['speedup_over_reference']:.2f}× | "
                f"{_fmt(row['paper_preset_steps_s'])} |"
            )
    if report.get("input"):
        lines += ["", "| input workers (used) | batch | images/s |", "|--:|--:|--:|"]
        lines += [
            f"| {r['workers']} ({r['workers_used']}) | {r['batch_size']} | {_fmt(r['images_per_s'])} |"
            for r in report["input"]
        ]
    if report.get("sync_check"):
        lines += [""] + [f"- sync check {name}: {result}" for name, result in report["sync_check"].items()]
    return "\n".join(lines) + "\n"


def integer(lo: int) -> Callable[[str], int]:
    """An argparse `type=`: an integer >= `lo`, else argparse's one error line (no traceback)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {value}")
        return value

    return parse


def worker_counts(text: str) -> list[int]:
    """`--workers 0,2`: DataLoader worker counts, each >= 0."""
    try:
        counts = [int(w) for w in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0 (e.g. 0,2), got {text!r}")
    return counts


def device_name(text: str) -> str:
    """`--device`: auto, cpu, cuda or cuda:N, and a CUDA device only where this machine has it: refused
    here, before any model is built, not by CUDA's lazy initialisation minutes later."""
    if not (text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text!r} needs a CUDA GPU, and torch.cuda.is_available() is false here (no GPU, or a PyTorch "
                "build without CUDA); use --device cpu, or auto (a GPU where there is one)"
            )
        count = torch.cuda.device_count()
        if int(text.partition(":")[2] or 0) >= count:
            raise argparse.ArgumentTypeError(
                f"{text!r}: this machine has {count} CUDA device(s), cuda:0 … cuda:{count - 1}"
            )
    return text


def check_writable(option: str, path: Path) -> str | None:
    """Why `path` cannot be written (None when it can), found at start rather than after the benchmark:
    a temporary file is created in its folder and removed (a permission check would miss a read-only
    file system, and is always true for root)."""
    if path.is_dir():
        return f"{option} {path}: is a folder; name a file to write"
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        return (
            f"{option} {path}: cannot write in {path.parent} ({e.strerror or e}); "
            "name a file in an existing, writable folder"
        )
    return None


def write_output(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename: a kill or a full disk leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        print(f"error: {path}: cannot be written ({e.strerror or e}); the results are on stdout", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The command line: what to time (models, steps, rounds), how the step runs, the input pipeline, outputs."""
    parser = argparse.ArgumentParser(prog="python -m dann.bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models",
        default="digits,resnet50",
        help="comma-separated: digits, resnet50, mnist_cnn, svhn_cnn; 'none' for input only",
    )
    parser.add_argument("--steps", type=integer(1), default=50, help="timed steps per variant")
    parser.add_argument("--warmup", type=integer(0), default=10, help="untimed steps before them")
    parser.add_argument(
        "--rounds", type=integer(1), default=5, help="turns the variants take (load changes hit all alike)"
    )
    parser.add_argument(
        "--batch-size", type=integer(1), default=None, help="per domain (default: the preset's trainer.batch_size)"
    )
    parser.add_argument(
        "--image-size", type=integer(1), default=None, help="input side instead of the model's (small: a quick run)"
    )
    parser.add_argument("--device", type=device_name, default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--threads",
        type=integer(1),
        default=torch.get_num_threads(),  # OMP_NUM_THREADS, else the cores this process may use
        help="torch.set_num_threads in each variant's process (default: %(default)s, what this machine allows)",
    )
    parser.add_argument(
        "--malloc",
        default="keep",
        choices=("keep", "default"),
        help="keep: glibc keeps freed memory, as dann.run sets it (dann.training.precision.keep_freed_memory); "
        "default: glibc's own settings, which return it to the kernel",
    )
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--channels-last", default="auto", choices=("auto", "true", "false"))
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the whole loss computation (trainer.compile)"
    )
    parser.add_argument("--sync-check", action="store_true", help="CUDA only: fail on a host sync inside a step")
    parser.add_argument("--input", default=None, help="a folder of class sub-folders of images, or 'generated'")
    parser.add_argument("--input-images", type=integer(1), default=512, help="images to generate for --input generated")
    parser.add_argument(
        "--workers", type=worker_counts, default="0,2", help="DataLoader worker counts to time with --input"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the Markdown tables here")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options, with --models expanded to model names; what the benchmark needs from the machine
    (a CUDA device for --sync-check, the --input folder, writable outputs) checked now, not after minutes
    of timing."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.channels_last != "auto":
        args.channels_last = args.channels_last == "true"
    names: list[str] = []
    for name in args.models.split(","):
        if name == "none":
            continue
        if name not in MODELS and name not in GROUPS:
            parser.error(f"--models: unknown {name!r}; expected {', '.join([*GROUPS, *MODELS])} or none")
        names += [n for n in GROUPS.get(name, (name,)) if n not in names]
    args.model_names = names
    if args.sync_check and distributed.device(args.device).type != "cuda":
        parser.error(
            "--sync-check needs a CUDA device (torch.cuda.set_sync_debug_mode); "
            "tests/training/test_precision.py has the CPU proof"
        )
    if args.input not in (None, "generated") and not Path(args.input).is_dir():
        parser.error(
            f"--input {args.input}: no such folder; expected a folder of class sub-folders of images, or 'generated'"
        )
    for option, path in (("--json", args.json), ("--markdown", args.markdown)):
        if path is not None and (problem := check_writable(option, path)):
            parser.error(problem)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = distributed.device(args.device)
    report: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {len(os.sched_getaffinity(0))} cores",
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m dann.bench", *(sys.argv[1:] if argv is None else argv)]),
        "load_average": {"start": list(os.getloadavg())},
        "settings": {
            "threads": args.threads,
            "malloc": args.malloc,
            "steps": args.steps,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "precision": args.precision,
            "channels_last": args.channels_last,
            "compile": args.compile,
        },
        "results": [bench_model(name, args, device) for name in args.model_names],
    }
    if args.input:
        try:
            report["input"] = input_throughput(args, device)
        except DannError as e:  # the folder's own content (no class folders, an unreadable image): one line
            print(f"error: --input {args.input}: {e}", file=sys.stderr)
            sys.exit(2)
    if args.sync_check:
        report["sync_check"] = sync_check(args.model_names, args, device)
    report["load_average"]["end"] = list(os.getloadavg())
    text = markdown(report)
    print(text, end="")
    if args.json:
        write_output(args.json, json.dumps(report, indent=2) + "\n")
    if args.markdown:
        write_output(args.markdown, text)
    return report


if __name__ == "__main__":
    main()
