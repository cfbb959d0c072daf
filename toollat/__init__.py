"""toollat: predict how long a coding agent's tool call will block, for LLM-serving schedulers.

Parts (one folder each): ``ingest`` (agent logs -> canonical calls table), ``features``,
``models``, ``evaluation``, ``predictor`` (what a scheduler imports), ``serving`` (HTTP API),
``simulation`` (KV-cache policy replay), ``harvest`` (real timings measured on this machine).
"""
__version__ = "0.1.0"
