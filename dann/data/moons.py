"""The inter-twinning moons toy of Ganin et al. (JMLR 2016, §5.1.1).

The source is scikit-learn's two moons; the target is the same distribution
rotated by `dataset.rotation_deg` (35° in the paper) about the centre of the
moons. Needs no download, so it is the embedded default.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from omegaconf import DictConfig
from sklearn.datasets import make_moons

from dann.data.base import DomainSpec, Split, register_domain

# The midpoint of scikit-learn's moons (x in [-1, 2], y in [-0.5, 1]); rotating about it
# keeps the target on top of the source rather than swinging it away.
_CENTRE = np.array([0.5, 0.25])


def _moons(cfg: DictConfig, train: bool, rotation_deg: float) -> Split:
    n = cfg.num_train if train else cfg.num_test
    # Distinct generator seeds per (domain, split): the target is never the source's own points rotated.
    seed = cfg.data_seed * 4 + 2 * int(rotation_deg != 0) + int(train)
    x, y = make_moons(n_samples=n, noise=cfg.noise, random_state=seed)
    if rotation_deg:
        a = math.radians(rotation_deg)
        rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        x = (x - _CENTRE) @ rotation.T + _CENTRE
    return Split(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64))


register_domain(DomainSpec("moons", 2, lambda cfg, train: _moons(cfg, train, 0.0)))
register_domain(DomainSpec("moons_rotated", 2, lambda cfg, train: _moons(cfg, train, cfg.rotation_deg)))
