"""Shared test helpers: compose the real Hydra config, and run the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
sys.path.insert(0, str(Path(__file__).parent))  # lets tests import the fixture writers in tests/


def compose_config(*overrides: str):
    """The config `python -m dann.run <overrides>` would see (without the hydra node)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    """Run `python -m dann.run <args>` as a user would, in `cwd`."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    full_env |= {"PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "dann.run", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


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
