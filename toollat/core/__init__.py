"""The core layer: what every other part of toollat shares and that imports nothing above it
(numpy and the standard library at import; pandas only inside the functions that read tables,
so serving never imports it). See docs/ARCHITECTURE.md, "Layers".

- ``call``: the call as the features see it (``Call``, ``calls_from_frame``, ``bound_args``).
- ``families``: tool name -> tool family.
- ``timestamps``: the one timestamp parser (epoch ms).
- ``timeline``: the visibility rule (when a result becomes visible in its session), the order
  of emissions and results, the waits for the human between turns.
- ``units``: log10 seconds, the long-call threshold, quantile levels, targets.
- ``hashing``: stable hashes and session folds.
- ``settings``: the one validator of settings dataclasses.
"""
