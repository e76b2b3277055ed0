"""python -m dann.analyze: the proxy A-distance on known answers, and the CLI end to end on a real moons run."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
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
    figures = ("tsne", "decision_boundary", "confusion")
    assert set(files) == {"features", *figures, *(f"{name}_pdf" for name in figures)}
    for name in figures:
        path = moons_run / files[name]
        assert path == moons_run / "analysis" / f"{name}.png" and path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
        pdf = moons_run / files[f"{name}_pdf"]  # the same figure, as a vector file for papers
        assert pdf == path.with_suffix(".pdf") and pdf.read_bytes()[:5] == b"%PDF-"
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
    # missing_ok: the analysis is there only if test_cli_writes_analysis_json_pngs_and_features ran first.
    (sweep / "finished" / "analysis.json").unlink(missing_ok=True)

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
    assert "Run summary:" not in result.stdout + result.stderr  # W&B quiet: no summary printout
    analysis = json.loads((run_dir / "analysis.json").read_text())

    # Offline, resuming the run adds a run directory with the same id; `wandb sync` uploads both to that run.
    resumed = only(set((run_dir / "wandb").glob("offline-run-*")) - {trained})
    assert resumed.name.endswith(f"-{run_id}")
    images = resumed / "files" / "media" / "images" / "analysis"
    for name in ("tsne", "decision_boundary", "confusion"):
        with Image.open(only(images.glob(f"{name}_*.png"))) as image:
            image.verify()
        pdf = resumed / "files" / "analysis" / f"{name}.pdf"  # saved among the run's files
        assert pdf.read_bytes()[:5] == b"%PDF-"
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


# --- A crafted summary.json runs nothing, and a broken one is one line ----------------------
# The payloads of issue 16 against the installed Hydra (the floor of our pin): each reaches a
# callable through a name that starts with an allowed package, or through an interpolation.


def _chain_payload(marker: Path) -> list:
    """Path.write_text writes a pickle that runs a command; torch.load(weights_only=False) unpickles it."""
    pickled = marker.with_suffix(".pkl")
    payload = pickle.dumps(_TouchOnUnpickle(str(marker))).decode("latin1")
    fe = FE_MODULE
    return [
        {
            "_target_": f"{fe}.Path.write_text",
            "self": {"_target_": f"{fe}.Path", "_args_": [str(pickled)]},
            "data": payload,
            "encoding": "latin1",
        },
        {"_target_": f"{fe}.torch.load", "f": str(pickled), "weights_only": False},
    ]


class _TouchOnUnpickle:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


FE_MODULE = "dann.models.feature_extractors"  # imports os, Path and torch: names an old check let through
PAYLOADS = {
    # The issue's own: Hydra 1.3.8 blocks os.system by name, 1.3.2 does not.
    "os_system": lambda marker, config: {"_target_": f"{FE_MODULE}.os.system", "command": f"touch {marker}"},
    # The same chain to a call no Hydra blocks: it creates the marker.
    "os_makedirs": lambda marker, config: {"_target_": f"{FE_MODULE}.os.makedirs", "name": str(marker)},
    "write_text_then_torch_load": lambda marker, config: _chain_payload(marker),
    # An unchecked node (under optim) pulled into a checked one at resolution.
    "interpolation": lambda marker, config: config["optim"].update(evil=_chain_payload(marker)) or "${optim.evil}",
}


@pytest.mark.slow
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_a_crafted_target_runs_nothing_and_is_one_line_naming_the_key(moons_run: Path, tmp_path: Path, payload):
    marker = tmp_path / "marker"
    run_dir = _edited(moons_run, tmp_path, lambda c: c[FE_GROUP][FE_NODE].update(hidden=PAYLOADS[payload](marker, c)))
    before = _listing(run_dir)

    result = analyze_cli(str(run_dir), "--device", "cpu", "--no-wandb", cwd=tmp_path)
    assert not marker.exists() and not marker.with_suffix(".pkl").exists()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: config.model.feature_extractor.hidden"), lines
    assert "--trust" in lines[0]
    assert _listing(run_dir) == before


FE_GROUP, FE_NODE = "model", "feature_extractor"


def _listing(run_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(run_dir)): p.stat().st_size for p in run_dir.rglob("*")}


def _edited(moons_run: Path, tmp_path: Path, edit) -> Path:
    """A copy of the finished moons run whose summary's config `edit` changed in place."""
    run_dir = tmp_path / "run"
    shutil.copytree(moons_run, run_dir, ignore=shutil.ignore_patterns("analysis.json", "analysis"))
    summary = json.loads((run_dir / "summary.json").read_text())
    edit(summary["config"])
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def _one_error_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--device", "cpu", "--no-wandb"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


FE = "model.feature_extractor"
REFUSED = {
    # (edit of the stored config, what the one line says)
    "weights_only": (
        lambda c: c["model"]["feature_extractor"].update(weights_only=False),
        f"config.{FE}.weights_only: a stored config may not set weights_only",
    ),
    "args": (
        lambda c: c["model"]["label_predictor"].update(_args_=[1]),
        "config.model.label_predictor._args_: a stored config may not set _args_",
    ),
    "imported_class": (
        lambda c: c["model"]["feature_extractor"].update(_target_="dann.models.feature_extractors.Path"),
        f"config.{FE}._target_: dann.models.feature_extractors.Path is not a public class or function defined in",
    ),
    "private_function": (
        lambda c: c["model"]["feature_extractor"].update(_target_="dann.models.feature_extractors._download"),
        f"config.{FE}._target_: expected a dotted name package.module.Name of a public class",
    ),
    "a_function_where_only_classes": (
        lambda c: c["dataset"].update(_target_="dann.data.make_stream"),
        "config.dataset._target_: dann.data.make_stream is not a public class defined in dann.data",
    ),
    "partial_outside": (
        lambda c: c["optim"]["lr_schedule"].update(_target_="shutil.rmtree"),
        "config.optim.lr_schedule._target_: shutil.rmtree is not a component of dann.data",
    ),
    "env_resolver": (
        lambda c: c["logger"]["wandb"].update(project="${oc.env:HOME}"),
        "config.logger.wandb.project: '${oc.env:HOME}' is an interpolation",
    ),
    "no_model": (lambda c: c.pop("model"), "config.model must be a mapping (a config group), got nothing"),
    "no_trainer": (lambda c: c.pop("trainer"), "config.trainer must be a mapping (a config group), got nothing"),
    "method_a_list": (
        lambda c: c.update(method=["dann.methods.DANN"]),
        "config.method must be a mapping (a config group), got list",
    ),
    "eval_batch_size": (
        lambda c: c["trainer"].update(eval_batch_size="big"),
        "config.trainer.eval_batch_size: expected",
    ),
    "constructor_refuses": (
        lambda c: c["model"]["feature_extractor"].update(hidden="wide"),
        "its config's dataset or model cannot be built (",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_stored_config_dann_did_not_write_is_one_line(moons_run: Path, tmp_path: Path, capsys, case):
    edit, message = REFUSED[case]
    run_dir = _edited(moons_run, tmp_path, edit)
    before = _listing(run_dir)
    line = _one_error_line(capsys, [str(run_dir)])
    assert message in line, line
    assert _listing(run_dir) == before


@pytest.mark.slow
def test_a_dataset_without_its_download_key_still_downloads_nothing(moons_run: Path, tmp_path: Path, capsys, network):
    """The class's default (download=True for the digits) must not apply: the analysis downloads nothing."""
    from omegaconf import OmegaConf

    from tests.helpers import compose_config

    digits = OmegaConf.to_container(compose_config("dataset=mnist_mnistm").dataset, resolve=True)
    digits.pop("download")
    digits["root"] = str(tmp_path / "data")
    run_dir = _edited(moons_run, tmp_path, lambda c: c.update(dataset=digits))
    _one_error_line(capsys, [str(run_dir)])
    assert network == []


def test_every_target_of_the_shipped_configs_is_allowed():
    """The check refuses no run dann.run can make: every group option and preset composes to targets it accepts."""
    from omegaconf import OmegaConf

    from dann.config.compose import CONF_DIR
    from dann.config.stored import check_stored_config
    from tests.helpers import compose_config

    overrides = [
        f"{group}={path.stem}"
        for group in ("dataset", "model", "method", "optim", "experiment")
        for path in sorted((CONF_DIR / group).glob("*.yaml"))
    ]
    assert len(overrides) > 30
    for override in overrides:
        config = OmegaConf.to_container(compose_config("logger=none", override), resolve=True)
        check_stored_config(config)


def test_a_summary_too_large_to_be_one_is_refused_unread(tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / "summary.json", "wb") as f:
        f.truncate(65 * 2**20)  # sparse: 65 MiB that take no disk
    line = _one_error_line(capsys, [str(run_dir)])
    assert "summary.json: unreadable (NotReadBack: larger than 4 MiB" in line, line


@contextlib.contextmanager
def _read_only(path: Path):
    """`path` read-only even for root (the tests may run as root, whom chmod does not stop): chattr +i."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a filesystem without chattr +i: no way to make a directory read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.slow
def test_a_read_only_run_directory_is_one_line_and_out_writes_elsewhere(moons_run: Path, tmp_path: Path, capsys):
    run_dir = _edited(moons_run, tmp_path, lambda c: None)
    before = sorted(p.name for p in run_dir.iterdir())
    with _read_only(run_dir):
        line = _one_error_line(capsys, [str(run_dir), "--no-tsne", "--max-points", "50"])
        assert f"error: {run_dir}: cannot be written" in line and "--out DIR" in line, line
        assert sorted(p.name for p in run_dir.iterdir()) == before

        out = tmp_path / "elsewhere"
        main([str(run_dir), "--out", str(out), "--no-tsne", "--max-points", "50", "--device", "cpu", "--no-wandb"])
        assert sorted(p.name for p in run_dir.iterdir()) == before
    analysis = json.loads((out / "analysis.json").read_text())
    assert (out / analysis["files"]["features"]).is_file() and (out / analysis["files"]["confusion"]).is_file()


@pytest.mark.slow
def test_links_planted_among_the_analysis_files_are_never_written_through(moons_run: Path, tmp_path: Path):
    run_dir = _edited(moons_run, tmp_path, lambda c: None)
    victims = {name: tmp_path / f"victim_{name}" for name in ("png_tmp", "npz", "npz_tmp", "json_tmp")}
    for victim in victims.values():
        victim.write_text("untouched")
    (run_dir / "analysis").mkdir()
    (run_dir / "analysis" / "confusion.png.tmp").symlink_to(victims["png_tmp"])
    (run_dir / "analysis" / "features.npz").symlink_to(victims["npz"])
    (run_dir / "analysis" / "features.npz.tmp").symlink_to(victims["npz_tmp"])
    (run_dir / "analysis.json.tmp").symlink_to(victims["json_tmp"])

    main([str(run_dir), "--no-tsne", "--max-points", "50", "--device", "cpu", "--no-wandb"])
    assert all(victim.read_text() == "untouched" for victim in victims.values())
    with np.load(run_dir / "analysis" / "features.npz") as npz:  # the link was replaced by the file itself
        assert npz["features"].shape[1] == 32
    assert not (run_dir / "analysis" / "features.npz").is_symlink()
