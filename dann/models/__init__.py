"""Networks: feature extractors (backbones), heads, and the DANN network that joins them."""

from dann.models.feature_extractors import MlpFeatures, MnistFeatures, SvhnFeatures, TorchvisionFeatures
from dann.models.heads import mlp
from dann.models.network import DANNNetwork, FeatureExtractor

__all__ = [
    "DANNNetwork",
    "FeatureExtractor",
    "MlpFeatures",
    "MnistFeatures",
    "SvhnFeatures",
    "TorchvisionFeatures",
    "mlp",
]
