"""The trained model as an MLflow pyfunc model: :class:`backprop.predictor.Predictor`
behind ``mlflow.pyfunc`` (``mlflow models serve``, ``mlflow.pyfunc.load_model``)."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from backprop.predictor import InputError, Predictor

__all__ = ["BackpropModel", "InputError", "Predictor"]


class BackpropModel(mlflow.pyfunc.PythonModel):
    """``mlflow.pyfunc`` wrapper around :class:`Predictor` (artifact ``model_dir``)."""

    def load_context(self, context):
        self.predictor = Predictor(context.artifacts["model_dir"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.predictor.predict(model_input)
