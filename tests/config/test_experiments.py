"""The paper presets, run end to end through the CLI on generated files in the real formats.

These check that the full experiment configs run (data → network → training → outputs),
not how well: the images are synthetic stand-ins for MNIST, MNIST-M and SVHN.
"""

import json
from pathlib import Path

import pytest

from tests.helpers import only, read_jsonl, run_cli
from tests.helpers.digit_files import write_mnist, write_mnistm, write_svhn


@pytest.mark.slow
def test_ganin2016_mnist_mnistm_runs_a_few_hundred_steps(tmp_path: Path):
    data = tmp_path / "data"
    write_mnist(data, n_train=400, n_test=200)
    write_mnistm(data, n_train=400, n_test=200)
    # The full preset; only the length of training is cut down for CPU.
    result = run_cli(
        "experiment=ganin2016_mnist_mnistm",
        "trainer.steps=300",
        "trainer.eval_every=100",
        cwd=tmp_path,
        env={"DANN_DATA": str(data)},
        timeout=600,
    )
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
def test_ganin2016_svhn_mnist_runs_its_lower_bound(tmp_path: Path):
    """The bound command of docs/guides/reproduce.md: the preset with method=source_only, which has no λ schedule."""
    data = tmp_path / "data"
    write_svhn(data, n_train=128, n_test=64)
    write_mnist(data, n_train=128, n_test=64)
    result = run_cli(
        "experiment=ganin2016_svhn_mnist",
        "method=source_only",
        "trainer.steps=4",
        "trainer.eval_every=2",
        "logger=none",
        cwd=tmp_path,
        env={"DANN_DATA": str(data)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    run_dir = only(tmp_path.glob("outputs/*/*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["source"] == "svhn" and summary["target"] == "mnist"
    assert summary["method"] == "source_only"
    # The preset's λ-schedule setting is not recorded for a method that has none.
    assert "lambda_schedule" not in (run_dir / ".hydra" / "config.yaml").read_text()


@pytest.mark.slow
def test_office31_trains_end_to_end_with_resnet18_and_no_weights(tmp_path: Path):
    from tests.helpers.image_files import write_office31

    data = tmp_path / "data"
    # All 31 classes, so the dataset's class check passes as on a real copy.
    write_office31(data, images_per_class=2, size=24, domains=("amazon", "webcam"))
    # The headline command, with a small ResNet, no pretrained weights, small images and few steps for CPU.
    result = run_cli(
        "dataset=office31",
        "lambda=0.1",
        "model.feature_extractor.arch=resnet18",
        "model.feature_extractor.weights=null",
        "dataset.image_size=32",
        "dataset.resize_size=36",
        "dataset.num_workers=0",
        "trainer.batch_size=8",
        "trainer.steps=6",
        "trainer.eval_every=3",
        "trainer.eval_batch_size=32",
        "logger=none",
        cwd=tmp_path,
        env={"DANN_DATA": str(data)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    run_dir = only(tmp_path.glob("outputs/*/*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["protocol"] == "transductive"
    assert (summary["dataset"], summary["source"], summary["target"], summary["lambda"]) == (
        "office31",
        "amazon",
        "webcam",
        0.1,
    )
    assert summary["skipped_images"] == {"source_train": 0, "source_val": 0, "target_train": 0, "target_test": 0}
    evaluations = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "target/acc" in r]
    assert [r["step"] for r in evaluations] == [3, 6]
    assert "TorchvisionFeatures" in (run_dir / ".hydra" / "config.yaml").read_text()
