"""The README is the front page: its two commands are what users and CI run, it stays short, and what it
shows (a result table, links into the documentation) is the documentation's own. Its code blocks are checked
with the documentation's (tests/test_docs.py)."""

import re

from tests.helpers import REPO

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
MAX_CHARS = 15_000  # a front page; the manual is docs/


def test_readme_opens_with_the_run_and_test_commands():
    assert BLOCKS[0] == "pip install -e . && python -m dann.run"
    assert BLOCKS[1] == 'pip install -e ".[dev]" && pytest'
    # Both come before any other section of the README.
    assert README.index(BLOCKS[1]) < README.index("\n## ")


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert BLOCKS[1] in ci
    assert ci[-1] == BLOCKS[1]  # the last step: CI ends as a user's `pytest` does


def test_the_readme_is_a_front_page():
    assert len(README) <= MAX_CHARS, f"README.md is {len(README)} characters; move detail into docs/"


def test_results_section_has_no_placeholder():
    assert "PLACEHOLDER" not in README


def test_the_readme_table_is_the_one_in_the_results_pages():
    # The README shows one result; its numbers are those of the results page, with the command that made them.
    results = (REPO / "docs" / "results" / "moons.md").read_text()
    table = re.search(r"\n(\| method \| seed 0 \|.*?)\n\n", README, flags=re.S)[1]
    assert table in results
    command = re.search(r"```bash\n(OMP_NUM_THREADS=1 python -m dann\.run .*?)\n```", README, flags=re.S)[1]
    assert command in results


def test_every_link_of_the_readme_leads_to_a_file():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert "docs/getting-started.md" in local  # the CPU-only install
    missing = [link for link in local if not (REPO / link).exists() and link != "CITATION.cff"]
    assert not missing, missing  # CITATION.cff comes with the package metadata


def test_the_readme_says_how_to_read_the_docs_and_to_cite():
    assert any(block.startswith('pip install -e ".[docs]" && mkdocs serve') for block in BLOCKS)
    assert "--index-url https://download.pytorch.org/whl/cpu" in README
    assert "CITATION.cff" in README
    assert "@software{dann" in README and "@article{ganin2016domain" in README
