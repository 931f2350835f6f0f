"""sjframe: a research framework for spiking neural networks on SpikingJelly and PyTorch."""

__version__ = "0.1.0"
