"""Label-free model-selection criteria, computed at each evaluation from its outputs (dann.training.evaluate).

Each takes the source validation split's features, logits and labels and the target test
split's features and logits, never its labels, and returns one number, higher-is-better
(dann.selection.pick picks the maximum of each):

- `select/iwv`: importance-weighted validation (Sugiyama et al. 2007): source validation
  accuracy with each example weighted by the density ratio w(x) = p_t(x)/p_s(x).
- `select/dev`: deep embedded validation (You et al. ICML 2019): minus the control-variate
  estimate of the weighted source validation cross-entropy.
- `select/snd`: soft neighbourhood density (Saito et al. ICCV 2021) of target predictions.
- `select/entropy`: minus the mean entropy of target predictions (nats).
- `select/info_max`: entropy of the mean target prediction minus the mean entropy (nats).
- `select/reverse_val`: reverse validation (Ganin et al. 2016 §5.1.5): a classifier trained
  on the pseudo-labelled target, scored on the labelled source validation split.

The density ratios and the reverse classifier are linear models on the frozen features, fitted
by full-batch L-BFGS from zero: deterministic, and no random generator is touched, so a run's
training is the same with or without them. Large splits are subsampled (MAX_POINTS, fixed seed)
so that an evaluation's cost stays bounded; IWV and DEV then use the subsampled source points
the density ratios were fitted on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_POINTS = 4096  # per split, for the fitted models and SND's N × N similarities
SND_TEMPERATURE = 0.05  # Saito et al.'s τ
L2 = 1e-3  # ridge on the linear models' weights (per mean example loss): keeps density ratios finite
LBFGS_STEPS = 100


def subsample(n: int, device: torch.device) -> Tensor:
    """Indices of at most MAX_POINTS of n examples: all of them, or a fixed-seed random subset, in order."""
    if n <= MAX_POINTS:
        return torch.arange(n, device=device)
    generator = torch.Generator().manual_seed(0)  # its own generator: the training RNG is untouched
    return torch.randperm(n, generator=generator)[:MAX_POINTS].sort().values.to(device)


@torch.enable_grad()
def fit_linear(x: Tensor, y: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A multinomial logistic regression on standardised `x` [N, D] with labels `y` [N] in [0, num_classes).

    Returns (weight [D, C], bias [C], mean [D], std [D]); logits of new points are
    `linear_logits(x, *fitted)`. Zero init and full-batch L-BFGS: the same inputs give the same model.
    """
    x = x.detach().float()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / std
    weight = torch.zeros(x.shape[1], num_classes, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=LBFGS_STEPS, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight + bias, y) + L2 / 2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach(), mean, std


def linear_logits(x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return ((x.float() - mean) / std) @ weight + bias


def density_ratios(source_features: Tensor, target_features: Tensor) -> tuple[Tensor, Tensor]:
    """The source points a domain classifier (source 0, target 1) was fitted on, and their
    self-normalised density ratios: (indices [M] into `source_features`, w [M] with mean exactly 1).

    By Bayes, p_t(x)/p_s(x) ∝ P(t|x)/P(s|x) = exp(Δlogit), so w = M · softmax(Δlogit) over the M points.
    The ratios are taken only at the points the classifier was fitted on: at a point outside the
    subsample (MAX_POINTS) a feature that barely varied inside it is divided by a tiny std, and
    exp(Δlogit) reached 1e14 on real features. They are self-normalised rather than clipped (as
    skada's importance-weighted scorer normalises its weights): a clip needs a threshold nothing
    fixes, and leaves mean(w) off 1 (0.36 in-sample on a real run), so that a weighted accuracy is
    not an accuracy; self-normalised, IWV is a weighted mean of 0/1 outcomes, in [0, 1] and
    comparable across runs. Computed from the log-ratios, so no weight overflows (the n_s/n_t prior
    correction cancels). Identical source and target give w = 1.
    """
    s, t = (
        subsample(len(source_features), source_features.device),
        subsample(len(target_features), target_features.device),
    )
    x = torch.cat([source_features[s], target_features[t]])
    domain = torch.cat([torch.zeros(len(s)), torch.ones(len(t))]).long().to(x.device)
    logits = linear_logits(x[: len(s)], *fit_linear(x, domain, 2))
    return s, len(s) * (logits[:, 1] - logits[:, 0]).softmax(0)


def iwv(weights: Tensor, source_logits: Tensor, source_labels: Tensor) -> float:
    """Importance-weighted validation accuracy: mean of w(x)·[prediction correct] over source validation.

    With self-normalised weights (`density_ratios`) it lies in [0, 1]."""
    correct = (source_logits.argmax(1) == source_labels).float()
    return (weights * correct).mean().item()


def dev_risk(weights: Tensor, source_logits: Tensor, source_labels: Tensor) -> float:
    """Deep embedded validation risk (You et al. 2019, Algorithm 1), lower is better (nats).

    With L = w·ℓ (ℓ the cross-entropy of each source validation example), the control variate
    w (whose mean is 1 in expectation) removes variance: risk = mean(L) + η·mean(w) − η with
    the optimal η = −Cov(L, w)/Var(w). Constant weights (identical domains) give η = 0. With
    `density_ratios`' self-normalised weights mean(w) is exactly 1, so the control-variate term
    vanishes and the risk is the self-normalised weighted cross-entropy, the ratio estimator that
    the control variate approximates.
    """
    weighted = weights * F.cross_entropy(source_logits.float(), source_labels, reduction="none")
    var = weights.var()
    eta = -torch.cov(torch.stack([weighted, weights]))[0, 1] / var if var > 1e-12 else torch.zeros(())
    return (weighted.mean() + eta * weights.mean() - eta).item()


def snd(target_logits: Tensor) -> float:
    """Soft neighbourhood density (Saito et al. 2021): mean entropy (nats) of each target point's
    softmax over its neighbours' similarities, higher is better.

    Similarities are cosine similarities of the softmax predictions, divided by τ = 0.05; a point
    is not its own neighbour. Identical predictions everywhere give the maximum, log(N − 1): the
    criterion's known blind spot for a collapsed model.
    """
    p = F.normalize(target_logits.float().softmax(1)[subsample(len(target_logits), target_logits.device)], dim=1)
    n = len(p)
    similarity = (p @ p.T / SND_TEMPERATURE).masked_fill(torch.eye(n, dtype=torch.bool, device=p.device), -math.inf)
    neighbours = similarity.softmax(1)
    return -(neighbours * neighbours.clamp_min(1e-30).log()).sum(1).mean().item()


def entropies(target_logits: Tensor) -> tuple[float, float]:
    """(−mean prediction entropy, information maximisation = H(mean prediction) − mean entropy), in nats."""
    log_p = target_logits.float().log_softmax(1)
    mean_entropy = -(log_p.exp() * log_p).sum(1).mean()
    p_mean = log_p.exp().mean(0)
    entropy_of_mean = -(p_mean * p_mean.clamp_min(1e-30).log()).sum()
    return -mean_entropy.item(), (entropy_of_mean - mean_entropy).item()


def reverse_validation(
    source_features: Tensor, source_labels: Tensor, target_features: Tensor, target_logits: Tensor
) -> float:
    """Accuracy on source validation of a reverse classifier trained on the target, pseudo-labelled by the model.

    Ganin et al. train a whole reverse DANN (the pseudo-labelled target as its source); we fit
    a logistic regression on the model's frozen features instead: it runs in a fraction of a
    second at every evaluation, needs no random initialisation, and still asks the paper's
    question — do the labels the model gives the target carry back to the source?
    """
    t = subsample(len(target_features), target_features.device)
    num_classes = target_logits.shape[1]
    model = fit_linear(target_features[t], target_logits[t].argmax(1), num_classes)
    return (linear_logits(source_features, *model).argmax(1) == source_labels).float().mean().item()


def label_free_criteria(
    source_features: Tensor,
    source_logits: Tensor,
    source_labels: Tensor,
    target_features: Tensor,
    target_logits: Tensor,
    reverse: bool,
) -> dict[str, float]:
    """Every criterion under its logged name (`select/…`); `select/reverse_val` only when `reverse`.

    Shapes: features [N, D], logits [N, C], labels [N], N per split. Target labels are not an argument.
    """
    # IWV and DEV weigh the source points the density ratios were fitted on, and only those.
    weighed, weights = density_ratios(source_features, target_features)
    negative_entropy, info_max = entropies(target_logits)
    values = {
        "select/iwv": iwv(weights, source_logits[weighed], source_labels[weighed]),
        "select/dev": -dev_risk(weights, source_logits[weighed], source_labels[weighed]),
        "select/snd": snd(target_logits),
        "select/entropy": negative_entropy,
        "select/info_max": info_max,
    }
    if reverse:
        values["select/reverse_val"] = reverse_validation(
            source_features, source_labels, target_features, target_logits
        )
    return values
