"""Checks on the composed config, run before any data is loaded or any step is taken.

Each failure is one `ConfigError` of one line that starts with the key at fault. Every value is
checked against its declaration, written once where the setting is taken (`dann.config.declared`):
a `_target_`'s signature, or the framework's own nodes below (`CONFIG`). Then the rules no single key
can check: the optimiser's own checks, the device this machine has, the two domains.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dann.builders import ModelSettings, OptimSettings, build, build_dataset
from dann.config.compose import CONF_DIR
from dann.config.declared import Declared, check_value, node_settings, settings_of_target
from dann.config.spec import Setting, Spec, locate, one_of
from dann.data import DomainData
from dann.data.base import check_usable
from dann.errors import ConfigError, DannError, describe_error
from dann.runs.tracking import WANDB_MODES, LoggerSettings, wandb_mode
from dann.training.settings import LABELS, RUN_SETTINGS, TrainerSettings

# The config, node by node: the run's own settings, then one node per part, each declared by what takes it.
# `dataset` and `method` are nodes with a `_target_`: their settings are what it takes, and their `name`
# (`LABELS`) is what results are recorded under.
CONFIG: dict[str, Any] = {
    **RUN_SETTINGS,
    "dataset": Annotated[Any, Setting("the benchmark and its two domains: a DomainPair", node=True)],
    "model": ModelSettings,
    "method": Annotated[Any, Setting("the adaptation method: its losses and their weights", node=True)],
    "optim": OptimSettings,
    "trainer": TrainerSettings,
    "logger": LoggerSettings,
}
LABELLED = ("dataset", "method")
TARGET = Spec("target")
PARTIAL = one_of(True, means="the code supplies the other arguments")
ANY = Declared(Spec("any"), doc="", required=False)  # a setting of a target that takes **kwargs


def drop_unused_lambda_schedule(cfg: DictConfig) -> None:
    """Remove `method.lambda_schedule` settings that no method takes, in place.

    A preset tunes the λ schedule of its adaptive method (`method.lambda_schedule.gamma`); switched
    to a method without one (`experiment=… method=source_only`), those settings are a partial node
    with no `_target_` (only a method with a schedule group brings one). They are dropped, so that
    the config recorded and identified is what runs, rather than the run being refused.
    """
    method = cfg.get("method")  # None after `~method`: validate names it
    schedule = method.get("lambda_schedule") if isinstance(method, DictConfig) else None
    if isinstance(schedule, DictConfig) and "_target_" not in schedule:
        with open_dict(cfg):
            del cfg.method["lambda_schedule"]


def required_keys(settings: Mapping[str, Declared] | None = None, prefix: str = "") -> list[str]:
    """The keys every config must hold (the declared settings without a default, a node's `_target_`, a
    result's `name`), in the order `CONFIG` declares them: what `check_complete` asks for."""
    keys = []
    for name, declared in (settings if settings is not None else node_settings(CONFIG)).items():
        key = f"{prefix}{name}"
        if declared.fields is not None:
            keys += [key, *required_keys(node_settings(declared.fields), f"{key}.")]
        elif declared.node:
            keys += [key, f"{key}._target_"] + ([f"{key}.name"] if key in LABELLED else [])
        elif declared.required:
            keys.append(key)
    return keys


def check_complete(cfg: DictConfig) -> None:
    """Every group and key the run reads is there: one `ConfigError` naming the first missing one.
    Reads only the config's structure (no interpolation is resolved)."""
    for key in required_keys():
        parent, _, name = key.rpartition(".")
        node = OmegaConf.select(cfg, parent, throw_on_resolution_failure=False) if parent else cfg
        present = isinstance(node, DictConfig) and name in node
        group = key.split(".")[0]
        if not present and (key == group or (key == f"{group}._target_" and group in LABELLED)):
            # `~dataset` leaves config.yaml's own dataset.target_labeled_fraction: a node without its _target_.
            options = " | ".join(sorted(file.stem for file in (CONF_DIR / group).glob("*.yaml")))
            raise ConfigError(
                f"{group}: missing from the config (removed with ~{group}?); a run needs one: "
                f"drop that override, or choose one with {group}=… ({options})"
            )
        if not present:
            raise ConfigError(
                f"{key}: missing from the config (removed with ~{key}?); a run needs it: "
                f"drop that override, or set it again (+{key}=…)"
            )


def validate(cfg: DictConfig) -> None:
    """Every value against its spec, then the rules across keys; the first failure is raised."""
    check_complete(cfg)
    resolved = _resolved(cfg)
    resolved.pop("hydra", None)  # Hydra's own business
    check_settings(resolved)
    trainer = TrainerSettings.from_config(cfg.trainer)
    _check_device(trainer.device)
    _check_optimizer(cfg.optim.optimizer)
    mode = wandb_mode(cfg.logger.wandb.mode)
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode (or WANDB_MODE): expected one of {', '.join(WANDB_MODES)}, got {mode!r}")

    _check_model(cfg)
    _check_dataset(cfg)
    if trainer.objective == "reverse_val" and trainer.reverse_validation_every == 0:
        raise ConfigError(
            "trainer.objective=reverse_val needs reverse validation to run, but trainer.reverse_validation_every=0 "
            "turns it off; set trainer.reverse_validation_every=1 (or more), or choose another objective"
        )


def _check_dataset(cfg: DictConfig) -> None:
    """Build the dataset pair: it resolves the domains (names or aliases), checks that they make a
    task, and builds its transforms; it reads no file."""
    try:
        build_dataset(cfg)
    except DannError:
        raise
    except Exception as cause:  # a transform without its required settings, a setting of the wrong kind
        raise ConfigError(
            f"dataset: {cfg.dataset._target_} cannot be built from these settings ({describe_error(cause)}); "
            "check the dataset keys (dataset.transforms among them)"
        ) from None


def _check_model(cfg: DictConfig) -> None:
    """The rules across the model and method keys."""
    model = cfg.model
    if model.get("unfreeze_last", 0) and not model.freeze_backbone:
        raise ConfigError(
            f"model.unfreeze_last={model.unfreeze_last} only applies to a frozen backbone; "
            "set model.freeze_backbone=true as well, or model.unfreeze_last=0"
        )
    method = locate(cfg.method._target_)
    if getattr(method, "needs_pretrained_backbone", False) and not model.feature_extractor.get("weights"):
        raise ConfigError(
            f"model.feature_extractor.weights: method={cfg.method.name} starts from pretrained weights, but none "
            "are set; give a torchvision weights name (e.g. model=resnet model.feature_extractor.weights="
            "IMAGENET1K_V1) or a .pth file, or use method=source_only to train from scratch"
        )


def validate_against_data(cfg: DictConfig, data: DomainData) -> None:
    """The checks that need the loaded data; still before any training step. (Calling
    `validate_model_input` before the network is built also catches backbones that fail there.)"""
    validate_model_input(cfg, data.input_shape)
    check_usable(data)  # one class, or too few examples to evaluate: no result, however long it trains
    batch_size = TrainerSettings.from_config(cfg.trainer).batch_size
    for domain, name, split in (("source", data.source, data.source_train), ("target", data.target, data.target_train)):
        if batch_size > len(split):
            raise ConfigError(
                f"trainer.batch_size: {batch_size} is larger than the {domain} training split "
                f"({name}: {len(split)} examples); lower it"
            )


def validate_model_input(cfg: DictConfig, input_shape: tuple[int, ...]) -> None:
    """Refuse a feature extractor that cannot take the dataset's inputs (an MLP on images, a CNN on
    vectors, images too small for its convolutions), before it is built: a dry run on the meta
    device, which allocates nothing and computes only shapes; pretrained weights are not loaded."""
    node = cfg.model.feature_extractor
    dry = {"weights": None} if "weights" in node else {}
    try:
        with torch.device("meta"):
            backbone = build(node, input_shape=tuple(input_shape), **dry)
            backbone(torch.zeros(2, *input_shape))
    except DannError:
        raise
    except Exception as cause:
        raise ConfigError(
            f"model.feature_extractor: {node._target_} cannot take the inputs of dataset={cfg.dataset.name}, "
            f"of shape {tuple(input_shape)} ({describe_error(cause)}); choose a model made for such inputs "
            "(each dataset config picks one by default: leave model= out), or change the inputs "
            "(dataset.image_size, dataset.channels)"
        ) from None


# --- Every value against its declaration ----------------------------------------------------------


def check_settings(config: Mapping[str, Any]) -> None:
    """Every value of the resolved `config` against its declaration: the first failure is one `ConfigError`."""
    _check_node(config, "", node_settings(CONFIG), target=None)


def _check_node(node: Mapping[str, Any], prefix: str, settings: Mapping[str, Declared] | None, target: str | None):
    """The settings of one node: a framework node's (`target` None) or a `_target_`'s (`settings` None: any)."""
    for name, value in node.items():
        key = f"{prefix}{name}"
        if target is not None and name in ("_target_", "_partial_"):
            continue  # checked before the target was read
        declared = _declared_in(name, settings, target)
        if declared is None:
            raise ConfigError(unknown_setting(key, node))
        if declared.supplied:
            raise ConfigError(
                f"{key}: {declared.doc}, set by the run from the top-level {declared.supplied} (the summary records "
                f"it); drop it with ~{key} and set {declared.supplied}={value} instead"
            )
        _check_value(key, value, declared)


def _declared_in(name: str, settings: Mapping[str, Declared] | None, target: str | None) -> Declared | None:
    if target is not None and name in LABELS:
        return node_settings(LABELS)[name]
    return ANY if settings is None else settings.get(name)


def _check_value(key: str, value: Any, declared: Declared) -> None:
    if declared.fields is not None:  # a framework node (`trainer`, `logger.wandb`)
        if not isinstance(value, dict):
            raise ConfigError(
                f"{key}: expected a node of settings ({', '.join(node_settings(declared.fields))}), got {value!r}"
            )
        _check_node(value, f"{key}.", node_settings(declared.fields), target=None)
    elif isinstance(value, dict) and ("_target_" in value or declared.node):
        _check_target_node(key, value)
    elif declared.node:
        raise ConfigError(f"{key}: expected a node with a _target_ ({declared.doc}), got {value!r}")
    elif isinstance(value, dict) and declared.spec.kind != "any":  # a mapping of such values (dataset.transforms)
        for item, item_value in value.items():
            check_value(f"{key}.{item}", item_value, declared.spec)
    else:
        check_value(key, value, declared.spec)


def _check_target_node(key: str, node: Mapping[str, Any]) -> None:
    """A node that names what takes its settings: its `_target_` must be importable, then its settings are
    checked against that callable's declarations (`dann.config.declared.settings_of`)."""
    if "_target_" not in node:
        raise ConfigError(f"{key}._target_: missing from the config; a run needs it: set it (+{key}._target_=…)")
    check_value(f"{key}._target_", node["_target_"], TARGET)
    if "_partial_" in node:
        check_value(f"{key}._partial_", node["_partial_"], PARTIAL)
    _check_node(node, f"{key}.", settings_of_target(node["_target_"]), target=node["_target_"])


def declaration_of(config: Mapping[str, Any], key: str) -> Declared | None:
    """The declaration the value at dotted `key` of the resolved `config` is checked against; None: none."""
    settings, target, node = node_settings(CONFIG), None, config
    declared = None
    for part in key.split("."):
        if target is not None and part in ("_target_", "_partial_"):
            return Declared(TARGET if part == "_target_" else PARTIAL, doc="", required=True)
        declared = _declared_in(part, settings, target)
        value = node.get(part) if isinstance(node, Mapping) else None
        if declared is None or not isinstance(value, dict):
            continue
        if declared.fields is not None:
            settings, target = node_settings(declared.fields), None
        elif "_target_" in value:
            target = value["_target_"]
            settings = settings_of_target(target)
        else:  # a mapping of such values (dataset.transforms): each item is checked against `declared`
            return declared
        node = value
    return declared


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:  # an interpolation that fails, a mandatory value (???) not given
        message = str(e.msg).split("\n    full_key:")[0]  # omegaconf appends where; the key says it
        raise ConfigError(f"{e.full_key}: {' '.join(message.split())}") from None


# --- A key its node does not have ---------------------------------------------------------------------


def unknown_setting(key: str, node: Mapping[str, Any]) -> str:
    """The one line for `key`, which its node (`node`, a mapping) does not have: the node's real settings, the
    closest to the name given, and the fix. The same for `+trainer.stpes=5` (met by `validate`) and
    `trainer.stpes=5` (met by Hydra while composing: `dann.run` asks this for its message)."""
    parent, _, name = key.rpartition(".")
    target = node.get("_target_") if isinstance(node.get("_target_"), str) else None
    if target is not None and callable(locate(target)):
        settings = [
            setting for setting, declared in (settings_of_target(target) or {}).items() if not declared.supplied
        ]
        return _not_taken(f"{parent}.", target, name, tuple(settings), _nested(parent, name, node))
    known = tuple(_framework_settings(parent))
    where = f"{parent} has" if parent else "the top-level keys are"
    closest = _closest(name, known, _nested(parent, name, node))
    return f"{key}: no such setting (a typo?);{closest} {where} {', '.join(known) or 'no settings'}"


def _framework_settings(path: str) -> dict[str, Declared]:
    """The settings of the framework node at dotted `path` ("" the top level, "logger.wandb", …)."""
    settings = node_settings(CONFIG)
    for part in filter(None, path.split(".")):
        declared = settings.get(part)
        if declared is None or declared.fields is None:
            return {}
        settings = node_settings(declared.fields)
    return settings


def _nested(parent: str, name: str, node: Mapping[str, Any]) -> list[str]:
    """The keys one node down that have this name: `method.gamma` → method.lambda_schedule.gamma."""
    prefix = f"{parent}." if parent else ""
    return [f"{prefix}{child}.{name}" for child, value in node.items() if isinstance(value, Mapping) and name in value]


def _closest(name: str, known: tuple[str, ...], nested: list[str] = ()) -> str:
    match = difflib.get_close_matches(name, known, n=1) or nested[:1]
    return f" did you mean {match[0]}?" if match else ""


def _not_taken(prefix: str, target: str, name: str, settings: tuple[str, ...], nested: list[str] = ()) -> str:
    key = f"{prefix}{name}"
    message = (
        f"{key}: {target} ({prefix}_target_) takes no setting '{name}' "
        f"(it takes {', '.join(settings) or 'none'});{_closest(name, settings, nested)} drop it with ~{key}"
    )
    group, _, path = prefix.rstrip(".").partition(".")
    options = [option for option, other in _group_targets(group, path) if _takes(other, name)]
    if options:
        message += f", or choose a {group} that takes it: {' or '.join(f'{group}={o}' for o in options)}"
    return message


def _takes(target: str, name: str) -> bool:
    settings = settings_of_target(target)
    return settings is None or name in settings


@cache
def _group_targets(group: str, path: str) -> list[tuple[str, str]]:
    """(option, _target_ at `path`) for each config file of conf/<group>/ that has one there."""
    found = []
    for file in sorted((CONF_DIR / group).glob("*.yaml")):
        node = (
            OmegaConf.select(OmegaConf.load(file), f"{path}._target_") if path else OmegaConf.load(file).get("_target_")
        )
        if isinstance(node, str):
            found.append((file.stem, node))
    return found


# --- Rules that involve several keys or the machine ---------------------------------------------


def _check_device(device: str) -> None:
    """`cuda` and `cuda:N` must name a device this machine has."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device: expected auto or cpu on this machine, where torch.cuda.is_available() "
            f"is false (no CUDA GPU, or a PyTorch build without CUDA), got {device!r}; "
            "trainer.device=auto picks a GPU where there is one"
        )
    count = torch.cuda.device_count()
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        devices = "cuda:0" if count == 1 else f"cuda:0 … cuda:{count - 1}"
        raise ConfigError(
            f"trainer.device: expected auto, cpu, cuda or {devices} (this machine has {count} CUDA "
            f"device{'s' if count > 1 else ''}), got {device!r}"
        )


def _check_optimizer(optimizer_cfg: DictConfig) -> None:
    """The optimiser's own checks (SGD's Nesterov needs momentum, Adam's betas, …), on one dummy parameter."""
    try:
        build(optimizer_cfg)(params=[torch.nn.Parameter(torch.zeros(1))])
    except Exception as cause:
        raise ConfigError(
            f"optim.optimizer: {optimizer_cfg._target_} refuses these settings ({describe_error(cause)})"
        ) from None
