"""HTTP serving: ``create_app(predictor)`` (FastAPI), ``serve(...)`` (uvicorn, one process) and
the ``ServerLimits`` both take."""
from .app import create_app, serve
from .protocol import ServerLimits, server_config

__all__ = ["create_app", "serve", "ServerLimits", "server_config"]
