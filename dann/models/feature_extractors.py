"""Feature extractors G_f. Each takes the input shape (without batch) and exposes `out_features`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from dann.download import network_timeout
from dann.errors import ConfigError, DataError, describe_error


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
        hidden: Sequence[int] = (15,),
        activation: Callable[[], nn.Module] = nn.ReLU,
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


RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")  # what `arch` may name (the config schema checks it)
WEIGHTS_KEY = "model.feature_extractor.weights"


class ResNetFeatures(nn.Module):
    """A torchvision ResNet without its classifier: [B, 3, H, W] → [B, 512 (18, 34) or 2048 (50, 101)].

    `weights`: None for random initialisation; a torchvision weights name of `arch`
    ("IMAGENET1K_V1", "IMAGENET1K_V2", "DEFAULT", …), downloaded once into the torch hub
    cache; or the path of a file holding a state_dict of torchvision's `arch` (or a
    checkpoint with a "state_dict" entry). The original 1000-class `fc` layer is dropped.
    """

    def __init__(self, input_shape: Sequence[int], arch: str = "resnet50", weights: str | None = None):
        super().__init__()
        if arch not in RESNETS:
            raise ValueError(f"ResNetFeatures: arch must be one of {', '.join(RESNETS)}, got {arch!r}")
        if input_shape[0] != 3:
            raise ConfigError(
                f"model.feature_extractor: a ResNet takes RGB images, but the inputs have "
                f"{input_shape[0]} channel(s); set dataset.channels=3"
            )
        resnet = getattr(torchvision.models, arch)(weights=None)
        self.out_features = resnet.fc.in_features
        resnet.fc = nn.Identity()
        if weights:  # None, or an empty `weights=` on the command line: random init
            _load_weights(resnet, arch, str(weights))
        self.resnet = resnet

    @property
    def stages(self) -> list[nn.Module]:
        """The four residual stages, input to output (layer1 … layer4); `model.unfreeze_last` counts from the end."""
        return [self.resnet.layer1, self.resnet.layer2, self.resnet.layer3, self.resnet.layer4]

    def forward(self, x: Tensor) -> Tensor:
        return self.resnet(x)


def _load_weights(resnet: nn.Module, arch: str, weights: str) -> None:
    """Load the weights `model.feature_extractor.weights` names into `resnet` (whose fc is already dropped)."""
    if _looks_like_path(weights):
        state, source = _read_state_dict(Path(weights).expanduser(), arch), f"file {weights}"
    else:
        state, source = _download(arch, _weights_entry(arch, weights)), f"torchvision's {arch} {weights}"
    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    _check_keys(resnet, state, arch, source)
    resnet.load_state_dict(state)


def _looks_like_path(weights: str) -> bool:
    return (
        os.sep in weights
        or "/" in weights
        or weights.endswith((".pth", ".pt", ".tar", ".ckpt", ".bin"))
        or Path(weights).expanduser().exists()
    )


def _weights_entry(arch: str, weights: str) -> WeightsEnum:
    """`IMAGENET1K_V1`, `DEFAULT` or torchvision's full `ResNet50_Weights.IMAGENET1K_V1` → the enum entry."""
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


def _check_keys(resnet: nn.Module, state: dict[str, Tensor], arch: str, source: str) -> None:
    """Refuse weights of another architecture with one message, rather than torch's list of every key."""
    expected = resnet.state_dict()
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
