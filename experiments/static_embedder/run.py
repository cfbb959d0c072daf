"""Static embedder vs MiniLM: distillation cost, size, encode cost per text, similarity agreement (see README.md).

Run: .venv/bin/python experiments/static_embedder/run.py   (writes results.md and results.json here)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCES = ["PackmindHub__context-evaluator", "EntityProcess__agentv/codex"]  # the tests' small slice
N_BATCH = 1000   # texts encoded as one batch by each embedder
N_SINGLE = 300   # texts encoded one call at a time
N_SIM = 1000     # texts whose pairwise cosines are compared


def call_texts() -> list[str]:
    from toollat.core.call import calls_from_frame
    from toollat.features.text import embed_text
    from toollat.ingest import ingest
    from toollat.paths import corpus_dir

    calls = ingest([corpus_dir() / s for s in SOURCES]).to_pandas()
    texts = sorted({embed_text(c.tool, c.args) for c in calls_from_frame(calls)})
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))]


def per_text_us(fn, texts: list[str], single: bool, repeats: int = 3) -> float:
    """Best of ``repeats`` (other work shares the machine), microseconds per text."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        if single:
            for x in texts:
                fn([x])
        else:
            fn(texts)
        best = min(best, time.perf_counter() - t)
    return best / len(texts) * 1e6


def fresh_load(directory: Path) -> dict:
    code = ("import sys, time; t = time.perf_counter()\n"
            "from toollat.features.static_embed import StaticEmbedder\n"
            f"e = StaticEmbedder.load({str(directory)!r}); e.encode(['Bash: ls -la'])\n"
            "print(time.perf_counter() - t, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"load_and_first_encode_s": float(out[0]), "torch_imported": out[1] == "True"}


def agreement(a: np.ndarray, b: np.ndarray, k: int = 10) -> dict:
    from scipy.stats import spearmanr

    sa, sb = a @ a.T, b @ b.T
    iu = np.triu_indices(len(a), 1)
    np.fill_diagonal(sa, -2)
    np.fill_diagonal(sb, -2)
    na, nb = np.argsort(-sa, axis=1)[:, :k], np.argsort(-sb, axis=1)[:, :k]
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb)])
    return {"spearman_pairwise_cosine": float(spearmanr(sa[iu], sb[iu]).statistic),
            "pearson_pairwise_cosine": float(np.corrcoef(sa[iu], sb[iu])[0, 1]),
            f"top{k}_neighbour_overlap": float(overlap)}


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from model2vec import StaticModel

    from toollat.features.embed import Embedder
    from toollat.features.static_embed import StaticEmbedder

    texts = call_texts()
    res: dict = {"texts_available": len(texts), "mean_chars": float(np.mean([len(t) for t in texts]))}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        static = StaticEmbedder.distill(dims=128)
        res["distill_s"] = time.perf_counter() - t
        files = static.save(tmp / "static")
        res["files"] = {f: (tmp / "static" / f).stat().st_size for f in files}
        res["size_mb"] = sum(res["files"].values()) / 1e6
        res["fresh_process"] = fresh_load(tmp / "static")

        # model2vec's own encode on the same float16 vectors and tokenizer: the baseline it replaces
        m2v = StaticModel(vectors=static.stored, tokenizer=static.tokenizer, max_length=static.max_length,
                          normalize=True)
        minilm = Embedder(tmp / "cache", threads=2)     # empty cache: every text is encoded (cold)
        minilm.model()                                  # loading is not encoding
        batch, single = texts[:N_BATCH], texts[N_BATCH:N_BATCH + N_SINGLE]
        cost = {
            "static": {"batch_us": per_text_us(static.encode, batch, False),
                       "single_us": per_text_us(static.encode, single, True)},
            "model2vec_encode": {"batch_us": per_text_us(m2v.encode, batch, False),
                                 "single_us": per_text_us(m2v.encode, single, True)},
            # MiniLM once (a second pass would hit its cache)
            "minilm_cold": {"batch_us": per_text_us(minilm.encode, batch, False, repeats=1),
                            "single_us": per_text_us(minilm.encode, single, True, repeats=1)},
        }
        res["cost"] = cost
        sim = texts[:N_SIM]
        res["agreement"] = agreement(static.encode(sim), minilm.encode(sim))
        res["agreement"]["texts"] = len(sim)
        ref = StaticModel(vectors=static.vectors, tokenizer=static.tokenizer, max_length=static.max_length,
                          normalize=True).encode(batch)
        res["max_abs_diff_vs_model2vec_float32"] = float(np.abs(static.encode(batch) - ref).max())

    (HERE / "results.json").write_text(json.dumps(res, indent=1))
    c = res["cost"]
    lines = [
        "# Static embedder vs MiniLM: results", "",
        f"Written by `run.py` ({time.strftime('%Y-%m-%d %H:%M')}; 2 shared cores, other work running: "
        "costs are the best of 3 passes, MiniLM of 1 since a second pass would hit its cache).", "",
        f"- Distillation (model2vec, local all-MiniLM-L6-v2, 128 dims): **{res['distill_s']:.1f} s**",
        f"- Stored size: **{res['size_mb']:.2f} MB** ({', '.join(f'{k} {v / 1e6:.2f} MB' for k, v in res['files'].items())})",
        f"- Fresh process, import + load + first encode: **{res['fresh_process']['load_and_first_encode_s']:.2f} s**, "
        f"torch imported: **{res['fresh_process']['torch_imported']}**",
        f"- Same vectors as model2vec's encode (float32 vectors): max abs difference "
        f"{res['max_abs_diff_vs_model2vec_float32']:.1e} on {N_BATCH} texts", "",
        f"Encode cost per text, {len(texts)} distinct real call texts of the small slice "
        f"(mean {res['mean_chars']:.0f} characters): batch = {N_BATCH} texts in one call, single = "
        f"{N_SINGLE} texts one call each; MiniLM cold (empty cache, 2 threads).", "",
        "| embedder | batch µs/text | single µs/text | batch vs MiniLM | single vs MiniLM |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, v in c.items():
        lines.append(f"| {name} | {v['batch_us']:.1f} | {v['single_us']:.1f} | "
                     f"{c['minilm_cold']['batch_us'] / v['batch_us']:.0f}x faster | "
                     f"{c['minilm_cold']['single_us'] / v['single_us']:.0f}x faster |")
    s, m = c["static"], c["model2vec_encode"]
    a = res["agreement"]
    lines += [
        "", f"Static vs model2vec's own encode in the same process: batch {m['batch_us'] / s['batch_us']:.1f}x, "
        f"single {m['single_us'] / s['single_us']:.1f}x faster.", "",
        f"Similarity agreement with MiniLM on {a['texts']} texts ({a['texts'] * (a['texts'] - 1) // 2:,} pairs):",
        f"- Spearman rank correlation of pairwise cosines: **{a['spearman_pairwise_cosine']:.3f}** "
        f"(Pearson {a['pearson_pairwise_cosine']:.3f})",
        f"- Top-10 nearest neighbours shared with MiniLM's: **{a['top10_neighbour_overlap']:.1%}**", "",
    ]
    (HERE / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
