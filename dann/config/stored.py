"""A config read back from disk (a run's `summary.json`), checked before anything in it is built.

A stored config is data that anyone who can write the file may have crafted, and Hydra's
`instantiate` calls whatever its `_target_`s name. So each `_target_`, anywhere in the config,
must name a public class (or, in `dann.models` and `dann.schedules`, a public function) *defined*
in one of the component packages below, as `package.module.Name`: the name is a top-level
attribute of the module it is named through and that object's `__module__` is that module or
one under it. A name reached through an attribute chain is refused, whatever it starts with:
`dann.models.feature_extractors.os.system` (a module's import) or `….Path.write_text` (a
method). Hydra's keys that change how a node is called (`_args_`, `_recursive_`, `_convert_`)
and a key `weights_only` (which would let `torch.load` unpickle) are refused wherever they are.

A run stores its config resolved, so a `${…}` in one was written by hand: it is refused rather
than resolved, since it could pull an unchecked node into a checked one, or make the reader's
resolvers read their environment (`${oc.env:…}`).
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

from dann.errors import ConfigError

# Where a stored config's `_target_`s may point: package → whether functions are allowed too
# (classes always are). dann's components, and the torch and torchvision parts its configs name.
COMPONENTS = {
    "dann.data": False,
    "dann.models": True,  # dann.models.heads.mlp
    "dann.methods": False,
    "dann.schedules": True,  # the λ and learning-rate schedules, built _partial_
    "torch.nn": False,
    "torch.optim": False,
    "torchvision.transforms": False,
}
REFUSED_KEYS = ("_args_", "_recursive_", "_convert_", "weights_only")
_DOTTED = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")  # no private (_x) or empty part
TRUST_HINT = "pass --trust if this run directory is your own"


def check_stored_config(config: Any, where: str = "config") -> None:
    """Refuse (one `ConfigError` naming the key) an interpolation, a refused key or an unsafe
    `_target_` anywhere in `config`, a plain container as read from JSON."""
    if isinstance(config, list):
        for i, item in enumerate(config):
            check_stored_config(item, f"{where}[{i}]")
        return
    if isinstance(config, str) and "${" in config:
        raise ConfigError(
            f"{where}: {config!r} is an interpolation, but a run stores its config resolved, so this one was "
            f"edited by hand; it is not resolved (it could read your environment or an unchecked key): {TRUST_HINT}"
        )
    if not isinstance(config, dict):
        return
    for key, value in config.items():
        name = f"{where}.{key}"
        if "${" in str(key):
            raise ConfigError(f"{name}: a key with an interpolation; the config was edited by hand: {TRUST_HINT}")
        if key in REFUSED_KEYS:
            raise ConfigError(f"{name}: a stored config may not set {key} (dann's configs never do): {TRUST_HINT}")
        if key == "_target_":
            safe_target(value, name)
        elif key == "_partial_" and not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        check_stored_config(value, name)


def safe_target(target: Any, key: str) -> Any:
    """The class or function `target` names, imported only if it is one of `COMPONENTS`'s own;
    else a `ConfigError` naming `key` (the `_target_`'s dotted key)."""
    if not isinstance(target, str) or not _DOTTED.fullmatch(target):
        raise ConfigError(f"{key}: expected a dotted name package.module.Name of a public class, got {target!r}")
    module_name, _, name = target.rpartition(".")
    package = next((p for p in COMPONENTS if module_name == p or module_name.startswith(p + ".")), None)
    if package is None:
        raise ConfigError(
            f"{key}: {target} is not a component of {', '.join(COMPONENTS)} (dann's configs name only those); "
            + TRUST_HINT
        )
    try:  # a module of dann, torch or torchvision only: importing it runs nothing a config chose
        module = importlib.import_module(module_name)
    except ImportError:
        raise ConfigError(
            f"{key}: {target} cannot be found: {module_name} is not a module (a name reached through "
            f"another name, such as a module's import, is refused); {TRUST_HINT}"
        ) from None
    found = getattr(module, name, None)
    kind_ok = inspect.isclass(found) or (COMPONENTS[package] and inspect.isfunction(found))
    defined_here = kind_ok and (found.__module__ == module_name or found.__module__.startswith(module_name + "."))
    if not defined_here or found.__qualname__ != name or found.__name__ != name:
        what = "class or function" if COMPONENTS[package] else "class"
        raise ConfigError(
            f"{key}: {target} is not a public {what} defined in {module_name} (imported names and attribute "
            f"chains are refused); {TRUST_HINT}"
        )
    from hydra.utils import get_object  # what instantiate will call: the same object, or refused

    try:
        same = get_object(target) is found
    except Exception:  # noqa: BLE001 - any failure to locate it means it cannot be built either
        same = False
    if not same:
        raise ConfigError(f"{key}: {target} names another object for Hydra than for this check; {TRUST_HINT}")
    return found
