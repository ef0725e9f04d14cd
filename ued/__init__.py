"""ued: Unsupervised Environment Design in PyTorch."""

__version__ = "0.1.0"
