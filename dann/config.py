"""Checks on the composed config, run before any data is loaded or any step is taken.

Each failure is one `ConfigError` naming the key, the value, and what is expected.
"""

from __future__ import annotations

from numbers import Number

from omegaconf import DictConfig

from dann.data import DomainData, resolve_domains
from dann.errors import ConfigError
from dann.tracking import WANDB_MODES, wandb_mode


def _positive_int(cfg: DictConfig, key: str) -> None:
    value = cfg
    for part in key.split("."):
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")


def validate(cfg: DictConfig) -> None:
    final_lambda = cfg["lambda"]
    if isinstance(final_lambda, bool) or not isinstance(final_lambda, Number) or final_lambda < 0:
        raise ConfigError(
            f"lambda: expected a number >= 0 (the final adaptation weight), got {final_lambda!r}; "
            "e.g. lambda=0.1"
        )
    for key in ("trainer.steps", "trainer.batch_size", "trainer.eval_batch_size",
                "trainer.eval_every", "trainer.log_every", "trainer.checkpoint_every"):
        _positive_int(cfg, key)
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or cfg.seed < 0:
        raise ConfigError(f"seed: expected an integer >= 0, got {cfg.seed!r}")
    if cfg.optim.optimizer.lr is None or cfg.optim.optimizer.lr <= 0:
        raise ConfigError(f"optim.optimizer.lr: expected a learning rate > 0, got {cfg.optim.optimizer.lr!r}")
    if cfg.trainer.device not in ("auto", "cpu", "cuda") and not str(cfg.trainer.device).startswith("cuda:"):
        raise ConfigError(f"trainer.device: expected auto, cpu, cuda or cuda:N, got {cfg.trainer.device!r}")
    if cfg.trainer.objective not in ("source_val", "oracle"):
        raise ConfigError(f"trainer.objective: expected source_val or oracle, got {cfg.trainer.objective!r}")
    fraction = cfg.dataset.target_labeled_fraction
    if isinstance(fraction, bool) or not isinstance(fraction, Number) or not 0 < fraction <= 1:
        raise ConfigError(f"dataset.target_labeled_fraction: expected a fraction in (0, 1], got {fraction!r}")
    mode = wandb_mode(cfg.logger.wandb)
    if mode not in WANDB_MODES:
        raise ConfigError(
            f"logger.wandb.mode (or WANDB_MODE): expected one of {', '.join(WANDB_MODES)}, got {mode!r}"
        )

    source, target = resolve_domains(cfg.dataset)
    if source.name == target.name:
        raise ConfigError(
            f"dataset.source and dataset.target are both '{source.name}': adaptation needs two different domains"
        )
    if source.num_classes != target.num_classes:
        raise ConfigError(
            f"dataset.target: '{target.name}' has {target.num_classes} classes but dataset.source "
            f"'{source.name}' has {source.num_classes}; source and target must share one label set"
        )


def validate_against_data(cfg: DictConfig, data: DomainData) -> None:
    """The checks that need the loaded data; still before any training step."""
    for domain, name, split in (("source", data.source, data.source_train), ("target", data.target, data.target_train)):
        if cfg.trainer.batch_size > len(split):
            raise ConfigError(
                f"trainer.batch_size: {cfg.trainer.batch_size} is larger than the {domain} training split "
                f"({name}: {len(split)} examples); lower it"
            )
