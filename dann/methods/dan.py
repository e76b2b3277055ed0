"""DAN: Long et al., "Learning Transferable Features with Deep Adaptation Networks" (ICML 2015).

Matches the source and target feature distributions by the multi-kernel maximum mean discrepancy
(MK-MMD) instead of an adversary. The Gaussian kernel family and the estimate follow the
Transfer-Learning-Library (github.com/thuml/Transfer-Learning-Library, `dalib.adaptation.dan`);
`gaussian_kernels` and `mmd2` serve JAN too (`dann.methods.jan`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import Tensor

from dann.grl import grad_reverse
from dann.methods.base import Batch, StepOutput, domain_accuracy, domain_labels
from dann.methods.dann import DANN
from dann.models import DANNNetwork

# σ² = s·m for s = 2^k, k = -3..1, m the batch's mean squared distance: TLlib's kernels for DAN and JAN,
# the same family as the DAN code's 5 kernels with kernel_mul 2 around exp(-d²/m).
KERNEL_SCALES = tuple(2.0**k for k in range(-3, 2))


def gaussian_kernels(x: Tensor, scales: tuple[float, ...] = KERNEL_SCALES) -> Tensor:
    """The sum of Gaussian kernels over the rows of x [N, D] → [N, N]:

        K_ij = Σ_s exp(−‖x_i − x_j‖² / (2·s·m)),   m = mean over all N² pairs of ‖x_i − x_j‖²

    m is detached: the bandwidth adapts to the batch's scale, but the features are not trained through it.
    The sum, not the mean, of the kernels, as TLlib does, so that its trade-off values carry over.
    """
    squared = (x.unsqueeze(0) - x.unsqueeze(1)).pow(2).sum(dim=2)
    mean = squared.detach().mean()
    return sum(torch.exp(-squared / (2.0 * scale * mean)) for scale in scales)


def gaussian_kernel(x: Tensor, sigma: float) -> Tensor:
    """One Gaussian kernel of fixed width over the rows of x [N, D] → [N, N]: exp(−‖x_i − x_j‖² / (2σ²))."""
    return torch.exp(-(x.unsqueeze(0) - x.unsqueeze(1)).pow(2).sum(dim=2) / (2.0 * sigma**2))


def mmd2(kernel: Tensor) -> Tensor:
    """MMD², the unbiased quadratic estimate (Gretton et al. 2012, Eq. 3), from the kernel matrix [2n, 2n]
    over the rows [source; target], n of each (n ≥ 2):

        MMD²_u = 1/(n(n−1)) Σ_{i≠j} k(s_i, s_j) + k(t_i, t_j) − k(s_i, t_j) − k(s_j, t_i)

    0 for identical samples, whatever the kernel; it may dip below 0 when the distributions agree.
    """
    n = kernel.shape[0] // 2
    if kernel.shape[0] != 2 * n or n < 2:
        raise ValueError(f"mmd2: expected equal source and target batches of 2 or more rows, got {kernel.shape[0]}")
    ss, st, ts, tt = kernel[:n, :n], kernel[:n, n:], kernel[n:, :n], kernel[n:, n:]
    terms = ss + tt - st - ts
    return (terms.sum() - terms.diagonal().sum()) / (n * (n - 1))


def global_batch(x: Tensor) -> Tensor:
    """Every process's rows of x [n, ...], in rank order → [world·n, ...]; x itself on one process.

    A discrepancy is a statistic of the whole batch, not a mean over its examples: DDP's mean of the
    processes' gradients would not give the one-process recipe's. Each process computes it on the gathered
    batch instead, and the gradient flows back to each process's own rows, summed over the processes
    (which all compute the same loss), so that DDP's mean is the one-process gradient.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return x
    return torch.cat(dist_nn.all_gather(x))


def source_and_target(x: Tensor, num_source: int) -> Tensor:
    """[source; target] rows of the global batch (`global_batch`) from this process's [source; target] rows."""
    return torch.cat([global_batch(x[:num_source]), global_batch(x[num_source:])])


def domain_probe(network: DANNNetwork, features: Tensor, num_source: int) -> tuple[Tensor, Tensor]:
    """(loss, accuracy) of the domain classifier trained as a probe on the detached features [B, D]
    (source rows first), as the baselines do (`dann.methods.supervised`): for a method without an adversary,
    `train/domain_acc` then says how separable its features are. Its loss never reaches the features."""
    logits = network.domain_classifier(features.detach()).squeeze(1)
    labels = domain_labels(num_source, len(features) - num_source, logits.device)
    return F.binary_cross_entropy_with_logits(logits, labels), domain_accuracy(logits, labels)


def scale_gradient(loss: Tensor, weight: float | Tensor) -> Tensor:
    """`loss` unchanged, its gradient times `weight`: a reversal by −weight.

    The discrepancy methods minimise L_y + λ·D; weighting D's gradient instead of its value keeps
    `train/domain_loss` the discrepancy itself (as DANN logs its raw domain loss), visible while λ is still 0.
    """
    return grad_reverse(loss, -weight)


class DAN(DANN):
    """Label loss on source + the MK-MMD between the source and target features:

        losses: label = CE(G_y(f_s), y_s),  domain = MMD²_u(f_s, f_t)  (gradient × λ_p),  probe (domain_acc)
        with f = G_f([x_s; x_t]) [2n, D], k = Σ_s Gaussian(σ² = s·m) over the 2n rows (`gaussian_kernels`)

    The objective is L_y + λ_p·MMD²; λ_p = `lambda_schedule(progress, final_lambda)` as in DANN.
    The estimate is the quadratic unbiased one (`mmd2`), not the paper's linear-time one: at the batch
    sizes of these recipes (32 + 32) the [2n, 2n] kernel matrix costs nothing next to the backbone, and
    the linear-time estimate, which uses n/2 of the n² pairs, is far noisier. Unbiased rather than the
    biased V-statistic so that identical samples give exactly 0 and the diagonal k(x, x) = Σ_s 1 adds no offset.
    The paper matches fc6–fc8 of AlexNet with kernel weights β learned by a QP; here the features
    G_f(x) (the bottleneck when there is one) with equal weights, as TLlib does.
    """

    def forward(self, batch: Batch, scalars: Mapping[str, float | Tensor], phase: str = "step") -> StepOutput:
        net, num_source = self.network, len(batch.source_x)
        features = net.feature_extractor(torch.cat([batch.source_x, batch.target_x]))
        label_loss = F.cross_entropy(net.label_predictor(features[:num_source]), batch.source_y)
        discrepancy = mmd2(gaussian_kernels(source_and_target(features, num_source)))
        probe_loss, probe_acc = domain_probe(net, features, num_source)
        losses = {"label": label_loss, "domain": scale_gradient(discrepancy, scalars["lambda"]), "probe": probe_loss}
        return StepOutput(losses, {"train/domain_acc": probe_acc}, features)
