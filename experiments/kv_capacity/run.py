"""KV capacity study: the shared-pool replay on held-out sessions of the shared corpus (README.md).

    .venv/bin/python experiments/kv_capacity/run.py           # writes results.md, results.json, the plots
    .venv/bin/python experiments/kv_capacity/run.py --quick   # one session order, the host-tier table only

The model is trained on the other sessions (``+exp=all_tools features=static``) and cached in
``out/model`` with the fingerprint of what it was trained on; a rerun reuses it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from toollat import __version__
from toollat.config import compose
from toollat.estimator import ToolLatencyModel
from toollat.evaluation.splits import session_test_mask
from toollat.features.embed import Embedder
from toollat.ingest import load_calls
from toollat.jsonio import dumps
from toollat.paths import corpus_dir
from toollat.predictor import Predictor
from toollat.simulation.pool import DEFAULT_POOL_FRACTIONS, PoolResult, plot_pools, replay_bundle, stall_gap_closed
from toollat.simulation.resume import PoolConfig

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"                     # the cached model (git-ignored)
OVERRIDES = ["+exp=all_tools", "features=static"]
TEST_FRACTION, SEED = 0.2, 0
ORDERS = (None, 1, 2)                  # session orders: by first event, then two random ones
GPU_ONLY_K = (16, 64)                  # the earlier study's GPU-only runs, at its pools
STRESS_HOST_RATIO = 0.5                # a host tier under pressure: half the GPU pool


def fmt(v, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def ms(v) -> str:
    return "n/a" if v is None else f"{1000 * v:.2f}"


def model_for(train) -> tuple[Predictor, dict]:
    """The held-out model: from ``out/model`` if its fingerprint matches, else trained and cached."""
    sessions = hashlib.sha256("\n".join(sorted(map(str, train["session_id"].unique()))).encode()).hexdigest()
    key = {"overrides": OVERRIDES, "test_fraction": TEST_FRACTION, "seed": SEED, "train_sessions_sha256": sessions,
           "train_calls": int(len(train)), "toollat": __version__}
    cfg = compose(OVERRIDES)
    stamp = OUT / "model.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        try:
            t0 = time.perf_counter()
            model = ToolLatencyModel.load(OUT / "model", Embedder(Path(cfg["paths"]["cache"])))
            return Predictor(model), {"cached": True, "load_s": time.perf_counter() - t0,
                                      **json.loads(stamp.read_text()).get("info", {})}
        except Exception as e:  # a stale or broken cache is rebuilt, and said so
            print(f"cached model unusable ({e}); training again", file=sys.stderr)
    t0 = time.perf_counter()
    model = ToolLatencyModel.from_config(cfg, Embedder(Path(cfg["paths"]["cache"]))).fit(train)
    fit_s = time.perf_counter() - t0
    if (OUT / "model").exists():
        shutil.rmtree(OUT / "model")
    OUT.mkdir(parents=True, exist_ok=True)
    model.save(OUT / "model", {"data": {"calls": int(len(train))}})
    info = {"fit_s": fit_s}
    stamp.write_text(json.dumps({"key": key, "info": info}, indent=1))
    return Predictor(model), {"cached": False, **info}


def table(r: PoolResult, cols: list[tuple[str, str]]) -> list[str]:
    """Rows: policies; columns: pools; cells: the given metrics (formatter name -> key)."""
    lines = ["| policy | " + " | ".join(f"{n:,}" for n in r.pools) + " |", "|---|" + "---:|" * len(r.pools)]
    for name, rows in r.policies.items():
        cells = []
        for x in rows:
            parts = []
            for kind, k in cols:
                v = x.get(k)
                parts.append(ms(v) if kind == "ms" else fmt(v, 4) if kind == "rate" else fmt(v))
            cells.append(" / ".join(parts))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def spread(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    return f"{np.mean(vals):.3f} (min {min(vals):.3f}, max {max(vals):.3f})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one session order and the host-tier table only")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    config = PoolConfig.load()
    df, _ = load_calls([corpus_dir()])
    test = session_test_mask(df["session_id"], TEST_FRACTION, SEED)
    train, held = df[~test].reset_index(drop=True), df[test].reset_index(drop=True)
    predictor, minfo = model_for(train)
    model_s = time.perf_counter() - started

    orders = ORDERS[:1] if args.quick else ORDERS
    host_runs = {o: replay_bundle(predictor, held, config, order_seed=o, analysis=True) for o in orders}
    main_run = host_runs[ORDERS[0]]
    out = {"config": config.to_dict(), "model": minfo, "host_tier": {str(o): r.to_dict() for o, r in host_runs.items()}}
    stress = gpu_only = None
    if not args.quick:
        plot_pools(main_run, HERE / "stall_vs_pool.png")
        stress = replay_bundle(predictor, held, config.with_overrides(host_ratio=STRESS_HOST_RATIO), order_seed=ORDERS[0])
        out["host_under_pressure"] = stress.to_dict()
        gpu_only = {}
        for k in GPU_ONLY_K:
            gpu_only[k] = replay_bundle(predictor, held, config.with_overrides(concurrency=k),
                                        pool_fractions=DEFAULT_POOL_FRACTIONS, host_tokens=0)
            plot_pools(gpu_only[k], HERE / f"hit_rate_vs_pool_k{k}.png")
            out[f"gpu_only_k{k}"] = gpu_only[k].to_dict()
    previous = json.loads((HERE / "results.json").read_text()) if (HERE / "results.json").is_file() else {}
    if not args.quick:
        (HERE / "results.json").write_text(dumps(out))

    res = config.resume
    h = main_run.headline
    d = main_run.data
    fitted = " (cached in out/model)" if minfo["cached"] else f", fitted in {minfo['fit_s']:.0f} s"
    lines = ["# KV capacity: results", "",
             f"Held-out sessions of the shared corpus ({held.session_id.nunique()} sessions, {len(held):,} calls); "
             f"model `{' '.join(OVERRIDES)}` trained on the other {train.session_id.nunique()} sessions "
             f"({len(train):,} calls){fitted}. "
             f"Written by `experiments/kv_capacity/run.py{' --quick' if args.quick else ''}` in "
             f"{time.perf_counter() - started:.0f} s ({model_s:.0f} s of it loading the corpus and the model).", "",
             f"Resume costs (`conf/pool/default.yaml`): {res.gpu}, {res.model}; KV {res.kv_bytes_per_token:,.0f} bytes/token, "
             f"host link {res.host_gb_s:g} GB/s = {res.host_tokens_per_s:,.0f} tokens/s, prefill {res.prefill_tokens_per_s:,.0f} "
             f"tokens/s; source {res.source}.", "",
             f"## With a host tier: concurrency {config.concurrency}, GPU pools at live KV / {list(config.live_over_pool)}, "
             f"host tier {config.host_ratio:g} x the pool", "",
             f"{d['pauses']:,} pauses; live KV {d['live_kv_tokens']:,.0f} tokens (peak {d['peak_demand_tokens']:,.0f}). "
             f"Middle pool {h.get('middle_pool', 0):,} tokens. Session order: by first event.", "",
             f"**stall_gap_closed** (lru+host -> oracle, mean resume stall at the middle pool): toollat "
             f"**{fmt(h.get('stall_gap_closed'))}**, per_tool **{fmt(h.get('stall_gap_closed_per_tool'))}**. "
             f"toollat's GPU+host hit rate at or above lru+host's at every pool: "
             f"{h.get('toollat_gpu_host_hit_at_or_above_lru_host_everywhere')}.", "",
             "Mean / p95 resume stall (ms) per policy and GPU pool (tokens):", ""]
    lines += table(main_run, [("ms", "stall_mean_s"), ("ms", "stall_p95_s")])
    lines += ["", "GPU hit rate / GPU+host hit rate:", ""]
    lines += table(main_run, [("rate", "hit_rate"), ("rate", "gpu_host_hit_rate")])
    mid = len(main_run.pools) // 2
    lines += ["", f"At the middle pool ({main_run.pools[mid]:,} tokens): re-prefilled tokens, host traffic (tokens), "
              "prefetches (late), wasted prefetch (GPU token-seconds), stall by kind of pause (s):", "",
              "| policy | re-prefilled | host traffic | prefetches (late) | wasted prefetch | stall tool / human / idle |",
              "|---|---:|---:|---:|---:|---|"]
    for name, rows in main_run.policies.items():
        x = rows[mid]
        kinds = x.get("stall_total_s_by_kind") or {}
        lines.append(f"| {name} | {x['reprefill_tokens']:,.0f} | {x['host_traffic_tokens']:,.0f} | {x['prefetches']:,} "
                     f"({x['prefetch_late']:,}) | {x['prefetch_wasted_token_s']:,.0f} | "
                     + " / ".join(f"{kinds.get(k, 0.0):.1f}" for k in ("tool", "human", "idle")) + " |")
    if len(host_runs) > 1:
        heads = [r.headline for r in host_runs.values()]
        lines += ["", f"### Over {len(host_runs)} session orders (first event; random seeds {list(orders[1:])})", "",
                  f"- stall_gap_closed toollat: {spread([x.get('stall_gap_closed') for x in heads])}",
                  f"- stall_gap_closed per_tool: {spread([x.get('stall_gap_closed_per_tool') for x in heads])}"]
        for name in ("lru+host", "continuum_ttl", "per_tool", "toollat", "toollat_priority", "exact_tools", "belady"):
            lines.append(f"- mean stall at the middle pool, {name} (ms): "
                         + spread([1000 * (x['stall_mean_s_middle'].get(name) or 0) for x in heads]))
        lines.append("- stall gap closed by exact_tools (every tool gap known; the bound for a per-call tool "
                     "predictor under these rules): " + spread([stall_gap_closed(r.policies, "exact_tools", len(r.pools) // 2)
                                                              for r in host_runs.values()]))
        lines.append("- toollat below lru+host and per_tool at the middle pool in every order: "
                     + str(all(x["stall_mean_s_middle"]["toollat"] < min(x["stall_mean_s_middle"]["lru+host"],
                                                                         x["stall_mean_s_middle"]["per_tool"]) for x in heads)))
        lines.append("- toollat's GPU+host hit rate at or above lru+host's at every pool in every order: "
                     + str(all(x.get("toollat_gpu_host_hit_at_or_above_lru_host_everywhere") for x in heads)))
    if stress is not None:
        hs = stress.headline
        lines += ["", f"## Host memory under pressure: host tier {STRESS_HOST_RATIO:g} x the pool (first-event order)", "",
                  f"stall_gap_closed toollat {fmt(hs.get('stall_gap_closed'))}, per_tool "
                  f"{fmt(hs.get('stall_gap_closed_per_tool'))}; toollat's GPU+host hit rate at or above lru+host's at "
                  f"every pool: {hs.get('toollat_gpu_host_hit_at_or_above_lru_host_everywhere')}.", "",
                  "GPU+host hit rate / mean resume stall (ms):", ""]
        lines += table(stress, [("rate", "gpu_host_hit_rate"), ("ms", "stall_mean_s")])
    if gpu_only:
        lines += ["", "## Without a host tier (the earlier study's runs: pools as fractions of the peak demand)", ""]
        for k, r in gpu_only.items():
            hk = r.headline
            same = _unchanged(previous.get(f"gpu_only_k{k}") or previous.get(f"k{k}"), r)
            lines += [f"### concurrency {k}", "",
                      f"{r.data['pauses']:,} pauses, peak demand {r.data['peak_demand_tokens']:,.0f} tokens. "
                      f"gap_closed_vs_lru: toollat **{fmt(hk.get('gap_closed_vs_lru'))}**, per_tool "
                      f"**{fmt(hk.get('gap_closed_vs_lru_per_tool'))}** (pools where Belady beats LRU by >= 0.02: "
                      f"{hk.get('pools_where_belady_beats_lru')}). lru, static_ttl and belady (model-free) equal to "
                      f"the previous results.json: {same}.", "", "GPU hit rate:", ""]
            lines += table(r, [("rate", "hit_rate")])
            lines.append("")
        lines.append(f"Plots: `stall_vs_pool.png` (host tier), "
                     + ", ".join(f"`hit_rate_vs_pool_k{k}.png`" for k in gpu_only) + " (GPU only).")
    text = "\n".join(lines) + "\n"
    if not args.quick:
        (HERE / "results.md").write_text(text)
    print(text)


def _unchanged(prev: dict | None, r: PoolResult) -> str:
    """Whether the model-free policies' hit rates equal a previous run's at the same pools."""
    if not prev or prev.get("pools") != r.pools:
        return "n/a (no previous run at these pools)"
    for name in ("lru", "static_ttl", "belady"):
        old, new = prev["policies"].get(name), r.policies.get(name)
        if old is None or new is None:
            continue
        if any(abs((a["hit_rate"] or 0) - (b["hit_rate"] or 0)) > 1e-12 for a, b in zip(old, new)):
            return f"False ({name} differs)"
    return "True"


if __name__ == "__main__":
    main()
