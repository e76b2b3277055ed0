"""How the training step runs on its device: numeric precision, memory layout, compilation.

`trainer.precision`, `trainer.channels_last` and `trainer.compile` choose these; `auto` is resolved
once per run, on the run's device (`resolve_runtime`), and the resolved values are what
summary.json records (`runtime`): `auto` on a GPU is not the same computation as on a CPU.
`Runtime.FP32` (`trainer.precision=fp32 trainer.channels_last=false`) is the paper's float32 path.

- Precision: the step's forward pass runs under `torch.autocast` (bf16 or fp16); the losses stay
  float32 because autocast computes `log_softmax`, `nll_loss` (so `cross_entropy`) and
  `binary_cross_entropy_with_logits` in float32 on both CPU and CUDA (tests/training/test_precision.py checks
  it). fp16 also needs a gradient scaler (`Engine.grad_scaler`), whose overflow check reads one value
  back from the device per step; bf16 needs none.
- Channels-last: convolutions run faster on tensor cores with NHWC tensors; the network and the
  image batches are converted (parameters keep their names, so checkpoints do not change).
- Compilation: `torch.compile` of the whole loss computation, the method's forward pass (feature
  extractor, heads, reversal layer and losses), by the engine (`dann.training.engine.Engine`); the module is
  wrapped, not changed, so state_dict keys are unchanged. λ enters it as a 0-d tensor, an input of
  the graph rather than a constant, and the learning rate lives in the optimiser, outside it: a
  schedule changing them every step triggers no recompilation.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from dann.errors import ConfigError
from dann.training.settings import PRECISIONS  # noqa: F401 - declared with trainer.precision; dann.bench reads it here

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """The resolved settings: `precision` bf16 | fp16 | fp32, `channels_last`, `compile` (no `auto`)."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    FP32: ClassVar[Runtime]  # the paper's path: float32, contiguous, eager

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast to bf16/fp16 on `device`'s type; nothing for fp32."""
        return autocast(device, self.precision)

    def to_input(self, x: Tensor) -> Tensor:
        """A batch in the network's memory layout: image batches [B, C, H, W] to channels-last."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Runtime.FP32 = Runtime()


def autocast(device: torch.device | str, precision: str) -> contextlib.AbstractContextManager:
    """`torch.autocast` for `precision` (bf16 | fp16) on `device`'s type; a no-op context for fp32.

    For your own loop: `with autocast(device, "bf16"): output = method(batch, method.scalars(progress))`.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision])


def resolve_runtime(
    precision: str, channels_last: str | bool, compile: bool, device: torch.device, input_shape: tuple[int, ...]
) -> Runtime:
    """The `trainer.*` settings on `device`, `auto` resolved: bf16 on a CUDA GPU that supports it,
    else fp32; channels-last on CUDA for image inputs (`input_shape` [C, H, W])."""
    cuda = device.type == "cuda"
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    elif precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"trainer.precision: bf16 is not supported by {torch.cuda.get_device_name(device)}; "
            "use trainer.precision=fp16 (with a gradient scaler) or fp32"
        )
    if channels_last == "auto":
        channels_last = cuda and len(input_shape) == 3
    return Runtime(precision=precision, channels_last=bool(channels_last), compile=bool(compile))


def prepare(network: torch.nn.Module, runtime: Runtime) -> None:
    """Put a network already on its device into `runtime`'s memory layout, in place (channels-last:
    only 4-D parameters, the convolutions, change; names and state_dict keys do not). The engine
    (`dann.training.engine.Engine`) applies the rest: compilation and fp16's gradient scaler."""
    if runtime.channels_last:
        network.to(memory_format=torch.channels_last)  # only 4-D parameters (convolutions) change layout


def cpus_available(env: Mapping[str, str] = os.environ) -> int:
    """The CPUs this process may use: its affinity mask (what `taskset`, cgroups' cpusets and SLURM
    bind it to), capped by `SLURM_CPUS_PER_TASK`, shared among the processes launched on this node
    (`LOCAL_WORLD_SIZE`, set by torchrun); at least 1. `os.cpu_count()` counts the machine's cores,
    which a job on a shared node may not use."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    slurm = _positive_int(env.get("SLURM_CPUS_PER_TASK"))
    if slurm is not None:
        cpus = min(cpus, slurm)
    return max(1, cpus // (_positive_int(env.get("LOCAL_WORLD_SIZE")) or 1))


def cpu_threads(requested: str | int, input_shape: tuple[int, ...], env: Mapping[str, str] = os.environ) -> int:
    """The intra-op CPU thread count for a run (`trainer.threads`), for `torch.set_num_threads`.

    An integer is used as given (a warning when it exceeds `cpus_available`). `auto`: the user's
    `OMP_NUM_THREADS` when set; else 1 for vector inputs (`input_shape` [D]: the toy datasets' MLPs),
    whose ops are too small to gain from splitting and whose per-op thread barriers stall whenever
    another process holds a core (issue 17: the default moons run took 7 min 48 s with 2 threads on a
    loaded 2-core machine, 36 s with 1); else every CPU the process may use. The count changes
    results (CPU kernels split their sums by thread), so it is chosen here, not left to torch's
    default (every core of the machine, whatever the process may use).
    """
    if requested != "auto":
        available = cpus_available(env)
        if requested > available:
            log.warning(
                "trainer.threads=%d exceeds the %d CPUs this process may use: the threads will share them",
                requested,
                available,
            )
        return int(requested)
    # Also torchrun's: it sets OMP_NUM_THREADS=1 for several processes per node unless the user set it.
    omp = _positive_int(env.get("OMP_NUM_THREADS", "").split(",")[0])  # "4,2": OpenMP's nested levels
    if omp is not None:
        return omp
    return 1 if len(input_shape) == 1 else cpus_available(env)


def _positive_int(text: str | None) -> int | None:
    """An environment variable's positive integer, or None when it is unset or is not one."""
    try:
        value = int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if value >= 1 else None


# --- the CPU allocator ---------------------------------------------------------------------------

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
_MALLOPT = {"M_TRIM_THRESHOLD": (M_TRIM_THRESHOLD, 2**31 - 1), "M_MMAP_MAX": (M_MMAP_MAX, 0)}


def keep_freed_memory() -> dict[str, int]:
    """Makes glibc keep the memory a training step frees, for the next step, instead of returning it
    to the kernel; returns the `mallopt` settings applied ({} where none was: not Linux with glibc).

    Why: PyTorch's CPU tensors come from malloc. By default glibc serves blocks above its mmap threshold
    (128 KiB, rising to at most 32 MiB) with a fresh mmap that free() unmaps, and trims the heap's top
    once more than twice that is free: every step's activations and gradients went back to the kernel
    and were faulted in again page by page the next step (mnist_cnn's DANN step at batch 64+64:
    ~8,800 faults and 5-8 ms of a ~35 ms step). `M_MMAP_MAX=0` serves every block from the heap (whatever
    its size: svhn_cnn's 100 MB weight gradient too, above the 32 MiB ceiling a raised mmap threshold
    cannot pass) and `M_TRIM_THRESHOLD=2**31-1` never trims it, so after the first step the process holds
    its peak and a step faults no page. The cost: the process's resident memory stays at its peak
    (what it needed anyway), plus a few blocks' worth in the first steps, while PyTorch's 64-byte-aligned
    allocations leave small chunks that keep freed blocks from merging at once. Numbers computed are
    unchanged (metrics.jsonl of a 200-step run identical bitwise with and without it); only where memory
    comes from changes. Measured (experiments/profile_cpu_step.py, mnist_cnn DANN step at batch 64+64,
    1 thread, 2 shared cores at load average 7-9): 5,040 faults and 132 CPU ms a step as glibc comes,
    0 faults and 111 CPU ms kept; M_TRIM_THRESHOLD with a 32 MiB M_MMAP_THRESHOLD did as well there
    (0 faults, 112 ms) but cannot keep a block above 32 MiB.

    Process-wide and for the process's lifetime, so it is called once, at the start of a run. A no-op
    on macOS and Windows (their allocators have no mallopt) and on musl libc (Alpine), whose mallopt
    does nothing; never an error, since the training is the same without it, only slower on a CPU.
    """
    import ctypes
    import ctypes.util
    import platform
    import sys

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return {}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return {name: value for name, (param, value) in _MALLOPT.items() if mallopt(param, value) == 1}
