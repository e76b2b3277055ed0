"""What identifies a run: its whole resolved config, less the keys that cannot change its result.

Two runs with the same identity are the same experiment (the same numbers, up to the
device's nondeterminism). Resume compares identities before continuing a checkpoint,
`dann.run` compares them before skipping a finished directory, and `dann.report` never
puts runs of different identities (other than `seed`) in one table cell.

Plain containers only (dicts, lists, scalars), so that this module imports neither torch
nor Hydra and `summary.json` can carry the config as JSON.
"""

from __future__ import annotations

import copy
from typing import Any

# Keys that may differ between two runs of the same experiment: where the data lives,
# whether to download it, how it is loaded, where the numbers are sent, how often a
# checkpoint is written, how big the evaluation batches are, and what the run does with a
# directory that already holds a run. `logger` is the whole group. The CPU thread count changes a
# run's rounding, not its experiment (like the device under trainer.device=auto): summary.json
# records it (`runtime.threads`), a resume under another count warns, and changing
# trainer.threads to resume exactly must not be refused as another config.
RESULT_NEUTRAL_KEYS = (
    "trainer.resume",
    "trainer.rerun_finished",
    "trainer.checkpoint_every",
    "trainer.eval_batch_size",
    "trainer.objective",
    "trainer.progress",
    "trainer.threads",
    "logger",
    "dataset.root",
    "dataset.download",
    "dataset.num_workers",
)


def identity(config: dict[str, Any], also_ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """A copy of the resolved `config` without RESULT_NEUTRAL_KEYS (and `also_ignore`, dotted)."""
    config = copy.deepcopy(config)
    for dotted in RESULT_NEUTRAL_KEYS + tuple(also_ignore):
        *parents, leaf = dotted.split(".")
        node: Any = config
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return config


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys to leaf values: {"optim": {"optimizer": {"lr": 0.1}}} → {"optim.optimizer.lr": 0.1}.

    Lists are leaves (a list of hidden sizes is one value); an empty dict is kept as {}.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two configs (present in one only counts), sorted."""
    a, b = flatten(old), flatten(new)
    return sorted(key for key in set(a) | set(b) if a.get(key, _ABSENT) != b.get(key, _ABSENT))


_ABSENT = object()
