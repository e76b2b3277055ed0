"""How the training step runs on its device: numeric precision, memory layout, compilation.

`trainer.precision`, `trainer.channels_last` and `trainer.compile` choose these; `auto` is resolved
once per run, on the run's device (`resolve_runtime`), and the resolved values are what
summary.json records (`runtime`): `auto` on a GPU is not the same computation as on a CPU.
`Runtime.FP32` (`trainer.precision=fp32 trainer.channels_last=false`) is the paper's float32 path.

- Precision: the step's forward pass runs under `torch.autocast` (bf16 or fp16); the losses stay
  float32 because autocast computes `log_softmax`, `nll_loss` (so `cross_entropy`) and
  `binary_cross_entropy_with_logits` in float32 on both CPU and CUDA (tests/test_precision.py checks
  it). fp16 also needs a gradient scaler (`Engine.grad_scaler`), whose overflow check reads one value
  back from the device per step; bf16 needs none.
- Channels-last: convolutions run faster on tensor cores with NHWC tensors; the network and the
  image batches are converted (parameters keep their names, so checkpoints do not change).
- Compilation: `torch.compile` of the whole loss computation, the method's forward pass (feature
  extractor, heads, reversal layer and losses), by the engine (`dann.engine.Engine`); the module is
  wrapped, not changed, so state_dict keys are unchanged. λ enters it as a Python float, which
  torch.compile traces as a symbolic input rather than a constant, and the learning rate lives in
  the optimiser, outside it: a schedule changing them every step triggers no recompilation.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from dann.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
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
    (`dann.engine.Engine`) applies the rest: compilation and fp16's gradient scaler."""
    if runtime.channels_last:
        network.to(memory_format=torch.channels_last)
