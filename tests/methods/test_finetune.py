"""The fine-tuning baselines (`finetune`, `two_stage`) with hand-made batches, and the benchmark presets."""

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from omegaconf import OmegaConf

from dann.builders import build_dataset, build_engine, build_network
from dann.config.validate import validate
from dann.errors import ConfigError
from dann.methods import Batch, FineTune, TwoStage
from tests.helpers import CONF_DIR, compose_config

INPUT = (3, 32, 32)
NUM_CLASSES = 5
METRICS = {"train/label_loss", "train/domain_loss", "train/domain_acc", "train/lambda", "train/lr"}
PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("dann_*.yaml"))
BENCHMARK_DATASETS = ("office31", "office_home", "visda2017")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A torchvision resnet18 state_dict (random: a stand-in for ImageNet weights, nothing downloads)."""
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def make(method: str, *overrides: str):
    torch.manual_seed(0)
    cfg = compose_config(
        f"method={method}",
        "model=resnet",
        "model.feature_extractor.arch=resnet18",
        "optim=sgd",
        "trainer.steps=10",
        *overrides,
    )
    engine = build_engine(cfg, build_network(cfg, INPUT, NUM_CLASSES))
    engine.method.train()
    return engine


def make_batch() -> Batch:
    g = torch.Generator().manual_seed(1)
    return Batch(
        source_x=torch.randn(4, *INPUT, generator=g),
        source_y=torch.randint(0, NUM_CLASSES, (4,), generator=g),
        target_x=torch.randn(4, *INPUT, generator=g) + 0.5,
        target_y=torch.randint(0, NUM_CLASSES, (4,), generator=g),
    )


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def unchanged(module: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    """Weights and buffers (BatchNorm statistics) alike."""
    return all(torch.equal(before[k], v) for k, v in module.state_dict().items())


# --- finetune ----------------------------------------------------------------------------


def test_finetune_is_registered_and_uses_no_target_labels():
    assert compose_config("method=finetune").method._target_ == "dann.methods.FineTune"
    assert compose_config("method=two_stage").method._target_ == "dann.methods.TwoStage"
    assert not FineTune.uses_target_labels and TwoStage.uses_target_labels


@pytest.mark.parametrize("overrides", [[], ["model=resnet"]])
def test_finetune_refuses_to_start_without_pretrained_weights(overrides):
    with pytest.raises(ConfigError, match="^model.feature_extractor.weights: method=finetune starts from pretrained"):
        validate(compose_config("method=finetune", *overrides))


def test_finetune_takes_the_source_only_step_with_a_slower_backbone(weights_file):
    engine = make("finetune", f"model.feature_extractor.weights={weights_file}")
    method = engine.method
    reference = copy.deepcopy(method.network)
    batch = make_batch()
    metrics = engine.step(batch, progress=0.0)
    assert set(metrics) == METRICS and metrics["train/lambda"] == 0.0
    # The first SGD step (momentum is inert) on the source label loss alone, the backbone at 0.1 × lr.
    label_loss = F.cross_entropy(reference.predict(batch.source_x), batch.source_y)
    assert metrics["train/label_loss"].item() == pytest.approx(label_loss.item())
    label_loss.backward()
    lr = 0.01
    for trained, expected, mult in [
        (method.network.feature_extractor.backbone, reference.feature_extractor.backbone, 0.1),
        (method.network.label_predictor, reference.label_predictor, 1.0),
    ]:
        for p, q in zip(trained.parameters(), expected.parameters()):
            assert torch.allclose(p, q - lr * mult * q.grad, atol=1e-6)


def test_finetune_with_a_frozen_backbone_trains_only_the_new_layers(weights_file):
    engine = make("finetune", f"model.feature_extractor.weights={weights_file}", "model.freeze_backbone=true")
    method = engine.method
    backbone = method.network.feature_extractor.backbone
    before_backbone, before_head = state(backbone), state(method.network.label_predictor)
    for _ in range(2):
        engine.step(make_batch(), progress=0.0)
    assert unchanged(backbone, before_backbone)
    assert not unchanged(method.network.label_predictor, before_head)


# --- two_stage ---------------------------------------------------------------------------


def test_two_stage_trains_on_source_then_on_target_labels():
    engine = make("two_stage", "method.stage1_fraction=0.5")
    method = engine.method
    batch = make_batch()
    # A stage's label loss is the cross-entropy on that stage's domain, before the step.
    expected_source = F.cross_entropy(copy.deepcopy(method.network).predict(batch.source_x), batch.source_y)
    assert engine.step(batch, progress=0.4)["train/label_loss"].item() == pytest.approx(expected_source.item())
    # Stage 2 freezes the feature extractor (the default), whose BatchNorm then uses its running statistics.
    frozen = copy.deepcopy(method.network)
    frozen.feature_extractor.freeze()
    expected_target = F.cross_entropy(frozen.predict(batch.target_x), batch.target_y)
    metrics = engine.step(batch, progress=0.5)
    assert set(metrics) == METRICS
    assert metrics["train/label_loss"].item() == pytest.approx(expected_target.item())


def test_two_stage_ignores_target_labels_in_stage_one():
    engine = make("two_stage")
    method = engine.method
    batch = make_batch()
    other_labels = Batch(batch.source_x, batch.source_y, batch.target_x, (batch.target_y + 1) % NUM_CLASSES)
    twin_engine = make("two_stage")  # the same seed: the same initial weights
    twin = twin_engine.method
    engine.step(batch, progress=0.1)
    twin_engine.step(other_labels, progress=0.1)
    assert all(torch.equal(a, b) for a, b in zip(method.state_dict().values(), twin.state_dict().values()))


def test_two_stage_freezes_the_feature_extractor_in_stage_two():
    engine = make("two_stage", "method.freeze_in_stage2=feature_extractor")
    method = engine.method
    extractor = method.network.feature_extractor
    engine.step(make_batch(), progress=0.1)  # stage 1 trains everything
    assert all(p.requires_grad for p in extractor.parameters())
    before_extractor, before_head = state(extractor), state(method.network.label_predictor)
    for progress in (0.6, 0.7):
        engine.step(make_batch(), progress=progress)
    assert unchanged(extractor, before_extractor)  # BatchNorm running statistics included
    assert not unchanged(method.network.label_predictor, before_head)
    assert not any(m.training for m in extractor.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


def test_two_stage_resumed_in_stage_two_freezes_on_its_first_step():
    engine = make("two_stage")  # a fresh method, as after a resume: it never saw stage 1
    method = engine.method
    before = state(method.network.feature_extractor)
    engine.step(make_batch(), progress=0.9)
    assert unchanged(method.network.feature_extractor, before)


def test_two_stage_without_freezing_fine_tunes_everything_on_target():
    engine = make("two_stage", "method.freeze_in_stage2=none")
    method = engine.method
    before = state(method.network.feature_extractor.backbone)
    engine.step(make_batch(), progress=0.5)
    assert not unchanged(method.network.feature_extractor.backbone, before)


@pytest.mark.parametrize(
    "override, key",
    [
        ("method.stage1_fraction=1.5", "method.stage1_fraction"),
        ("method.freeze_in_stage2=backbone", "method.freeze_in_stage2"),
    ],
)
def test_two_stage_bad_settings_name_their_key(override, key):
    with pytest.raises(ConfigError, match=f"^{key}: expected"):
        validate(compose_config("method=two_stage", override))


# --- Benchmark presets -------------------------------------------------------------------


def test_two_presets_per_benchmark():
    for dataset in BENCHMARK_DATASETS:
        assert {f"dann_{dataset}_paper", f"dann_{dataset}_tllib"} <= set(PRESETS), dataset


@pytest.mark.parametrize("preset", PRESETS)
def test_every_benchmark_preset_composes(preset):
    missing = [d for d in BENCHMARK_DATASETS if not (CONF_DIR / "dataset" / f"{d}.yaml").exists()]
    if missing:
        pytest.skip(
            f"conf/dataset/{missing[0]}.yaml is not there yet (the dataset configs come with the "
            "image loaders); the presets need it to compose"
        )
    cfg = compose_config(f"experiment={preset}")
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    build_dataset(cfg)  # the TLLib presets' own transforms build, and crop to image_size
    assert cfg.model.feature_extractor._target_.endswith("TorchvisionFeatures")
    assert cfg.model.feature_extractor.weights == "IMAGENET1K_V1"
    assert cfg.model.backbone_lr_mult == 0.1 and cfg.model.bottleneck_dim == 256
    assert cfg.trainer.batch_size == 32 and cfg.method.name == "dann"
    if preset.endswith("_tllib"):
        assert cfg.optim.lr_schedule._target_ == "dann.schedules.inv_lr_factor" and cfg.optim.optimizer.nesterov
        # TLLib's λ warm-up: 2/(1+exp(-t/1000)) - 1
        assert cfg.method.lambda_schedule.gamma == cfg.trainer.steps / 1000
    else:
        assert cfg.optim.lr_schedule._target_ == "dann.schedules.annealed_lr_factor"
        assert cfg.method.lambda_schedule.gamma == 10.0
    # The paper's Office-31 recipe is on AlexNet (tests/models/test_backbones.py checks the rest of it).
    archs = {"dann_office31_paper": "alexnet", "dann_visda2017_paper": "resnet101", "dann_visda2017_tllib": "resnet101"}
    assert cfg.model.feature_extractor.arch == archs.get(preset, "resnet50")
