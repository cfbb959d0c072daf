"""Model bundles: a directory of plain files that loads without running code from it.

```
models/<name>/
  card.json            format, version, what it was trained on (counts only), metrics, config,
                       the model's and baselines' JSON state, and a SHA-256 of every other file
  features.json        feature layout and vocabularies (hashes of strings, never the strings)
  pca_*.npy, memory_*.npy   embedding projection and nearest-neighbour memory (numbers only)
  model_q*.txt, model_long.txt   LightGBM text models
```

``load_bundle`` checks the format and version, then every file's checksum, before reading
anything else; ``.npy`` files are read with ``allow_pickle=False``. A tampered or foreign
directory fails with ``BundleError`` and a reason. A bundle holds no argument text of its
training calls: what it stores about them are counts, hashes, vectors and statistics.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from toollat import __version__
from toollat.features.embed import Embedder
from toollat.features.pipeline import FeaturePipeline
from toollat.hints import HintCosts
from toollat.models import MODELS, LatencyModel
from toollat.paths import cache_dir, models_dir

FORMAT = "toollat-bundle"
FORMAT_VERSION = 1
CARD = "card.json"


class BundleError(Exception):
    """A bundle that cannot be trusted or read."""


@dataclass
class Bundle:
    path: Path
    card: dict[str, Any]
    pipeline: FeaturePipeline
    model: LatencyModel
    baselines: dict[str, LatencyModel] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.card.get("name", self.path.name)

    @property
    def version(self) -> str:
        return self.card.get("version", "")

    @property
    def hint_costs(self) -> HintCosts:
        return HintCosts(**self.card.get("hints", {}))


def resolve(name_or_path: str | Path) -> Path:
    """``default`` and other bare names mean ``models/<name>/``; anything else is a path."""
    p = Path(name_or_path).expanduser()
    if not p.exists() and len(p.parts) == 1:
        p = models_dir() / str(name_or_path)
    return p


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(directory: Path, pipeline: FeaturePipeline, model: LatencyModel,
                baselines: dict[str, LatencyModel], card: dict[str, Any]) -> Path:
    """Write a bundle; ``card`` holds name, metrics, data summary, config, hints."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pipeline.save(tmp)
    state = {
        "kind": model.kind,
        "state": model.save(tmp, "model"),
        "baselines": {name: {"kind": b.kind, "state": b.save(tmp, name)} for name, b in baselines.items()},
    }
    files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "toollat_version": __version__,
        "created": created,
        "version": card.get("version") or f"{card.get('name', directory.name)}-{created}",
        **card,
        "model": state,
        "files": files,
    }
    (tmp / CARD).write_text(json.dumps(full, indent=1, sort_keys=True, default=str))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def read_card(path: Path) -> dict[str, Any]:
    card_path = path / CARD
    if not path.is_dir():
        raise BundleError(f"{path} is not a model bundle directory")
    if not card_path.is_file():
        raise BundleError(f"{path} has no {CARD}: not a toollat bundle")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{card_path} is not valid JSON: {e}") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise BundleError(f"{path} is not a toollat bundle (format {card.get('format') if isinstance(card, dict) else None!r})")
    if card.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path} has bundle format version {card.get('format_version')!r}; this toollat reads {FORMAT_VERSION}")
    return card


def verify(path: Path, card: dict[str, Any]) -> None:
    files = card.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{path}: card lists no files")
    for name, digest in files.items():
        f = path / name
        if Path(name).name != name or not f.is_file():
            raise BundleError(f"{path}: file {name!r} listed in the card is missing")
        if _sha256(f) != digest:
            raise BundleError(f"{path}: {name} does not match its checksum (tampered or corrupted)")


def load_bundle(name_or_path: str | Path, embedder: Embedder | None = None) -> Bundle:
    path = resolve(name_or_path)
    card = read_card(path)
    verify(path, card)
    try:
        pipeline = FeaturePipeline.load(path, embedder or Embedder(cache_dir()))
        spec = card["model"]
        model = MODELS[spec["kind"]].load(path, "model", spec["state"])
        baselines = {n: MODELS[b["kind"]].load(path, n, b["state"]) for n, b in spec.get("baselines", {}).items()}
    except BundleError:
        raise
    except (KeyError, ValueError, TypeError, OSError) as e:
        raise BundleError(f"{path}: cannot read bundle contents ({type(e).__name__}: {e})") from None
    except Exception as e:  # LightGBM parse errors surface as LightGBMError
        raise BundleError(f"{path}: cannot read bundle contents ({type(e).__name__}: {e})") from None
    return Bundle(path, card, pipeline, model, baselines)
