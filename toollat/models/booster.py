"""LightGBM boosters through LightGBM's C library alone (ctypes): load a text model, predict a
matrix or one row, save, and read feature importance.

A process that only predicts (a scheduler's, the HTTP server) needs the trees and the library
that walks them, not the ``lightgbm`` Python package: importing that package imports
scikit-learn, pandas and scipy when they are installed (0.6 s here, more than the whole
import-and-load budget of the serving path). The library file ships inside the ``lightgbm``
wheel, so it is found there without importing the package. Training still uses the package
(``models/lgbm.py``) and hands its boosters over as model text; the text, the library and so
every prediction are the same as through ``lightgbm.Booster``.

``RowPredictor`` predicts one row with several boosters through LightGBM's prepared single-row
path (``LGBM_BoosterPredictForMatSingleRowFast``): one C call per booster, no Python-side checks.
"""
from __future__ import annotations

import ctypes
import importlib.util
import sys
import threading
from pathlib import Path

import numpy as np

_DTYPE_FLOAT32, _DTYPE_FLOAT64 = 0, 1
_PREDICT_NORMAL = 0
_IMPORTANCE = {"split": 0, "gain": 1}
_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


class BoosterError(RuntimeError):
    """LightGBM's C library refused a model or a prediction (its own message attached)."""


def _library_path() -> Path:
    spec = importlib.util.find_spec("lightgbm")   # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise BoosterError("LightGBM is not installed: pip install lightgbm")
    name = {"win32": "lib_lightgbm.dll", "darwin": "lib_lightgbm.dylib"}.get(sys.platform, "lib_lightgbm.so")
    for root in spec.submodule_search_locations:
        for sub in ("lib", "bin", "."):
            p = Path(root) / sub / name
            if p.is_file():
                return p
    raise BoosterError(f"LightGBM's library {name} is not inside the installed lightgbm package")


def _library() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            lib = ctypes.cdll.LoadLibrary(str(_library_path()))
            lib.LGBM_GetLastError.restype = ctypes.c_char_p
            _lib = lib
    return _lib


def _check(ret: int) -> None:
    if ret != 0:
        raise BoosterError(_library().LGBM_GetLastError().decode("utf-8", "replace"))


class Booster:
    """One LightGBM model: ``Booster.from_file(path)`` or ``Booster.from_string(text)``."""

    def __init__(self, handle: ctypes.c_void_p):
        self._lib = _library()
        self.handle = handle
        n = ctypes.c_int()
        _check(self._lib.LGBM_BoosterGetNumFeature(handle, ctypes.byref(n)))
        self._num_feature = n.value
        _check(self._lib.LGBM_BoosterNumberOfTotalModel(handle, ctypes.byref(n)))
        self._num_trees = n.value

    @classmethod
    def from_file(cls, path: str | Path) -> "Booster":
        handle, iters = ctypes.c_void_p(), ctypes.c_int()
        _check(_library().LGBM_BoosterCreateFromModelfile(str(path).encode(), ctypes.byref(iters), ctypes.byref(handle)))
        return cls(handle)

    @classmethod
    def from_string(cls, text: str) -> "Booster":
        handle, iters = ctypes.c_void_p(), ctypes.c_int()
        _check(_library().LGBM_BoosterLoadModelFromString(text.encode(), ctypes.byref(iters), ctypes.byref(handle)))
        return cls(handle)

    @classmethod
    def of(cls, booster) -> "Booster":
        """A booster as this class: itself, or a ``lightgbm.Booster`` through its model text."""
        return booster if isinstance(booster, cls) else cls.from_string(booster.model_to_string())

    def num_feature(self) -> int:
        return self._num_feature

    def num_trees(self) -> int:
        return self._num_trees

    def predict(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Predictions for the rows of ``X`` (n, num_feature): raw scores for regression,
        probabilities for a binary classifier, as ``lightgbm.Booster.predict`` gives them."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self._num_feature:
            raise ValueError(f"expected a matrix of {self._num_feature} columns, got shape {X.shape}")
        dtype = _DTYPE_FLOAT32 if X.dtype == np.float32 else _DTYPE_FLOAT64
        X = np.ascontiguousarray(X, dtype=np.float32 if dtype == _DTYPE_FLOAT32 else np.float64)
        out = np.empty(len(X), dtype=np.float64)
        if not len(X):
            return out
        n = ctypes.c_int64()
        _check(self._lib.LGBM_BoosterPredictForMat(
            self.handle, ctypes.c_void_p(X.ctypes.data), ctypes.c_int(dtype), ctypes.c_int32(X.shape[0]),
            ctypes.c_int32(X.shape[1]), ctypes.c_int(1), ctypes.c_int(_PREDICT_NORMAL), ctypes.c_int(0), ctypes.c_int(-1),
            f"num_threads={int(num_threads)}".encode(), ctypes.byref(n), ctypes.c_void_p(out.ctypes.data)))
        if n.value != len(X):
            raise BoosterError(f"LightGBM returned {n.value} predictions for {len(X)} rows")
        return out

    def model_to_string(self) -> str:
        size = 1 << 22
        while True:
            buf = ctypes.create_string_buffer(size)
            n = ctypes.c_int64()
            _check(self._lib.LGBM_BoosterSaveModelToString(self.handle, ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(0),
                                                           ctypes.c_int64(size), ctypes.byref(n), buf))
            if n.value <= size:
                return buf.value.decode()
            size = int(n.value)

    def save_model(self, path: str | Path) -> None:
        _check(self._lib.LGBM_BoosterSaveModel(self.handle, ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(0),
                                               str(path).encode()))

    def feature_importance(self, importance_type: str = "split") -> np.ndarray:
        out = np.zeros(self._num_feature, dtype=np.float64)
        _check(self._lib.LGBM_BoosterFeatureImportance(self.handle, ctypes.c_int(-1), ctypes.c_int(_IMPORTANCE[importance_type]),
                                                       ctypes.c_void_p(out.ctypes.data)))
        return out

    def __del__(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None and handle.value:
            self._lib.LGBM_BoosterFree(handle)
            self.handle = None


class RowPredictor:
    """Several boosters' predictions for one row, through the prepared single-row path (each
    booster's configuration built once)."""

    def __init__(self, boosters: list[Booster], ncol: int):
        self._lib = _library()
        self._boosters = boosters  # the handles live as long as this
        self.handles = []
        for b in boosters:
            h = ctypes.c_void_p()
            _check(self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                b.handle, ctypes.c_int(_PREDICT_NORMAL), ctypes.c_int(0), ctypes.c_int(-1),
                ctypes.c_int(_DTYPE_FLOAT32), ctypes.c_int32(ncol), b"num_threads=1", ctypes.byref(h)))
            self.handles.append(h)
        self._n = ctypes.c_int64()
        self._fn = self._lib.LGBM_BoosterPredictForMatSingleRowFast

    def predict(self, x: np.ndarray) -> np.ndarray:
        """One float32 row -> one prediction per booster (a new array)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        xp = ctypes.c_void_p(x.ctypes.data)  # data_as() would build a ctypes.cast reference cycle per call
        res = np.empty(len(self.handles))
        rp = res.ctypes.data
        n = self._n
        for i, h in enumerate(self.handles):
            if self._fn(h, xp, ctypes.byref(n), ctypes.c_void_p(rp + 8 * i)) != 0:
                raise BoosterError(self._lib.LGBM_GetLastError().decode("utf-8", "replace"))
        return res

    def __del__(self) -> None:
        for h in getattr(self, "handles", []):
            self._lib.LGBM_FastConfigFree(h)


__all__ = ["Booster", "BoosterError", "RowPredictor"]
