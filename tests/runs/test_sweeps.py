"""Hydra multiruns: invalid combinations are skipped, failures are contained, W&B runs are named."""

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dann.run import run_name, sweep_group
from dann.runs.launch import run
from tests.helpers import REPO, SHORT_RUN, compose_config, only, run_cli

QUICK = ["trainer=debug"]  # 20 steps: logs and evaluations at 10 and 20


# The moons MLP, but its 10th forward pass raises: a crash inside a job, not a config error.
CRASHING_BACKBONE = """
from dann.models.feature_extractors import MlpFeatures


class CrashingFeatures(MlpFeatures):
    calls = 0

    def forward(self, x):
        CrashingFeatures.calls += 1
        if CrashingFeatures.calls == 10:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated)")
        return super().forward(x)
"""


@pytest.mark.slow
def test_grid_skips_invalid_pairs_and_survives_a_failing_job(tmp_path: Path):
    # 2 targets × 2 backbones: target=moons equals the source (invalid, skipped), and the
    # crashing backbone (importable from the launch directory) fails inside its job.
    (tmp_path / "crashing_backbone.py").write_text(CRASHING_BACKBONE)
    backbones = "dann.models.feature_extractors.MlpFeatures,crashing_backbone.CrashingFeatures"
    result = run_cli(
        "-m",
        "dataset.target=moons_rotated,moons",
        f"model.feature_extractor._target_={backbones}",
        "logger=none",
        *QUICK,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    sweep_dir = only(tmp_path.glob("multirun/*/*"))
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["counts"] == {"finished": 1, "failed": 1, "skipped": 2}
    statuses = {tuple(job["overrides"][:2]): job["status"] for job in summary["jobs"]}
    mlp, crashing = (f"model.feature_extractor._target_={b}" for b in backbones.split(","))
    assert statuses[("dataset.target=moons_rotated", mlp)] == "finished"
    assert statuses[("dataset.target=moons_rotated", crashing)] == "failed"
    assert statuses[("dataset.target=moons", mlp)] == statuses[("dataset.target=moons", crashing)] == "skipped"
    # One line per skipped job, naming why; the failure's traceback is in its own log.
    skip_lines = [line for line in result.stderr.splitlines() if line.startswith("skipping job")]
    assert len(skip_lines) == 2
    assert all("dataset.source and dataset.target are both 'moons'" in line for line in skip_lines)
    failed = only(job for job in summary["jobs"] if job["status"] == "failed")
    assert "simulated" in failed["error"]
    failed_log = (sweep_dir / failed["job"] / "run.log").read_text()
    assert "Traceback" in failed_log and "simulated" in failed_log


def test_run_name_comes_from_the_overrides():
    assert run_name(["dataset.source=A", "dataset.target=W", "lambda=0.1", "seed=1"]) == "A→W lambda=0.1 seed=1"
    assert run_name(["lambda=0.1", "logger.wandb.mode=offline", "hydra.launcher.partition=gpu"]) == "lambda=0.1"
    assert run_name([]) is None


def test_sweep_group_is_the_sweep_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sweep_group(str(tmp_path / "multirun" / "2026-11-22" / "10-00-00")) == "multirun/2026-11-22/10-00-00"
    assert sweep_group("/elsewhere/my-sweep") == "my-sweep"


def test_wandb_run_gets_group_name_and_job_type(tmp_path, monkeypatch):
    import wandb

    seen = {}

    def capture_init(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("captured")  # W&B failing to start must not stop the run either

    monkeypatch.setattr(wandb, "init", capture_init)
    run(compose_config("method=source_only", *QUICK), tmp_path, wandb_group="multirun/x", wandb_name="A→W seed=1")
    assert (seen["group"], seen["name"], seen["job_type"]) == ("multirun/x", "A→W seed=1", "source_only")
    assert seen["config"]["method"]["name"] == "source_only"  # the resolved config


def test_explicit_wandb_group_and_name_win(tmp_path, monkeypatch):
    import wandb

    seen = {}
    monkeypatch.setattr(wandb, "init", lambda **kw: seen.update(kw) or (_ for _ in ()).throw(RuntimeError()))
    run(compose_config("logger.wandb.group=mine", "logger.wandb.name=run1", *QUICK), tmp_path, wandb_group="auto")
    assert (seen["group"], seen["name"]) == ("mine", "run1")


@pytest.mark.parametrize(
    "launcher, target", [("slurm", "SlurmLauncher"), ("local", "LocalLauncher"), ("submitit_slurm", "SlurmLauncher")]
)
def test_launcher_configs_compose(launcher, target):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "slurm":
        assert (cfg.hydra.launcher.gpus_per_node, cfg.hydra.launcher.max_num_timeout) == (1, 5)


@pytest.mark.parametrize("search", ["dann_digits", "dann_moons"])
def test_optuna_searches_compose_and_need_no_target_labels(search):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hparams_search={search}"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert set(cfg.hydra.sweeper.params) == {"lambda", "optim.optimizer.lr", "model.domain_classifier.hidden"}
    assert cfg.trainer.objective == "source_val"


@pytest.mark.slow
def test_optuna_search_runs_and_returns_the_source_validation_score(tmp_path: Path):
    result = run_cli("-m", "hparams_search=dann_moons", "hydra.sweeper.n_trials=2", "logger=none", *QUICK, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sweep_dir = only(tmp_path.glob("multirun/*/*"))
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())["best_value"]
    scores = [
        json.loads(p.read_text())["selection"]["source_val"]["source/acc"] for p in sweep_dir.glob("*/summary.json")
    ]
    assert len(scores) == 2 and best == max(scores)


def test_optuna_search_whose_trials_all_fail_ends_in_one_line_and_a_sweep_summary(tmp_path: Path):
    # source = target: every trial is skipped for its config, so Optuna has no completed trial and no best one.
    search = ("-m", "hparams_search=dann_moons", "hydra.sweeper.n_trials=2", "logger=none", *QUICK)
    result = run_cli(*search, "dataset.target=moons", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    sweep_dir = only(tmp_path.glob("multirun/*/*"))
    assert line.startswith("error: Optuna search: no trial returned a score") and "(2 skipped)" in line
    assert "both 'moons'" in line and line.endswith(f"see {sweep_dir.relative_to(tmp_path)}/sweep_summary.json")
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["counts"] == {"skipped": 2} and summary["error"].startswith("no trial returned a score")
    assert [job["status"] for job in summary["jobs"]] == ["skipped", "skipped"]
    assert not (sweep_dir / "optimization_results.yaml").exists()  # no best parameters to write


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Deprecated API features detected")  # optuna 2.x on SQLAlchemy 1.4: expected
def test_optuna_study_in_sqlite_resumes_across_launches(tmp_path: Path):
    # The storage conf/hparams_search/*.yaml documents: a second launch with the same
    # study_name and storage adds its trials to the first launch's study.
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    for launch in ("first", "second"):
        result = run_cli(
            "-m",
            "hparams_search=dann_moons",
            "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=moons_resume",
            f"hydra.sweep.dir={tmp_path / launch}",
            *SHORT_RUN,
            cwd=tmp_path,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="moons_resume", storage=storage).trials
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.COMPLETE] * 4


def test_wandb_sweep_example_calls_the_app_with_hydra_overrides():
    sweep = yaml.safe_load((REPO / "experiments" / "sweeps" / "wandb_sweep.yaml").read_text())
    assert sweep["command"][2:4] == ["-m", "dann.run"] and "${args_no_hyphens}" in sweep["command"]
    assert "target" not in sweep["metric"]["name"]
    for key in sweep["parameters"]:
        compose_config(f"{key}=1")  # every swept key exists in the config


@pytest.mark.slow
def test_submitit_local_sweep_then_report(tmp_path: Path):
    # A real 2×2 grid, each job its own process through submitit, like on a cluster.
    result = run_cli(
        "-m",
        "hydra/launcher=local",
        "method=dann,source_only",
        "seed=0,1",
        *SHORT_RUN,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    sweep_dir = only(tmp_path.glob("multirun/*/*"))
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]
    assert sorted((s["method"], s["seed"], s["status"]) for s in summaries) == [
        ("dann", 0, "finished"),
        ("dann", 1, "finished"),
        ("source_only", 0, "finished"),
        ("source_only", 1, "finished"),
    ]
    assert (sweep_dir / ".submitit").is_dir()  # the jobs really went through submitit

    csv_path = tmp_path / "table.csv"
    report = subprocess.run(
        [sys.executable, "-m", "dann.report", str(sweep_dir), "--csv", str(csv_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    assert "moons→moons_rotated" in report.stdout
    rows = {row["column"]: row for row in csv.DictReader(csv_path.open()) if row["task"] == "moons→moons_rotated"}
    for method in ("dann", "source_only"):
        accs = [s["final"]["target/acc"] for s in summaries if s["method"] == method]
        assert int(rows[method]["n"]) == 2
        assert float(rows[method]["mean"]) == pytest.approx(statistics.mean(accs))
        assert float(rows[method]["std"]) == pytest.approx(statistics.stdev(accs))
        assert f"{100 * statistics.mean(accs):.1f} ± {100 * statistics.stdev(accs):.1f} (2)" in report.stdout
