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


def config_table_rows() -> list[tuple[list[str], str]]:
    """(keys, default cell) of each row of the README's table of config keys."""
    table = README[README.index("| key | default | meaning |") :].split("\n\n")[0].splitlines()[2:]
    rows = []
    for line in table:
        keys_cell, default_cell = [cell.strip() for cell in line.strip("|").split(" | ")][:2]
        keys = re.findall(r"`([^`]+)`", keys_cell)
        # `model.feature_extractor.arch` / `.weights`: a key written relative to the one before.
        keys = [keys[0]] + [keys[0].rsplit(".", 1)[0] + key if key.startswith(".") else key for key in keys[1:]]
        rows.append((keys, default_cell))
    return rows


def as_value(text: str):
    """A default as the README writes it, as the config holds it."""
    text = text.strip().strip("`")
    if text in ("none", "null"):
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        return float(text)
    except ValueError:
        return text


def test_every_default_in_the_config_table_is_the_composed_default():
    from omegaconf import OmegaConf

    from tests.helpers import compose_config

    rows = config_table_rows()
    assert len(rows) >= 15
    checked = 0
    for keys, cell in rows:
        if cell == "per dataset":
            continue
        # Alternatives `values (overrides)`, separated by `; `; no overrides: the bare command.
        for alternative in cell.split("; "):
            match = re.fullmatch(r"(.*?)(?: \((.+)\))?", alternative)
            values, overrides = match[1].split(" / "), (match[2] or "").split()
            assert len(values) == len(keys), (keys, cell)
            cfg = compose_config(*overrides)
            raw = OmegaConf.to_container(cfg, resolve=False)
            for key, text in zip(keys, values):
                stated = as_value(text)
                node = raw
                for part in key.split("."):
                    node = node[part]  # a key the README names must exist
                actual = float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else node
                assert actual == stated, (
                    f"README says {key} defaults to {text} ({' '.join(overrides) or 'bare'}), the config has {node!r}"
                )
                checked += 1
    assert checked >= 20


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
