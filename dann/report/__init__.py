"""Result tables from run directories: `python -m dann.report <sweep or run directories…> [options]`.

    python -m dann.report multirun/2025-01-31/10-00-00 --markdown results.md --csv results.csv

Rows are tasks (source→target, grouped by dataset), columns are the configurations that vary
(method, λ, any other config key), and each cell is the mean ± sample standard deviation over
seeds of one metric, from runs with exactly the same configuration but their seed. Runs that
did not finish are flagged in their cell and listed under the table; they are never averaged in.

collect (run directories → a DataFrame, one row per run) → table (cells, averages) → render.

`--select all` compares the model-selection criteria instead (dann.selection.pick): per task, the
configuration (λ, …) each criterion picks, as the DANN paper picks λ, that configuration's number
and its regret against the oracle; collect_selections → build_selection_table → format_selection_*.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dann.report.collect import ReportError, collect, collect_selections, load_references
from dann.report.render import (
    METRICS,
    csv_frame,
    csv_text,
    format_latex,
    format_markdown,
    format_selection_markdown,
    format_selection_text,
    format_text,
    selection_csv_frame,
)
from dann.report.table import SelectionTable, Table, build_selection_table, build_table

SHIPPED = object()  # `--reference` without a file: the published numbers shipped with dann

__all__ = [
    "ReportError",
    "SelectionTable",
    "Table",
    "build_selection_table",
    "build_table",
    "collect",
    "collect_selections",
    "csv_frame",
    "format_latex",
    "format_markdown",
    "format_text",
    "load_references",
    "main",
    "report",
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dann.report",
        description="Tabulate runs: rows are tasks, columns the configurations that vary, cells mean ± std "
        "over seeds of one metric from each run's summary.json. Runs that did not finish are "
        "flagged, never averaged in.",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="DIR", help="sweep or run directories, searched recursively for run directories"
    )
    parser.add_argument(
        "--metric", choices=list(METRICS), default="target/acc", help="which number (default: target/acc)"
    )
    parser.add_argument(
        "--select",
        default="final",
        metavar="CRITERION",
        help="which evaluation of each run: final (default), source_val (best source "
        "validation accuracy), oracle (best target accuracy: uses target labels), "
        "a label-free criterion (iwv, dev, snd, entropy, info_max, reverse_val), "
        "or any other criterion under `selection` in the summaries; "
        "all: per task, the configuration each criterion picks, its number and its regret (oracle − picked)",
    )
    parser.add_argument(
        "--group-by",
        nargs="+",
        default=[],
        metavar="KEY",
        help="config keys (dotted, e.g. lambda optim.optimizer.lr) that group rows instead "
        "of labeling columns; the other keys that vary label the columns",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        nargs="?",
        const=SHIPPED,
        metavar="FILE",
        help="add published numbers beside the measured columns: those shipped with dann "
        "(experiments/references.yaml) when FILE is left out, else FILE's",
    )
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table as Markdown")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write one CSV row per task × column")
    parser.add_argument("--latex", type=Path, metavar="FILE", help="also write a booktabs LaTeX table")
    return parser.parse_args(argv)


def report(args: argparse.Namespace) -> Table | SelectionTable:
    """Print the table and write the files asked for; every problem with an input is a ReportError."""
    if args.select == "all":
        return report_selection(args)
    references = None
    if args.reference is not None:
        references = load_references(None if args.reference is SHIPPED else args.reference)
    runs = collect(args.paths, args.metric, args.select)
    table = build_table(runs, args.metric, args.select, args.group_by, references)
    outputs = {
        args.markdown: format_markdown,
        args.latex: format_latex,
        args.csv: lambda t: csv_text(csv_frame(t)),
    }
    emit(table, format_text, outputs)
    return table


def report_selection(args: argparse.Namespace) -> SelectionTable:
    """`--select all`: every criterion's pick among the configurations, per task, and its regret."""
    if args.latex or args.reference:
        raise ReportError("--select all writes text, --markdown and --csv (no --latex, no --reference)")
    table = build_selection_table(collect_selections(args.paths, args.metric), args.metric, args.group_by)
    outputs = {
        args.markdown: format_selection_markdown,
        args.csv: lambda t: csv_text(selection_csv_frame(t)),
    }
    emit(table, format_selection_text, outputs)
    return table


def emit(table, format_stdout, outputs: dict) -> None:
    """Print `table` and write each file of `outputs` ({path or None: render}), all rendered before any is written."""
    texts = {path: write(table) for path, write in outputs.items() if path}
    sys.stdout.write(format_stdout(table))
    for path, text in texts.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as e:
            raise ReportError(f"{path}: cannot be written ({e.strerror or e})") from None
        print(f"wrote {path}", file=sys.stderr)


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
