"""The package's shape: functions short enough to read at once, and few modules flat at the top of dann/."""

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "dann"
MAX_FUNCTION_LINES = 60  # from the def line to the last line (decorators not counted)
MAX_FLAT_MODULES = 8  # dann/*.py; the rest sits in the packages that show the parts (config/, training/, runs/, …)


def long_functions(package: Path) -> list[str]:
    """`path:line name (n lines)` of every function or method in `package` longer than MAX_FUNCTION_LINES."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def too_many_flat_modules(package: Path) -> str | None:
    """What is wrong when more than MAX_FLAT_MODULES modules sit at the top of `package`, naming them."""
    modules = sorted(path.name for path in package.glob("*.py"))
    if len(modules) <= MAX_FLAT_MODULES:
        return None
    return (
        f"{len(modules)} modules flat in {package.name}/, at most {MAX_FLAT_MODULES}: {', '.join(modules)}; "
        "move some into the package of their part"
    )


def test_no_function_is_longer_than_60_lines():
    offenders = long_functions(PACKAGE)
    assert not offenders, f"split along their natural seams: {', '.join(offenders)}"


def test_at_most_8_modules_sit_flat_at_the_top_of_the_package():
    problem = too_many_flat_modules(PACKAGE)
    assert problem is None, problem


def test_the_checks_name_what_they_refuse(tmp_path: Path):
    def function(name: str, lines: int, indent: str = "") -> str:
        return f"{indent}def {name}():\n" + "".join(f"{indent}    x = {i}\n" for i in range(lines - 1))

    package = tmp_path / "pkg"
    package.mkdir()
    (package / "fits.py").write_text(function("fits", MAX_FUNCTION_LINES))
    (package / "long.py").write_text("class A:\n" + function("method", MAX_FUNCTION_LINES + 1, indent="    "))
    assert long_functions(package) == [f"pkg/long.py:2 method ({MAX_FUNCTION_LINES + 1} lines)"]

    assert too_many_flat_modules(package) is None
    for i in range(MAX_FLAT_MODULES - 1):
        (package / f"m{i}.py").write_text("")
    assert too_many_flat_modules(package).startswith(f"{MAX_FLAT_MODULES + 1} modules flat in pkg/")
    assert "fits.py, long.py, m0.py" in too_many_flat_modules(package)
