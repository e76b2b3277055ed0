"""Label-free model selection (dann.selection.criteria, dann.selection.pick) and `dann.report --select all`.

Criteria are checked on cases with known answers; then a real moons run's summary picks, for each
criterion, the evaluation that maximises it; then a real λ × seed sweep's regrets are recomputed
here from the summaries, independently of the report.
"""

from __future__ import annotations

import csv
import json
import math
import statistics

import pytest
import torch
import torch.nn.functional as F

from dann.report import main
from dann.selection.criteria import (
    MAX_POINTS,
    density_ratios,
    dev_risk,
    entropies,
    iwv,
    label_free_criteria,
    reverse_validation,
    snd,
)
from dann.selection.pick import CRITERIA, select, summarise
from tests.helpers import compose_config, read_jsonl, run_cli

LABEL_FREE = [name for name, c in CRITERIA.items() if not c.uses_target_labels and name != "source_val"]


def clusters(n_per_class: int = 50, num_classes: int = 3, dim: int = 4, seed: int = 0):
    """Features [n, dim] in well-separated class clusters, and their labels [n]."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    centres = 10 * torch.eye(num_classes, dim)
    return centres[labels] + torch.randn(len(labels), dim, generator=generator), labels


def test_iwv_and_dev_with_identical_domains_are_plain_source_validation():
    features, labels = clusters()
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(len(labels), 3, generator=generator)  # a mediocre classifier: some right, some wrong
    weighed, weights = density_ratios(features, features)
    assert torch.equal(weighed, torch.arange(len(features)))  # a split under MAX_POINTS: every point
    assert torch.allclose(weights, torch.ones_like(weights), atol=1e-5)
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert 0.1 < accuracy < 0.9
    assert iwv(weights, logits, labels) == pytest.approx(accuracy, abs=1e-5)
    assert dev_risk(weights, logits, labels) == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-5)


def test_density_ratios_are_high_where_the_target_is():
    source, _ = clusters(seed=0)
    target = source + torch.tensor([3.0, 0, 0, 0])  # shifted along the first axis
    _, weights = density_ratios(source, target)
    # Source points furthest along the shift look most like target points.
    order = source[:, 0].argsort()
    assert weights[order[-10:]].mean() > 3 * weights[order[:10]].mean()


def sparse_features(n: int, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    """ReLU-like features [n, 64]: each dimension active on about 1 point in 4,000, as a network's
    rarely firing units are; `shift` is added to the first 8 dimensions' activity (a domain shift)."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.relu(torch.randn(n, 64, generator=generator) - 3.5)
    features[:, :8] += shift * (features[:, :8] > 0)
    return features


@pytest.mark.parametrize("shift", [0.0, 1.0], ids=["identical", "shifted"])
def test_iwv_and_dev_stay_finite_on_splits_larger_than_the_subsample(shift):
    # 10,000 points per split, over MAX_POINTS: the density ratios are fitted on a subsample. A unit
    # that fired on no subsampled point but fires elsewhere once gave w = inf there, and IWV = inf.
    n = 10_000
    assert n > MAX_POINTS
    source, target = sparse_features(n, seed=0), sparse_features(n, shift, seed=1)
    labels = torch.arange(n) % 3
    perfect = 10 * F.one_hot(labels, 3).float()
    values = label_free_criteria(source, perfect, labels, target, perfect, reverse=False)
    # Known answer: a classifier right everywhere is right on every weighed point, whatever the weights.
    assert values["select/iwv"] == pytest.approx(1.0, abs=1e-4)
    assert math.isfinite(values["select/dev"]) and values["select/dev"] <= 0
    weighed, weights = density_ratios(source, target)
    assert len(weighed) == MAX_POINTS and torch.isfinite(weights).all()
    assert weights.mean().item() == pytest.approx(1.0, abs=1e-4)
    assert weights.max().item() < 20  # no single point dominates
    # Half the points wrong: IWV is a weighted accuracy, near the plain one.
    half = perfect.roll(1, dims=1) * (torch.arange(n) < n // 2).unsqueeze(1) + perfect * (
        torch.arange(n) >= n // 2
    ).unsqueeze(1)
    values = label_free_criteria(source, half, labels, target, half, reverse=False)
    assert 0.4 < values["select/iwv"] < 0.6
    assert math.isfinite(values["select/dev"])


def test_reverse_validation_of_a_perfect_classifier_on_identical_domains_is_perfect():
    features, labels = clusters()
    perfect = 10 * F.one_hot(labels, 3).float()
    assert reverse_validation(features, labels, features, perfect) == 1.0
    wrong = 10 * F.one_hot((labels + 1) % 3, 3).float()  # consistently wrong pseudo-labels do not carry back
    assert reverse_validation(features, labels, features, wrong) == 0.0


def test_entropy_and_info_max_prefer_confident_balanced_predictions():
    num_classes, n = 4, 200
    confident = 50 * F.one_hot(torch.arange(n) % num_classes, num_classes).float()
    uniform = torch.zeros(n, num_classes)
    collapsed = 50 * F.one_hot(torch.zeros(n, dtype=torch.long), num_classes).float()  # confident, one class
    assert entropies(uniform) == pytest.approx((-math.log(num_classes), 0.0), abs=1e-6)
    assert entropies(confident) == pytest.approx((0.0, math.log(num_classes)), abs=1e-6)
    # Entropy alone cannot tell a collapse; information maximisation can.
    assert entropies(collapsed)[0] == pytest.approx(0.0, abs=1e-6)
    assert entropies(collapsed)[1] == pytest.approx(0.0, abs=1e-6)


def test_snd_prefers_clustered_predictions_to_scattered_ones():
    num_classes, n = 4, 200
    clustered = 50 * F.one_hot(torch.arange(n) % num_classes, num_classes).float()
    scattered = 3 * torch.randn(n, num_classes, generator=torch.Generator().manual_seed(0))
    # One-hot clusters: each point's neighbours are the n/C − 1 others of its class, equally.
    assert snd(clustered) == pytest.approx(math.log(n / num_classes - 1), abs=1e-4)
    assert snd(clustered) > snd(scattered)
    # Its documented blind spot: identical predictions everywhere (uniform or collapsed) give the maximum.
    assert snd(torch.zeros(n, num_classes)) == pytest.approx(math.log(n - 1), abs=1e-4)


def test_every_criterion_is_logged_and_reverse_validation_only_when_asked():
    features, labels = clusters()
    logits = 10 * F.one_hot(labels, 3).float()
    every = label_free_criteria(features, logits, labels, features, logits, reverse=True)
    assert set(every) == {CRITERIA[name].metric for name in LABEL_FREE}
    without = label_free_criteria(features, logits, labels, features, logits, reverse=False)
    assert set(every) - set(without) == {"select/reverse_val"}
    assert all(math.isfinite(v) for v in every.values())


def test_select_takes_only_evaluations_where_a_criterion_ran():
    evaluations = [
        {"step": 10, "source/acc": 0.5, "target/acc": 0.6, "select/reverse_val": 0.9},
        {"step": 20, "source/acc": 0.7, "target/acc": 0.6},
        {"step": 30, "source/acc": 0.7, "target/acc": 0.8, "select/reverse_val": float("nan")},
    ]
    picks = select(evaluations)
    assert picks["reverse_val"]["step"] == 10  # step 20 did not run it, step 30's value is not a number
    assert picks["source_val"]["step"] == 20  # the earliest of equals
    assert picks["oracle"]["step"] == 30
    assert "iwv" not in picks  # never ran: no pick, rather than a made-up one


def test_non_finite_criteria_are_recorded_not_dropped():
    evaluations = [
        {"step": 10, "source/acc": 0.5, "target/acc": 0.6, "select/iwv": math.inf, "select/dev": -1.0},
        {"step": 20, "source/acc": 0.7, "target/acc": 0.6, "select/iwv": math.nan, "select/dev": math.nan},
        {"step": 30, "source/acc": 0.6, "target/acc": 0.8, "select/iwv": math.nan, "select/dev": -2.0},
    ]
    summary = summarise(evaluations)
    assert summary["selection_unavailable"] == {"iwv": "non-finite at every evaluation (steps 10, 20, 30)"}
    assert "iwv" not in summary["selection"]
    assert summary["selection_nonfinite_steps"] == {"dev": [20]}
    assert summary["selection"]["dev"]["step"] == 10  # the best of the finite ones
    # All finite, or never run: neither key.
    finite = [{"step": 10, "source/acc": 0.5, "target/acc": 0.6, "select/iwv": 0.5}]
    assert set(summarise(finite)) == {"selection"}


def test_a_real_run_records_a_criterion_that_was_never_finite(tmp_path, monkeypatch):
    import dann.training.loop
    from dann.runs.launch import run

    real = dann.training.loop.label_free_criteria
    calls = {"n": 0}

    def criteria_gone_wrong(*args, **kwargs):  # as IWV and DEV were on a real digits task
        values = real(*args, **kwargs)
        calls["n"] += 1
        return values | {"select/iwv": math.nan} | ({"select/dev": math.inf} if calls["n"] == 2 else {})

    monkeypatch.setattr(dann.training.loop, "label_free_criteria", criteria_gone_wrong)
    steps = ("logger=none", "trainer.steps=30", "trainer.eval_every=10", "trainer.log_every=10")
    returned = run(compose_config(*steps), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished" and set(returned["selection"]) == set(summary["selection"])
    assert summary["selection_unavailable"] == {"iwv": "non-finite at every evaluation (steps 10, 20, 30)"}
    assert "iwv" not in summary["selection"]
    assert summary["selection_nonfinite_steps"] == {"dev": [20]}
    assert summary["selection"]["dev"]["step"] in (10, 30)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A small real λ × seed sweep on moons: 60 steps, evaluations at 20, 40, 60, reverse validation at the 2nd."""
    root = tmp_path_factory.mktemp("selection")
    result = run_cli(
        "-m",
        "lambda=0,1",
        "seed=0,1",
        "logger=none",
        "trainer.steps=60",
        "trainer.eval_every=20",
        "trainer.log_every=20",
        "trainer.reverse_validation_every=2",
        f"hydra.sweep.dir={root / 'sweep'}",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    return root / "sweep"


def test_a_real_run_records_each_criterion_s_pick(sweep):
    run_dirs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(run_dirs) == 4
    for run_dir in run_dirs:
        summary = json.loads((run_dir / "summary.json").read_text())
        evaluations = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "target/acc" in r]
        assert [r["step"] for r in evaluations] == [20, 40, 60]
        # Reverse validation at every 2nd evaluation only; the other criteria at each.
        assert [("select/reverse_val" in r) for r in evaluations] == [False, True, False]
        assert set(summary["selection"]) == set(CRITERIA)
        for name, criterion in CRITERIA.items():
            candidates = [r for r in evaluations if criterion.metric in r]
            picked = summary["selection"][name]
            assert picked in candidates, name
            assert picked[criterion.metric] == max(r[criterion.metric] for r in candidates), name


def test_select_all_on_a_real_sweep_gives_each_criterion_s_regret(sweep, tmp_path, capsys):
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert len(summaries) == 4 and all(s["status"] == "finished" for s in summaries)

    csv_path = tmp_path / "select.csv"
    main([str(sweep), "--select", "all", "--csv", str(csv_path)])
    out = capsys.readouterr().out
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = {row["criterion"]: row for row in csv.DictReader(f)}
    assert list(rows) == list(CRITERIA)

    def by_lambda(name: str, key: str) -> dict[float, float]:
        """Mean over seeds, per λ, of `key` in the evaluation `name` picks in each run."""
        return {
            lam: statistics.mean(s["selection"][name][key] for s in summaries if s["lambda"] == lam)
            for lam in (0.0, 1.0)
        }

    oracle = max(by_lambda("oracle", "target/acc").values())
    for name, criterion in CRITERIA.items():
        scores = by_lambda(name, criterion.metric)
        best = max(scores, key=scores.get)  # the smaller λ on a tie, as the report
        picked = by_lambda(name, "target/acc")[best]
        row = rows[name]
        assert row["picks"] == f"λ={best:g}", name
        assert float(row["mean"]) == pytest.approx(picked, abs=1e-12), name
        assert float(row["regret"]) == pytest.approx(oracle - picked, abs=1e-12), name
        assert float(row["regret"]) >= -1e-12
        # The printed table says the same, in percentage points.
        line = next(line for line in out.splitlines() if line.split()[:1] == [name] or f"  {name}  " in line)
        assert line.rstrip().endswith(f"{100 * (oracle - picked):.1f}"), line
    assert float(rows["oracle"]["regret"]) == 0.0
