"""The inter-twinning moons toy of Ganin et al. (JMLR 2016, §5.1.1).

The source is scikit-learn's two moons; the target is the same distribution
rotated by `rotation_deg` (35° in the paper) about the centre of the
moons. Needs no download, so it is the embedded default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch

from dann.config.spec import Setting
from dann.data.base import MIN_SPLIT_EXAMPLES, DomainPair, DomainSpec, Split, register_domain
from dann.errors import ConfigError

# The midpoint of scikit-learn's moons (x in [-1, 2], y in [-0.5, 1]); rotating about it
# keeps the target on top of the source rather than swinging it away.
_CENTRE = np.array([0.5, 0.25])


@dataclass(kw_only=True)
class Moons(DomainPair):
    """`dataset=moons`: 2-d points, float32 [N, 2], with labels 0 and 1. `root` is unused."""

    loads = ("moons", "moons_rotated")

    source: str | DomainSpec = "moons"
    target: str | DomainSpec = "moons_rotated"
    num_train: Annotated[int, Setting("points per domain's training split (the paper's 300)", ge=1)] = 300
    num_test: Annotated[int, Setting("fresh draws for source validation and target test", ge=1)] = 1000
    noise: Annotated[float, Setting("std of the Gaussian noise make_moons adds", ge=0)] = 0.1
    rotation_deg: Annotated[float, Setting("the target's rotation, in degrees")] = 35.0
    # Its generator seeds are data_seed·4 + 0…3, which numpy takes below 2**32.
    data_seed: Annotated[
        int, Setting("fixed, so that run seeds vary only training randomness", ge=0, le=(2**32 - 4) // 4)
    ] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("num_train", "num_test"):  # refused as the config is checked, before any directory is written
            if getattr(self, key) < MIN_SPLIT_EXAMPLES:
                raise ConfigError(
                    f"dataset.{key}: {getattr(self, key)} is too few; every split needs at least {MIN_SPLIT_EXAMPLES} "
                    "points, of both moons (accuracy on one point says nothing, and SND compares each point with "
                    f"the others); set dataset.{key}={MIN_SPLIT_EXAMPLES} or more"
                )

    def load_split(self, domain: DomainSpec, train: bool) -> Split:
        rotation_deg = self.rotation_deg if domain.name == "moons_rotated" else 0.0
        n = self.num_train if train else self.num_test
        # Distinct generator seeds per (domain, split): the target is never the source's own points rotated.
        seed = self.data_seed * 4 + 2 * int(rotation_deg != 0) + int(train)
        # Imported here: sklearn.datasets costs about a second to import, and only moons runs need it.
        from sklearn.datasets import make_moons

        x, y = make_moons(n_samples=n, noise=self.noise, random_state=seed)
        if rotation_deg:
            a = math.radians(rotation_deg)
            rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            x = (x - _CENTRE) @ rotation.T + _CENTRE
        return Split(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64))


register_domain(DomainSpec("moons", 2))
register_domain(DomainSpec("moons_rotated", 2))
