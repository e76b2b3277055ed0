"""The user's own config folders (`hydra.searchpath=[file://…]`, `--config-dir`), checked before Hydra reads them.

YAML anchors and aliases make a small file stand for a huge tree: PyYAML shares an aliased node, but
OmegaConf copies it wherever it appears, so ten lines of nested aliases (a "billion laughs") hang
composition for hours. Hydra loads these files before any of dann's code runs, so `dann.run`'s entry
point checks them first: each YAML file of those folders is composed (PyYAML's node graph, linear in the
file), and one whose aliases expand it past `MAX_NODES` nodes, or into a cycle, is refused in one line.
Aliases that expand modestly stay allowed; a folder with none costs one parse of each file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import yaml

from dann.errors import ConfigError

MAX_NODES = 100_000  # far above any real config (dann's largest composed config has a few hundred values)
CONFIG_DIR_FLAGS = ("-cd", "--config-dir", "-cp", "--config-path")


def config_dirs(argv: list[str]) -> list[Path]:
    """The folders of the user's configs that a `python -m dann.run` command line adds: `file://` entries
    of `hydra.searchpath` (Hydra's override grammar), and `--config-dir`/`--config-path`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    dirs: list[Path] = []
    parser = OverridesParser.create()
    for i, arg in enumerate(argv):
        flag, _, inline = arg.partition("=")
        if flag in CONFIG_DIR_FLAGS:
            value = inline or (argv[i + 1] if i + 1 < len(argv) else "")
            if value:
                dirs.append(Path(value))
        elif "hydra.searchpath" in flag:
            try:
                (override,) = parser.parse_overrides([arg])
                value = override.value()
            except Exception:  # not an override Hydra accepts: Hydra says so itself, reading nothing
                continue
            for entry in value if isinstance(value, list) else [value]:
                if isinstance(entry, str) and entry.startswith("file://"):
                    dirs.append(Path(entry.removeprefix("file://")))
    return dirs


def yaml_files(folder: Path) -> Iterator[Path]:
    """Every .yaml/.yml file under `folder`, through linked folders as Hydra follows them, each folder once."""
    seen: set[str] = set()
    for root, subdirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        for name in sorted(files):
            if name.endswith((".yaml", ".yml")):
                yield Path(root) / name


def expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Nodes in the tree `node` stands for once every alias is copied out: 1 + its children's, memoised
    per node (so shared nodes cost one visit), infinite for a node that contains itself."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        return MAX_NODES + 1  # an alias to an enclosing node: a tree without end
    open_nodes.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        size += expanded_size(child, sizes, open_nodes)
        if size > MAX_NODES:
            break
    open_nodes.discard(key)
    sizes[key] = size
    return size


def check_file(path: Path) -> None:
    """Refuse `path` when its aliases expand it past `MAX_NODES` nodes; YAML that does not parse is
    left to Hydra's own message."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    if "*" not in text:  # no alias, no expansion: the tree is as large as the file
        return
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return
    sizes: dict[int, int] = {}
    if sum(expanded_size(d, sizes, set()) for d in documents if d is not None) > MAX_NODES:
        raise ConfigError(
            f"{path}: its YAML anchors and aliases expand it to more than {MAX_NODES:,} values (an alias bomb?), "
            "which would stall loading it; write the repeated values out, or refer to them with an "
            "interpolation (${…})"
        )


def check_user_configs(argv: list[str]) -> None:
    """Refuse, before Hydra composes anything, a YAML file of the command line's config folders that an
    alias bomb makes too large to load."""
    for folder in config_dirs(argv):
        if folder.is_dir():
            for path in yaml_files(folder):
                check_file(path)
