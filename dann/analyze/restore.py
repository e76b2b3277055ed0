"""A finished run's data and network, rebuilt from its directory: `summary.json`'s config and `checkpoints/last.pt`.

Nothing read from the directory runs code. The summary is JSON and the checkpoint is read with
`weights_only=True`; the config's `_target_`s are built by Hydra, so each must name a component
of dann's own data and models, or of torch.nn or torchvision.transforms (a class, or a factory
function of `dann.models`), and `method._target_` a method of `dann.methods` (its class sizes the
domain classifier), unless the user says the run is theirs (`trust`): a crafted summary cannot name
`os.system`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from dann.builders import build_dataset, build_network
from dann.checkpoint import checkpoint_path, read_checkpoint
from dann.data import DomainData, DomainPair
from dann.errors import ConfigError, RunDirError
from dann.methods import Method
from dann.models import DANNNetwork

SAFE_PREFIXES = ("dann.data.", "dann.models.", "torch.nn.", "torchvision.transforms.")


@dataclass
class FinishedRun:
    """What a finished run directory holds, read and checked, before anything is built."""

    run_dir: Path
    summary: dict[str, Any]
    config: DictConfig  # the whole resolved config of the run
    state: dict[str, Any]  # the checkpoint: `method` (state_dict), `step`, `wandb_run_id`, …


def read_run(run_dir: Path) -> FinishedRun:
    """The run in `run_dir`; a `RunDirError` (one line, naming the file) unless it finished and has a checkpoint."""
    path = run_dir / "summary.json"
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no summary.json)")
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise RunDirError(f"{path}: not a run summary with its config (written by an older dann?)")
    if summary.get("status") != "finished":
        raise RunDirError(f"{run_dir}: the run has status {summary.get('status')!r}; only finished runs are analysed")
    if not checkpoint_path(run_dir).is_file():
        raise RunDirError(f"{run_dir}: no checkpoint at {checkpoint_path(run_dir)}; it is needed for the network")
    state = read_checkpoint(checkpoint_path(run_dir))
    return FinishedRun(run_dir, summary, OmegaConf.create(summary["config"]), state)


def rebuild(
    run: FinishedRun, device: torch.device, data_root: str | None = None, trust: bool = False
) -> tuple[DomainData, DANNNetwork]:
    """The run's four splits and its network with the checkpoint's weights, on `device`, in eval mode.

    `data_root` replaces `dataset.root` (a relative root is relative to where the run was started).
    Nothing is downloaded: neither data (`dataset.download`) nor pretrained weights, which the
    checkpoint replaces anyway.
    """
    cfg = run.config.copy()
    for node, where in ((cfg.dataset, "dataset"), (cfg.model, "model")):
        check_targets(OmegaConf.to_container(node), where, trust)
    if not trust and not _is_subclass(_find(cfg.dataset._target_, "dataset"), DomainPair):
        raise ConfigError(f"dataset._target_: {cfg.dataset._target_} is not a dataset class (a DomainPair)")
    # The method's class sizes the domain classifier (build_network asks it), so it is imported too.
    method = str(cfg.method.get("_target_"))
    if not trust and not (method.startswith("dann.methods.") and _is_subclass(_find(method, "method"), Method)):
        raise ConfigError(f"method._target_: {method} is not a method of dann; pass --trust if this run is your own")
    if data_root is not None:
        cfg.dataset.root = data_root
    if "download" in cfg.dataset:
        cfg.dataset.download = False
    if "weights" in cfg.model.feature_extractor:
        cfg.model.feature_extractor.weights = None
    data = build_dataset(cfg).load()
    network = build_network(cfg, data.input_shape, data.num_classes)
    # The checkpoint holds the Method's state_dict; the network is its `network` member.
    prefix = "network."
    weights = {key[len(prefix) :]: value for key, value in run.state["method"].items() if key.startswith(prefix)}
    try:
        network.load_state_dict(weights)
    except RuntimeError as e:
        raise RunDirError(f"{checkpoint_path(run.run_dir)}: does not fit the network of its config ({e})") from None
    return data, network.to(device).eval()


def check_targets(node: Any, where: str, trust: bool) -> None:
    """Refuse any `_target_` under `node` (a plain container) outside the components a run is built from."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            check_targets(item, f"{where}[{i}]", trust)
        return
    if not isinstance(node, dict):
        return
    target = node.get("_target_")
    if target is not None and not trust:
        hint = "pass --trust if this run directory is your own"
        if not str(target).startswith(SAFE_PREFIXES):
            raise ConfigError(
                f"{where}._target_: {target} is not a component of dann, torch.nn or torchvision.transforms; {hint}"
            )
        found = _find(str(target), where)  # imports a module of dann, torch or torchvision only
        if not isinstance(found, type) and not str(target).startswith("dann.models."):
            raise ConfigError(f"{where}._target_: {target} is not a class; {hint}")
    for key, value in node.items():
        check_targets(value, f"{where}.{key}", trust)


def _find(target: str, where: str) -> Any:
    try:
        return get_object(target)
    except Exception as e:  # noqa: BLE001 - ImportError, AttributeError, …: one line either way
        raise ConfigError(f"{where}._target_: {target} cannot be found ({type(e).__name__})") from None


def _is_subclass(found: Any, base: type) -> bool:
    return isinstance(found, type) and issubclass(found, base)
