"""The documentation site builds without a warning, and its code is true: every ```python block of docs/ runs
as it stands, and every `python -m dann.run` command line of its ```bash blocks composes and validates its config.

A block that cannot run offline is preceded by `<!-- not run: <the reason> -->`; the reason is required.
Pages include other files (`--8<-- "BENCHMARKS.md"`, the experiment READMEs): their blocks are checked too.
Multiruns (`-m key=a,b …`) are checked in max(len(values)) combinations that take every value of every swept
key at least once (combination i takes value (i + j) mod n_j of the j-th swept key, so that two keys sweeping
the same domains do not pair each with itself); a combination may be refused only as a sweep would skip it
(the same domain as source and target), and at least one of them must pass.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from tests.helpers import CONF_DIR, REPO, cli_env

DOCS = REPO / "docs"
INCLUDE = re.compile(r'^--8<-- "([^"]+)"\s*$', flags=re.M)
MARKER = re.compile(r"<!--\s*not run(?::\s*(.*?))?\s*-->", flags=re.S)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", flags=re.S | re.M)
OWN_LOOP = "guides/own-loop.md"


@dataclass(frozen=True)
class Block:
    page: str  # relative to docs/, and the included file when the block comes from one
    line: int
    language: str
    code: str
    skipped: str | None  # the reason given in the marker before it, "" for a marker without one

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """Every Markdown page of the site (docs/notebooks is a link to notebooks/: its README has no code), and the
    README, the front page."""
    return [REPO / "README.md"] + sorted(p for p in DOCS.rglob("*.md") if "notebooks" not in p.relative_to(DOCS).parts)


def expanded(text: str) -> str:
    """The page as the site shows it: each `--8<-- "path"` line replaced by that file (relative to the repo)."""
    return INCLUDE.sub(lambda m: expanded((REPO / m[1]).read_text()), text)


def blocks(language: str) -> list[Block]:
    found = []
    for path in pages():
        text = expanded(path.read_text())
        for fence in FENCE.finditer(text):
            if fence[1] != language:
                continue
            before = text[: fence.start()].rstrip()
            marker = MARKER.search(before.splitlines()[-1]) if before else None
            reason = None if marker is None else (marker[1] or "")
            line = text.count("\n", 0, fence.start()) + 1
            page = path.relative_to(DOCS) if path.is_relative_to(DOCS) else path.relative_to(REPO)
            found.append(Block(str(page), line, language, fence[2], reason))
    return found


PYTHON = blocks("python")
BASH = blocks("bash")


def test_the_site_builds_strict_with_no_warning(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env=cli_env({"NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)
    assert (tmp_path / "site" / "reference" / "api" / "methods" / "dann" / "index.html").exists()


def test_every_skipped_block_says_why():
    unexplained = [b.id for b in PYTHON + BASH if b.skipped is not None and len(b.skipped.strip()) < 10]
    assert not unexplained, f"write the reason: <!-- not run: why --> before {unexplained}"


def test_the_api_page_lists_every_public_name():
    import dann

    page = (DOCS / "reference" / "api" / "index.md").read_text()
    missing = [name for name in dann._EXPORTS if f"`{name}`" not in page]
    assert not missing, f"reference/api/index.md lacks {missing}"


def test_the_configuration_page_lists_every_option_of_every_group():
    # The groups table of reference/config.md, by hand: each option of conf/<group>/ must be in its row, or in a
    # brace pattern of it (`dann_{office31,office_home,visda2017}_{paper,tllib}`).
    page = (DOCS / "reference" / "config.md").read_text()
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `([\w/]+)` \| (.*) \|$", page, flags=re.M)}
    for group, row in rows.items():
        written = set(re.findall(r"`([^`]+)`", row))
        for pattern in [w for w in written if "{" in w]:  # expand one level of braces per part
            names = [""]
            for literal, choices in re.findall(r"([^{]*)(?:\{([^}]*)\})?", pattern):
                names = [n + literal + c for n in names for c in (choices.split(",") if choices else [""])]
            written |= set(names)
        options = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
        assert options, group
        assert not options - written, f"reference/config.md, group {group}: add {sorted(options - written)}"


def test_every_method_has_a_row_and_an_api_page():
    methods = (DOCS / "concepts" / "methods.md").read_text()
    for option in sorted((CONF_DIR / "method").glob("*.yaml")):
        assert f"| `{option.stem}`" in methods or f", `{option.stem}` |" in methods, (
            f"concepts/methods.md: {option.stem}"
        )
    for module in sorted((REPO / "dann" / "methods").glob("*.py")):
        if module.stem not in ("__init__", "base"):
            assert (DOCS / "reference" / "api" / "methods" / f"{module.stem}.md").exists(), module.name


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,  # an empty directory: nothing from the repository but the installed package
        env=cli_env({"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("block", [b for b in PYTHON if b.page != OWN_LOOP], ids=lambda b: b.id)
def test_each_python_block_runs_as_it_stands(block, tmp_path):
    if block.skipped is not None:
        pytest.skip(block.skipped)
    result = run_python(block.code, tmp_path)
    assert result.returncode == 0, f"{block.id}:\n{result.stderr}"


def test_the_own_training_loop_block_runs_as_it_stands_without_hydra(tmp_path):
    (block,) = [b for b in PYTHON if b.page == OWN_LOOP]
    # Run exactly the page's block, then report what it left behind: its metrics, and whether
    # anything it imported pulled in Hydra (the library must not need it).
    epilogue = (
        "\nimport json, sys\n"
        "print(json.dumps({'hydra': sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf')),"
        " 'metrics': sorted(metrics), 'predictions': predictions.tolist(), 'losses': sorted(output.losses)}))\n"
    )
    result = run_python(block.code + epilogue, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["hydra"] == []
    assert report["metrics"] == [
        "train/domain_acc",
        "train/domain_loss",
        "train/label_loss",
        "train/lambda",
        "train/lr",
    ]
    assert len(report["predictions"]) == 5 and set(report["predictions"]) <= {0, 1}
    assert report["losses"] == ["domain", "label"]  # the block's own step, from the method's named losses


# --- `python -m dann.run` command lines ---------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    block: Block
    line: str  # as written, continuations joined
    overrides: tuple[str, ...]
    multirun: bool

    @property
    def id(self) -> str:
        return f"{self.block.id}: {self.line.strip()[:90]}"


def shell_lines(code: str) -> list[str]:
    """The block's lines, `\\` continuations joined, `for V in a b …; do` loops' `$V` set to their first value."""
    joined = re.sub(r"\\\n\s*", " ", code)
    first: dict[str, str] = {}
    lines = []
    for line in joined.splitlines():
        loop = re.match(r"\s*for (\w+) in (\S+)", line)
        if loop:
            first[loop[1]] = loop[2]
        for name, value in first.items():
            line = line.replace(f"${name}", value)
        lines.append(line)
    return lines


def commands(block: Block) -> list[Command]:
    found = []
    for line in shell_lines(block.code):
        for part in re.split(r"&&|\|\||;|&(?!&)|\|", line):
            words = shlex.split(part, comments=True)
            if "dann.run" not in words or words[words.index("dann.run") - 1] != "-m":
                continue
            args = words[words.index("dann.run") + 1 :]
            multirun = any(a in ("-m", "--multirun") for a in args)
            overrides = tuple(a for a in args if not a.startswith("-"))
            found.append(Command(block, part, overrides, multirun))
    return found


COMMANDS = [c for b in BASH if b.skipped is None for c in commands(b)]


def test_the_docs_have_run_commands_to_check():
    assert len(COMMANDS) >= 20 and any(c.multirun for c in COMMANDS)


def combinations(overrides: tuple[str, ...], multirun: bool) -> list[tuple[tuple[str, ...], tuple]]:
    """What to check of a command: (the overrides Hydra must compose, the (key, value) pairs set after it), once
    for a single run; for a multirun, max(len(values)) combinations that take every value of each sweep at least
    once (`seed` at its first: any integer shows the key exists). Config groups (`method=`, `experiment=`),
    Hydra's own keys and `+`/`~` overrides are composed; a plain key (`lambda`, `dataset.source`) is set on the
    composed config as Hydra would set it, so that a sweep composes once per choice of its groups."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    composed, sweeps = [], []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        group = override.is_hydra_override() or override.type != OverrideType.CHANGE or (CONF_DIR / key).is_dir()
        if multirun and override.is_sweep_override() and not override.is_hydra_override():
            values = [(override.input_line.split("=", 1)[0] + "=" + v) for v in override.sweep_string_iterator()]
            if not group:
                values = [(key, v) for v in override.sweep_iterator()]
            sweeps.append((group, values[:1] if key == "seed" else values))
        elif group:
            composed.append(override.input_line)
        else:
            sweeps.append((False, [(key, override.value())]))
    n = max((len(values) for _, values in sweeps), default=1)
    checks = []
    for i in range(n):
        chosen = [(group, values[(i + j) % len(values)]) for j, (group, values) in enumerate(sweeps)]
        checks.append(
            (tuple(composed + [v for group, v in chosen if group]), tuple(v for group, v in chosen if not group))
        )
    return checks


@functools.cache
def composed(overrides: tuple[str, ...]):
    """The config `python -m dann.run <overrides>` composes (Hydra's own node dropped), once per override list."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)  # hydra.* overrides too
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def checked(overrides: tuple[str, ...], values: tuple) -> str | None:
    """None when the config composes, takes every (key, value) and validates, else the config checks' error."""
    from dann.config.validate import drop_unused_lambda_schedule, validate
    from dann.errors import ConfigError

    cfg = copy.deepcopy(composed(overrides))
    for key, value in values:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        assert node is not None and leaf in node, f"{key}: no such key (Hydra would refuse the override)"
        OmegaConf.update(cfg, key, value, merge=False)
    drop_unused_lambda_schedule(cfg)  # as dann.run does before it validates
    try:
        validate(cfg)
    except ConfigError as error:
        return str(error)
    return None


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.id)
def test_each_run_command_composes_and_validates(command):
    placeholders = [o for o in command.overrides if re.search(r"[<>…]", o)]
    assert not placeholders, f"{command.id}: a placeholder ({placeholders}): mark the block <!-- not run: why -->"
    errors = [checked(*check) for check in combinations(command.overrides, command.multirun)]
    if not command.multirun:
        assert errors == [None], f"{command.id}: {errors[0]}"
        return
    # A sweep skips the combinations its config checks refuse; the docs' sweeps may only do so for a task
    # whose two domains are the same.
    unexpected = [e for e in errors if e is not None and "are both" not in e]
    assert not unexpected and None in errors, f"{command.id}: {errors}"


# --- the other commands: their arguments parse ----------------------------------------------------------------


def parsers() -> dict:
    """Each documented command's own argument parser (argparse exits 2 on an argument it does not take)."""
    import dann.analyze
    import dann.bench
    import dann.data.__main__
    import dann.report

    return {
        "dann.report": dann.report.parse_args,
        "dann.analyze": dann.analyze.parse_args,
        "dann.data": dann.data.__main__._parse,
        "dann.bench": lambda argv: dann.bench.build_parser().parse_args(argv),
    }


def tool_commands(block: Block) -> list[tuple[str, list[str], str]]:
    """(module, arguments, the line) of each `python -m dann.report|analyze|data|bench …` in a block."""
    found = []
    for line in shell_lines(block.code):
        for part in re.split(r"&&|\|\||;|&(?!&)|\|", line):
            words = shlex.split(part, comments=True)
            for module in ("dann.report", "dann.analyze", "dann.data", "dann.bench"):
                if module in words and words[words.index(module) - 1] == "-m":
                    found.append((module, words[words.index(module) + 1 :], part.strip()))
    return found


TOOL_COMMANDS = [c for b in BASH if b.skipped is None for c in tool_commands(b)]


@pytest.mark.parametrize("module, argv, line", TOOL_COMMANDS, ids=[c[2][:90] for c in TOOL_COMMANDS])
def test_each_documented_command_takes_its_arguments(module, argv, line, capsys):
    """Every flag a page shows exists and takes the value shown: a renamed or removed flag fails here."""
    asks_help = "--help" in argv or "-h" in argv  # argparse prints the help and exits 0, if what precedes parses
    try:
        parsers()[module](argv)
    except SystemExit as stop:
        if not (asks_help and stop.code == 0):
            pytest.fail(f"{line}: refused (exit {stop.code}): {capsys.readouterr().err.strip()}")
    else:
        assert not asks_help, f"{line}: no help printed"


def test_the_docs_have_other_commands_to_check():
    # (dann.bench's lines are ```text in BENCHMARKS.md: measurements as they were run, not commands to copy.)
    assert {module for module, _, _ in TOOL_COMMANDS} >= {"dann.report", "dann.data", "dann.analyze"}
