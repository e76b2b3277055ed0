"""End to end: the real CLI and the real run() on the moons default."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dann.runs.launch import run
from dann.selection.pick import CRITERIA
from tests.helpers import cli_env, compose_config, only, read_jsonl, run_cli

QUICK = ["trainer.steps=200", "trainer.eval_every=100", "trainer.log_every=50"]
TRAIN_METRICS = {"train/label_loss", "train/domain_loss", "train/domain_acc", "train/lambda", "train/lr"} | {
    "train/grad_norm_label",  # gradient diagnostics: at every log interval
    "train/grad_norm_domain",
    "train/grad_ratio",
}
EVAL_METRICS = {"source/acc", "target/acc", "target/acc_per_class_mean"}
SELECT_METRICS = {c.metric for c in CRITERIA.values()} - EVAL_METRICS  # the label-free criteria, select/…


@pytest.mark.slow
def test_bare_cli_run_trains_evaluates_and_writes_every_output(tmp_path: Path):
    result = run_cli(*QUICK, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "source/acc" in result.stdout and "target/acc" in result.stdout
    run_dir = only(tmp_path.glob("outputs/*/*"))
    assert (run_dir / ".hydra" / "config.yaml").exists()

    records = read_jsonl(run_dir / "metrics.jsonl")
    train = [r for r in records if "train/label_loss" in r]
    evals = [r for r in records if "target/acc" in r]
    assert [r["step"] for r in train] == [50, 100, 150, 200]
    assert all(set(r) == TRAIN_METRICS | {"step"} for r in train)
    assert [r["step"] for r in evals] == [100, 200]
    assert all(set(r) == EVAL_METRICS | SELECT_METRICS | {"step"} for r in evals)
    assert all(0.0 <= r[k] <= 1.0 for r in evals for k in EVAL_METRICS)

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert {
        k: summary[k] for k in ("method", "lambda", "dataset", "source", "target", "seed", "steps", "protocol")
    } == {
        "method": "dann",
        "lambda": 1.0,
        "dataset": "moons",
        "source": "moons",
        "target": "moons_rotated",
        "seed": 0,
        "steps": 200,
        "protocol": "inductive",
    }
    assert summary["wall_time_s"] > 0
    assert summary["final"] == evals[-1]
    assert summary["selection"]["source_val"]["source/acc"] == max(r["source/acc"] for r in evals)
    assert summary["selection"]["oracle"]["target/acc"] == max(r["target/acc"] for r in evals)

    # W&B is offline by default: a run directory that `wandb sync` can upload later.
    assert only((run_dir / "wandb").glob("offline-run-*")).is_dir()


@pytest.mark.slow
def test_multirun_jobs_get_their_own_wandb_runs(tmp_path: Path):
    result = run_cli("-m", "seed=0,1", "trainer=debug", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job_dirs = sorted(p for p in only(tmp_path.glob("multirun/*/*")).iterdir() if p.is_dir())
    # Named by their overrides, so that a relaunched sweep finds each job's own directory again.
    assert [p.name for p in job_dirs] == [f"seed={s},trainer=debug" for s in (0, 1)]
    runs = [only((d / "wandb").glob("offline-run-*")).name for d in job_dirs]
    assert runs[0] != runs[1]
    seeds = [json.loads((d / "summary.json").read_text())["seed"] for d in job_dirs]
    assert seeds == [0, 1]


@pytest.mark.slow
def test_wandb_mode_from_environment_wins(tmp_path: Path):
    result = run_cli("trainer.steps=10", "trainer.eval_every=10", cwd=tmp_path, env={"WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr
    run_dir = only(tmp_path.glob("outputs/*/*"))
    assert (run_dir / "summary.json").exists() and not (run_dir / "wandb").exists()


def test_a_failing_wandb_never_stops_training(tmp_path: Path, monkeypatch):
    import wandb

    def broken_init(**kwargs):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(wandb, "init", broken_init)
    summary = run(compose_config("trainer.steps=20", "trainer.eval_every=10"), tmp_path)
    assert summary["status"] == "finished"
    records = read_jsonl(tmp_path / "metrics.jsonl")
    # log_every=50 > steps, so training metrics are logged once, at the last step; evaluations at 10 and 20.
    assert [(r["step"], "train/lr" in r) for r in records] == [(10, False), (20, True), (20, False)]


def test_wandb_failing_mid_run_is_switched_off(tmp_path: Path, monkeypatch):
    import wandb

    real_init = wandb.init

    def flaky_init(**kwargs):
        wb_run = real_init(**kwargs)

        def broken_log(*args, **kw):
            raise ConnectionError("lost the W&B service")

        monkeypatch.setattr(wb_run, "log", broken_log)
        return wb_run

    monkeypatch.setattr(wandb, "init", flaky_init)
    summary = run(compose_config("trainer.steps=20", "trainer.eval_every=10", "trainer.log_every=5"), tmp_path)
    assert summary["status"] == "finished"
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl") if "train/lr" in r] == [5, 10, 15, 20]


def test_a_failing_job_finishes_its_wandb_run_and_records_the_failure(tmp_path: Path, monkeypatch):
    import wandb

    from dann.training.engine import Engine

    calls = {"n": 0}
    real_step = Engine.step

    def step_then_crash(self, batch, progress, diagnose=False):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_step(self, batch, progress, diagnose)

    monkeypatch.setattr(Engine, "step", step_then_crash)
    with pytest.raises(RuntimeError, match="simulated"):
        run(compose_config("trainer.steps=20", "trainer.log_every=5"), tmp_path)
    assert wandb.run is None  # finished, so the next job of a multirun starts a fresh run
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "simulated" in summary["error"]


def test_same_seed_same_run_and_other_seed_other_run(tmp_path: Path):
    def metrics(seed: int, name: str):
        out = tmp_path / name
        out.mkdir()
        run(
            compose_config(
                f"seed={seed}", "logger=none", "trainer.steps=60", "trainer.eval_every=30", "trainer.log_every=10"
            ),
            out,
        )
        return read_jsonl(out / "metrics.jsonl")

    first, again, other = metrics(0, "a"), metrics(0, "b"), metrics(1, "c")
    assert first == again
    assert first != other


def test_labeled_target_fraction_is_fixed_stratified_and_used_only_with_target_labels(tmp_path: Path):
    import torch

    from dann.data import Split, labeled_subset

    labels = torch.arange(10).repeat_interleave(20)  # 10 classes × 20 examples
    split = Split(torch.arange(200).float().unsqueeze(1), labels)
    part = labeled_subset(split, 0.1)
    assert torch.bincount(part.labels).tolist() == [2] * 10  # 10% of every class
    assert torch.equal(labeled_subset(split, 0.1).inputs, part.inputs)  # the same examples every time
    assert set(part.inputs.squeeze(1).long().tolist()) <= set(range(200))

    overrides = [
        "logger=none",
        "trainer.steps=20",
        "trainer.eval_every=10",
        "trainer.batch_size=16",
        "dataset.target_labeled_fraction=0.1",
    ]
    for name in "abc":
        (tmp_path / name).mkdir()
    two_stage = run(compose_config("method=two_stage", *overrides), tmp_path / "a")
    assert two_stage["status"] == "finished" and two_stage["target_labeled_fraction"] == 0.1
    # 10% of the 300 target points is 30: a batch of 64 labeled target points cannot be drawn.
    with pytest.raises(Exception, match="trainer.batch_size: 64 is larger than the target training split"):
        run(
            compose_config(
                "method=target_only", *overrides[:-2], "trainer.batch_size=64", "dataset.target_labeled_fraction=0.1"
            ),
            tmp_path / "b",
        )
    dann = run(compose_config(*overrides), tmp_path / "c")
    assert dann["target_labeled_fraction"] == 0.0  # DANN never sees target labels


def test_importing_the_entry_point_imports_no_torch():
    # `dann-run --help`, a TAB completion and Hydra's errors load dann.run only: torch would cost them seconds.
    result = subprocess.run(
        [sys.executable, "-c", "import dann.run, sys; print('torch' in sys.modules)"],
        env=cli_env({"OMP_NUM_THREADS": "1"}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", "import dann.run imported torch: import it inside hydra_main"


@pytest.mark.parametrize(
    "args, env, expected",
    [
        (["--help"], {}, "Powered by Hydra"),
        (["-sc", "query=bash"], {"COMP_LINE": "dann-run tra", "COMP_POINT": "12"}, "trainer="),
    ],
)
def test_help_and_shell_completion_run_without_torch(args: list[str], env: dict[str, str], expected: str):
    # torch made unimportable: the command fails if anything on its way imports it.
    script = "import sys; sys.modules['torch'] = None; from dann.run import main; sys.argv[0] = 'dann-run'; main()"
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=cli_env({"OMP_NUM_THREADS": "1"} | env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
