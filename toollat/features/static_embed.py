"""Static sentence embeddings: all-MiniLM-L6-v2 distilled with model2vec into one vector per token.

A text's vector is the mean of its tokens' vectors, L2-normalized, as model2vec's
``StaticModel.encode`` computes it (no special tokens, unknown tokens dropped, at most
``max_length`` tokens). Distillation needs torch and model2vec and runs at training time only;
the result is stored as numbers (a float16 ``.npy`` matrix, the tokenizer JSON and a small JSON
of settings) and encoding uses only the ``tokenizers`` library and numpy, so a serving process
that loads a static embedder never imports torch. Encoding costs microseconds per text, so there
is no disk cache: the vectors are computed again each time.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import uuid
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .embed import MODEL_NAME, model_path

FORMAT = 1
# ASCII control characters that BERT's clean_text drops (tab, newline and return become spaces)
_CONTROL = {c: None for c in [*range(0, 9), 11, 12, *range(14, 32), 127]}
# a BERT word on lowercased ASCII: a run of letters/digits, or one punctuation character (all other
# printable ASCII is punctuation to BERT), or the ellipsis (Unicode punctuation)
_WORD = re.compile(r"[a-z0-9]+|[!-/:-@\[-`{-~\u2026]")
_MAX_PIECES = 200_000


class StaticEmbedderError(ValueError):
    """Stored static-embedder files that are missing, malformed or inconsistent."""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class StaticEmbedder:
    """Token-vector mean embeddings; encoding is thread-safe (the tokenizer is never reconfigured)."""

    def __init__(self, vectors: np.ndarray, tokenizer: Tokenizer, *, max_length: int | None = 512,
                 base_model: str = MODEL_NAME):
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
            raise StaticEmbedderError(f"token vectors must be a 2-d float matrix, got {vectors.dtype} {vectors.shape}")
        if tokenizer.get_vocab_size(with_added_tokens=True) != len(vectors):
            raise StaticEmbedderError(f"tokenizer has {tokenizer.get_vocab_size(with_added_tokens=True)} tokens "
                                      f"but there are {len(vectors)} token vectors")
        if not np.isfinite(vectors).all():
            raise StaticEmbedderError("token vectors contain NaN or infinity")
        self.stored = vectors                              # kept as stored (float16) for save()
        self.vectors = vectors.astype(np.float32)          # float32 for the mean: exact, and faster than float16
        self.base_model = base_model
        self.max_length = max_length
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        if max_length is None:
            self.tokenizer.no_truncation()
        else:
            self.tokenizer.enable_truncation(max_length)
        # model2vec cuts the characters before tokenizing (max_length x the median token length)
        tokens = [t for t, _ in sorted(self.tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda x: x[1])]
        self._char_limit = None if max_length is None else max_length * int(np.median([len(t) for t in tokens]))
        unk = getattr(self.tokenizer.model, "unk_token", None)
        self._unk = self.tokenizer.token_to_id(unk) if unk is not None else None
        self._fast = self._bert_uncased()
        self._wordpiece = self.tokenizer.model
        self._pieces: dict[str, list[int]] = {}
        # special tokens ("[UNK]", "[CLS]", ...) are matched in the raw text before normalizing
        self._added = [a["content"].lower() for a in json.loads(self.tokenizer.to_str()).get("added_tokens", [])]
        self.encoded = 0  # texts encoded, for reports (same counter as Embedder)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def name(self) -> str:
        return f"{self.base_model}-static{self.dim}"

    # -- building and storage -----------------------------------------------------------------
    @classmethod
    def distill(cls, dims: int = 128) -> "StaticEmbedder":
        """Distill the local all-MiniLM-L6-v2 (offline; needs torch and model2vec, seconds to minutes)."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from model2vec.distill import distill

        m = distill(model_path(), pca_dims=dims)
        return cls(np.asarray(m.embedding), m.tokenizer, max_length=m.max_length)

    def save(self, directory: Path, prefix: str = "static") -> list[str]:
        """Write ``<prefix>.npy``, ``<prefix>.tokenizer.json``, ``<prefix>.json``; returns the file names."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        import io

        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(self.stored.astype(np.float16)), allow_pickle=False)
        meta = {"format": FORMAT, "base_model": self.base_model, "dims": self.dim, "tokens": len(self.vectors),
                "max_length": self.max_length}
        files = {f"{prefix}.npy": buf.getvalue(),
                 f"{prefix}.tokenizer.json": self.tokenizer.to_str().encode("utf-8"),
                 f"{prefix}.json": json.dumps(meta, indent=1).encode("utf-8")}
        for fname, data in files.items():
            _atomic_write(directory / fname, data)
        return list(files)

    @classmethod
    def load(cls, directory: Path, prefix: str = "static") -> "StaticEmbedder":
        """Read what ``save`` wrote; imports neither torch nor model2vec."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / f"{prefix}.json").read_text("utf-8"))
            vectors = np.load(directory / f"{prefix}.npy", allow_pickle=False)
            tokenizer = Tokenizer.from_file(str(directory / f"{prefix}.tokenizer.json"))
        except FileNotFoundError as e:
            raise StaticEmbedderError(f"static embedder file missing: {e.filename}") from None
        except Exception as e:  # numpy raises ValueError/OSError, tokenizers a bare Exception
            raise StaticEmbedderError(f"static embedder in {directory} is unreadable: {type(e).__name__}: {e}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StaticEmbedderError(f"{prefix}.json: unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}")
        if vectors.ndim != 2 or vectors.shape != (meta.get("tokens"), meta.get("dims")):
            raise StaticEmbedderError(f"{prefix}.npy has shape {vectors.shape}, "
                                      f"{prefix}.json says ({meta.get('tokens')}, {meta.get('dims')})")
        max_length = meta.get("max_length")
        if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1):
            raise StaticEmbedderError(f"{prefix}.json: max_length must be a positive integer or null, got {max_length!r}")
        return cls(vectors, tokenizer, max_length=max_length, base_model=str(meta.get("base_model", MODEL_NAME)))

    # -- encoding -----------------------------------------------------------------------------
    def _bert_uncased(self) -> bool:
        """Whether the ASCII fast path below reproduces this tokenizer exactly."""
        d = json.loads(self.tokenizer.to_str())
        norm, pre, model = d.get("normalizer") or {}, d.get("pre_tokenizer") or {}, d.get("model") or {}
        return (norm.get("type") == "BertNormalizer" and norm.get("lowercase") is True
                and norm.get("clean_text") is True and norm.get("strip_accents") in (None, True)
                and pre.get("type") == "BertPreTokenizer" and model.get("type") == "WordPiece")

    def _ids(self, text: str) -> list[int]:
        """Token ids as the tokenizer gives them, truncated, unknown tokens dropped."""
        if self._char_limit is not None:
            text = text[:self._char_limit]
        low = text.lower()
        if (self._fast and (low.isascii() or low.replace("\u2026", "").isascii())
                and not any(a in low for a in self._added)):
            # BERT uncased on ASCII (plus the "…" that embed_text puts in paths) is: drop control
            # characters, lowercase, split on whitespace and on each punctuation character, then
            # WordPiece per word; words repeat a lot, so their pieces are memoized. Three times faster
            # than a call into the tokenizer, which pays for offsets and alignment we do not use.
            ids: list[int] = []
            pieces = self._pieces
            for w in _WORD.findall(low.translate(_CONTROL)):
                p = pieces.get(w)
                if p is None:
                    if len(pieces) >= _MAX_PIECES:
                        pieces.clear()  # bounded: a stream of never-seen words must not grow it
                    p = pieces[w] = [t.id for t in self._wordpiece.tokenize(w)]
                ids += p
        else:
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if self.max_length is not None and len(ids) > self.max_length:
            ids = ids[:self.max_length]
        if self._unk is not None and self._unk in ids:
            ids = [i for i in ids if i != self._unk]
        return ids

    def encode_one(self, text: str) -> np.ndarray:
        """(dim,) float32, L2-normalized (zeros for a text with no known token)."""
        ids = self._ids(text)
        self.encoded += 1
        if not ids:
            return np.zeros(self.dim, np.float32)
        v = self.vectors[ids].sum(axis=0)
        return v / (np.sqrt(v @ v) + np.float32(1e-32))  # the mean's length divides out

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(n, dim) float32, L2-normalized; ``progress`` is accepted for Embedder parity (encoding is fast)."""
        n = len(texts)
        if n == 1:
            return self.encode_one(texts[0])[None, :]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        from scipy.sparse import csr_matrix

        ids = [self._ids(t) for t in texts]
        lengths = np.fromiter(map(len, ids), np.int64, n)
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.int64, int(indptr[-1]))
        # the per-text sums as one sparse (texts x tokens) product: no (tokens x dim) temporary
        counts = csr_matrix((np.ones(len(flat), np.float32), flat, indptr), shape=(n, len(self.vectors)))
        out = np.asarray(counts @ self.vectors, dtype=np.float32)
        out /= np.linalg.norm(out, axis=1, keepdims=True) + np.float32(1e-32)
        self.encoded += n
        return out

    def flush(self) -> None:
        """Nothing to write (no disk cache); here so it can stand in for ``Embedder``."""
