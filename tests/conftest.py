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


SYNCS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def host_reads(monkeypatch):
    """Every way a tensor's value reaches the host (a device sync on a GPU), recorded as it happens: the
    CPU proof that a step syncs nothing (`python -m dann.bench --sync-check` is the CUDA one)."""
    import torch  # here: most tests never need it

    events = []
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            events.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    original_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        target = kwargs.get("device", args[0] if args else None)
        if isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu":
            events.append("to(cpu)")
        return original_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    return events
