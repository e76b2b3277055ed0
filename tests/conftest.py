"""Shared test helpers: compose the real Hydra config, and run the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from dann.config import CONF_DIR  # the configs dann.run reads (dann.conf): tests compose exactly those

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # lets tests import the fixture writers in tests/


def compose_config(*overrides: str):
    """The config `python -m dann.run <overrides>` would see (without the hydra node)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user's shell would give `python -m dann.run`, without the developer's W&B settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return full_env | {"PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"} | (env or {})


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """Run `python -m dann.run <args>` as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "dann.run", *args],
        cwd=cwd, env=cli_env(env), capture_output=True, text=True, timeout=timeout,
    )


def start_cli(*args: str, run_dir: Path) -> subprocess.Popen:
    """Start `python -m dann.run <args>` in `run_dir` (hydra.run.dir) without waiting for it."""
    return subprocess.Popen([sys.executable, "-m", "dann.run", *args, f"hydra.run.dir={run_dir}"],
                            cwd=run_dir.parent, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_step(process: subprocess.Popen, run_dir: Path, step: int, timeout: float = 900) -> None:
    """Until the run's metrics.jsonl has a record at `step` or later; the process must still be running."""
    deadline = time.time() + timeout
    metrics = run_dir / "metrics.jsonl"
    while time.time() < deadline:
        assert process.poll() is None, "the run ended first: " + str(process.communicate())
        if metrics.exists() and any(r["step"] >= step for r in read_jsonl(metrics)):
            return
        time.sleep(0.02)
    raise AssertionError(f"no step {step} in {metrics} after {timeout} s")


def only(paths) -> Path:
    """The single path of a glob; fails listing what was found otherwise."""
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def network(monkeypatch):
    """No test reaches the network: only file:// URLs open; any other attempt fails as offline
    (as on a machine without internet) and is recorded in the list this fixture returns."""
    attempts: list[str] = []
    real_urlopen = urllib.request.urlopen

    def offline_urlopen(url, *args, **kwargs):
        full_url = url.full_url if isinstance(url, urllib.request.Request) else str(url)
        if full_url.startswith("file:"):
            return real_urlopen(url, *args, **kwargs)
        attempts.append(full_url)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline_urlopen)
    return attempts


@pytest.fixture(autouse=True)
def _no_wandb_env(monkeypatch):
    """In-process runs must not pick up the developer's WANDB_MODE."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
