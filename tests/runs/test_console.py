"""What a run prints: one log, on stderr, each line once and in order (evaluations and progress lines
alike, and the same lines in run.log); on stdout only the final result; no W&B summary printout.

Under submitit (hydra/launcher=local here, slurm on a cluster) the job's stderr and stdout are its
.err and .out files. submitit's own logger has a stdout handler of its own and also passes its records
on to the root logger's: its lines came out twice in .out until conf/hydra/job_logging/dann.yaml
removed its handlers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import only, run_cli

STEPS = ("trainer.steps=40", "trainer.eval_every=20", "trainer.log_every=10")
LOG_LINE = re.compile(r"^\[[\d-]+ [\d:,]+\]\[([\w.]+)\]\[(\w+)\] - (.*)$")  # job_logging/dann.yaml's format
RESULT_LINE = re.compile(r"^source/acc [\d.]+  target/acc [\d.]+  \(dann, moons → moons_rotated, seed 0\)$")


def log_lines(text: str) -> list[str]:
    """The lines of `text` in the log format."""
    return [line for line in text.splitlines() if LOG_LINE.match(line)]


def steps_logged(lines: list[str]) -> list[tuple[str, int]]:
    """(logger, step) of each evaluation and progress line, in order."""
    found = []
    for line in lines:
        name, _, message = LOG_LINE.match(line).groups()
        step = re.match(r"step (\d+)/40 ", message)
        if step and name in ("dann.training.loop", "dann.training.progress"):
            found.append((name.rsplit(".", 1)[1], int(step[1])))
    return found


def test_a_run_logs_on_stderr_once_in_order_and_prints_its_result_on_stdout(tmp_path: Path):
    run_dir = tmp_path / "run"
    env = {"OMP_NUM_THREADS": "1", "WANDB_DIR": str(tmp_path / "wandb")}
    result = run_cli("logger.wandb.mode=offline", *STEPS, f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr

    # stdout: the result and where it is, nothing else.
    out = result.stdout.splitlines()
    assert len(out) == 2 and RESULT_LINE.match(out[0]) and out[1] == f"outputs in {run_dir}", out
    # stderr: the log, with the progress lines (a pipe: plain lines, the first and the last) among the
    # evaluations, each once, in step order.
    logged = log_lines(result.stderr)
    assert steps_logged(logged) == [("progress", 10), ("loop", 20), ("progress", 40), ("loop", 40)], logged
    assert len(set(logged)) == len(logged)
    assert "\r" not in result.stderr
    # run.log: the same lines.
    assert log_lines((run_dir / "run.log").read_text()) == logged
    # W&B ran (offline) and said where its files are, but printed no run history or summary.
    assert (run_dir / "wandb").is_dir() and "Run data is saved locally" in result.stderr
    for block in ("Run summary:", "Run history:"):
        assert block not in result.stdout + result.stderr


@pytest.mark.slow
def test_a_submitit_job_writes_each_line_once(tmp_path: Path):
    env = {"OMP_NUM_THREADS": "1"}
    result = run_cli("-m", "hydra/launcher=local", "logger=none", *STEPS, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the launching process: Hydra's launch lines are log lines too, on stderr
    assert "Submitit 'local' sweep output dir" in result.stderr
    job_out = only(tmp_path.glob("multirun/*/*/.submitit/*/*_0_log.out"))
    out, err = job_out.read_text(), job_out.with_suffix(".err").read_text()

    assert RESULT_LINE.match(only(line for line in out.splitlines() if line.startswith("source/acc")))
    assert log_lines(out) == []  # no run log line in .out ...
    logged = log_lines(err)  # ... all of them in .err, once each, in order
    assert steps_logged(logged) == [("progress", 10), ("loop", 20), ("progress", 40), ("loop", 40)], logged
    assert len(set(logged)) == len(logged)
    # submitit's own lines: once each, wherever they are (its first two, before the job's logging is
    # configured, on stdout by its own handler; the rest through the job's, on stderr).
    both = out + err
    for message in ("Starting with JobEnvironment", "Job completed successfully", "Exiting after successful"):
        assert both.count(message) == 1, both
