"""MLflow tracking for training runs: a local sqlite store by default, one experiment per name.

``Tracker`` is a context manager spanning the whole run; with ``enabled: false`` every call is a
no-op, so training code logs unconditionally. A run records the host and process that own it:
a run left RUNNING by a killed process on this host is marked FAILED when the next run starts.
``pyfunc`` logs a bundle as an MLflow model (models-from-code, ``toollat/mlflow_model.py``; no
pickle of toollat objects) and registers it under the experiment's name, so
``mlflow.pyfunc.load_model("models:/<name>/latest").predict(calls_df)`` returns the quantiles.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

from toollat import __version__

os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
# A run's output is the run's own: MLflow configures its loggers at import (INFO: "Creating initial
# MLflow database tables..." on a fresh store), and its artifact copies draw tqdm bars.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class Tracker:
    def __init__(self, enabled: bool, tracking_uri: str, artifact_root: str, experiment: str, run_name: str | None = None):
        self.enabled = enabled
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        if not enabled:
            return
        import mlflow

        for name in ("mlflow", "alembic"):  # also when mlflow was imported before this module set its level
            logging.getLogger(name).setLevel(max(logging.getLogger(name).level, logging.WARNING))
        self._mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri)
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is None:
            Path(artifact_root).mkdir(parents=True, exist_ok=True)
            self.experiment_id = mlflow.create_experiment(experiment, artifact_location=Path(artifact_root).resolve().as_uri() + f"/{experiment}")
        else:
            self.experiment_id = exp.experiment_id
        self.run_name = run_name

    def __enter__(self) -> "Tracker":
        if self.enabled:
            self._fail_orphans()
            run = self._mlflow.start_run(experiment_id=self.experiment_id, run_name=self.run_name,
                                         tags={"toollat.host": socket.gethostname(), "toollat.pid": str(os.getpid())})
            self.run_id = run.info.run_id
        return self

    def _fail_orphans(self) -> None:
        """RUNNING runs of this experiment whose process on this host is gone: mark FAILED."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        host = socket.gethostname()
        for r in client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'"):
            tags = r.data.tags
            pid = tags.get("toollat.pid")
            if tags.get("toollat.host") == host and pid and pid.isdigit() and not _alive(int(pid)):
                client.set_terminated(r.info.run_id, status="FAILED")

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.enabled:
            self._mlflow.end_run(status="FAILED" if exc_type else "FINISHED")

    def params(self, params: dict[str, Any]) -> None:
        if self.enabled:
            flat = {k: str(v)[:500] for k, v in flatten(params).items()}
            self._mlflow.log_params(flat)

    def metrics(self, metrics: dict[str, float], prefix: str = "") -> None:
        if self.enabled:
            clean = {f"{prefix}{k}": float(v) for k, v in metrics.items()
                     if isinstance(v, (int, float)) and v == v}
            self._mlflow.log_metrics(clean)

    def dict(self, obj: Any, path: str) -> None:
        if self.enabled:
            self._mlflow.log_dict(obj, path)

    def text(self, text: str, path: str) -> None:
        if self.enabled:
            self._mlflow.log_text(text, path)

    def figure(self, fig, path: str) -> None:
        if self.enabled:
            self._mlflow.log_figure(fig, path)

    def artifacts(self, directory: Path, path: str) -> None:
        if self.enabled:
            self._mlflow.log_artifacts(str(directory), path)

    def tags(self, tags: dict[str, str]) -> None:
        if self.enabled:
            self._mlflow.set_tags(tags)

    def pyfunc(self, bundle_dir: Path, registered_name: str) -> str | None:
        """The bundle as an MLflow pyfunc model, registered as ``registered_name``; the registered version."""
        if not self.enabled:
            return None
        code = Path(__file__).with_name("mlflow_model.py")
        mlflow_log = logging.getLogger("mlflow")
        level = mlflow_log.level
        mlflow_log.setLevel(logging.ERROR)  # "Failed to infer model signature": a calls table has no fixed one
        try:
            info = self._mlflow.pyfunc.log_model(name="model", python_model=str(code), artifacts={"bundle": str(bundle_dir)},
                                                 pip_requirements=[f"toollat=={__version__}"],
                                                 registered_model_name=registered_name)
        finally:
            mlflow_log.setLevel(level)
        version = getattr(info, "registered_model_version", None)
        return None if version is None else str(version)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
