from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONF_DIR, compose_config, run_cli
from dann.config import validate
from dann.errors import ConfigError


def test_defaults_compose_and_validate():
    cfg = compose_config()
    validate(cfg)
    assert cfg.dataset.name == "moons" and cfg.method.name == "dann"
    assert cfg["lambda"] == 1.0 and cfg.seed == 0
    assert cfg.logger.wandb.mode == "offline"
    assert set(cfg) >= {"dataset", "model", "method", "optim", "trainer", "logger", "seed", "lambda"}


@pytest.mark.parametrize("group", ["dataset", "model", "method", "optim", "trainer", "logger", "experiment"])
def test_every_option_of_every_group_composes(group):
    options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
    assert options, f"conf/{group}/ is empty"
    for option in options:
        cfg = compose_config(f"{group}={option}")
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_every_value_is_commented_in_its_config_file():
    # "Every value has a documented default": each group file opens with a comment.
    for path in CONF_DIR.rglob("*.yaml"):
        assert path.read_text().lstrip().startswith("#"), f"{path.relative_to(CONF_DIR)} has no header comment"


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["lambda=-0.1"], "lambda"),
        (["lambda=abc"], "lambda"),
        (["trainer.batch_size=0"], "trainer.batch_size"),
        (["trainer.steps=0"], "trainer.steps"),
        (["trainer.eval_every=-5"], "trainer.eval_every"),
        (["optim.optimizer.lr=0"], "optim.optimizer.lr"),
        (["trainer.device=tpu"], "trainer.device"),
        (["logger.wandb.mode=sometimes"], "logger.wandb.mode"),
        (["dataset.source=amazon"], "dataset.source"),
        (["dataset.target=nowhere"], "dataset.target"),
        (["dataset.target=moons"], "dataset.source and dataset.target"),
        (["dataset.target=mnist"], "dataset.target"),  # 10 classes against moons' 2
        (["dataset.target_labeled_fraction=0"], "dataset.target_labeled_fraction"),
        (["dataset.target_labeled_fraction=1.5"], "dataset.target_labeled_fraction"),
    ],
)
def test_invalid_values_name_their_key(overrides, key):
    with pytest.raises(ConfigError) as error:
        validate(compose_config(*overrides))
    assert str(error.value).startswith(key)


def test_class_count_mismatch_message_gives_both_counts():
    with pytest.raises(ConfigError, match="'mnist' has 10 classes but dataset.source 'moons' has 2"):
        validate(compose_config("dataset.target=mnist"))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["lambda=-1"], "error: lambda: expected a number >= 0"),
        (["trainer.batch_size=0"], "error: trainer.batch_size: expected a positive integer"),
        (["trainer.batch_size=1000"], "error: trainer.batch_size: 1000 is larger than the source training split"),
        (["dataset.target=mnist"], "error: dataset.target: 'mnist' has 10 classes"),
    ],
)
def test_cli_stops_with_one_clear_line_before_training(tmp_path: Path, args, needle):
    result = run_cli(*args, "logger=none", cwd=tmp_path)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not list(tmp_path.rglob("metrics.jsonl")), "no training step may run"
    summary = next(tmp_path.rglob("summary.json")).read_text()
    assert '"status": "failed"' in summary


def test_cli_unknown_dataset_lists_the_options(tmp_path: Path):
    result = run_cli("dataset=office99", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'dataset/office99'" in result.stderr
    assert "moons" in result.stderr and "mnist_mnistm" in result.stderr
    assert "Traceback" not in result.stderr


def test_dataset_picks_default_model_and_optimiser_but_the_command_line_wins():
    assert compose_config().model.feature_extractor._target_.endswith("MlpFeatures")
    assert compose_config().optim.optimizer.lr == 0.03  # the moons recipe
    assert compose_config("optim=sgd").optim.optimizer.lr == 0.01  # the paper's
    assert compose_config("model=mnist_cnn").model.feature_extractor._target_.endswith("MnistFeatures")


def test_image_benchmarks_start_from_imagenet_weights_unless_told_otherwise():
    for dataset in ("office31", "office_home", "visda2017", "domainnet"):
        assert compose_config(f"dataset={dataset}").model.feature_extractor.weights == "IMAGENET1K_V1"
    assert compose_config("dataset=office31", "model.feature_extractor.weights=null").model.feature_extractor.weights is None
    assert compose_config().model.feature_extractor.get("weights") is None  # moons: no pretrained backbone
