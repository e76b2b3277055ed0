"""`python -m dann.report`: result tables from run directories.

Run directories are written here in the exact format dann.run leaves them (`.hydra/config.yaml`
at start, `summary.json` with the resolved `config` at the end), from configs composed by Hydra
as `dann.run` composes them; two tests make real runs. Expected numbers are computed in the
tests from the values written, independently of the report.
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from dann.report import main
from tests.helpers import REPO, SHORT_RUN, compose_config, only, run_cli

REFERENCES = REPO / "experiments" / "references.yaml"
OFFICE_TASKS = [("amazon", "webcam"), ("dslr", "webcam"), ("webcam", "dslr")]


# --- run directories in dann.run's format -------------------------------------------------------


def evaluation(step: int, target_acc: float, source_acc: float = 0.95) -> dict:
    """One evaluation record, keys in the order dann.training.loop writes them."""
    return {
        "step": step,
        "source/acc": source_acc,
        "target/acc": target_acc,
        "target/acc_per_class_mean": round(target_acc - 0.02, 6),
    }


@functools.lru_cache(maxsize=None)
def composed(*overrides: str):
    return compose_config(*overrides)


def run_config(
    *,
    method: str,
    lam,
    dataset: str,
    source: str,
    target: str,
    seed: int,
    steps: int = 100,
    protocol: str | None = None,
    overrides: tuple[str, ...] = (),
):
    """The config `python -m dann.run` composes for these overrides (unresolved, as Hydra keeps it)."""
    cfg = copy.deepcopy(
        composed(
            f"method={method}",
            f"lambda={lam}",
            f"dataset={dataset}",
            f"dataset.source={source}",
            f"dataset.target={target}",
            f"trainer.steps={steps}",
            *([f"dataset.protocol={protocol}"] if protocol else []),
            *overrides,
        )
    )
    cfg.seed = seed
    return cfg


def write_run(
    run_dir: Path,
    *,
    method: str = "dann",
    lam: float = 0.1,
    dataset: str = "office31",
    source: str = "amazon",
    target: str = "webcam",
    seed: int = 0,
    steps: int = 100,
    status: str = "finished",
    final: dict | None = None,
    source_val: dict | None = None,
    oracle: dict | None = None,
    error: str = "RuntimeError: CUDA out of memory",
    protocol: str | None = None,
    overrides: tuple[str, ...] = (),
    with_config: bool = True,
) -> Path:
    """A run directory as dann.run leaves it: `.hydra/config.yaml` when the job starts, summary.json at
    the end (with the resolved `config`; `with_config=False`: an older summary without it).
    status 'unfinished': the config only (killed mid-run)."""
    cfg = run_config(
        method=method,
        lam=lam,
        dataset=dataset,
        source=source,
        target=target,
        seed=seed,
        steps=steps,
        protocol=protocol,
        overrides=overrides,
    )
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    if status == "unfinished":
        return run_dir
    summary = {
        "method": method,
        "lambda": lam,
        "dataset": dataset,
        "source": source,
        "target": target,
        "seed": seed,
        "steps": steps,
        "protocol": cfg.dataset.protocol,
        "status": status,
    }
    if with_config:
        summary["config"] = OmegaConf.to_container(cfg, resolve=True)
    if status == "finished":
        final = final or evaluation(steps, 0.8)
        summary |= {"final": final, "selection": {"source_val": source_val or final, "oracle": oracle or final}}
    else:
        summary["error"] = error
    if status in ("diverged", "interrupted"):
        summary["step"] = steps // 2
    summary["wall_time_s"] = 12.5
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return run_dir


def office_grid(
    root: Path, seed: int = 0, methods=("source_only", "dann"), seeds=(0, 1, 2), lam: float = 0.1, skip=()
) -> dict:
    """A sweep of finished runs; returns {(source, target, method): [target/acc by seed]}."""
    rng = np.random.default_rng(seed)
    values: dict = {}
    job = len(list(root.glob("*"))) if root.exists() else 0
    for method in methods:
        for source, target in OFFICE_TASKS:
            for s in seeds:
                if (source, target, method, s) in skip:
                    continue
                acc = round(float(rng.uniform(0.55, 0.95)), 4)
                write_run(
                    root / str(job),
                    method=method,
                    lam=lam,
                    source=source,
                    target=target,
                    seed=s,
                    final=evaluation(100, acc),
                )
                values.setdefault((source, target, method), []).append(acc)
                job += 1
    return values


# --- reading the outputs -------------------------------------------------------------------------


def report(*args, capsys) -> str:
    main([str(a) for a in args])
    return capsys.readouterr().out


def text_table(stdout: str) -> dict:
    """The stdout table as {(group, row): {column: cell}}; group is None for a single dataset."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("task"))
    header = re.split(r"\s{2,}", lines[start].strip())
    rows, group = {}, None
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        if set(line) <= {"-", " "}:
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 1:
            group = cells[0]
            continue
        assert len(cells) == len(header), line
        rows[(group, cells[0])] = dict(zip(header[1:], cells[1:]))
    return rows


def cell_text(values: list[float], expected_n: int | None = None) -> str:
    text = f"{100 * statistics.mean(values):.1f}"
    if len(values) > 1:
        text += f" ± {100 * statistics.stdev(values):.1f}"
    text += f" ({len(values)})"
    return text + ("*" if expected_n and len(values) < expected_n else "")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- tests ---------------------------------------------------------------------------------------


def test_cells_are_mean_and_std_over_seeds_with_an_average_over_tasks(tmp_path, capsys):
    values = office_grid(tmp_path / "sweep")
    out = report(tmp_path / "sweep", "--csv", tmp_path / "t.csv", capsys=capsys)
    table = text_table(out)

    # Several methods: one column per method, the lower bound first; λ (fixed) is in the caption.
    assert list(table[(None, "amazon→webcam")]) == ["source_only", "dann"]
    assert "λ=0.1" in out.splitlines()[0] and "target/acc" in out.splitlines()[0]
    for (source, target, method), accs in values.items():
        assert table[(None, f"{source}→{target}")][method] == cell_text(accs)
    for method in ("source_only", "dann"):
        task_means = [statistics.mean(values[(s, t, method)]) for s, t in OFFICE_TASKS]
        assert table[(None, "average")][method] == f"{100 * statistics.mean(task_means):.1f}"

    rows = read_csv(tmp_path / "t.csv")
    tasks = [r for r in rows if r["row"] == "task"]
    assert len(tasks) == len(OFFICE_TASKS) * 2
    for row in tasks:
        accs = values[(row["source"], row["target"], row["method"])]
        assert float(row["mean"]) == pytest.approx(statistics.mean(accs), abs=1e-12)
        assert float(row["std"]) == pytest.approx(statistics.stdev(accs), abs=1e-12)
        assert (row["n"], row["n_failed"], row["n_unfinished"], row["seeds"]) == ("3", "0", "0", "0 1 2")
        assert (row["dataset"], row["lambda"], row["metric"], row["select"]) == (
            "office31",
            "0.1",
            "target/acc",
            "final",
        )
    averages = {r["method"]: r for r in rows if r["row"] == "average"}
    assert float(averages["dann"]["mean"]) == pytest.approx(
        statistics.mean(statistics.mean(values[(s, t, "dann")]) for s, t in OFFICE_TASKS)
    )
    assert (averages["dann"]["tasks_averaged"], averages["dann"]["tasks_total"]) == ("3", "3")


def test_failed_unfinished_and_missing_runs_are_flagged_and_never_averaged_in(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    # Three seeds is the norm. dann: seed 2 of A→W failed, seed 2 of D→W was killed;
    # target_only: seed 2 of W→D never ran; source_only never ran W→D at all.
    values = office_grid(
        sweep,
        methods=("source_only", "dann", "target_only"),
        skip={("amazon", "webcam", "dann", 2), ("dslr", "webcam", "dann", 2), ("webcam", "dslr", "target_only", 2)}
        | {("webcam", "dslr", "source_only", s) for s in range(3)},
    )
    failed = write_run(
        sweep / "90",
        source="amazon",
        target="webcam",
        seed=2,
        status="failed",
        error="RuntimeError: CUDA out of memory",
    )
    killed = write_run(sweep / "91", source="dslr", target="webcam", seed=2, status="unfinished")
    out = report(sweep, "--csv", tmp_path / "t.csv", capsys=capsys)
    table = text_table(out)

    assert table[(None, "amazon→webcam")]["dann"] == cell_text(values[("amazon", "webcam", "dann")], 3) + " †1 failed"
    assert table[(None, "dslr→webcam")]["dann"] == cell_text(values[("dslr", "webcam", "dann")], 3) + " ‡1 unfinished"
    assert table[(None, "webcam→dslr")]["dann"] == cell_text(values[("webcam", "dslr", "dann")], 3)
    assert table[(None, "webcam→dslr")]["target_only"] == cell_text(values[("webcam", "dslr", "target_only")], 3)
    assert table[(None, "webcam→dslr")]["target_only"].endswith("(2)*")
    assert table[(None, "webcam→dslr")]["source_only"] == "—"  # empty, never 0
    assert table[(None, "amazon→webcam")]["source_only"] == cell_text(values[("amazon", "webcam", "source_only")])
    # The average is over the tasks a column has, and says when one is missing.
    so_means = [statistics.mean(values[(s, t, "source_only")]) for s, t in OFFICE_TASKS[:2]]
    assert table[(None, "average")]["source_only"] == f"{100 * statistics.mean(so_means):.1f} [2/3 tasks]"
    assert "[" not in table[(None, "average")]["dann"]
    assert " 0.0 " not in out

    notes = out[out.index("Legend:") :]
    assert "* fewer seeds than the table's usual 3" in notes
    failed_notes = notes[notes.index("Failed runs (1):") :].splitlines()[1]
    assert (
        str(failed) in failed_notes and "seed 2" in failed_notes and "RuntimeError: CUDA out of memory" in failed_notes
    )
    unfinished_notes = notes[notes.index("Unfinished runs (1):") :].splitlines()[1]
    assert str(killed) in unfinished_notes and "no summary.json" in unfinished_notes
    missing = notes[notes.index("Missing seeds") :]
    assert "office31 webcam→dslr target_only λ=0.1: seed 2 never run" in missing
    assert "webcam→dslr dann" not in missing and "amazon→webcam dann" not in missing

    rows = {(r["task"], r["method"]): r for r in read_csv(tmp_path / "t.csv")}
    assert (rows[("amazon→webcam", "dann")]["n"], rows[("amazon→webcam", "dann")]["n_failed"]) == ("2", "1")
    assert (rows[("dslr→webcam", "dann")]["n"], rows[("dslr→webcam", "dann")]["n_unfinished"]) == ("2", "1")
    assert float(rows[("amazon→webcam", "dann")]["mean"]) == pytest.approx(
        statistics.mean(values[("amazon", "webcam", "dann")])
    )
    assert rows[("webcam→dslr", "source_only")]["mean"] == "" and rows[("webcam→dslr", "source_only")]["n"] == "0"


def test_an_unfinished_run_lands_in_its_cell_through_domain_aliases(tmp_path, capsys):
    for seed, acc in enumerate([0.71, 0.75]):
        write_run(
            tmp_path / str(seed),
            dataset="mnist_mnistm",
            source="mnist",
            target="mnistm",
            seed=seed,
            lam=1.0,
            final=evaluation(100, acc),
        )
    # Killed before writing summary.json; its config still says `M` and `MM` (aliases).
    write_run(tmp_path / "2", dataset="mnist_mnistm", source="M", target="MM", seed=2, lam=1, status="unfinished")
    # A failed run's summary.json may hold the alias too (it failed before resolving it).
    write_run(tmp_path / "3", dataset="mnist_mnistm", source="M", target="MM", seed=3, lam=1, status="failed")
    table = text_table(report(tmp_path, capsys=capsys))
    assert table == {(None, "mnist→mnistm"): {"λ=1": "73.0 ± 2.8 (2) †1 failed ‡1 unfinished"}}


def test_skipped_runs_are_left_out_and_a_rerun_seed_supersedes_its_failure(tmp_path, capsys):
    values = office_grid(tmp_path / "sweep1", methods=("dann",), seeds=(0, 1))
    write_run(tmp_path / "sweep1" / "50", seed=2, status="failed")  # amazon→webcam seed 2 failed…
    write_run(tmp_path / "sweep2" / "0", seed=2, final=evaluation(100, 0.9))  # …and was rerun elsewhere
    # dann.run marks an invalid combination of a grid (source = target) as skipped.
    write_run(
        tmp_path / "sweep2" / "1",
        source="amazon",
        target="amazon",
        status="skipped",
        error="ConfigError: dataset.target: the same domain as dataset.source",
    )
    out = report(tmp_path / "sweep1", tmp_path / "sweep2", capsys=capsys)
    table = text_table(out)
    assert (None, "amazon→amazon") not in table
    assert table[(None, "amazon→webcam")]["λ=0.1"] == cell_text(values[("amazon", "webcam", "dann")] + [0.9])
    assert "†" not in table[(None, "amazon→webcam")]["λ=0.1"]
    assert "Superseded (1)" in out and "Skipped by dann.run" in out and "same domain" in out


def test_columns_by_lambda_and_combinations(tmp_path, capsys):
    one_method = tmp_path / "one"
    v01 = office_grid(one_method, methods=("dann",), lam=0.1, seed=1)
    v1 = office_grid(one_method, methods=("dann",), lam=1.0, seed=2)
    table = text_table(report(one_method, capsys=capsys))
    # One method: λ columns, in increasing order.
    assert list(table[(None, "amazon→webcam")]) == ["λ=0.1", "λ=1"]
    assert table[(None, "dslr→webcam")]["λ=1"] == cell_text(v1[("dslr", "webcam", "dann")])
    assert table[(None, "dslr→webcam")]["λ=0.1"] == cell_text(v01[("dslr", "webcam", "dann")])

    office_grid(one_method, methods=("source_only",), lam=1.0, seed=3)
    # Both vary: each column is a combination, the method first (lower bound first), then λ.
    by_method = text_table(report(one_method, capsys=capsys))
    assert list(by_method[(None, "amazon→webcam")]) == ["source_only λ=1", "dann λ=0.1", "dann λ=1"]
    assert by_method[(None, "amazon→webcam")]["dann λ=1"] == cell_text(v1[("amazon", "webcam", "dann")])


def test_select_source_val_and_the_oracle_is_labeled(tmp_path, capsys):
    picks = {"final": [0.70, 0.74], "source_val": [0.80, 0.78], "oracle": [0.91, 0.93]}
    for seed in range(2):
        write_run(
            tmp_path / str(seed),
            seed=seed,
            final=evaluation(100, picks["final"][seed]),
            source_val=evaluation(60, picks["source_val"][seed], source_acc=0.99),
            oracle=evaluation(80, picks["oracle"][seed]),
        )
    for select, accs in picks.items():
        md, tex = tmp_path / f"{select}.md", tmp_path / f"{select}.tex"
        args = [] if select == "final" else ["--select", select]
        out = report(tmp_path, *args, "--markdown", md, "--latex", tex, capsys=capsys)
        assert text_table(out)[(None, "amazon→webcam")] == {"λ=0.1": cell_text(accs)}
        labeled = [text.count("ORACLE") for text in (out.splitlines()[0], out, md.read_text(), tex.read_text())]
        if select == "oracle":
            assert out.startswith("ORACLE") and "task (ORACLE)" in out and "upper bound" in out.splitlines()[0]
            assert md.read_text().startswith("**ORACLE") and "\\caption{ORACLE" in tex.read_text()
            assert "task (ORACLE)" in tex.read_text()
        else:
            assert labeled == [0, 0, 0, 0]
    source_val = report(tmp_path, "--select", "source_val", capsys=capsys)
    assert "best source validation accuracy" in source_val.splitlines()[0]


def test_markdown_csv_and_latex_files(tmp_path, capsys):
    office_grid(tmp_path / "office")
    for seed, acc in enumerate([0.70, 0.74, 0.72]):
        write_run(
            tmp_path / "digits" / str(seed),
            method="dann",
            dataset="mnist_mnistm",
            source="mnist",
            target="mnistm",
            seed=seed,
            final=evaluation(100, acc),
        )
    md, csv_path, tex = tmp_path / "out" / "t.md", tmp_path / "out" / "t.csv", tmp_path / "out" / "t.tex"
    out = report(tmp_path, "--markdown", md, "--csv", csv_path, "--latex", tex, capsys=capsys)

    # Several datasets: rows grouped per dataset, each group with its own average when it has several tasks.
    table = text_table(out)
    assert table[("mnist_mnistm", "mnist→mnistm")]["dann"] == cell_text([0.70, 0.74, 0.72])
    assert table[("mnist_mnistm", "mnist→mnistm")]["source_only"] == "—"
    assert ("office31", "average") in table and ("mnist_mnistm", "average") not in table

    lines = [line for line in md.read_text().splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))] for line in lines]
    assert cells[0] == ["task", "source_only", "dann"]
    assert all(re.fullmatch("-+:", c) for c in cells[1][1:])  # numbers right-aligned
    assert all(len(row) == 3 for row in cells)
    assert ["**mnist_mnistm**", "", ""] in cells and ["**office31**", "", ""] in cells
    assert ["mnist→mnistm", "—", cell_text([0.70, 0.74, 0.72])] in cells

    rows = read_csv(csv_path)
    assert len([r for r in rows if r["row"] == "task"]) == (len(OFFICE_TASKS) + 1) * 2
    assert {r["dataset"] for r in rows} == {"office31", "mnist_mnistm"}
    digits = next(r for r in rows if r["task"] == "mnist→mnistm" and r["method"] == "dann")
    assert float(digits["mean"]) == pytest.approx(0.72) and float(digits["std"]) == pytest.approx(0.02)

    latex = tex.read_text()
    body = latex[latex.index("\\begin{tabular}") : latex.index("\\end{tabular}")]
    assert "\\begin{tabular}{lcc}" in body and all(rule in body for rule in ("\\toprule", "\\midrule", "\\bottomrule"))
    assert "72.0 $\\pm$ 2.0 (3)" in body and "source\\_only" in body and "mnist$\\rightarrow$mnistm" in body
    data_rows = [line for line in body.splitlines() if line.endswith("\\\\") and not line.startswith("\\multicolumn")]
    assert len(data_rows) == 1 + len(OFFICE_TASKS) + 1 + 1  # header, office tasks, office average, digits task
    assert all(row.count("&") == 2 for row in data_rows)
    assert "\\multicolumn{3}{l}{\\textit{office31}}" in body


def test_published_numbers_beside_the_measured_columns(tmp_path, capsys):
    for seed, acc in enumerate([0.80, 0.82]):
        for source, target in OFFICE_TASKS[:2]:
            write_run(
                tmp_path / "office" / f"{source}{seed}",
                source=source,
                target=target,
                seed=seed,
                final=evaluation(100, acc),
            )
    for method in ("source_only", "dann"):
        write_run(
            tmp_path / "digits" / method,
            method=method,
            dataset="mnist_mnistm",
            source="mnist",
            target="mnistm",
            lam=1.0,
            final=evaluation(100, 0.6),
        )
    plain = report(tmp_path, capsys=capsys)
    assert "published" not in plain

    csv_path = tmp_path / "t.csv"
    out = report(tmp_path, "--reference", REFERENCES, "--csv", csv_path, capsys=capsys)
    table = text_table(out)
    office = "published: dann, alexnet [ganin2016-office]"
    assert table[("office31", "amazon→webcam")][office] == "73.0"
    assert table[("office31", "dslr→webcam")][office] == "96.4"
    assert table[("office31", "average")][office] == "84.7 [mean of 2/2]"  # ours, of the two published tasks
    assert table[("office31", "average")]["published: dann, resnet50 [long2018-cdan]"] == "82.2 [6 tasks]"
    assert table[("office31", "average")]["published: dann, resnet50 [tllib]"] == "86.1 [6 tasks]"
    digits = table[("mnist_mnistm", "mnist→mnistm")]
    assert digits["published: source_only, mnist_cnn [ganin2016-digits]"] == "52.25"
    assert digits["published: dann, mnist_cnn [ganin2016-digits]"] == "76.66"
    assert not any("target_only" in column for column in digits)  # not measured: no published column
    assert digits[office] == "—"
    assert "[ganin2016-digits] Ganin" in out and "JMLR" in out

    published = [r for r in read_csv(csv_path) if r["kind"] == "published" and r["mean"]]
    assert {(r["task"], r["cite"], float(r["mean"])) for r in published if r["row"] == "task"} == {
        ("amazon→webcam", "ganin2016-office", 0.73),
        ("dslr→webcam", "ganin2016-office", 0.964),
        ("mnist→mnistm", "ganin2016-digits", 0.5225),
        ("mnist→mnistm", "ganin2016-digits", 0.7666),
    }

    # A reference is for target accuracy: another metric shows none, and says so.
    other = report(tmp_path, "--reference", REFERENCES, "--metric", "source/acc", capsys=capsys)
    assert "published:" not in other and "No published number" in other


@pytest.mark.slow
def test_report_on_real_runs(tmp_path, capsys):
    from dann.runs.launch import run

    summaries = {}
    for method in ("dann", "source_only"):
        for seed in (0, 1):
            run_dir = tmp_path / "runs" / f"{method}-{seed}"
            run_dir.mkdir(parents=True)
            cfg = compose_config(
                f"method={method}",
                f"seed={seed}",
                "logger=none",
                "trainer.steps=20",
                "trainer.eval_every=10",
                "trainer.log_every=10",
            )
            run(cfg, run_dir)
            summaries[(method, seed)] = json.loads((run_dir / "summary.json").read_text())
    assert all(s["status"] == "finished" for s in summaries.values())

    csv_path = tmp_path / "t.csv"
    for select in ("final", "source_val"):
        out = report(tmp_path / "runs", "--select", select, "--csv", csv_path, capsys=capsys)
        table = text_table(out)
        for method in ("dann", "source_only"):
            record = (lambda s: s["final"]) if select == "final" else (lambda s: s["selection"]["source_val"])
            accs = [record(summaries[(method, seed)])["target/acc"] for seed in (0, 1)]
            assert table[(None, "moons→moons_rotated")][method] == cell_text(accs)
            row = next(r for r in read_csv(csv_path) if r["method"] == method and r["row"] == "task")
            assert float(row["mean"]) == pytest.approx(np.mean(accs), abs=1e-12)
            assert float(row["std"]) == pytest.approx(np.std(accs, ddof=1), abs=1e-12)
            assert (row["n"], row["n_failed"], row["n_unfinished"]) == ("2", "0", "0")
            assert (row["dataset"], row["protocol"], row["lambda"]) == ("moons", "inductive", "1")


# --- a cell holds the seeds of one configuration, never more ----------------------------------


@pytest.mark.parametrize(
    "key, values",
    [
        ("optim.optimizer.lr", ("0.003", "0.1")),
        ("dataset.image_size", ("160", "224")),
        ("method.lambda_schedule.gamma", ("5", "10")),
    ],
)
def test_configurations_that_differ_in_any_key_never_share_a_cell(tmp_path, capsys, key, values):
    accs = {values[0]: [0.70, 0.86], values[1]: [0.78, 0.74]}
    for value, by_seed in accs.items():
        for seed, acc in enumerate(by_seed):  # directories named by the job's overrides
            write_run(
                tmp_path / f"{key}={value},seed={seed}",
                seed=seed,
                overrides=(f"{key}={value}",),
                final=evaluation(100, acc),
            )
    out = report(tmp_path, "--csv", tmp_path / "t.csv", capsys=capsys)
    # One column per value, labeled by the key (keys it determines, like the transforms that
    # use dataset.image_size, are left out); the seeds of both are never pooled.
    assert text_table(out) == {(None, "amazon→webcam"): {f"{key}={v}": cell_text(accs[v]) for v in values}}
    assert cell_text(accs[values[0]] + accs[values[1]]) not in out
    assert "method dann, λ=0.1" in out.splitlines()[0]
    rows = read_csv(tmp_path / "t.csv")
    assert sorted((r[key], r["n"], r["seeds"]) for r in rows) == sorted((v, "2", "0 1") for v in values)


def test_runs_that_did_not_finish_are_listed_by_status_and_never_averaged_in(tmp_path, capsys):
    values = [0.80, 0.84]
    for seed, acc in enumerate(values):
        write_run(tmp_path / "sweep" / str(seed), seed=seed, final=evaluation(100, acc))
    failed = write_run(tmp_path / "sweep" / "2", seed=2, status="failed", error="RuntimeError: CUDA out of memory")
    diverged = write_run(
        tmp_path / "sweep" / "3", seed=3, status="diverged", error="diverged at step 50: loss/total is nan"
    )
    interrupted = write_run(
        tmp_path / "sweep" / "4",
        seed=4,
        status="interrupted",
        error="interrupted by SIGTERM at step 50; checkpoint written",
    )
    killed = write_run(tmp_path / "sweep" / "5", seed=5, status="unfinished")
    # A summary that says finished but holds a non-finite number is no result either.
    nan = write_run(tmp_path / "sweep" / "6", seed=6, final=evaluation(100, float("nan")))
    # Another task has no finished run at all.
    lone = write_run(tmp_path / "sweep" / "7", source="dslr", seed=0, status="diverged", error="diverged at step 10")
    out = report(tmp_path / "sweep", "--csv", tmp_path / "t.csv", capsys=capsys)
    table = text_table(out)

    flags = " †1 failed §2 diverged ¶1 interrupted ‡1 unfinished"
    assert table[(None, "amazon→webcam")] == {"λ=0.1": cell_text(values, 2) + flags}
    assert table[(None, "dslr→webcam")] == {"λ=0.1": "— §1 diverged"}
    assert table[(None, "average")] == {"λ=0.1": f"{100 * statistics.mean(values):.1f} [1/2 tasks]"}
    notes = out[out.index("Legend:") :]
    for heading, paths in (
        ("Failed runs (1):", [failed]),
        ("Diverged runs (3):", [diverged, nan, lone]),
        ("Interrupted runs (1):", [interrupted]),
        ("Unfinished runs (1):", [killed]),
    ):
        listed = notes[notes.index(heading) :].split("\n\n")[0].splitlines()[1:]
        assert len(listed) == len(paths) and all(str(p) in line for p, line in zip(paths, listed)), listed
    assert "final.target/acc is nan" in notes and "diverged at step 50: loss/total is nan" in notes
    assert "SIGTERM at step 50" in notes and "no summary.json" in notes
    for word in ("failed:", "diverged:", "interrupted:", "unfinished:"):
        assert word in notes.split("\n\n")[0]  # each flag in the legend

    row = next(r for r in read_csv(tmp_path / "t.csv") if r["task"] == "amazon→webcam")
    assert float(row["mean"]) == pytest.approx(statistics.mean(values)) and row["seeds"] == "0 1"
    counts = [row[k] for k in ("n", "n_failed", "n_diverged", "n_interrupted", "n_unfinished")]
    assert counts == ["2", "1", "2", "1", "1"]


def test_group_by_turns_a_key_into_row_groups(tmp_path, capsys):
    rng = np.random.default_rng(0)
    accs: dict = {}
    for job, (lr, method, (source, target), seed) in enumerate(
        (lr, m, t, s)
        for lr in ("0.003", "0.1")
        for m in ("source_only", "dann")
        for t in OFFICE_TASKS[:2]
        for s in (0, 1)
    ):
        acc = round(float(rng.uniform(0.55, 0.95)), 4)
        write_run(
            tmp_path / str(job),
            method=method,
            source=source,
            target=target,
            seed=seed,
            overrides=(f"optim.optimizer.lr={lr}",),
            final=evaluation(100, acc),
        )
        accs.setdefault((lr, method, f"{source}→{target}"), []).append(acc)

    plain = text_table(report(tmp_path, capsys=capsys))  # both vary: combinations as columns
    assert list(plain[(None, "amazon→webcam")]) == [
        f"{m} optim.optimizer.lr={lr}" for m in ("source_only", "dann") for lr in ("0.003", "0.1")
    ]
    by_lr = text_table(report(tmp_path, "--group-by", "optim.optimizer.lr", "--csv", tmp_path / "t.csv", capsys=capsys))
    by_method = text_table(report(tmp_path, "--group-by", "method.name", capsys=capsys))
    for (lr, method, task), values in accs.items():
        assert by_lr[(f"office31, optim.optimizer.lr={lr}", task)][method] == cell_text(values)
        assert by_method[(f"office31, {method}", task)][f"optim.optimizer.lr={lr}"] == cell_text(values)
        assert plain[(None, task)][f"{method} optim.optimizer.lr={lr}"] == cell_text(values)
    assert {group for group, _ in by_lr} == {"office31, optim.optimizer.lr=0.003", "office31, optim.optimizer.lr=0.1"}
    rows = read_csv(tmp_path / "t.csv")
    assert {(r["optim.optimizer.lr"], r["method"], r["task"]) for r in rows if r["row"] == "task"} == set(accs)

    result = _report_cli(str(tmp_path), "--group-by", "optim.lr", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: --group-by optim.lr: not a config key")
    assert "optim.optimizer.lr" in result.stderr and "Traceback" not in result.stderr


def test_keys_that_the_method_determines_are_not_labels(tmp_path, capsys):
    values = office_grid(tmp_path / "sweep", methods=("source_only", "dann"))
    # The configs do differ in more than the method: dann's own keys.
    summaries = [json.loads(path.read_text()) for path in (tmp_path / "sweep").glob("*/summary.json")]
    configs = {s["method"]: s["config"]["method"] for s in summaries}
    assert {"lambda_schedule"} <= set(configs["dann"]) - set(configs["source_only"])
    table = text_table(report(tmp_path / "sweep", capsys=capsys))
    assert list(table[(None, "amazon→webcam")]) == ["source_only", "dann"]  # not method.lambda_schedule.gamma=…

    # A dann key that varies among dann runs is a label again, where the method has it.
    for seed, acc in enumerate([0.61, 0.65, 0.63]):
        write_run(
            tmp_path / "sweep" / f"gamma5-{seed}",
            seed=seed,
            overrides=("method.lambda_schedule.gamma=5",),
            final=evaluation(100, acc),
        )
    table = text_table(report(tmp_path / "sweep", capsys=capsys))
    assert list(table[(None, "amazon→webcam")]) == [
        "source_only",
        "dann method.lambda_schedule.gamma=5",
        "dann method.lambda_schedule.gamma=10",
    ]
    assert table[(None, "amazon→webcam")]["dann method.lambda_schedule.gamma=5"] == cell_text([0.61, 0.65, 0.63])
    assert table[(None, "amazon→webcam")]["dann method.lambda_schedule.gamma=10"] == cell_text(
        values[("amazon", "webcam", "dann")]
    )


def test_a_summary_without_config_is_identified_by_hydras_copy(tmp_path, capsys):
    write_run(tmp_path / "0", seed=0, final=evaluation(100, 0.70))
    write_run(tmp_path / "1", seed=1, final=evaluation(100, 0.74), with_config=False)
    write_run(
        tmp_path / "2", seed=0, final=evaluation(100, 0.90), with_config=False, overrides=("optim.optimizer.lr=0.1",)
    )
    # Hydra's copy is unresolved; an interpolation only Hydra can resolve is tolerated.
    hydra_copy = tmp_path / "1" / ".hydra" / "config.yaml"
    assert "${oc.env:DANN_DATA,./data}" in hydra_copy.read_text()
    hydra_copy.write_text(hydra_copy.read_text().replace("${oc.env:DANN_DATA,./data}", "${hydra:runtime.cwd}/data"))
    table = text_table(report(tmp_path, capsys=capsys))
    assert table == {
        (None, "amazon→webcam"): {
            "optim.optimizer.lr=0.01": cell_text([0.70, 0.74]),
            "optim.optimizer.lr=0.1": cell_text([0.90], 2),
        }
    }


def test_select_any_recorded_criterion(tmp_path, capsys):
    for seed, acc in enumerate([0.66, 0.68]):
        path = write_run(tmp_path / str(seed), seed=seed, final=evaluation(100, 0.5)) / "summary.json"
        summary = json.loads(path.read_text())
        summary["selection"]["last_5_mean"] = evaluation(100, acc)  # a criterion added after this report
        path.write_text(json.dumps(summary))
    out = report(tmp_path, "--select", "last_5_mean", capsys=capsys)
    assert text_table(out) == {(None, "amazon→webcam"): {"λ=0.1": cell_text([0.66, 0.68])}}
    assert "selection.last_5_mean" in out.splitlines()[0]
    result = _report_cli(str(tmp_path), "--select", "best_ever", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: --select best_ever: no finished run has selection.best_ever")
    assert "final, last_5_mean, oracle, source_val" in result.stderr


@pytest.mark.slow
def test_a_real_lr_sweep_is_two_cells(tmp_path, capsys):
    result = run_cli(
        "-m",
        "optim.optimizer.lr=0.003,0.1",
        "seed=0,1",
        *SHORT_RUN,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    sweep = only(tmp_path.glob("multirun/*/*"))
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert sorted((s["config"]["optim"]["optimizer"]["lr"], s["seed"], s["status"]) for s in summaries) == [
        (0.003, 0, "finished"),
        (0.003, 1, "finished"),
        (0.1, 0, "finished"),
        (0.1, 1, "finished"),
    ]
    table = text_table(report(sweep, capsys=capsys))
    assert table == {
        (None, "moons→moons_rotated"): {
            f"optim.optimizer.lr={lr}": cell_text(
                [s["final"]["target/acc"] for s in summaries if s["config"]["optim"]["optimizer"]["lr"] == lr]
            )
            for lr in (0.003, 0.1)
        }
    }


def _report_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dann.report", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("problem", ["no runs", "invalid json", "missing field", "no config", "bad reference"])
def test_errors_name_the_file_and_exit_2_without_a_traceback(tmp_path, problem):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    args = [str(sweep)]
    if problem == "no runs":
        (sweep / "notes.txt").write_text("nothing here\n")
        named, says = str(sweep), "no run directory"
    elif problem == "invalid json":  # the only run: beside others, it is left out and named (test below)
        broken = write_run(sweep / "1") / "summary.json"
        broken.write_text(broken.read_text()[:40])  # cut short
        named, says = str(broken), "not valid JSON"
    elif problem == "missing field":
        path = write_run(sweep / "0") / "summary.json"
        summary = json.loads(path.read_text())
        del summary["target"]
        path.write_text(json.dumps(summary))
        named, says = str(path), "missing required field target"
    elif problem == "no config":
        run_dir = write_run(sweep / "0", with_config=False)
        (run_dir / ".hydra" / "config.yaml").unlink()
        named, says = str(run_dir / "summary.json"), "no config"
    else:
        write_run(sweep / "0")
        reference = tmp_path / "refs.yaml"
        reference.write_text(
            "citations: {x: X}\nresults:\n  - {dataset: office31, method: dann, value: 0.5, cite: x}\n"
        )
        args += ["--reference", str(reference)]
        named, says = f"{reference}: results[0]", "missing required fields source, target, backbone"
    result = _report_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and named in result.stderr and says in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def write_analysis(run_dir: Path, pad: float, step: int = 100, target_acc: float = 0.7) -> None:
    """analysis.json as dann.analyze writes it: the fields the report reads (tests/analyze checks the writer)."""
    analysis = {"checkpoint_step": step, "target_acc": target_acc, "pad": {"features": pad, "raw": 0.05}}
    (run_dir / "analysis.json").write_text(json.dumps(analysis))


def test_pad_from_dann_analyze_is_tabulated_like_any_metric(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for method, pads in (("source_only", (0.9, 1.1)), ("dann", (0.4, 0.6))):
        for seed, pad in enumerate(pads):
            run_dir = write_run(sweep / f"{method}-{seed}", method=method, seed=seed, final=evaluation(100, 0.7))
            write_analysis(run_dir, pad)
    table = text_table(report(sweep, "--metric", "pad", capsys=capsys))
    # Shown as they are (a distance in [0, 2]), not in %.
    assert table[(None, "amazon→webcam")] == {"source_only": "1.000 ± 0.141 (2)", "dann": "0.500 ± 0.141 (2)"}
    raw = text_table(report(sweep, "--metric", "pad_raw", capsys=capsys))
    assert raw[(None, "amazon→webcam")]["dann"] == "0.050 ± 0.000 (2)"


@pytest.mark.parametrize("problem", ["missing", "stale", "not final"])
def test_pad_belongs_to_the_runs_final_checkpoint_or_is_not_shown(tmp_path, problem):
    run_dir = write_run(tmp_path / "sweep" / "run", final=evaluation(100, 0.7))
    if problem != "missing":
        write_analysis(run_dir, 0.5, step=50 if problem == "stale" else 100)  # stale: of an earlier training
    args = ["--select", "source_val"] if problem == "not final" else []
    result = _report_cli(str(tmp_path / "sweep"), "--metric", "pad", *args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    expected = {
        "missing": "analysis.json: missing; run `python -m dann.analyze",
        "stale": "analysis.json: analyses step 50 with target accuracy 0.7, but summary.json's final evaluation",
        "not final": "error: --metric pad is measured by dann.analyze on the final checkpoint; use --select final",
    }[problem]
    assert expected in result.stderr


# --- inputs the report must not trust (issue 16) ---------------------------------------------------


def edit_summary(run_dir: Path, edit) -> Path:
    """Change a written summary.json in place: `edit(summary)` mutates the dict."""
    path = run_dir / "summary.json"
    summary = json.loads(path.read_text())
    edit(summary)
    path.write_text(json.dumps(summary))
    return run_dir


def section(out: str, heading: str) -> list[str]:
    """The items listed under a heading of the notes."""
    block = out[out.index(heading) :].split("\n\n")[0]
    return [line.strip() for line in block.splitlines()[1:]]


def test_report_checks_its_specs_are_dann_runs():
    from dann.config.validate import declaration_of
    from dann.report.collect import READ_BACK, RUNTIME
    from dann.training.precision import PRECISIONS

    config = OmegaConf.to_container(compose_config(), resolve=True)
    for key in ("seed", "lambda", "dataset.name", "method.name"):  # read back as dann.run checked them
        assert READ_BACK[key] == declaration_of(config, key).spec, key
    assert set(RUNTIME["precision"].choices) == set(PRECISIONS) - {"auto"}


def test_runs_of_one_config_on_different_runtimes_never_share_a_cell(tmp_path, capsys):
    # trainer.precision=auto: bf16 on a GPU, fp32 on a CPU; the same config, two computations.
    runtimes = {
        "gpu": {"precision": "bf16", "channels_last": True, "compile": False, "device": "cuda:0"},
        "cpu": {"precision": "fp32", "channels_last": False, "compile": False, "device": "cpu"},
    }
    accs = {"gpu": [0.80, 0.82], "cpu": [0.70, 0.72]}
    for where, runtime in runtimes.items():
        for seed, acc in enumerate(accs[where]):
            run_dir = write_run(tmp_path / f"{where}{seed}", seed=seed, final=evaluation(100, acc))
            edit_summary(run_dir, lambda s, runtime=runtime: s.update(runtime=runtime))
    # Killed before its summary: its configuration's runs agree on nothing, so it is in neither cell…
    write_run(tmp_path / "killed", seed=2, status="unfinished")
    # … but on another task, where they all ran on the CPU, it is that cell's.
    cpu_run = write_run(tmp_path / "dslr0", source="dslr", seed=0, final=evaluation(100, 0.6))
    edit_summary(cpu_run, lambda s: s.update(runtime=runtimes["cpu"]))
    write_run(tmp_path / "dslr1", source="dslr", seed=1, status="unfinished")
    table = text_table(report(tmp_path, "--csv", tmp_path / "t.csv", capsys=capsys))
    gpu = "runtime.channels_last=true runtime.compile=false runtime.device=cuda runtime.precision=bf16"
    cpu = "runtime.channels_last=false runtime.compile=false runtime.device=cpu runtime.precision=fp32"
    assert table[(None, "amazon→webcam")] == {
        gpu: cell_text(accs["gpu"]),
        cpu: cell_text(accs["cpu"]),
        "(unset)": "— ‡1 unfinished",
    }
    assert table[(None, "dslr→webcam")] == {gpu: "—", cpu: cell_text([0.6], 2) + " ‡1 unfinished", "(unset)": "—"}
    rows = read_csv(tmp_path / "t.csv")
    assert sorted((r["runtime.precision"], r["runtime.device"], r["n"]) for r in rows if r["n"] not in ("0", "")) == [
        ("bf16", "cuda", "2"),
        ("fp32", "cpu", "1"),
        ("fp32", "cpu", "2"),
    ]


def test_a_run_launched_into_a_sweeps_directory_hides_none_of_the_sweep(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    values = office_grid(sweep, methods=("dann",), seeds=(0, 1))
    # By mistake, a single run into the sweep's own directory: its summary.json sits above the jobs.
    write_run(sweep, source="dslr", target="webcam", seed=5, final=evaluation(100, 0.9))
    out = report(sweep, capsys=capsys)
    table = text_table(out)
    for source, target in OFFICE_TASKS:
        accs = values[(source, target, "dann")] + ([0.9] if (source, target) == ("dslr", "webcam") else [])
        assert table[(None, f"{source}→{target}")] == {"λ=0.1": cell_text(accs)}
    nested = section(out, "Check:")
    assert len(nested) == 2 * len(OFFICE_TASKS) and all(f"inside the run directory {sweep}" in n for n in nested)


def test_stored_configs_never_resolve_the_readers_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2-secret")
    write_run(tmp_path / "0", seed=0, final=evaluation(100, 0.7))
    leaky = write_run(tmp_path / "1", seed=1, final=evaluation(100, 0.8), with_config=False)
    hydra_copy = leaky / ".hydra" / "config.yaml"
    hydra_copy.write_text(re.sub(r"(?m)^lambda: .*$", "lambda: ${oc.env:SECRET_TOKEN}", hydra_copy.read_text()))
    # summary.json's config: a string that looks like an interpolation is a string.
    edit_summary(
        write_run(tmp_path / "2", seed=2, final=evaluation(100, 0.9)),
        lambda s: s["config"]["method"].update(name="${oc.env:SECRET_TOKEN}"),
    )
    out = report(tmp_path, "--csv", tmp_path / "t.csv", "--markdown", tmp_path / "t.md", capsys=capsys)
    for text in (out, (tmp_path / "t.csv").read_text(), (tmp_path / "t.md").read_text()):
        assert "hunter2" not in text
    left_out = section(out, "Left out")
    assert left_out == [
        f"{hydra_copy}: lambda: expected a number >= 0 (the final adaptation weight λ, where its schedule ends), "
        "got '${oc.env:SECRET_TOKEN}'"
    ]
    assert text_table(out) == {
        (None, "amazon→webcam"): {"dann": cell_text([0.7]), "${oc.env:SECRET_TOKEN}": cell_text([0.9])}
    }


def test_a_yaml_alias_bomb_in_a_stored_config_is_refused_unexpanded(tmp_path, capsys):
    write_run(tmp_path / "0", seed=0, final=evaluation(100, 0.7))
    bomb = write_run(tmp_path / "1", seed=1, final=evaluation(100, 0.8), with_config=False)
    hydra_copy = bomb / ".hydra" / "config.yaml"
    # Small enough to expand before the fix (10**5 values), the shape of one that never ends.
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)
    ]
    hydra_copy.write_text(hydra_copy.read_text() + "\n".join(laughs) + "\n")
    out = report(tmp_path, capsys=capsys)
    assert text_table(out) == {(None, "amazon→webcam"): {"λ=0.1": cell_text([0.7])}}
    refused = f"{hydra_copy}: holds a YAML anchor or alias (&, *), which the report does not read"
    assert section(out, "Left out") == [refused]


def test_every_cell_is_escaped_and_no_csv_cell_is_a_formula(tmp_path, capsys):
    name = '=HYPERLINK("http://evil")|x\ny'
    write_run(tmp_path / "0", seed=0, final=evaluation(100, 0.7))
    edit_summary(
        write_run(tmp_path / "1", seed=0, final=evaluation(100, 0.8)),
        lambda s: s["config"]["method"].update(name=name),
    )
    # A real negative number in a key that labels columns stays a number in the CSV.
    edit_summary(
        write_run(tmp_path / "2", seed=0, final=evaluation(100, 0.9)),
        lambda s: s["config"]["optim"]["optimizer"].update(momentum=-0.5),
    )
    files = {kind: tmp_path / f"t.{kind}" for kind in ("md", "csv", "tex")}
    out = report(tmp_path, "--markdown", files["md"], "--csv", files["csv"], "--latex", files["tex"], capsys=capsys)
    assert "|x\\ny" in out  # one line: the line break written as \n
    table_lines = [line for line in files["md"].read_text().splitlines() if line.startswith("|")]
    cells = [[c for c in re.split(r"(?<!\\)\|", line.strip("|"))] for line in table_lines]
    assert len(table_lines) == 3 and all(len(row) == 4 for row in cells), table_lines
    latex = files["tex"].read_text()
    body = latex[latex.index("\\begin{tabular}") : latex.index("\\end{tabular}")]
    rows = [line for line in body.splitlines() if line.endswith("\\\\")]
    assert len(rows) == 2 and all(row.count("&") == 3 for row in rows), rows
    assert "\\textbar{}x\\textbackslash{}ny" in body
    with open(files["csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"dann", "'" + name}
    assert {r["optim.optimizer.momentum"] for r in rows} == {"-0.5", "0.9"}


def test_a_malformed_reference_file_is_one_line(tmp_path):
    write_run(tmp_path / "sweep" / "0")
    reference = tmp_path / "refs.yaml"
    for body, says in (
        (
            "citations: {x: X}\nresults:\n  - {dataset: office31, source: amazon, target: webcam, "
            "method: [dann], backbone: alexnet, value: 0.5, cite: x}\n",
            "results[0]: method must be a name (a string), got ['dann']",
        ),
        ("\xff\xfe not text", "cannot be read"),
        ("citations: &c {x: X}\nresults: []\naverages: *c\n", "holds a YAML anchor or alias"),
    ):
        reference.write_bytes(body.encode("latin-1"))
        result = _report_cli(str(tmp_path / "sweep"), "--reference", str(reference), cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"error: {reference}") and says in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_impossible_numbers_leave_their_run_out_named(tmp_path):
    sweep = tmp_path / "sweep"
    for seed, acc in enumerate([0.70, 0.74]):
        write_run(sweep / f"good{seed}", seed=seed, final=evaluation(100, acc))
        write_analysis(sweep / f"good{seed}", 0.5, target_acc=acc)
    bad = {
        "high": (
            lambda s: s["final"].update({"target/acc": 1.5}),
            "final.target/acc: expected a fraction in [0, 1], got 1.5",
        ),
        "negative": (lambda s: s["final"].update({"target/acc": -0.3}), "got -0.3"),
        "huge": (lambda s: s["final"].update({"target/acc": 1e300}), "got 1e+300"),
        "text": (lambda s: s["final"].update({"target/acc": "0.9"}), "final.target/acc is not a number: '0.9'"),
        "seed list": (lambda s: s.update(seed=[1, 2]), "seed: expected an integer in [0, 4294967295]"),
        "lambda text": (lambda s: s["config"].update({"lambda": "big"}), "config.lambda: expected a number >= 0"),
        "no source": (lambda s: s["config"]["dataset"].pop("source"), "missing required field dataset.source"),
    }
    for seed, (name, (edit, _)) in enumerate(bad.items(), start=2):
        edit_summary(write_run(sweep / name, seed=seed, final=evaluation(100, 0.72)), edit)
    result = _report_cli(str(sweep), cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert text_table(result.stdout) == {(None, "amazon→webcam"): {"λ=0.1": cell_text([0.70, 0.74])}}
    left_out = section(result.stdout, "Left out")
    assert len(left_out) == len(bad)
    for name, (_, says) in bad.items():
        assert any(line.startswith(str(sweep / name)) and says in line for line in left_out), (name, left_out)
    # The proxy A-distance: a NaN is no result.
    write_analysis(sweep / "good1", float("nan"), target_acc=0.74)
    result = _report_cli(str(sweep), "--metric", "pad", cwd=tmp_path)
    assert result.returncode == 0 and text_table(result.stdout) == {(None, "amazon→webcam"): {"λ=0.1": "0.500 (1)"}}
    assert any(
        str(sweep / "good1" / "analysis.json") in line and "nan" in line for line in section(result.stdout, "Left out")
    )


def test_a_finished_run_without_dataset_source_is_left_out_and_named(tmp_path):
    from dann.runs.launch import run

    # `python -m dann.run '~dataset.source'` finishes on the moons (the dataset's default domain); run here, in
    # this process: the report reads only the run's summary.json, which `run` writes as the command does.
    assert run(compose_config("~dataset.source", *SHORT_RUN), tmp_path / "run")["status"] == "finished"
    assert "source" not in json.loads((tmp_path / "run" / "summary.json").read_text())["config"]["dataset"]
    write_run(tmp_path / "other", seed=0, final=evaluation(100, 0.7))
    result = _report_cli(str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert text_table(result.stdout) == {(None, "amazon→webcam"): {"λ=0.1": cell_text([0.7])}}
    assert section(result.stdout, "Left out") == [
        f"{tmp_path / 'run' / 'summary.json'}: missing required field dataset.source"
    ]


def unavailable_sweep(root: Path) -> Path:
    """Two λ, two seeds each, with selection.iwv; in one run of λ=0.1 iwv was never finite."""
    for job, (lam, seed) in enumerate((lam, seed) for lam in (0.1, 1.0) for seed in (0, 1)):
        final = evaluation(100, 0.6 + 0.1 * job)
        run_dir = write_run(root / str(job), lam=lam, seed=seed, final=final)
        if (lam, seed) == (0.1, 1):
            reason = "select/iwv was nan at every evaluation (source validation weights degenerate)"
            edit_summary(run_dir, lambda s: s.update(selection_unavailable={"iwv": reason}))
        else:
            edit_summary(
                run_dir,
                lambda s, job=job: s["selection"].update(iwv=evaluation(100, 0.6 + 0.1 * job) | {"select/iwv": -job}),
            )
    return root


def test_a_criterion_without_a_finite_value_is_flagged_never_averaged_over_the_rest(tmp_path, capsys):
    sweep = unavailable_sweep(tmp_path / "sweep")
    out = report(sweep, "--select", "iwv", capsys=capsys)
    assert text_table(out)[(None, "amazon→webcam")] == {
        "λ=0.1": cell_text([0.6], 2) + " ◊1 unavailable",
        "λ=1": cell_text([0.8, 0.9]),
    }
    assert section(out, "Unavailable runs (1):") == [
        f"{sweep / '1'} (office31 amazon→webcam, dann λ=0.1, seed 1): selection.iwv unavailable: "
        "select/iwv was nan at every evaluation (source validation weights degenerate)"
    ]
    out = report(sweep, "--select", "all", "--csv", tmp_path / "s.csv", capsys=capsys)
    iwv = next(line for line in out.splitlines() if " iwv " in f" {line} ")
    assert "◊1 unavailable" in iwv and "λ=0.1" in iwv  # iwv picks λ=0.1 (−0 > −2): flagged
    listed = section(out, "iwv: non-finite or degenerate in 1 run, not candidates for it:")
    assert listed == [
        f"{sweep / '1'} (office31 amazon→webcam, λ=0.1, seed 1): "
        "select/iwv was nan at every evaluation (source validation weights degenerate)"
    ]
    row = next(r for r in read_csv(tmp_path / "s.csv") if r["criterion"] == "iwv")
    assert row["n"] == "1" and row["n_unavailable"] == "1"


def test_a_pick_among_partly_non_finite_evaluations_is_flagged_and_a_malformed_record_left_out(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for job, (lam, seed) in enumerate((lam, seed) for lam in (0.1, 1.0) for seed in (0, 1)):
        run_dir = write_run(sweep / str(job), lam=lam, seed=seed, final=evaluation(100, 0.6 + 0.1 * job))
        edit_summary(
            run_dir,
            lambda s, job=job: s["selection"].update(iwv=evaluation(100, 0.6 + 0.1 * job) | {"select/iwv": -job}),
        )
    # In seed 1 of λ=0.1, iwv was NaN at steps 50 and 60: its pick is the best of the finite evaluations.
    edit_summary(sweep / "1", lambda s: s.update(selection_nonfinite_steps={"iwv": [50, 60]}))
    out = report(sweep, "--select", "iwv", "--csv", tmp_path / "t.csv", capsys=capsys)
    assert text_table(out)[(None, "amazon→webcam")] == {
        "λ=0.1": cell_text([0.6, 0.7]) + " △1 partly non-finite",  # averaged in, and flagged
        "λ=1": cell_text([0.8, 0.9]),
    }
    assert any(line.startswith("△k partly non-finite: in k runs averaged in") for line in section(out, "Legend:"))
    assert section(out, "Partly non-finite runs, averaged in (1):") == [
        f"{sweep / '1'} (office31 amazon→webcam, dann λ=0.1, seed 1): selection.iwv: non-finite at steps 50, 60"
    ]
    rows = {r["column"]: r for r in read_csv(tmp_path / "t.csv") if r["row"] == "task"}
    partly = (rows["λ=0.1"]["n"], rows["λ=0.1"]["n_partly_nonfinite"], rows["λ=1"]["n_partly_nonfinite"])
    assert partly == ("2", "1", "0")

    out = report(sweep, "--select", "all", "--csv", tmp_path / "s.csv", capsys=capsys)
    iwv = next(line for line in out.splitlines() if " iwv " in f" {line} ")
    assert "λ=0.1" in iwv and cell_text([0.6, 0.7]) + " △1 partly non-finite" in iwv  # iwv picks λ=0.1 (−0.5 > −2.5)
    assert section(out, "iwv: non-finite at some evaluations in 1 run, picked among the others:") == [
        f"{sweep / '1'} (office31 amazon→webcam, λ=0.1, seed 1): non-finite at steps 50, 60"
    ]
    picks = {r["criterion"]: r for r in read_csv(tmp_path / "s.csv")}
    assert (picks["iwv"]["n_partly_nonfinite"], picks["oracle"]["n_partly_nonfinite"]) == ("1", "0")

    # A record of another shape is no run summary: the run is left out and named, the others reported.
    for name, steps in (("text", {"iwv": "50"}), ("bools", {"iwv": [True]}), ("list", [50])):
        run_dir = write_run(sweep / name, lam=1.0, seed=7, final=evaluation(100, 0.5))
        edit_summary(run_dir, lambda s, steps=steps: s.update(selection_nonfinite_steps=steps))
    result = _report_cli(str(sweep), "--select", "source_val", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert sorted(section(result.stdout, "Left out")) == [
        f"{sweep / name / 'summary.json'}: selection_nonfinite_steps: expected a mapping of criterion → "
        f"a non-empty list of steps, got {got}"
        for name, got in (("bools", "{'iwv': [True]}"), ("list", "[50]"), ("text", "{'iwv': '50'}"))
    ]
