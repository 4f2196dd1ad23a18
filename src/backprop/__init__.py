"""backprop: a from-scratch NumPy multi-layer perceptron trained by backpropagation."""

__version__ = "0.1.0"
