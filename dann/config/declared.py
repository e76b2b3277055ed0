"""What a config node may hold, read from the declarations of what takes it: nothing to register.

A node with a `_target_` holds the settings its target takes: a function's or class's parameters that
have a default or are keyword-only (the others the code supplies: the network, the input shape), a
dataclass's fields. The framework's own nodes (`trainer`, `model`, `logger.wandb`, …) are dataclasses or
mappings of annotations. Each setting's annotation gives its `Spec` (`dann.config.spec.spec_of_type`):

    settings_of(MDD)["margin"].spec.describe()  →  "a number > 0 (γ, the weight of the source disparity)"

A declaration without a `Setting` still checks its type (`alpha: float` refuses "abc"); one without an
annotation accepts any finite value.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, get_type_hints

from dann.config.spec import Setting, Spec, locate, setting_of, spec_of_type


@dataclass(frozen=True)
class Declared:
    """One setting as declared: `spec` checks it; `doc` says what it is; `required`: no default, so the config
    must give it; `node`: a node with its own `_target_`; `fields`: the declarations of a framework node."""

    spec: Spec
    doc: str
    required: bool
    node: bool = False
    fields: Any = None
    default: Any = None  # the declared default, when not `required`
    supplied: str = ""  # the top-level key the run passes it from: not a setting of the node


def settings_of(declarer: Any, extra: Mapping[str, Setting] | None = None) -> dict[str, Declared] | None:
    """The settings a `_target_`'s callable takes: its parameters with a default or keyword-only (a
    dataset dataclass's fields). A dann class whose __init__ takes **kwargs passes them on to its base
    class (DANNBSP to DANN), so it takes its own settings and its base's; None: any setting (a function or
    a foreign class taking **kwargs). `extra`: ranges added to a signature dann does not own (torch's
    optimisers)."""
    try:
        parameters = inspect.signature(declarer).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return None
    inherited: dict[str, Declared] | None = {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        base = declarer.__mro__[1] if inspect.isclass(declarer) else None
        inherited = settings_of(base, extra) if base is not None and base.__module__.startswith("dann.") else None
        if inherited is None:
            return None
    hints = _hints_over_mro(declarer)
    taken = [p for p in parameters if p.default is not p.empty or p.kind is p.KEYWORD_ONLY]
    return inherited | {
        p.name: _declared(_with_extra(hints.get(p.name), (extra or {}).get(p.name)), p.default is p.empty, p.default)
        for p in taken
    }


def node_settings(declarer: Any) -> dict[str, Declared]:
    """The settings of a framework node (`trainer`, `model`, …): every field of its dataclass, or every
    entry of a mapping of name → annotation (the top level, whose `lambda` no field can be named)."""
    if isinstance(declarer, Mapping):
        return {name: _declared(annotation, required=True) for name, annotation in declarer.items()}
    hints = _hints_over_mro(declarer)
    return {
        f.name: _declared(hints.get(f.name), f.default is f.default_factory is dataclasses.MISSING, f.default)
        for f in dataclasses.fields(declarer)
    }


def check_arguments(declarer: Any, values: Mapping[str, Any], prefix: str) -> None:
    """`values` given to `declarer` in code (a dataset built without a config) against its declarations: the
    same one-line `ConfigError`, naming `prefix` + the setting, as the config checks give."""
    settings = settings_of(declarer) or {}
    for name, value in values.items():
        declared = settings.get(name)
        if declared is None or declared.node:
            continue
        value = _as_config(value)
        if not _is_plain(value):  # built objects (transforms Hydra instantiated): what takes them checks them
            continue
        items = value.items() if isinstance(value, dict) and declared.spec.kind != "any" else [("", value)]
        for item, item_value in items:
            check_value(f"{prefix}{name}" + (f".{item}" if item else ""), item_value, declared.spec)


def check_value(key: str, value: Any, spec: Spec) -> None:
    """The one-line `ConfigError` for `key` if `value` is not what `spec` accepts."""
    from dann.errors import ConfigError

    expected = spec.expected(value)
    if expected is not None:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}" + (f"; {spec.hint}" if spec.hint else ""))


def _as_config(value: Any) -> Any:
    """A value as a config would hold it: tuples as lists, paths as strings, OmegaConf nodes (what Hydra's
    instantiate passes) as plain containers."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, tuple):
        return [_as_config(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, dict)):
        return all(map(_is_plain, value.values() if isinstance(value, dict) else value))
    return value is None or isinstance(value, (str, int, float, bool))


def settings_of_target(target: str) -> dict[str, Declared] | None:
    """`settings_of` the object a `_target_` names (with the ranges `dann.builders.TARGET_RANGES` adds)."""
    return _settings_of_target(target)


@cache
def _settings_of_target(target: str) -> dict[str, Declared] | None:
    from dann.builders import TARGET_RANGES  # the builders import every component: only when checking

    return settings_of(locate(target), TARGET_RANGES.get(target))


def _declared(annotation: Any, required: bool, default: Any = None) -> Declared:
    setting = setting_of(annotation)
    # A dataclass as a framework node's annotation is a node of its own (`logger.wandb`: `WandbSettings`).
    node_class = annotation if isinstance(annotation, type) and dataclasses.is_dataclass(annotation) else None
    return Declared(
        spec=spec_of_type(annotation),
        doc=setting.doc if setting else (node_class.__doc__ or "").split("\n")[0] if node_class else "",
        required=required,
        node=bool(setting and setting.node),
        fields=node_class,
        default=None if required else default,
        supplied=setting.supplied if setting else "",
    )


def _with_extra(annotation: Any, extra: Setting | None) -> Any:
    """`annotation` with a `Setting` added (a range for a third-party signature), unless it has its own."""
    if extra is None or setting_of(annotation) is not None:
        return annotation
    from typing import Annotated

    return Annotated[annotation if annotation is not None else Any, extra]


def _hints_over_mro(declarer: Any) -> dict[str, Any]:
    """The annotations of `declarer`'s parameters or fields. For a class, every class in its MRO is read
    (its fields, its own __init__'s parameters), and a `Setting` declared on a base class holds for a
    subclass that only changes the default (`protocol: str = "transductive"`)."""
    if not isinstance(declarer, type):
        return _hints(declarer)
    merged: dict[str, Any] = {}
    for klass in reversed(declarer.__mro__):
        own = klass.__dict__
        sources = [klass] if own.get("__annotations__") else []
        if inspect.isfunction(own.get("__init__")):
            sources.append(own["__init__"])
        for source in sources:
            for name, hint in _hints(source).items():
                if name in merged and setting_of(hint) is None and setting_of(merged[name]) is not None:
                    continue
                merged[name] = hint
    return merged


def _hints(source: Any) -> dict[str, Any]:
    """`get_type_hints` with its `Annotated` extras; an annotation that names something imported only for
    type checkers leaves that one setting unchecked, not the others."""
    try:
        return get_type_hints(source, include_extras=True)
    except Exception:  # noqa: BLE001 - any failure to evaluate an annotation
        namespace = getattr(inspect.getmodule(source), "__dict__", {})
        hints = {}
        for name, annotation in getattr(source, "__annotations__", {}).items():
            try:
                hints[name] = eval(annotation, namespace) if isinstance(annotation, str) else annotation  # noqa: S307
            except Exception:  # noqa: BLE001
                continue
        return hints
