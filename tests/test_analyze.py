"""python -m dann.analyze: the proxy A-distance on known answers, and the CLI end to end on a real moons run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dann.analyze import main, proxy_a_distance
from tests.helpers import cli_env, only, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def analyze_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m dann.analyze <args>` as a user runs it."""
    command = [sys.executable, "-m", "dann.analyze", *args]
    return subprocess.run(command, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300)


# --- The proxy A-distance ---------------------------------------------------------------


def test_pad_of_identical_domains_is_near_zero():
    rng = np.random.default_rng(1)
    source, target = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))  # two samples of one distribution
    assert abs(proxy_a_distance(source, target)) < 0.2


def test_pad_of_separable_domains_is_near_two_and_repeatable():
    rng = np.random.default_rng(2)
    source, target = rng.normal(size=(300, 8)), rng.normal(loc=6.0, size=(500, 8))  # sizes differ: balanced inside
    assert proxy_a_distance(source, target) > 1.9
    mixed = rng.normal(size=(300, 8)), rng.normal(loc=0.3, size=(300, 8))
    assert proxy_a_distance(*mixed, seed=5) == proxy_a_distance(*mixed, seed=5)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_pad_known_answers_hold_for_both_kernels(kernel):
    rng = np.random.default_rng(3)
    same = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    assert abs(proxy_a_distance(*same, kernel=kernel)) < 0.2
    apart = rng.normal(size=(300, 4)), rng.normal(loc=6.0, size=(300, 4))
    assert proxy_a_distance(*apart, kernel=kernel) > 1.9


def test_only_a_kernel_svm_sees_domains_that_differ_along_a_curve():
    # Target inside a ring of source points: no hyperplane separates them, a Gaussian kernel does.
    rng = np.random.default_rng(4)
    angle = rng.uniform(0, 2 * np.pi, 400)
    ring = np.stack([np.cos(angle), np.sin(angle)], axis=1) * 3 + rng.normal(scale=0.1, size=(400, 2))
    centre = rng.normal(scale=0.3, size=(400, 2))
    assert proxy_a_distance(ring, centre) < 0.5
    assert proxy_a_distance(ring, centre, kernel="rbf") > 1.9


# --- The CLI on a real run --------------------------------------------------------------


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory) -> Path:
    """A finished 20-step moons DANN run (trainer=debug), made by the real CLI."""
    root = tmp_path_factory.mktemp("analyze")
    run_dir = root / "sweep" / "run"
    result = run_cli("logger=none", "trainer=debug", f"hydra.run.dir={run_dir}", cwd=root)
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.mark.slow
def test_cli_writes_analysis_json_pngs_and_features(moons_run: Path):
    result = analyze_cli(str(moons_run), "--max-points", "150", "--device", "cpu", cwd=moons_run.parent)
    assert result.returncode == 0, result.stderr
    assert "proxy A-distance" in result.stderr

    analysis = json.loads((moons_run / "analysis.json").read_text())
    assert analysis["checkpoint_step"] == 20
    assert analysis["points_per_domain"] == 150
    assert set(analysis["pad"]) == {"features", "raw", "features_rbf", "raw_rbf"}
    assert all(-2.0 <= value <= 2.0 for value in analysis["pad"].values())
    confusion = np.array(analysis["confusion"])
    assert confusion.shape == (2, 2) and confusion.sum() == 1000  # the whole target test split of the moons
    assert analysis["per_class_acc"] == pytest.approx(list(confusion.diagonal() / confusion.sum(axis=1)))
    summary = json.loads((moons_run / "summary.json").read_text())
    assert analysis["target_acc"] == pytest.approx(summary["final"]["target/acc"])  # the same network and split

    files = analysis["files"]
    assert set(files) == {"features", "tsne", "decision_boundary", "confusion"}
    for name in ("tsne", "decision_boundary", "confusion"):
        path = moons_run / files[name]
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
    with np.load(moons_run / files["features"]) as npz:
        features, labels, domains = npz["features"], npz["labels"], npz["domains"]
    assert features.shape == (2000, 32)  # source validation + target test, the MLP's 32 features
    assert labels.shape == domains.shape == (2000,)
    assert (domains == 0).sum() == (domains == 1).sum() == 1000


@pytest.mark.slow
def test_cli_takes_a_sweep_directory_and_skips_what_did_not_finish(moons_run: Path, tmp_path: Path):
    sweep = tmp_path / "sweep"
    shutil.copytree(moons_run, sweep / "finished")
    summary = json.loads((moons_run / "summary.json").read_text())
    failed = sweep / "failed"
    failed.mkdir()
    (failed / "summary.json").write_text(json.dumps(summary | {"status": "failed"}))
    (sweep / "finished" / "analysis.json").unlink()

    main([str(sweep), "--no-tsne", "--max-points", "50", "--device", "cpu"])
    analysis = json.loads((sweep / "finished" / "analysis.json").read_text())
    assert "tsne" not in analysis["files"]
    assert not (failed / "analysis.json").exists()


# --- W&B: the analysis logged to the run's own W&B run ------------------------------------


@pytest.fixture(scope="module")
def offline_wandb_run(tmp_path_factory) -> Path:
    """A finished 20-step moons DANN run that logged to W&B offline, made by the real CLI."""
    root = tmp_path_factory.mktemp("analyze_wandb")
    run_dir = root / "run"
    result = run_cli("logger.wandb.mode=offline", "trainer=debug", f"hydra.run.dir={run_dir}", cwd=root)
    assert result.returncode == 0, result.stderr
    return run_dir


def wandb_tree(run_dir: Path) -> dict[str, int]:
    """Every path under the run's wandb/ directory, with its size (-1: a link or a directory)."""
    return {
        str(p.relative_to(run_dir)): p.stat().st_size if p.is_file() and not p.is_symlink() else -1
        for p in (run_dir / "wandb").rglob("*")
    }


@pytest.mark.slow
def test_cli_logs_the_analysis_to_the_runs_own_wandb_run(offline_wandb_run: Path, tmp_path: Path):
    run_dir = tmp_path / "run"
    shutil.copytree(offline_wandb_run, run_dir, symlinks=True)
    trained = only((run_dir / "wandb").glob("offline-run-*"))
    run_id = trained.name.rsplit("-", 1)[1]

    result = analyze_cli(str(run_dir), "--max-points", "150", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    analysis = json.loads((run_dir / "analysis.json").read_text())

    # Offline, resuming the run adds a run directory with the same id; `wandb sync` uploads both to that run.
    resumed = only(set((run_dir / "wandb").glob("offline-run-*")) - {trained})
    assert resumed.name.endswith(f"-{run_id}")
    images = resumed / "files" / "media" / "images" / "analysis"
    for name in ("tsne", "decision_boundary", "confusion"):
        with Image.open(only(images.glob(f"{name}_*.png"))) as image:
            image.verify()
    table = json.loads(
        only((resumed / "files" / "media" / "table" / "analysis").glob("per_class_acc_*.json")).read_text()
    )
    assert table["columns"] == ["class", "accuracy"]
    assert table["data"] == [[name, acc] for name, acc in zip(analysis["classes"], analysis["per_class_acc"])]
    records = only(resumed.glob(f"run-{run_id}.wandb")).read_bytes()
    for key in ("analysis/pad_features", "analysis/pad_raw", "analysis/target_acc"):
        assert key.encode() in records  # the run summary's keys, in W&B's own record file


@pytest.mark.slow
@pytest.mark.parametrize("switch", ["--no-wandb", "WANDB_MODE=disabled"])
def test_no_wandb_flag_or_disabled_mode_logs_nothing(offline_wandb_run: Path, tmp_path: Path, monkeypatch, switch):
    run_dir = tmp_path / "run"
    shutil.copytree(offline_wandb_run, run_dir, symlinks=True)
    before = wandb_tree(run_dir)
    flags = [switch] if switch.startswith("--") else []
    if not flags:
        monkeypatch.setenv(*switch.split("="))  # the environment wins over the run's logger.wandb.mode
    main([str(run_dir), *flags, "--no-tsne", "--max-points", "50", "--device", "cpu"])
    assert (run_dir / "analysis.json").is_file()
    assert wandb_tree(run_dir) == before


@pytest.mark.slow
def test_a_failing_wandb_is_a_warning_and_the_analysis_stands(
    offline_wandb_run: Path, tmp_path: Path, monkeypatch, caplog
):
    import wandb

    def broken_init(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", broken_init)
    run_dir = tmp_path / "run"
    shutil.copytree(offline_wandb_run, run_dir, symlinks=True)
    main([str(run_dir), "--no-tsne", "--max-points", "50", "--device", "cpu"])
    assert (run_dir / "analysis.json").is_file()
    assert "W&B could not resume run" in caplog.text and "no network" in caplog.text


def test_not_a_run_directory_is_one_line_and_exit_2(tmp_path: Path):
    result = analyze_cli(str(tmp_path / "nowhere"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'nowhere'}: no such directory"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("unfinished", "the run has status 'interrupted'; only finished runs are analysed"),
        ("no_checkpoint", "no checkpoint at"),
        ("untrusted_target", "dataset._target_: os.system is not a component of dann"),
        ("empty", "not a run directory, and no run directory (holding summary.json) under it"),
    ],
)
def test_bad_run_directories_are_one_line_and_exit_2(moons_run: Path, tmp_path: Path, capsys, change, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = json.loads((moons_run / "summary.json").read_text())
    if change != "no_checkpoint":
        shutil.copytree(moons_run / "checkpoints", run_dir / "checkpoints")
    if change == "unfinished":
        summary["status"] = "interrupted"
    if change == "untrusted_target":  # a crafted summary must not make the analysis call anything
        summary["config"]["dataset"]["_target_"] = "os.system"
    if change != "empty":
        (run_dir / "summary.json").write_text(json.dumps(summary))

    with pytest.raises(SystemExit) as stopped:
        main([str(run_dir), "--device", "cpu"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (run_dir / "analysis.json").exists()
