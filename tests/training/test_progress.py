"""The console progress line: a line rewritten in place on a terminal, plain lines in a log file.

Time comes from a fake clock: nothing here depends on how fast the machine is.
"""

import io
import logging
import re

import pytest

from dann.training.progress import Progress, format_duration, resolve_mode
from tests.helpers import run_cli

METRICS = {"train/label_loss": 0.31234, "train/domain_loss": 0.69, "train/domain_acc": 0.5321, "train/lr": 0.01}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # shutil.get_terminal_size reads it first


def test_auto_is_a_bar_on_a_terminal_and_lines_otherwise():
    assert resolve_mode("auto", FakeTerminal()) == "bar"
    assert resolve_mode("auto", io.StringIO()) == "lines"
    assert resolve_mode("lines", FakeTerminal()) == "lines"
    assert resolve_mode("off", FakeTerminal()) == "off"
    with pytest.raises(ValueError, match="auto"):
        resolve_mode("sometimes", io.StringIO())


def test_the_line_says_step_rate_eta_losses_and_domain_accuracy():
    clock = Clock()
    progress = Progress(1000, "lines", io.StringIO(), clock=clock)
    clock.now += 10.0
    text = progress.describe(100, METRICS)
    assert text.split("  ")[:5] == ["step 100/1000", " 10%", "10 steps/s", "ETA 1m30s", "label_loss 0.3123"]
    assert "domain_loss 0.6900" in text and "domain_acc 0.532" in text
    assert "lr" not in text


def test_a_resumed_run_counts_its_rate_from_the_checkpoint():
    clock = Clock()
    progress = Progress(1000, "lines", io.StringIO(), start_step=500, clock=clock)
    assert "-- steps/s" in progress.describe(500, {})  # no step yet: no rate, no ETA
    clock.now += 5.0
    assert "20 steps/s  ETA 20s" in progress.describe(600, {})


def test_durations():
    assert [format_duration(s) for s in (0, 42.4, 185, 7620, -3)] == ["0s", "42s", "3m05s", "2h07m", "0s"]


def test_bar_mode_rewrites_one_line_in_place():
    clock, terminal = Clock(), FakeTerminal()
    progress = Progress(100, "auto", terminal, clock=clock)
    assert progress.mode == "bar"
    for step in (10, 20, 30):
        clock.now += 1.0
        progress.update(step, METRICS)
    out = terminal.getvalue()
    assert "\n" not in out  # one line, rewritten
    frames = out.split("\r")[1:]
    assert len(frames) == 3
    assert frames[0].startswith("[##..................] step 10/100")
    assert frames[2].startswith("[######..............] step 30/100")
    assert all("10 steps/s" in frame and "domain_acc 0.532" in frame for frame in frames)
    progress.close()
    assert terminal.getvalue() == out + "\n"  # what follows starts on its own line
    progress.close()
    assert terminal.getvalue() == out + "\n"  # once


def test_bar_mode_covers_a_longer_line_and_ends_the_line_before_an_evaluation():
    terminal = FakeTerminal()
    progress = Progress(100, "bar", terminal, clock=Clock())
    progress.update(10, METRICS)
    first = terminal.getvalue()
    progress.update(20, {})  # shorter: spaces cover the rest of the previous text
    second = terminal.getvalue()[len(first) :]
    assert len(second) == len(first) and second.rstrip(" ").endswith("ETA --")
    progress.update(30, METRICS, end_line=True)
    assert terminal.getvalue().endswith("\n")
    progress.update(40, METRICS)  # a new line, nothing to cover
    assert terminal.getvalue().split("\n")[-1].startswith("\r[########")
    assert not terminal.getvalue().split("\n")[-1].endswith(" ")


def test_bar_mode_fits_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    terminal = FakeTerminal()
    Progress(100, "bar", terminal, clock=Clock()).update(10, METRICS)
    assert len(terminal.getvalue()) == 1 + 49  # \r and the text: a wrapped line could not be rewritten


def test_lines_mode_logs_the_first_then_at_most_one_per_interval_and_the_last(caplog):
    caplog.set_level(logging.INFO, logger="dann.training.progress")
    clock, stream = Clock(), io.StringIO()
    progress = Progress(100, "auto", stream, lines_every_s=30.0, clock=clock)
    assert progress.mode == "lines"
    for step, seconds in ((10, 1), (20, 10), (30, 20), (40, 1), (50, 1), (100, 1)):  # 30 s after step 10: 30
        clock.now += seconds
        progress.update(step, METRICS, end_line=True)
    progress.close()
    # Log records, which go where the evaluations' log lines go; nothing written to the stream itself.
    lines = [r.getMessage() for r in caplog.records if r.name == "dann.training.progress"]
    assert [line.split("  ")[0] for line in lines] == ["step 10/100", "step 30/100", "step 100/100"]
    assert not any("\r" in line or "\n" in line for line in lines)
    assert stream.getvalue() == ""


def test_off_prints_nothing():
    terminal = FakeTerminal()
    progress = Progress(100, "off", terminal, clock=Clock())
    progress.update(10, METRICS)
    progress.update(100, METRICS, end_line=True)
    progress.close()
    assert terminal.getvalue() == ""


def test_a_run_logging_to_a_file_prints_progress_lines(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("logger=none", "trainer=debug", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # stderr is a pipe here, as under SLURM: plain log lines (auto → lines), the first log and the last step.
    progress = "[dann.training.progress][INFO] - "
    lines = [line.split(progress, 1)[1] for line in result.stderr.splitlines() if progress in line]
    assert [line.split()[1] for line in lines] == ["10/20", "20/20"]
    for line in lines:
        assert re.search(r"[\d.]+ steps/s  ETA \S+  label_loss [\d.]+  domain_loss [\d.]+  domain_acc [\d.]+$", line)
    assert "\r" not in result.stderr
