"""The configuration reference is written from the declarations, and a user's own components are checked
from theirs, with nothing to register."""

import textwrap

import pytest
from omegaconf import OmegaConf

from dann.config.reference import DOC, main, reference
from dann.config.validate import validate
from dann.errors import ConfigError
from dann.runs.identity import flatten
from tests.helpers import CONF_DIR, REPO, compose_config


@pytest.fixture(scope="module")
def text() -> str:
    return reference()


def test_the_reference_in_docs_is_the_one_the_declarations_write(text):
    stale = f"{DOC} is stale: run python -m dann.config.reference"
    assert (REPO / DOC).read_text() == text, stale


def test_check_fails_on_a_stale_file_and_writes_nothing(tmp_path, text, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(text.replace("| `trainer.steps` |", "| `trainer.stepz` |"))
    with pytest.raises(SystemExit) as exit_:
        main(["--check", "--out", str(stale)])
    assert exit_.value.code == 1 and "stale" in capsys.readouterr().err
    assert "trainer.stepz" in stale.read_text()


def test_every_key_of_every_config_file_is_in_the_reference(text):
    groups = ("dataset", "model", "method", "method/lambda_schedule", "optim", "optim/lr_schedule", "trainer", "logger")
    for group in groups:
        for option in sorted((CONF_DIR / group).glob("*.yaml")):
            extra = ("method=dann",) if group == "method/lambda_schedule" else ()
            config = OmegaConf.to_container(compose_config(*extra, f"{group}={option.stem}"), resolve=False)
            for key in flatten(config):
                parts = key.split(".")
                if "transforms" in parts:  # one row: `dataset.transforms`
                    key = ".".join(parts[: parts.index("transforms") + 1])
                if parts[-1] in ("_target_", "_partial_"):
                    continue
                assert f"`{key}`" in text, f"{group}={option.stem}: {key} is not in the reference"


USER_MODULE = '''
from dataclasses import dataclass
from typing import Annotated

from dann.config.spec import Setting
from dann.data.moons import Moons
from dann.methods import DANN


class Weighted(DANN):
    """A method of the user's own: DANN with two settings of its own."""

    def __init__(
        self,
        network,
        lambda_schedule=None,
        final_lambda=1.0,
        strength: Annotated[float, Setting("how hard to push", gt=0)] = 1.0,
        mode: str = "plain",
    ):
        super().__init__(network, final_lambda=final_lambda)


@dataclass(kw_only=True)
class WobblyMoons(Moons):
    """A dataset of the user's own: the moons, with one field more."""

    wobble: Annotated[float, Setting("how much the moons wobble", ge=0)] = 0.0
'''


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["+method.strength=-1"], "method.strength: expected a number > 0 (how hard to push), got -1"),
        (["+method.mode=3"], "method.mode: expected a non-empty string, got 3"),  # its plain annotation
        (["+method.strenght=2"], "did you mean strength?"),
        (["dataset._target_={module}.WobblyMoons", "+dataset.wobble=-0.5"], "dataset.wobble: expected a number >= 0"),
    ],
)
def test_a_users_own_method_and_dataset_are_checked_from_their_annotations(tmp_path, monkeypatch, overrides, message):
    module = f"user_components_{abs(hash(tuple(overrides)))}"  # a fresh module: declarations are read once per name
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides = [o.format(module=module) for o in overrides]
    method = [] if any(o.startswith("dataset._target_") for o in overrides) else [f"method._target_={module}.Weighted"]
    validate(compose_config(*method, *[o for o in overrides if not o.startswith("+")]))  # fine as declared
    with pytest.raises(ConfigError) as error:
        validate(compose_config(*method, *overrides))
    assert message in str(error.value) and "\n" not in str(error.value)
