"""Model selection: how each criterion picks one evaluation of a run, defined once.

`summary.json` records, under `selection.<criterion>`, the whole evaluation each criterion
picks; a sweeper maximises one of them (`trainer.objective`); `dann.report --select` tabulates
any of them. `source_val` needs no target labels. `oracle` peeks at target test labels: an
upper bound, never a result.

This module imports nothing heavy, so that the report and the config schema can use it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Criterion:
    metric: str  # the evaluation metric it maximises (the earliest of equal evaluations wins)
    description: str  # what it picks, for tables
    uses_target_labels: bool


CRITERIA = {
    "source_val": Criterion(
        "source/acc",
        "evaluation with the best source validation accuracy (selection.source_val, no target labels)",
        uses_target_labels=False,
    ),
    "oracle": Criterion(
        "target/acc",
        "evaluation with the best target test accuracy (selection.oracle), which uses "
        "target test labels: an upper bound, not a result",
        uses_target_labels=True,
    ),
}


def select(evaluations: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """The evaluation each criterion picks: {criterion: evaluation}. `evaluations` is in step order."""
    return {
        name: max(evaluations, key=lambda record: record[criterion.metric])  # max keeps the earliest of equals
        for name, criterion in CRITERIA.items()
    }
