"""A run directory holds the results of exactly one configuration, and nothing read from it runs code.

Each test here reproduces a way the numbers in a directory could come to belong to another
config, or a file could run code, and checks that it is refused with one line or recovered.
"""

import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

from dann.errors import ConfigError, Diverged, Interrupted, RunDirError
from dann.runs.checkpoint import checkpoint_path, read_checkpoint
from dann.runs.directory import job_dir_name
from dann.runs.launch import run
from tests.helpers import compose_config, read_jsonl, run_cli, start_cli, wait_for_step

QUICK = ["trainer=debug", "logger=none"]  # 20 steps: logs and evaluations at 10 and 20
TIMEOUT = 900  # generous: the suite must pass on a loaded machine; nothing here asserts a duration


def one_error_line(stderr: str) -> str:
    """The single `error: …` line a refused run prints, with no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every result-bearing file of a run directory, byte for byte."""
    names = ["summary.json", "metrics.jsonl", ".hydra/config.yaml", ".hydra/overrides.yaml", "checkpoints/last.pt"]
    return {name: (run_dir / name).read_bytes() for name in names if (run_dir / name).exists()}


# --- no file we read runs code --------------------------------------------------------------


class Payload:
    """What a crafted checkpoint could hold: unpickling it calls Path.touch(marker)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_checkpoint_never_runs_its_payload(tmp_path: Path):
    marker = tmp_path / "payload_ran"
    run_dir = tmp_path / "run"
    checkpoint_path(run_dir).parent.mkdir(parents=True)
    torch.save({"step": 10, "config": {}, "method": Payload(marker)}, checkpoint_path(run_dir))

    result = run_cli(*QUICK, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=TIMEOUT)
    line = one_error_line(result.stderr)
    assert result.returncode == 2
    assert str(checkpoint_path(run_dir)) in line and "trainer.resume=false" in line
    assert not marker.exists()

    # The way out the message names: start over, which replaces the file.
    result = run_cli(*QUICK, f"hydra.run.dir={run_dir}", "trainer.resume=false", cwd=tmp_path, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert read_checkpoint(checkpoint_path(run_dir))["step"] == 20


def test_checkpoints_load_as_data_only(tmp_path: Path):
    run(compose_config(*QUICK), tmp_path)
    state = torch.load(checkpoint_path(tmp_path), weights_only=True)  # raises if anything but data is inside
    assert state["step"] == 20 and state["config"]["lambda"] == 1.0


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_checkpoint_gets_one_line_naming_the_file_and_the_fix(tmp_path: Path, damage: str):
    run(compose_config(*QUICK, "trainer.checkpoint_every=10"), tmp_path)
    (tmp_path / "summary.json").unlink()  # as if killed before the end
    path = checkpoint_path(tmp_path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint", "empty": b""}[damage])
    with pytest.raises(RunDirError, match="trainer.resume=false") as error:
        run(compose_config(*QUICK, "trainer.checkpoint_every=10"), tmp_path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


# --- one directory, one config ----------------------------------------------------------------


@pytest.mark.slow
def test_a_finished_directory_refuses_another_config_and_keeps_its_results(tmp_path: Path):
    run_dir = tmp_path / "run"
    first = run_cli(*QUICK, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr
    before = snapshot(run_dir)

    other = run_cli(*QUICK, f"hydra.run.dir={run_dir}", "lambda=0.5", "seed=3", cwd=tmp_path, timeout=TIMEOUT)
    line = one_error_line(other.stderr)
    assert other.returncode == 2
    assert "lambda: 1.0 → 0.5" in line and "seed: 0 → 3" in line and str(run_dir) in line
    assert snapshot(run_dir) == before  # .hydra/ too: it still describes the run whose results are there

    same = run_cli(*QUICK, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=TIMEOUT)
    assert same.returncode == 0, same.stderr
    assert "target/acc" in same.stdout  # the stored result, which belongs to this config
    assert snapshot(run_dir) == before


def test_a_result_neutral_key_may_change_on_rerun(tmp_path: Path):
    first = run(compose_config(*QUICK), tmp_path)
    again = run(compose_config(*QUICK, "trainer.checkpoint_every=5", "trainer.eval_batch_size=7"), tmp_path)
    assert again == first


def test_starting_over_replaces_the_old_run_entirely(tmp_path: Path):
    run(compose_config(*QUICK, "trainer.steps=30"), tmp_path)
    summary = run(compose_config(*QUICK, "lambda=0.5", "trainer.resume=false", "trainer.rerun_finished=true"), tmp_path)
    assert summary["status"] == "finished" and summary["lambda"] == 0.5
    assert max(r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")) == 20  # nothing of the 30-step run left
    assert read_checkpoint(checkpoint_path(tmp_path))["config"]["lambda"] == 0.5


def sweep(tmp_path: Path, sweep_dir: Path, *grid: str, extra: tuple[str, ...] = ()):
    result = run_cli("-m", *grid, *QUICK, f"hydra.sweep.dir={sweep_dir}", *extra, cwd=tmp_path, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return result


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())


def assert_every_summary_matches_its_hydra(sweep_dir: Path) -> list[dict]:
    summaries = []
    for job in job_dirs(sweep_dir):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "finished", job
        assert (summary["method"], str(summary["seed"])) == (overrides.get("method", "dann"), overrides["seed"]), job
        summaries.append(summary)
    return summaries


@pytest.mark.slow
def test_relaunching_a_sweep_with_a_larger_grid_runs_the_new_jobs_in_their_own_directories(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    sweep(tmp_path, sweep_dir, "method=dann,source_only", "seed=0,1")
    first = {p.name: snapshot(p) for p in job_dirs(sweep_dir)}
    assert sorted(first) == sorted(
        job_dir_name(f"logger=none,method={m},seed={s},trainer=debug") for m in ("dann", "source_only") for s in (0, 1)
    )

    sweep(tmp_path, sweep_dir, "method=source_only,dann", "seed=0,1,2")  # other order, one more seed
    summaries = assert_every_summary_matches_its_hydra(sweep_dir)
    assert sorted((s["method"], s["seed"]) for s in summaries) == sorted(
        (m, s) for m in ("dann", "source_only") for s in (0, 1, 2)
    )
    assert {name: snapshot(sweep_dir / name) for name in first} == first  # finished jobs untouched


@pytest.mark.slow
def test_numbered_job_directories_refuse_a_shifted_grid_instead_of_mixing_configs(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    numbered = ("hydra.sweep.subdir=${hydra.job.num}",)
    sweep(tmp_path, sweep_dir, "method=dann,source_only", "seed=0", extra=numbered)
    before = {p.name: snapshot(p) for p in job_dirs(sweep_dir)}
    # Job 0 is now source_only, job 1 dann: each lands in a directory holding the other config.
    result = sweep(tmp_path, sweep_dir, "method=source_only,dann", "seed=0", extra=numbered)
    assert (result.stdout + result.stderr).count("already holds a finished run of another config") == 2
    assert {p.name: snapshot(p) for p in job_dirs(sweep_dir)} == before
    assert_every_summary_matches_its_hydra(sweep_dir)


# --- one process at a time ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_process_in_a_busy_directory_stops_at_once_and_the_first_is_unharmed(tmp_path: Path):
    run_dir = tmp_path / "run"
    # Far longer than the second launch takes on any machine; stopped with SIGTERM once checked.
    endless = ["trainer.steps=1000000", "trainer.eval_every=300", "trainer.log_every=25", "logger=none"]
    first = start_cli(*endless, run_dir=run_dir)
    wait_for_step(first, run_dir, 100)
    second = run_cli(*endless, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=TIMEOUT)
    line = one_error_line(second.stderr)
    assert second.returncode == 2
    assert str(run_dir) in line and f"process {first.pid}" in line
    assert first.poll() is None  # it was running all along
    wait_for_step(first, run_dir, max(r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")) + 100)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 128 + signal.SIGTERM, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["config"]["trainer"]["steps"] == 1000000
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/label_loss" in r]
    assert steps == list(range(25, summary["step"] + 1, 25))  # every record, once


# --- a diverged run is not a result ---------------------------------------------------------------


def test_a_huge_learning_rate_diverges_and_is_recorded_as_such(tmp_path: Path):
    with pytest.raises(Diverged) as error:
        run(compose_config(*QUICK, "trainer.steps=200", "optim.optimizer.lr=1e6"), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert summary["step"] == error.value.step
    assert "nan" in summary["error"] or "inf" in summary["error"]
    assert "final" not in summary  # no accuracy is recorded for it


@pytest.mark.slow
def test_a_diverged_run_exits_non_zero_and_a_sweep_goes_on_and_flags_it(tmp_path: Path):
    result = run_cli(
        *QUICK,
        "trainer.steps=200",
        "optim.optimizer.lr=1e6",
        f"hydra.run.dir={tmp_path / 'one'}",
        cwd=tmp_path,
        timeout=TIMEOUT,
    )
    assert result.returncode == 3 and "diverged at step" in one_error_line(result.stderr)

    sweep_dir = tmp_path / "sweep"
    sweep(tmp_path, sweep_dir, "optim.optimizer.lr=0.03,1e6", extra=("trainer.steps=200",))
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["counts"] == {"finished": 1, "diverged": 1}


# --- faults lose nothing and never block ----------------------------------------------------------


def sigterm_at_step(monkeypatch, n: int) -> None:
    """Make the n-th training step of this process send SIGTERM to itself, as SLURM does before preemption."""
    from dann.training.engine import Engine

    real_step, calls = Engine.step, {"n": 0}

    def step(self, batch, progress, diagnose=False):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, batch, progress, diagnose)

    monkeypatch.setattr(Engine, "step", step)


def test_a_truncated_last_metrics_line_is_dropped_on_resume(tmp_path: Path, monkeypatch):
    args = (*QUICK, "trainer.steps=40", "trainer.log_every=5")
    reference = tmp_path / "reference"
    run(compose_config(*args), reference)

    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        sigterm_at_step(patch, 20)
        with pytest.raises(Interrupted):
            run(compose_config(*args), run_dir)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 25, "train/la')  # a kill in the middle of a write
    run(compose_config(*args), run_dir)
    assert read_jsonl(run_dir / "metrics.jsonl") == read_jsonl(reference / "metrics.jsonl")


def test_a_corrupt_metrics_line_before_the_last_is_one_error(tmp_path: Path):
    run(compose_config(*QUICK, "trainer.steps=40", "trainer.checkpoint_every=20"), tmp_path)
    (tmp_path / "summary.json").unlink()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    lines[1] = "{oops"
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirError, match=r"metrics.jsonl: line 2 is not a metrics record.*trainer.resume=false"):
        run(compose_config(*QUICK, "trainer.steps=40", "trainer.checkpoint_every=20"), tmp_path)


@pytest.mark.parametrize(
    "content", ['{"status": "fini', "", "[1, 2]", "[" * 100_000], ids=["truncated", "empty", "list", "deep"]
)
def test_a_corrupt_summary_never_blocks_the_directory(tmp_path: Path, content: str):
    first = run(compose_config(*QUICK), tmp_path)
    (tmp_path / "summary.json").write_text(content)
    again = run(compose_config(*QUICK), tmp_path)  # resumes from the final checkpoint, rewrites the summary
    assert again["status"] == "finished" and again["final"] == first["final"]
    assert json.loads((tmp_path / "summary.json").read_text())["final"] == first["final"]


@pytest.mark.parametrize("planted", ["huge", "fifo", "endless"])
def test_a_summary_too_large_or_not_a_file_is_never_read_and_treated_as_corrupt(tmp_path: Path, planted, caplog):
    first = run(compose_config(*QUICK), tmp_path)
    path = tmp_path / "summary.json"
    if planted == "huge":  # sparse: the summary, then NULs to 65 MiB, costing no disk
        with open(path, "r+b") as f:
            f.truncate(65 * 2**20)
    else:
        path.unlink()
        os.mkfifo(path) if planted == "fifo" else path.symlink_to("/dev/zero")  # endless: never read whole
    says = "larger than 4 MiB, which no file dann writes is" if planted == "huge" else "not a regular file"
    with caplog.at_level("WARNING", logger="dann"):
        again = run(compose_config(*QUICK), tmp_path)  # as for any corrupt summary: resumed, rewritten
    assert f"{path} is unreadable ({says}; not read); ignoring it" in caplog.text, caplog.text
    assert again["status"] == "finished" and again["final"] == first["final"]
    assert path.is_file() and not path.is_symlink()
    assert json.loads(path.read_text())["final"] == first["final"]


@pytest.mark.slow
def test_an_unusable_output_directory_is_one_line(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli(*QUICK, f"hydra.run.dir={blocker}/run", cwd=tmp_path, timeout=TIMEOUT)
    assert result.returncode == 2
    assert "hydra.run.dir" in one_error_line(result.stderr)


# --- SIGTERM and SIGINT (the runs in a process: tests/runs/test_resume.py) -------------------------------


def test_a_signal_flushes_and_finishes_the_wandb_run(tmp_path: Path, monkeypatch):
    import wandb

    logged_steps, finished = [], []
    real_init = wandb.init

    def recording_init(**kwargs):
        wb_run = real_init(**kwargs)
        real_log, real_finish = wb_run.log, wb_run.finish
        monkeypatch.setattr(
            wb_run, "log", lambda data, step=None: (logged_steps.append(step), real_log(data, step=step))
        )
        monkeypatch.setattr(wb_run, "finish", lambda **kw: (finished.append(kw), real_finish(**kw)))
        return wb_run

    monkeypatch.setattr(wandb, "init", recording_init)
    sigterm_at_step(monkeypatch, 13)
    with pytest.raises(Interrupted) as stopped:
        run(compose_config("trainer.steps=40", "trainer.log_every=5", "trainer.eval_every=20"), tmp_path)
    assert stopped.value.step == 13
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # our handler is gone after the run
    assert finished and wandb.run is None
    assert sorted(set(logged_steps)) == [5, 10]  # every interval logged before the signal reached W&B
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["step"]) == ("interrupted", 13)


def test_job_directory_names_are_safe_and_distinct():
    assert job_dir_name("lambda=0.1,seed=0") == "lambda=0.1,seed=0"
    assert job_dir_name("") == "default"
    slashed, underscored = job_dir_name("dataset.root=/data/x"), job_dir_name("dataset.root=_data_x")
    assert "/" not in slashed and slashed != underscored
    long = job_dir_name("a=" + "x" * 500)
    assert len(long) <= 120 and long != job_dir_name("a=" + "x" * 499)


# --- the run directory's lifecycle (issue 16) -------------------------------------------------------


def interrupted_run(run_dir: Path, monkeypatch, *args: str, at: int = 13) -> dict:
    """A QUICK run stopped by SIGTERM at step `at`: a checkpoint there and an `interrupted` summary."""
    with monkeypatch.context() as patch:
        sigterm_at_step(patch, at)
        with pytest.raises(Interrupted):
            run(compose_config(*QUICK, "trainer.checkpoint_every=5", *args), run_dir, hydra_files={"x.yaml": "[]\n"})
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    return summary


LINKED = ["summary.json.tmp", ".hydra/config.yaml.tmp", "checkpoints/last.pt.tmp", "metrics.jsonl.tmp", "summary.json"]


@pytest.mark.parametrize("name", LINKED)
def test_a_planted_link_is_never_written_through(tmp_path: Path, name: str):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    (run_dir / name).parent.mkdir(parents=True)
    (run_dir / name).symlink_to(victim)
    (run_dir / "metrics.jsonl").write_text('{"step": 5, "train/lambda": 0.0}\n')  # rewound: its tmp is written
    summary = run(compose_config(*QUICK), run_dir, hydra_files={"config.yaml": "x: 1\n"})
    assert summary["status"] == "finished"
    assert victim.read_text() == "precious\n"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.parametrize("name", [".lock", "metrics.jsonl"])
def test_a_link_where_a_file_is_appended_or_locked_is_refused_in_one_line(tmp_path: Path, name: str):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / name).symlink_to(victim)
    with pytest.raises(RunDirError, match="is a symbolic link") as error:
        run(compose_config(*QUICK), run_dir)
    assert str(run_dir / name) in str(error.value) and "\n" not in str(error.value)
    assert victim.read_text() == "precious\n"


def test_rerun_finished_trains_again_from_step_zero(tmp_path: Path, monkeypatch):
    from dann.training.engine import Engine

    first = run(compose_config(*QUICK), tmp_path)
    (tmp_path / "metrics.jsonl").write_text("{oops\n" + (tmp_path / "metrics.jsonl").read_text())
    steps, real_step = [], Engine.step
    monkeypatch.setattr(Engine, "step", lambda self, *a, **k: (steps.append(1), real_step(self, *a, **k))[1])
    again = run(compose_config(*QUICK, "trainer.rerun_finished=true"), tmp_path)
    assert len(steps) == 20  # trained every step again, not "resumed from step 20 of 20"
    assert again["final"] == first["final"]  # the same code and config: the same numbers
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [10, 10, 20, 20]  # the old file replaced
    # A rerun repeats the same config; replacing it by another one takes trainer.resume=false.
    with pytest.raises(RunDirError, match="lambda: 1.0 → 0.5.*trainer.resume=false"):
        run(compose_config(*QUICK, "trainer.rerun_finished=true", "lambda=0.5"), tmp_path)


def test_a_refused_config_leaves_an_interrupted_run_as_it_was(tmp_path: Path, monkeypatch):
    interrupted_run(tmp_path, monkeypatch)
    (tmp_path / ".hydra" / "config.yaml").write_text("the interrupted run's\n")
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="lambda"):
        run(
            compose_config(*QUICK, "trainer.checkpoint_every=5", "lambda=-1"),
            tmp_path,
            hydra_files={"config.yaml": "new\n"},
        )
    assert snapshot(tmp_path) == before


def test_resuming_on_a_machine_that_resolves_another_precision_keeps_the_run_interrupted(tmp_path: Path, monkeypatch):
    interrupted_run(tmp_path, monkeypatch)
    state = read_checkpoint(checkpoint_path(tmp_path))
    state["runtime"] = state["runtime"] | {"precision": "bf16"}  # as if started on a bf16 GPU
    torch.save(state, checkpoint_path(tmp_path))
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match="Resume it on the kind of device it started on"):
        run(compose_config(*QUICK, "trainer.checkpoint_every=5"), tmp_path)
    assert snapshot(tmp_path) == before  # still interrupted, at its step: resumable on a GPU


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_gpu_sweep_job_relaunched_on_a_cpu_node_stays_interrupted(tmp_path: Path, monkeypatch):
    sweep_dir = tmp_path / "sweep"
    job = sweep_dir / "job"
    interrupted_run(job, monkeypatch)
    before = snapshot(job)
    grid = ("hydra.sweep.subdir=job", "trainer.checkpoint_every=5")
    result = run_cli("-m", *QUICK, "trainer.device=cuda", f"hydra.sweep.dir={sweep_dir}", *grid, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "not run here" in output and "skipping" not in output, output
    assert snapshot(job) == before
    assert json.loads((job / "summary.json").read_text())["status"] == "interrupted"
    assert json.loads((sweep_dir / "sweep_summary.json").read_text())["counts"] == {"interrupted": 1}


def test_a_full_disk_at_the_first_checkpoint_is_one_error_and_a_failed_summary(tmp_path: Path, monkeypatch):
    import errno

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(RunDirError, match="No space left on device") as error:
        run(compose_config(*QUICK), tmp_path)
    assert str(checkpoint_path(tmp_path)) in str(error.value) and "\n" not in str(error.value)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left" in summary["error"]
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_a_full_disk_gives_one_line_on_the_command_line(tmp_path: Path):
    import subprocess
    import sys

    from tests.helpers import cli_env

    script = (
        "import errno, os, sys, torch\n"
        "def no_space(*a, **k): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "torch.save = no_space\n"
        "from dann.run import main\n"
        "sys.argv = ['dann.run', *sys.argv[1:]]\n"
        "main()\n"
    )
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", script, *QUICK, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert "No space left on device" in one_error_line(result.stderr)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert not list(run_dir.rglob("*.tmp"))


def test_a_second_ctrl_c_during_the_checkpoint_write_completes_it_then_stops(tmp_path: Path, monkeypatch):
    from dann.training.engine import Engine

    real_step, real_save, calls = Engine.step, torch.save, {"n": 0, "stopping": False}

    def step(self, batch, progress, diagnose=False):
        calls["n"] += 1
        if calls["n"] == 13:
            calls["stopping"] = True
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, batch, progress, diagnose)

    def save(*args, **kwargs):
        if calls["stopping"]:
            os.kill(os.getpid(), signal.SIGINT)  # lands in the middle of the write
        return real_save(*args, **kwargs)

    monkeypatch.setattr(Engine, "step", step)
    monkeypatch.setattr(torch, "save", save)
    with pytest.raises((Interrupted, KeyboardInterrupt)) as stopped:
        run(compose_config(*QUICK), tmp_path)
    assert isinstance(stopped.value, Interrupted), stopped.value
    assert read_checkpoint(checkpoint_path(tmp_path))["step"] == 13  # whole
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["step"]) == ("interrupted", 13)
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize(
    "damage", [{"config": "oops"}, {"final": None}, {"final": {"source/acc": "x"}}, {"selection": 3}]
)
def test_a_finished_summary_with_a_corrupt_field_is_one_line_naming_the_fix(tmp_path: Path, damage: dict):
    run(compose_config(*QUICK), tmp_path)
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | damage))
    with pytest.raises(RunDirError, match="trainer.rerun_finished=true trainer.resume=false") as error:
        run(compose_config(*QUICK), tmp_path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    # The way out it names works.
    fixed = run(compose_config(*QUICK, "trainer.rerun_finished=true", "trainer.resume=false"), tmp_path)
    assert fixed["status"] == "finished"


def test_a_corrupt_metrics_line_is_reported_at_its_line_in_the_file(tmp_path: Path):
    run(compose_config(*QUICK, "trainer.steps=40", "trainer.checkpoint_every=20"), tmp_path)
    (tmp_path / "summary.json").unlink()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    lines[1:1] = [""] * 1000 + ["{oops"]  # an editor shows it at line 1002
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirError, match=r"metrics.jsonl: line 1002 is not a metrics record"):
        run(compose_config(*QUICK, "trainer.steps=40", "trainer.checkpoint_every=20"), tmp_path)


def fake_sweep(sweep_dir: Path) -> None:
    """A finished sweep's directory as Hydra and dann leave it: multirun.yaml and a job with its summary."""
    (sweep_dir / "seed=0" / ".hydra").mkdir(parents=True)
    (sweep_dir / "seed=0" / "summary.json").write_text('{"status": "finished"}\n')
    (sweep_dir / "multirun.yaml").write_text("hydra: {}\n")


@pytest.mark.slow
def test_a_single_run_into_a_sweeps_directory_is_refused_in_one_line(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    fake_sweep(sweep_dir)
    before = sorted(str(p) for p in sweep_dir.rglob("*"))
    result = run_cli(*QUICK, f"hydra.run.dir={sweep_dir}", cwd=tmp_path, timeout=TIMEOUT)
    assert result.returncode == 2
    assert "holds a sweep" in one_error_line(result.stderr)
    assert sorted(str(p) for p in sweep_dir.rglob("*")) == before  # no .lock, no run.log, no summary


@pytest.mark.parametrize("marker", ["multirun.yaml", "job"])
def test_run_refuses_a_sweeps_directory(tmp_path: Path, marker: str):
    fake_sweep(tmp_path)
    if marker == "job":
        (tmp_path / "multirun.yaml").unlink()
    with pytest.raises(RunDirError, match="holds a sweep"):
        run(compose_config(*QUICK), tmp_path)
    assert not (tmp_path / ".lock").exists() and not (tmp_path / "summary.json").exists()


def test_resuming_under_another_thread_count_warns(tmp_path: Path, monkeypatch, caplog):
    interrupted_run(tmp_path, monkeypatch, "trainer.threads=2")
    assert read_checkpoint(checkpoint_path(tmp_path))["threads"] == 2
    with caplog.at_level("WARNING", logger="dann"):  # trainer.threads is no part of the identity: it resumes
        resumed = run(compose_config(*QUICK, "trainer.checkpoint_every=5", "trainer.threads=1"), tmp_path)
    assert resumed["status"] == "finished" and resumed["runtime"]["threads"] == 1
    assert "resuming with 1 CPU threads a run checkpointed with 2" in caplog.text
    assert "trainer.threads=2 for an exact resume" in caplog.text
