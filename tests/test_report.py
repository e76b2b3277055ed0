"""`python -m dann.report`: result tables from run directories.

Run directories are written here in the exact format dann.run leaves them (`.hydra/config.yaml`
at start, `summary.json` at the end); one test makes real runs with `dann.run.run`. Expected
numbers are computed in the tests from the values written, independently of the report.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, compose_config
from dann.report import main

REFERENCES = REPO / "experiments" / "references.yaml"
OFFICE_TASKS = [("amazon", "webcam"), ("dslr", "webcam"), ("webcam", "dslr")]


# --- run directories in dann.run's format -------------------------------------------------------


def evaluation(step: int, target_acc: float, source_acc: float = 0.95) -> dict:
    """One evaluation record, keys in the order dann.train writes them."""
    return {"step": step, "source/acc": source_acc, "target/acc": target_acc,
            "target/acc_per_class_mean": round(target_acc - 0.02, 6)}


def write_config(run_dir: Path, *, method: str, lam, dataset: str, source: str, target: str, seed: int,
                 steps: int = 100, protocol: str = "inductive") -> None:
    """`.hydra/config.yaml`, which Hydra writes when the job starts (the keys the report reads, and a few more)."""
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"seed: {seed}\nlambda: {lam}\n"
        f"dataset:\n  name: {dataset}\n  source: {source}\n  target: {target}\n"
        f"  root: ${{oc.env:DANN_DATA,./data}}\n  protocol: {protocol}\n"
        f"method:\n  name: {method}\n"
        f"trainer:\n  steps: {steps}\n  batch_size: 32\n  eval_every: 50\n")


def write_run(run_dir: Path, *, method: str = "dann", lam: float = 0.1, dataset: str = "office31",
              source: str = "amazon", target: str = "webcam", seed: int = 0, steps: int = 100,
              status: str = "finished", final: dict | None = None, source_val: dict | None = None,
              oracle: dict | None = None, error: str = "RuntimeError: CUDA out of memory",
              protocol: str = "inductive") -> Path:
    """A run directory as dann.run leaves it. status 'unfinished': the config only (killed mid-run)."""
    write_config(run_dir, method=method, lam=lam, dataset=dataset, source=source, target=target, seed=seed,
                 steps=steps, protocol=protocol)
    if status == "unfinished":
        return run_dir
    summary = {"method": method, "lambda": lam, "dataset": dataset, "source": source, "target": target,
               "seed": seed, "steps": steps, "protocol": protocol, "status": "failed"}
    if status == "finished":
        final = final or evaluation(steps, 0.8)
        summary |= {"final": final,
                    "selection": {"source_val": source_val or final, "oracle": oracle or final}}
        summary["status"] = "finished"
    else:
        summary["status"] = status
        summary["error"] = error
    summary["wall_time_s"] = 12.5
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return run_dir


def office_grid(root: Path, seed: int = 0, methods=("source_only", "dann"), seeds=(0, 1, 2), lam: float = 0.1,
                skip=()) -> dict:
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
                write_run(root / str(job), method=method, lam=lam, source=source, target=target, seed=s,
                          final=evaluation(100, acc))
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
    for line in lines[start + 2:]:
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
        assert (row["dataset"], row["lambda"], row["metric"], row["select"]) == ("office31", "0.1", "target/acc", "final")
    averages = {r["method"]: r for r in rows if r["row"] == "average"}
    assert float(averages["dann"]["mean"]) == pytest.approx(
        statistics.mean(statistics.mean(values[(s, t, "dann")]) for s, t in OFFICE_TASKS))
    assert (averages["dann"]["tasks_averaged"], averages["dann"]["tasks_total"]) == ("3", "3")


def test_failed_unfinished_and_missing_runs_are_flagged_and_never_averaged_in(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    # Three seeds is the norm. dann: seed 2 of A→W failed, seed 2 of D→W was killed;
    # target_only: seed 2 of W→D never ran; source_only never ran W→D at all.
    values = office_grid(sweep, methods=("source_only", "dann", "target_only"),
                         skip={("amazon", "webcam", "dann", 2), ("dslr", "webcam", "dann", 2),
                               ("webcam", "dslr", "target_only", 2)}
                         | {("webcam", "dslr", "source_only", s) for s in range(3)})
    failed = write_run(sweep / "90", source="amazon", target="webcam", seed=2, status="failed",
                       error="RuntimeError: CUDA out of memory")
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

    notes = out[out.index("Legend:"):]
    assert "* fewer seeds than the table's usual 3" in notes
    failed_notes = notes[notes.index("Failed runs (1):"):].splitlines()[1]
    assert str(failed) in failed_notes and "seed 2" in failed_notes and "RuntimeError: CUDA out of memory" in failed_notes
    unfinished_notes = notes[notes.index("Unfinished runs (1):"):].splitlines()[1]
    assert str(killed) in unfinished_notes and "no summary.json" in unfinished_notes
    missing = notes[notes.index("Missing seeds"):]
    assert "office31 webcam→dslr target_only λ=0.1: seed 2 never run" in missing
    assert "webcam→dslr dann" not in missing and "amazon→webcam dann" not in missing

    rows = {(r["task"], r["method"]): r for r in read_csv(tmp_path / "t.csv")}
    assert (rows[("amazon→webcam", "dann")]["n"], rows[("amazon→webcam", "dann")]["n_failed"]) == ("2", "1")
    assert (rows[("dslr→webcam", "dann")]["n"], rows[("dslr→webcam", "dann")]["n_unfinished"]) == ("2", "1")
    assert float(rows[("amazon→webcam", "dann")]["mean"]) == pytest.approx(
        statistics.mean(values[("amazon", "webcam", "dann")]))
    assert rows[("webcam→dslr", "source_only")]["mean"] == "" and rows[("webcam→dslr", "source_only")]["n"] == "0"


def test_an_unfinished_run_lands_in_its_cell_through_domain_aliases(tmp_path, capsys):
    for seed, acc in enumerate([0.71, 0.75]):
        write_run(tmp_path / str(seed), dataset="mnist_mnistm", source="mnist", target="mnistm", seed=seed,
                  lam=1.0, final=evaluation(100, acc))
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
    write_run(tmp_path / "sweep2" / "1", source="amazon", target="amazon", status="skipped",
              error="ConfigError: dataset.target: the same domain as dataset.source")
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
    # One method: λ columns by default, in increasing order.
    assert list(table[(None, "amazon→webcam")]) == ["λ=0.1", "λ=1"]
    assert table[(None, "dslr→webcam")]["λ=1"] == cell_text(v1[("dslr", "webcam", "dann")])
    assert table[(None, "dslr→webcam")]["λ=0.1"] == cell_text(v01[("dslr", "webcam", "dann")])

    office_grid(one_method, methods=("source_only",), lam=1.0, seed=3)
    # Both vary: each column is a combination, ordered by the chosen key.
    by_lambda = text_table(report(one_method, "--columns", "lambda", capsys=capsys))
    assert list(by_lambda[(None, "amazon→webcam")]) == ["dann λ=0.1", "source_only λ=1", "dann λ=1"]
    by_method = text_table(report(one_method, capsys=capsys))  # default: several methods → method
    assert list(by_method[(None, "amazon→webcam")]) == ["source_only λ=1", "dann λ=0.1", "dann λ=1"]
    assert by_method[(None, "amazon→webcam")]["dann λ=1"] == cell_text(v1[("amazon", "webcam", "dann")])


def test_select_source_val_and_the_oracle_is_labelled(tmp_path, capsys):
    picks = {"final": [0.70, 0.74], "source_val": [0.80, 0.78], "oracle": [0.91, 0.93]}
    for seed in range(2):
        write_run(tmp_path / str(seed), seed=seed, final=evaluation(100, picks["final"][seed]),
                  source_val=evaluation(60, picks["source_val"][seed], source_acc=0.99),
                  oracle=evaluation(80, picks["oracle"][seed]))
    for select, accs in picks.items():
        md, tex = tmp_path / f"{select}.md", tmp_path / f"{select}.tex"
        args = [] if select == "final" else ["--select", select]
        out = report(tmp_path, *args, "--markdown", md, "--latex", tex, capsys=capsys)
        assert text_table(out)[(None, "amazon→webcam")] == {"λ=0.1": cell_text(accs)}
        labelled = [text.count("ORACLE") for text in (out.splitlines()[0], out, md.read_text(), tex.read_text())]
        if select == "oracle":
            assert out.startswith("ORACLE") and "task (ORACLE)" in out and "upper bound" in out.splitlines()[0]
            assert md.read_text().startswith("**ORACLE") and "\\caption{ORACLE" in tex.read_text()
            assert "task (ORACLE)" in tex.read_text()
        else:
            assert labelled == [0, 0, 0, 0]
    source_val = report(tmp_path, "--select", "source_val", capsys=capsys)
    assert "best source validation accuracy" in source_val.splitlines()[0]


def test_markdown_csv_and_latex_files(tmp_path, capsys):
    office_grid(tmp_path / "office")
    for seed, acc in enumerate([0.70, 0.74, 0.72]):
        write_run(tmp_path / "digits" / str(seed), method="dann", dataset="mnist_mnistm", source="mnist",
                  target="mnistm", seed=seed, final=evaluation(100, acc))
    md, csv_path, tex = tmp_path / "out" / "t.md", tmp_path / "out" / "t.csv", tmp_path / "out" / "t.tex"
    out = report(tmp_path, "--markdown", md, "--csv", csv_path, "--latex", tex, capsys=capsys)

    # Several datasets: rows grouped per dataset, each group with its own average when it has several tasks.
    table = text_table(out)
    assert table[("mnist_mnistm", "mnist→mnistm")]["dann"] == cell_text([0.70, 0.74, 0.72])
    assert table[("mnist_mnistm", "mnist→mnistm")]["source_only"] == "—"
    assert ("office31", "average") in table and ("mnist_mnistm", "average") not in table

    lines = [line for line in md.read_text().splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    assert cells[0] == ["task", "source_only", "dann"] and set(cells[1][1:]) == {"---:"}
    assert all(len(row) == 3 for row in cells)
    assert ["**mnist_mnistm**", "", ""] in cells and ["**office31**", "", ""] in cells
    assert ["mnist→mnistm", "—", cell_text([0.70, 0.74, 0.72])] in cells

    rows = read_csv(csv_path)
    assert len([r for r in rows if r["row"] == "task"]) == (len(OFFICE_TASKS) + 1) * 2
    assert {r["dataset"] for r in rows} == {"office31", "mnist_mnistm"}
    digits = next(r for r in rows if r["task"] == "mnist→mnistm" and r["method"] == "dann")
    assert float(digits["mean"]) == pytest.approx(0.72) and float(digits["std"]) == pytest.approx(0.02)

    latex = tex.read_text()
    body = latex[latex.index("\\begin{tabular}"):latex.index("\\end{tabular}")]
    assert "\\begin{tabular}{lcc}" in body and all(rule in body for rule in ("\\toprule", "\\midrule", "\\bottomrule"))
    assert "72.0 $\\pm$ 2.0 (3)" in body and "source\\_only" in body and "mnist$\\rightarrow$mnistm" in body
    data_rows = [line for line in body.splitlines() if line.endswith("\\\\") and not line.startswith("\\multicolumn")]
    assert len(data_rows) == 1 + len(OFFICE_TASKS) + 1 + 1  # header, office tasks, office average, digits task
    assert all(row.count("&") == 2 for row in data_rows)
    assert "\\multicolumn{3}{l}{\\textit{office31}}" in body


def test_published_numbers_beside_the_measured_columns(tmp_path, capsys):
    for seed, acc in enumerate([0.80, 0.82]):
        for source, target in OFFICE_TASKS[:2]:
            write_run(tmp_path / "office" / f"{source}{seed}", source=source, target=target, seed=seed,
                      final=evaluation(100, acc))
    for method in ("source_only", "dann"):
        write_run(tmp_path / "digits" / method, method=method, dataset="mnist_mnistm", source="mnist",
                  target="mnistm", lam=1.0, final=evaluation(100, 0.6))
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
        ("amazon→webcam", "ganin2016-office", 0.73), ("dslr→webcam", "ganin2016-office", 0.964),
        ("mnist→mnistm", "ganin2016-digits", 0.5225), ("mnist→mnistm", "ganin2016-digits", 0.7666)}

    # A reference is for target accuracy: another metric shows none, and says so.
    other = report(tmp_path, "--reference", REFERENCES, "--metric", "source/acc", capsys=capsys)
    assert "published:" not in other and "No published number" in other


@pytest.mark.slow
def test_report_on_real_runs(tmp_path, capsys):
    from dann.run import run

    summaries = {}
    for method in ("dann", "source_only"):
        for seed in (0, 1):
            run_dir = tmp_path / "runs" / f"{method}-{seed}"
            run_dir.mkdir(parents=True)
            cfg = compose_config(f"method={method}", f"seed={seed}", "logger=none", "trainer.steps=20",
                                 "trainer.eval_every=10", "trainer.log_every=10")
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


def _report_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dann.report", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("problem", ["no runs", "invalid json", "missing field", "bad reference"])
def test_errors_name_the_file_and_exit_2_without_a_traceback(tmp_path, problem):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    args = [str(sweep)]
    if problem == "no runs":
        (sweep / "notes.txt").write_text("nothing here\n")
        named, says = str(sweep), "no run directory"
    elif problem == "invalid json":
        write_run(sweep / "0")
        broken = write_run(sweep / "1") / "summary.json"
        broken.write_text(broken.read_text()[:40])  # cut short
        named, says = str(broken), "not valid JSON"
    elif problem == "missing field":
        path = write_run(sweep / "0") / "summary.json"
        summary = json.loads(path.read_text())
        del summary["target"]
        path.write_text(json.dumps(summary))
        named, says = str(path), "missing required field target"
    else:
        write_run(sweep / "0")
        reference = tmp_path / "refs.yaml"
        reference.write_text("citations: {x: X}\nresults:\n  - {dataset: office31, method: dann, value: 0.5, cite: x}\n")
        args += ["--reference", str(reference)]
        named, says = f"{reference}: results[0]", "missing required fields source, target, backbone"
    result = _report_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and named in result.stderr and says in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
