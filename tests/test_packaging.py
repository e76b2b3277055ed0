"""dann as an installed package: the wheel holds the code and the configs, and runs from any directory.

Builds the wheel, installs it with `pip install --target` into a folder of its own, and runs it from an
empty directory with that folder on PYTHONPATH (this venv supplies the dependencies): nothing of the
clone is read, so a config or module missing from the wheel fails here, not on a user's machine.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.helpers import REPO, cli_env, only

pytestmark = pytest.mark.slow

BUILD_TIMEOUT = 900  # building a wheel in a fresh build environment; never a measure of speed
RUN_TIMEOUT = 600
FAST = ("trainer.steps=20", "trainer.eval_every=10", "logger=none")
REFERENCES = REPO / "experiments" / "references.yaml"
RESULT_LINE = re.compile(r"^source/acc \d\.\d{4}  target/acc \d\.\d{4}  \(dann, moons → moons_rotated", re.M)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel .` builds, from a copy of what it is built from: setuptools leaves build/ in
    the tree it builds, and a stale build/ there could put files in the wheel that the clone no longer has."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    (source / "experiments").mkdir()
    shutil.copy(REFERENCES, source / "experiments")  # the one file of experiments/ the wheel takes
    (source / "experiments" / "a_script.py").write_text("")  # …and not the scripts beside it
    for name in ("dann", "conf", "hydra_plugins"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-w", str(tmp / "dist")],
        cwd=source,
        check=True,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    return only((tmp / "dist").glob("dann-*.whl"))


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """The wheel installed on its own in a folder (its dependencies come from this venv)."""
    site = tmp_path_factory.mktemp("installed") / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    return site


def run_installed(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`args` run in `cwd` as a user of the installed wheel would: the wheel's folder first on the path."""
    env = cli_env({"PYTHONPATH": str(site)})
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def empty_dir(tmp_path: Path) -> Path:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    return cwd


def test_wheel_holds_every_module_and_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for top in ("dann", "hydra_plugins") for p in (REPO / top).rglob("*.py")}
    configs = {"dann/conf/" + p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    assert modules - names == set(), "a module of dann/ is missing: add its package to pyproject.toml's packages"
    assert configs - names == set()
    assert "dann/conf/__init__.py" in names  # Hydra's pkg:// takes only a package with an __init__.py
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "dann-run = dann.run:main" in scripts and "dann-report = dann.report:main" in scripts
    assert "dann-analyze = dann.analyze:main" in scripts and "dann-data = dann.data.__main__:main" in scripts


def test_wheel_metadata_license_and_published_numbers(wheel):
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    info = f"dann-{version('dann')}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    metadata = archive.read(f"{info}/METADATA").decode()
    assert "License-Expression: MIT" in metadata and "License ::" not in metadata
    assert "Project-URL: Repository, https://github.com/dann-project/dann" in metadata
    # experiments/references.yaml, and nothing else of the folder dann.published maps (the repository's root).
    assert {n for n in names if n.startswith("dann/published/")} == {"dann/published/experiments/references.yaml"}
    assert archive.read("dann/published/experiments/references.yaml") == REFERENCES.read_bytes()


def test_version_is_the_metadata_version():
    import dann

    assert dann.__version__ == version("dann")


def test_the_citation_and_the_readme_cite_the_packaged_version():
    """pyproject.toml declares the version; CITATION.cff and the README's BibTeX restate it for citation tools,
    so they are checked against it (and CITATION.cff cites the software itself, not only the paper)."""
    declared = version("dann")  # pyproject.toml's, as installed
    citation = (REPO / "CITATION.cff").read_text()
    assert re.search(r"^version: (\S+)$", citation, flags=re.M)[1] == declared
    assert "preferred-citation:" not in citation  # GitHub's "Cite this repository" then cites the software
    assert f"version = {{{declared}}}" in (REPO / "README.md").read_text()


def test_installed_wheel_imports_from_its_own_folder(site, tmp_path):
    # What the runs below import: the wheel's code and configs, not the clone's (installed editable here).
    result = run_installed(
        [
            sys.executable,
            "-c",
            "import dann, dann.run, dann.config.validate as v; from dann.report.collect import shipped_references; "
            "print(dann.run.__file__); print(v.CONF_DIR); print(shipped_references()); print(dann.__version__)",
        ],
        site,
        empty_dir(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    module, conf, references, installed_version = result.stdout.splitlines()
    assert Path(module).is_relative_to(site) and Path(conf) == site / "dann" / "conf"
    assert Path(references) == site / "dann" / "published" / "experiments" / "references.yaml"
    assert installed_version == version("dann")


def test_installed_wheel_runs_and_reports_from_an_empty_directory(site, tmp_path):
    cwd = empty_dir(tmp_path)
    result = run_installed([sys.executable, "-m", "dann.run", *FAST], site, cwd)
    assert result.returncode == 0, result.stderr
    assert RESULT_LINE.search(result.stdout), result.stdout
    run_dir = only(cwd.glob("outputs/*/*"))
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"

    report = run_installed([sys.executable, "-m", "dann.report", str(run_dir)], site, cwd)
    assert report.returncode == 0, report.stderr
    assert "moons→moons_rotated" in report.stdout

    # --reference alone: the published numbers shipped in the wheel (none is for the moons, and it says so).
    published = run_installed([sys.executable, "-m", "dann.report", str(run_dir), "--reference"], site, cwd)
    assert published.returncode == 0, published.stderr
    installed = site / "dann" / "published" / "experiments" / "references.yaml"
    assert "No published number in" in published.stdout and installed.name in published.stdout, published.stdout


def test_console_scripts_of_the_wheel(site, tmp_path):
    # pip --target writes the scripts to <site>/bin, with this interpreter in their #! line.
    scripts = site / "bin"
    if not (scripts / "dann-run").exists():
        pytest.skip(f"pip install --target wrote no console scripts to {scripts}")
    cwd = empty_dir(tmp_path)
    help_text = run_installed([str(scripts / "dann-run"), "--help"], site, cwd)
    assert help_text.returncode == 0 and "dataset: " in help_text.stdout, help_text.stderr

    result = run_installed([str(scripts / "dann-run"), *FAST, f"hydra.run.dir={cwd / 'run'}"], site, cwd)
    assert result.returncode == 0, result.stderr
    assert RESULT_LINE.search(result.stdout), result.stdout

    report = run_installed([str(scripts / "dann-report"), str(cwd / "run")], site, cwd)
    assert report.returncode == 0, report.stderr
    assert "moons→moons_rotated" in report.stdout

    # Hydra's shell completion names the script it completes.
    completion = run_installed([str(scripts / "dann-run"), "-sc", "install=bash"], site, cwd)
    assert completion.returncode == 0 and "complete" in completion.stdout and "dann-run" in completion.stdout


def test_a_users_own_config_through_hydra_searchpath(site, tmp_path):
    # docs/guides/own-dataset.md's recipe: a dataset config of the user's, outside the package, composed with the
    # package's.
    my_conf = tmp_path / "my_conf"
    (my_conf / "dataset").mkdir(parents=True)
    (my_conf / "dataset" / "moons_wide.yaml").write_text(
        "# @package _global_\n"
        "# The package's moons, rotated further.\n"
        "defaults:\n"
        "  - moons\n"
        "\n"
        "dataset:\n"
        "  rotation_deg: 50.0\n"
    )
    cwd = empty_dir(tmp_path)
    result = run_installed(
        [
            sys.executable,
            "-m",
            "dann.run",
            f"hydra.searchpath=[{my_conf.as_uri()}]",
            "dataset=moons_wide",
            *FAST,
            "hydra.run.dir=run",
        ],
        site,
        cwd,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((cwd / "run" / "summary.json").read_text())["config"]
    assert config["dataset"]["rotation_deg"] == 50.0  # the user's value
    # The rest from the package's moons, its optimiser (sgd_moons) included.
    assert config["dataset"]["source"] == "moons" and config["dataset"]["num_train"] == 300
    assert config["optim"]["optimizer"]["lr"] == 0.03


MY_DATASET = '''
"""Two Gaussian blobs; the target is the source shifted upwards: a dataset of the user's own."""
from dataclasses import dataclass

import torch
from sklearn.datasets import make_blobs

from dann.data import DomainPair, DomainSpec, Split, register_domain


@dataclass(kw_only=True)
class Blobs(DomainPair):
    benchmark = "blobs"
    loads = ("blobs_a", "blobs_b")

    source: str = "blobs_a"
    target: str = "blobs_b"
    shift: float = 1.5
    num_points: int = 400

    def load_split(self, domain, train):
        shifted = domain.name == "blobs_b"
        x, y = make_blobs(self.num_points, centers=[[-2, 0], [2, 0]], random_state=2 * shifted + train)
        x[:, 1] += self.shift * shifted
        return Split(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64))


register_domain(DomainSpec("blobs_a", 2, dataset="blobs"))
register_domain(DomainSpec("blobs_b", 2, dataset="blobs"))
'''

MY_DATASET_CONFIG = """\
# @package _global_
defaults:
  - override /model: mlp
  - override /optim: sgd_moons

dataset:
  _target_: my_blobs.Blobs
  name: blobs
  source: blobs_a
  target: blobs_b
  protocol: inductive
  shift: 2.0
  num_points: 300
"""


def test_a_dataset_of_the_users_own_is_one_module_and_one_config(site, tmp_path):
    # docs/guides/own-dataset.md: a DomainPair subclass on the user's path and a config naming it, outside the package.
    cwd = empty_dir(tmp_path)
    (cwd / "my_blobs.py").write_text(MY_DATASET)  # `python -m` puts the working directory on the path
    (tmp_path / "my_conf" / "dataset").mkdir(parents=True)
    (tmp_path / "my_conf" / "dataset" / "blobs.yaml").write_text(MY_DATASET_CONFIG)
    command = [
        sys.executable,
        "-m",
        "dann.run",
        f"hydra.searchpath=[{(tmp_path / 'my_conf').as_uri()}]",
        "dataset=blobs",
    ]

    result = run_installed([*command, *FAST, "hydra.run.dir=run"], site, cwd)
    assert result.returncode == 0, result.stderr
    summary = json.loads((cwd / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and (summary["dataset"], summary["source"]) == ("blobs", "blobs_a")
    assert summary["config"]["dataset"]["shift"] == 2.0

    # Its keys are checked like the package's: a setting the class does not take is named, not ignored.
    typo = run_installed([*command, "+dataset.shfit=3", *FAST, "hydra.run.dir=typo"], site, cwd)
    assert typo.returncode == 2
    assert typo.stderr.startswith("error: dataset.shfit: my_blobs.Blobs (dataset._target_) takes no setting 'shfit'")
