"""Model selection: how each criterion picks one evaluation of a run, defined once.

`summary.json` records, under `selection.<criterion>`, the whole evaluation each criterion
picks; a sweeper maximises one of them (`trainer.objective`); `dann.report --select` tabulates
any of them, and `dann.report --select all` compares them all by their regret.

Every criterion's metric is higher-is-better, so that one rule (the maximum) picks for all of
them, here, in a sweeper and in the report. `oracle` peeks at target test labels: an upper
bound, never a result. The others use no target label: `source_val` only source validation
labels, the `select/…` criteria (computed by dann.selection.criteria at each evaluation) source validation
labels and the target test *inputs*.

This module imports nothing heavy, so that the report and the config schema can use it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


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
    "iwv": Criterion(
        "select/iwv",
        "evaluation with the best importance-weighted source validation accuracy "
        "(selection.iwv, Sugiyama et al. 2007; no target labels)",
        uses_target_labels=False,
    ),
    "dev": Criterion(
        "select/dev",
        "evaluation with the lowest deep-embedded-validation risk, i.e. the highest select/dev = −risk "
        "(selection.dev, You et al. 2019; no target labels)",
        uses_target_labels=False,
    ),
    "snd": Criterion(
        "select/snd",
        "evaluation with the highest soft neighbourhood density of target predictions "
        "(selection.snd, Saito et al. 2021; no target labels)",
        uses_target_labels=False,
    ),
    "entropy": Criterion(
        "select/entropy",
        "evaluation with the lowest mean entropy of target predictions (selection.entropy; no target labels)",
        uses_target_labels=False,
    ),
    "info_max": Criterion(
        "select/info_max",
        "evaluation with the highest information maximisation of target predictions "
        "(selection.info_max; no target labels)",
        uses_target_labels=False,
    ),
    "reverse_val": Criterion(
        "select/reverse_val",
        "evaluation with the best reverse validation accuracy (selection.reverse_val, Ganin et al. 2016 "
        "§5.1.5; no target labels; only evaluations where it ran)",
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
    """The evaluation each criterion picks: {criterion: evaluation}. `evaluations` is in step order.

    Only the evaluations where a criterion ran, with a finite value, are its candidates (reverse
    validation runs at some evaluations only); a criterion with none is left out. `summarise`
    records the non-finite ones this leaves out.
    """
    picks = {}
    for name, criterion in CRITERIA.items():
        candidates = [r for r in evaluations if criterion.metric in r and math.isfinite(r[criterion.metric])]
        if candidates:
            picks[name] = max(candidates, key=lambda record: record[criterion.metric])  # keeps the earliest of equals
    return picks


def summarise(evaluations: list[dict[str, float]]) -> dict[str, Any]:
    """The summary's selection fields: `selection` (`select`), and what it could not use, so that
    nothing is dropped silently (each also logged as a warning):

    - `selection_unavailable`: {criterion: reason}, for a criterion that ran but was non-finite at
      every evaluation where it ran: it has no pick (and a sweeper no objective).
    - `selection_nonfinite_steps`: {criterion: [steps]}, for a criterion non-finite at these steps
      only: its pick is the best of its other, finite evaluations.

    Each key is present only when it has an entry; a criterion never run (reverse validation
    turned off) is in neither.
    """
    unavailable, nonfinite_steps = {}, {}
    for name, criterion in CRITERIA.items():
        ran = [r for r in evaluations if criterion.metric in r]
        bad = [int(r["step"]) for r in ran if not math.isfinite(r[criterion.metric])]
        if not bad:
            continue
        steps = ", ".join(map(str, bad))
        if len(bad) == len(ran):
            unavailable[name] = f"non-finite at every evaluation (steps {steps})"
            log.warning("%s non-finite at every evaluation (steps %s): no selection.%s", criterion.metric, steps, name)
        else:
            nonfinite_steps[name] = bad
            log.warning("%s non-finite at steps %s: selection.%s picks among the others", criterion.metric, steps, name)
    summary: dict[str, Any] = {"selection": select(evaluations)}
    if unavailable:
        summary["selection_unavailable"] = unavailable
    if nonfinite_steps:
        summary["selection_nonfinite_steps"] = nonfinite_steps
    return summary
