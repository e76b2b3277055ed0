"""CDAN, CDAN+E and MDD: DANN's successors on the same gradient reversal layer and three networks.

Known answers for their pieces (the multilinear maps, the entropy weights), gradient checks that the
features get the adversary's gradient reversed (×−λ) while the adversary gets it as is, the config,
and real runs of `python -m dann.run` / `python -m dann.analyze`.
"""

import copy
import json
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dann.analyze import main as analyze_main
from dann.builders import build_engine, build_method, build_network
from dann.config.validate import validate
from dann.errors import ConfigError
from dann.methods.cdan import entropy_weights, multilinear_map, randomized_multilinear_map
from dann.methods.mdd import log_one_minus_softmax
from dann.runs.checkpoint import checkpoint_path, read_checkpoint
from tests.helpers import SHORT_RUN, compose_config, moons_batch, read_jsonl, run_cli, start_cli, wait_for_step

LAMBDA = 0.7


def config(method: str, *overrides: str):
    torch.manual_seed(0)
    return compose_config(f"method={method}", "trainer.steps=100", *overrides)


def make(method: str, *overrides: str):
    """The method alone, over the moons network (seed 0)."""
    cfg = config(method, *overrides)
    return build_method(cfg, build_network(cfg, (2,), num_classes=2))


def make_engine(method: str, *overrides: str):
    """The engine that trains it: the run's optimiser and schedules (seed 0, the same network as `make`)."""
    cfg = config(method, *overrides)
    return build_engine(cfg, build_network(cfg, (2,), num_classes=2))


# --- The pieces, with known answers ---------------------------------------------------------------


def test_multilinear_map_is_the_flattened_outer_product():
    features = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    probs = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    expected = torch.tensor(
        [
            [0.25, 0.5, 0.75, 0.75, 1.5, 2.25],  # g_0·f, then g_1·f
            [0.0, -1.0, 4.0, 0.0, 0.0, 0.0],
        ]
    )
    assert torch.equal(multilinear_map(features, probs), expected)


def test_randomized_map_keeps_the_inner_product_of_the_full_map_in_expectation():
    # E⟨T(f,g), T(f',g')⟩ = ⟨f,f'⟩⟨g,g'⟩ = ⟨f⊗g, f'⊗g'⟩ over Gaussian projections: the mean over
    # 4000 fixed draws of width 64 (256 000 products) lands within 3 % of it.
    generator = torch.Generator().manual_seed(0)
    f = torch.tensor([[1.0, -2.0, 0.5], [0.5, 1.0, 2.0]])
    g = torch.tensor([[0.8, 0.2], [0.3, 0.7]])
    draws, dim = 4000, 64
    projection_f = torch.randn(draws, 3, dim, generator=generator)
    projection_g = torch.randn(draws, 2, dim, generator=generator)
    maps = torch.stack([randomized_multilinear_map(f, g, rf, rg) for rf, rg in zip(projection_f, projection_g)])
    assert maps.shape == (draws, 2, dim)
    mean_inner = (maps[:, 0] * maps[:, 1]).sum(dim=1).mean()
    exact = (f[0] @ f[1]) * (g[0] @ g[1])  # 0.5 · 0.38 = 0.19
    full = multilinear_map(f, g)
    assert torch.isclose(exact, full[0] @ full[1])
    scale = f.norm(dim=1).prod() * g.norm(dim=1).prod()  # the size of the terms averaged
    assert abs(mean_inner - exact) < 0.03 * scale


def test_entropy_weights_are_one_plus_exp_minus_entropy_normalised_per_domain():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])  # 2 source rows, then 2 target
    # H = 0 → w = 2; H = ln 2 → w = 1 + 1/2 = 1.5. Source: 2 and 1.5 over 3.5; target: 1.5 and 1.5 over 3.
    expected = torch.tensor([4 / 7, 3 / 7, 0.5, 0.5])
    assert torch.allclose(entropy_weights(probs, num_source=2), expected)
    # Per domain: a larger target batch does not outweigh the source one.
    assert torch.allclose(entropy_weights(torch.full((5, 2), 0.5), num_source=1), torch.tensor([1.0] + [0.25] * 4))


def test_log_one_minus_softmax_is_exact_where_the_naive_form_breaks():
    logits = torch.tensor([[2.0, 0.0, -1.0], [100.0, 0.0, 0.0]])
    index = torch.tensor([0, 0])
    naive = torch.log(1 - logits.softmax(dim=1)[torch.arange(2), index])
    assert torch.allclose(log_one_minus_softmax(logits, index)[0], naive[0])
    assert torch.isinf(naive[1])  # 1 − softmax rounds to 0
    assert torch.isclose(log_one_minus_softmax(logits, index)[1], torch.log(torch.tensor(2.0)) - 100, atol=1e-4)


# --- The reversed gradient: recomputed by autograd without the reversal layer --------------------


def adversary_loss(method: str, network, features, probs, num_source, projections):
    """The adversary's loss on the features, written out from the papers (no reversal layer)."""
    if method == "mdd":
        logits = network.domain_classifier(features)
        pseudo = probs.argmax(dim=1)
        source = F.cross_entropy(logits[:num_source], pseudo[:num_source])
        target = F.nll_loss(torch.log(1 - logits[num_source:].softmax(dim=1)), pseudo[num_source:])
        return 4.0 * source + target
    if projections is None:
        conditioned = torch.einsum("bc,bd->bcd", probs, features).flatten(1)
    else:
        rf, rg = projections
        conditioned = (features @ rf) * (probs @ rg) / rf.shape[1] ** 0.5
    logits = network.domain_classifier(conditioned).squeeze(1)
    labels = torch.cat([torch.zeros(num_source), torch.ones(len(features) - num_source)])
    losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    if method != "cdan_e":
        return losses.mean()
    entropy = -(probs * probs.log()).sum(dim=1)
    w = 1 + torch.exp(-entropy)
    w = torch.cat([w[:num_source] / w[:num_source].sum(), w[num_source:] / w[num_source:].sum()])
    return (w * losses).sum() / w.sum()


@pytest.mark.parametrize(
    "method, overrides",
    [
        ("cdan", ()),
        ("cdan", ("method.randomized=true", "method.randomized_dim=16")),
        ("cdan_e", ()),
        ("mdd", ()),
    ],
)
def test_features_get_the_adversarys_gradient_reversed_and_the_adversary_gets_it_as_is(method, overrides):
    engine = make_engine(method, f"lambda={LAMBDA}", "method/lambda_schedule=constant", *overrides)
    trained = engine.method
    reference = copy.deepcopy(trained.network)
    projections = (trained.projection_f, trained.projection_g) if method.startswith("cdan") else None
    if projections is not None and projections[0] is None:
        projections = None
    batch = moons_batch(with_target_labels=False)
    metrics = engine.step(batch, progress=0.3, diagnose=True)

    n = len(batch.source_x)
    features = reference.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
    class_logits = reference.label_predictor(features)
    label_loss = F.cross_entropy(class_logits[:n], batch.source_y)
    adversary = adversary_loss(method, reference, features, class_logits.detach().softmax(dim=1), n, projections)
    assert metrics["train/domain_loss"] == pytest.approx(adversary.item(), rel=1e-5)
    assert metrics["train/label_loss"] == pytest.approx(label_loss.item(), rel=1e-5)

    extractor = list(reference.feature_extractor.parameters())
    heads = list(reference.domain_classifier.parameters())
    label_grads = torch.autograd.grad(label_loss, extractor, retain_graph=True)
    adversary_grads = torch.autograd.grad(adversary, extractor + heads + [features], retain_graph=True)
    # Feature extractor: label gradient − λ · adversary gradient. Adversary: its own gradient, unreversed.
    for got, label, adv in zip(trained.network.feature_extractor.parameters(), label_grads, adversary_grads):
        assert torch.allclose(got.grad, label - LAMBDA * adv, atol=1e-6)
    for got, adv in zip(trained.network.domain_classifier.parameters(), adversary_grads[len(extractor) :]):
        assert torch.allclose(got.grad, adv, atol=1e-6)
        assert adv.abs().max() > 1e-4  # the check above is not 0 = 0
    # The diagnostics see the same reversed gradient at the features.
    expected_norm = (LAMBDA * adversary_grads[-1]).norm()
    assert metrics["train/grad_norm_domain"] == pytest.approx(expected_norm.item(), rel=1e-4)
    assert metrics["train/grad_norm_domain"] > 0


def test_mdd_domain_acc_is_the_adversarys_success_at_the_disparity_game():
    engine = make_engine("mdd")
    batch = moons_batch(with_target_labels=False)
    network = copy.deepcopy(engine.method.network)
    with torch.no_grad():
        features = network.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
        agrees = network.domain_classifier(features).argmax(1) == network.label_predictor(features).argmax(1)
    expected = (agrees[:8].sum() + (~agrees[8:]).sum()) / 16
    assert engine.step(batch, progress=0.5)["train/domain_acc"] == pytest.approx(expected.item())


# --- The config -----------------------------------------------------------------------------------


def test_cdan_sizes_its_domain_classifier_by_the_papers_rule():
    # Moons: 32 features × 2 classes = 64 ≤ 4096: the full map, no projections.
    cdan = make("cdan")
    assert cdan.network.domain_classifier[0].in_features == 64 and not cdan.randomized
    assert "projection_f" not in cdan.state_dict()
    # Above the threshold (null = auto): the randomized map, its projections kept in the state.
    auto = make("cdan", "method.randomized_threshold=63")
    assert auto.randomized and auto.network.domain_classifier[0].in_features == 1024
    assert auto.state_dict()["projection_f"].shape == (32, 1024) and auto.state_dict()["projection_g"].shape == (
        2,
        1024,
    )
    forced = make("cdan_e", "method.randomized=true", "method.randomized_dim=8")
    assert forced.entropy_conditioning and forced.network.domain_classifier[0].in_features == 8
    assert not make("cdan", "method.randomized=false", "method.randomized_threshold=1").randomized
    # MDD: the adversarial classifier answers with one logit per class.
    mdd = make("mdd")
    assert mdd.network.domain_classifier[-1].out_features == 2 and mdd.margin == 4.0


@pytest.mark.parametrize("method", ["cdan", "cdan_e", "mdd"])
def test_configs_compose_and_validate_with_dann_lambda_keys(method):
    cfg = compose_config(f"method={method}", "method/lambda_schedule=constant", "lambda=0.1")
    validate(cfg)
    assert cfg.method.name == method and cfg.method.lambda_schedule._target_ == "dann.schedules.constant_lambda"
    assert compose_config(f"method={method}").method.lambda_schedule.gamma == 10.0


@pytest.mark.parametrize(
    "override, message",
    [
        ("method=mdd method.margin=0", "method.margin: expected a number > 0"),
        ("method=cdan method.randomized=maybe", "method.randomized: expected null or true or false"),
        ("method=cdan method.randomized_dim=0", "method.randomized_dim: expected a positive integer"),
        ("method=mdd +method.randomized=true", "method.randomized: dann.methods.mdd.MDD (method._target_) takes no"),
    ],
)
def test_bad_settings_are_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=None) as error:
        validate(compose_config(*override.split()))
    assert str(error.value).startswith(message), str(error.value)


# --- Real runs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """One multirun of the three methods, SHORT_RUN each, by the real CLI."""
    root = tmp_path_factory.mktemp("grl_family")
    result = run_cli("-m", "method=cdan,cdan_e,mdd", *SHORT_RUN, f"hydra.sweep.dir={root / 'sweep'}", cwd=root)
    assert result.returncode == 0, result.stderr
    return root / "sweep"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cdan", "cdan_e", "mdd"])
def test_each_method_trains_end_to_end_and_is_analysed(sweep: Path, method: str, capsys):
    run_dir = next(sweep.glob(f"*method={method},*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["method"] == method and summary["steps"] == 40
    assert summary["final"]["target/acc"] > 0.5  # better than chance on two balanced classes
    logged = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "train/domain_loss" in r]
    assert {"train/grad_norm_domain", "train/lambda", "train/lr", "train/domain_acc"} <= set(logged[-1])
    # python -m dann.analyze rebuilds its network (domain classifier sized by the method) from the checkpoint.
    analyze_main([str(run_dir), "--max-points", "100", "--device", "cpu", "--no-tsne", "--no-wandb"])
    analysis = json.loads((run_dir / "analysis.json").read_text())
    assert analysis["target_acc"] == pytest.approx(summary["final"]["target/acc"])


@pytest.mark.slow
def test_a_run_naming_a_method_outside_dann_is_not_analysed(sweep: Path, tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    source = next(sweep.glob("*method=mdd,*"))
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(checkpoint_path(source).read_bytes())
    summary = json.loads((source / "summary.json").read_text())
    summary["config"]["method"]["_target_"] = "os.system"
    (run_dir / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit) as stopped:
        analyze_main([str(run_dir), "--device", "cpu", "--no-wandb"])
    assert stopped.value.code == 2
    assert "method._target_: os.system is not a component of dann" in capsys.readouterr().err


@pytest.mark.slow
def test_randomized_cdan_resumes_exactly_projections_included(tmp_path: Path):
    args = ("method=cdan_e", "method.randomized=true", "method.randomized_dim=16", "logger=none", "trainer.steps=300")
    args += ("trainer.eval_every=150", "trainer.log_every=10", "trainer.checkpoint_every=50")
    straight = tmp_path / "straight"
    assert run_cli(*args, f"hydra.run.dir={straight}", cwd=tmp_path).returncode == 0
    stopped = tmp_path / "stopped"
    process = start_cli(*args, run_dir=stopped)
    wait_for_step(process, stopped, 100)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=300)
    assert json.loads((stopped / "summary.json").read_text())["status"] == "interrupted"
    resumed = run_cli(*args, f"hydra.run.dir={stopped}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step" in (stopped / "run.log").read_text()
    ends = [read_checkpoint(checkpoint_path(d))["method"] for d in (straight, stopped)]
    assert ends[0]["projection_f"].shape == (32, 16) and ends[0].keys() == ends[1].keys()
    assert all(torch.equal(ends[0][key], ends[1][key]) for key in ends[0])
    results = [json.loads((d / "summary.json").read_text())["final"] for d in (straight, stopped)]
    assert results[0] == results[1]
