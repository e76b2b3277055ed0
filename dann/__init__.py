"""dann: domain-adversarial training of neural networks (Ganin et al., JMLR 2016) in PyTorch."""

__version__ = "0.1.0"
