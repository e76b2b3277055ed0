"""A finished run's data and network, rebuilt from its directory: `summary.json`'s config and `checkpoints/last.pt`.

Nothing read from the directory runs code. The summary is JSON (read bounded, `dann.runs.readback`) and
the checkpoint is read with `weights_only=True`; the config's `_target_`s are built by Hydra, so
before anything is imported or built the whole stored config passes `dann.config.stored`: every
`_target_` a class (or a dann.models/dann.schedules function) defined in dann's components,
torch.nn, torch.optim or torchvision.transforms, no interpolation, no `weights_only`; and
`dataset._target_` a dataset pair and `method._target_` a method of dann (its class sizes the
domain classifier). Unless the user says the run is theirs (`trust`): a crafted summary cannot
name `os.system`, directly or through a chain such as `dann.models.feature_extractors.os.system`.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dann.builders import build_dataset, build_network
from dann.config.declared import check_value
from dann.config.stored import TRUST_HINT, check_stored_config, safe_target
from dann.config.validate import declaration_of
from dann.data import DomainData, DomainPair
from dann.errors import ConfigError, DannError, RunDirError, describe_error
from dann.methods import Method
from dann.models import DANNNetwork
from dann.runs.checkpoint import checkpoint_path, read_checkpoint
from dann.runs.readback import NotReadBack, read_bounded

# What the analysis reads of the config: groups that must be mappings, and the nodes built in them.
GROUPS = ("dataset", "model", "method", "trainer")
MODEL_NODES = ("feature_extractor", "label_predictor", "domain_classifier")


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
    summary = read_summary(path)
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict):
        raise RunDirError(f"{path}: not a run summary with its config (written by an older dann?)")
    if summary.get("status") != "finished":
        raise RunDirError(f"{run_dir}: the run has status {summary.get('status')!r}; only finished runs are analysed")
    if not checkpoint_path(run_dir).is_file():
        raise RunDirError(f"{run_dir}: no checkpoint at {checkpoint_path(run_dir)}; it is needed for the network")
    _check_shape(summary["config"], path)
    state = read_checkpoint(checkpoint_path(run_dir))
    try:
        config = OmegaConf.create(summary["config"])
    except OmegaConfBaseException as e:
        raise RunDirError(f"{path}: its config cannot be read ({describe_error(e)})") from None
    return FinishedRun(run_dir, summary, config, state)


def read_summary(path: Path) -> Any:
    """The JSON in `path`, read through `dann.runs.readback` (bounded, a regular file only: never read whole)."""
    try:
        return json.loads(read_bounded(path))
    except (OSError, NotReadBack, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise RunDirError(f"{path}: unreadable ({describe_error(e)})") from None


def _check_shape(config: dict[str, Any], path: Path) -> None:
    """The keys the analysis reads, with the kind of value it reads there: one `RunDirError` naming the key."""
    for group in GROUPS:
        if not isinstance(config.get(group), dict):
            got = "nothing" if group not in config else type(config[group]).__name__
            raise RunDirError(f"{path}: config.{group} must be a mapping (a config group), got {got}; {_EDITED}")
    for node in MODEL_NODES:
        if not isinstance(config["model"].get(node), dict):
            raise RunDirError(f"{path}: config.model.{node} must be a mapping with a _target_; {_EDITED}")
    for group, node in (("dataset", config["dataset"]), ("method", config["method"])):
        if not isinstance(node.get("_target_"), str):
            raise RunDirError(f"{path}: config.{group}._target_ must be a dotted class name; {_EDITED}")
    try:
        for key in (
            "trainer.eval_batch_size",
            "model.freeze_backbone",
            "model.backbone_lr_mult",
            "model.bottleneck_dim",
        ):
            group, leaf = key.split(".")
            check_value(key, config[group].get(leaf), declaration_of(config, key).spec)  # as dann.run checked it
    except ConfigError as e:
        raise RunDirError(f"{path}: config.{e}; {_EDITED}") from None


_EDITED = "the file was not written by dann.run as it is (edited, or damaged)"


def rebuild(
    run: FinishedRun, device: torch.device, data_root: str | None = None, trust: bool = False
) -> tuple[DomainData, DANNNetwork]:
    """The run's four splits and its network with the checkpoint's weights, on `device`, in eval mode.

    `data_root` replaces `dataset.root` (a relative root is relative to where the run was started).
    Nothing is downloaded: neither data (`dataset.download`) nor pretrained weights, which the
    checkpoint replaces anyway.
    """
    if trust:
        dataset_class = get_object(run.config.dataset._target_)
    else:
        check_stored_config(run.summary["config"])  # before anything it names is imported
        dataset_class = safe_target(run.config.dataset._target_, "config.dataset._target_")
        if not _is_subclass(dataset_class, DomainPair):
            raise ConfigError(f"config.dataset._target_: {run.config.dataset._target_} is not a dataset pair class")
        # The method's class sizes the domain classifier (build_network asks it), so it is imported too.
        method = run.config.method._target_
        if not _is_subclass(safe_target(method, "config.method._target_"), Method):
            raise ConfigError(f"config.method._target_: {method} is not a method of dann; {TRUST_HINT}")
    cfg = run.config.copy()
    if data_root is not None:
        cfg.dataset.root = data_root
    if "download" in cfg.dataset or "download" in _parameters(dataset_class):  # whatever the class's default
        cfg.dataset.download = False
    if "weights" in cfg.model.feature_extractor:
        cfg.model.feature_extractor.weights = None
    try:
        data = build_dataset(cfg).load()
        network = build_network(cfg, data.input_shape, data.num_classes)
    except DannError:
        raise
    except Exception as e:  # noqa: BLE001 - settings a constructor refuses: the stored config's fault
        raise ConfigError(
            f"{run.run_dir / 'summary.json'}: its config's dataset or model cannot be built ({describe_error(e)})"
        ) from None
    # The checkpoint holds the Method's state_dict; the network is its `network` member.
    prefix = "network."
    weights = {key[len(prefix) :]: value for key, value in run.state["method"].items() if key.startswith(prefix)}
    try:
        network.load_state_dict(weights)
    except RuntimeError as e:
        raise RunDirError(f"{checkpoint_path(run.run_dir)}: does not fit the network of its config ({e})") from None
    return data, network.to(device).eval()


def _parameters(found: Any) -> tuple[str, ...]:
    try:
        return tuple(inspect.signature(found).parameters)
    except (TypeError, ValueError):
        return ()


def _is_subclass(found: Any, base: type) -> bool:
    return isinstance(found, type) and issubclass(found, base)
