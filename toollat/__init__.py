"""toollat: predict how long a coding agent's tool call will block, for LLM-serving schedulers.

Parts (one folder each): ``ingest`` (agent logs -> canonical calls table), ``features``,
``models``, ``evaluation``, ``predictor`` (what a scheduler imports), ``serving`` (HTTP API),
``simulation`` (KV-cache policy replay), ``harvest`` (real timings measured on this machine).
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: `import toollat` stays light; the Predictor pulls in numpy, LightGBM and torch.
    if name in ("Predictor", "LatencyPrediction"):
        from toollat import predictor

        return getattr(predictor, name)
    raise AttributeError(name)
