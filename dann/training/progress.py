"""The console progress line during training: step/total, steps/s, ETA, the latest losses and domain accuracy.

`trainer.progress` chooses how it is shown:

- `bar`: one line rewritten in place (`\\r`) on stderr, for a terminal. At the log intervals just before
  an evaluation the line is ended, so that the evaluation's log line follows on a line of its own and
  the console keeps one progress line per evaluation.
- `lines`: plain log lines (logger `dann.training.progress`), for output that goes to a file (SLURM
  logs): at the first log interval, then at most one every `lines_every_s` seconds, and always at the
  last step. Through logging, they go where the evaluations' log lines go (stderr and run.log), in order.
- `auto` (the default): `bar` when stderr is a terminal, `lines` otherwise.
- `off`: nothing.

It is updated from the training loop's logging block, with the values it has just logged, so it adds
no host-device synchronisation and never touches metrics.jsonl, summary.json or W&B. Rates count only
the steps run by this process (a resumed run starts counting at its checkpoint's step).
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from typing import Literal, TextIO, get_args

ProgressMode = Literal["auto", "bar", "lines", "off"]  # trainer.progress
PROGRESS_MODES = get_args(ProgressMode)

# What the line shows of the logged metrics, and how.
SHOWN = (
    ("train/label_loss", "label_loss", ".4f"),
    ("train/domain_loss", "domain_loss", ".4f"),
    ("train/domain_acc", "domain_acc", ".3f"),
)
BAR_WIDTH = 20

log = logging.getLogger(__name__)


def resolve_mode(mode: str, stream: TextIO) -> str:
    """`auto` → `bar` on a terminal, `lines` otherwise; the others as they are."""
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress mode must be one of {PROGRESS_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def format_duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Shows training progress in the given `mode` (see the module): a bar on `stream` (default: stderr),
    or lines logged.

    `total`: the run's last step. `start_step`: the step training starts from (a checkpoint's, when
    resuming). `clock`: seconds, monotonic (tests pass a fake one). `lines_every_s`: the least time
    between two plain lines in `lines` mode.
    """

    def __init__(
        self,
        total: int,
        mode: str = "auto",
        stream: TextIO | None = None,
        start_step: int = 0,
        lines_every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.total = total
        self.start_step = start_step
        self.lines_every_s = lines_every_s
        self.clock = clock
        self.started = clock()
        self._last_line: float | None = None  # when the last plain line was printed
        self._open = False  # bar mode: a line is on screen without its newline
        self._width = 0  # bar mode: the length of the line on screen

    def describe(self, step: int, metrics: Mapping[str, float]) -> str:
        """The progress text at `step`, from the latest logged `metrics`."""
        elapsed = self.clock() - self.started
        done = step - self.start_step
        rate = done / elapsed if elapsed > 0 and done > 0 else None
        parts = [f"step {step}/{self.total}", f"{100 * step / self.total:3.0f}%"]
        if rate is None:
            parts += ["-- steps/s", "ETA --"]
        else:
            parts += [f"{rate:.3g} steps/s", f"ETA {format_duration((self.total - step) / rate)}"]
        parts += [f"{label} {metrics[name]:{spec}}" for name, label, spec in SHOWN if name in metrics]
        return "  ".join(parts)

    def update(self, step: int, metrics: Mapping[str, float], end_line: bool = False) -> None:
        """Show `step` with the latest logged `metrics`.

        `end_line` (bar mode): end the line after drawing it, because something else is about to be
        printed (an evaluation's log line); the next update starts a new line.
        """
        if self.mode == "off":
            return
        text = self.describe(step, metrics)
        if self.mode == "bar":
            filled = BAR_WIDTH * step // self.total
            text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {text}"
            columns = shutil.get_terminal_size(fallback=(120, 24)).columns
            text = text[: max(columns - 1, 20)]  # a wrapped line could not be rewritten in place
            # \r back to the line's start; spaces cover what a longer previous text left.
            self.stream.write("\r" + text + " " * max(self._width - len(text), 0))
            self._width = len(text)
            self._open = not end_line
            if end_line:
                self.stream.write("\n")
                self._width = 0
            self.stream.flush()
            return
        now = self.clock()
        if self._last_line is None or now - self._last_line >= self.lines_every_s or step >= self.total:
            self._last_line = now
            log.info(text)

    def close(self) -> None:
        """End the line on screen (bar mode), so that what follows starts on a line of its own."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
            self._width = 0
