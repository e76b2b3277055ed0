import copy
import functools
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dann.config.spec import Spec
from dann.config.validate import declaration_of, drop_unused_lambda_schedule, validate, validate_model_input
from dann.errors import ConfigError
from dann.runs.identity import flatten
from tests.helpers import CONF_DIR, compose_config, run_cli
from tests.helpers.image_files import write_class_folders

# The descriptions, as declared (the messages carry them in parentheses).
LAMBDA = "the final adaptation weight λ, where its schedule ends"
LR = "μ0, the base learning rate (each group: × its lr multiplier)"
RESUME = "continue from checkpoints/last.pt when the output directory has one"
SEED = "training randomness: weight init and batch order; numpy seeds are < 2**32"


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
        # Values that used to end in a traceback, or were taken silently (resume=maybe counted as true).
        (["lambda=nan"], "error: lambda: expected a finite number >= 0"),
        (["seed=4294967296"], "error: seed: expected an integer in [0, 4294967295]"),
        (["trainer.resume=maybe"], f"error: trainer.resume: expected true or false ({RESUME}), got 'maybe'"),
        (["trainer.device=cuda:7"], "error: trainer.device: expected auto"),
        (
            ["dataset=folder", "model=mlp", "dataset.source_dir=a", "dataset.target_dir=b"],
            "error: model.feature_extractor.weights: dann.models.feature_extractors.MlpFeatures",
        ),
    ],
)
def test_cli_stops_with_one_clear_line_before_training(tmp_path: Path, args, needle):
    for side in ("a", "b"):  # real directories for dataset=folder, so that only the config is at fault
        write_class_folders(tmp_path / side, ["cat", "dog"], images_per_class=1, size=8)
    result = run_cli(*args, "logger=none", "trainer.steps=20", cwd=tmp_path)
    assert result.returncode == 2
    assert needle in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], "one line"
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
    assert (
        compose_config("dataset=office31", "model.feature_extractor.weights=null").model.feature_extractor.weights
        is None
    )
    assert compose_config().model.feature_extractor.get("weights") is None  # moons: no pretrained backbone


# --- The schema covers every key: one spec per key, one message shape per bad value ----------------

GROUPS = ("dataset", "model", "method", "method/lambda_schedule", "optim", "optim/lr_schedule", "experiment")
OPTIONS = [f"{group}={path.stem}" for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]
# What an option needs beside the bare command to be a valid run: finetune, pretrained weights;
# folder, its two directories.
NEEDS = {
    "method=finetune": ("dataset=office31",),
    "dataset=folder": ("dataset.source_dir=photos", "dataset.target_dir=sketches"),
}


@pytest.fixture(scope="module")
def composed() -> dict[str, object]:
    """The real composed config of every dataset, model, method, optim and experiment file in conf/."""
    return {option: compose_config(option, *NEEDS.get(option, ())) for option in OPTIONS}


def leaves(cfg) -> dict[str, object]:
    return flatten(OmegaConf.to_container(cfg, resolve=True))


@functools.cache
def method_settings(method: str) -> frozenset[str]:
    """The keys `method=<method>` alone gives its node."""
    return frozenset(compose_config(f"method={method}").method)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_preset_composes_with_every_method(experiment):
    """`experiment=<preset> method=<m>` for every method: the bounds and baselines of a paper's table.
    A preset's λ-schedule settings are dropped for methods without a schedule, and kept for the rest."""
    preset = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml").get("method") or {}
    for path in sorted((CONF_DIR / "method").glob("*.yaml")):
        cfg = compose_config(f"experiment={experiment}", f"method={path.stem}")
        if path.stem == "finetune" and not cfg.model.feature_extractor.get("weights"):
            continue  # fine-tuning needs a pretrained backbone: not a baseline of the digits presets
        drop_unused_lambda_schedule(cfg)
        foreign = sorted(k for k in preset if k != "lambda_schedule" and k not in method_settings(path.stem))
        if foreign:
            # A setting of the preset's own method (MDD's margin, ADDA's stage1_fraction): another method is
            # told how to drop it, not left to guess.
            keys = "|".join(foreign)
            with pytest.raises(ConfigError, match=rf"takes no setting '({keys})'.*drop it with ~method\.({keys})"):
                validate(cfg)
            continue
        validate(cfg)
        assert cfg.method.name == path.stem
        schedule = cfg.method.get("lambda_schedule")
        assert schedule is None or "_target_" in schedule, (experiment, path.stem)


def spec_in(cfg, key: str) -> Spec | None:
    """The spec `key` is checked with in `cfg`, from the declaration of what takes it."""
    declared = declaration_of(OmegaConf.to_container(cfg, resolve=True), key)
    return declared.spec if declared is not None else None


def test_every_config_file_validates_and_every_key_in_it_is_declared(composed):
    for option, cfg in composed.items():
        validate(cfg)  # no declaration refuses a value the project ships
        undeclared = sorted(key for key in leaves(cfg) if spec_in(cfg, key) is None)
        assert not undeclared, f"{option}: keys that nothing declares: {undeclared}"
        # A value no declaration checks (a setting without an annotation): only a torch module's, here.
        unchecked = sorted(k for k in leaves(cfg) if spec_in(cfg, k).kind == "any" and ".activation." not in k)
        assert not unchecked, f"{option}: keys whose declaration gives no type: {unchecked}"


def bad_values(spec: Spec) -> list:
    """Values `spec` must refuse: the wrong type, out of range, nan and inf."""
    if spec.kind in ("int", "number"):
        out_of_range = []
        if spec.lo is not None:
            out_of_range.append(spec.lo if spec.open_lo else spec.lo - 1)
        if spec.hi is not None:
            out_of_range.append(spec.hi if spec.open_hi else spec.hi + 1)
        wrong = ["abc", True, math.nan, math.inf, -math.inf] + ([1.5, 2.0] if spec.kind == "int" else [])
        values = out_of_range + wrong
    elif spec.kind == "bool":
        values = ["maybe", "true", 1, 0, None]
    elif spec.kind == "choice":
        values = ["nonsense", 2, None] + ([1] if any(c is True for c in spec.choices) else [True])
    elif spec.kind == "str":
        values = ["", 7]
    else:  # target, transforms, device
        values = ["no.such.Thing", 3, None]
    if spec.list:
        values = [[v] for v in values if v is not None] + ["abc"]
    return [v for v in values if not (v is None and spec.null)]


def bad_cases(composed) -> list[tuple[str, str, object, Spec]]:
    """(option, key, bad value, its spec) for each key, in the first config that has it."""
    seen: dict[str, str] = {}
    for option, cfg in composed.items():
        for key in leaves(cfg):
            seen.setdefault(key, option)
    specs = {key: spec_in(composed[option], key) for key, option in seen.items()}
    return [(option, key, value, specs[key]) for key, option in seen.items() for value in bad_values(specs[key])]


def test_every_key_refuses_bad_values_with_one_line_naming_it(composed):
    cases = bad_cases(composed)
    assert len(cases) > 300
    kinds = {spec.kind for _, _, _, spec in cases}
    assert {"int", "number", "bool", "choice", "str", "target", "transforms", "device"} <= kinds
    wrong = []
    for option, key, value, _ in cases:
        cfg = copy.deepcopy(composed[option])
        OmegaConf.update(cfg, key, value, merge=False)
        try:
            validate(cfg)
            wrong.append((option, key, value, "accepted"))
        except ConfigError as error:
            message = str(error)
            if not message.startswith(f"{key}: expected ") or "\n" in message:
                wrong.append((option, key, value, message))
    assert not wrong


@pytest.mark.parametrize(
    "override, message",
    [
        ("lambda=nan", f"lambda: expected a finite number >= 0 ({LAMBDA}), got nan; e.g. lambda=0.1"),
        ("lambda=inf", f"lambda: expected a finite number >= 0 ({LAMBDA}), got inf; e.g. lambda=0.1"),
        ("optim.optimizer.lr=inf", f"optim.optimizer.lr: expected a finite learning rate > 0 ({LR}), got inf"),
        (
            "optim.optimizer.momentum=-1",
            "optim.optimizer.momentum: expected a number in [0, 1) (the momentum factor), got -1",
        ),
        (
            "optim.lr_schedule.beta=abc",
            "optim.lr_schedule.beta: expected a number >= 0 (β of the annealing), got 'abc'",
        ),
        (
            "model.feature_extractor.hidden=[0]",
            "model.feature_extractor.hidden: expected a list of positive integers "
            "(widths of the hidden layers; [] for none), got [0]",
        ),
        (
            "dataset.rotation_deg=nan",
            "dataset.rotation_deg: expected a finite number (the target's rotation, in degrees), got nan",
        ),
        ("trainer.resume=maybe", f"trainer.resume: expected true or false ({RESUME}), got 'maybe'"),
        ("seed=4294967296", f"seed: expected an integer in [0, 4294967295] ({SEED}), got 4294967296"),
        (
            "dataset.data_seed=1073741824",
            "dataset.data_seed: expected an integer in [0, 1073741823] "
            "(fixed, so that run seeds vary only training randomness), got 1073741824",
        ),
    ],
)
def test_messages_say_what_was_expected_and_what_came(override, message):
    with pytest.raises(ConfigError) as error:
        validate(compose_config(override))
    assert str(error.value) == message


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "dataset.root=${oc.env:DANN_NO_SUCH_VARIABLE}",
            "dataset.root: KeyError raised while resolving interpolation: "
            "\"Environment variable 'DANN_NO_SUCH_VARIABLE' not found\"",
        ),
        ("dataset.root=???", "dataset.root: Missing mandatory value: root"),
    ],
)
def test_a_value_that_cannot_be_resolved_is_one_line_naming_its_key(override, message):
    with pytest.raises(ConfigError) as error:
        validate(compose_config(override))
    assert str(error.value) == message


def test_huge_but_finite_values_are_legal():
    validate(compose_config("optim.optimizer.lr=1e6", "lambda=1e6", "method.lambda_schedule.gamma=1e9"))


def test_an_unknown_key_is_refused_with_the_known_ones():
    with pytest.raises(
        ConfigError,
        match=r"^trainer.stpes: no such setting \(a typo\?\); did you mean steps\? trainer has steps, batch_size, ",
    ):
        validate(compose_config("+trainer.stpes=5"))
    validate(compose_config("+optim.optimizer.dampening=0.1"))  # any optimiser's settings: checked by its signature
    with pytest.raises(ConfigError, match=r"^optim.optimizer.dampening: expected a number, got 'abc'$"):
        validate(compose_config("+optim.optimizer.dampening=abc"))


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("trainer.stpes", "10", "did you mean steps? trainer has steps, batch_size,"),
        ("method.gamma", "-1", "dann.methods.DANN (method._target_) takes no setting 'gamma'"),
    ],
)
def test_overriding_a_key_that_does_not_exist_is_the_same_one_line_with_or_without_plus(tmp_path, key, value, needle):
    # Without `+`, Hydra refuses it while composing (five lines of its own); with `+`, the config checks do.
    lines = []
    for name, override in (("plain", f"{key}={value}"), ("plus", f"+{key}={value}")):
        result = run_cli(override, "logger=none", f"hydra.run.dir={tmp_path / name}", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        lines.append(result.stderr.strip())
        assert len(lines[-1].splitlines()) == 1 and "Traceback" not in lines[-1], lines[-1]
    assert lines[0] == lines[1]
    assert lines[0].startswith(f"error: {key}: ") and needle in lines[0]
    if key == "method.gamma":  # the setting of that name one node down
        assert "did you mean method.lambda_schedule.gamma?" in lines[0]
    assert not (tmp_path / "plain").exists(), "refused while composing: no run directory"


def test_a_setting_the_target_does_not_take_is_named_with_the_fix():
    # dataset=folder sets model.feature_extractor.weights, for the ResNet it picks; an MLP takes no weights.
    with pytest.raises(ConfigError) as error:
        validate(compose_config("dataset=folder", "model=mlp"))
    assert str(error.value) == (
        "model.feature_extractor.weights: dann.models.feature_extractors.MlpFeatures "
        "(model.feature_extractor._target_) takes no setting 'weights' (it takes hidden, activation); "
        "drop it with ~model.feature_extractor.weights, or choose a model that takes it: model=resnet"
    )
    with pytest.raises(ConfigError, match="^model.feature_extractor.weights: .*MnistFeatures .* takes no setting"):
        validate(compose_config("dataset=folder", "model=mnist_cnn"))
    with pytest.raises(ConfigError, match="^optim.optimizer.betas: torch.optim.SGD .* takes no setting 'betas'"):
        validate(compose_config("+optim.optimizer.betas=[0.9,0.99]"))


def test_the_optimiser_checks_its_own_settings_before_training():
    with pytest.raises(ConfigError, match="^optim.optimizer: torch.optim.SGD refuses these settings .*Nesterov"):
        validate(compose_config("optim.optimizer.nesterov=true", "optim.optimizer.momentum=0"))


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7"])
def test_a_cuda_device_this_machine_lacks_is_refused(device):
    index = int(device.partition(":")[2] or 0)
    if torch.cuda.is_available() and index < torch.cuda.device_count():
        validate(compose_config(f"trainer.device={device}"))
        return
    with pytest.raises(ConfigError, match=f"^trainer.device: expected auto.*, got '{device}'"):
        validate(compose_config(f"trainer.device={device}"))


@pytest.mark.parametrize(
    "overrides, input_shape, fine",
    [
        ([], (2,), True),  # moons' MLP on moons' vectors
        (["dataset=office31", "model.feature_extractor.arch=resnet18"], (3, 224, 224), True),  # no download: a dry run
        (["model=mlp"], (3, 32, 32), False),  # an MLP on images
        (["model=mnist_cnn"], (2,), False),  # a CNN on vectors
        (["model=mnist_cnn"], (1, 8, 8), False),  # images too small for its convolutions
    ],
)
def test_the_feature_extractor_must_take_the_datasets_inputs(overrides, input_shape, fine):
    cfg = compose_config(*overrides)
    if fine:
        validate_model_input(cfg, input_shape)
        return
    with pytest.raises(
        ConfigError,
        match=rf"^model.feature_extractor: .* cannot take the inputs .* of shape "
        rf"\({', '.join(map(str, input_shape))},?\)",
    ):
        validate_model_input(cfg, input_shape)


def test_a_dataset_that_cannot_be_built_is_one_config_error(tmp_path):
    bad = "dataset.transforms.train=[{_target_:torchvision.transforms.Resize}]"  # Resize needs a size
    with pytest.raises(ConfigError, match="^dataset: dann.data.office.Office31 cannot be built .*'size'"):
        validate(compose_config("dataset=office31", bad))
    result = run_cli("dataset=office31", bad, "logger=none", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: dataset: dann.data.office.Office31 cannot")
    assert "Traceback" not in result.stderr


def test_reverse_validation_as_objective_needs_it_to_run():
    with pytest.raises(ConfigError, match="^trainer.objective=reverse_val needs reverse validation to run"):
        validate(compose_config("trainer.objective=reverse_val", "trainer.reverse_validation_every=0"))
    validate(compose_config("trainer.objective=reverse_val"))  # it runs at every evaluation by default


# A deleted group or key once met an OmegaConf traceback (read before, or inside, validate); now one line naming it.
@pytest.mark.parametrize(
    "deleted", ["~trainer", "~method", "~dataset", "~model", "~optim", "~logger", "~seed", "~lambda", "~trainer.steps"]
)
def test_a_deleted_group_or_key_is_one_line_naming_it(tmp_path: Path, deleted):
    result = run_cli("logger=none", deleted, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr
    key = deleted.removeprefix("~")
    assert result.stderr.startswith(f"error: {key}: missing from the config"), result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# A "billion laughs": nine lines of nested aliases stand for 9**9 values, which OmegaConf would copy out.
ALIAS_BOMB = "# @package dataset\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n" for previous, name in zip("abcdefgh", "bcdefghi")
)


def test_an_alias_bomb_in_a_users_config_folder_is_one_line_naming_it(tmp_path: Path):
    folder = tmp_path / "my_conf" / "dataset"
    folder.mkdir(parents=True)
    (folder / "bomb.yaml").write_text(ALIAS_BOMB)
    before = sorted(tmp_path.rglob("*"))
    result = run_cli(f"hydra.searchpath=[{(tmp_path / 'my_conf').as_uri()}]", "dataset=bomb", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {folder / 'bomb.yaml'}: its YAML anchors and aliases expand it to more than")
    assert sorted(tmp_path.rglob("*")) == before  # refused before Hydra made a run directory


def test_user_config_folders_are_found_on_the_command_line(tmp_path: Path):
    from dann.config.user_dirs import config_dirs

    argv = [
        "-m",
        f"hydra.searchpath=[{tmp_path.as_uri()}/a,pkg://somewhere]",
        "+hydra.searchpath=['file://b']",
        "--config-dir",
        "c",
        "-cd=d",
        "hydra.searchpath=[unclosed",  # Hydra refuses it itself, reading nothing
        "dataset.name=file://e",
    ]
    assert config_dirs(argv) == [tmp_path / "a", Path("b"), Path("c"), Path("d")]


@pytest.mark.parametrize(
    "text, refused",
    [
        ("a: &x [1, 2]\nb: *x\nc: {k: *x}\n", False),  # aliases that share a few values: fine
        ("a: &x [1, *x]\n", True),  # a list inside itself: no end
        (ALIAS_BOMB, True),
        ("a: '*not an alias'\n", False),
    ],
)
def test_aliases_are_refused_only_when_they_expand_past_the_bound(tmp_path: Path, text, refused):
    from dann.config.user_dirs import check_user_configs

    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "mine.yaml").write_text(text)
    argv = [f"hydra.searchpath=[{tmp_path.as_uri()}]"]
    if refused:
        with pytest.raises(ConfigError, match="mine.yaml: its YAML anchors and aliases expand"):
            check_user_configs(argv)
    else:
        check_user_configs(argv)
