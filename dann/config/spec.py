"""What one config value may be: a `Spec` (type and range) and the one-line description of it.

    Spec("number", 0, 1, open_hi=True).expected(1.5)  →  "a number in [0, 1)"   (None when fine)

Numbers must be real (booleans are not numbers) and finite; integers real integers (1e3 is a
float). Light on purpose (no torch): `dann.report` checks the numbers it reads with it too.
"""

from __future__ import annotations

import math
import pydoc
import re
from dataclasses import dataclass
from typing import Any


def is_real_number(value: Any) -> bool:
    """An int or float, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Spec:
    """What one key accepts. `expected(value)` is None when `value` is fine, else what was expected."""

    kind: str  # int | number | bool | choice | str | target | transforms | device | any
    lo: float | None = None  # range of an int or number
    hi: float | None = None
    open_lo: bool = False  # lo itself is excluded
    open_hi: bool = False
    choices: tuple = ()
    null: bool = False  # null (None) is allowed too
    list: bool = False  # a list of such values
    noun: str = ""  # "a fraction" instead of "a number", …
    means: str = ""  # what the value is, in parentheses after the expectation
    hint: str = ""  # how to fix it, after the message

    def expected(self, value: Any) -> str | None:
        if value is None and self.null:
            return None
        if self.list:
            ok = isinstance(value, list) and all(_ok(self, item) for item in value)
        else:
            ok = _ok(self, value)
        return None if ok else self.describe(finite=_finite(value))

    def describe(self, finite: bool = True) -> str:
        text = _describe(self, finite)
        if self.list:  # "a positive integer" → "a list of positive integers"
            text = "a list of " + _plural(text.removeprefix("an ").removeprefix("a "))
        if self.null:
            text = "null or " + text
        return text + (f" ({self.means})" if self.means else "")


def _ok(spec: Spec, value: Any) -> bool:
    kind = spec.kind
    if kind in ("int", "number"):
        if not is_real_number(value) or (kind == "int" and not isinstance(value, int)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return (spec.lo is None or value > spec.lo or (value == spec.lo and not spec.open_lo)) and (
            spec.hi is None or value < spec.hi or (value == spec.hi and not spec.open_hi)
        )
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "choice":
        return any(value == c and type(value) is type(c) for c in spec.choices)
    if kind == "str":
        return isinstance(value, str) and value.strip() != ""
    if kind == "target":
        return isinstance(value, str) and _locatable(value)
    if kind == "transforms":
        return isinstance(value, list) and all(
            isinstance(step, dict) and isinstance(step.get("_target_"), str) and _finite(step) for step in value
        )
    if kind == "device":
        return isinstance(value, str) and (
            value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())
        )
    if kind == "any":  # a setting of a `_target_` (checked against its signature): numbers finite
        return _finite(value)
    raise ValueError(f"unknown spec kind {kind!r}")


def _finite(value: Any) -> bool:
    """No nan or inf anywhere in `value` (a scalar, or lists and dicts of them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def locate(path: str) -> Any:
    """The object a `_target_` names (package.module.Name), or None; quietly, unlike Hydra's get_object."""
    try:
        return pydoc.locate(path)
    except pydoc.ErrorDuringImport:
        return None


def _locatable(path: str) -> bool:
    return callable(locate(path))


def _describe(spec: Spec, finite: bool) -> str:
    kind = spec.kind
    if kind == "int":
        if spec.lo == 1 and spec.hi is None:
            return "a positive integer"
        return "an integer" + _range(spec)
    if kind == "number":
        noun = spec.noun or "a number"
        return (noun if finite else f"a finite {noun.removeprefix('a ')}") + _range(spec)
    if kind == "bool":
        return "true or false"
    if kind == "choice":
        names = [_show(c) for c in spec.choices]
        return names[0] if len(names) == 1 else "one of " + ", ".join(names)
    if kind == "str":
        return spec.noun or "a non-empty string"
    if kind == "target":
        return "an importable class or function, package.module.Name"
    if kind == "transforms":
        return (
            "a list of torchvision transforms, each with a _target_, "
            "e.g. [{_target_: torchvision.transforms.CenterCrop, size: 224}]"
        )
    if kind == "device":
        return "auto, cpu, cuda or cuda:N"
    if kind == "any":
        return "finite numbers (no nan or inf)"
    raise ValueError(f"unknown spec kind {kind!r}")


def _range(spec: Spec) -> str:
    lo, hi = spec.lo, spec.hi
    if lo is not None and hi is not None:
        return f" in {'(' if spec.open_lo else '['}{_show(lo)}, {_show(hi)}{')' if spec.open_hi else ']'}"
    if lo is not None:
        return f" {'>' if spec.open_lo else '>='} {_show(lo)}"
    if hi is not None:
        return f" {'<' if spec.open_hi else '<='} {_show(hi)}"
    return ""


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _plural(text: str) -> str:
    """ "positive integer" → "positive integers", "number > 0" → "numbers > 0"."""
    return re.sub(r"\b(integer|number|string|fraction)\b", r"\1s", text, count=1)


# --- Constructors, so that the table below reads as a table -----------------------------------


def integer(lo: int | None = None, hi: int | None = None, **kw: Any) -> Spec:
    return Spec("int", lo, hi, **kw)


def number(lo: float | None = None, hi: float | None = None, **kw: Any) -> Spec:
    return Spec("number", lo, hi, **kw)


def boolean(**kw: Any) -> Spec:
    return Spec("bool", **kw)


def one_of(*choices: Any, **kw: Any) -> Spec:
    return Spec("choice", choices=choices, **kw)


def text(**kw: Any) -> Spec:
    return Spec("str", **kw)
