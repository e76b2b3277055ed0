"""What one config value may be: a `Setting` declares it, a `Spec` checks it and describes it.

A setting is declared once, where it is taken, in its annotation:

    margin: Annotated[float, Setting("γ, the weight of the source disparity", gt=0, hint="e.g. 4")] = 4.0

The type gives the kind (int, float, bool, str, Literal[…], list[…], `| None`), the `Setting` the range,
the one-line description and a hint. `spec_of_type` turns the two into the `Spec` the config is
checked with; the configuration reference (`python -m dann.config.reference`) is written from them too:

    Spec("number", 0, 1, open_hi=True).expected(1.5)  →  "a number in [0, 1)"   (None when fine)

Numbers must be real (booleans are not numbers) and finite; integers real integers (1e3 is a
float). Light on purpose (no torch): every component imports `Setting`, and `dann.report` checks the
numbers it reads with `Spec` too.
"""

from __future__ import annotations

import collections.abc
import math
import pydoc
import re
import types
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, Union, get_args, get_origin


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
    also: tuple = ()  # literal values accepted beside the kind (`auto` for trainer.threads)

    def expected(self, value: Any) -> str | None:
        if value is None and self.null:
            return None
        if any(value == a and type(value) is type(a) for a in self.also):
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
        if self.also:
            text = " or ".join(map(_show, self.also)) + " or " + text
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


# --- Declarations: Annotated[type, Setting(…)] ----------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """A setting's declaration, in its annotation: `Annotated[float, Setting("what it is", ge=0)]`.

    `doc`: one line, what the value is (the configuration reference, and the parenthesis of the check's
    message). `ge`/`gt`/`le`/`lt`: the range of a number. `noun`: "a fraction" instead of "a number".
    `hint`: how to fix a wrong value, after the message. `spec`: a `Spec` for a value no type says (a
    device name, a list of transforms), used instead of the annotation's. `node`: the value is a config
    node with its own `_target_` (a backbone, a schedule), checked against what that names. `supplied`: the
    run passes it, from the top-level key named, so a config must not (a method's final λ: `lambda`).
    """

    doc: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    noun: str = ""
    hint: str = ""
    spec: Spec | None = None
    node: bool = False
    supplied: str = ""


def setting_of(annotation: Any) -> Setting | None:
    """The `Setting` in an `Annotated[…]` annotation, or None."""
    if get_origin(annotation) is Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, Setting)), None)
    return None


def spec_of_type(annotation: Any) -> Spec:
    """The `Spec` an annotation declares: its type's kind, the `Setting`'s range, description and hint.
    An annotation this cannot read (a class, a callable, none at all) accepts any finite value."""
    setting = setting_of(annotation)
    if setting is not None and setting.spec is not None:
        return replace(setting.spec, means=setting.spec.means or setting.doc, hint=setting.spec.hint or setting.hint)
    spec = _kind_of(annotation.__origin__ if get_origin(annotation) is Annotated else annotation)
    if setting is None:
        return spec
    lo, hi = _first(setting.ge, setting.gt), _first(setting.le, setting.lt)
    return replace(
        spec,
        lo=lo,
        hi=hi,
        open_lo=setting.gt is not None,
        open_hi=setting.lt is not None,
        noun=setting.noun,
        means=setting.doc,
        hint=setting.hint,
    )


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


_KINDS = {bool: "bool", int: "int", float: "number", str: "str"}  # bool first: it is an int too
_SEQUENCES = (list, tuple, collections.abc.Sequence)


def _kind_of(tp: Any) -> Spec:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        literals = tuple(v for a in options if get_origin(a) is Literal for v in get_args(a))
        others = [_kind_of(a) for a in options if get_origin(a) is not Literal]
        known = [spec for spec in others if spec.kind != "any"]
        if not known:
            spec = Spec("choice", choices=literals) if literals else Spec("any")
        elif known[0].kind == "bool" and literals:  # Literal["auto"] | bool: one of the three
            spec = Spec("choice", choices=(*literals, True, False))
        else:
            spec = replace(known[0], also=literals)
        return replace(spec, null=len(options) < len(args))
    if origin is Literal:
        return Spec("choice", choices=args)
    if origin in _SEQUENCES and args:
        return replace(_kind_of(args[0]), list=True)
    if tp in _KINDS:
        return Spec(_KINDS[tp])
    return Spec("any")
