"""Result tables from run directories: `python -m dann.report <sweep or run directories…> [options]`.

    python -m dann.report multirun/2025-01-31/10-00-00 --markdown results.md --csv results.csv

Rows are tasks (source→target, grouped by dataset), columns are methods and/or λ values,
and each cell is the mean ± sample standard deviation over seeds of one metric from each
run's `summary.json` (see CONVENTIONS.md). Runs that failed or never finished are
flagged in their cell and listed under the table; they are never averaged in.

The pipeline is four small steps, each a function below:
collect (`find_run_dirs`, `read_run`) → group and aggregate (`build_table`) →
format (`format_text`, `format_markdown`, `format_latex`, `write_csv`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

METRICS = {
    "target/acc": "Target accuracy",
    "target/acc_per_class_mean": "Target mean per-class accuracy",
    "source/acc": "Source validation accuracy",
}
SELECTIONS = {
    "final": "final evaluation (end of training)",
    "source_val": "evaluation with the best source validation accuracy (selection.source_val, no target labels)",
    "oracle": "evaluation with the best target test accuracy (selection.oracle), which uses target test "
              "labels: an upper bound, not a result",
}
# Lower bound, the method, upper bound (the paper's order); other methods follow alphabetically.
METHOD_ORDER = ("source_only", "dann", "target_only")
# Fields every summary.json has, whatever its status (dann.run writes them before training).
REQUIRED_FIELDS = ("status", "method", "lambda", "dataset", "source", "target", "seed")
# Where an unfinished run (no summary.json) finds the same facts in .hydra/config.yaml.
CONFIG_FIELDS = {"method": "method.name", "lambda": "lambda", "dataset": "dataset.name",
                 "source": "dataset.source", "target": "dataset.target", "seed": "seed"}


class ReportError(Exception):
    """A problem with the report's inputs. The message names the file; `main` prints it and exits 2."""


# ---------------------------------------------------------------------------------------------
# collect


@dataclass(frozen=True)
class Run:
    """One run directory, reduced to what the table needs.

    status: `finished`, `failed`, `unfinished` (no summary.json: killed or still running)
    or `skipped` (an invalid grid combination that dann.run never trained).
    value: the chosen metric at the chosen evaluation (finished runs only), a fraction.
    """

    path: Path
    status: str
    dataset: str
    protocol: str | None
    source: str
    target: str
    method: str
    lam: float | str
    seed: Any
    steps: Any = None
    value: float | None = None
    error: str | None = None

    @property
    def task(self) -> tuple[str, str]:
        return (self.source, self.target)


def is_run_dir(path: Path) -> bool:
    return (path / "summary.json").is_file() or (path / ".hydra" / "config.yaml").is_file()


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Every run directory at or under `paths` (a run directory is not searched further)."""
    found: dict[Path, Path] = {}
    for given in paths:
        top = Path(given)
        if not top.exists():
            raise ReportError(f"{top}: no such file or directory")
        if top.is_file():
            if top.name != "summary.json":
                raise ReportError(f"{top}: not a directory; give sweep or run directories")
            top = top.parent
        for dirpath, dirnames, _ in os.walk(top):
            here = Path(dirpath)
            if is_run_dir(here):
                found.setdefault(here.resolve(), here)
                dirnames.clear()
            else:
                dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
    if not found:
        raise ReportError("no run directory (one holding summary.json or .hydra/config.yaml) under "
                          + ", ".join(str(p) for p in paths))
    return sorted(found.values(), key=_natural_key)


def read_run(run_dir: Path, metric: str, select: str) -> Run:
    """The run in `run_dir`: from its summary.json, or from .hydra/config.yaml when it has none."""
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        return _run_from_summary(run_dir, summary_path, metric, select)
    return _run_from_config(run_dir, run_dir / ".hydra" / "config.yaml")


def read_runs(paths: Sequence[str | Path], metric: str, select: str) -> list[Run]:
    return [read_run(run_dir, metric, select) for run_dir in find_run_dirs(paths)]


def _run_from_summary(run_dir: Path, path: Path, metric: str, select: str) -> Run:
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot be read ({e})") from None
    if not isinstance(summary, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in summary]
    if missing:
        raise ReportError(f"{path}: missing required field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    status = summary["status"]
    finished = status == "finished"
    common = dict(
        path=run_dir,
        dataset=str(summary["dataset"]),
        protocol=summary.get("protocol"),
        # A finished run wrote canonical names; a failed one may have failed before resolving an alias.
        source=str(summary["source"]) if finished else canonical_domain(summary["source"], str(summary["dataset"])),
        target=str(summary["target"]) if finished else canonical_domain(summary["target"], str(summary["dataset"])),
        method=str(summary["method"]),
        lam=_lambda(summary["lambda"]),
        seed=summary["seed"],
        steps=summary.get("steps"),
    )
    if finished:
        where, record = _selected_record(summary, select)
        if not isinstance(record, dict):
            raise ReportError(f"{path}: missing required field {where} (the run's status is finished)")
        if metric not in record:
            raise ReportError(f"{path}: missing required field {where}.{metric}")
        value = record[metric]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReportError(f"{path}: {where}.{metric} is not a number: {value!r}")
        if not math.isfinite(value):  # a diverged run: a failure for the table, not a number to average
            return Run(status="failed", error=f"{where}.{metric} is {value}", **common)
        return Run(status="finished", value=float(value), **common)
    if status == "failed":
        return Run(status="failed", error=str(summary.get("error") or "(no error recorded)"), **common)
    if status == "skipped":
        return Run(status="skipped", error=summary.get("error"), **common)
    return Run(status="unfinished", error=f"summary.json has status {status!r}", **common)


def _selected_record(summary: dict, select: str) -> tuple[str, Any]:
    if select == "final":
        return "final", summary.get("final")
    selection = summary.get("selection")
    return f"selection.{select}", selection.get(select) if isinstance(selection, dict) else None


def _run_from_config(run_dir: Path, path: Path) -> Run:
    from omegaconf import DictConfig, OmegaConf

    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 - any parse error is the file's fault
        raise ReportError(f"{path}: not valid YAML ({type(e).__name__}: {e})") from None
    if not isinstance(cfg, DictConfig):
        raise ReportError(f"{path}: expected a mapping (the run's composed config)")

    def get(key: str, required: bool = True) -> Any:
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except Exception as e:  # noqa: BLE001
            raise ReportError(f"{path}: cannot read {key} ({type(e).__name__}: {e})") from None
        if value is None and required:
            raise ReportError(f"{path}: missing required field {key}")
        return value

    values = {name: get(key) for name, key in CONFIG_FIELDS.items()}
    return Run(
        path=run_dir, status="unfinished", error="no summary.json (killed, or still running)",
        dataset=str(values["dataset"]), protocol=get("dataset.protocol", required=False),
        source=canonical_domain(values["source"], str(values["dataset"])),
        target=canonical_domain(values["target"], str(values["dataset"])),
        method=str(values["method"]), lam=_lambda(values["lambda"]), seed=values["seed"],
        steps=get("trainer.steps", required=False),
    )


def canonical_domain(name: Any, dataset: str | None = None) -> str:
    """A domain's canonical name (`M` → `mnist`); the name itself when it is not registered."""
    try:
        from dann.data import resolve_domain  # imports torch: only for runs that need it

        return resolve_domain(str(name), "dataset", dataset).name  # aliases are scoped by benchmark
    except Exception:  # noqa: BLE001 - an unknown name is shown as written
        return str(name)


def _lambda(value: Any) -> float | str:
    if isinstance(value, bool):
        return str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _natural_key(path: Path) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(path)) if part]


# ---------------------------------------------------------------------------------------------
# references


@dataclass
class References:
    """Published numbers (experiments/references.yaml): per task, and averages over a benchmark."""

    path: Path
    citations: dict[str, str]
    results: list[dict]
    averages: list[dict]


RESULT_FIELDS = ("dataset", "source", "target", "method", "backbone", "value", "cite")
AVERAGE_FIELDS = ("dataset", "method", "backbone", "value", "tasks", "cite")


def load_references(path: str | Path) -> References:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ReportError(f"{path}: cannot be read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ReportError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a mapping with citations, results and averages")
    citations = data.get("citations") or {}
    if not isinstance(citations, dict):
        raise ReportError(f"{path}: citations must map keys to references")
    lists = {}
    for name, required in (("results", RESULT_FIELDS), ("averages", AVERAGE_FIELDS)):
        entries = data.get(name) or []
        if not isinstance(entries, list):
            raise ReportError(f"{path}: {name} must be a list")
        for i, entry in enumerate(entries):
            where = f"{path}: {name}[{i}]"
            if not isinstance(entry, dict):
                raise ReportError(f"{where} must be a mapping")
            missing = [k for k in required if k not in entry]
            if missing:
                raise ReportError(f"{where}: missing required field{'s' if len(missing) > 1 else ''} "
                                  f"{', '.join(missing)}")
            value = entry["value"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ReportError(f"{where}: value must be a fraction in [0, 1], got {value!r}")
            if name == "averages" and (isinstance(entry["tasks"], bool) or not isinstance(entry["tasks"], int)
                                       or entry["tasks"] < 1):
                raise ReportError(f"{where}: tasks must be the number of tasks averaged, got {entry['tasks']!r}")
            if entry["cite"] not in citations:
                raise ReportError(f"{where}: cite '{entry['cite']}' is not a key of citations")
        lists[name] = entries
    return References(path, {str(k): str(v) for k, v in citations.items()}, lists["results"], lists["averages"])


# ---------------------------------------------------------------------------------------------
# group and aggregate


@dataclass(frozen=True)
class Column:
    """A measured column (method, λ) or a published one (method, backbone, citation key)."""

    kind: str  # "measured" | "published"
    method: str
    lam: float | str | None = None
    backbone: str | None = None
    cite: str | None = None


@dataclass
class Cell:
    """The runs of one task × measured column."""

    finished: list[Run] = field(default_factory=list)
    failed: list[Run] = field(default_factory=list)
    unfinished: list[Run] = field(default_factory=list)
    superseded: list[Run] = field(default_factory=list)  # failed/unfinished, but the seed finished elsewhere

    @property
    def values(self) -> list[float]:
        return [run.value for run in self.finished]

    @property
    def n(self) -> int:
        return len(self.finished)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.finished else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (n − 1 denominator); None below two seeds."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    @property
    def runs(self) -> list[Run]:
        return self.finished + self.failed + self.unfinished + self.superseded


@dataclass(frozen=True)
class Group:
    """Rows of one dataset (and evaluation protocol)."""

    dataset: str
    protocol: str | None
    label: str
    tasks: tuple[tuple[str, str], ...]


@dataclass
class Average:
    value: float | None
    n_tasks: int  # tasks averaged over
    n_total: int  # tasks in the group
    published_tasks: int | None = None  # for a published average: tasks the paper averaged over


@dataclass
class Table:
    metric: str
    select: str
    columns_mode: str
    groups: list[Group]
    columns: list[Column]
    cells: dict[tuple, Cell]  # (group.label, task, column) -> Cell, measured columns
    published: dict[tuple, float]  # (group.label, task, column) -> value, published columns
    published_averages: dict[tuple, tuple[float, int]]  # (group.label, column) -> (value, tasks)
    expected_n: int  # the most common number of finished seeds per cell
    seeds: list
    skipped: list[Run]
    references: References | None = None

    @property
    def measured_columns(self) -> list[Column]:
        return [c for c in self.columns if c.kind == "measured"]

    @property
    def published_columns(self) -> list[Column]:
        return [c for c in self.columns if c.kind == "published"]

    @property
    def methods(self) -> list[str]:
        return _unique(c.method for c in self.measured_columns)

    @property
    def lambdas(self) -> list:
        return _unique(c.lam for c in self.measured_columns)

    def cell(self, group: Group, task: tuple[str, str], column: Column) -> Cell | None:
        return self.cells.get((group.label, task, column))

    def average(self, group: Group, column: Column) -> Average:
        """Mean over the group's tasks of the per-task means (published: the paper's own average if given)."""
        if column.kind == "published" and (group.label, column) in self.published_averages:
            value, tasks = self.published_averages[(group.label, column)]
            return Average(value, len(group.tasks), len(group.tasks), published_tasks=tasks)
        if column.kind == "published":
            keys = [(group.label, task, column) for task in group.tasks]
            means = [self.published[key] for key in keys if key in self.published]
        else:
            means = [cell.mean for task in group.tasks if (cell := self.cell(group, task, column)) and cell.n]
        return Average(float(np.mean(means)) if means else None, len(means), len(group.tasks))

    def show_average(self, group: Group) -> bool:
        return len(group.tasks) > 1 or any((group.label, c) in self.published_averages for c in self.columns)

    def runs(self, status: str) -> list[Run]:
        return [run for cell in self.cells.values() for run in getattr(cell, status)]


def build_table(runs: Sequence[Run], metric: str = "target/acc", select: str = "final",
                columns_mode: str | None = None, references: References | None = None) -> Table:
    """Group runs into task × column cells; add the published numbers that match."""
    skipped = [run for run in runs if run.status == "skipped"]
    runs = [run for run in runs if run.status != "skipped"]
    if not runs:
        raise ReportError("no runs to report: every run directory found was skipped by dann.run "
                          "(an invalid configuration)")
    methods = {run.method for run in runs}
    if columns_mode is None:
        columns_mode = "method" if len(methods) > 1 else "lambda"

    # Groups: one per dataset, or per dataset and protocol when a dataset was run under several.
    protocols: dict[str, set] = {}
    for run in runs:
        protocols.setdefault(run.dataset, set()).add(run.protocol)
    group_of = {}
    tasks: dict[str, set] = {}
    for run in runs:
        key = (run.dataset, run.protocol)
        label = run.dataset if len(protocols[run.dataset]) == 1 else f"{run.dataset} ({run.protocol})"
        group_of[key] = label
        tasks.setdefault(label, set()).add(run.task)
    groups = [Group(dataset, protocol, label, tuple(sorted(tasks[label])))
              for (dataset, protocol), label in sorted(group_of.items(), key=lambda kv: kv[1])]

    columns = sorted({Column("measured", run.method, run.lam) for run in runs},
                     key=lambda c: _column_order(c, columns_mode))
    cells: dict[tuple, Cell] = {}
    for run in runs:
        label = group_of[(run.dataset, run.protocol)]
        cell = cells.setdefault((label, run.task, Column("measured", run.method, run.lam)), Cell())
        getattr(cell, run.status).append(run)
    for cell in cells.values():
        done = {_seed_key(run.seed) for run in cell.finished}
        for status in ("failed", "unfinished"):
            kept = [run for run in getattr(cell, status) if _seed_key(run.seed) not in done]
            cell.superseded += [run for run in getattr(cell, status) if _seed_key(run.seed) in done]
            setattr(cell, status, kept)

    counts = Counter(cell.n for cell in cells.values() if cell.n)
    expected_n = max(counts, key=lambda n: (counts[n], n)) if counts else 0
    seeds = sorted({_seed_key(run.seed) for run in runs}, key=_sortable)

    published, published_averages, published_columns = {}, {}, []
    if references is not None:
        published, published_averages, published_columns = _match_references(references, groups, columns, metric)
    return Table(metric, select, columns_mode, groups, columns + published_columns, cells, published,
                 published_averages, expected_n, seeds, skipped, references)


def _match_references(references: References, groups: list[Group], measured: list[Column], metric: str):
    methods = {c.method for c in measured}
    published: dict[tuple, float] = {}
    averages: dict[tuple, tuple[float, int]] = {}
    for group in groups:
        for entry in references.results:
            task = (str(entry["source"]), str(entry["target"]))
            if (str(entry["dataset"]) == group.dataset and task in group.tasks and entry["method"] in methods
                    and entry.get("metric", "target/acc") == metric):
                column = _published_column(entry)
                published[(group.label, task, column)] = float(entry["value"])
        for entry in references.averages:
            if (str(entry["dataset"]) == group.dataset and entry["method"] in methods
                    and entry.get("metric", "target/acc") == metric):
                column = _published_column(entry)
                averages[(group.label, column)] = (float(entry["value"]), int(entry["tasks"]))
    columns = {key[-1] for key in published} | {key[-1] for key in averages}
    order = {m: i for i, m in enumerate(_unique(c.method for c in measured))}
    return published, averages, sorted(columns, key=lambda c: (order[c.method], c.cite, c.backbone))


def _published_column(entry: dict) -> Column:
    return Column("published", str(entry["method"]), backbone=str(entry["backbone"]), cite=str(entry["cite"]))


def _column_order(column: Column, mode: str) -> tuple:
    known = column.method in METHOD_ORDER
    method = (METHOD_ORDER.index(column.method), "") if known else (len(METHOD_ORDER), column.method)
    lam = _sortable(column.lam)
    return (method, lam) if mode == "method" else (lam, method)


def _seed_key(seed: Any) -> Any:
    return seed if isinstance(seed, (int, str)) and not isinstance(seed, bool) else str(seed)


def _sortable(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _unique(items: Iterable) -> list:
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------------
# format


@dataclass(frozen=True)
class Style:
    """How the shared symbols are written in each output format."""

    pm: str = " ± "
    fewer: str = "*"
    failed: str = "†"
    unfinished: str = "‡"
    dash: str = "—"
    arrow: str = "→"
    lam: str = "λ"

    def text(self, s: str) -> str:
        return s


class MarkdownStyle(Style):
    def text(self, s: str) -> str:
        return s.replace("|", "\\|")


class LatexStyle(Style):
    def text(self, s: str) -> str:
        return re.sub(r"[\\&%$#_{}~^]", lambda m: {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}",
                                                  "^": r"\textasciicircum{}"}.get(m[0], "\\" + m[0]), s)


TEXT = Style()
MARKDOWN = MarkdownStyle(fewer="\\*")
LATEX = LatexStyle(pm=r" $\pm$ ", fewer=r"$^{*}$", failed=r"\dag{}", unfinished=r"\ddag{}", dash="--",
                   arrow=r"$\rightarrow$", lam=r"$\lambda$")


def pct(value: float, decimals: int = 1) -> str:
    return f"{100 * value:.{decimals}f}"


def pct_exact(value: float) -> str:
    """A published number as printed: one decimal, or two when the source gave them (.5225 → 52.25)."""
    return pct(value, 1) if abs(round(100 * value, 1) - round(100 * value, 2)) < 1e-9 else pct(value, 2)


def fmt_lambda(lam: Any) -> str:
    return f"{lam:g}" if isinstance(lam, float) else str(lam)


def column_label(table: Table, column: Column, style: Style = TEXT) -> str:
    if column.kind == "published":
        return f"published: {style.text(column.method)}, {style.text(column.backbone)} [{style.text(column.cite)}]"
    show_method = table.columns_mode == "method" or len(table.methods) > 1
    show_lambda = table.columns_mode == "lambda" or len(table.lambdas) > 1
    words = ([style.text(column.method)] if show_method else []) + \
            ([f"{style.lam}={style.text(fmt_lambda(column.lam))}"] if show_lambda else [])
    return " ".join(words)


def task_label(task: tuple[str, str], style: Style = TEXT) -> str:
    return f"{style.text(task[0])}{style.arrow}{style.text(task[1])}"


def format_cell(table: Table, group: Group, task: tuple[str, str], column: Column, style: Style = TEXT) -> str:
    if column.kind == "published":
        value = table.published.get((group.label, task, column))
        return style.dash if value is None else pct_exact(value)
    cell = table.cell(group, task, column)
    if cell is None:
        return style.dash
    parts = []
    if cell.n:
        text = pct(cell.mean) + (f"{style.pm}{pct(cell.std)}" if cell.std is not None else "") + f" ({cell.n})"
        parts.append(text + (style.fewer if cell.n < table.expected_n else ""))
    else:
        parts.append(style.dash)
    if cell.failed:
        parts.append(f"{style.failed}{len(cell.failed)} failed")
    if cell.unfinished:
        parts.append(f"{style.unfinished}{len(cell.unfinished)} unfinished")
    return " ".join(parts)


def format_average(table: Table, group: Group, column: Column, style: Style = TEXT) -> str:
    average = table.average(group, column)
    if average.value is None:
        return style.dash
    if average.published_tasks is not None:  # the source's own average
        return f"{pct_exact(average.value)} [{average.published_tasks} tasks]"
    if column.kind == "published":  # ours, over the published per-task numbers
        return f"{pct(average.value)} [mean of {average.n_tasks}/{average.n_total}]"
    if average.n_tasks < average.n_total:
        return f"{pct(average.value)} [{average.n_tasks}/{average.n_total} tasks]"
    return pct(average.value)


def caption(table: Table, style: Style = TEXT) -> str:
    """What the numbers are: metric, selection (an oracle says so first), and what is held fixed."""
    parts = [f"{METRICS.get(table.metric, table.metric)} ({style.text(table.metric + ', %')})",
             style.text(SELECTIONS[table.select]),
             f"mean{style.pm}std over seeds (n finished runs)"]
    fixed = []
    if len(table.groups) == 1:
        fixed.append(f"dataset {style.text(table.groups[0].label)}")
    if len(table.methods) == 1 and table.columns_mode == "lambda":
        fixed.append(f"method {style.text(table.methods[0])}")
    if len(table.lambdas) == 1 and table.columns_mode == "method":
        fixed.append(f"{style.lam}={style.text(fmt_lambda(table.lambdas[0]))}")
    text = "; ".join(parts + ([", ".join(fixed)] if fixed else []))
    return ("ORACLE: " + text) if table.select == "oracle" else text


def table_rows(table: Table, style: Style = TEXT) -> list[tuple[str, list[str]]]:
    """The table as (kind, cells) rows: kind is header, group, task or average."""
    first = "task (ORACLE)" if table.select == "oracle" else "task"
    rows = [("header", [first] + [column_label(table, c, style) for c in table.columns])]
    several = len(table.groups) > 1
    for group in table.groups:
        if several:
            rows.append(("group", [style.text(group.label)] + [""] * len(table.columns)))
        for task in group.tasks:
            rows.append(("task", [task_label(task, style)]
                         + [format_cell(table, group, task, c, style) for c in table.columns]))
        if table.show_average(group):
            rows.append(("average", ["average"] + [format_average(table, group, c, style) for c in table.columns]))
    return rows


def notes(table: Table) -> list[tuple[str, list[str]]]:
    """The legend and the lists under the table, as (heading, lines) sections."""
    used = " ".join(" ".join(cells) for kind, cells in table_rows(table, TEXT) if kind != "header")
    legend = [f"Cells: mean{TEXT.pm}sample standard deviation (n − 1 denominator) over seeds, in %; "
              "(n) is the number of finished runs. — means no finished run."]
    if "*" in used:
        legend.append(f"* fewer seeds than the table's usual {table.expected_n}.")
    if "†" in used:
        legend.append("†k failed: runs with status failed (listed below), not averaged in.")
    if "‡" in used:
        legend.append("‡k unfinished: run directories without summary.json (killed or still running; "
                      "listed below), not averaged in.")
    if any(kind == "average" for kind, _ in table_rows(table, TEXT)):
        legend.append("average: mean over tasks of the per-task means; [k/m tasks]: only k of the m tasks "
                      "have a result in that column.")
    if table.published_columns:
        legend.append(f"published: numbers from {_display_path(table.references.path)}, not measured here; "
                      "[k tasks]: the source's own average over k tasks; [mean of k/m]: our mean of its "
                      "numbers for k of this table's m tasks.")
        for key in _unique(c.cite for c in table.published_columns):
            legend.append(f"[{key}] {table.references.citations[key]}")
    elif table.references is not None:
        legend.append(f"No published number in {_display_path(table.references.path)} matches these datasets, tasks, "
                      f"methods and metric.")
    sections = [("Legend", legend)]

    def where(run: Run) -> str:
        return (f"{_display_path(run.path)} ({run.dataset} {run.source}→{run.target}, {run.method} "
                f"λ={fmt_lambda(run.lam)}, seed {run.seed})")

    failed = table.runs("failed")
    if failed:
        sections.append((f"Failed runs ({len(failed)})", [f"{where(r)}: {r.error}" for r in failed]))
    unfinished = table.runs("unfinished")
    if unfinished:
        sections.append((f"Unfinished runs ({len(unfinished)})", [f"{where(r)}: {r.error}" for r in unfinished]))
    missing, mixed = [], []
    for (label, task, column), cell in sorted(table.cells.items(), key=lambda kv: _cell_order(table, kv[0])):
        name = f"{label} {task[0]}→{task[1]} {column.method} λ={fmt_lambda(column.lam)}"
        have = {_seed_key(run.seed) for run in cell.runs}
        absent = [s for s in table.seeds if s not in have]
        if absent:
            missing.append(f"{name}: seed{'s' if len(absent) > 1 else ''} {', '.join(map(str, absent))} never run")
        repeated = [s for s, k in Counter(_seed_key(r.seed) for r in cell.finished).items() if k > 1]
        if repeated:
            mixed.append(f"{name}: seed{'s' if len(repeated) > 1 else ''} {', '.join(map(str, repeated))} "
                         f"finished more than once; all are averaged in")
        steps = _unique(r.steps for r in cell.finished)
        if len(steps) > 1:
            mixed.append(f"{name}: mixes runs of different lengths (steps {', '.join(map(str, steps))})")
    if missing:
        sections.append((f"Missing seeds (the table's seeds: {', '.join(map(str, table.seeds))})", missing))
    if mixed:
        sections.append(("Check", mixed))
    superseded = table.runs("superseded")
    if superseded:
        sections.append((f"Superseded ({len(superseded)}): failed or unfinished, but the same seed finished "
                         "in another directory, which is used", [f"{where(r)}: {r.error}" for r in superseded]))
    if table.skipped:
        sections.append((f"Skipped by dann.run as invalid configurations, not shown ({len(table.skipped)})",
                         [f"{where(r)}: {r.error}" for r in table.skipped]))
    return sections


def _cell_order(table: Table, key: tuple) -> tuple:
    label, task, column = key
    return ([g.label for g in table.groups].index(label), task, table.columns.index(column))


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def format_text(table: Table) -> str:
    rows = table_rows(table, TEXT)
    if len(table.groups) > 1:  # tasks indented under their dataset
        rows = [(kind, ["  " + cells[0]] + cells[1:]) if kind in ("task", "average") else (kind, cells)
                for kind, cells in rows]
    widths = [max(len(cells[i]) for kind, cells in rows if kind != "group") for i in range(len(rows[0][1]))]
    rule = "  ".join("-" * w for w in widths)
    lines = [caption(table, TEXT), ""]
    for kind, cells in rows:
        if kind == "average":
            lines.append(rule)
        lines.append(cells[0] if kind == "group" else "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        if kind == "header":
            lines.append(rule)
    for heading, items in notes(table):
        lines += ["", f"{heading}:"] + [f"  {item}" for item in items]
    return "\n".join(lines) + "\n"


def format_markdown(table: Table) -> str:
    rows = table_rows(table, MARKDOWN)
    lines = [f"**{_md(caption(table, TEXT))}**", ""]
    for kind, cells in rows:
        if kind == "group":
            cells = [f"**{cells[0]}**"] + cells[1:]
        elif kind == "average":
            cells = [f"*{cells[0]}*"] + cells[1:]
        lines.append("| " + " | ".join(cells) + " |")
        if kind == "header":
            lines.append("| " + " | ".join(["---"] + ["---:"] * (len(cells) - 1)) + " |")
    for heading, items in notes(table):
        lines += ["", f"{_md(heading)}:", ""] + [f"- {_md(item)}" for item in items]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("*", "\\*").replace("_", "\\_").replace("|", "\\|")


def format_latex(table: Table) -> str:
    """A booktabs `tabular` in a `table` float; the lists under the table are comments."""
    rows = table_rows(table, LATEX)
    ncols = len(rows[0][1])
    lines = ["% Generated by python -m dann.report; needs \\usepackage{booktabs}.",
             "\\begin{table}[t]", "\\centering",
             f"\\caption{{{caption(table, LATEX)}. {_latex_legend(table)}}}",
             f"\\begin{{tabular}}{{l{'c' * (ncols - 1)}}}", "\\toprule"]
    for kind, cells in rows:
        if kind == "group":
            lines.append(f"\\multicolumn{{{ncols}}}{{l}}{{\\textit{{{cells[0]}}}}} \\\\")
            continue
        if kind == "average":
            lines.append("\\midrule")
        lines.append(" & ".join(cells) + " \\\\")
        if kind == "header":
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    for heading, items in notes(table):
        lines += [f"% {heading}:"] + [f"%   {item}" for item in items]
    return "\n".join(lines) + "\n"


def _latex_legend(table: Table) -> str:
    used = " ".join(" ".join(cells) for kind, cells in table_rows(table, TEXT) if kind != "header")
    legend = ["(n): finished runs"]
    if "*" in used:
        legend.append(f"$^{{*}}$: fewer seeds than the usual {table.expected_n}")
    if "†" in used:
        legend.append("\\dag{}: failed runs, not averaged in")
    if "‡" in used:
        legend.append("\\ddag{}: unfinished runs, not averaged in")
    if "tasks]" in used:
        legend.append("[k/m tasks]: average over the k of m tasks with a result")
    if table.published_columns:
        legend.append("published: copied from the source in brackets (see the comments below), not measured here")
    return "; ".join(legend) + "."


CSV_FIELDS = ("dataset", "protocol", "row", "task", "source", "target", "column", "kind", "method", "lambda",
              "backbone", "cite", "metric", "select", "mean", "std", "n", "n_failed", "n_unfinished",
              "n_expected", "seeds", "tasks_averaged", "tasks_total")


def csv_rows(table: Table) -> list[dict[str, Any]]:
    """One row per task × column (and per average × column); numbers are fractions, as in summary.json."""
    rows = []
    for group in table.groups:
        for task in group.tasks:
            for column in table.columns:
                row = _csv_base(table, group, column) | {
                    "row": "task", "task": f"{task[0]}→{task[1]}", "source": task[0], "target": task[1]}
                if column.kind == "published":
                    row["mean"] = table.published.get((group.label, task, column))
                else:
                    cell = table.cell(group, task, column) or Cell()
                    row |= {"mean": cell.mean, "std": cell.std, "n": cell.n, "n_failed": len(cell.failed),
                            "n_unfinished": len(cell.unfinished), "n_expected": table.expected_n,
                            "seeds": " ".join(str(r.seed) for r in cell.finished)}
                rows.append(row)
        if table.show_average(group):
            for column in table.columns:
                average = table.average(group, column)
                rows.append(_csv_base(table, group, column) | {
                    "row": "average", "task": "average", "mean": average.value,
                    "tasks_averaged": average.published_tasks or average.n_tasks,
                    "tasks_total": average.published_tasks or average.n_total})
    return [{k: ("" if row.get(k) is None else row[k]) for k in CSV_FIELDS} for row in rows]


def _csv_base(table: Table, group: Group, column: Column) -> dict[str, Any]:
    return {"dataset": group.dataset, "protocol": group.protocol, "column": column_label(table, column),
            "kind": column.kind, "method": column.method,
            "lambda": fmt_lambda(column.lam) if column.lam is not None else None,
            "backbone": column.backbone, "cite": column.cite, "metric": table.metric, "select": table.select}


def write_csv(table: Table, path: Path) -> None:
    with _open_for_writing(path) as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(table))


def _open_for_writing(path: Path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", newline="", encoding="utf-8")
    except OSError as e:
        raise ReportError(f"{path}: cannot be written ({e.strerror or e})") from None


def _write(path: Path, text: str) -> None:
    with _open_for_writing(path) as f:
        f.write(text)


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dann.report",
        description="Tabulate runs: rows are tasks, columns methods and/or λ, cells mean ± std over seeds "
                    "of one metric from each run's summary.json. Failed and unfinished runs are flagged, "
                    "never averaged in.")
    parser.add_argument("paths", nargs="+", metavar="DIR",
                        help="sweep or run directories, searched recursively for run directories")
    parser.add_argument("--metric", choices=list(METRICS), default="target/acc",
                        help="which number (default: target/acc)")
    parser.add_argument("--select", choices=list(SELECTIONS), default="final",
                        help="which evaluation of each run: final (default), source_val (best source "
                             "validation accuracy), oracle (best target accuracy: uses target labels)")
    parser.add_argument("--columns", choices=("method", "lambda"), default=None,
                        help="columns are methods or λ values (default: method if several methods are "
                             "present, else lambda); when both vary, each column is a combination")
    parser.add_argument("--reference", type=Path, metavar="FILE",
                        help="add published numbers from FILE, beside the measured columns "
                             "(the repository's: experiments/references.yaml)")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table as Markdown")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write one CSV row per task × column")
    parser.add_argument("--latex", type=Path, metavar="FILE", help="also write a booktabs LaTeX table")
    return parser.parse_args(argv)


def report(args: argparse.Namespace) -> Table:
    references = load_references(args.reference) if args.reference else None
    runs = read_runs(args.paths, args.metric, args.select)
    table = build_table(runs, args.metric, args.select, args.columns, references)
    sys.stdout.write(format_text(table))
    if args.markdown:
        _write(args.markdown, format_markdown(table))
    if args.csv:
        write_csv(table, args.csv)
    if args.latex:
        _write(args.latex, format_latex(table))
    for path in (args.markdown, args.csv, args.latex):
        if path:
            print(f"wrote {path}", file=sys.stderr)
    return table


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        report(args)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # `python -m dann.report … | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
