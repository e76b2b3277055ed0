import math

import pytest
import torch

from dann.builders import build_engine, build_network
from dann.config.validate import validate
from dann.errors import ConfigError
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


def moons_engine(*overrides: str):
    """The engine the composed config builds, over the moons network: its optimiser and schedule are the run's."""
    cfg = compose_config(*overrides)
    return build_engine(cfg, build_network(cfg, (2,), 2))


def lrs_seen(engine, steps: int) -> list[float]:
    seen = []
    for _ in range(steps):
        seen.append(engine.optimizer.param_groups[0]["lr"])
        engine.optimizer.step()
        engine.lr_scheduler.step()
    return seen


def test_optimizer_follows_the_schedule_step_by_step():
    engine = moons_engine("optim=sgd", "trainer.steps=10")
    assert isinstance(engine.optimizer, torch.optim.SGD)
    assert engine.optimizer.defaults["momentum"] == 0.9
    assert lrs_seen(engine, 10) == pytest.approx([0.01 / (1 + 10 * t / 10) ** 0.75 for t in range(10)])


def test_constant_schedules():
    engine = moons_engine("optim=sgd", "optim/lr_schedule=constant", "trainer.steps=5")
    assert lrs_seen(engine, 6) == [0.01] * 6


def test_sgd_inv_recipe_follows_the_transfer_learning_library():
    engine = moons_engine("optim=sgd_inv", "trainer.steps=20000")
    assert engine.optimizer.defaults.items() >= {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}.items()
    seen = lrs_seen(engine, 1001)
    assert seen[0] == 0.01
    assert seen[1] == pytest.approx(0.01 * 1.001**-0.75)
    assert seen[1000] == pytest.approx(0.01 * 2**-0.75)


def test_each_group_trains_at_its_lr_mult_and_train_lr_is_the_base_rate():
    engine = moons_engine("optim=sgd", "model.backbone_lr_mult=0.1", "trainer.steps=10")
    for step in range(3):
        factor = 1 / (1 + 10 * step / 10) ** 0.75
        rates = {group["name"]: group["lr"] for group in engine.optimizer.param_groups}
        assert rates == pytest.approx({"backbone": 0.001 * factor, "new_layers": 0.01 * factor})
        assert engine.current_lr() == pytest.approx(0.01 * factor)
        engine.optimizer.step()
        engine.lr_scheduler.step()


def test_a_schedule_setting_no_schedule_has_is_named():
    with pytest.raises(
        ConfigError,
        match="^optim.lr_schedule.gama: dann.schedules.annealed_lr_factor .* takes no setting 'gama' "
        r"\(it takes alpha, beta\)",
    ):
        validate(compose_config("optim=sgd", "+optim.lr_schedule.gama=0.1"))
