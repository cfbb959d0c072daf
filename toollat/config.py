"""Hydra/OmegaConf glue: the resolvers conf/ uses (``${tl_root:}``, ``${tl_cache:}``)."""
from __future__ import annotations

from omegaconf import OmegaConf

from toollat.paths import REPO_ROOT, cache_dir


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("tl_root", lambda: str(REPO_ROOT), replace=True)
    OmegaConf.register_new_resolver("tl_cache", lambda: str(cache_dir()), replace=True)


def compose(overrides: list[str] | None = None, config_dir=None) -> dict:
    """The resolved training config for Hydra overrides, as ``train.py`` would see it."""
    from hydra import compose as hydra_compose, initialize_config_dir

    register_resolvers()
    overrides = [("exp=" + o[5:]) if o.startswith("+exp=") else o for o in (overrides or [])]
    with initialize_config_dir(config_dir=str(config_dir or REPO_ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)
