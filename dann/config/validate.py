"""Checks on the composed config, run before any data is loaded or any step is taken.

Each failure is one `ConfigError` of one line that starts with the key at fault. Every value
is checked against its spec in `dann.config.schema.SCHEMA` (type and range; no nan or inf);
then the rules no single key can check: the settings a `_target_` takes (its signature),
the optimiser's own checks, the device this machine has, the two domains.
"""

from __future__ import annotations

import inspect
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dann.builders import LABEL_KEYS, build, build_dataset
from dann.config.schema import SCHEMA, spec_of
from dann.config.spec import locate
from dann.data import DomainData
from dann.data.base import check_usable
from dann.errors import ConfigError, DannError, describe_error
from dann.runs.identity import flatten
from dann.runs.tracking import WANDB_MODES, wandb_mode

# What dann.run's @hydra.main reads (pkg://dann.conf): the clone's conf/ in an editable install, the
# installed copy in a wheel's. A directory on disk either way (dann.conf is a regular package).
CONF_DIR = Path(str(resources.files("dann.conf")))


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


# The config groups a run needs, each with the key that says one was chosen: `~dataset` leaves
# config.yaml's own `dataset.target_labeled_fraction`, so the group's node exists, without a dataset.
GROUPS: dict[str, str | None] = {
    "model": "feature_extractor",
    "optim": "optimizer",
    "dataset": "_target_",
    "method": "_target_",
    "trainer": None,
    "logger": "wandb",
}
# The keys the code reads from every config (beyond what a `_target_`'s own signature defaults):
# deleted (`~trainer.steps`), each is one ConfigError naming it, not an attribute error mid-run.
REQUIRED = (
    "seed",
    "lambda",
    "method.name",
    "dataset.name",
    "dataset.protocol",
    "model.feature_extractor._target_",
    "model.label_predictor._target_",
    "model.domain_classifier._target_",
    "model.bottleneck_dim",
    "model.backbone_lr_mult",
    "model.freeze_backbone",
    "optim.optimizer._target_",
    "optim.lr_schedule._target_",
    *(key for key in SCHEMA if key.startswith(("trainer.", "logger."))),
)


def check_complete(cfg: DictConfig) -> None:
    """Every group and key the run reads is there: one `ConfigError` naming the first missing one.
    Reads only the config's structure (no interpolation is resolved)."""
    for group, anchor in GROUPS.items():
        node = cfg.get(group) if isinstance(cfg, DictConfig) else None
        if not isinstance(node, DictConfig) or (anchor is not None and anchor not in node):
            options = " | ".join(sorted(file.stem for file in (CONF_DIR / group).glob("*.yaml")))
            raise ConfigError(
                f"{group}: missing from the config (removed with ~{group}?); a run needs one: "
                f"drop that override, or choose one with {group}=… ({options})"
            )
    for key in REQUIRED:
        parent, _, name = key.rpartition(".")
        node = OmegaConf.select(cfg, parent, throw_on_resolution_failure=False) if parent else cfg
        if not isinstance(node, DictConfig) or name not in node:
            raise ConfigError(
                f"{key}: missing from the config (removed with ~{key}?); a run needs it: "
                f"drop that override, or set it again (+{key}=…)"
            )


def validate(cfg: DictConfig) -> None:
    """Every value against its spec, then the rules across keys; the first failure is raised."""
    check_complete(cfg)
    resolved = _resolved(cfg)
    resolved.pop("hydra", None)  # Hydra's own business
    for key, value in flatten(resolved).items():
        check_value(key, value)
    _check_targets(resolved)
    _check_device(cfg.trainer.device)
    _check_optimizer(cfg.optim.optimizer)
    mode = wandb_mode(cfg.logger.wandb.mode)
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode (or WANDB_MODE): expected one of {', '.join(WANDB_MODES)}, got {mode!r}")

    _check_model(cfg)
    _check_dataset(cfg)
    if cfg.trainer.objective == "reverse_val" and cfg.trainer.reverse_validation_every == 0:
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
    if "final_lambda" in cfg.method:  # build_method passes the top-level λ, which the summary records
        raise ConfigError(
            f"method.final_lambda: the final λ is the top-level lambda (the summary records it); "
            f"drop it with ~method.final_lambda and set lambda={cfg.method.final_lambda} instead"
        )
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
    for domain, name, split in (("source", data.source, data.source_train), ("target", data.target, data.target_train)):
        if cfg.trainer.batch_size > len(split):
            raise ConfigError(
                f"trainer.batch_size: {cfg.trainer.batch_size} is larger than the {domain} training split "
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


# --- One value against its spec ------------------------------------------------------------------


def check_value(key: str, value: Any) -> None:
    """Raise the one-line `ConfigError` for `key` if `value` is not what its spec accepts."""
    spec = spec_of(key)
    if spec is None:
        raise ConfigError(_unknown_key(key))
    expected = spec.expected(value)
    if expected is not None:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}" + (f"; {spec.hint}" if spec.hint else ""))


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:  # an interpolation that fails, a mandatory value (???) not given
        message = str(e.msg).split("\n    full_key:")[0]  # omegaconf appends where; the key says it
        raise ConfigError(f"{e.full_key}: {' '.join(message.split())}") from None


def _unknown_key(key: str) -> str:
    parent = key.rpartition(".")[0]
    prefix = f"{parent}." if parent else ""
    known = sorted({k.removeprefix(prefix).split(".")[0] for k in SCHEMA if k.startswith(prefix)})
    where = f"{parent} has" if parent else "the top-level keys are"
    return f"{key}: no such setting (a typo?); {where} {', '.join(known) or 'no settings'}"


# --- Rules that involve several keys or the machine ---------------------------------------------


def _check_targets(container: dict[str, Any], prefix: str = "") -> None:
    """Every setting of a `_target_` node must be a parameter of what it names: a backbone
    given a setting another backbone takes (`weights` on an MLP) is refused, naming the key."""
    if isinstance(container.get("_target_"), str):
        settings = _settings_of(container["_target_"])
        for name in container:
            if settings is not None and not name.startswith("_") and name not in (*settings, *LABEL_KEYS):
                raise ConfigError(_not_taken(prefix, container["_target_"], name, settings))
    for name, value in container.items():
        if isinstance(value, dict) and f"{prefix}{name}" != "hydra":
            _check_targets(value, f"{prefix}{name}.")


@cache
def _settings_of(target: str) -> tuple[str, ...] | None:
    """The parameters `target` takes from the config: those with defaults, and keyword-only ones
    (a dataset class's fields). The others, such as a backbone's input_shape or an optimiser's
    params, the code supplies. None: any (it takes **kwargs)."""
    parameters = inspect.signature(locate(target)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return tuple(
        p.name
        for p in parameters
        if p.default is not inspect.Parameter.empty or p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def _not_taken(prefix: str, target: str, name: str, settings: tuple[str, ...]) -> str:
    key = f"{prefix}{name}"
    message = (
        f"{key}: {target} ({prefix}_target_) takes no setting '{name}' "
        f"(it takes {', '.join(settings) or 'none'}); drop it with ~{key}"
    )
    group, _, path = prefix.rstrip(".").partition(".")
    options = [
        option
        for option, other in _group_targets(group, path)
        if _settings_of(other) is None or name in _settings_of(other)
    ]
    if options:
        message += f", or choose a {group} that takes it: {' or '.join(f'{group}={o}' for o in options)}"
    return message


def _group_targets(group: str, path: str) -> list[tuple[str, str]]:
    """(option, _target_ at `path`) for each config file of conf/<group>/ that has one there."""
    found = []
    for file in sorted((CONF_DIR / group).glob("*.yaml")):
        node = OmegaConf.select(OmegaConf.load(file), f"{path}._target_") if path else None
        if isinstance(node, str):
            found.append((file.stem, node))
    return found


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
