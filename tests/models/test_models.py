import pytest
import torch
from torch import nn

from dann.builders import build_network
from tests.helpers import compose_config


def linear_widths(module: nn.Module) -> list[int]:
    return [m.out_features for m in module.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize(
    "model, input_shape, features, label_widths, domain_widths",
    [
        # Ganin et al. 2016, Fig. 4: MNIST net (48·4·4 features) and SVHN net.
        ("mnist_cnn", (3, 28, 28), 768, [100, 100, 10], [100, 1]),
        ("svhn_cnn", (3, 32, 32), 8192, [3072, 2048, 10], [1024, 1024, 1]),
        ("mlp", (2,), 32, [10], [32, 1]),
    ],
)
def test_paper_architectures(model, input_shape, features, label_widths, domain_widths):
    net = build_network(compose_config(f"model={model}"), input_shape, num_classes=10)
    assert net.feature_extractor.out_features == features
    assert linear_widths(net.label_predictor) == label_widths
    assert linear_widths(net.domain_classifier) == domain_widths
    x = torch.randn(6, *input_shape)
    class_logits, domain_logits = net(x, grl_lambda=0.5)
    assert class_logits.shape == (6, 10)
    assert domain_logits.shape == (6,)
    assert net.predict(x).shape == (6, 10)


def test_mnist_net_layers_match_the_paper():
    net = build_network(compose_config("model=mnist_cnn"), (3, 28, 28), num_classes=10)
    convs = [m for m in net.feature_extractor.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (5, 5)), (48, (5, 5))]


def test_resnet_feature_extractor_with_bottleneck_and_no_weights():
    cfg = compose_config("model=resnet", "model.feature_extractor.arch=resnet18")
    net = build_network(cfg, (3, 64, 64), num_classes=31)
    class_logits, domain_logits = net(torch.randn(4, 3, 64, 64), grl_lambda=1.0)
    assert class_logits.shape == (4, 31) and domain_logits.shape == (4,)
    assert linear_widths(net.feature_extractor)[-1] == 256  # the bottleneck
    assert linear_widths(net.domain_classifier) == [1024, 1024, 1]


def test_feature_extractor_runs_once_per_step_on_both_domains():
    net = build_network(compose_config("model=mlp"), (2,), num_classes=2)
    seen_batch_sizes = []
    net.feature_extractor.register_forward_hook(lambda m, inp, out: seen_batch_sizes.append(inp[0].shape[0]))
    source, target = torch.randn(8, 2), torch.randn(8, 2)
    net(torch.cat([source, target]), grl_lambda=1.0)
    assert seen_batch_sizes == [16]


def test_domain_gradient_reaches_features_reversed_and_scaled():
    torch.manual_seed(0)
    net = build_network(compose_config("model=mlp"), (2,), num_classes=2)
    x = torch.randn(5, 2)
    weight = net.feature_extractor.backbone.layers[0].weight

    def feature_grad(grl_lambda):
        net.zero_grad()
        _, domain_logits = net(x, grl_lambda)
        domain_logits.sum().backward()
        return weight.grad.clone(), net.domain_classifier[0].weight.grad.clone()

    g_half, d_half = feature_grad(0.5)
    g_two, d_two = feature_grad(2.0)
    net.zero_grad()
    net.domain_classifier(net.feature_extractor(x)).sum().backward()  # no reversal layer
    assert torch.allclose(g_half, -0.5 * weight.grad)
    assert torch.allclose(g_two, 4 * g_half)  # -λ scaling reaches the features
    assert torch.allclose(d_two, d_half)  # the domain classifier's own gradient is not scaled
    assert torch.count_nonzero(g_half) > 0
