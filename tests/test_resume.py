"""Checkpoints and exact resume: a run stopped by SIGKILL, SIGTERM or SIGINT and restarted ends exactly like
one never interrupted."""

import json
import signal
from pathlib import Path

import pytest
import torch

from dann.checkpoint import checkpoint_path, read_checkpoint
from dann.errors import RunDirError
from dann.run import run
from tests.helpers import compose_config, read_jsonl, run_cli, start_cli, wait_for_step

# Checkpoints every 500 steps; a signal at step ≥ 300 (or a kill at ≥ 600) lands between two of them,
# so a resumed run must also drop and redo what was logged after its last checkpoint.
ARGS = [
    "trainer.steps=1200",
    "trainer.checkpoint_every=500",
    "trainer.eval_every=300",
    "trainer.log_every=25",
    "logger=none",
]
TIMEOUT = 900  # generous: the suite must pass on a loaded machine; nothing here asserts a duration


def final_state(run_dir: Path):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary.pop("wall_time_s") > 0
    weights = read_checkpoint(checkpoint_path(run_dir))["method"]
    return summary, read_jsonl(run_dir / "metrics.jsonl"), weights


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = run_cli(*ARGS, f"hydra.run.dir={run_dir}", cwd=run_dir.parent, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_stopped_and_resumed_run_ends_exactly_like_an_uninterrupted_one(
    tmp_path: Path, signum: int, uninterrupted: Path
):
    run_dir = tmp_path / "run"
    process = start_cli(*ARGS, run_dir=run_dir)
    wait_for_step(process, run_dir, 600 if signum == signal.SIGKILL else 300)
    process.send_signal(signum)
    out, err = process.communicate(timeout=TIMEOUT)
    assert (run_dir / ".lock").exists()  # left behind by a killed process: it must not block the resume
    checkpoint_step = read_checkpoint(checkpoint_path(run_dir))["step"]
    logged = max(r["step"] for r in read_jsonl(run_dir / "metrics.jsonl"))
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
        assert not (run_dir / "summary.json").exists()
        assert checkpoint_step == 500 < logged < 1200
    else:
        # Stopped cleanly: a checkpoint at the step reached, and a summary saying so.
        assert process.returncode == 128 + signum, err
        assert "Traceback" not in err and f"interrupted by {signal.Signals(signum).name}" in err
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "interrupted"
        assert 300 <= summary["step"] == checkpoint_step < 1200
        assert logged <= checkpoint_step

    resumed = run_cli(*ARGS, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {checkpoint_step} of 1200" in (run_dir / "run.log").read_text()
    summary, records, weights = final_state(run_dir)
    ref_summary, ref_records, ref_weights = final_state(uninterrupted)
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
    with pytest.raises(RunDirError, match="lambda: 1.0 → 0.5 differs"):
        run(compose_config("trainer.steps=20", "logger=none", "lambda=0.5"), tmp_path)


def test_checkpoints_are_written_atomically(tmp_path: Path, monkeypatch):
    run(compose_config("trainer.steps=20", "trainer.checkpoint_every=5", "logger=none"), tmp_path)
    assert checkpoint_path(tmp_path).exists()
    assert not list(checkpoint_path(tmp_path).parent.glob("*.tmp"))
    state = read_checkpoint(checkpoint_path(tmp_path))
    assert state["step"] == 20
    assert {"method", "optimizer", "lr_scheduler", "streams", "rng", "pending", "evaluations"} <= set(state)
