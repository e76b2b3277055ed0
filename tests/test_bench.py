"""`python -m dann.bench`, run as a user runs it, tiny: its JSON and its Markdown tables (no timing is asserted)."""

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from dann.data.stream import worker_count
from tests.helpers import REPO, cli_env

VARIANTS = {"plain", "source_only", "dann", "reference"}


def bench(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dann.bench", *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300
    )


def test_bench_times_every_variant_and_writes_json_and_markdown(tmp_path):
    tiny = ("--models", "mnist_cnn", "--steps", "2", "--warmup", "1", "--rounds", "2", "--batch-size", "4")
    tiny += ("--device", "cpu", "--threads", "1")
    result = bench(*tiny, "--json", "out.json", "--markdown", "out.md", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["device"] == "cpu" and report["torch"] == torch.__version__
    expected = {"steps": 2, "warmup": 1, "rounds": 2, "threads": 1, "malloc": "keep"}
    assert report["settings"] | expected == report["settings"]
    # The machine's load beside the numbers: (1, 5, 15)-minute load averages when the bench began and ended.
    assert [len(report["load_average"][when]) for when in ("start", "end")] == [3, 3]
    (row,) = report["results"]
    assert (row["model"], row["batch_size"], row["input_shape"]) == ("mnist_cnn", 4, [3, 28, 28])
    assert row["runtime"] == {"precision": "fp32", "channels_last": False, "compile": False}  # auto, on a CPU
    assert set(row["variants"]) == VARIANTS
    for variant in row["variants"].values():
        assert variant["steps_per_s"] > 0 and variant["peak_mib"] is None  # no CUDA: no device memory to report
        assert variant["images_per_s"] == pytest.approx(variant["steps_per_s"] * 8)
        assert variant["threads"] == 1  # --threads, as each variant's own process set it
        assert variant["cpu_ms_per_step"] == pytest.approx(1000 * variant["cpu_seconds"] / 2)
        assert variant["cpu_seconds"] > 0 and variant["faults_per_step"] >= 0
    plain, dann, reference = (row["variants"][v]["steps_per_s"] for v in ("plain", "dann", "reference"))
    assert row["dann_over_plain"] == pytest.approx(plain / dann)
    assert row["speedup_over_reference"] == pytest.approx(dann / reference)

    markdown = (tmp_path / "out.md").read_text()
    assert markdown in result.stdout  # the same tables on stdout
    assert "threads per variant: 1, malloc: keep, load average (1, 5, 15 min) at start " in markdown
    assert "| variant | steps/s | images/s | CPU ms/step | faults/step | peak MiB |" in markdown
    rows = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| mnist_cnn |")]
    assert sorted(cells[5] for cells in rows[:4]) == sorted(VARIANTS)
    cpu_ms = {cells[5]: cells[8] for cells in rows[:4]}
    assert cpu_ms == {name: f"{v['cpu_ms_per_step']:,.1f}" for name, v in row["variants"].items()}
    assert all(cells[-1] == "n/a |" for cells in rows[:4])  # peak memory on a CPU
    assert rows[4][1] == f"{row['dann_over_plain']:.3f}"  # the ratios' table


def test_bench_measures_image_decoding_per_worker_count(tmp_path):
    args = ("--models", "none", "--input", "generated", "--input-images", "12", "--workers", "0,1")
    result = bench(*args, "--batch-size", "4", "--steps", "2", "--device", "cpu", "--json", "out.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    assert [(r["workers"], r["workers_used"]) for r in report["input"]] == [(0, 0), (1, 1)]
    assert all(r["images_per_s"] > 0 and r["batch_size"] == 4 for r in report["input"])
    assert "| input workers (used) |" in result.stdout


def test_image_streams_use_at_most_half_the_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert [worker_count(n) for n in (0, 4, 8, 12)] == [0, 4, 8, 8]  # two streams share the 16 cores
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert [worker_count(n) for n in (0, 4)] == [0, 1]  # 2 cores: one worker per stream


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_sync_check_refuses_without_cuda(tmp_path):
    result = bench("--models", "mnist_cnn", "--sync-check", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--sync-check needs a CUDA device" in result.stderr


def test_bench_refuses_an_unknown_model(tmp_path):
    result = bench("--models", "vgg", cwd=tmp_path)
    assert result.returncode == 2 and "--models: unknown 'vgg'" in result.stderr
    assert str(REPO)  # run from anywhere: the bench reads the installed dann.conf


# Each refused before any model is built or any image decoded: argparse's usage line, then one error line.
BAD_ARGUMENTS = {
    "workers not numbers": (("--workers", "0,two"), "argument --workers: expected comma-separated integers >= 0"),
    "batch size 0": (("--batch-size", "0"), "argument --batch-size: expected an integer >= 1, got 0"),
    "missing input folder": (("--input", "no_such_folder"), "--input no_such_folder: no such folder"),
    "json in a missing folder": (("--json", "no_such_folder/out.json"), "--json no_such_folder/out.json: cannot write"),
    "markdown under a file": (("--markdown", "a_file/out.md"), "--markdown a_file/out.md: cannot write in a_file"),
}
# The same checks, in this process (each subprocess spends its seconds importing torch).
MORE_BAD_ARGUMENTS = {
    "negative workers": (("--workers", "0,-1"), "argument --workers: expected comma-separated integers >= 0"),
    "no rounds": (("--rounds", "0"), "argument --rounds: expected an integer >= 1, got 0"),
    "no steps": (("--steps", "0"), "argument --steps: expected an integer >= 1, got 0"),
    "tiny images": (("--input-images", "-3"), "argument --input-images: expected an integer >= 1, got -3"),
    "unknown device": (("--device", "tpu"), "argument --device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
    "markdown is a folder": (("--markdown", "a_folder"), "--markdown a_folder: is a folder"),
}
TINY = ("--models", "mnist_cnn", "--device", "cpu", "--steps", "1", "--warmup", "0", "--batch-size", "2")


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bench_refuses_a_bad_argument_in_one_line_before_it_runs(case, tmp_path):
    arguments, message = BAD_ARGUMENTS[case]
    (tmp_path / "a_file").write_text("not a folder\n")
    before = sorted(tmp_path.rglob("*"))
    result = bench(*TINY, *arguments, cwd=tmp_path)  # the last of a repeated option counts
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"python -m dann.bench: error: {message}")
    assert result.stdout == "" and sorted(tmp_path.rglob("*")) == before  # nothing benchmarked, nothing written


@pytest.mark.parametrize("case", MORE_BAD_ARGUMENTS)
def test_bench_arguments_are_checked_when_parsed(case, tmp_path, monkeypatch, capsys):
    from dann.bench import parse_args

    arguments, message = MORE_BAD_ARGUMENTS[case]
    (tmp_path / "a_folder").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        parse_args([*TINY, *arguments])
    assert exit.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"python -m dann.bench: error: {message}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_bench_refuses_cuda_on_a_machine_without_it(tmp_path):
    result = bench("--models", "mnist_cnn", "--device", "cuda", "--steps", "1", "--warmup", "0", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "argument --device: 'cuda' needs a CUDA GPU" in result.stderr.splitlines()[-1]


def test_bench_input_folder_without_class_folders_is_one_line(tmp_path):
    (tmp_path / "photos").mkdir()
    result = bench("--models", "none", "--input", "photos", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: --input photos: ") and "has no class sub-folders" in line


# Allocates, fills and frees a 64 MiB tensor 15 times; prints the page faults per 4 KiB page of the last five.
# The first few may still grow the heap: PyTorch's aligned allocations leave small chunks that keep a freed
# block from joining the heap's top at once (in this process: 3 blocks, then none, every run).
REUSE = """
import resource, sys, torch
from dann.training.precision import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else {})
def faults():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt + usage.ru_majflt
for _ in range(10):
    torch.ones(2**24)
before = faults()
for _ in range(5):
    torch.ones(2**24)
print((faults() - before) / 5 / 2**14)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)
def test_keep_freed_memory_lets_a_step_reuse_its_pages_instead_of_faulting_them_in(tmp_path):
    kept = subprocess.run(
        [sys.executable, "-c", REUSE, "keep"], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300
    )
    assert kept.returncode == 0, kept.stderr
    settings, faults_per_page = kept.stdout.splitlines()
    assert settings == str({"M_TRIM_THRESHOLD": 2**31 - 1, "M_MMAP_MAX": 0})
    # glibc as it comes maps a block this size afresh each time (one fault per page); kept, none is faulted in.
    assert float(faults_per_page) < 0.01


def test_keep_freed_memory_is_a_no_op_without_glibc(monkeypatch):
    from dann.training.precision import keep_freed_memory

    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))  # musl (Alpine): its mallopt does nothing
    assert keep_freed_memory() == {}
    monkeypatch.setattr(sys, "platform", "darwin")  # macOS: no mallopt
    assert keep_freed_memory() == {}
