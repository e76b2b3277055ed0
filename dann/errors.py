"""User-facing errors: each carries one message that names the key or file at fault and the fix.

`dann.run` prints these as a single line and exits non-zero, without a traceback; `Interrupted`
is not an error but the way a run stops on a signal.
"""


class DannError(Exception):
    """Base class of errors caused by the user's config or data, not by a bug."""


class ConfigError(DannError):
    """A config value is invalid. The message names the key."""


class DataError(DannError):
    """Data is missing, incomplete or unreadable. The message names the files and where to get them."""


def describe_error(e: BaseException) -> str:
    """One line for an exception inside a longer message: its type, then its message with
    whitespace folded. A `DannError`'s message is already written for the user, so it stands alone."""
    message = " ".join(str(e).split())
    if isinstance(e, DannError):
        return message
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


class RunDirError(DannError):
    """The output directory holds something this run cannot use: another config's results, or a
    corrupt file. The message names the directory or file and the fix."""


class Diverged(DannError):
    """Training losses became NaN or infinite: the run is not a result."""

    def __init__(self, step: int, values: dict[str, float]):
        self.step = step
        self.values = values
        described = ", ".join(f"{name} = {value}" for name, value in values.items())
        super().__init__(
            f"diverged at step {step}: {described} (mean since the last log); not a result. "
            "Lower optim.optimizer.lr or lambda"
        )


class Interrupted(Exception):
    """Training stopped at a step boundary on SIGTERM or SIGINT, with a checkpoint of that step
    (or before the first step, when there is nothing new to save)."""

    def __init__(self, step: int, signal_name: str, exit_code: int):
        self.step = step
        self.signal_name = signal_name
        self.exit_code = exit_code
        super().__init__(
            f"interrupted by {signal_name} at step {step}; run the same command again to resume from there"
        )
