"""Train, evaluate on held-out sessions, log to MLflow, export a bundle, print the metrics.

    python train.py +exp=grep_shell [hydra overrides, e.g. features=no_context split=loso]

Configuration lives in conf/ (see conf/config.yaml). The contract spells the experiment as
`+exp=NAME`; Hydra 1.3 refuses `+` for a group already in the defaults list (`exp: null`), so
it is rewritten to `exp=NAME` before Hydra parses the command line. Both spellings work.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.argv = [("exp=" + a[len("+exp="):]) if a.startswith("+exp=") else a for a in sys.argv]

from toollat.extras import MissingExtra, require  # noqa: E402

try:
    require("train", "python train.py")
except MissingExtra as e:
    sys.exit(f"error: {e}")

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from toollat.config import register_resolvers  # noqa: E402

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from toollat.data import NoDataError
    from toollat.training import console, run

    hc = HydraConfig.get()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["multirun"] = hc.mode == RunMode.MULTIRUN
    try:
        run(resolved, run_dir=Path(hc.runtime.output_dir))
    except (NoDataError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        sys.exit(2)


if __name__ == "__main__":
    main()
