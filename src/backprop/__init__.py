"""backprop: a from-scratch NumPy multi-layer perceptron trained by backpropagation."""

import os

# Nothing here goes to the network: MLflow 3 would otherwise fetch a telemetry
# config and post usage events from every process that imports it.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
