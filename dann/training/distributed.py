"""One training run on several processes (GPUs) with torch.distributed; everything is a no-op on one.

Launched by `torchrun --nproc_per_node=N -m dann.run …` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT in the environment) or as N tasks of one SLURM step (`srun`, or
`hydra/launcher=slurm hydra.launcher.tasks_per_node=N`: SLURM_STEP_NUM_TASKS, SLURM_PROCID,
SLURM_LOCALID; rank 0's host, the first of the step's node list, is the master). Without either,
or with one process, `world_size()` is 1 and every function here returns at once: a
one-process run is bitwise the run it was before this module existed.

How a run on N processes trains (docs/guides/multi-gpu.md):

- `trainer.batch_size` stays the global batch per domain: each rank takes its own contiguous
  1/N of every global batch (dann.data.stream), so N processes train the same recipe as one.
- Each method trains inside torch's DistributedDataParallel (`data_parallel`, wrapped around the
  whole loss computation by `dann.training.engine.Engine`): gradients are averaged across ranks during the
  backward pass, bucket by bucket, overlapping communication with computation. A method that
  freezes layers mid-run (two_stage) is wrapped again; one whose steps leave parameters without
  a gradient says so (`Method.leaves_parameters_unused`).
- Rank 0 alone evaluates, writes files and talks to W&B; the others wait for its records.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import pickle
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from dann.errors import ConfigError

log = logging.getLogger(__name__)

# Collectives wait this long for the slowest rank: rank 0 evaluates (reverse validation included)
# while the others wait, which on the large image benchmarks takes minutes.
TIMEOUT = datetime.timedelta(hours=2)
# Joining waits this long for every process of the launch (seconds; DANN_RENDEZVOUS_TIMEOUT): stray
# RANK/WORLD_SIZE variables with no other process would otherwise hold a run silent for TIMEOUT.
RENDEZVOUS_TIMEOUT_S = 300.0
T = TypeVar("T")


def launch_environment(env: Mapping[str, str]) -> dict[str, Any] | None:
    """rank, world_size, local_rank, master_addr, master_port of a multi-process launch; None otherwise.

    torchrun's variables win; else a SLURM step with several tasks (srun sets
    SLURM_STEP_NUM_TASKS, so a batch script's own shell, which is one process, never waits for others).
    """
    if "RANK" in env and "WORLD_SIZE" in env:
        return {
            "rank": int(env["RANK"]),
            "world_size": int(env["WORLD_SIZE"]),
            "local_rank": int(env.get("LOCAL_RANK", 0)),
            "master_addr": env.get("MASTER_ADDR", "localhost"),
            "master_port": int(env.get("MASTER_PORT", 29500)),
        }
    if int(env.get("SLURM_STEP_NUM_TASKS", 1)) > 1 and "SLURM_PROCID" in env:
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "localhost")
        job = int(env.get("SLURM_JOB_ID", 0))
        return {
            "rank": int(env["SLURM_PROCID"]),
            "world_size": int(env["SLURM_STEP_NUM_TASKS"]),
            "local_rank": int(env.get("SLURM_LOCALID", 0)),
            "master_addr": first_host(nodes),
            # One port per job, so that jobs sharing a node do not collide.
            "master_port": int(env.get("MASTER_PORT", 20000 + job % 20000)),
        }
    return None


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `gpu[003-005,9],cpu1` → `gpu003`, `a,b` → `a`."""
    group = re.split(r",(?![^\[]*\])", nodelist.strip())[0]  # the first comma outside brackets
    prefix, bracket, rest = group.partition("[")
    if not bracket:
        return group
    ranges, _, suffix = rest.partition("]")
    return prefix + re.split(r"[,-]", ranges)[0] + suffix


def setup(device: str = "auto") -> None:
    """Join the launch's process group, once per process; a no-op for a one-process launch.

    `device`: `trainer.device`. On CUDA each process uses GPU LOCAL_RANK and NCCL for tensors on it;
    gloo carries the CPU tensors and the small Python objects (records, flags) in both cases.
    """
    if dist.is_initialized():
        return
    launch = launch_environment(os.environ)
    if launch is None or launch["world_size"] == 1:
        return
    for name in ("rank", "world_size", "local_rank", "master_addr", "master_port"):
        os.environ.setdefault(name.upper(), str(launch[name]))  # what init_process_group's env:// reads
    cuda = torch.cuda.is_available() and not str(device).startswith("cpu")
    if cuda and launch["local_rank"] < torch.cuda.device_count():  # else check_settings says why
        torch.cuda.set_device(launch["local_rank"])
    wait = rendezvous_timeout(os.environ)
    where = f"{launch['master_addr']}:{launch['master_port']}"
    # Printed, not logged: the first join happens in a Hydra callback, before logging is configured.
    variables = ", ".join(f"{k}={os.environ[k]}" for k in LAUNCH_VARIABLES if k in os.environ)
    print(
        f"waiting up to {wait:.0f} s for {launch['world_size']} processes at {where} (rank {launch['rank']}; "
        f"{variables} from the environment)",
        file=sys.stderr,
        flush=True,
    )
    try:  # the store first, with the short wait: joining is bounded, evaluations keep TIMEOUT
        store = dist.TCPStore(
            launch["master_addr"],
            launch["master_port"],
            launch["world_size"],
            is_master=launch["rank"] == 0,
            timeout=datetime.timedelta(seconds=wait),
            wait_for_workers=True,
        )
    except (RuntimeError, ValueError, OSError) as e:  # DistStoreError, DistNetworkError: RuntimeErrors
        raise ConfigError(
            f"RANK/WORLD_SIZE: the environment describes process {launch['rank']} of {launch['world_size']} "
            f"meeting at {where}, but not all of them came within {wait:.0f} s "
            f"({type(e).__name__}: {' '.join(str(e).split())[:160]}); launch all of them (torchrun, srun), "
            "or unset RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for a run of one process "
            "(DANN_RENDEZVOUS_TIMEOUT=<seconds> waits longer)"
        ) from None
    store.set_timeout(TIMEOUT)
    dist.init_process_group(
        backend="cpu:gloo,cuda:nccl" if cuda else "gloo",
        store=store,
        rank=launch["rank"],
        world_size=launch["world_size"],
        timeout=TIMEOUT,
    )


LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID")


def rendezvous_timeout(env: Mapping[str, str]) -> float:
    """Seconds to wait for every process to join: DANN_RENDEZVOUS_TIMEOUT, else RENDEZVOUS_TIMEOUT_S."""
    value = env.get("DANN_RENDEZVOUS_TIMEOUT")
    if value is None:
        return RENDEZVOUS_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"DANN_RENDEZVOUS_TIMEOUT: expected a number of seconds > 0, got {value!r}")
    return seconds


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the process that writes the run directory and W&B."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0)) if world_size() > 1 else 0


def check_settings(batch_size: int, device: str) -> None:
    """What a run on several processes needs of the config (`trainer.batch_size`, `trainer.device`)."""
    n = world_size()
    if n == 1:
        return
    if batch_size % n:
        raise ConfigError(
            f"trainer.batch_size: {batch_size} is the global batch per domain and must split evenly over "
            f"the {n} processes; use a multiple of {n}, e.g. trainer.batch_size={max(n, batch_size // n * n)}"
        )
    if re.fullmatch(r"cuda:\d+", device):
        raise ConfigError(
            f"trainer.device: {device} names one GPU, but each of the {n} processes uses its own "
            "(GPU LOCAL_RANK); use trainer.device=auto or cuda"
        )
    if torch.cuda.is_available() and device != "cpu" and local_rank() >= torch.cuda.device_count():
        raise ConfigError(
            f"trainer.device: process LOCAL_RANK={local_rank()} needs GPU {local_rank()}, but this node has "
            f"{torch.cuda.device_count()}; launch at most that many processes per node"
        )


def device(name: str) -> torch.device:
    """This process's device for `trainer.device` (or a command's `--device`): `auto` is CUDA when it is
    available, else the CPU; on several processes `auto`/`cuda` is this process's GPU, LOCAL_RANK's."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and world_size() > 1:
        return torch.device("cuda", local_rank())
    return torch.device(name)


def prepare_network(network: nn.Module, device: torch.device, seed: int) -> nn.Module:
    """Prepare the ranks' networks: SyncBatchNorm on CUDA, then a random stream per rank (dropout masks
    differ between ranks, as between examples). Rank 0's parameters and buffers reach every rank when
    the engine wraps the method in DistributedDataParallel (`data_parallel`).

    SyncBatchNorm runs only on GPUs: on CPU (gloo) each rank's BatchNorm normalises its own
    1/N of the batch and keeps its own running statistics; rank 0's are the ones evaluated and saved.
    """
    if world_size() == 1:
        return network
    network = sync_batchnorm(network, device)
    torch.manual_seed(seed + (rank() << 32))  # rank 0 of world 1 would be `seed`; seeds every CUDA device too
    return network


def sync_batchnorm(network: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers → SyncBatchNorm (the statistics of the whole global batch) when on CUDA.

    The same parameter objects are kept, so what is frozen stays frozen, and
    `FeatureExtractor.train` keeps frozen (Sync)BatchNorm layers in eval mode, where nothing syncs.
    """
    if torch.device(device).type != "cuda":
        return network
    return nn.SyncBatchNorm.convert_sync_batchnorm(network)


def data_parallel(module: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """`module` inside `torch.nn.parallel.DistributedDataParallel`; `module` itself on one process.

    DDP all-reduces (averages) each bucket of gradients as soon as the backward pass has produced
    it, overlapping communication with the rest of the backward pass. It syncs rank 0's parameters
    and buffers (BatchNorm statistics, CDAN's random projections) at construction, and the buffers
    not again at every forward (`forward_sync_buffers=False`): on CUDA SyncBatchNorm keeps the
    statistics equal, on CPU each rank keeps its own and rank 0's are the ones evaluated and saved.
    Parameters frozen when this is called are not synced: wrap again after freezing (the engine does).
    """
    if world_size() == 1:
        return module
    return nn.parallel.DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        forward_sync_buffers=False,
        find_unused_parameters=find_unused_parameters,
    )


def check_same_parameters(module: nn.Module) -> None:
    """Raise if the ranks' parameters differ (a digest of their bytes, gathered); a no-op on one process.

    Run once at the end of training: averaged gradients keep the ranks' copies equal only if every
    rank applies the same updates, which this checks rather than assumes.
    """
    if world_size() == 1:
        return
    digest = hashlib.sha256()
    for parameter in module.parameters():
        digest.update(parameter.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digests = [None] * world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    if len(set(digests)) > 1:
        raise RuntimeError(f"the {world_size()} processes ended with different parameters (digests {digests})")
    log.info("the %d processes end with the same parameters (sha256 %s)", world_size(), digests[0][:12])


def all_reduce_mean(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each scalar tensor's mean over the ranks, in one collective; `values` itself on one process.

    Every rank must pass the same names in the same order.
    """
    if world_size() == 1 or not values:
        return values
    stacked = torch.stack([v.float() for v in values.values()])
    dist.all_reduce(stacked)
    return dict(zip(values, (stacked / world_size()).unbind(), strict=True))


def agreed_signal(signum: int | None) -> int | None:
    """The stop signal any rank has received (the largest number), or None; `signum` on one process.

    Ranks receive a signal at different steps; stopping only where they agree keeps them in step.
    """
    if world_size() == 1:
        return signum
    flag = torch.tensor([signum or 0])  # on the CPU: gloo, no GPU sync
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (pickled; small objects only); `obj` itself on one process."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def merged(mapping: dict[str, Any]) -> dict[str, Any]:
    """The union of every rank's `mapping` (earlier ranks' values win), on every rank; `mapping` on one process."""
    if world_size() == 1:
        return mapping
    every: list[Any] = [None] * world_size()
    dist.all_gather_object(every, mapping)
    return {key: value for part in reversed(every) for key, value in part.items()}


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's `obj`, in rank order, on rank 0; None on the others (pickled; small objects only)."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size() if is_main() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def main_decides(decide: Callable[[], Any], for_others: Callable[[Any], Any] = lambda result: result) -> Any:
    """Rank 0 runs `decide()` and returns its result; the others get `for_others(result)` (what they need
    of it, small enough to send), or all raise rank 0's exception.

    For what only rank 0 may do (take the run directory's lock, read and write it), with the other
    ranks following: the same decision, or the same error, without a deadlock.
    """
    if world_size() == 1:
        return decide()
    result, error = None, None
    if is_main():
        try:
            result = decide()
        except Exception as e:  # noqa: BLE001 - raised below, on every rank
            error = e
    shared = error
    if error is not None:
        try:
            pickle.dumps(error)
        except Exception:  # noqa: BLE001 - an exception that cannot travel: its text can
            shared = RuntimeError(f"rank 0 failed: {type(error).__name__}: {error}")
    result_for_others, shared = broadcast_object((for_others(result) if is_main() and error is None else None, shared))
    if is_main():
        if error is not None:
            raise error
        return result
    if shared is not None:
        _FROM_MAIN.append(shared)
        raise shared
    return result_for_others


_FROM_MAIN: list[BaseException] = []  # errors of rank 0 re-raised by another rank


def reported_by_main(error: BaseException) -> bool:
    """True on ranks other than 0 for an error that rank 0 raised too and reports (see `main_decides`)."""
    return not is_main() and any(error is e for e in _FROM_MAIN)


def share_output_dir(config: Any, node: str) -> None:
    """Join the process group before Hydra makes the output directory, and give every rank rank 0's.

    Called by the Hydra callback `dann.runs.directory.CheckOutputDir` with the composed config and `run` or
    `sweep`: `outputs/${now:…}` is resolved by each process, and ranks started a second apart
    would otherwise each make a directory of their own.
    """
    if launch_environment(os.environ) is None:
        return
    from omegaconf import OmegaConf, read_write  # here: the library itself never imports Hydra or OmegaConf

    try:
        setup(str(OmegaConf.select(config, "trainer.device", default="auto", throw_on_resolution_failure=False)))
    except ConfigError as e:  # Hydra turns a callback's exception into a warning, and the run would wait again
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if world_size() == 1:
        return
    directory = broadcast_object(str(config.hydra[node].dir))
    with read_write(config.hydra[node]):
        config.hydra[node].dir = directory
