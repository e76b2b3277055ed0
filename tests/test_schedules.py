import math

import pytest
import torch
from torch import nn

from dann.errors import ConfigError
from dann.optim import build_optimizer
from dann.schedules import annealed_lr_factor, ganin_lambda, inv_lr_factor
from tests.helpers import compose_config


def test_ganin_lambda_follows_the_paper_formula():
    assert ganin_lambda(0.0, 0.1) == 0.0
    # λ_p = lambda · (2 / (1 + exp(-10 p)) - 1)
    for p in (0.1, 0.5, 1.0):
        assert ganin_lambda(p, 0.1) == pytest.approx(0.1 * (2 / (1 + math.exp(-10 * p)) - 1))
    assert ganin_lambda(1.0, 0.1) == pytest.approx(0.1, rel=1e-4)  # reaches `lambda` by the end
    values = [ganin_lambda(p / 100, 1.0) for p in range(101)]
    assert values == sorted(values)


def test_annealed_lr_matches_paper_at_the_ends():
    assert annealed_lr_factor(0, total_steps=100) == 1.0
    assert annealed_lr_factor(100, total_steps=100) == pytest.approx(1 / 11**0.75)
    assert annealed_lr_factor(150, total_steps=100) == annealed_lr_factor(100, total_steps=100)  # p capped at 1


def test_inv_lr_depends_on_the_step_alone():
    # The Transfer-Learning-Library's lr · (1 + 0.001 · step)^-0.75.
    assert inv_lr_factor(0, total_steps=10) == 1.0
    assert inv_lr_factor(1, total_steps=10) == pytest.approx(1.001**-0.75)
    assert inv_lr_factor(1000, total_steps=10) == pytest.approx(2**-0.75)
    assert inv_lr_factor(1000, total_steps=10) == inv_lr_factor(1000, total_steps=50_000)


def all_parameters(module: nn.Module) -> list[dict]:
    return [{"params": list(module.parameters()), "lr_mult": 1.0, "name": "all"}]


def test_optimizer_follows_the_schedule_step_by_step():
    cfg = compose_config("optim=sgd", "trainer.steps=10")
    optimizer, scheduler = build_optimizer(cfg.optim, all_parameters(nn.Linear(2, 2)), total_steps=10)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.01 / (1 + 10 * t / 10) ** 0.75 for t in range(10)])


def test_constant_schedules():
    cfg = compose_config("optim=sgd", "optim.lr_schedule.name=constant")
    optimizer, scheduler = build_optimizer(cfg.optim, all_parameters(nn.Linear(2, 2)), total_steps=5)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.01


def test_sgd_inv_recipe_follows_the_transfer_learning_library():
    cfg = compose_config("optim=sgd_inv")
    optimizer, scheduler = build_optimizer(cfg.optim, all_parameters(nn.Linear(2, 2)), total_steps=20_000)
    assert optimizer.defaults.items() >= {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}.items()
    seen = {}
    for step in range(1001):
        seen[step] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    assert seen[0] == 0.01
    assert seen[1] == pytest.approx(0.01 * 1.001**-0.75)
    assert seen[1000] == pytest.approx(0.01 * 2**-0.75)


def test_a_schedule_setting_no_schedule_has_is_named():
    cfg = compose_config("optim=sgd", "+optim.lr_schedule.gama=0.1")
    with pytest.raises(ConfigError, match="^optim.lr_schedule.gama: no learning-rate schedule has this setting"):
        build_optimizer(cfg.optim, all_parameters(nn.Linear(2, 2)), total_steps=5)
