"""Gradient diagnostics: the norms of the label and reversed domain gradients at the shared features.

`engine.step(..., diagnose=True)` measures them (`dann.training.engine.feature_gradients`). Each is checked
against the same gradient computed by hand with torch.autograd.grad on a copy of the network;
measuring must not change the step; a compiled engine measures what an eager one does; and the loop
asks for them on logged steps only.
"""

import copy
import functools
import json

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from dann.builders import build_engine, build_network
from dann.grl import grad_reverse
from dann.methods import Batch
from dann.methods.base import domain_labels
from dann.runs.tracking import RunLogger
from dann.training.loop import RunContext, train
from dann.training.precision import Runtime
from dann.training.settings import TrainerSettings
from tests.helpers import compose_config, moons_batch, moons_dann_with_quick_evaluation

DIAGNOSTICS = {"train/grad_norm_label", "train/grad_norm_domain", "train/grad_ratio"}
SUPERVISED = ["source_only", "target_only", "two_stage"]  # finetune is source_only's step (needs a ResNet)


def make(method: str, *overrides: str, runtime: Runtime = Runtime.FP32):
    """The engine training `method` over the moons network, from seed 0."""
    torch.manual_seed(0)
    cfg = compose_config(f"method={method}", "trainer.steps=100", *overrides)
    return build_engine(cfg, build_network(cfg, (2,), num_classes=2), runtime)


def make_batch(with_target_labels: bool = True) -> Batch:
    return moons_batch(with_target_labels)


def diagnosed_step(engine, batch, progress):
    return engine.step(batch, progress=progress, diagnose=True)


@pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
def test_dann_gradient_norms_are_those_autograd_gives_at_the_features(progress):
    engine = make("dann", "lambda=0.7")
    reference = copy.deepcopy(engine.method.network)  # the network before the step
    batch = make_batch(with_target_labels=False)
    metrics = diagnosed_step(engine, batch, progress)
    assert DIAGNOSTICS <= set(metrics)

    grl_lambda = metrics["train/lambda"]
    features = reference.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
    label_loss = F.cross_entropy(reference.label_predictor(features)[:8], batch.source_y)
    domain_logits = reference.domain_classifier(grad_reverse(features, grl_lambda)).squeeze(1)
    domain_loss = F.binary_cross_entropy_with_logits(domain_logits, domain_labels(8, 8, features.device))
    (label_grad,) = torch.autograd.grad(label_loss, features, retain_graph=True)
    (domain_grad,) = torch.autograd.grad(domain_loss, features)  # through the reversal layer: times -λ

    assert metrics["train/label_loss"].item() == pytest.approx(label_loss.item(), rel=1e-6)
    assert metrics["train/grad_norm_label"].item() == pytest.approx(label_grad.norm().item(), rel=1e-5)
    assert metrics["train/grad_norm_domain"].item() == pytest.approx(domain_grad.norm().item(), rel=1e-5, abs=1e-12)
    expected_ratio = domain_grad.norm() / label_grad.norm()
    assert metrics["train/grad_ratio"].item() == pytest.approx(expected_ratio.item(), rel=1e-5, abs=1e-12)
    if progress == 0.0:  # λ_0 = 0: nothing reaches the features from the domain loss yet
        assert metrics["train/grad_norm_domain"].item() == 0.0
    else:
        assert metrics["train/grad_norm_domain"].item() > 0
    # Device tensors, read by the loop at log time: no host sync in the step.
    assert all(isinstance(metrics[name], torch.Tensor) for name in DIAGNOSTICS)


def test_the_domain_gradient_is_the_reversed_one_times_lambda():
    # The same step at two λ: the domain gradient at the features scales with λ (before the step, the
    # domain loss does not depend on λ), the label gradient does not.
    one, two = make("dann", "lambda=0.5", "method/lambda_schedule=constant"), make("dann", "lambda=1.0")
    two.method.load_state_dict(one.method.state_dict())
    two.method.lambda_schedule = one.method.lambda_schedule
    a = diagnosed_step(one, make_batch(False), 0.5)
    b = diagnosed_step(two, make_batch(False), 0.5)
    assert b["train/grad_norm_label"].item() == pytest.approx(a["train/grad_norm_label"].item(), rel=1e-6)
    assert b["train/grad_norm_domain"].item() == pytest.approx(2 * a["train/grad_norm_domain"].item(), rel=1e-5)


@pytest.mark.parametrize("name", ["dann", *SUPERVISED])
def test_measuring_changes_nothing_in_the_step(name):
    measured, plain = make(name), make(name)  # the same seed: the same start
    batch = make_batch()
    for progress in (0.2, 0.4, 0.6, 0.8):
        diagnosed_step(measured, batch, progress)
        plain.step(batch, progress)
    for key, value in plain.method.state_dict().items():
        assert torch.equal(value, measured.method.state_dict()[key]), key
    plain_momentum = [s["momentum_buffer"] for s in plain.optimizer.state.values()]
    measured_momentum = [s["momentum_buffer"] for s in measured.optimizer.state.values()]
    assert all(torch.equal(p, m) for p, m in zip(plain_momentum, measured_momentum, strict=True))
    # The measurement (torch.autograd.grad at the features) adds nothing to the parameters' gradients:
    # those of the last step are the plain step's, none accumulated, none missing.
    for (key, p), m in zip(plain.method.named_parameters(), measured.method.parameters(), strict=True):
        assert (p.grad is None) == (m.grad is None), key
        assert p.grad is None or torch.equal(p.grad, m.grad), key


@pytest.mark.parametrize("name", ["dann", "source_only"])
def test_a_compiled_engine_measures_what_an_eager_one_does(name, monkeypatch):
    # trainer.compile=true: the gradients at the features must still be measured, and be the eager ones.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))  # seconds on a CPU
    torch._dynamo.reset()
    try:
        compiled, eager = make(name, runtime=Runtime(compile=True)), make(name)
        batch = make_batch()
        for progress in (0.3, 0.6):  # an unmeasured compiled step between the measured ones
            a, b = diagnosed_step(compiled, batch, progress), diagnosed_step(eager, batch, progress)
            compiled.step(batch, progress + 0.1), eager.step(batch, progress + 0.1)
            assert a["train/grad_norm_label"].item() > 0
            for metric in DIAGNOSTICS:
                assert a[metric].item() == pytest.approx(b[metric].item(), rel=1e-5, abs=1e-7), metric
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("name", ["dann", *SUPERVISED])
def test_without_the_flag_a_step_returns_no_diagnostics(name):
    engine = make(name)
    assert not DIAGNOSTICS & set(engine.step(make_batch(), progress=0.5))


@pytest.mark.parametrize("name", ["source_only", "target_only"])
def test_supervised_baselines_log_the_label_gradient_and_a_zero_domain_gradient(name):
    engine = make(name)
    reference = copy.deepcopy(engine.method.network)
    batch = make_batch()
    metrics = diagnosed_step(engine, batch, 0.5)
    x, y = (batch.source_x, batch.source_y) if name == "source_only" else (batch.target_x, batch.target_y)
    features = reference.feature_extractor(x)
    (label_grad,) = torch.autograd.grad(F.cross_entropy(reference.label_predictor(features), y), features)
    assert metrics["train/grad_norm_label"].item() == pytest.approx(label_grad.norm().item(), rel=1e-5)
    assert metrics["train/grad_norm_domain"].item() == 0.0  # the probe reads detached features
    assert metrics["train/grad_ratio"].item() == 0.0


def test_two_stage_logs_zero_gradients_once_its_features_are_frozen():
    engine = make("two_stage")  # freeze_in_stage2=feature_extractor by default
    assert diagnosed_step(engine, make_batch(), 0.2)["train/grad_norm_label"].item() > 0
    frozen = diagnosed_step(engine, make_batch(), 0.8)
    assert {name: frozen[name].item() for name in DIAGNOSTICS} == dict.fromkeys(DIAGNOSTICS, 0.0)


def test_the_loop_measures_on_logged_steps_only_and_logs_the_three_metrics(tmp_path):
    cfg, data, engine = moons_dann_with_quick_evaluation()
    flags = []
    step = engine.step

    def spy(batch, progress, diagnose=False):
        flags.append(diagnose)
        return step(batch, progress, diagnose)

    engine.step = spy
    loop = TrainerSettings(steps=7, batch_size=16, log_every=3, eval_every=7, checkpoint_every=7, progress="off")
    wandb = OmegaConf.to_container(cfg.logger.wandb)
    with RunLogger(tmp_path, wandb=wandb, config={}, job_type="dann") as logger:
        train(engine, data, logger, loop, RunContext(seed=0, device=torch.device("cpu"), run_dir=tmp_path))
    assert flags == [False, False, True, False, False, True, True]  # steps 3, 6 and the last, 7

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    training = [r for r in records if "train/label_loss" in r]
    assert [r["step"] for r in training] == [3, 6, 7]
    for record in training:
        assert DIAGNOSTICS <= set(record)
        assert record["train/grad_ratio"] == pytest.approx(
            record["train/grad_norm_domain"] / record["train/grad_norm_label"], rel=1e-5
        )
    assert not any(DIAGNOSTICS & set(r) for r in records if "train/label_loss" not in r)
