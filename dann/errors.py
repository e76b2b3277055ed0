"""User-facing errors: each carries one message that names the key or file at fault and the fix.

`dann.run` prints these as a single line and exits non-zero, without a traceback.
"""


class DannError(Exception):
    """Base class of errors caused by the user's config or data, not by a bug."""


class ConfigError(DannError):
    """A config value is invalid. The message names the key."""


class DataError(DannError):
    """Data is missing, incomplete or unreadable. The message names the files and where to get them."""
