"""Hydra/OmegaConf glue: the resolvers conf/ uses (``${tl_root:}``, ``${tl_cache:}``) and the
settings dataclasses registered as the schemas of their ``conf/`` groups.

Each group's defaults have one owner, its dataclass (``core.settings``): ``conf/<group>/<name>.yaml``
starts from ``schema`` (``lgbm_schema`` / ``knn_schema`` for the model) and states only what
differs, and Hydra checks every override against the dataclass (a misspelt key or a wrong type
fails before anything runs).
"""
from __future__ import annotations

from omegaconf import OmegaConf

from toollat.paths import REPO_ROOT, cache_dir


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("tl_root", lambda: str(REPO_ROOT), replace=True)
    OmegaConf.register_new_resolver("tl_cache", lambda: str(cache_dir()), replace=True)
    register_schemas()


def register_schemas() -> None:
    """The settings dataclasses as Hydra config-store entries (the groups' schemas)."""
    from hydra.core.config_store import ConfigStore

    from toollat.features.pipeline import FeatureConfig
    from toollat.hints import HintCosts
    from toollat.models.bounds import DurationBounds
    from toollat.models.knn import KnnSpec
    from toollat.models.lgbm import LightGBMSpec
    from toollat.online import OnlineConfig

    cs = ConfigStore.instance()
    for group, name, node in (("features", "schema", FeatureConfig), ("hints", "schema", HintCosts),
                              ("online", "schema", OnlineConfig), ("bounds", "schema", DurationBounds),
                              ("model", "lgbm_schema", LightGBMSpec), ("model", "knn_schema", KnnSpec)):
        schema = OmegaConf.structured(node)
        OmegaConf.set_readonly(schema, False)  # frozen dataclasses: the config may still override them
        cs.store(group=group, name=name, node=schema)


def compose(overrides: list[str] | None = None, config_dir=None) -> dict:
    """The resolved training config for Hydra overrides, as ``train.py`` would see it."""
    from hydra import compose as hydra_compose, initialize_config_dir

    register_resolvers()
    overrides = [("exp=" + o[5:]) if o.startswith("+exp=") else o for o in (overrides or [])]
    with initialize_config_dir(config_dir=str(config_dir or REPO_ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)
