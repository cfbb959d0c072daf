"""toollat: predict how long a coding agent's tool call will block, for LLM-serving schedulers.

Parts (one folder or module each): ``ingest`` (agent logs -> canonical calls table),
``features``, ``models``, ``estimator`` (``ToolLatencyModel``, the one trained artifact),
``evaluation``, ``predictor`` (what a scheduler imports), ``serving`` (HTTP API), ``simulation``
(KV-cache policy replay), ``harvest`` (real timings measured on this machine). The map of
contracts and the module that owns each is ``docs/ARCHITECTURE.md``.
"""
__version__ = "0.2.0"

_LAZY = {"Predictor": "predictor", "LatencyPrediction": "predictor", "ToolLatencyModel": "estimator"}


def __getattr__(name: str):
    # Lazy: `import toollat` stays light (the CLI's --help and --version import nothing heavy).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"toollat.{_LAZY[name]}"), name)
    raise AttributeError(name)


__all__ = ["Predictor", "LatencyPrediction", "ToolLatencyModel", "__version__"]
