"""Checkpoints and exact resume: a run killed with SIGKILL and restarted ends exactly like one never interrupted."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import compose_config, read_jsonl, run_cli
from dann.checkpoint import checkpoint_path
from dann.errors import ConfigError
from dann.run import run

ARGS = ["trainer.steps=3000", "trainer.checkpoint_every=300", "trainer.eval_every=250",
        "trainer.log_every=25", "logger=none"]


def final_state(run_dir: Path):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary.pop("wall_time_s") > 0
    weights = torch.load(checkpoint_path(run_dir), weights_only=False)["method"]
    return summary, read_jsonl(run_dir / "metrics.jsonl"), weights


@pytest.mark.slow
def test_killed_and_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path: Path):
    reference = tmp_path / "reference"
    assert run_cli(*ARGS, f"hydra.run.dir={reference}", cwd=tmp_path).returncode == 0

    interrupted = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "dann.run", *ARGS, f"hydra.run.dir={interrupted}"]
    process = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = interrupted / "metrics.jsonl"
    deadline = time.time() + 240
    # Kill between checkpoints (after step 1000, last checkpoint at 900), so that the
    # resumed run must also drop and redo what was logged after its checkpoint.
    while time.time() < deadline and process.poll() is None:
        if metrics.exists() and any(r["step"] >= 1000 for r in read_jsonl(metrics)):
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "summary.json").exists(), "the run finished before it could be killed"
    killed_at = max(r["step"] for r in read_jsonl(metrics))
    checkpoint_step = torch.load(checkpoint_path(interrupted), weights_only=False)["step"]
    assert 0 < checkpoint_step < killed_at < 3000

    resumed = run_cli(*ARGS, f"hydra.run.dir={interrupted}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {checkpoint_step} of 3000" in (interrupted / "run.log").read_text()

    summary, records, weights = final_state(interrupted)
    ref_summary, ref_records, ref_weights = final_state(reference)
    assert summary == ref_summary and summary["status"] == "finished"
    assert records == ref_records
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)


def test_a_finished_run_is_not_run_again_unless_forced(tmp_path: Path):
    cfg = compose_config("trainer.steps=20", "trainer.eval_every=10", "logger=none")
    first = run(cfg, tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text()
    assert run(cfg, tmp_path) == first
    assert (tmp_path / "metrics.jsonl").read_text() == lines  # nothing was trained or logged again
    forced = compose_config("trainer.steps=20", "trainer.eval_every=10", "logger=none", "trainer.rerun_finished=true")
    assert run(forced, tmp_path)["final"] == first["final"]


def test_a_checkpoint_from_another_config_is_refused(tmp_path: Path):
    run(compose_config("trainer.steps=20", "trainer.checkpoint_every=10", "logger=none"), tmp_path)
    (tmp_path / "summary.json").unlink()  # as if it had been killed before finishing
    with pytest.raises(ConfigError, match="lambda differ"):
        run(compose_config("trainer.steps=20", "logger=none", "lambda=0.5"), tmp_path)


def test_checkpoints_are_written_atomically(tmp_path: Path, monkeypatch):
    run(compose_config("trainer.steps=20", "trainer.checkpoint_every=5", "logger=none"), tmp_path)
    assert checkpoint_path(tmp_path).exists()
    assert not list(checkpoint_path(tmp_path).parent.glob("*.tmp"))
    state = torch.load(checkpoint_path(tmp_path), weights_only=False)
    assert state["step"] == 20
    assert {"method", "optimizer", "lr_scheduler", "streams", "rng", "pending", "evaluations"} <= set(state)
