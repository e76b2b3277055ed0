"""User-facing errors: each carries one message that names the key or file at fault and the fix.

`dann.run` prints these as a single line and exits non-zero, without a traceback.
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
