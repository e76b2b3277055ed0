"""How a run ended, in its summary.json: one wrapper around the run (`with RunOutcome(…) as outcome:`), so that
the run itself only orchestrates and every way out of it (finished, failed, interrupted, diverged) is recorded
in one place.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from dann.errors import DannError, Diverged, Interrupted, RunDirError, describe_error
from dann.runs.tracking import write_json_atomic
from dann.training import distributed

log = logging.getLogger("dann")


class RunOutcome:
    """Writes `summary` (rank 0) when the block ends, with its status: "finished" (`finished()`),
    else "failed" (its `error`), "interrupted" or "diverged" (their `step` and `error`).

    A resumed run (`resumed_step`: its checkpoint's step) refused before it writes anything
    (`committed()` not yet called: this machine's device or precision, the data here, a damaged file)
    by a `DannError` keeps its record as it was: still interrupted and resumable, where it can run.
    `started`: the run's wall-clock origin (`time.time()`, moved back by the time before a resume).
    """

    def __init__(self, run_dir: Path, summary: dict[str, Any], started: float, resumed_step: int | None):
        self.run_dir, self.summary, self.started = run_dir, summary, started
        self.resumed_step = resumed_step
        self.keep_record = resumed_step is not None

    def committed(self) -> None:
        """From here the run writes its files: its summary must say how it ended."""
        self.keep_record = False

    def finished(self) -> None:
        self.summary["status"] = "finished"
        self.summary["wall_time_s"] = self._wall_time()

    def __enter__(self) -> RunOutcome:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        if error is not None:
            ending = self._ending(error)
            if ending is None:  # refused before the run wrote anything: its earlier record stays
                return
            self.summary |= ending
        if distributed.is_main():
            self.summary.setdefault("wall_time_s", self._wall_time())
            # With our signal handler still on (StopRequests outside), a second Ctrl-C waits for the write.
            self._write(failing=self.summary["status"] != "finished")

    def _ending(self, error: BaseException) -> dict[str, Any] | None:
        """The fields `error` adds to the summary; None when the summary is not to be written."""
        if isinstance(error, Diverged):
            return {"status": "diverged", "step": error.step, "error": str(error)}
        if isinstance(error, Interrupted):
            return {"status": "interrupted", "error": describe_error(error), "step": error.step}
        if isinstance(error, KeyboardInterrupt):
            return {
                "status": "interrupted",
                "error": "KeyboardInterrupt: stopped before a checkpoint could be written",
                "step": self.resumed_step if self.resumed_step is not None else 0,
            }
        if self.keep_record and isinstance(error, DannError):
            return None
        return {"error": f"{type(error).__name__}: {error}"}  # status: still "failed"

    def _wall_time(self) -> float:
        return round(time.time() - self.started, 3)

    def _write(self, failing: bool) -> None:
        """Write summary.json. If the disk refuses while the run is `failing` (an error on its way), that
        error is the one reported (one line), and the failed write a warning, not a second traceback."""
        try:
            write_json_atomic(self.run_dir / "summary.json", self.summary)
        except RunDirError as e:
            if not failing:
                raise
            log.warning("summary.json not written either: %s", e)
