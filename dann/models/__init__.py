"""Networks: feature extractors (backbones), heads, and the DANN network that joins them."""

from dann.models.feature_extractors import MlpFeatures, MnistFeatures, ResNetFeatures, SvhnFeatures
from dann.models.heads import mlp
from dann.models.network import DANNNetwork, FeatureExtractor

__all__ = [
    "DANNNetwork",
    "FeatureExtractor",
    "MlpFeatures",
    "MnistFeatures",
    "ResNetFeatures",
    "SvhnFeatures",
    "mlp",
]
