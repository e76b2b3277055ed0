"""The README's two commands are what users and CI run: keep them true."""

import json
import re
import subprocess
import sys

from tests.helpers import REPO, cli_env

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


def test_the_own_training_loop_block_runs_as_it_stands_without_hydra(tmp_path):
    section = README[README.index("\n## Use it in your own training loop") :]
    code = re.search(r"```python\n(.*?)\n```", section, flags=re.S)[1]
    # Run exactly the README's block, then report what it left behind: its metrics, and whether
    # anything it imported pulled in Hydra (the library must not need it).
    epilogue = (
        "\nimport json, sys\n"
        "print(json.dumps({'hydra': sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf')),"
        " 'metrics': sorted(metrics), 'predictions': predictions.tolist(), 'losses': sorted(output.losses)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code + epilogue],
        cwd=tmp_path,  # an empty directory: nothing from the repository but the installed package
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
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
