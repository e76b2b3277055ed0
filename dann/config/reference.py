"""`python -m dann.config.reference [--check]`: docs/reference/configuration.md, every configuration key, written
from the declarations (`dann.config.declared`) and the configs in conf/, so that it cannot drift from what is checked.

Each key gets what it accepts (its `Spec`, described), its value in the config that sets it, and its one-line
description. `--check` writes nothing and exits 1 when the file is not what this would write.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dann.config.compose import CONF_DIR, compose_config
from dann.config.declared import Declared, node_settings, settings_of_target
from dann.config.spec import Spec
from dann.config.validate import CONFIG, LABELS

DOC = Path("docs/reference/configuration.md")
# The groups whose options name a `_target_` at `path` (each a section: one table per option).
TARGET_GROUPS = (
    ("dataset", "dataset", "dataset"),
    ("method", "method", "method"),
    ("method/lambda_schedule", "method.lambda_schedule", "method"),
    ("model", "model.feature_extractor", "model"),
    ("model", "model.label_predictor", "model"),
    ("model", "model.domain_classifier", "model"),
    ("optim", "optim.optimizer", "optim"),
    ("optim/lr_schedule", "optim.lr_schedule", "optim"),
)
HEADER = """# Configuration reference

<!-- Written by `python -m dann.config.reference` from the settings' declarations; do not edit by hand. -->

Every key a run reads, with what it accepts, its value in the config that sets it, and what it is. Each
setting is declared once, where it is taken: `Annotated[type, Setting(description, range)]` on the
signature of what a node's `_target_` names (a method, a backbone, a dataset, a schedule), or on the
fields of the framework's own nodes (`dann.training.settings`, `dann.builders`, `dann.runs.tracking`). The
config checks of `python -m dann.run` read the same declarations: a value outside them is one line,
`error: <key>: expected …, got …`, and exit code 2; a key nothing takes is refused with the real ones.
A method or dataset of your own is checked the same way, from its own annotations.

`python -m dann.run --cfg job [overrides…]` prints the whole composed config.
"""


def reference() -> str:
    """The text of docs/reference/configuration.md."""
    default = OmegaConf.to_container(compose_config(), resolve=False)
    parts = [HEADER, "## The run and its framework nodes\n", "Values: those of the bare `python -m dann.run`.\n"]
    parts.append(_table(_framework_rows(node_settings(CONFIG), default, "")))
    for group, path, anchor in TARGET_GROUPS:
        parts.append(f"## `{path}`\n")
        for option in sorted(CONF_DIR.joinpath(group).glob("*.yaml")):
            override = f"{group}={option.stem}"
            config = OmegaConf.to_container(compose_config(*_needs(group, option.stem), override), resolve=False)
            node = OmegaConf.select(OmegaConf.create(config), path)
            if node is None or "_target_" not in node:
                continue
            node = OmegaConf.to_container(node, resolve=False)
            parts.append(f"### `{override}`: `{node['_target_']}`\n")
            parts.append(_table(_target_rows(node, path, labelled=path in ("dataset", "method"))))
    return "\n".join(parts)


def _needs(group: str, option: str) -> tuple[str, ...]:
    """What an option needs beside it to compose as it is used (a schedule under a method that has one)."""
    return ("method=dann",) if group == "method/lambda_schedule" else ()


def _framework_rows(settings: dict[str, Declared], values: dict[str, Any], prefix: str) -> list[tuple]:
    rows = []
    for name, declared in settings.items():
        key = f"{prefix}{name}"
        if declared.fields is not None:
            rows += _framework_rows(node_settings(declared.fields), values.get(name) or {}, f"{key}.")
        elif declared.node:
            rows.append((f"`{key}`", "a node with a `_target_`", "(below)", declared.doc))
        else:
            value = _value(values[name]) if name in values else f"unset: {_value(declared.default)}"
            rows.append((f"`{key}`", _accepts(declared.spec), value, declared.doc))
    return rows


def _target_rows(node: dict[str, Any], path: str, labelled: bool) -> list[tuple]:
    settings = settings_of_target(node["_target_"])
    declared_here = dict(node_settings(LABELS)) if labelled else {}
    declared_here |= settings or {}
    rows = []
    for name, declared in declared_here.items():
        if name not in node and (settings is None or not node["_target_"].startswith("dann.")):
            continue  # a third-party callable's other parameters: its own documentation
        if (name not in node and declared.node) or declared.supplied:
            continue
        value = _value(node[name]) if name in node else f"unset: {_value(declared.default)}"
        accepts = "a node with a `_target_`" if declared.node else _accepts(declared.spec)
        rows.append((f"`{path}.{name}`", accepts, value, declared.doc))
    for name in node:
        if not name.startswith("_") and name not in declared_here:  # taken through **kwargs
            rows.append((f"`{path}.{name}`", _accepts(Spec("any")), _value(node[name]), ""))
    return rows


def _accepts(spec: Spec) -> str:
    return spec.describe().removesuffix(f" ({spec.means})") if spec.means else spec.describe()


def _value(value: Any) -> str:
    if isinstance(value, dict) and "_target_" in value:
        return f"`{value['_target_']}`"
    if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):  # dataset.transforms
        return "; ".join(
            f"{k}: " + ", ".join(str(t.get("_target_", t)).rsplit(".")[-1] for t in v) for k, v in value.items()
        )
    if callable(value):  # a signature's default function or class
        return f"`{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', value)}`"
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return f"`{text}`".replace("|", "\\|")


def _table(rows: list[tuple]) -> str:
    lines = ["| key | accepts | value | what it is |", "| --- | --- | --- | --- |"]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") if i != 2 else cell for i, cell in enumerate(row)) + " |"
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dann.config.reference", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale; write nothing")
    parser.add_argument("--out", type=Path, default=DOC, help=f"where to write it (default: {DOC})")
    args = parser.parse_args(argv)
    text = reference()
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out}: stale; run python -m dann.config.reference", file=sys.stderr)
            sys.exit(1)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
