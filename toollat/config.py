"""Hydra/OmegaConf glue: the resolvers conf/ uses (``${tl_root:}``, ``${tl_cache:}``)."""
from __future__ import annotations

from omegaconf import OmegaConf

from toollat.paths import REPO_ROOT, cache_dir


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("tl_root", lambda: str(REPO_ROOT), replace=True)
    OmegaConf.register_new_resolver("tl_cache", lambda: str(cache_dir()), replace=True)
