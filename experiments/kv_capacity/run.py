"""KV capacity study: the shared-pool replay on held-out sessions of the shared corpus (README.md).

    .venv/bin/python experiments/kv_capacity/run.py      # writes results.md, results.json, the plot
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from toollat.config import compose
from toollat.estimator import ToolLatencyModel
from toollat.evaluation.splits import session_test_mask
from toollat.features.embed import Embedder
from toollat.ingest import load_calls
from toollat.jsonio import dumps
from toollat.paths import corpus_dir
from toollat.predictor import Predictor
from toollat.simulation.pool import plot_pools, replay_bundle

HERE = Path(__file__).resolve().parent
CONCURRENCY = (16, 64)        # 16: the command's default; 64: a busier engine
TEST_FRACTION, SEED = 0.2, 0


def fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def main() -> None:
    started = time.perf_counter()
    cfg = compose(["+exp=all_tools"])
    df, _ = load_calls([corpus_dir()])
    test = session_test_mask(df["session_id"], TEST_FRACTION, SEED)
    train, held = df[~test].reset_index(drop=True), df[test].reset_index(drop=True)
    model = ToolLatencyModel.from_config(cfg, Embedder(Path(cfg["paths"]["cache"]))).fit(train)
    predictor = Predictor(model)
    results = {}
    for k in CONCURRENCY:
        r = replay_bundle(predictor, held, concurrency=k)
        plot_pools(r, HERE / f"hit_rate_vs_pool_k{k}.png")
        results[k] = r
    host = replay_bundle(predictor, held, concurrency=CONCURRENCY[-1],
                         host_tokens=2 * int(results[CONCURRENCY[-1]].data["peak_demand_tokens"] * 0.2))
    out = {f"k{k}": r.to_dict() for k, r in results.items()}
    out["host_tier"] = host.to_dict()
    (HERE / "results.json").write_text(dumps(out))

    lines = ["# KV capacity: results", "",
             f"Held-out sessions of the shared corpus ({held.session_id.nunique()} sessions, {len(held):,} calls); "
             f"model trained on the other {train.session_id.nunique()} sessions ({len(train):,} calls). "
             f"Written by `experiments/kv_capacity/run.py` in {time.perf_counter() - started:.0f} s.", ""]
    for k, r in list(results.items()) + [("host", host)]:
        h, d = r.headline, r.data
        title = (f"## concurrency {k}" if k != "host" else
                 f"## concurrency {CONCURRENCY[-1]}, host tier {r.host_tokens:,.0f} tokens (GPU+host hit rate in brackets)")
        lines += [title, "",
                  f"{d['pauses']:,} pauses, peak demand {d['peak_demand_tokens']:,.0f} tokens. "
                  f"gap_closed_vs_lru: toollat **{fmt(h.get('gap_closed_vs_lru'))}**, per_tool "
                  f"**{fmt(h.get('gap_closed_vs_lru_per_tool'))}** (pools where Belady beats LRU by >= 0.02: "
                  f"{h.get('pools_where_belady_beats_lru')}); toollat at or above per_tool at every pool: "
                  f"{h.get('toollat_at_or_above_per_tool_everywhere')}.", "",
                  "| policy | " + " | ".join(f"{n:,}" for n in r.pools) + " |",
                  "|---|" + "---:|" * len(r.pools)]
        for name, rows in r.policies.items():
            cells = []
            for x in rows:
                c = fmt(x["hit_rate"])
                if k == "host":
                    c += f" ({fmt((x['hit_rate'] or 0) + (x['host_hit_rate'] or 0))})"
                cells.append(c)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        amp = {n: fmt(rows[len(rows) // 2]["prefill_amplification"]) for n, rows in r.policies.items()}
        lines += ["", f"Prefill amplification at the middle pool ({r.pools[len(r.pools) // 2]:,}): {amp}", ""]
    if CONCURRENCY[-1] in results:
        lines += [f"Plots: {', '.join(f'`hit_rate_vs_pool_k{c}.png`' for c in CONCURRENCY)}.", ""]
    (HERE / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
