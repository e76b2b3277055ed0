"""Fixtures every test gets: no network, and no W&B settings from the developer's environment.

The helpers tests call (compose the config, run the CLI, …) are in `tests/helpers/`.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest


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
