"""Feature extractors G_f. Each takes the input shape (without batch) and exposes `out_features`.

torchvision is imported inside the functions of `TorchvisionFeatures` only: importing it takes seconds
(it brings torch._dynamo), which every run of the MLP or digit networks, and every subprocess, would pay.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import torch
from torch import Tensor, nn

from dann.config.declared import check_value
from dann.config.spec import Setting, Spec
from dann.data.download import network_timeout
from dann.errors import ConfigError, DataError, describe_error

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum


class MnistFeatures(nn.Module):
    """Ganin et al. 2016, Fig. 4(a), MNIST → MNIST-M: conv5×5·32, pool, conv5×5·48, pool.

    Input [B, C, 28, 28] → features [B, 48·4·4 = 768].
    """

    def __init__(self, input_shape: Sequence[int]):
        super().__init__()
        channels = input_shape[0]
        self.layers = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 48, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.out_features = _flat_size(self.layers, input_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class SvhnFeatures(nn.Module):
    """Ganin et al. 2016, Fig. 4(b), SVHN → MNIST: conv5×5·64, pool, conv5×5·64, pool, conv5×5·128.

    The paper gives no padding; 'same' padding and 3×3/2 pools keep a 32×32 input at
    [B, 128, 8, 8] → features [B, 8192].
    """

    def __init__(self, input_shape: Sequence[int]):
        super().__init__()
        channels = input_shape[0]
        self.layers = nn.Sequential(
            nn.Conv2d(channels, 64, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(64, 64, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(64, 128, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.out_features = _flat_size(self.layers, input_shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MlpFeatures(nn.Module):
    """A small MLP for vector inputs such as the two-moons toy: [B, D] → [B, hidden[-1]].

    `activation`: makes each hidden layer's activation module (`nn.ReLU`, `nn.Sigmoid`, …).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        hidden: Annotated[Sequence[int], Setting("widths of the hidden layers; [] for none", ge=1)] = (15,),
        activation: Annotated[
            Callable[[], nn.Module], Setting("makes each hidden layer's activation (torch.nn.ReLU, …)", node=True)
        ] = nn.ReLU,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = int(input_shape[0])
        for h in hidden:
            layers += [nn.Linear(width, h), activation()]
            width = h
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class _TorchvisionArchs(Sequence[str]):
    """The names of every torchvision classification model, listed (torchvision imported) on first use."""

    @functools.cached_property
    def _names(self) -> tuple[str, ...]:
        import torchvision

        return tuple(torchvision.models.list_models(module=torchvision.models))

    def __getitem__(self, index):
        return self._names[index]

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return repr(self._names)


# What `arch` may name (the config schema checks it): every torchvision classification model. Lazy, as
# the schema imports it for every run, and only a run with a torchvision backbone needs the list.
ARCHS = _TorchvisionArchs()
ARCH_EXAMPLES = "alexnet, vgg16, vgg16_bn, resnet50, densenet121, efficientnet_b0, convnext_tiny, vit_b_16"
ARCH_KEY = "model.feature_extractor.arch"


class TorchvisionArch(Spec):
    """One of the many torchvision model names: a wrong one is told a few examples, not all 80."""

    def expected(self, value: object) -> str | None:
        return None if isinstance(value, str) and value in ARCHS else self.describe()

    def describe(self, finite: bool = True) -> str:
        return (
            f"the name of a torchvision classification model (e.g. {ARCH_EXAMPLES}; "
            f"torchvision.models.list_models() gives all {len(ARCHS)})"
        )


WEIGHTS_KEY = "model.feature_extractor.weights"


class TorchvisionFeatures(nn.Module):
    """A torchvision classification model without its classifier: [B, 3, H, W] → [B, out_features].

    `arch`: any name of `torchvision.models.list_models(module=torchvision.models)`. The final
    1000-way Linear layer is replaced by the identity (SqueezeNet's 1000-way convolution by the
    global average pool that followed it), so the features are what fed it:
    AlexNet and VGG up to fc7 (4096), ResNet-18/34 512, ResNet-50/101 2048, DenseNet-121 1024,
    EfficientNet-B0 1280, ConvNeXt-T 768, ViT-B/16 768 (its class token).

    `weights`: None for random initialisation; a torchvision weights name of `arch`
    ("IMAGENET1K_V1", "DEFAULT", …), downloaded once into the torch hub cache; or the path of a
    file holding a state_dict of torchvision's `arch` (or a checkpoint with a "state_dict"
    entry). The dropped classifier's entries are ignored, every other one must match.

    `stages` (input to output, for `model.freeze_backbone` with `model.unfreeze_last=N`) are each
    family's natural ones, named in `stage_names`: AlexNet conv1–conv5, fc6, fc7; VGG block1–block5
    (cut after each max-pool), fc6, fc7; ResNet layer1–layer4; DenseNet denseblock1–4 (each with
    the transition after it); EfficientNet's and ConvNeXt's `features` stages, stage1… (7 for
    EfficientNet-B0; 4 for ConvNeXt, each with the downsampling before it); ViT's encoder layers
    (encoder_layer_0–11 for ViT-B). The stem before the first stage stays frozen whatever N;
    layers with weights after the last stage (DenseNet's norm5, EfficientNet's last 1×1
    convolution, ConvNeXt's and ViT's final LayerNorm) belong to the last stage. Other families
    (MobileNet, RegNet, Swin, …) have no stages: they are frozen whole or not at all.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        arch: Annotated[str, Setting("the torchvision model", spec=TorchvisionArch("choice"))] = "resnet50",
        weights: Annotated[
            str | None,
            Setting(
                "a torchvision weights name of arch (IMAGENET1K_V1, DEFAULT, …) or a .pth path; null: random init",
                noun="a torchvision weights name or a .pth path",
                hint="null trains from scratch",
            ),
        ] = None,
    ):
        import torchvision

        super().__init__()
        check_value(ARCH_KEY, arch, TorchvisionArch("choice"))  # built in code: the declaration's own check
        if input_shape[0] != 3:
            raise ConfigError(
                f"model.feature_extractor: {arch} takes RGB images, but the inputs have "
                f"{input_shape[0]} channel(s); set dataset.channels=3"
            )
        model = _build(arch, pretrained=bool(weights))
        if isinstance(model, torchvision.models.VisionTransformer):
            _check_image_size(arch, model.image_size, input_shape)
        head, self.out_features = _remove_classifier(model)
        if weights:  # None, or an empty `weights=` on the command line: random init
            _load_weights(model, arch, str(weights), dropped=(head, *_AUX_HEADS.get(arch, ())))
        self.arch = arch
        self.model = model
        stages = _stages(model)
        self.stage_names = list(stages)
        # A plain list, not registered as submodules: each stage is (a view of) layers of `model`.
        self.stages = list(stages.values()) if stages else None

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


# GoogLeNet's and Inception-v3's auxiliary classifiers only serve their ImageNet training: left out.
_AUX_HEADS = {"googlenet": ("aux1", "aux2"), "inception_v3": ("AuxLogits",)}


def _build(arch: str, pretrained: bool) -> nn.Module:
    """torchvision's `arch`, randomly initialised (weights, if any, are loaded afterwards)."""
    import torchvision

    kwargs = {}
    if arch in _AUX_HEADS:
        # Their ImageNet weights expect inputs rescaled from ImageNet normalisation to [-1, 1]
        # (torchvision turns transform_input on with them); init_weights=True keeps today's init.
        kwargs = {"aux_logits": False, "transform_input": pretrained, "init_weights": True}
    try:
        return torchvision.models.get_model(arch, weights=None, **kwargs)
    except NotImplementedError:
        # RegNet computes its widths with tensors, which the meta device of the config's dry run
        # (dann.config.validate.validate_model_input) cannot read back: build it on the CPU, then move it.
        with torch.device("cpu"):
            model = torchvision.models.get_model(arch, weights=None, **kwargs)
        return model.to(torch.get_default_device())


def _remove_classifier(model: nn.Module) -> tuple[str, int]:
    """Replace the final 1000-way Linear layer (`fc`, `classifier.6`, `heads.head`, …) by the
    identity; returns its name and its input width, the features' width."""
    import torchvision

    if isinstance(model, torchvision.models.SqueezeNet):
        # Its classifier is a 1×1 convolution to the 1000 classes, then a global average pool:
        # the pool alone, over the 512 channels of its last Fire module, gives the features.
        model.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        return "classifier", 512
    head = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == 1000][-1]
    width = model.get_submodule(head).in_features
    model.set_submodule(head, nn.Identity())
    return head, width


def _check_image_size(arch: str, size: int, input_shape: Sequence[int]) -> None:
    """A ViT's position embeddings fix its input size: say so before its forward asserts it."""
    if tuple(input_shape[1:]) != (size, size):
        raise ConfigError(
            f"{ARCH_KEY}: {arch} takes {size} × {size} images only (its position embeddings are made for "
            f"that size), but the dataset gives {' × '.join(map(str, input_shape[1:]))}; set "
            f"dataset.image_size={size} (and dataset.resize_size >= {size}), or choose a convolutional arch"
        )


def _stages(model: nn.Module) -> dict[str, nn.Module]:
    """The family's stages, input to output, by name ({} for a family without); see TorchvisionFeatures."""
    import torchvision.models as tv

    if isinstance(model, tv.AlexNet):
        convs = _cut(model.features, _indices(model.features, nn.Conv2d))
        fcs = _cut(model.classifier, _indices(model.classifier, nn.Linear))
        return {**{f"conv{i}": m for i, m in enumerate(convs, 1)}, "fc6": fcs[0], "fc7": fcs[1]}
    if isinstance(model, tv.VGG):
        pools = _indices(model.features, nn.MaxPool2d)
        blocks = _cut(model.features, [0, *(i + 1 for i in pools[:-1])])
        fcs = _cut(model.classifier, _indices(model.classifier, nn.Linear))
        return {**{f"block{i}": m for i, m in enumerate(blocks, 1)}, "fc6": fcs[0], "fc7": fcs[1]}
    if isinstance(model, tv.ResNet):
        return {f"layer{i}": getattr(model, f"layer{i}") for i in range(1, 5)}
    if isinstance(model, tv.DenseNet):
        names = [name for name, _ in model.features.named_children()]
        starts = [i for i, name in enumerate(names) if name.startswith("denseblock")]
        return {names[i]: m for i, m in zip(starts, _cut(model.features, starts), strict=True)}
    if isinstance(model, tv.EfficientNet):
        stages = _cut(model.features, list(range(1, len(model.features) - 1)))
        return {f"stage{i}": m for i, m in enumerate(stages, 1)}
    if isinstance(model, tv.ConvNeXt):
        *stages, last = _cut(model.features, [1, 2, 4, 6])
        stages.append(nn.Sequential(last, model.classifier[0]))  # the final LayerNorm2d
        return {f"stage{i}": m for i, m in enumerate(stages, 1)}
    if isinstance(model, tv.VisionTransformer):
        names = [name for name, _ in model.encoder.layers.named_children()]
        stages = list(model.encoder.layers)
        stages[-1] = nn.Sequential(stages[-1], model.encoder.ln)
        return dict(zip(names, stages, strict=True))
    return {}


def _indices(layers: nn.Sequential, kind: type[nn.Module]) -> list[int]:
    return [i for i, m in enumerate(layers) if isinstance(m, kind)]


def _cut(layers: nn.Sequential, starts: list[int]) -> list[nn.Sequential]:
    """`layers` cut before each index of `starts`, the last piece to the end (views: the same modules)."""
    return [layers[a:b] for a, b in zip(starts, [*starts[1:], len(layers)], strict=True)]


def _load_weights(model: nn.Module, arch: str, weights: str, dropped: Sequence[str]) -> None:
    """Load the weights `model.feature_extractor.weights` names into `model`, but for the entries
    of the modules it `dropped` (its classifier, already replaced by the identity)."""
    if _looks_like_path(weights):
        state, source = _read_state_dict(Path(weights).expanduser(), arch), f"file {weights}"
    else:
        state, source = _download(arch, _weights_entry(arch, weights)), f"torchvision's {arch} {weights}"
    prefixes = tuple(f"{name}." for name in dropped)
    state = {key: value for key, value in state.items() if not key.startswith(prefixes)}
    _check_keys(model, state, arch, source)
    model.load_state_dict(state)


def _looks_like_path(weights: str) -> bool:
    return (
        os.sep in weights
        or "/" in weights
        or weights.endswith((".pth", ".pt", ".tar", ".ckpt", ".bin"))
        or Path(weights).expanduser().exists()
    )


def _weights_entry(arch: str, weights: str) -> WeightsEnum:
    """`IMAGENET1K_V1`, `DEFAULT` or torchvision's full `AlexNet_Weights.IMAGENET1K_V1` → the enum entry."""
    import torchvision

    names = torchvision.models.get_model_weights(arch)
    try:
        return names[weights.removeprefix(f"{names.__name__}.")]
    except KeyError:
        choices = ", ".join(["DEFAULT", *(entry.name for entry in names)])
        raise ConfigError(
            f"{WEIGHTS_KEY}: '{weights}' is neither a torchvision weights name for {arch} ({choices}) "
            f"nor an existing file; give one of those names, or the path of a .pth file"
        ) from None


def _download(arch: str, entry: WeightsEnum) -> dict[str, Tensor]:
    """torchvision's weights through the torch hub cache: downloaded once, then read from disk."""
    try:
        with network_timeout():
            return torch.hub.load_state_dict_from_url(entry.url, map_location="cpu", progress=False, check_hash=True)
    except Exception as e:  # offline, a proxy, a truncated file: all end in the same advice
        filename = entry.url.rsplit("/", 1)[-1]
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise DataError(
            f"{WEIGHTS_KEY}: could not download {arch} {entry.name} weights from {entry.url} "
            f"({describe_error(e)}). Without internet, download that file on "
            f"another machine, then pass {WEIGHTS_KEY}=/path/to/{filename}, or copy it into {cache} "
            f"(the torch hub cache; set TORCH_HOME to move it), where it is found without downloading."
        ) from e


def _read_state_dict(path: Path, arch: str) -> dict[str, Tensor]:
    """A state_dict file, or a checkpoint with a "state_dict" entry; a `module.` prefix (DataParallel) is dropped."""
    if not path.is_file():
        raise DataError(
            f"{WEIGHTS_KEY}: no file at {path}; give the path of a state_dict of torchvision's "
            f"{arch} (torch.save(model.state_dict(), path)), or a torchvision weights name"
        )
    try:
        # weights_only: a weights file must not be able to run code when it is read.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(
            f"{WEIGHTS_KEY}: {path} is not a readable PyTorch weights file "
            f"({type(e).__name__}); it may be truncated, or hold objects other than tensors: "
            f"save only model.state_dict()"
        ) from e
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError(
            f"{WEIGHTS_KEY}: {path} holds no state_dict (a dict of tensors, alone or under "
            f"'state_dict'); save one with torch.save(model.state_dict(), path)"
        )
    return {key.removeprefix("module."): value for key, value in state.items()}


def _check_keys(model: nn.Module, state: dict[str, Tensor], arch: str, source: str) -> None:
    """Refuse weights of another architecture with one message, rather than torch's list of every key."""
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    problems = [
        f"{len(keys)} {what} (e.g. {keys[0]})"
        for keys, what in ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
        if keys
    ]
    if problems:
        raise ConfigError(
            f"{WEIGHTS_KEY}: {source} does not hold {arch} weights: parameters {', '.join(problems)}; "
            f"set model.feature_extractor.arch to the architecture the weights were saved from"
        )


@torch.no_grad()
def _flat_size(layers: nn.Module, input_shape: Sequence[int]) -> int:
    """Width of `layers`' flattened output for one input of `input_shape`."""
    return int(layers(torch.zeros(1, *input_shape)).shape[1])
