"""Model bundles on disk: a directory of plain files that loads without running code from it.

```
<bundle>/
  card.json            format and version, the ToolLatencyModel's constructor parameters, the
                       fitted state's JSON, what it was trained on (counts only), metrics, and a
                       SHA-256 of every other file
  features.json        feature layout and vocabularies (hashes of strings, never the strings)
  pca_*.npy, memory_*.npy, static_*.npy   embedding projection, neighbour memory (numbers only)
  sessions.npy         63-bit hashes of the training sessions' ids
  model_q*.txt, model_long.txt   LightGBM text models
```

``open_bundle`` checks the format and version, that every file in the directory is a regular
file (no symlinks, no subdirectories) listed in the card with a matching checksum, before
anything else is read; loaders reach files only through ``member``, which accepts a plain name
of a listed file. ``.npy`` files are read with ``allow_pickle=False``. A tampered or foreign
directory fails with ``BundleError`` and a reason. The card holds no absolute path.

Format versions: this toollat writes and reads format ``FORMAT_VERSION`` (2). Format 1
(toollat 0.1) predates the ``ToolLatencyModel`` card layout; loading one fails naming the
toollat version that reads it.

Where bundles are: a path; a bare name is ``$TOOLLAT_MODELS/<name>``, ``models/<name>`` of the
checkout (or of the current directory when installed), and, for names shipped with the package
(``default``), the package's own ``toollat/bundles/<name>`` (``importlib.resources``).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from toollat import __version__
from toollat.jsonio import dumps_bytes
from toollat.paths import models_dir

FORMAT = "toollat-bundle"
FORMAT_VERSION = 2
READERS = {1: "toollat 0.1.x"}   # older formats and the release that reads them
CARD = "card.json"


class BundleError(Exception):
    """A bundle that cannot be trusted or read."""


def packaged(name: str) -> Path | None:
    """A bundle shipped inside the installed package, if there is one by that name."""
    try:
        p = resources.files("toollat") / "bundles" / name
        return Path(str(p)) if p.is_dir() else None
    except (ModuleNotFoundError, OSError):
        return None


def resolve(name_or_path: str | Path) -> Path:
    """A bundle directory from a path or a bare name (see the module docstring)."""
    p = Path(name_or_path).expanduser()
    if p.exists() or len(p.parts) != 1:
        return p
    local = models_dir() / str(name_or_path)
    if local.exists():
        return local
    shipped = packaged(str(name_or_path))
    if shipped is not None:
        return shipped
    raise BundleError(f"no bundle named {str(name_or_path)!r}: not a directory, not in {models_dir()}, "
                      f"and not shipped with the package; {_known()}")


def available() -> list[str]:
    """The bundle names ``resolve`` finds: folders of ``models_dir()`` holding a card, then the shipped ones."""
    local = models_dir()
    names = sorted(p.name for p in local.iterdir() if (p / CARD).is_file()) if local.is_dir() else []
    try:
        shipped = resources.files("toollat") / "bundles"
        names += sorted(p.name for p in shipped.iterdir() if p.is_dir() and p.name not in names and (p / CARD).is_file())
    except (ModuleNotFoundError, OSError):
        pass
    return names


def _known() -> str:
    names = available()
    return f"bundles by name: {', '.join(names)} (or give a bundle directory)" if names else "no bundles found by name"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bundle(directory: Path, params: dict[str, Any], write_state: Callable[[Path], dict[str, Any]],
                 info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Write a bundle atomically (a sibling temp directory renamed into place).

    ``write_state(tmp)`` writes the fitted state's files into ``tmp`` and returns its JSON;
    ``info`` adds metrics, data summary and the like to the card."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = write_state(tmp)
    files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    card = {
        **info,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "toollat_version": __version__,
        "created": created,
        "name": params.get("name", directory.name),
        "version": info.get("version") or f"{params.get('name', directory.name)}-{created}",
        "params": params,
        "state": state,
        "files": files,
    }
    (tmp / CARD).write_bytes(dumps_bytes(card, indent=True, sort_keys=True))
    card = json.loads((tmp / CARD).read_text())  # what a load will see (NaN -> null, tuples -> lists)
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory, card


def read_card(path: Path) -> dict[str, Any]:
    card_path = path / CARD
    if not path.is_dir():
        raise BundleError(f"{path} is not a model bundle directory" + ("" if path.exists() else f"; {_known()}"))
    if card_path.is_symlink() or not card_path.is_file():
        raise BundleError(f"{path} has no {CARD}: not a toollat bundle")
    try:
        card = json.loads(card_path.read_text(), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"{card_path} is not valid JSON: {e}") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise BundleError(f"{path} is not a toollat bundle (format {card.get('format') if isinstance(card, dict) else None!r})")
    version = card.get("format_version")
    if version != FORMAT_VERSION:
        reader = READERS.get(version) if isinstance(version, int) else None
        hint = f"; {reader} reads it, or retrain it with `python train.py`" if reader else ""
        raise BundleError(f"{path} has bundle format version {version!r}; this toollat ({__version__}) reads "
                          f"format {FORMAT_VERSION}{hint}")
    return card


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def verify(path: Path, card: dict[str, Any]) -> None:
    """Every file of the bundle is a regular file listed in the card with its checksum, and
    every listed file is there."""
    files = card.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{path}: card lists no files")
    for entry in path.iterdir():
        if entry.name == CARD:
            continue
        if entry.is_symlink() or not entry.is_file():
            raise BundleError(f"{path}: {entry.name} is not a regular file (symlinks and folders are refused)")
        if entry.name not in files:
            raise BundleError(f"{path}: {entry.name} is not listed in the card (not covered by its checksums)")
    for name, digest in files.items():
        f = path / str(name)
        if not isinstance(name, str) or Path(name).name != name or name in (".", "..") or not f.is_file():
            raise BundleError(f"{path}: file {name!r} listed in the card is missing")
        if _sha256(f) != digest:
            raise BundleError(f"{path}: {name} does not match its checksum (tampered or corrupted)")


def open_bundle(name_or_path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Resolve, read and verify a bundle; its path and card."""
    path = resolve(name_or_path)
    card = read_card(path)
    verify(path, card)
    for key in ("params", "state"):
        if not isinstance(card.get(key), dict):
            raise BundleError(f"{path}: card has no {key!r} object")
    return path, card


def member(path: Path, name: Any) -> Path:
    """The file ``name`` of a verified bundle: a plain file name of the bundle's own, nothing else."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..", CARD):
        raise BundleError(f"{path}: the card names {name!r}, which is not a file of the bundle")
    f = path / name
    if f.is_symlink() or not f.is_file():
        raise BundleError(f"{path}: {name} is not a regular file of the bundle")
    return f
