"""The MLflow pyfunc model of a toollat bundle (models-from-code: MLflow stores this file, not a
pickle). ``training`` logs it with the bundle as its ``bundle`` artifact;
``mlflow.pyfunc.load_model("models:/<name>/latest").predict(calls_df)`` then returns
``ToolLatencyModel.predict``'s DataFrame (``pred_p10_ms`` .. ``pred_p99_ms``, ``pred_p_long``)
for a canonical calls table (``toollat ingest`` output)."""
from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class ToolLatencyPyfunc(PythonModel):
    def load_context(self, context) -> None:
        from toollat.estimator import ToolLatencyModel

        self.model = ToolLatencyModel.load(context.artifacts["bundle"])

    # The type hint tells MLflow what this takes (a DataFrame: no schema inferred, no conversion),
    # and spares every training run its "Add type hints" warning.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.model.predict(model_input)


mlflow.models.set_model(ToolLatencyPyfunc())
