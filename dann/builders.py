"""Config → components: every swappable part is built by `hydra.utils.instantiate` from its `_target_`.

With the entry points (`dann.run`, and `dann.config`, which checks the config first), this is the
only module that reads the composed config. What it builds takes plain, typed arguments, so the
same classes serve a user's own training loop (README, "Use it in your own training loop").

A config node's `name` labels the component in summaries and reports (`method.name`,
`dataset.name`); it is not a constructor argument, so it is left out when the node is built.
"""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dann.errors import DannError

LABEL_KEYS = ("name",)


def build(node: DictConfig, **supplied: Any) -> Any:
    """`instantiate(node, **supplied)` without the node's label keys.

    `supplied`: what the code provides (the network, the data's input shape, …). A `DannError`
    raised by a constructor reaches the caller as itself, not wrapped in Hydra's exception.
    """
    # Resolved first: interpolations such as ${dataset.image_size} point outside the node.
    settings = OmegaConf.to_container(node, resolve=True)
    config = {key: value for key, value in settings.items() if key not in LABEL_KEYS}
    try:
        return instantiate(config, **supplied)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, DannError):
            raise cause from None
        raise


def build_dataset(cfg: DictConfig) -> Any:
    """The dataset pair `dataset._target_` names: cheap to build (no file is read until `.load()`)."""
    return build(cfg.dataset)
