"""Render a Table: plain text (stdout), Markdown, LaTeX (booktabs) and CSV.

Text, Markdown and LaTeX are one grid of texts (`grid`) written with ±, →, λ, †…, which
Markdown and LaTeX escape or translate. The CSV holds the numbers, as fractions.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pandas as pd

from dann.report.table import CELL, FLAGGED, PARTLY, SelectionTable, Table
from dann.selection.pick import CRITERIA

METRICS = {
    "target/acc": "Target accuracy",
    "target/acc_per_class_mean": "Target mean per-class accuracy",
    "source/acc": "Source validation accuracy",
    "pad": "Proxy A-distance of the features (dann.analyze, final checkpoint)",
    "pad_raw": "Proxy A-distance of the raw inputs (dann.analyze)",
    "pad_rbf": "Proxy A-distance of the features, Gaussian-kernel SVM (dann.analyze)",
    "pad_raw_rbf": "Proxy A-distance of the raw inputs, Gaussian-kernel SVM (dann.analyze)",
}
# Metrics shown as they are (three decimals); the others are fractions, shown in %.
PLAIN_METRICS = ("pad", "pad_raw", "pad_rbf", "pad_raw_rbf")
SELECTIONS = {"final": "final evaluation (end of training)"} | {
    name: criterion.description for name, criterion in CRITERIA.items()
}

# Each status that is not a result: its mark in the cells, and what it means.
FLAGS = {
    "failed": ("†", "runs with status failed"),
    "diverged": ("§", "runs stopped by non-finite losses, which are not results"),
    "interrupted": ("¶", "runs stopped by a signal (resumable)"),
    "unfinished": ("‡", "run directories without summary.json (killed, or still running)"),
    "unavailable": (
        "◊",
        "runs in which the selected criterion never had a finite value (non-finite or degenerate: "
        "summary.json's selection_unavailable), so no evaluation was picked",
    ),
}
# A finished run, averaged in, whose selected criterion was non-finite at some evaluations: its mark.
PARTLY_FLAG = (
    "△",
    "partly non-finite",
    "the criterion was non-finite at some evaluations (summary.json's selection_nonfinite_steps) "
    "and its pick is the best of the finite ones",
)
LATEX = {
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "±": r"$\pm$",
    "→": r"$\rightarrow$",
    "λ": r"$\lambda$",
    "—": "--",
    "−": "$-$",
    "*": r"$^{*}$",
    "†": r"\dag{}",
    "‡": r"\ddag{}",
    "§": r"\S{}",
    "¶": r"\P{}",
    "◊": r"$\diamond$",
    "△": r"$\triangle$",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
# A text that starts with one of these is a formula to a spreadsheet that opens the CSV.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def peeks_at_target_labels(table: Table) -> bool:
    """Whether the table's selection used target test labels: then it is an oracle, and says so."""
    return table.select in CRITERIA and CRITERIA[table.select].uses_target_labels


def pct(value: float, decimals: int = 1) -> str:
    return f"{100 * value:.{decimals}f}"


def shown(metric: str, value: float) -> str:
    """A measured number of `metric` as the table prints it."""
    return f"{value:.3f}" if metric in PLAIN_METRICS else pct(value)


def unit(metric: str) -> str:
    return "" if metric in PLAIN_METRICS else ", %"


def pct_exact(value: float) -> str:
    """A published number as printed: one decimal, or two when the source gave them (.5225 → 52.25)."""
    return pct(value, 1) if abs(round(100 * value, 1) - round(100 * value, 2)) < 1e-9 else pct(value, 2)


def caption(table: Table) -> str:
    """What the numbers are: metric, selection (an oracle says so first), and what every run shares."""
    parts = [
        f"{METRICS.get(table.metric, table.metric)} ({table.metric}{unit(table.metric)})",
        SELECTIONS.get(table.select, f"evaluation picked by selection.{table.select}"),
        "mean ± std over seeds (n finished runs)",
    ] + ([", ".join(table.fixed)] if table.fixed else [])
    return ("ORACLE: " if peeks_at_target_labels(table) else "") + "; ".join(parts)


def cell_text(table: Table, cell: pd.Series, kind: str) -> str:
    if kind == "published":
        return "—" if pd.isna(cell["mean"]) else pct_exact(cell["mean"])
    n = int(cell["finished"])  # a row of mixed columns may hold counts as floats
    text = (
        "—"
        if not n
        else (
            shown(table.metric, cell["mean"])
            + (f" ± {shown(table.metric, cell['std'])}" if n > 1 else "")
            + f" ({n})"
            + ("*" if n < table.expected_n else "")
        )
    )
    flags = [f"{FLAGS[status][0]}{int(cell[status])} {status}" for status in FLAGGED if cell[status]]
    return " ".join([text, *flags] + ([partly_text(cell[PARTLY])] if cell[PARTLY] else []))


def partly_text(k: int) -> str:
    return f"{PARTLY_FLAG[0]}{int(k)} {PARTLY_FLAG[1]}"


def average_text(average: pd.Series, kind: str, metric: str) -> str:
    value, tasks, total = average["value"], int(average["tasks"]), int(average["total"])
    if pd.isna(value):
        return "—"
    if pd.notna(average["published"]):  # the source's own average
        return f"{pct_exact(value)} [{int(average['published'])} tasks]"
    if kind == "published":  # ours, of the source's per-task numbers
        return f"{pct(value)} [mean of {tasks}/{total}]"
    return shown(metric, value) + (f" [{tasks}/{total} tasks]" if tasks < total else "")


def shows_average(table: Table, group: str) -> bool:
    return len(table.groups[group]) > 1 or table.averages.loc[group, "published"].notna().any()


def grid(table: Table) -> list[tuple[str, list[str]]]:
    """The table as (kind, texts) rows; kind is header, group, task or average."""
    kinds = list(table.columns["kind"].items())
    rows = [("header", ["task (ORACLE)" if peeks_at_target_labels(table) else "task"] + list(table.columns.index))]
    for group, tasks in table.groups.items():
        if len(table.groups) > 1:
            rows.append(("group", [group] + [""] * len(kinds)))
        rows += [
            ("task", [f"{s}→{t}"] + [cell_text(table, table.cells.loc[(group, s, t, c)], k) for c, k in kinds])
            for s, t in tasks
        ]
        if shows_average(table, group):
            rows.append(
                (
                    "average",
                    ["average"] + [average_text(table.averages.loc[(group, c)], k, table.metric) for c, k in kinds],
                )
            )
    return rows


def legend(table: Table) -> list[str]:
    measured = table.cells[table.cells.kind == "measured"]
    lines = [
        "Cells: mean ± sample standard deviation (n − 1 denominator) over seeds"
        + ("; " if table.metric in PLAIN_METRICS else ", in %; ")
        + "(n) is the number of finished runs. — means no finished run."
    ]
    if ((measured.finished > 0) & (measured.finished < table.expected_n)).any():
        lines.append(f"* fewer seeds than the table's usual {table.expected_n}.")
    lines += [
        f"{FLAGS[s][0]}k {s}: {FLAGS[s][1]}; listed below, not averaged in." for s in FLAGGED if measured[s].any()
    ]
    if measured[PARTLY].any():
        lines.append(f"{PARTLY_FLAG[0]}k {PARTLY_FLAG[1]}: in k runs averaged in, {PARTLY_FLAG[2]}; listed below.")
    if any(shows_average(table, group) for group in table.groups):
        lines.append(
            "average: mean over tasks of the per-task means; [k/m tasks]: only k of the m tasks "
            "have a result in that column."
        )
    published = table.columns[table.columns.kind == "published"]
    if table.references is not None and published.empty:
        lines.append(
            f"No published number in {display(table.references['path'])} matches these datasets, "
            "tasks, methods and metric."
        )
    elif not published.empty:
        lines.append(
            f"published: numbers from {display(table.references['path'])}, not measured here; "
            "[k tasks]: the source's own average over k tasks; [mean of k/m]: our mean of its "
            "numbers for k of this table's m tasks."
        )
        lines += [f"[{key}] {table.references['citations'][key]}" for key in published.cite.unique()]
    return lines


def notes(table: Table) -> list[tuple[str, list[str]]]:
    """The legend, then the lists under the table, as (heading, lines) sections."""
    sections = [("Legend", legend(table))]
    runs = table.runs.to_dict("records")
    for status in FLAGGED:
        listed = [f"{where(r)}: {r['error']}" for r in runs if r["status"] == status and not r["superseded"]]
        sections.append((f"{status.capitalize()} runs ({len(listed)})", listed))
    partly = [
        f"{where(r)}: selection.{table.select}: non-finite at steps {r['nonfinite']}"
        for r in runs
        if r["status"] == "finished" and pd.notna(r["nonfinite"])
    ]
    sections.append((f"Partly non-finite runs, averaged in ({len(partly)})", partly))
    missing, check = [], []
    position = {cell: i for i, cell in enumerate(table.cells.index)}
    for cell, runs_of_cell in sorted(table.runs.groupby(CELL), key=lambda kv: position[kv[0]]):
        name = f"{cell[0]} {cell[1]}→{cell[2]} {runs_of_cell.setting.iloc[0]}"
        absent = [str(seed) for seed in table.seeds if seed not in set(runs_of_cell.seed)]
        if absent:
            missing.append(f"{name}: seed{'s' * (len(absent) > 1)} {', '.join(absent)} never run")
        twice = runs_of_cell[runs_of_cell.status == "finished"].seed.value_counts()
        if (twice > 1).any():
            check.append(
                f"{name}: seed {', '.join(map(str, twice[twice > 1].index))} finished more than once; "
                "all are averaged in"
            )
    check += nested(table.runs if table.invalid is None else pd.concat([table.runs, table.invalid]))
    sections += [(f"Missing seeds (the table's seeds: {', '.join(map(str, table.seeds))})", missing), ("Check", check)]
    superseded = [f"{where(r)}: {r['error']}" for r in runs if r["superseded"]]
    sections.append(
        (
            f"Superseded ({len(superseded)}): did not finish, but the same seed of the same "
            "configuration finished in another directory, which is used",
            superseded,
        )
    )
    skipped = [f"{where(r)}: {r['error']}" for r in table.skipped.to_dict("records")]
    sections.append((f"Skipped by dann.run as invalid configurations, not shown ({len(skipped)})", skipped))
    sections.append(left_out(table.invalid))
    return [(heading, items) for heading, items in sections if items]  # only the lists with entries


def left_out(invalid: pd.DataFrame | None) -> tuple[str, list[str]]:
    """The run directories that are in no cell because their files cannot be read or are impossible."""
    items = [] if invalid is None else [str(error) for error in invalid.drop_duplicates("path").error]
    return (f"Left out: run directories that could not be read or hold impossible values ({len(items)})", items)


def nested(runs: pd.DataFrame) -> list[str]:
    """A run directory inside another (a single run launched into a sweep's directory): both are reported."""
    pairs = runs.drop_duplicates("path").dropna(subset=["inside"])
    return [
        f"{display(r['path'])}: inside the run directory {display(r['inside'])} (a run launched into a "
        "sweep's directory?); both are reported"
        for r in pairs.to_dict("records")
    ]


def where(run: dict) -> str:
    task = f"{run['source']}→{run['target']}"
    return f"{display(run['path'])} ({run['group']} {task}, {run['setting']}, seed {run['seed']})"


def display(path: Path) -> str:
    """`path` relative to the working directory when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def format_text(table: Table) -> str:
    rows = grid(table)
    if len(table.groups) > 1:  # tasks indented under their group
        rows = [
            (kind, ["  " + texts[0]] + texts[1:]) if kind in ("task", "average") else (kind, texts)
            for kind, texts in rows
        ]
    rows = [(kind, [one_line(t) for t in texts]) for kind, texts in rows]
    widths = [max(len(texts[i]) for kind, texts in rows if kind != "group") for i in range(len(rows[0][1]))]
    rule = "  ".join("-" * w for w in widths)
    lines = [one_line(caption(table)), ""]
    for kind, texts in rows:
        lines += [rule] if kind == "average" else []
        lines.append(texts[0] if kind == "group" else "  ".join(t.ljust(w) for t, w in zip(texts, widths)).rstrip())
        lines += [rule] if kind == "header" else []
    for heading, items in notes(table):
        lines += ["", f"{one_line(heading)}:"] + [f"  {one_line(item)}" for item in items]
    return "\n".join(lines) + "\n"


def one_line(text: str) -> str:
    """`text` on one line: line breaks and other control or format characters (in a method's name, a
    bidirectional override) written as escapes (`\\n`), so that no value can break a table's rows."""
    return "".join(
        char
        if unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp")
        else {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\u{ord(char):04x}")
        for char in str(text)
    )


def md(text: str) -> str:
    """One Markdown table cell's text: on one line, with what Markdown would read as markup escaped."""
    return re.sub(r"([\\|*`<>])", r"\\\1", one_line(text))


def format_markdown(table: Table) -> str:
    (_, header), *rows = grid(table)
    decorate = {"group": "**{}**", "average": "*{}*", "task": "{}"}
    frame = pd.DataFrame(
        [[decorate[kind].format(md(texts[0]))] + [md(t) for t in texts[1:]] for kind, texts in rows],
        columns=[md(t) for t in header],
    )
    lines = [
        f"**{md(caption(table))}**",
        "",
        frame.to_markdown(index=False, colalign=["left"] + ["right"] * (len(header) - 1), disable_numparse=True),
    ]
    for heading, items in notes(table):
        lines += ["", f"{md(heading)}:", ""] + [f"- {md(item)}" for item in items]
    return "\n".join(lines) + "\n"


def latex(text: str) -> str:
    return "".join(LATEX.get(char, char) for char in one_line(text))


def csv_text(frame: pd.DataFrame) -> str:
    """The CSV of `frame`, each text cell that a spreadsheet would run as a formula (`=…`, `-cmd…`)
    prefixed with `'`; numbers, and texts that are numbers (`-0.5`), stay as they are."""

    def neutral(value):
        if isinstance(value, str) and value.startswith(FORMULA_STARTS):
            try:
                float(value)
            except ValueError:
                return "'" + value
        return value

    safe = frame.copy()
    for column in safe.columns:
        if pd.api.types.is_object_dtype(safe[column]) or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(neutral)
    safe.columns = [neutral(str(c)) for c in safe.columns]
    return safe.to_csv(index=False)


def format_latex(table: Table) -> str:
    """A booktabs `tabular` in a `table` float, the legend in its caption; the lists under it are comments."""
    (_, header), *rows = grid(table)
    n = len(header)
    body = [
        [rf"\multicolumn{{{n}}}{{l}}{{\textit{{{latex(texts[0])}}}}}"] + [""] * (n - 1)
        if kind == "group"
        else [latex(t) for t in texts]
        for kind, texts in rows
    ]
    tex = pd.DataFrame(body, columns=[latex(t) for t in header]).to_latex(
        index=False,
        escape=False,
        column_format="l" + "c" * (n - 1),
        position="t",
        caption=latex(f"{caption(table)}. " + " ".join(legend(table))),
    )
    lines = ["% Generated by python -m dann.report; needs \\usepackage{booktabs}."]
    for line in tex.splitlines():
        if line.startswith("\\multicolumn"):  # a group row spans the table: no cells after it
            line = re.sub(r"(\s*&\s*)+\\\\$", r" \\\\", line)
        lines += ["\\midrule"] if line.startswith("average &") else []
        lines.append(line)
    for heading, items in notes(table)[1:]:  # a line break in an item would end the comment: one line each
        lines += [f"% {one_line(heading)}:"] + [f"%   {one_line(item)}" for item in items]
    return "\n".join(lines) + "\n"


COUNTS = {"finished": "n", **{status: f"n_{status}" for status in (*FLAGGED, PARTLY)}}
CSV_FIELDS = (
    "dataset",
    "protocol",
    "row",
    "task",
    "source",
    "target",
    "column",
    "kind",
    "method",
    "lambda",
    "backbone",
    "cite",
    "metric",
    "select",
    "mean",
    "std",
    *COUNTS.values(),
    "n_expected",
    "seeds",
    "tasks_averaged",
    "tasks_total",
)


def csv_frame(table: Table) -> pd.DataFrame:
    """One row per task × column, then per average × column, group by group; numbers are fractions."""
    tasks = table.cells.reset_index()
    tasks = tasks.assign(
        row="task",
        task=tasks.source + "→" + tasks.target,
        n_expected=pd.Series(table.expected_n, tasks.index).where(tasks.kind == "measured"),
    )
    keys = table.cells.groupby(["group", "column"])[["kind", *table.keys]].first()
    averages = table.averages.join(keys).reset_index()
    averages = averages.assign(
        row="average",
        task="average",
        mean=averages.value,
        tasks_averaged=averages.published.fillna(averages.tasks),
        tasks_total=averages.published.fillna(averages.total),
    )
    frame = pd.concat(
        [
            part
            for group in table.groups
            for part in (
                tasks[tasks.group == group],
                averages[averages.group == group] if shows_average(table, group) else None,
            )
        ]
    )
    datasets = table.runs.reindex(columns=["group", "dataset.name", "dataset.protocol"]).groupby("group").first()
    published = table.columns.reindex(columns=["backbone", "cite", "method.name"])
    frame = frame.join(datasets, on="group").join(published[["backbone", "cite"]], on="column")
    frame["method.name"] = frame["method.name"].fillna(frame.column.map(published["method.name"]))
    frame = frame.rename(
        columns={"dataset.name": "dataset", "dataset.protocol": "protocol", "method.name": "method", **COUNTS}
    ).assign(metric=table.metric, select=table.select)
    extra = [k for k in table.keys if k not in ("method.name", "lambda")]  # the other keys of columns and groups
    return frame.reindex(columns=[*CSV_FIELDS, *extra]).astype(
        {"n_expected": "Int64", "tasks_averaged": "Int64", "tasks_total": "Int64"}
    )


# --- `--select all`: every criterion's pick and regret -----------------------------------------


def selection_caption(table: SelectionTable) -> str:
    parts = [
        "Model selection: per task, each criterion picks the configuration whose runs score best on it "
        "(mean over seeds of the criterion at the evaluation it picks in each run)",
        f"{METRICS.get(table.metric, table.metric)} of that configuration ({table.metric}, %, mean ± std "
        "over seeds (n))",
        "regret = the oracle's number − the pick's (percentage points)",
    ] + ([", ".join(table.fixed)] if table.fixed else [])
    return "; ".join(parts)


def selection_grid(table: SelectionTable) -> list[list[str]]:
    """Header, then one row per task × criterion; the task is named on its first row."""
    rows = [["task", "criterion", "target labels", "picks", "criterion value", table.metric, "regret"]]
    previous = None
    for (group, source, target, criterion), pick in table.picks.iterrows():
        name = (
            f"{source}→{target}"
            if table.picks.index.get_level_values("group").nunique() == 1
            else (f"{group} {source}→{target}")
        )
        n = int(pick["n"])
        value = pct(pick["mean"]) + (f" ± {pct(pick['std'])}" if n > 1 else "") + f" ({n})"
        rows.append(
            [
                name if name != previous else "",
                criterion,
                "ORACLE" if CRITERIA[criterion].uses_target_labels else "no",
                pick["column"],
                f"{pick['score']:.4f}",
                value
                + ("*" if n < table.expected_n else "")
                + (f" ◊{pick['unavailable']} unavailable" if pick["unavailable"] else "")
                + (f" {partly_text(pick[PARTLY])}" if pick[PARTLY] else ""),
                f"{100 * pick['regret']:.1f}",
            ]
        )
        previous = name
    return rows


def selection_notes(table: SelectionTable) -> list[tuple[str, list[str]]]:
    lines = [
        "criterion value: the criterion's metric at the picked configuration (mean over seeds): "
        + ", ".join(f"{name} {c.metric}" for name, c in CRITERIA.items() if name in table.picks.index.unique(3))
        + "; all higher-is-better.",
        "ORACLE: uses target test labels, an upper bound and not a result; regret 0 by definition.",
    ]
    if (table.picks.n < table.expected_n).any():
        lines.append(f"* fewer seeds than the usual {table.expected_n}.")
    if table.picks.unavailable.any():
        lines.append(
            "◊k unavailable: in k runs of the picked configuration the criterion never had a finite value "
            "(non-finite or degenerate); the number is of the other runs, listed below."
        )
    if table.picks[PARTLY].any():
        lines.append(
            f"{PARTLY_FLAG[0]}k {PARTLY_FLAG[1]}: in k runs of the picked configuration {PARTLY_FLAG[2]}; "
            "they are averaged in, and listed below."
        )
    runs = table.runs.drop_duplicates("path").to_dict("records")
    listed = [f"{display(r['path'])}: {r['status']}: {r['error']}" for r in runs if r["status"] != "finished"]
    finished = table.runs[(table.runs.status == "finished") & table.runs.criterion.notna()]
    without = [
        f"{name}: {count} finished run{'s' * (count > 1)} without selection.{name} (not candidates)"
        for name in CRITERIA
        if (count := finished.path.nunique() - finished[finished.criterion == name].path.nunique()) > 0
    ] + nested(table.runs if table.invalid is None else pd.concat([table.runs, table.invalid]))
    sections = [("Legend", lines), (f"Runs that did not finish, not candidates ({len(listed)})", listed)]
    for field, how, why in (
        ("unavailable", "non-finite or degenerate in", "not candidates for it"),
        ("nonfinite", "non-finite at some evaluations in", "picked among the others"),
    ):
        sections += [
            (
                f"{name}: {how} {len(of_criterion)} run{'s' * (len(of_criterion) > 1)}, {why}",
                [
                    f"{where_run(r)}: " + (r[field] if field == "unavailable" else f"non-finite at steps {r[field]}")
                    for r in of_criterion.to_dict("records")
                ],
            )
            for name, of_criterion in finished[finished[field].notna()].groupby("criterion", sort=False)
        ]
    sections += [("Check", without), left_out(table.invalid)]
    return [(heading, items) for heading, items in sections if items]


def where_run(run: dict) -> str:
    task = f"{run['source']}→{run['target']}"
    return f"{display(run['path'])} ({run['group']} {task}, {run['column']}, seed {run['seed']})"


def format_selection_text(table: SelectionTable) -> str:
    rows = [[one_line(t) for t in row] for row in selection_grid(table)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [one_line(selection_caption(table)), ""]
    for i, row in enumerate(rows):
        lines.append("  ".join(t.ljust(w) for t, w in zip(row, widths)).rstrip())
        lines += ["  ".join("-" * w for w in widths)] if i == 0 else []
    for heading, items in selection_notes(table):
        lines += ["", f"{one_line(heading)}:"] + [f"  {one_line(item)}" for item in items]
    return "\n".join(lines) + "\n"


def format_selection_markdown(table: SelectionTable) -> str:
    header, *rows = selection_grid(table)
    frame = pd.DataFrame([[md(t) for t in row] for row in rows], columns=[md(t) for t in header])
    lines = [
        f"**{md(selection_caption(table))}**",
        "",
        frame.to_markdown(index=False, colalign=["left"] * 4 + ["right"] * 3, disable_numparse=True),
    ]
    for heading, items in selection_notes(table):
        lines += ["", f"{md(heading)}:", ""] + [f"- {md(item)}" for item in items]
    return "\n".join(lines) + "\n"


def selection_csv_frame(table: SelectionTable) -> pd.DataFrame:
    """One row per task × criterion; numbers are fractions (the criterion's value in its own units)."""
    frame = table.picks.reset_index().rename(
        columns={"column": "picks", "score": "criterion_value", "unavailable": "n_unavailable", PARTLY: COUNTS[PARTLY]}
    )
    return frame.assign(metric=table.metric)[
        ["group", "source", "target", "criterion", "picks", "criterion_value", "metric", "mean", "std", "n", "seeds"]
        + ["n_unavailable", COUNTS[PARTLY], "oracle", "regret"]
    ]
