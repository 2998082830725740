"""kdctl: an experiment manager for knowledge distillation of object detectors."""

__version__ = "0.1.0"
