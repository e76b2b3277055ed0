import copy

import pytest
import torch
import torch.nn.functional as F

from dann.builders import build_engine, build_network
from dann.config.compose import CONF_DIR
from dann.methods import Batch, SourceOnly
from tests.helpers import compose_config, moons_batch

METHODS = sorted(path.stem for path in (CONF_DIR / "method").glob("*.yaml"))  # method=… names

METRICS = {"train/label_loss", "train/domain_loss", "train/domain_acc", "train/lambda", "train/lr"}
# In a later stage a method may have no label loss (ADDA's target encoder) or no domain classifier (SHOT's
# source-free stage): these it always logs.
ALWAYS = {"train/domain_loss", "train/lambda", "train/lr"}


def make(method: str, *overrides: str):
    """The engine the composed config builds (method, optimiser, schedules) over the moons network, and the config."""
    torch.manual_seed(0)
    cfg = compose_config(f"method={method}", "trainer.steps=100", *overrides)
    network = build_network(cfg, (2,), num_classes=2)
    return build_engine(cfg, network), cfg


def make_batch(with_target_labels: bool = False) -> Batch:
    return moons_batch(with_target_labels)


# finetune needs a pretrained backbone, so tests/methods/test_finetune.py checks its metrics on a ResNet.
@pytest.mark.parametrize("name", sorted(set(METHODS) - {"finetune"}))
def test_every_method_logs_the_same_metrics_and_learns(name):
    engine, _ = make(name)
    method = engine.method
    before = copy.deepcopy(method.network.state_dict())
    batch = make_batch(with_target_labels=method.uses_target_labels)
    for progress, required in ((0.0, METRICS), (0.75, ALWAYS)):  # the first stage; the last of two_stage, ADDA, SHOT
        metrics = engine.step(batch, progress=progress)
        assert set(metrics) >= required  # what the progress line, the reports and the charts read
        extra = set(metrics) - METRICS  # a method's own beside them (train/probe_loss, AFN's train/feature_norm)
        assert all(name.startswith("train/") for name in extra), extra
        assert all(torch.isfinite(torch.as_tensor(v)) for v in metrics.values())
    after = method.network.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_dann_lambda_follows_its_schedule():
    engine, _ = make("dann", "lambda=0.1")
    assert engine.step(make_batch(), progress=0.0)["train/lambda"] == 0.0
    assert engine.step(make_batch(), progress=1.0)["train/lambda"] == pytest.approx(0.1, rel=1e-4)
    constant, _ = make("dann", "lambda=0.1", "method/lambda_schedule=constant")
    assert constant.step(make_batch(), progress=0.0)["train/lambda"] == 0.1


def test_source_only_features_learn_from_source_labels_alone():
    engine, cfg = make("source_only")
    method = engine.method
    reference = copy.deepcopy(method.network)
    batch = make_batch()
    engine.step(batch, progress=0.0)
    # The same first SGD step on the label loss only: momentum is inert on step one.
    loss = F.cross_entropy(reference.predict(batch.source_x), batch.source_y)
    loss.backward()
    with torch.no_grad():
        for p in list(reference.feature_extractor.parameters()) + list(reference.label_predictor.parameters()):
            p -= cfg.optim.optimizer.lr * p.grad
    for trained, expected in zip(
        method.network.feature_extractor.parameters(), reference.feature_extractor.parameters()
    ):
        assert torch.allclose(trained, expected, atol=1e-7)


def test_dann_features_do_feel_the_domain_loss():
    # Counterpart of the test above: with λ > 0 the feature extractor's step differs from
    # the label-loss-only step, so the check above is not trivially true.
    engine, cfg = make("dann", "method/lambda_schedule=constant")
    method = engine.method
    reference = copy.deepcopy(method.network)
    batch = make_batch()
    engine.step(batch, progress=0.0)
    F.cross_entropy(reference.predict(batch.source_x), batch.source_y).backward()
    with torch.no_grad():
        for p in reference.feature_extractor.parameters():
            p -= cfg.optim.optimizer.lr * p.grad
    differs = [
        not torch.allclose(a, b, atol=1e-7)
        for a, b in zip(method.network.feature_extractor.parameters(), reference.feature_extractor.parameters())
    ]
    assert any(differs)


def test_target_only_trains_on_target_labels():
    engine, _ = make("target_only")
    method = engine.method
    assert method.uses_target_labels and not SourceOnly.uses_target_labels
    batch = make_batch(with_target_labels=True)
    expected = F.cross_entropy(copy.deepcopy(method.network).predict(batch.target_x), batch.target_y)
    assert engine.step(batch, progress=0.0)["train/label_loss"].item() == pytest.approx(expected.item())


# A run must train with the λ its summary states: the method's default schedule (no lambda_schedule node,
# from `~method.lambda_schedule` or a user's own method config) once ignored `lambda` and rose to 1.
@pytest.mark.parametrize("how", ["deleted_schedule", "own_method_config"])
def test_a_run_trains_with_the_lambda_its_summary_states(how, tmp_path):
    import json

    from tests.helpers import SHORT_RUN, read_jsonl, run_cli

    overrides = ["lambda=0"]
    if how == "deleted_schedule":
        overrides.append("~method.lambda_schedule")
    else:  # a user's config directory with a method config of their own, without a schedule
        (tmp_path / "conf" / "method").mkdir(parents=True)
        (tmp_path / "conf" / "method" / "mine.yaml").write_text("_target_: dann.methods.DANN\nname: mine\n")
        overrides += [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "method=mine"]
    run_dir = tmp_path / "run"
    result = run_cli(*SHORT_RUN, *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    logged = [r["train/lambda"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/lambda" in r]
    assert summary["lambda"] == 0.0
    assert logged and set(logged) == {0.0}


def test_final_lambda_in_the_method_node_is_refused():
    from dann.config.validate import validate
    from dann.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^method.final_lambda: .*lambda=0.5"):
        validate(compose_config("+method.final_lambda=0.5"))


@pytest.mark.parametrize("name", ["dann", "cdan", "mdd"])
def test_every_adaptive_method_ends_at_the_top_level_lambda_whatever_its_schedule_node(name):
    engine, _ = make(name, "lambda=0.25", "~method.lambda_schedule")
    assert engine.method.final_lambda == 0.25
