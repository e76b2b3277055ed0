"""The paper presets, run end to end through the CLI on generated files in the real formats.

These check that the full experiment configs run (data → network → training → outputs),
not how well: the images are synthetic stand-ins for MNIST, MNIST-M and SVHN.
"""

import json
from pathlib import Path

import pytest
from digit_files import write_mnist, write_mnistm, write_svhn

from conftest import only, read_jsonl, run_cli


@pytest.mark.slow
def test_ganin2016_mnist_mnistm_runs_a_few_hundred_steps(tmp_path: Path):
    data = tmp_path / "data"
    write_mnist(data, n_train=400, n_test=200)
    write_mnistm(data, n_train=400, n_test=200)
    # The full preset; only the length of training is cut down for CPU.
    result = run_cli("experiment=ganin2016_mnist_mnistm", "trainer.steps=300", "trainer.eval_every=100",
                     cwd=tmp_path, env={"DANN_DATA": str(data)}, timeout=600)
    assert result.returncode == 0, result.stderr
    run_dir = only(tmp_path.glob("outputs/*/*"))

    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "MnistFeatures" in config and "batch_size: 64" in config

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert (summary["method"], summary["source"], summary["target"]) == ("dann", "mnist", "mnistm")
    # The paper's λ schedule reached λ_p ≈ lambda = 1 by the last logged step.
    last_train = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train/lambda" in r][-1]
    assert last_train["step"] == 300 and last_train["train/lambda"] == pytest.approx(1.0, abs=1e-3)
    # Generated digits are learnable: far above chance (0.1) on held-out source data.
    assert summary["final"]["source/acc"] > 0.5
    assert only((run_dir / "wandb").glob("offline-run-*")).is_dir()


@pytest.mark.slow
def test_ganin2016_svhn_mnist_runs(tmp_path: Path):
    data = tmp_path / "data"
    write_svhn(data, n_train=128, n_test=64)
    write_mnist(data, n_train=128, n_test=64)
    result = run_cli("experiment=ganin2016_svhn_mnist", "trainer.steps=4", "trainer.eval_every=2",
                     "logger=none", cwd=tmp_path, env={"DANN_DATA": str(data)}, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads(only(tmp_path.glob("outputs/*/*/summary.json")).read_text())
    assert summary["status"] == "finished" and summary["source"] == "svhn" and summary["target"] == "mnist"
