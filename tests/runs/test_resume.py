"""Checkpoints and exact resume: a run stopped by SIGKILL, SIGTERM or SIGINT and restarted ends exactly like
one never interrupted."""

import json
import signal
from pathlib import Path

import pytest
import torch

from dann.errors import RunDirError
from dann.runs.checkpoint import checkpoint_path, read_checkpoint
from dann.runs.launch import run
from tests.helpers import compose_config, read_jsonl, run_cli, start_cli, wait_for_step

# Checkpoints every 250 steps; a signal at step ≥ 150 stops the run between two of them, and a kill at
# ≥ 300 lands after the first, so a resumed run must also drop and redo what was logged after it. The
# margins (≥ 200 steps before the next checkpoint, ≥ 450 before the end) leave room for a loaded machine.
STEPS, CHECKPOINT_EVERY, SIGNAL_AT, KILL_AT = 600, 250, 150, 300
ARGS = [
    f"trainer.steps={STEPS}",
    f"trainer.checkpoint_every={CHECKPOINT_EVERY}",
    "trainer.eval_every=150",
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
    wait_for_step(process, run_dir, KILL_AT if signum == signal.SIGKILL else SIGNAL_AT)
    process.send_signal(signum)
    out, err = process.communicate(timeout=TIMEOUT)
    assert (run_dir / ".lock").exists()  # left behind by a killed process: it must not block the resume
    checkpoint_step = read_checkpoint(checkpoint_path(run_dir))["step"]
    logged = max(r["step"] for r in read_jsonl(run_dir / "metrics.jsonl"))
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
        assert not (run_dir / "summary.json").exists()
        assert checkpoint_step == CHECKPOINT_EVERY < KILL_AT <= logged < STEPS
    else:
        # Stopped cleanly: a checkpoint at the step reached, and a summary saying so.
        assert process.returncode == 128 + signum, err
        assert "Traceback" not in err and f"interrupted by {signal.Signals(signum).name}" in err
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "interrupted"
        assert SIGNAL_AT <= summary["step"] == checkpoint_step < STEPS
        assert logged <= checkpoint_step

    resumed = run_cli(*ARGS, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {checkpoint_step} of {STEPS}" in (run_dir / "run.log").read_text()
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


QUICK = ("trainer.steps=20", "trainer.eval_every=10", "trainer.checkpoint_every=10", "logger=none")


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory) -> Path:
    """A short run's directory as a kill before its summary leaves it: a checkpoint of step 20 to resume."""
    run_dir = tmp_path_factory.mktemp("killed") / "run"
    run(compose_config(*QUICK), run_dir)
    (run_dir / "summary.json").unlink()
    return run_dir


def _first_weight(state):
    key = next(k for k, v in state["method"].items() if v.dim() == 2)
    state["method"][key] = torch.zeros(3, 3)


CORRUPTIONS = {
    "tensor_shape": _first_weight,
    "extra_key": lambda s: s.update(extra=1),
    "missing_optimizer": lambda s: s.pop("optimizer"),
    "string_step": lambda s: s.update(step="10"),
    "negative_step": lambda s: s.update(step=-5),
    "step_past_the_end": lambda s: s.update(step=10**6),
    "rng_state": lambda s: s["rng"].update(torch=torch.zeros(3, dtype=torch.uint8)),
    "python_rng_state": lambda s: s["rng"].update(python="nope"),
    "stream_state": lambda s: s["streams"].update(source={"epoch": "x", "position": 0}),
    "config_not_a_mapping": lambda s: s.update(config="nope"),
}


# A checkpoint that loads but is not what this run writes was a traceback, or (a negative step) trained
# past its end and "finished"; now one RunDirError naming the file and the fix, and nothing changes on disk.
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_loadable_but_wrong_checkpoint_is_refused_before_anything_runs(killed_run, tmp_path, corruption):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(killed_run, run_dir)
    state = torch.load(checkpoint_path(run_dir), weights_only=True)
    CORRUPTIONS[corruption](state)
    torch.save(state, checkpoint_path(run_dir))
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(RunDirError) as refused:
        run(compose_config(*QUICK), run_dir)
    message = str(refused.value)
    assert str(checkpoint_path(run_dir)) in message and "trainer.resume=false" in message
    assert "\n" not in message
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != "summary.json"}
    assert after == {p: b for p, b in before.items()}  # nothing trained, logged or rewound


def test_an_intact_checkpoint_still_resumes(killed_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(killed_run, run_dir)
    assert run(compose_config(*QUICK), run_dir)["status"] == "finished"
