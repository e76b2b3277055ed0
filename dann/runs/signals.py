"""SIGTERM and SIGINT as a request to stop cleanly at the next step boundary.

SLURM sends SIGTERM before preemption or at a time limit; Ctrl-C sends SIGINT. Raising at an
arbitrary point could leave an optimiser step half applied, so the handler only records the
request and the training loop, between two steps, writes a checkpoint and stops. A second
Ctrl-C stops at once, except inside `second_interrupt_deferred` (a file being written): there it
stops as soon as the file is whole. On several processes, which see a signal at different steps, the loop stops
at the first log step where they have agreed that one of them has it (`dann.training.distributed.agreed_signal`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Deferral:
    """How deep we are in `second_interrupt_deferred` blocks, and whether a second Ctrl-C came meanwhile."""

    depth = 0
    pending = False


@contextmanager
def second_interrupt_deferred(then: Callable[[], BaseException] = KeyboardInterrupt) -> Iterator[None]:
    """A block a second Ctrl-C must not cut short (an atomic file write): the `KeyboardInterrupt` it
    would raise at once waits until the outermost such block ends, which then raises `then()` instead.

    Without it, the stop lands inside the write: a traceback, and a temporary file left behind.
    """
    _Deferral.depth += 1
    try:
        yield
    finally:
        _Deferral.depth -= 1
        pending = _Deferral.pending and _Deferral.depth == 0
        if _Deferral.depth == 0:
            _Deferral.pending = False
    if pending:  # only when the block ended normally: an exception already stops the run
        raise then()


class StopRequests:
    """`with StopRequests() as stop:` … `if stop.requested:` — the signal is in `stop.signum`.

    Handlers are installed only in the main thread (Python allows no other) and the previous
    ones are restored on exit, so a launcher's own handlers (submitit's) work again after the run.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            if _Deferral.depth:
                _Deferral.pending = True
                log.warning("Ctrl-C again: stopping as soon as the file being written is complete")
                return
            raise KeyboardInterrupt
        self.signum = signum
        log.warning(
            "%s received: stopping after this step with a checkpoint (Ctrl-C again to stop at once)",
            signal.Signals(signum).name,
        )

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
