"""Networks: feature extractors, heads, and the DANN network that joins them."""

from dann.models.network import DANNNetwork, FeatureExtractor, build_network

__all__ = ["DANNNetwork", "FeatureExtractor", "build_network"]
