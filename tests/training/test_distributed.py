"""Training on several processes (dann.training.distributed): the real CLI under torchrun, on CPU with gloo and
2 processes, against a one-process run; and the collectives themselves, in 2 spawned processes."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dann.builders import build_dataset
from dann.data import Split
from dann.data.stream import TensorStream, make_stream
from dann.models import FeatureExtractor
from dann.models.feature_extractors import MlpFeatures
from dann.runs.checkpoint import checkpoint_path, read_checkpoint
from dann.training import distributed
from tests.helpers import cli_env, compose_config, only, read_jsonl, run_cli, wait_for_step
from tests.helpers.image_files import write_office31

# Long enough to be stopped mid-run; checkpoints every 100 steps, so a resume must also redo logs.
ARGS = (
    "logger=none",
    "trainer.steps=300",
    "trainer.eval_every=100",
    "trainer.log_every=10",
    "trainer.checkpoint_every=100",
)
SMALL_IMAGES = ("dataset.image_size=16", "dataset.resize_size=18")  # fast decoding
TIMEOUT = 600  # generous: the suite must pass on a loaded machine; nothing here asserts a duration


def torchrun(*args: str, run_dir: Path, wait: bool = True):
    """`torchrun --standalone --nproc_per_node=2 -m dann.run <args>` (--standalone: a free port)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "dann.run", *args, f"hydra.run.dir={run_dir}"]
    env = cli_env({"OMP_NUM_THREADS": "1"})
    if wait:
        return subprocess.run(command, cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return subprocess.Popen(command, cwd=run_dir.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def outputs(run_dir: Path):
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("wall_time_s")
    return summary, read_jsonl(run_dir / "metrics.jsonl"), read_checkpoint(checkpoint_path(run_dir))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    parent = tmp_path_factory.mktemp("ddp")
    # Each process resolves `now` itself, and their microseconds differ: rank 0's directory must win.
    result = torchrun(*ARGS, run_dir=parent / "run-${now:%H%M%S%f}")
    assert result.returncode == 0, result.stderr[-3000:]
    return only(parent.iterdir())


@pytest.mark.slow
def test_two_processes_train_the_one_process_recipe_and_only_rank_0_writes(two_processes: Path, tmp_path: Path):
    one_dir = tmp_path / "one"
    one = run_cli(*ARGS, f"hydra.run.dir={one_dir}", cwd=tmp_path, timeout=TIMEOUT)
    assert one.returncode == 0, one.stderr
    summary, records, checkpoint = outputs(two_processes)
    ref_summary, ref_records, _ = outputs(one_dir)

    # One writer: everything rank 0's, once; nothing anywhere else (the ranks agreed on the directory).
    assert list(two_processes.parent.iterdir()) == [two_processes]
    assert sorted(p.name for p in two_processes.iterdir()) == [
        ".hydra",
        ".lock",
        "checkpoints",
        "metrics.jsonl",
        "run.log",
        "summary.json",
    ]
    assert [(r["step"], sorted(r)) for r in records] == [(r["step"], sorted(r)) for r in ref_records]
    log = (two_processes / "run.log").read_text()
    # Rank 0's lines only, once each: the run's start, the last evaluation and the last progress line.
    assert log.count("dann on moons") == 1 and log.count("step 300/300  source/acc") == 1
    assert log.count("step 300/300  100%") == 1
    assert "the 2 processes end with the same parameters" in log
    assert summary["status"] == "finished" and summary.pop("world_size") == 2
    assert len(checkpoint["ranks"]) == 2 and checkpoint["step"] == 300

    # The same global batches, split over 2 processes: the moons MLP has no BatchNorm, so the mean of the
    # two half-batch gradients is the full-batch gradient, up to float summation order. Measured: the
    # losses agree to ~1e-7 and every accuracy exactly (1000 test points; one differs by 0.001).
    final, ref_final = summary.pop("final"), ref_summary.pop("final")
    for key in ("source/acc", "target/acc"):
        assert final[key] == pytest.approx(ref_final[key], abs=0.0015)
    assert {k: v for k, v in summary.items() if k != "selection"} == {
        k: v for k, v in ref_summary.items() if k != "selection"
    }
    for record, ref in zip(records, ref_records, strict=True):
        for key in ("train/label_loss", "train/domain_loss", "train/domain_acc", "source/acc", "target/acc"):
            if key in ref:
                assert record[key] == pytest.approx(ref[key], abs=2e-3), (record["step"], key)


@pytest.mark.slow
def test_a_two_process_run_stopped_by_sigterm_resumes_to_the_same_end(two_processes: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    process = torchrun(*ARGS, run_dir=run_dir, wait=False)
    wait_for_step(process, run_dir, 120, timeout=TIMEOUT)
    process.send_signal(signal.SIGTERM)  # torchrun passes it to both processes, which stop at one step
    process.communicate(timeout=TIMEOUT)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted", summary.get("error")
    stopped = read_checkpoint(checkpoint_path(run_dir))
    assert stopped["step"] == summary["step"] and summary["step"] % 10 == 0  # a log step: where ranks agree
    assert len(stopped["ranks"]) == 2

    resumed = torchrun(*ARGS, run_dir=run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {stopped['step']} of 300" in (run_dir / "run.log").read_text()
    summary, records, checkpoint = outputs(run_dir)
    ref_summary, ref_records, ref_checkpoint = outputs(two_processes)
    assert summary == ref_summary
    assert records == ref_records
    weights, ref_weights = checkpoint["method"], ref_checkpoint["method"]
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_processes_is_one_clear_error(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = torchrun("logger=none", "trainer.steps=10", "trainer.batch_size=33", run_dir=run_dir)
    assert result.returncode != 0
    line = "error: trainer.batch_size: 33 is the global batch per domain and must split evenly over the 2 processes"
    assert result.stderr.count(line) == 1, result.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert not (run_dir / "metrics.jsonl").exists()


class _PartlyUsed(nn.Module):
    """A network whose last layer no loss reaches (as a frozen or probe-only layer in a method's step),
    with a buffer that differs between ranks until they are made one."""

    def __init__(self, rank: int):
        super().__init__()
        self.used = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        self.unused = nn.Linear(2, 2)
        self.register_buffer("statistic", torch.full((2,), float(rank)))

    def forward(self, x):
        return self.used(x)


def _collectives(rank: int, store: str, results: str) -> None:
    """One of 2 spawned processes: the functions dann.run and dann.training.engine use, on real gloo collectives."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.manual_seed(rank)  # different initial weights on each rank
    network = distributed.prepare_network(_PartlyUsed(rank), torch.device("cpu"), seed=0)
    # What the engine wraps each method in; rank 0's parameters and buffers reach every rank here.
    wrapped = distributed.data_parallel(network, torch.device("cpu"), find_unused_parameters=True)
    same_start = torch.cat([t.detach().flatten() for t in [*network.parameters(), *network.buffers()]])

    # A full batch of 8: each rank backpropagates its half through DDP, which averages the gradients.
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(8, 3, generator=g), torch.randint(0, 2, (8,), generator=g)
    nn.functional.cross_entropy(wrapped(x[4 * rank : 4 * rank + 4]), y[4 * rank : 4 * rank + 4]).backward()
    averaged = [p.grad.clone() for p in network.used.parameters()]
    network.zero_grad()
    nn.functional.cross_entropy(network(x), y).backward()  # the unwrapped network: no collective
    full = [p.grad for p in network.used.parameters()]

    torch.save(
        {
            "wrapped": isinstance(wrapped, nn.parallel.DistributedDataParallel),
            "start": same_start,
            "max_difference": max((a - f).abs().max().item() for a, f in zip(averaged, full, strict=True)),
            "unused_grad": network.unused.weight.grad,
            "mean": distributed.all_reduce_mean({"a": torch.tensor(float(rank)), "b": torch.tensor(2.0)}),
            "signal": distributed.agreed_signal(signal.SIGTERM if rank == 1 else None),
            "broadcast": distributed.broadcast_object(f"from {rank}"),
            "gathered": distributed.gather_to_main(rank * 10),
            "merged": distributed.merged({f"file{rank}": "unreadable", "both": f"rank {rank}"}),
        },
        f"{results}.{rank}",
    )
    dist.destroy_process_group()


def test_the_collectives_make_two_processes_one_model(tmp_path: Path):
    mp.spawn(_collectives, args=(str(tmp_path / "store"), str(tmp_path / "result")), nprocs=2)
    zero, one = (torch.load(f"{tmp_path / 'result'}.{r}", weights_only=False) for r in (0, 1))
    assert zero["wrapped"] and one["wrapped"]
    assert torch.equal(zero["start"], one["start"])  # rank 0's initial weights and buffers everywhere
    for result in (zero, one):
        assert result["max_difference"] < 1e-6  # the mean of the half-batch gradients is the full batch's
        assert result["unused_grad"] is None  # no loss reached it on any rank: the optimiser skips it
        assert {k: v.item() for k, v in result["mean"].items()} == {"a": 0.5, "b": 2.0}
        assert result["signal"] == signal.SIGTERM  # a signal seen by one rank stops both
        assert result["broadcast"] == "from 0"
        assert result["merged"] == {"file0": "unreadable", "file1": "unreadable", "both": "rank 0"}
    assert zero["gathered"] == [0, 10] and one["gathered"] is None


def test_one_process_is_left_as_it_was(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    distributed.setup("cpu")
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    network = nn.Linear(2, 2)
    assert distributed.prepare_network(network, torch.device("cpu"), seed=0) is network
    assert distributed.data_parallel(network, torch.device("cpu"), find_unused_parameters=True) is network
    values = {"a": torch.tensor(1.0)}
    assert distributed.all_reduce_mean(values) is values
    assert distributed.agreed_signal(None) is None and distributed.agreed_signal(15) == 15
    distributed.check_settings(batch_size=33, device="cuda:1")  # nothing to split: any batch is fine


def test_each_rank_serves_its_disjoint_part_of_the_same_global_batches():
    split = Split(inputs=torch.arange(40.0).view(20, 2), labels=torch.arange(20))
    whole = TensorStream(split, batch_size=8, seed=3, device=torch.device("cpu"))
    shards = [TensorStream(split, 8, 3, torch.device("cpu"), shard=(r, 2)) for r in (0, 1)]
    for _ in range(7):  # across epoch boundaries (2 batches an epoch)
        x, y = next(whole)
        parts = [next(s) for s in shards]
        assert torch.equal(torch.cat([p[1] for p in parts]), y) and torch.equal(torch.cat([p[0] for p in parts]), x)
        assert shards[0].state_dict() == shards[1].state_dict() == whole.state_dict()


def test_each_rank_serves_its_part_of_the_same_augmented_image_batches(tmp_path: Path):
    write_office31(tmp_path, images_per_class=1, domains=("amazon", "webcam"))  # 31 images per domain
    cfg = compose_config("dataset=office31", f"dataset.root={tmp_path}", "dataset.num_workers=0", *SMALL_IMAGES)
    split = build_dataset(cfg).load().source_train
    whole = make_stream(split, 8, seed=3, device=torch.device("cpu"))
    shards = [make_stream(split, 8, 3, torch.device("cpu"), shard=(r, 2)) for r in (0, 1)]
    for _ in range(5):  # past the end of the 3-batch epoch: the augmentation is keyed by image, not by process
        x, y = next(whole)
        parts = [next(s) for s in shards]
        assert torch.equal(torch.cat([p[1] for p in parts]), y) and torch.equal(torch.cat([p[0] for p in parts]), x)
        assert shards[0].state_dict() == shards[1].state_dict() == whole.state_dict()


def test_launches_are_recognised_from_their_environment():
    torchrun_env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1234"}
    assert distributed.launch_environment(torchrun_env) == {
        "rank": 1,
        "world_size": 2,
        "local_rank": 1,
        "master_addr": "h",
        "master_port": 1234,
    }
    slurm = {"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
             "SLURM_STEP_NODELIST": "gpu[007-008]"}  # fmt: skip
    assert distributed.launch_environment(slurm) == {
        "rank": 3,
        "world_size": 4,
        "local_rank": 1,
        "master_addr": "gpu007",
        "master_port": 20000 + 123456 % 20000,
    }
    # A batch script's own shell is one process, whatever the job's task count.
    assert distributed.launch_environment({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}) is None
    assert distributed.launch_environment({}) is None
    hosts = {"a,b": "a", "node1": "node1", "gpu[003-005,9],cpu1": "gpu003", "n[1-2]-ib,m3": "n1-ib"}
    assert {nodes: distributed.first_host(nodes) for nodes in hosts} == hosts


def test_batchnorm_is_synchronised_on_gpus_only_and_frozen_layers_stay_frozen():
    def network():
        extractor = FeatureExtractor(MlpFeatures(input_shape=(2,), hidden=[4], activation=nn.ReLU), bottleneck_dim=3)
        extractor.freeze()
        return extractor

    on_cpu = distributed.sync_batchnorm(network(), torch.device("cpu"))
    assert any(isinstance(m, nn.BatchNorm1d) for m in on_cpu.modules())
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in on_cpu.modules())
    # Converting needs no GPU (only running it does): the decision and the frozen state are checked here.
    on_gpus = distributed.sync_batchnorm(network(), torch.device("cuda", 0))
    layers = [m for m in on_gpus.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert len(layers) == 1 and not layers[0].weight.requires_grad
    on_gpus.train()
    assert not layers[0].training  # frozen: its statistics stay frozen too


def test_a_cuda_device_index_is_refused_on_several_processes(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(distributed.ConfigError, match="trainer.device: cuda:1 names one GPU"):
        distributed.check_settings(batch_size=32, device="cuda:1")
    with pytest.raises(distributed.ConfigError, match="e.g. trainer.batch_size=32"):
        distributed.check_settings(batch_size=33, device="auto")


# Stray launch variables with no other process once held a run silent for the 2-hour collective timeout.
@pytest.mark.parametrize("rank", ["0", "1"])
def test_stray_rank_variables_say_what_they_wait_for_and_give_up_in_one_line(tmp_path: Path, rank):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    launch = {"RANK": rank, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    env = launch | {"DANN_RENDEZVOUS_TIMEOUT": "2", "OMP_NUM_THREADS": "1"}
    result = run_cli("trainer=debug", "logger=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert f"waiting up to 2 s for 2 processes at 127.0.0.1:{port} (rank {rank}" in result.stderr
    assert f"RANK={rank}, WORLD_SIZE=2" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: RANK/WORLD_SIZE:") and "unset RANK, WORLD_SIZE" in last, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
