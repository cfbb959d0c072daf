"""HTTP serving: ``create_app(predictor)`` (FastAPI), ``serve(...)`` (uvicorn, one process) and
the ``ServerLimits`` both take; ``ServingConfig`` reads them and the memory budget from
``conf/serving/default.yaml``."""
from .app import create_app, serve
from .protocol import ServerLimits, ServingConfig, server_config

__all__ = ["create_app", "serve", "ServerLimits", "ServingConfig", "server_config"]
