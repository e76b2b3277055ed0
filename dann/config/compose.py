"""Composing the config: where it lives (`CONF_DIR`), composing it in code (`compose_config`), and Hydra's
composition errors in dann's one line: `trainer.stpes=10` says what `+trainer.stpes=10` says.

Overriding a key that does not exist (without `+`) fails inside Hydra's composition, before any code of
dann runs, with five lines ("Could not override 'trainer.stpes'. … Key 'stpes' is not in struct …").
`one_line_errors` has Hydra raise that error instead of printing it (HYDRA_FULL_ERROR, for composition only:
`compose_done` hands every later error back to Hydra's own reporting) and prints the line the config
checks print for an unknown key: the key, its node's real settings, the closest one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

# What dann.run's @hydra.main reads (pkg://dann.conf): the clone's conf/ in an editable install, the
# installed copy in a wheel's. A directory on disk either way (dann.conf is a regular package).
CONF_DIR = Path(str(resources.files("dann.conf")))


def compose_config(*overrides: str) -> Any:
    """The config `python -m dann.run <overrides>` would see (Hydra's compose API, the same conf/), as a
    DictConfig without the `hydra` node."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


FULL_ERROR = "HYDRA_FULL_ERROR"
_before: list[str | None] = []  # the user's value, while HYDRA_FULL_ERROR=1 is set here


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Around `@hydra.main`: an override of a key its node lacks is one line on stderr and exit code 2."""
    if os.environ.get(FULL_ERROR) == "1":  # the user asked for Hydra's full tracebacks
        yield
        return
    _before.append(os.environ.get(FULL_ERROR))
    os.environ[FULL_ERROR] = "1"  # Hydra then raises what it would print
    try:
        yield
    except Exception as error:
        line = _unknown_override(error)
        if line is not None:
            print(f"error: {line}", file=sys.stderr)
            sys.exit(2)
        _report_as_hydra(error)
        raise
    finally:
        compose_done()


def compose_done() -> None:
    """Called once the config is composed (at the start of the task): errors from here on are Hydra's to report."""
    if _before:
        previous = _before.pop()
        if previous is None:
            os.environ.pop(FULL_ERROR, None)
        else:
            os.environ[FULL_ERROR] = previous


def _report_as_hydra(error: Exception) -> None:
    """Hydra's own report of its compact errors (a config group option that does not exist, …): their
    message, and the OmegaConf error behind it, then exit code 1; any other error goes on as a traceback."""
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, CompactHydraException):
        print(error, file=sys.stderr)
        if isinstance(error.__cause__, OmegaConfBaseException):
            print(error.__cause__, file=sys.stderr)
        sys.exit(1)


def _unknown_override(error: Exception) -> str | None:
    """dann's line for Hydra's "Could not override … not in struct", or None for any other error."""
    from hydra.errors import ConfigCompositionException
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = error.__cause__
    if not (
        isinstance(error, ConfigCompositionException) and isinstance(cause, (ConfigAttributeError, ConfigKeyError))
    ):
        return None
    parent = cause.parent_node
    if "not in struct" not in str(cause.msg) or not isinstance(parent, DictConfig) or not cause.full_key:
        return None
    from dann.config.validate import unknown_setting  # the settings of what takes the node (its signature)

    return unknown_setting(str(cause.full_key), OmegaConf.to_container(parent, resolve=False))
