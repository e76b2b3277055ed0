"""The README's two commands are what users and CI run: keep them true."""

import re

from conftest import REPO

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)


def test_readme_opens_with_the_run_and_test_commands():
    assert BLOCKS[0] == "pip install -e . && python -m dann.run"
    assert BLOCKS[1] == 'pip install -e ".[dev]" && pytest'
    # Both come before any other section of the README.
    assert README.index(BLOCKS[1]) < README.index("\n## ")


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert BLOCKS[1] in ci


def test_results_section_has_no_placeholder():
    assert "PLACEHOLDER" not in README
