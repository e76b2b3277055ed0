"""Collect: run directories → one DataFrame row per run: where, status, seed, value, identity.

A run's identity is its resolved config less result-neutral keys (dann.runs.identity) and `seed`,
one column per dotted key. The task (canonical source→target) stands in for dataset.source and
dataset.target, which may be aliases (`M`). Runs of one identity are seeds of one experiment.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dann.config.spec import Spec, boolean, integer, is_real_number, number, one_of, spec_of_type, text
from dann.runs.identity import flatten, identity
from dann.runs.readback import NotReadBack
from dann.runs.readback import read_bounded as read_back
from dann.selection.pick import CRITERIA
from dann.training.settings import LABELS, RUN_SETTINGS

# The columns every run has; every other column of the runs DataFrame is an identity key. `inside`: the
# run directory that holds this one (a run launched into a sweep's directory), else None.
# `nonfinite`: the steps ("1000, 3000") at which the selected criterion was non-finite in a finished run whose pick is
# the best of its other evaluations (summary.json's selection_nonfinite_steps), else None.
RUN_FIELDS = ("path", "status", "source", "target", "seed", "value", "error", "identity", "inside", "nonfinite")
# `invalid`: a run directory whose files cannot be read, or hold what no run writes (an accuracy of 1.5,
# a seed that is a list): left out of the table and named under it, with why.
# `unavailable`: a finished run in which the criterion selected by (`--select iwv`) had no finite value
# (summary.json's selection_unavailable): no evaluation of it was picked, and it is flagged, never averaged.
STATUSES = ("finished", "failed", "diverged", "interrupted", "unfinished", "skipped", "invalid", "unavailable")
WRITTEN = ("finished", "failed", "diverged", "interrupted", "unfinished", "skipped")  # what a summary may say
ABSENT = "(unset)"  # the value of a key that a run's config lacks (method.lambda_schedule.gamma for source_only)


# Metrics of `dann.analyze` (analysis.json beside summary.json), measured on the final checkpoint:
# metric → its path in analysis.json.
ANALYSIS_METRICS = {
    "pad": ("pad", "features"),
    "pad_raw": ("pad", "raw"),
    "pad_rbf": ("pad", "features_rbf"),
    "pad_raw_rbf": ("pad", "raw_rbf"),
}


# What the report reads back of each run, checked as dann.run checked it (the declarations of
# `dann.training.settings`): a value no run could have had is no result. The domains are names.
READ_BACK: dict[str, Spec] = {
    "seed": spec_of_type(RUN_SETTINGS["seed"]),
    "lambda": spec_of_type(RUN_SETTINGS["lambda"]),
    "dataset.name": spec_of_type(LABELS["name"]),
    "dataset.source": text(noun="a domain name"),
    "dataset.target": text(noun="a domain name"),
    "method.name": spec_of_type(LABELS["name"]),
}
# What summary.json's `runtime` holds (dann.training.precision.Runtime, resolved, and the device): runs that
# ran another computation (bf16 on a GPU, fp32 on a CPU, for one trainer.precision=auto) never share a cell.
RUNTIME: dict[str, Spec] = {
    "precision": one_of("bf16", "fp16", "fp32"),
    "channels_last": boolean(),
    "compile": boolean(),
    "device": text(noun="a device, cpu or cuda:N"),
}
RUNTIME_KEYS = tuple(f"runtime.{key}" for key in RUNTIME)
ACCURACY = number(0, 1, noun="a fraction")  # every */acc* metric
PAD = number(-2, 2, means="d_A = 2(1 − 2ε)")
MAX_NODES = 100_000  # config values after following ${key} references


class ReportError(Exception):
    """A problem with the report's inputs. The message names the file; `main` prints it and exits 2."""


def find_run_dirs(paths: Sequence[str | Path]) -> list[tuple[Path, Path | None]]:
    """Every run directory (holding summary.json or .hydra/config.yaml) at or under `paths`, each with
    the run directory above it, if any: a run launched into a sweep's directory hides none of the sweep's."""
    found: dict[Path, tuple[Path, Path | None]] = {}
    for top in map(Path, paths):
        if not top.exists():
            raise ReportError(f"{top}: no such file or directory")
        if top.is_file() and top.name != "summary.json":
            raise ReportError(f"{top}: not a directory; give sweep or run directories")
        above: dict[Path, Path | None] = {}  # directory → the innermost run directory holding it
        for dirpath, dirnames, _ in os.walk(top.parent if top.is_file() else top):
            here = Path(dirpath)
            inside = above.get(here.parent) if here != top else None
            if (here / "summary.json").is_file() or (here / ".hydra" / "config.yaml").is_file():
                found.setdefault(here.resolve(), (here, inside))
                inside = here
            above[here] = inside
            dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
            if top.is_file():
                dirnames.clear()  # summary.json given: that run only
    if not found:
        raise ReportError(
            f"no run directory (one holding summary.json or .hydra/config.yaml) under {', '.join(map(str, paths))}"
        )
    return sorted(
        found.values(),
        key=lambda p: [(0, int(s), "") if s.isdigit() else (1, 0, s) for s in re.split(r"(\d+)", str(p[0]))],
    )  # job 10 after job 9


def read_runs(paths: Sequence[str | Path]) -> list[tuple[Path, Path | None, dict | None, str | None]]:
    """(run directory, the run directory above it, its summary or None, why it is invalid or None) for each."""
    runs = []
    for run_dir, inside in find_run_dirs(paths):
        summary, problem = None, None
        if (run_dir / "summary.json").is_file():
            try:
                summary = read_summary(run_dir / "summary.json")
            except ReportError as e:
                problem = str(e)
        runs.append((run_dir, inside, summary, problem))
    return runs


def invalid_row(run_dir: Path, inside: Path | None, problem: str) -> dict[str, Any]:
    return dict.fromkeys(RUN_FIELDS) | {"path": run_dir, "inside": inside, "status": "invalid", "error": problem}


def checked_row(run_dir: Path, inside: Path | None, summary: dict | None, metric: str, select: str) -> dict:
    """run_row, or the run named as invalid with why: one bad run never takes down the whole report."""
    try:
        return run_row(run_dir, summary, metric, select) | {"inside": inside}
    except ReportError as e:
        return invalid_row(run_dir, inside, str(e))


def recorded_criteria(summaries) -> set[str]:
    """The criteria that finished runs recorded, including those recorded as unavailable (non-finite)."""
    return {
        c
        for s in summaries
        if s and s["status"] == "finished"
        for c in [*(s.get("selection") or {}), *(s.get("selection_unavailable") or {})]
    }


def collect(paths: Sequence[str | Path], metric: str, select: str) -> pd.DataFrame:
    """One row per run directory under `paths`: RUN_FIELDS, then one column per identity key."""
    if metric in ANALYSIS_METRICS and select != "final":
        raise ReportError(f"--metric {metric} is measured by dann.analyze on the final checkpoint; use --select final")
    found = read_runs(paths)
    # Any criterion that finished runs recorded can be selected: criteria are added over time.
    criteria = {"final"} | recorded_criteria(s for _, _, s, _ in found)
    if select not in criteria:
        raise ReportError(
            f"--select {select}: no finished run has selection.{select} "
            f"(these runs have: {', '.join(sorted(criteria))})"
        )
    rows = [
        invalid_row(d, inside, problem) if problem else checked_row(d, inside, s, metric, select)
        for d, inside, s, problem in found
    ]
    return frame_of(rows)


def frame_of(rows: list[dict], extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """The runs DataFrame: a run's runtime fills in for its runs of unknown runtime, keys absent are ABSENT."""
    runs = pd.DataFrame(rows)
    runs = runs.reindex(columns=[*RUN_FIELDS, *extra, *[c for c in runs.columns if c not in (*RUN_FIELDS, *extra)]])
    attribute_runtime(runs)
    keys = [c for c in runs.columns if c not in (*RUN_FIELDS, *extra)]
    runs[keys] = runs[keys].astype(object).fillna(ABSENT)
    return runs


def attribute_runtime(runs: pd.DataFrame) -> None:
    """Put the runtime into each run's identity. A run that recorded none (killed before summary.json, failed
    before its device was set up) is given its configuration's on its task, when the runs that recorded one agree."""
    present = [k for k in RUNTIME_KEYS if k in runs.columns]
    if not present:
        return
    known = runs[runs[present[0]].notna()]
    same = ["identity", "source", "target"]  # the same configuration on the same task
    of_config = {i: group[present].drop_duplicates() for i, group in known.groupby(same)}
    for i in runs.index[runs[present[0]].isna() & runs.identity.notna()]:
        candidates = of_config.get(tuple(runs.loc[i, same]))
        if candidates is not None and len(candidates) == 1:
            runs.loc[i, present] = candidates.iloc[0].to_numpy()
    valid = runs.identity.notna()
    runs.loc[valid, "identity"] = [
        json.dumps(json.loads(exact) | {k: v if isinstance(v, str) else None for k, v in zip(present, values)})
        for exact, values in zip(runs.identity[valid], runs.loc[valid, present].to_numpy().tolist())
    ]


def collect_selections(paths: Sequence[str | Path], metric: str) -> pd.DataFrame:
    """One row per finished run × criterion it recorded, for `--select all`: RUN_FIELDS (`value`: `metric`
    of the evaluation the criterion picks), `criterion`, `score` (the criterion's own metric there),
    `unavailable` (why the run has no value of the criterion: selection_unavailable), and the identity keys.
    A run that did not finish is one row with criterion None: listed, never a candidate.
    A finished run without selection.<criterion> (reverse validation turned off, an older run) is no
    candidate for that criterion; one whose criterion was non-finite is no candidate either, and is counted."""
    if metric in ANALYSIS_METRICS:
        raise ReportError(
            f"--select all compares evaluations; --metric {metric} is measured on the final checkpoint only"
        )
    found = read_runs(paths)
    if "oracle" not in recorded_criteria(s for _, _, s, _ in found):
        raise ReportError("--select all: no finished run has selection.oracle, which regrets are measured against")
    rows = []
    for run_dir, inside, summary, problem in found:
        none = {"criterion": None, "score": None, "unavailable": None}
        if problem:
            rows.append(invalid_row(run_dir, inside, problem) | none)
            continue
        finished_run = (summary or {}).get("status") == "finished"
        has = set((summary or {}).get("selection") or {}) if finished_run else set()
        unavailable = (summary or {}).get("selection_unavailable") or {} if finished_run else {}
        if not has and not unavailable:
            rows.append(checked_row(run_dir, inside, summary, metric, "final") | none)
            continue
        try:
            of_run = []
            for criterion in (c for c in CRITERIA if c in has or c in unavailable):  # CRITERIA's order
                if criterion in unavailable:  # finished, but no evaluation to pick by this criterion
                    row = run_row(run_dir, summary, metric, "final") | {"inside": inside, "value": None}
                    of_run.append(row | none | {"criterion": criterion, "unavailable": unavailable[criterion]})
                    continue
                row = run_row(run_dir, summary, metric, criterion) | {"inside": inside}
                score = finished(summary, run_dir / "summary.json", CRITERIA[criterion].metric, criterion)
                of_run.append(
                    row
                    | score
                    | {"criterion": criterion, "score": score.get("value"), "value": row["value"]}
                    | {"unavailable": None}
                )
        except ReportError as e:
            of_run = [invalid_row(run_dir, inside, str(e)) | none]
        rows += of_run
    return frame_of(rows, extra=("criterion", "score", "unavailable"))


def read_summary(path: Path) -> dict:
    try:
        summary = json.loads(read_bounded(path))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except (ValueError, RecursionError) as e:  # an integer of thousands of digits, arrays nested thousands deep
        raise ReportError(f"{path}: not a summary.json of dann.run ({type(e).__name__}: {e})") from None
    if not isinstance(summary, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    missing = [k for k in ("status", "source", "target", "seed") if k not in summary]
    if missing:
        raise ReportError(f"{path}: missing required field{'s' * (len(missing) > 1)} {', '.join(missing)}")
    if not isinstance(summary["status"], str):
        raise ReportError(f"{path}: status: expected a string, got {summary['status']!r}")
    for field, (expected, valid) in SELECTION_NOTES.items():
        value = summary.get(field)
        if value is not None and not (isinstance(value, dict) and all(map(valid, value.values()))):
            raise ReportError(f"{path}: {field}: expected a mapping of criterion → {expected}, got {shorten(value)}")
    return summary


# What dann.selection.pick.summarise records beside `selection`, each {criterion: …}: what a value must be.
SELECTION_NOTES = {
    "selection_unavailable": ("reason", lambda reason: isinstance(reason, str)),
    "selection_nonfinite_steps": (
        "a non-empty list of steps",
        lambda steps: isinstance(steps, list) and bool(steps) and not any(integer(0).expected(s) for s in steps),
    ),
}


def read_bounded(path: Path) -> str:
    """The text of a file the report reads (dann.runs.readback: bounded, a regular file); else a ReportError."""
    try:
        return read_back(path)
    except NotReadBack as e:
        raise ReportError(f"{path}: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot be read ({e})") from None


def check(where: Path, key: str, value: Any, spec: Spec) -> None:
    expected = spec.expected(value)
    if expected is not None:
        raise ReportError(f"{where}: {key}: expected {expected}, got {shorten(value)}")


def shorten(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_row(run_dir: Path, summary: dict | None, metric: str, select: str) -> dict[str, Any]:
    """The run in `run_dir`, from its summary.json, or from .hydra/config.yaml when it has none."""
    hydra_copy = run_dir / ".hydra" / "config.yaml"
    where = run_dir / "summary.json" if summary else hydra_copy
    # Older summaries lack `config`: Hydra's copy, written when the run started, is the same config.
    config = (summary or {}).get("config") or (load_config(hydra_copy) if hydra_copy.is_file() else None)
    if not isinstance(config, dict):
        raise ReportError(
            f"{where}: no config (no `config` field, no .hydra/config.yaml beside it): "
            "which configuration ran is unknown"
        )
    flat = flatten(identity(config))
    missing = [k for k in READ_BACK if k not in flat]
    if missing:
        raise ReportError(f"{where}: missing required field{'s' * (len(missing) > 1)} {', '.join(missing)}")
    stored = (summary or {}).get("config") is not None  # else Hydra's copy: the message names that file
    for key, spec in READ_BACK.items():
        check(where if stored else hydra_copy, f"config.{key}" if stored else key, flat[key], spec)
    facts = summary or {
        "status": "unfinished",
        "error": "no summary.json (killed, or still running)",
        "seed": flat["seed"],
        "source": flat["dataset.source"],
        "target": flat["dataset.target"],
    }
    for key, spec in (("seed", READ_BACK["seed"]), ("source", text()), ("target", text())):
        check(where, key, facts[key], spec)
    error = facts.get("error") or (f"stopped at step {facts['step']}" if "step" in facts else "(no error recorded)")
    row = {"path": run_dir, "status": facts["status"], "seed": facts["seed"], "value": None, "error": str(error)}
    if row["status"] not in WRITTEN:
        row |= {"status": "unfinished", "error": f"summary.json has status {shorten(row['status'])}"}
    if row["status"] == "finished":
        measured = analysed if metric in ANALYSIS_METRICS else finished
        row |= {"source": str(facts["source"]), "target": str(facts["target"])} | measured(facts, where, metric, select)
    else:  # a run that did not finish may not have resolved an alias yet
        row |= {k: canonical_domain(facts[k], str(flat["dataset.name"])) for k in ("source", "target")}
    keys = {k: v for k, v in flat.items() if k not in ("seed", "dataset.source", "dataset.target")}
    try:
        # `identity` keeps the types (the string "1" is not the number 1), but λ 1 and 1.0 are one value.
        exact = {k: float(v) if type(v) is int else v for k, v in keys.items()}
        texts = {k: value_text(v) for k, v in keys.items()}
    except OverflowError:
        key = next(k for k, v in keys.items() if type(v) is int and abs(v) > 2**1023)
        raise ReportError(f"{where}: config.{key}: a number no config can hold ({shorten(keys[key])})") from None
    return row | {"identity": json.dumps(exact, sort_keys=True)} | texts | runtime_keys(summary, where)


def runtime_keys(summary: dict | None, where: Path) -> dict[str, Any]:
    """summary.json's `runtime` as identity keys (runtime.precision, …, runtime.device: its type, cpu or cuda);
    none when the run recorded none (before it set up its device, or an older run)."""
    runtime = (summary or {}).get("runtime")
    if runtime is None:
        return {}
    if not isinstance(runtime, dict):
        raise ReportError(f"{where}: runtime: expected a mapping ({', '.join(RUNTIME)}), got {shorten(runtime)}")
    for key, spec in RUNTIME.items():
        check(where, f"runtime.{key}", runtime.get(key), spec)
    device = runtime["device"].split(":")[0]  # cuda:0 and cuda:1 run the same computation
    return {f"runtime.{k}": value_text(device if k == "device" else runtime[k]) for k in RUNTIME}


def finished(summary: dict, where: Path, metric: str, select: str) -> dict[str, Any]:
    """{"value": …} of a finished run; a non-finite one makes it diverged: not a result."""
    field = "final" if select == "final" else f"selection.{select}"
    unavailable = (summary.get("selection_unavailable") or {}).get(select)
    if select != "final" and unavailable is not None:
        # dann.selection.pick found no finite value of this criterion in the run: no evaluation was picked.
        return {"status": "unavailable", "error": f"selection.{select} unavailable: {' '.join(unavailable.split())}"}
    record = summary.get("final") if select == "final" else (summary.get("selection") or {}).get(select)
    if not isinstance(record, dict):
        raise ReportError(f"{where}: missing required field {field} (the run's status is finished)")
    if metric not in record:
        raise ReportError(f"{where}: missing required field {field}.{metric}")
    value = record[metric]
    if not is_real_number(value):
        raise ReportError(f"{where}: {field}.{metric} is not a number: {shorten(value)}")
    if not math.isfinite(value):
        return {"status": "diverged", "error": f"{field}.{metric} is {value}"}
    if metric.split("/")[-1].startswith("acc"):  # target/acc, source/acc, target/acc_per_class_mean: fractions
        check(where, f"{field}.{metric}", value, ACCURACY)
    # Picked among the finite evaluations only: a number, but flagged, never passed off as a well-behaved pick.
    steps = (summary.get("selection_nonfinite_steps") or {}).get(select) if select != "final" else None
    return {"value": float(value), "nonfinite": ", ".join(map(str, steps)) if steps else None}


def analysed(summary: dict, where: Path, metric: str, select: str) -> dict[str, Any]:
    """{"value": …} of a finished run's analysis.json (`dann.analyze`), which must be of this run's final checkpoint."""
    path = where.parent / "analysis.json"
    if not path.is_file():
        raise ReportError(f"{path}: missing; run `python -m dann.analyze {where.parent}` (or on the sweep) first")
    try:
        analysis = json.loads(read_bounded(path))
        value = analysis[ANALYSIS_METRICS[metric][0]][ANALYSIS_METRICS[metric][1]]
        step, accuracy = analysis["checkpoint_step"], analysis["target_acc"]
    except (ValueError, RecursionError, KeyError, TypeError) as e:
        raise ReportError(f"{path}: not an analysis.json of dann.analyze ({type(e).__name__}: {e})") from None
    check(path, "checkpoint_step", step, integer(0))
    check(path, "target_acc", accuracy, ACCURACY)
    final = summary.get("final") or {}
    final_accuracy = final.get("target/acc")
    # The analysis must be of the run the summary describes: a run trained again since is re-analysed.
    if (
        step != final.get("step")
        or not is_real_number(final_accuracy)
        or not math.isclose(accuracy, final_accuracy, abs_tol=1e-6)
    ):
        raise ReportError(
            f"{path}: analyses step {step} with target accuracy {accuracy}, but summary.json's final evaluation "
            f"is step {shorten(final.get('step'))} with {shorten(final_accuracy)}; "
            f"run `python -m dann.analyze {where.parent}` again"
        )
    check(path, ".".join(ANALYSIS_METRICS[metric]), value, PAD)
    return {"value": float(value)}


def value_text(value: Any) -> str:
    """One text per config value: how identities are compared and shown (λ 1 and 1.0 are equal)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return re.sub(r"\.0$", "", repr(float(value)))
    if isinstance(value, list):
        return "[" + ", ".join(map(value_text, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


# `${dataset.image_size}`: a reference to another key of the same config. Nothing else is followed: a
# resolver (`${oc.env:TOKEN}`) would read the environment of whoever runs the report, not of the run.
REFERENCE = re.compile(r"\$\{([A-Za-z_][\w-]*(?:\.[\w-]+)*)\}")


def load_yaml(path: Path) -> Any:
    """A YAML file the report reads, as plain data: bounded in size, no anchors or aliases (whose
    expansion is exponential: an alias bomb), no tags of Python objects (SafeLoader). Hydra writes none."""
    import yaml
    from omegaconf._utils import get_yaml_loader  # OmegaConf's YAML: `1e-3` is a number, as Hydra read it

    source = read_bounded(path)
    loader = get_yaml_loader()
    try:
        for event in yaml.parse(source, Loader=loader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ReportError(f"{path}: holds a YAML anchor or alias (&, *), which the report does not read")
        return yaml.load(source, Loader=loader)  # noqa: S506 - OmegaConf's loader is a SafeLoader
    except yaml.YAMLError as e:
        raise ReportError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise ReportError(f"{path}: nested too deep to be read") from None


def load_config(path: Path) -> dict:
    """Hydra's composed config (.hydra/config.yaml), its `${key}` references followed, and nothing
    else resolved: a resolver (`${oc.env:…}`) or an interpolation inside a text is kept as written.

    The file is data, never code: plain YAML only (no tags of Python objects, no anchors or aliases,
    whose expansion is exponential), of bounded size, and at most MAX_NODES values once references are followed.
    """
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a mapping (the run's composed config)")
    budget = [MAX_NODES]

    def follow(value: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ReportError(f"{path}: more than {MAX_NODES} values once ${{…}} references are followed; not read")
        if isinstance(value, str) and (match := REFERENCE.fullmatch(value)) and depth < 32:
            node: Any = data
            for part in match[1].split("."):
                if not isinstance(node, dict) or part not in node:
                    return value  # a key of Hydra's own (hydra.runtime…): kept as written
                node = node[part]
            return follow(node, depth + 1)
        if isinstance(value, dict):
            return {str(k): follow(v, depth) for k, v in value.items()}
        if isinstance(value, list):
            return [follow(v, depth) for v in value]
        if value is None or isinstance(value, (str, int, float, bool)):
            return value
        raise ReportError(f"{path}: holds a {type(value).__name__}, not plain config values; not read")

    return follow(data, 0)


def canonical_domain(name: Any, dataset: str) -> str:
    """A domain's canonical name (`M` → `mnist`); the name itself when it is not registered."""
    try:
        from dann.data import resolve_domain  # imports torch: only for runs that need it

        return resolve_domain(str(name), "dataset", dataset).name  # aliases are scoped by benchmark
    except Exception:  # noqa: BLE001 - an unknown name is shown as written
        return str(name)


def shipped_references() -> Path:
    """The published numbers that come with dann: experiments/references.yaml, which the wheel carries
    as package data of dann.published (pyproject.toml); from a clone that was never installed, the clone's."""
    from importlib import resources

    try:  # a namespace package (the repository's root has no __init__.py): one `/` at a time
        return Path(str(resources.files("dann.published") / "experiments" / "references.yaml"))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "experiments" / "references.yaml"


def load_references(path: Path | None = None) -> dict:
    """Published numbers (by default those shipped with dann: `shipped_references()`), checked:
    {path, citations, results, averages}."""
    path = shipped_references() if path is None else Path(path)
    if path.is_dir():
        raise ReportError(
            f"--reference {path}: a directory; give a references YAML file, or put --reference (alone: "
            "the published numbers shipped with dann) after the run directories"
        )
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("citations") or {}, dict):
        raise ReportError(f"{path}: expected a mapping with citations (key: reference), results and averages")
    references = {"path": path, "citations": {str(k): str(v) for k, v in (data.get("citations") or {}).items()}}
    for name, fields in (("results", ("source", "target")), ("averages", ("tasks",))):
        entries = references[name] = data.get(name) or []
        if not isinstance(entries, list):
            raise ReportError(f"{path}: {name} must be a list")
        for i, entry in enumerate(entries):
            problem = reference_problem(
                entry, ("dataset", *fields, "method", "backbone", "value", "cite"), references["citations"]
            )
            if problem:
                raise ReportError(f"{path}: {name}[{i}]: {problem}")
    return references


def reference_problem(entry: Any, fields: tuple[str, ...], citations: dict) -> str | None:
    if not isinstance(entry, dict):
        return "must be a mapping"
    missing = [k for k in fields if k not in entry]
    if missing:
        return f"missing required field{'s' * (len(missing) > 1)} {', '.join(missing)}"
    for key in (*fields, "metric"):
        if key in entry and (isinstance(entry[key], bool) or not isinstance(entry[key], (str, int, float))):
            return f"{key} must be a name (a string), got {shorten(entry[key])}"
    value, tasks = entry["value"], entry.get("tasks", 1)
    if number(0, 1).expected(value):
        return f"value must be a fraction in [0, 1], got {value!r}"
    if integer(1).expected(tasks):
        return f"tasks must be the number of tasks averaged, got {tasks!r}"
    if str(entry["cite"]) not in citations:
        return f"cite '{entry['cite']}' is not a key of citations"
    return None
