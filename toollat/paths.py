"""Where things are: the project checkout, the shared corpus beside it, bundles and caches.

The shared corpus is read in place (never copied): ``$TOOLLAT_SHARED`` or ``../shared`` next
to the checkout; ``$TOOLLAT_CORPUS`` points at a sessions folder directly.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("TOOLLAT_SHARED") or REPO_ROOT.parent / "shared").expanduser()


def shared_data_dir() -> Path:
    return shared_dir() / "data"


def corpus_dir() -> Path:
    """The raw agent transcripts of the shared corpus."""
    env = os.environ.get("TOOLLAT_CORPUS")
    return Path(env).expanduser() if env else shared_data_dir() / "sessions"


def tracelab_dir() -> Path:
    return shared_data_dir() / "tracelab"


def in_checkout() -> bool:
    """True when running from a source checkout (not an installed package)."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "conf").is_dir()


def models_dir() -> Path:
    """Where named bundles live: ``$TOOLLAT_MODELS``, the checkout's ``models/``, or ``./models``
    when installed (the shipped ``default`` bundle is package data: ``toollat.bundle.resolve``)."""
    env = os.environ.get("TOOLLAT_MODELS")
    if env:
        return Path(env).expanduser()
    return REPO_ROOT / "models" if in_checkout() else Path.cwd() / "models"


def cache_dir() -> Path:
    """Per-user cache (embeddings, demo corpus): ``$TOOLLAT_CACHE`` or ``~/.cache/toollat``."""
    env = os.environ.get("TOOLLAT_CACHE")
    if env:
        return Path(env).expanduser()
    home = Path(os.environ.get("HOME") or Path.home())
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "toollat"
