"""Where a DANN step's time goes on a CPU, with glibc's allocator as it comes and with freed memory kept.

Each (model, malloc) pair runs in its own spawned process (its own heap), at `--threads` threads; the
processes take turns (`--rounds`), so a load change on a shared machine hits all alike. Per step it
measures wall ms, CPU ms (user + system, all threads) and page faults (minor + major), for the real
engine step of DANN (`Engine.step`) and, on separate steps, for its three parts written out the same way:

- forward: DANN's forward (one feature-extractor pass over source+target, both heads, both losses);
- backward: `zero_grad(set_to_none=True)` and `backward()`;
- optimizer: `optimizer.step()` and the lr scheduler's step.

malloc settings (`mallopt`, glibc only):

- default: glibc as it comes (mmap above a dynamic threshold of 128 KiB … 32 MiB, heap trimmed);
- trim: M_TRIM_THRESHOLD = 2**31-1 and M_MMAP_THRESHOLD = 32 MiB (the largest glibc accepts);
- keep: `dann.training.precision.keep_freed_memory()` (M_TRIM_THRESHOLD = 2**31-1, M_MMAP_MAX = 0), what dann.run sets.

    uptime; python experiments/profile_cpu_step.py --models mnist_cnn,svhn_cnn --steps 30 --warmup 5 --rounds 3

Prints a Markdown table; the machine's load average is printed beside it (record it with the numbers).
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import sys
import time
import traceback
from multiprocessing.connection import Connection

import torch

from dann.bench import Batches, VariantProcess, build, method_step, model_setup, process_counters, synchronize
from dann.training import distributed
from dann.training.precision import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, Runtime, keep_freed_memory

MALLOC = ("default", "trim", "keep")
PARTS = ("forward", "backward", "optimizer")


def set_malloc(mode: str) -> None:
    if mode == "keep":
        keep_freed_memory()
    elif mode == "trim":
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # glibc's ceiling (HEAP_MAX / DEFAULT_MMAP_THRESHOLD_MAX)


class Meter:
    """Wall seconds, CPU seconds and page faults, summed over the measured regions."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self.faults = 0

    def start(self) -> None:
        self._cpu, self._faults = process_counters()
        self._wall = time.perf_counter()

    def stop(self) -> None:
        self.wall += time.perf_counter() - self._wall
        cpu, faults = process_counters()
        self.cpu += cpu - self._cpu
        self.faults += faults - self._faults


def parts_step(engine, batch, progress: float, meters: dict[str, Meter]) -> None:
    """The engine's DANN step (without its metrics), each part measured on its own."""
    method = engine.method
    meters["forward"].start()
    output = method(batch, method.scalars(progress))
    loss = output.losses["label"] + output.losses["domain"]
    meters["forward"].stop()
    meters["backward"].start()
    engine.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    meters["backward"].stop()
    meters["optimizer"].start()
    engine.optimizer.step()
    engine.lr_scheduler.step()
    meters["optimizer"].stop()


def profile_process(conn: Connection, name: str, malloc: str, args: argparse.Namespace) -> None:
    """One (model, malloc) pair's process: answers `(first, count, total)` with its meters' sums."""
    try:
        torch.set_num_threads(args.threads)
        set_malloc(malloc)
        device = distributed.device("cpu")
        model, input_shape, batch_size, _ = model_setup(name, args, device)
        engine = build(model, "dann", device, input_shape, Runtime.FP32)
        engine.method.train()
        step = method_step(engine)
        batches = Batches(model, batch_size, device, Runtime.FP32, input_shape)
        total = args.warmup + 2 * args.steps
        for i in range(args.warmup):
            step(next(batches), i / total)
        conn.send({"threads": torch.get_num_threads()})
        while (turn := conn.recv()) is not None:
            first, count, total = turn
            whole, parts = Meter(), {part: Meter() for part in PARTS}
            for i in range(first, first + count):  # the real update and the parted one, alternately
                whole.start()
                step(next(batches), i / total)
                synchronize(device)
                whole.stop()
                parts_step(engine, next(batches), i / total, parts)
            conn.send({key: vars(meter) for key, meter in {"step": whole, **parts}.items()})
    except BaseException:
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mnist_cnn")
    parser.add_argument("--malloc", default=",".join(MALLOC))
    parser.add_argument("--steps", type=int, default=30, help="timed steps per process (each: one whole, one parted)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    # What dann.bench.model_setup reads: the preset's network, input and batch, float32 as on a CPU.
    vars(args).update(image_size=None, batch_size=None, precision="fp32", channels_last=False, compile=False)
    context = multiprocessing.get_context("spawn")
    print(f"load average at start: {os.getloadavg()}", file=sys.stderr)
    lines = [
        f"threads: {args.threads}; per step, ms (faults): the whole engine step, then its parts on other steps",
        "",
        "| model | malloc | wall ms | CPU ms | faults | forward ms (faults) | backward ms (faults) | "
        "optimizer ms (faults) |",
        "|:--|:--|--:|--:|--:|--:|--:|--:|",
    ]
    for name in args.models.split(","):
        modes = args.malloc.split(",")
        processes = {m: VariantProcess(context, name, m, args, target=profile_process) for m in modes}
        sums: dict[str, dict[str, dict[str, float]]] = {m: {} for m in modes}
        try:
            for process in processes.values():
                process.answer()
            done = 0
            for r in range(args.rounds):
                turn = args.steps * (r + 1) // args.rounds - done
                for mode, process in processes.items():
                    reply = process.ask((args.warmup + 2 * done, turn, args.warmup + 2 * args.steps))
                    for key, meter in reply.items():
                        total = sums[mode].setdefault(key, {"wall": 0.0, "cpu": 0.0, "faults": 0})
                        for k in total:
                            total[k] += meter[k]
                done += turn
        finally:
            for process in processes.values():
                process.close()
        n = args.steps
        for mode in modes:
            s = sums[mode]
            cells = [f"{1000 * s[p]['wall'] / n:.1f} ({s[p]['faults'] / n:,.0f})" for p in PARTS]
            lines.append(
                f"| {name} | {mode} | {1000 * s['step']['wall'] / n:.1f} | {1000 * s['step']['cpu'] / n:.1f} | "
                f"{s['step']['faults'] / n:,.0f} | {' | '.join(cells)} |"
            )
    print(f"load average at end: {os.getloadavg()}", file=sys.stderr)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
