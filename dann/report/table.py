"""Table: runs → cells (row group × task × column), each the runs of exactly one identity.

Row groups are datasets (with the protocol when a dataset was run under several, and any
`--group-by` keys); the other identity keys that vary label the columns, except a key that
the keys before it determine (`method.lambda_schedule.gamma` given `method.name`): it would only repeat them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dann.report.collect import ABSENT, RUN_FIELDS, ReportError
from dann.selection.pick import CRITERIA

# Lower bound, the method, upper bound (the paper's order); other methods follow alphabetically.
METHOD_ORDER = ("source_only", "dann", "target_only")
PRIORITY = ("method.name", "lambda")  # label columns first; the other keys follow alphabetically
# Not results: counted and listed, never averaged. `unavailable`: the selected criterion had no finite value.
FLAGGED = ("failed", "diverged", "interrupted", "unfinished", "unavailable")
# A finished run, averaged in, whose selected criterion was non-finite at some evaluations: counted per cell.
PARTLY = "partly_nonfinite"
CELL = ["group", "source", "target", "column"]


@dataclass
class Table:
    metric: str
    select: str
    runs: pd.DataFrame  # the runs in the table, with their group, column, setting and whether superseded
    skipped: pd.DataFrame  # invalid grid combinations that dann.run never trained
    groups: dict[str, list[tuple[str, str]]]  # row group → its tasks (source, target), in order
    columns: pd.DataFrame  # index: column labels in order; kind (measured | published), backbone, cite
    # index: CELL; kind, mean, std, `finished` (n), a count per FLAGGED status, PARTLY (of the finished), seeds, keys
    cells: pd.DataFrame
    averages: pd.DataFrame  # index: (group, column); value, tasks (averaged), total, published (source's tasks)
    keys: list[str]  # the keys that tell cells apart, for the CSV: method.name, lambda, column and group keys
    expected_n: int  # the most common number of finished seeds per cell
    seeds: list
    fixed: list[str]  # what every run shares, for the caption: `dataset office31`, `method dann`, `λ=0.1`
    references: dict | None = None
    invalid: pd.DataFrame | None = None  # run directories left out: unreadable, or numbers no run writes (error: why)


def build_table(runs: pd.DataFrame, metric: str, select: str, group_by=(), references: dict | None = None) -> Table:
    invalid, runs = split_invalid(runs)
    skipped, runs = runs[runs.status == "skipped"].copy(), runs[runs.status != "skipped"].copy()
    if runs.empty:
        raise ReportError(
            "no runs to report: every run directory found was skipped by dann.run (an invalid configuration)"
        )
    group_keys, column_keys = choose_keys(runs, list(group_by))
    label_keys = column_keys or ["lambda"]  # a single column is named by its λ, as it always was
    setting_keys = list(dict.fromkeys([*PRIORITY, *column_keys]))
    for frame in (runs, skipped):
        records = frame.to_dict("records")
        frame["group"] = [group_label(r, group_keys) for r in records]
        frame["column"] = [setting(r, label_keys) for r in records]
        frame["setting"] = [setting(r, setting_keys) for r in records]
    check_no_clash(runs, "cell")
    finished = runs[runs.status == "finished"]
    # A run that did not finish, but whose seed finished in another directory of its cell: that one counts.
    runs["superseded"] = (runs.status != "finished") & pd.MultiIndex.from_frame(runs[CELL + ["seed"]]).isin(
        pd.MultiIndex.from_frame(finished[CELL + ["seed"]])
    )

    groups = {g: sorted(set(zip(of_group.source, of_group.target))) for g, of_group in runs.groupby("group")}
    groups = {g: groups[g] for g in ordered(runs, "group", group_keys)}
    columns = pd.DataFrame({"kind": "measured"}, index=pd.Index(ordered(runs, "column", label_keys), name="column"))
    published, published_averages = pd.DataFrame(columns=CELL), pd.DataFrame(columns=["value", "published"])
    if references is not None:
        published, published_averages, published_columns = match_references(references, runs, groups, metric)
        columns = pd.concat([columns, published_columns])

    keys = [k for k in dict.fromkeys(setting_keys + group_keys) if k not in ("dataset.name", "dataset.protocol")]
    cells = aggregate(runs[~runs.superseded], groups, columns, published, keys)
    averages = cells.groupby(["group", "column"], sort=False)["mean"].agg(value="mean", tasks="count")
    averages["total"] = [len(groups[g]) for g in averages.index.get_level_values("group")]
    averages["published"] = pd.Series(pd.NA, averages.index, dtype="Int64")
    # A source's own average over its tasks replaces ours.
    averages.loc[published_averages.index, ["value", "published"]] = published_averages[["value", "published"]]
    lambdas = runs["lambda"].unique()
    # λ is fixed for the caption only when it does not name the column.
    fixed = shared(runs, list(groups)) + ([f"λ={lambdas[0]}"] if len(lambdas) == 1 and label_keys != ["lambda"] else [])
    return Table(
        metric,
        select,
        runs,
        skipped,
        groups,
        columns,
        cells,
        averages,
        keys,
        expected_n=most_common(cells.loc[cells.finished > 0, "finished"]),
        seeds=sorted(runs.seed.unique(), key=lambda s: order("seed", str(s))),
        fixed=fixed,
        references=references,
        invalid=invalid,
    )


def check_no_clash(runs: pd.DataFrame, where: str) -> None:
    """A guard, not a grouping rule: the keys chosen tell identities apart, unless two values print alike;
    then two configurations would share one `where` (cell, column) of the table."""
    clash = runs.groupby(CELL)["identity"].nunique()
    if (clash > 1).any():
        raise ReportError(
            f"runs of different configurations would share the {where} {' '.join(clash.idxmax())}: "
            "two config values print alike; report them separately"
        )


def shared(runs: pd.DataFrame, groups: list[str]) -> list[str]:
    """What every run shares, for the caption: `dataset office31` (one row group), `method dann`."""
    methods = runs["method.name"].unique()
    return ([f"dataset {groups[0]}"] if len(groups) == 1 else []) + (
        [f"method {methods[0]}"] if len(methods) == 1 else []
    )


def most_common(counts: pd.Series) -> int:
    """The most common number of finished seeds (the larger of equally common ones); 0 when none."""
    n = counts.value_counts()
    return max(n.index, key=lambda k: (n[k], k)) if len(n) else 0


def split_invalid(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the invalid runs, the others); when every run is invalid, one error naming them all."""
    invalid, runs = runs[runs.status == "invalid"].copy(), runs[runs.status != "invalid"].copy()
    if runs.empty:
        named = "; ".join(invalid.error.iloc[:5]) + (f"; and {len(invalid) - 5} more" if len(invalid) > 5 else "")
        raise ReportError(f"no runs to report: every run directory found is invalid: {named}")
    return invalid, runs


def choose_keys(runs: pd.DataFrame, group_by: list[str]) -> tuple[list[str], list[str]]:
    """The keys of row groups, and those that label columns: each that varies and is not determined."""
    keys = [c for c in runs.columns if c not in RUN_FIELDS]
    varying = [k for k in keys if runs[k].nunique() > 1]
    for key in group_by:
        if key not in keys:
            raise ReportError(
                f"--group-by {key}: not a config key that identifies these runs "
                f"(keys that vary: {', '.join(varying) or 'none'})"
            )
    group_keys = ["dataset.name"]
    if "dataset.protocol" in keys and (runs.groupby("dataset.name")["dataset.protocol"].nunique() > 1).any():
        group_keys.append("dataset.protocol")
    group_keys = list(dict.fromkeys(group_keys + group_by))
    column_keys: list[str] = []
    rank = {key: i for i, key in enumerate(PRIORITY)}  # PRIORITY first, then alphabetical
    for key in sorted(set(varying) - set(group_keys), key=lambda k: (rank.get(k, len(rank)), k)):
        # A runtime that varies is always shown, determined or not: it is why runs of one config are apart.
        if key.startswith("runtime.") or runs.groupby(group_keys + column_keys)[key].nunique().max() > 1:
            column_keys.append(key)
    return group_keys, column_keys


def aggregate(
    counted: pd.DataFrame, groups: dict, columns: pd.DataFrame, published: pd.DataFrame, keys: list[str]
) -> pd.DataFrame:
    """Every group × task × column: mean, std and count of finished runs (and of those PARTLY non-finite),
    counts of the others."""
    finished = counted[counted.status == "finished"].groupby(CELL)
    counts = ["finished", *FLAGGED, PARTLY]
    cells = pd.crosstab([counted[k] for k in CELL], counted.status).reindex(columns=counts[:-1], fill_value=0)
    cells = cells.join(
        [
            finished["value"].agg(["mean", "std"]),
            finished["nonfinite"].count().rename(PARTLY),
            counted.groupby(CELL)[keys].first(),
            finished["seed"].agg(lambda seeds: " ".join(map(str, seeds))).rename("seeds"),
        ]
    )
    cells = pd.concat([cells, published.set_index(CELL)]) if len(published) else cells
    cells = cells.reindex(
        pd.MultiIndex.from_tuples(
            [(g, s, t, c) for g, tasks in groups.items() for s, t in tasks for c in columns.index], names=CELL
        )
    )
    cells = cells.join(columns["kind"], on="column")
    measured = cells.kind == "measured"
    cells.loc[measured, counts] = cells.loc[measured, counts].fillna(0)  # no (finished) runs: counts are 0, not NA
    cells[counts] = cells[counts].astype("Int64")
    # A cell without runs still belongs to its group and column: their keys are its keys.
    cells[keys] = cells.groupby(["group", "column"])[keys].transform("first")
    by_column = cells.groupby("column")[keys]
    cells[keys] = cells[keys].fillna(by_column.transform("first").where(by_column.transform("nunique") == 1))
    return cells


def setting(run: dict, keys: list[str]) -> str:
    """`dann λ=0.1 optim.optimizer.lr=0.003`: the method by name, λ as λ, other keys as key=value.

    A key the run's config does not have is left out (source_only has no method.lambda_schedule.gamma): labels
    of different settings still differ, by a key that one of them has.
    """
    return (
        " ".join(
            run[k] if k == "method.name" else f"λ={run[k]}" if k == "lambda" else f"{k}={run[k]}"
            for k in keys
            if run[k] != ABSENT
        )
        or ABSENT
    )


def group_label(run: dict, keys: list[str]) -> str:
    """`office31`, `office31 (transductive)` when protocols are mixed, then any --group-by keys."""
    label = run["dataset.name"] + (f" ({run['dataset.protocol']})" if "dataset.protocol" in keys else "")
    rest = [k for k in keys if k not in ("dataset.name", "dataset.protocol")]
    return f"{label}, {setting(run, rest)}" if rest else label


def order(key: str, text: str) -> tuple:
    """Sort key of one value: methods in METHOD_ORDER, numbers by value, then text, then ABSENT."""
    if key == "method.name":
        return (0, METHOD_ORDER.index(text) if text in METHOD_ORDER else len(METHOD_ORDER), text)
    try:
        return (0, float(text), "")
    except ValueError:
        return (2 if text == ABSENT else 1, 0, text)


def ordered(runs: pd.DataFrame, label: str, keys: list[str]) -> list[str]:
    """The distinct values of runs[label], ordered by the values of `keys` they stand for."""
    records = runs.drop_duplicates(label).to_dict("records")
    return [r[label] for r in sorted(records, key=lambda r: [order(k, r[k]) for k in keys])]


def match_references(references: dict, runs: pd.DataFrame, groups: dict, metric: str):
    """Published numbers for each group's dataset, tasks and measured methods, at `metric`: per-task
    cells (CELL, mean), averages (index group, column: value, published) and their columns, in order."""
    cells, averages, columns = [], [], {}
    for group, of_group in runs.groupby("group"):
        dataset, methods = of_group["dataset.name"].iloc[0], set(of_group["method.name"])
        for name in ("results", "averages"):
            for entry in references[name]:
                task = (str(entry.get("source")), str(entry.get("target")))
                if (
                    str(entry["dataset"]) != dataset
                    or entry["method"] not in methods
                    or entry.get("metric", "target/acc") != metric
                    or (name == "results" and task not in groups[group])
                ):
                    continue
                column = f"published: {entry['method']}, {entry['backbone']} [{entry['cite']}]"
                columns[column] = {
                    "kind": "published",
                    "method.name": entry["method"],
                    "backbone": str(entry["backbone"]),
                    "cite": str(entry["cite"]),
                }
                if name == "results":
                    cells.append(
                        {
                            "group": group,
                            "source": task[0],
                            "target": task[1],
                            "column": column,
                            "mean": float(entry["value"]),
                        }
                    )
                else:
                    averages.append(
                        {
                            "group": group,
                            "column": column,
                            "value": float(entry["value"]),
                            "published": int(entry["tasks"]),
                        }
                    )
    labels = sorted(
        columns,
        key=lambda c: (order("method.name", columns[c]["method.name"]), columns[c]["cite"], columns[c]["backbone"]),
    )
    return (
        pd.DataFrame(cells, columns=CELL + ["mean"]),
        pd.DataFrame(averages, columns=["group", "column", "value", "published"]).set_index(["group", "column"]),
        pd.DataFrame([columns[c] for c in labels], index=pd.Index(labels, name="column")),
    )


@dataclass
class SelectionTable:
    """`--select all`: per task and criterion, the configuration it picks, that configuration's number, its regret."""

    metric: str
    # index: group, source, target, criterion (CRITERIA's order); column (the configuration picked), score
    # (its mean criterion value over seeds), mean, std, n (finished seeds), seeds, oracle, regret = oracle − mean,
    # unavailable (runs of that configuration in which the criterion had no finite value: not averaged in),
    # PARTLY (runs averaged in whose criterion was non-finite at some evaluations: picked among the others)
    picks: pd.DataFrame
    runs: pd.DataFrame  # every run × criterion row, with its group and column
    expected_n: int  # the most common number of finished seeds per configuration
    fixed: list[str]  # what every run shares, for the caption
    invalid: pd.DataFrame | None = None  # run directories left out, as in Table


def build_selection_table(runs: pd.DataFrame, metric: str, group_by=()) -> SelectionTable:
    """Choose among configurations (λ, …) as the DANN paper chooses λ: per task and criterion, the
    configuration whose runs score best on the criterion (mean over its seeds of the criterion's value
    at the evaluation it picks in each run), reported with its own `metric` (mean ± std over the same
    runs). The oracle makes the same choice by target accuracy; regret = oracle's number − the pick's.

    Every number is one configuration's: a pick is a whole column, never a mix of seeds of several.
    """
    invalid, runs = split_invalid(runs)
    runs = runs[runs.status != "skipped"].copy()
    if runs.empty:
        raise ReportError("no runs to report: every run directory found was skipped by dann.run")
    per_run = runs.drop_duplicates("path").drop(columns=["criterion", "score", "unavailable"])  # one row per run
    group_keys, column_keys = choose_keys(per_run, list(group_by))
    label_keys = column_keys or ["lambda"]
    records = runs.to_dict("records")
    runs["group"] = [group_label(r, group_keys) for r in records]
    runs["column"] = [setting(r, label_keys) for r in records]
    check_no_clash(runs, "column")
    finished = runs[(runs.status == "finished") & runs.criterion.notna() & runs.unavailable.isna()]
    if finished.empty:
        raise ReportError("--select all: no finished run to choose from")
    configs = configurations(finished)
    # Ties go to the first column in the table's order (smaller λ first).
    rank = {c: i for i, c in enumerate(ordered(runs, "column", label_keys))}
    configs = configs.sort_values("column", key=lambda c: c.map(rank), kind="stable")
    picks = choose(configs, runs, finished, ordered(runs, "group", group_keys))
    return SelectionTable(
        metric,
        picks,
        runs,
        expected_n=most_common(configs.n),
        fixed=shared(runs, list(runs.group.unique())),
        invalid=invalid,
    )


def configurations(finished: pd.DataFrame) -> pd.DataFrame:
    """One row per task, criterion and configuration (column): the mean criterion value over its finished
    runs (score), the mean and std of the metric, n (finished seeds), seeds."""
    return (
        finished.groupby(["group", "source", "target", "criterion", "column"])
        .agg(
            score=("score", "mean"),
            mean=("value", "mean"),
            std=("value", "std"),
            n=("value", "size"),
            seeds=("seed", lambda seeds: " ".join(map(str, sorted(seeds)))),
        )
        .reset_index()
    )


def choose(configs: pd.DataFrame, runs: pd.DataFrame, finished: pd.DataFrame, group_order: list[str]) -> pd.DataFrame:
    """Per task and criterion, the configuration of `configs` (in the table's column order) that scores
    best, with the oracle's number, the regret, and its flagged runs; `SelectionTable.picks`."""
    task = ["group", "source", "target"]
    picks = configs.loc[configs.groupby([*task, "criterion"], sort=False)["score"].idxmax()]
    oracle = picks[picks.criterion == "oracle"].set_index(task)["mean"].rename("oracle")
    picks = picks.join(oracle, on=task)
    picks["regret"] = picks["oracle"] - picks["mean"]
    config = [*task, "criterion", "column"]
    flagged_runs = {"unavailable": runs[runs.unavailable.notna()], PARTLY: finished[finished.nonfinite.notna()]}
    for name, flagged in flagged_runs.items():
        picks = picks.join(flagged.groupby(config).size().rename(name), on=config)
        picks[name] = picks[name].fillna(0).astype(int)
    criterion_rank = {c: i for i, c in enumerate(CRITERIA)}
    group_rank = {g: i for i, g in enumerate(group_order)}
    return picks.sort_values(
        [*task, "criterion"],
        key=lambda c: c.map(criterion_rank) if c.name == "criterion" else c.map(group_rank) if c.name == "group" else c,
    ).set_index([*task, "criterion"])
