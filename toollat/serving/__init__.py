"""HTTP serving: ``create_app(predictor)`` (FastAPI) and ``serve(...)`` (uvicorn, one process)."""
from .app import create_app, serve

__all__ = ["create_app", "serve"]
