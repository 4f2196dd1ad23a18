"""The numerical core: a multi-layer perceptron, its backward pass, its optimizers, its training.

Imports NumPy and SciPy only (an import-linter contract keeps Hydra, MLflow, DVC,
pandas and matplotlib out), and takes plain arrays and settings classes.
"""
