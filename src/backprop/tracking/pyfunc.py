"""The trained model as an MLflow pyfunc model: :class:`~backprop.pipeline.predictor.Predictor`
behind ``mlflow.pyfunc`` (``mlflow models serve``, ``mlflow.pyfunc.load_model``).

The pyfunc model holds the model folder the train stage wrote (weights, classes,
scaler) as its one artifact, so raw rows go in and original labels come out: a
``predicted`` column and a ``proba_<class>`` column per class, as ``backprop
predict`` writes them (``mlflow models serve`` answers with the same columns).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backprop.pipeline.predictor import Predictor
from backprop.pipeline.prepared import Prepared
from backprop.tracking.store import Store, quiet
from backprop.tracking.store import mlflow as imported_mlflow

mlflow = imported_mlflow()  # quiet and offline, as every import of MLflow here

__all__ = ["BackpropModel", "log_pyfunc"]


class BackpropModel(mlflow.pyfunc.PythonModel):
    """``mlflow.pyfunc`` wrapper around :class:`Predictor` (artifact ``model_dir``)."""

    def load_context(self, context):
        self.predictor = Predictor(context.artifacts["model_dir"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.predictor.predict(model_input)


def log_pyfunc(store: Store, run_id: str, model_dir: Path, prepared: Prepared) -> str:
    """Log the model folder as run ``run_id``'s pyfunc model ``model``; returns the SHA-256
    of its weights.  Signature and input example come from the training CSV's own rows."""
    import scipy

    predictor = Predictor(str(model_dir))
    example = input_example(prepared)
    client = store.client
    run = client.get_run(run_id)
    # The logged model belongs to the run's experiment (MLflow would take the process's
    # "active" one) and carries the run's params, as mlflow.pyfunc.log_model records them.
    logged = client.create_logged_model(
        run.info.experiment_id, name="model", source_run_id=run_id, params=run.data.params
    )
    with quiet(), store.pointed():
        signature = mlflow.models.infer_signature(example, predictor.predict(example))
        # What mlflow.pyfunc.log_model does, but through Model.log, which alone can skip the
        # check that the input example can be served (a reload and a predict: a third of the
        # model's logging time, in every sweep job).  Serving the logged model is tested for real.
        mlflow.models.Model.log(
            artifact_path=None,
            name="model",
            flavor=_PyfuncFlavor,
            flavor_name="pyfunc.CustomPythonModel",
            run_id=run_id,
            model_id=logged.model_id,
            python_model=BackpropModel(),
            artifacts={"model_dir": str(model_dir)},
            signature=signature,
            input_example=example,
            pip_requirements=[
                f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}",
                f"scipy=={scipy.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
            validate_serving_input=False,
        )
    return predictor.weights_sha256


class _PyfuncFlavor:
    """``mlflow.pyfunc`` as ``Model.log`` uses a flavor, without the switch it reads."""

    @staticmethod
    def save_model(*, validate_serving_input: bool = True, **kwargs: Any) -> None:
        mlflow.pyfunc.save_model(**kwargs)


def input_example(prepared: Prepared) -> pd.DataFrame:
    """A few raw rows for the MLflow signature: from the training CSV when it is there, else
    unscaled rows.  The CSV's column types stay: MLflow's Python API refuses integer columns
    for a float signature (int64 -> float64 "is not safe"), and CSVs of pixels are integers."""
    source = prepared.source or {}
    path = source.get("path")
    if path and os.path.isfile(path):
        return pd.read_csv(path, nrows=5)[prepared.feature_names]
    s = prepared.scaler
    raw = prepared.X["train"][:5] * (s.data_max - s.data_min) + s.data_min
    if "files" in source:  # MNIST's idx files: whole pixel values 0-255, as a CSV holds them
        return pd.DataFrame(np.rint(raw).astype(np.int64), columns=prepared.feature_names)
    return pd.DataFrame(np.asarray(raw, dtype=np.float64), columns=prepared.feature_names)
