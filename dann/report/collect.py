"""Collect: run directories → one DataFrame row per run: where, status, seed, value, identity.

A run's identity is its resolved config less result-neutral keys (dann.identity) and `seed`,
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

from dann.identity import flatten, identity
from dann.selection import CRITERIA
from dann.spec import integer, is_real_number, number

# The columns every run has; every other column of the runs DataFrame is an identity key.
RUN_FIELDS = ("path", "status", "source", "target", "seed", "value", "error", "identity")
STATUSES = ("finished", "failed", "diverged", "interrupted", "unfinished", "skipped")
ABSENT = "(unset)"  # the value of a key that a run's config lacks (method.lambda_schedule.gamma for source_only)


# Metrics of `dann.analyze` (analysis.json beside summary.json), measured on the final checkpoint:
# metric → its path in analysis.json.
ANALYSIS_METRICS = {
    "pad": ("pad", "features"),
    "pad_raw": ("pad", "raw"),
    "pad_rbf": ("pad", "features_rbf"),
    "pad_raw_rbf": ("pad", "raw_rbf"),
}


class ReportError(Exception):
    """A problem with the report's inputs. The message names the file; `main` prints it and exits 2."""


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Every run directory (holding summary.json or .hydra/config.yaml) at or under `paths`."""
    found: dict[Path, Path] = {}
    for top in map(Path, paths):
        if not top.exists():
            raise ReportError(f"{top}: no such file or directory")
        if top.is_file() and top.name != "summary.json":
            raise ReportError(f"{top}: not a directory; give sweep or run directories")
        for dirpath, dirnames, _ in os.walk(top.parent if top.is_file() else top):
            here = Path(dirpath)
            if (here / "summary.json").is_file() or (here / ".hydra" / "config.yaml").is_file():
                found.setdefault(here.resolve(), here)
                dirnames.clear()  # a run directory is not searched further
            else:
                dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
    if not found:
        raise ReportError(
            f"no run directory (one holding summary.json or .hydra/config.yaml) under {', '.join(map(str, paths))}"
        )
    return sorted(
        found.values(),
        key=lambda p: [(0, int(s), "") if s.isdigit() else (1, 0, s) for s in re.split(r"(\d+)", str(p))],
    )  # job 10 after job 9


def collect(paths: Sequence[str | Path], metric: str, select: str) -> pd.DataFrame:
    """One row per run directory under `paths`: RUN_FIELDS, then one column per identity key."""
    dirs = find_run_dirs(paths)
    summaries = [read_summary(d / "summary.json") if (d / "summary.json").is_file() else None for d in dirs]
    # Any criterion that finished runs recorded can be selected: criteria are added over time.
    criteria = {"final"} | {c for s in summaries if s and s["status"] == "finished" for c in s.get("selection") or {}}
    if select not in criteria:
        raise ReportError(
            f"--select {select}: no finished run has selection.{select} "
            f"(these runs have: {', '.join(sorted(criteria))})"
        )
    runs = pd.DataFrame([run_row(d, s, metric, select) for d, s in zip(dirs, summaries)])
    keys = [c for c in runs.columns if c not in RUN_FIELDS]
    runs[keys] = runs[keys].fillna(ABSENT)
    return runs


def collect_selections(paths: Sequence[str | Path], metric: str) -> pd.DataFrame:
    """One row per finished run × criterion it recorded, for `--select all`: RUN_FIELDS (`value`: `metric`
    of the evaluation the criterion picks), `criterion`, `score` (the criterion's own metric there), and
    the identity keys. A run that did not finish is one row with criterion None: listed, never a candidate.
    A finished run without selection.<criterion> (reverse validation turned off, an older run) is no
    candidate for that criterion."""
    dirs = find_run_dirs(paths)
    summaries = [read_summary(d / "summary.json") if (d / "summary.json").is_file() else None for d in dirs]
    if metric in ANALYSIS_METRICS:
        raise ReportError(
            f"--select all compares evaluations; --metric {metric} is measured on the final checkpoint only"
        )
    recorded = {c for s in summaries if s and s["status"] == "finished" for c in s.get("selection") or {}}
    if "oracle" not in recorded:
        raise ReportError("--select all: no finished run has selection.oracle, which regrets are measured against")
    rows = []
    for run_dir, summary in zip(dirs, summaries):
        has = set((summary or {}).get("selection") or {}) if (summary or {}).get("status") == "finished" else set()
        if not has:
            rows.append(run_row(run_dir, summary, metric, "final") | {"criterion": None, "score": None})
        for criterion in (c for c in CRITERIA if c in has):  # CRITERIA's order; criteria it does not know are left out
            row = run_row(run_dir, summary, metric, criterion)
            score = finished(summary, run_dir / "summary.json", CRITERIA[criterion].metric, criterion)
            rows.append(row | score | {"criterion": criterion, "score": score.get("value"), "value": row["value"]})
    runs = pd.DataFrame(rows)
    keys = [c for c in runs.columns if c not in (*RUN_FIELDS, "criterion", "score")]
    runs[keys] = runs[keys].fillna(ABSENT)
    return runs


def read_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot be read ({e})") from None
    if not isinstance(summary, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    missing = [k for k in ("status", "source", "target", "seed") if k not in summary]
    if missing:
        raise ReportError(f"{path}: missing required field{'s' * (len(missing) > 1)} {', '.join(missing)}")
    return summary


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
    missing = [
        k
        for k in ("seed", "dataset.name", "dataset.source", "dataset.target", "method.name", "lambda")
        if k not in flat
    ]
    if missing:
        raise ReportError(f"{where}: missing required field{'s' * (len(missing) > 1)} {', '.join(missing)}")
    facts = summary or {
        "status": "unfinished",
        "error": "no summary.json (killed, or still running)",
        "seed": flat["seed"],
        "source": flat["dataset.source"],
        "target": flat["dataset.target"],
    }
    error = facts.get("error") or (f"stopped at step {facts['step']}" if "step" in facts else "(no error recorded)")
    row = {"path": run_dir, "status": facts["status"], "seed": facts["seed"], "value": None, "error": error}
    if row["status"] == "finished":
        measured = analysed if metric in ANALYSIS_METRICS else finished
        row |= {"source": str(facts["source"]), "target": str(facts["target"])} | measured(facts, where, metric, select)
    else:  # a run that did not finish may not have resolved an alias yet
        row |= {k: canonical_domain(facts[k], str(flat["dataset.name"])) for k in ("source", "target")}
    if row["status"] not in STATUSES:
        row |= {"status": "unfinished", "error": f"summary.json has status {row['status']!r}"}
    keys = {k: v for k, v in flat.items() if k not in ("seed", "dataset.source", "dataset.target")}
    # `identity` keeps the types (the string "1" is not the number 1), but λ 1 and 1.0 are one value.
    exact = {k: float(v) if type(v) is int else v for k, v in keys.items()}
    return row | {"identity": json.dumps(exact, sort_keys=True)} | {k: value_text(v) for k, v in keys.items()}


def finished(summary: dict, where: Path, metric: str, select: str) -> dict[str, Any]:
    """{"value": …} of a finished run; a non-finite one makes it diverged: not a result."""
    field = "final" if select == "final" else f"selection.{select}"
    record = summary.get("final") if select == "final" else (summary.get("selection") or {}).get(select)
    if not isinstance(record, dict):
        raise ReportError(f"{where}: missing required field {field} (the run's status is finished)")
    if metric not in record:
        raise ReportError(f"{where}: missing required field {field}.{metric}")
    value = record[metric]
    if not is_real_number(value):
        raise ReportError(f"{where}: {field}.{metric} is not a number: {value!r}")
    if not math.isfinite(value):
        return {"status": "diverged", "error": f"{field}.{metric} is {value}"}
    return {"value": float(value)}


def analysed(summary: dict, where: Path, metric: str, select: str) -> dict[str, Any]:
    """{"value": …} of a finished run's analysis.json (`dann.analyze`), which must be of this run's final checkpoint."""
    if select != "final":
        raise ReportError(f"--metric {metric} is measured by dann.analyze on the final checkpoint; use --select final")
    path = where.parent / "analysis.json"
    if not path.is_file():
        raise ReportError(f"{path}: missing; run `python -m dann.analyze {where.parent}` (or on the sweep) first")
    try:
        analysis = json.loads(path.read_text())
        value = analysis[ANALYSIS_METRICS[metric][0]][ANALYSIS_METRICS[metric][1]]
        step, accuracy = analysis["checkpoint_step"], analysis["target_acc"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ReportError(f"{path}: not an analysis.json of dann.analyze ({type(e).__name__}: {e})") from None
    final = summary.get("final") or {}
    # The analysis must be of the run the summary describes: a run trained again since is re-analysed.
    if step != final.get("step") or not math.isclose(accuracy, final.get("target/acc", math.nan), abs_tol=1e-6):
        raise ReportError(
            f"{path}: analyses step {step} with target accuracy {accuracy}, but summary.json's final evaluation "
            f"is step {final.get('step')} with {final.get('target/acc')}; "
            f"run `python -m dann.analyze {where.parent}` again"
        )
    if not is_real_number(value):
        raise ReportError(f"{path}: {metric} is not a number: {value!r}")
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


def load_config(path: Path) -> dict:
    """Hydra's composed config, resolved; an interpolation that cannot be resolved here is kept as written."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    def resolve(node):
        raw = OmegaConf.to_container(node, resolve=False)
        out = dict(raw) if isinstance(raw, dict) else list(raw)
        for key in raw if isinstance(raw, dict) else range(len(raw)):
            try:
                value = node[key]
            except Exception:  # noqa: BLE001 - a resolver only Hydra registers, a missing value: kept as written
                continue
            out[key] = resolve(value) if isinstance(value, (DictConfig, ListConfig)) else value
        return out

    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 - any parse error is the file's fault
        raise ReportError(f"{path}: not valid YAML ({type(e).__name__}: {e})") from None
    if not isinstance(cfg, DictConfig):
        raise ReportError(f"{path}: expected a mapping (the run's composed config)")
    return resolve(cfg)


def canonical_domain(name: Any, dataset: str) -> str:
    """A domain's canonical name (`M` → `mnist`); the name itself when it is not registered."""
    try:
        from dann.data import resolve_domain  # imports torch: only for runs that need it

        return resolve_domain(str(name), "dataset", dataset).name  # aliases are scoped by benchmark
    except Exception:  # noqa: BLE001 - an unknown name is shown as written
        return str(name)


def load_references(path: Path) -> dict:
    """Published numbers (experiments/references.yaml), checked: {path, citations, results, averages}."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ReportError(f"{path}: cannot be read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ReportError(f"{path}: not valid YAML ({e})") from None
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
    value, tasks = entry["value"], entry.get("tasks", 1)
    if number(0, 1).expected(value):
        return f"value must be a fraction in [0, 1], got {value!r}"
    if integer(1).expected(tasks):
        return f"tasks must be the number of tasks averaged, got {tasks!r}"
    if str(entry["cite"]) not in citations:
        return f"cite '{entry['cite']}' is not a key of citations"
    return None
