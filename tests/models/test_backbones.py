"""Torchvision backbones: every family's features and stages, pretrained weights from files or
torchvision names, freezing, per-group learning rates, and AlexNet and VGG16 trained end to end.

Random or locally saved weights only, on small inputs: nothing downloads. Most tests use
ResNet-18; each other family is built once (VGG16 has 138M parameters).
"""

import json
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from dann.builders import build_engine, build_network
from dann.config.validate import validate, validate_model_input
from dann.errors import ConfigError, DataError
from dann.methods import Batch
from dann.models import FeatureExtractor, TorchvisionFeatures
from tests.helpers import compose_config, only, read_jsonl, run_cli

INPUT = (3, 32, 32)
RESNET18 = ("model=resnet", "model.feature_extractor.arch=resnet18")


def resnet18_cfg(*overrides: str):
    return compose_config(*RESNET18, "trainer.steps=100", *overrides)


def resnet18(*overrides: str, num_classes: int = 5):
    torch.manual_seed(0)
    return build_network(resnet18_cfg(*overrides), INPUT, num_classes)


def image_batch(num_classes: int = 5, size: int = 4) -> Batch:
    g = torch.Generator().manual_seed(1)
    return Batch(
        source_x=torch.randn(size, *INPUT, generator=g),
        source_y=torch.randint(0, num_classes, (size,), generator=g),
        target_x=torch.randn(size, *INPUT, generator=g) + 0.5,
        target_y=torch.randint(0, num_classes, (size,), generator=g),
    )


def batch_norms(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def save_random_weights(tmp_path_factory, arch: str, seed: int) -> tuple[Path, dict[str, torch.Tensor]]:
    """A state_dict of torchvision's `arch` (random weights, as a stand-in for ImageNet's) in a .pth file."""
    torch.manual_seed(seed)
    state = torchvision.models.get_model(arch).state_dict()
    path = tmp_path_factory.mktemp("weights") / f"{arch}-random.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def saved_resnet18(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    return save_random_weights(tmp_path_factory, "resnet18", seed=123)


# --- Architecture ----------------------------------------------------------------------


def test_resnet18_features_bottleneck_and_heads():
    net = resnet18()
    assert net.feature_extractor.backbone.out_features == 512
    assert net.feature_extractor.out_features == 256  # the bottleneck
    class_logits, domain_logits = net(torch.randn(4, *INPUT), grl_lambda=1.0)
    assert class_logits.shape == (4, 5) and domain_logits.shape == (4,)
    stages = net.feature_extractor.backbone.stages
    assert stages[-1] is net.feature_extractor.backbone.model.layer4 and len(stages) == 4


def test_unknown_arch_and_grey_inputs_are_config_errors():
    expected = "^model.feature_extractor.arch: expected the name of a torchvision classification model \\(e.g. alexnet"
    with pytest.raises(ConfigError, match=expected) as error:
        validate(compose_config("model=resnet", "model.feature_extractor.arch=resnet19"))
    assert "torchvision.models.list_models() gives all" in str(error.value) and "got 'resnet19'" in str(error.value)
    with pytest.raises(ConfigError, match=expected):  # built from Python, without the config
        TorchvisionFeatures((3, 32, 32), arch="resnet19")
    with pytest.raises(ConfigError, match="resnet18 takes RGB images.*set dataset.channels=3"):
        build_network(resnet18_cfg(), (1, 32, 32), 5)


def test_any_torchvision_classification_model_is_an_arch():
    for arch in ("alexnet", "vgg16_bn", "densenet121", "efficientnet_b0", "convnext_tiny", "vit_b_16", "swin_t"):
        validate(compose_config("model=resnet", f"model.feature_extractor.arch={arch}"))


# --- Every family: features without the classifier, and its stages -----------------------

# arch: (input side, out_features, stage names, parameter prefixes of the last stage)
FAMILIES = {
    "alexnet": (64, 4096, ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"], ["classifier.4."]),
    "vgg16": (64, 4096, ["block1", "block2", "block3", "block4", "block5", "fc6", "fc7"], ["classifier.3."]),
    "resnet18": (32, 512, ["layer1", "layer2", "layer3", "layer4"], ["layer4."]),
    "densenet121": (
        32,
        1024,
        ["denseblock1", "denseblock2", "denseblock3", "denseblock4"],
        ["features.denseblock4.", "features.norm5."],
    ),
    "efficientnet_b0": (32, 1280, [f"stage{i}" for i in range(1, 8)], ["features.7.", "features.8."]),
    "convnext_tiny": (
        32,
        768,
        ["stage1", "stage2", "stage3", "stage4"],
        ["features.6.", "features.7.", "classifier.0."],  # the downsampling, the blocks, the final LayerNorm
    ),
    "vit_b_16": (
        224,
        768,
        [f"encoder_layer_{i}" for i in range(12)],
        ["encoder.layers.encoder_layer_11.", "encoder.ln."],
    ),
}


@pytest.mark.parametrize("arch", FAMILIES)
def test_each_family_gives_its_features_and_unfreezes_exactly_its_last_stage(arch):
    side, width, stage_names, last_stage = FAMILIES[arch]
    torch.manual_seed(0)
    backbone = TorchvisionFeatures((3, side, side), arch=arch)
    assert backbone.out_features == width and backbone.stage_names == stage_names
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in backbone.modules())
    with torch.no_grad():
        assert backbone.eval()(torch.randn(2, 3, side, side)).shape == (2, width)

    extractor = FeatureExtractor(backbone)
    extractor.freeze_backbone(unfreeze_last=1)
    names = [name.removeprefix("model.") for name, _ in backbone.named_parameters()]
    trainable = [name.removeprefix("model.") for name, p in backbone.named_parameters() if p.requires_grad]
    assert trainable == [name for name in names if name.startswith(tuple(last_stage))]
    assert all(any(name.startswith(prefix) for name in trainable) for prefix in last_stage)
    with pytest.raises(ConfigError) as error:
        extractor.freeze_backbone(unfreeze_last=len(stage_names) + 1)
    assert str(error.value) == (
        f"model.unfreeze_last: expected 0 to {len(stage_names)} (stages of the backbone left trainable, counted "
        f"from the last; {arch}'s: {', '.join(stage_names)}), got {len(stage_names) + 1}"
    )


def test_a_family_without_stages_still_gives_features_but_cannot_unfreeze_some():
    for arch, width in (("mobilenet_v3_small", 1024), ("squeezenet1_1", 512), ("googlenet", 1024)):
        backbone = TorchvisionFeatures((3, 64, 64), arch=arch)
        # Train mode too: GoogLeNet's auxiliary classifiers (a tuple of outputs) are left out.
        assert backbone.train()(torch.randn(2, 3, 64, 64)).shape == (2, width), arch
        assert backbone.out_features == width and backbone.stages is None
        with pytest.raises(ConfigError, match=f"^model.unfreeze_last: {arch} has no stages to unfreeze"):
            FeatureExtractor(backbone).freeze_backbone(unfreeze_last=1)


def test_a_vit_on_images_of_another_size_is_a_config_error():
    cfg = compose_config("dataset=office31", "model.feature_extractor.arch=vit_b_16")
    with pytest.raises(ConfigError) as error:
        validate_model_input(cfg, (3, 64, 64))  # what dann.run checks before building the network
    assert str(error.value).startswith(
        "model.feature_extractor.arch: vit_b_16 takes 224 × 224 images only (its position embeddings are made "
        "for that size), but the dataset gives 64 × 64; set dataset.image_size=224"
    )
    validate_model_input(cfg, (3, 224, 224))


# --- Learning rates per parameter group --------------------------------------------------


def test_parameter_groups_split_backbone_from_new_layers():
    net = resnet18()
    groups = {g["name"]: g for g in net.parameter_groups()}
    assert groups["backbone"]["lr_mult"] == 0.1 and groups["new_layers"]["lr_mult"] == 1.0
    backbone = {id(p) for p in net.feature_extractor.backbone.parameters()}
    new = {
        id(p)
        for m in (net.feature_extractor.bottleneck, net.label_predictor, net.domain_classifier)
        for p in m.parameters()
    }
    assert {id(p) for p in groups["backbone"]["params"]} == backbone
    assert {id(p) for p in groups["new_layers"]["params"]} == new
    assert backbone | new == {id(p) for p in net.parameters()}


def test_digit_and_moons_nets_train_their_feature_extractor_at_the_base_lr():
    for model in ("mlp", "mnist_cnn", "svhn_cnn"):
        assert compose_config(f"model={model}").model.backbone_lr_mult == 1.0
    assert compose_config("model=resnet").model.backbone_lr_mult == 0.1


def test_group_lrs_are_base_times_multiplier_times_schedule():
    cfg = resnet18_cfg("optim=sgd_inv", "trainer.steps=100")
    engine = build_engine(cfg, build_network(cfg, INPUT, 5))
    optimizer, scheduler = engine.optimizer, engine.lr_scheduler
    seen = {}
    for step in range(1001):
        seen[step] = {g["name"]: g["lr"] for g in optimizer.param_groups}
        optimizer.step()  # no gradients: changes nothing, keeps the scheduler's order check quiet
        scheduler.step()
    for step in (0, 1, 1000):
        factor = (1 + 0.001 * step) ** -0.75  # the inv schedule, by step alone (steps run past total_steps)
        assert seen[step]["backbone"] == pytest.approx(0.01 * 0.1 * factor)
        assert seen[step]["new_layers"] == pytest.approx(0.01 * factor)


def test_train_lr_reports_the_base_rate_and_the_backbone_moves_at_a_tenth(tmp_path):
    torch.manual_seed(0)
    cfg = resnet18_cfg("method=source_only", "optim=sgd", "trainer.steps=10")
    engine = build_engine(cfg, build_network(cfg, INPUT, 5))
    lrs = [engine.step(image_batch(), progress=step / 10)["train/lr"] for step in range(3)]
    assert lrs == pytest.approx([0.01 / (1 + 10 * step / 10) ** 0.75 for step in range(3)])  # base lr: no 0.1
    backbone, new_layers = engine.optimizer.param_groups
    assert backbone["lr"] == pytest.approx(0.1 * new_layers["lr"])
    assert new_layers["lr"] == pytest.approx(engine.current_lr())


def test_backbone_lr_mult_must_be_a_non_negative_number():
    with pytest.raises(ConfigError, match="^model.backbone_lr_mult: expected a number >= 0"):
        validate(resnet18_cfg("model.backbone_lr_mult=-0.1"))


# --- Freezing ----------------------------------------------------------------------------


def source_only_steps(*overrides: str, steps: int = 2):
    """The engine of a source_only method after `steps` training steps, and its network's state before them."""
    torch.manual_seed(0)
    cfg = resnet18_cfg("method=source_only", *overrides)
    engine = build_engine(cfg, build_network(cfg, INPUT, 5))
    engine.method.train()
    before = {k: v.clone() for k, v in engine.method.network.state_dict().items()}
    for _ in range(steps):
        engine.step(image_batch(), progress=0.0)
    return engine, before


def changed(method, before, prefix: str) -> bool:
    """Whether any weight or buffer (BatchNorm statistics too) under `prefix` differs from `before`."""
    after = method.network.state_dict()
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_frozen_backbone_gets_no_gradient_and_does_not_change():
    engine, before = source_only_steps("model.freeze_backbone=true")
    method = engine.method
    backbone = method.network.feature_extractor.backbone
    assert all(not p.requires_grad and p.grad is None for p in backbone.parameters())
    # Weights and BatchNorm running statistics alike: the source_only probe's own
    # eval()/train() switch of the feature extractor must not wake the frozen BatchNorm up.
    assert not changed(method, before, "feature_extractor.backbone.")
    assert changed(method, before, "feature_extractor.bottleneck.")
    assert changed(method, before, "label_predictor.")
    assert [g["name"] for g in engine.optimizer.param_groups] == ["new_layers"]


def test_frozen_batchnorm_stays_in_eval_mode_in_train_mode():
    net = resnet18("model.freeze_backbone=true")
    net.train()
    assert all(not bn.training for bn in batch_norms(net.feature_extractor.backbone))
    assert net.feature_extractor.bottleneck[1].training  # the new layers' BatchNorm still learns
    net.eval()
    net.train()
    assert all(not bn.training for bn in batch_norms(net.feature_extractor.backbone))


def test_unfreeze_last_one_trains_layer4_only():
    engine, before = source_only_steps("model.freeze_backbone=true", "model.unfreeze_last=1")
    method = engine.method
    resnet = method.network.feature_extractor.backbone.model
    assert all(p.requires_grad for p in resnet.layer4.parameters())
    assert not any(p.requires_grad for m in (resnet.conv1, resnet.layer1, resnet.layer3) for p in m.parameters())
    assert changed(method, before, "feature_extractor.backbone.model.layer4.")
    assert not changed(method, before, "feature_extractor.backbone.model.layer3.")
    assert all(bn.training for bn in batch_norms(resnet.layer4))
    assert not any(bn.training for bn in batch_norms(resnet.layer3))
    backbone_group = engine.optimizer.param_groups[0]
    assert backbone_group["name"] == "backbone" and backbone_group["lr_mult"] == 0.1
    assert {id(p) for p in backbone_group["params"]} == {id(p) for p in resnet.layer4.parameters()}


def test_unfreeze_last_misuse_is_named():
    with pytest.raises(ConfigError, match="^model.unfreeze_last=1 only applies to a frozen backbone"):
        validate(resnet18_cfg("model.unfreeze_last=1"))
    with pytest.raises(ConfigError, match="^model.unfreeze_last: expected an integer >= 0"):
        validate(resnet18_cfg("model.freeze_backbone=true", "model.unfreeze_last=-1"))
    # The upper bound is the arch's stage count: the network checks it, naming the stages.
    with pytest.raises(ConfigError, match="^model.unfreeze_last: expected 0 to 4 .*resnet18's: layer1, layer2"):
        resnet18("model.freeze_backbone=true", "model.unfreeze_last=5")


def test_unfreeze_last_needs_a_backbone_with_stages():
    cfg = compose_config("model=mlp", "model.freeze_backbone=true", "+model.unfreeze_last=1")
    with pytest.raises(ConfigError, match="^model.unfreeze_last: MlpFeatures has no stages"):
        build_network(cfg, (2,), 2)


# --- Pretrained weights ------------------------------------------------------------------


def test_weights_from_a_local_state_dict_file(saved_resnet18):
    path, state = saved_resnet18
    net = resnet18(f"model.feature_extractor.weights={path}")
    resnet = net.feature_extractor.backbone.model
    assert torch.equal(resnet.conv1.weight, state["conv1.weight"])
    assert torch.equal(resnet.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert isinstance(resnet.fc, nn.Identity)  # ImageNet's 1000-class layer is dropped


def test_weights_from_a_checkpoint_with_a_state_dict_entry_and_module_prefix(saved_resnet18, tmp_path):
    _, state = saved_resnet18
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    net = resnet18(f"model.feature_extractor.weights={path}")
    assert torch.equal(net.feature_extractor.backbone.model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_a_missing_weights_file_says_what_to_give(tmp_path):
    path = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(DataError, match=f"^model.feature_extractor.weights: no file at {path}"):
        resnet18(f"model.feature_extractor.weights={path}")


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(ConfigError) as error:
        resnet18(f"model.feature_extractor.weights={path}")
    message = str(error.value)
    assert message.startswith(f"model.feature_extractor.weights: file {path} does not hold resnet18 weights")
    assert "unexpected (e.g. layer1.2." in message and "set model.feature_extractor.arch" in message


def test_an_unreadable_weights_file_is_a_data_error(tmp_path):
    path = tmp_path / "truncated.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="is not a readable PyTorch weights file"):
        resnet18(f"model.feature_extractor.weights={path}")


def test_an_unknown_weights_name_lists_the_known_ones():
    # resnet18 has no V2 weights in torchvision.
    with pytest.raises(ConfigError) as error:
        resnet18("model.feature_extractor.weights=IMAGENET1K_V2")
    assert str(error.value).startswith("model.feature_extractor.weights: 'IMAGENET1K_V2' is neither")
    assert "(DEFAULT, IMAGENET1K_V1)" in str(error.value)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache under TORCH_HOME, and no network: every download fails."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    attempts = []

    def no_network(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return attempts


def test_offline_weights_name_says_where_to_get_the_file(offline, tmp_path):
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    with pytest.raises(DataError) as error:
        resnet18("model.feature_extractor.weights=IMAGENET1K_V1")
    message = str(error.value)
    assert offline == [url]
    assert message.startswith(
        f"model.feature_extractor.weights: could not download resnet18 IMAGENET1K_V1 weights from {url} (URLError"
    )
    assert f"model.feature_extractor.weights=/path/to/{url.rsplit('/', 1)[-1]}" in message
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in message and "TORCH_HOME" in message


def test_a_weights_name_found_in_the_hub_cache_needs_no_network(offline, saved_resnet18, tmp_path):
    path, state = saved_resnet18
    filename = torchvision.models.ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / filename).write_bytes(path.read_bytes())
    net = resnet18("model.feature_extractor.weights=DEFAULT")
    assert offline == []
    assert torch.equal(net.feature_extractor.backbone.model.conv1.weight, state["conv1.weight"])


# --- Weights of other families -----------------------------------------------------------


@pytest.fixture(scope="module")
def saved_alexnet(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    return save_random_weights(tmp_path_factory, "alexnet", seed=321)


def alexnet(*overrides: str):
    cfg = compose_config("model=resnet", "model.feature_extractor.arch=alexnet", *overrides)
    return build_network(cfg, (3, 64, 64), 5)


def test_alexnet_weights_from_a_local_state_dict_file(saved_alexnet):
    path, state = saved_alexnet
    model = alexnet(f"model.feature_extractor.weights={path}").feature_extractor.backbone.model
    loaded = model.state_dict()
    assert loaded.keys() == state.keys() - {"classifier.6.weight", "classifier.6.bias"}  # fc8 is dropped
    assert all(torch.equal(loaded[key], state[key]) for key in loaded)
    assert isinstance(model.classifier[6], nn.Identity)


def test_weights_of_another_family_are_refused_with_one_message(saved_resnet18):
    path, state = saved_resnet18
    with pytest.raises(ConfigError) as error:
        alexnet(f"model.feature_extractor.weights={path}")
    # AlexNet's 7 kept layers (conv1-conv5, fc6, fc7) have a weight and a bias each; every one of
    # ResNet-18's entries is foreign to it.
    assert str(error.value) == (
        f"model.feature_extractor.weights: file {path} does not hold alexnet weights: parameters "
        f"14 missing (e.g. classifier.1.bias), {len(state)} unexpected (e.g. bn1.bias); "
        "set model.feature_extractor.arch to the architecture the weights were saved from"
    )


def test_alexnet_weights_by_name_offline_say_where_to_get_them(offline):
    url = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
    with pytest.raises(DataError) as error:
        alexnet("model.feature_extractor.weights=DEFAULT")
    assert offline == [url]
    assert str(error.value).startswith(
        f"model.feature_extractor.weights: could not download alexnet IMAGENET1K_V1 weights from {url}"
    )
    with pytest.raises(ConfigError, match=r"neither a torchvision weights name for alexnet \(DEFAULT, IMAGENET1K_V1\)"):
        alexnet("model.feature_extractor.weights=IMAGENET1K_V2")


# --- AlexNet and VGG16 trained end to end ------------------------------------------------


@pytest.fixture(scope="module")
def office31(tmp_path_factory) -> Path:
    """A generated Office-31 tree (all 31 classes, one small image each) in amazon and webcam."""
    from tests.helpers.image_files import write_office31

    data = tmp_path_factory.mktemp("data")
    write_office31(data, images_per_class=1, size=72, domains=("amazon", "webcam"))
    return data


# The Office-31 preset's default model, small images (AlexNet needs about 64 pixels), two steps.
SMALL_OFFICE31_RUN = (
    "dataset=office31",
    "model.feature_extractor.weights=null",
    "dataset.image_size=64",
    "dataset.resize_size=72",
    "dataset.num_workers=0",
    "trainer.batch_size=4",
    "trainer.steps=2",
    "trainer.eval_every=2",
    "trainer.eval_batch_size=16",
    "trainer.reverse_validation_every=0",
    "logger=none",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["model.feature_extractor.arch=alexnet"],
        # The classic VGG16 recipe: the base frozen, its last stage (fc7) and the new layers trained.
        ["model.feature_extractor.arch=vgg16", "model.freeze_backbone=true", "model.unfreeze_last=1"],
    ],
    ids=["alexnet", "vgg16"],
)
def test_alexnet_and_vgg16_train_end_to_end(office31, tmp_path, overrides):
    result = run_cli(*SMALL_OFFICE31_RUN, *overrides, cwd=tmp_path, env={"DANN_DATA": str(office31)}, timeout=600)
    assert result.returncode == 0, result.stderr
    run_dir = only(tmp_path.glob("outputs/*/*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2
    losses = [r["train/label_loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/label_loss" in r]
    assert losses and all(loss > 0 for loss in losses)
    assert 0 <= summary["final"]["target/acc"] <= 1
    config = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "TorchvisionFeatures" in config and overrides[0].split("=")[1] in config


def test_the_paper_preset_is_the_papers_alexnet_recipe():
    cfg = compose_config("experiment=dann_office31_paper")
    validate(cfg)
    model = cfg.model
    assert (model.feature_extractor.arch, model.feature_extractor.weights) == ("alexnet", "IMAGENET1K_V1")
    assert model.bottleneck_dim == 256 and model.backbone_lr_mult == 0.1
    assert list(model.domain_classifier.hidden) == [1024, 1024] and model.domain_classifier.dropout == 0.5
    assert not model.domain_classifier.batch_norm and list(model.label_predictor.hidden) == []
    optimizer, schedule = cfg.optim.optimizer, cfg.optim.lr_schedule
    assert (optimizer.lr, optimizer.momentum, optimizer.nesterov) == (0.01, 0.9, False)
    assert (schedule._target_, schedule.alpha, schedule.beta) == ("dann.schedules.annealed_lr_factor", 10.0, 0.75)
    assert cfg.method.lambda_schedule.gamma == 10.0 and cfg["lambda"] == 1.0
    assert cfg.dataset.image_size == 224
    assert [t._target_.rsplit(".", 1)[1] for t in cfg.dataset.transforms.train] == [
        "Resize",
        "RandomCrop",
        "RandomHorizontalFlip",
    ]
    validate_model_input(cfg, (3, 224, 224))  # AlexNet up to fc7 takes the preset's crops
    assert compose_config("experiment=dann_office31_paper_resnet50").model.feature_extractor.arch == "resnet50"
