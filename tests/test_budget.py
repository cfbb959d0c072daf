"""Everything a serving process grows from client input stays within one memory budget, in
bytes (toollat/budget.py): per store, in total, and the byte counts are upper bounds of what
CPython really allocates (checked with tracemalloc)."""
from __future__ import annotations

import gc
import tracemalloc
from dataclasses import asdict, fields

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import small_config
from toollat.budget import MemoryBudget
from toollat.config import compose
from toollat.estimator import ToolLatencyModel
from toollat.features.context import HistoryKeys, SessionHistory
from toollat.features.pipeline import FeatureConfig
from toollat.paths import REPO_ROOT
from toollat.predictor import Predictor
from toollat.serving import ServerLimits, ServingConfig

# the history features without any text model: these tests fill stores, not the embedding cache
NO_TEXT = {"embeddings": False, "memory": False}
SMALL = MemoryBudget(budget_mb=4, session_kib=64)    # sessions 2 MiB, pending / projects 0.4 MiB


@pytest.fixture(scope="module")
def model(small_split):
    cfg = small_config()
    cfg["features"] = {**cfg["features"], **NO_TEXT}
    return ToolLatencyModel.from_config(cfg).fit(small_split[0])


def traced(fn) -> int:
    """Bytes that stay allocated after ``fn()`` (what it grew), by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_code_defaults_are_the_conf_files():
    """An installed server (no conf/ beside it) and a Predictor made in Python use these values."""
    assert ServingConfig.load(REPO_ROOT / "conf" / "serving" / "default.yaml") == ServingConfig(MemoryBudget(), ServerLimits())
    feats = compose([])["features"]   # the features group's defaults are FeatureConfig's (toollat/config.py)
    assert feats["max_arg_chars"] == FeatureConfig().max_arg_chars
    assert {f.name for f in fields(ServerLimits)} == set(OmegaConf.load(REPO_ROOT / "conf/serving/default.yaml").limits)


def test_bad_budgets_are_refused():
    for bad in ({"budget_mb": 0}, {"shares": {"sessions": 1.0}}, {"session_kib": 0},
                {"shares": {**asdict(MemoryBudget())["shares"], "sessions": 0.9}},
                {"budget_mb": 1, "session_kib": 1024}):   # one session larger than the sessions' share
        with pytest.raises(ValueError):
            MemoryBudget(**bad)
    with pytest.raises(ValueError, match="unknown"):
        ServingConfig.from_dict({"limits": {"max_bodyy_bytes": 5}})


def test_session_bytes_are_an_upper_bound_of_what_it_allocates():
    """Every kind of entry a session holds, with long and non-ASCII keys: tracemalloc <= nbytes."""
    from toollat.core.call import Call

    hists = []

    def fill():
        for s in range(20):
            h = SessionHistory()
            for i in range(400):
                tool = f"Tool{i % 150}é" if i % 3 else "Bash"
                keys = HistoryKeys(("tool", tool), ("fam", "shell"), ("prog", f"prog{i % 40}"),
                                   ("sub", f"prog{i % 40} sub{i % 7}"), ("cmd", f"Bash\x1f{'x' * (i % 90)} ✓ {i}"))
                call = Call(tool=tool, args={}, family="shell", call_id=f"call-{s}-{i}", parallel_group=f"g{i // 3}",
                            poll_of=f"call-{s}-{i - 1}" if i % 5 == 0 else None, turn_started_ms=float(i // 10))
                h.emit(call, keys, float(i), 0.5)
                if i % 4:  # a quarter of the results never come (pending entries stay)
                    h.observe(keys, 10.0 * i, i % 9 == 0, at_ms=float(i) + 1, call_id=call.call_id, expected=0.3)
            hists.append(h)

    grew = traced(fill)
    accounted = sum(h.nbytes for h in hists)
    assert grew <= accounted, (grew, accounted)
    assert accounted < 3 * grew, "the bound should not be wildly loose either"


def test_a_million_tool_names_into_one_session_stay_under_its_bound(model):
    p = Predictor(model)
    for i in range(1_000_000):
        p.observe(session_id="one", tool=f"T{i}", latency_ms=5)
    usage = p.memory_usage()
    hist = p._sessions["one"]
    assert hist.nbytes <= p.memory.session_bytes
    assert usage["stores"]["sessions"]["bytes"] <= p.memory.session_bytes + 4096
    assert 1000 < len(hist.stats) < 10_000          # it learned tools until full, then kept what it had
    assert p.observe(session_id="one", tool="T5", latency_ms=50)   # known tools still update


def test_tool_name_flood_really_allocates_less_than_the_bound(model):
    """The same, measured: without the byte bound this session would allocate ~25 MB."""
    p = Predictor(model, memory=SMALL)
    grew = traced(lambda: [p.observe(session_id="one", tool=f"T{i}", latency_ms=5) for i in range(50_000)])
    assert p.counts["evicted_sessions"] == 0, "the session stopped growing itself, it was not evicted"
    assert grew <= SMALL.session_bytes + 64 * 1024, grew


def test_many_sessions_are_evicted_lru_and_the_total_stays_under_budget(model):
    p = Predictor(model, memory=SMALL)
    bound = SMALL.bound("sessions")

    def serve():
        for s in range(800):
            p.predict_batch([{"tool": "Bash", "args": {"command": f"make target{i % 5}"}, "session_id": f"s{s}",
                              "call_id": f"s{s}-c{i}"} for i in range(8)])
            for i in range(8):
                p.observe(call_id=f"s{s}-c{i}", latency_ms=100.0 + i)
            if s % 10 == 0:   # the first session stays in use: least recently used goes first, not oldest
                p.predict({"tool": "Read", "args": {"file_path": "a.py"}, "session_id": "s0"})
                assert p.memory_usage()["stores"]["sessions"]["bytes"] <= bound

    grew = traced(serve)
    usage = p.memory_usage()
    assert usage["stores"]["sessions"]["bytes"] <= bound and usage["bytes"] <= SMALL.budget_bytes
    assert p.counts["evicted_sessions"] > 400 and "s0" in p._sessions and "s1" not in p._sessions
    assert grew <= usage["bytes"], (grew, usage)   # the accounting bounds what was really kept


def test_an_evicted_session_seen_again_starts_fresh(model):
    p = Predictor(model, memory=SMALL)
    call = {"tool": "Bash", "args": {"command": "cargo build"}, "session_id": "a"}
    p.predict({**call, "call_id": "a1"})
    p.predict({**call, "call_id": "a2"})      # awaiting its result while the session is evicted
    p.observe(call_id="a1", latency_ms=400_000)
    slow = p.predict({**call, "call_id": "a3"})
    for s in range(0, 3000, 100):              # push "a" out
        p.predict_batch([{"tool": "Grep", "args": {"pattern": "x"}, "session_id": f"other{s + i}"} for i in range(100)])
    assert "a" not in p._sessions
    assert p.observe(call_id="a2", latency_ms=10.0)    # its result arrives: no error, a new history
    again = p.predict({**call, "call_id": "a4"})
    hist = p._sessions["a"]
    assert hist.n_emitted == 1 and hist.stats[("tool", "Bash")][0] == 1   # only what came after
    assert again.p50_ms < slow.p50_ms / 3


def test_pending_calls_are_bounded_in_bytes(model):
    p = Predictor(model, memory=SMALL)
    for start in range(0, 5000, 500):  # results that never come, with long ids
        p.predict_batch([{"tool": "Bash", "args": {"command": "ls"}, "call_id": f"{i:0>150}"}
                         for i in range(start, start + 500)])
    pending = p.memory_usage()["stores"]["pending"]
    assert pending["bytes"] <= SMALL.bound("pending") and 0 < pending["entries"] < 5000


def test_project_stores_are_bounded_in_bytes(small_split):
    cfg = small_config()
    cfg["features"] = {**cfg["features"], **NO_TEXT, "project": True}
    proj = ToolLatencyModel.from_config(cfg).fit(small_split[0])
    p = Predictor(proj, memory=SMALL)
    for start in range(0, 6000, 200):
        p.predict_batch([{"tool": "Bash", "args": {"command": f"./build.sh --variant {i} " + "v" * 200},
                          "project": f"proj{i % 300}", "session_id": f"s{i % 50}", "call_id": f"c{i}"}
                         for i in range(start, start + 200)])
        for i in range(start, start + 200):
            p.observe(call_id=f"c{i}", latency_ms=1000.0)
    store = p.memory_usage()["stores"]["projects"]
    assert 0 < store["bytes"] <= SMALL.bound("projects") and store["entries"] < 300


def test_feature_and_embedding_caches_are_bounded_in_bytes(small_bundle, embedder):
    """Distinct texts each through MiniLM: both caches stop at their share."""
    budget = MemoryBudget(budget_mb=0.5, session_kib=32)
    p = Predictor(ToolLatencyModel.load(small_bundle, embedder), memory=budget)
    try:
        for i in range(150):
            p.predict({"tool": "Bash", "args": {"command": f"pytest tests/test_budget_{i}.py -k case_{i}"}})
        stores = p.memory_usage()["stores"]
        for name in ("feature_cache", "embedding_cache"):
            assert 0 < stores[name]["bytes"] <= budget.bound(name), (name, stores[name])
            assert stores[name]["entries"] < 150
        cache = embedder._cache
        assert all(v.base is None for v in list(cache.values())[-20:]), "a cached vector must not be a view"
    finally:
        Predictor(ToolLatencyModel.load(small_bundle, embedder))   # the shared embedder back to the default bound


def test_model_info_reports_the_budget(model):
    info = Predictor(model).model_info()["memory"]
    assert info["budget_bytes"] == 512 * 2**20
    assert set(info["stores"]) == {"sessions", "pending", "projects", "feature_cache", "embedding_cache"}
    assert sum(s["bound_bytes"] for s in info["stores"].values()) <= info["budget_bytes"]
    assert all(s["bytes"] >= 0 and s["entries"] >= 0 for s in info["stores"].values())
    assert np.isclose(sum(MemoryBudget().shares.values()), 1.0)


def test_vectors_not_yet_written_count_against_the_embedding_bound(tmp_path):
    """A server's new vectors wait for a shard of ``flush_every``; they are held in memory too."""
    from toollat.features.embed import Embedder

    e = Embedder(tmp_path, flush_every=1000)
    e.encode([f"Bash: make target{i}" for i in range(60)])
    assert e.memory_usage()[1] == 120          # cached, and waiting to be written
    e.bound_memory(20 * Embedder.ENTRY_BYTES)
    assert e.memory_usage()[0] <= 20 * Embedder.ENTRY_BYTES
    assert len(list((tmp_path / "embeddings").rglob("shard-*.npz"))) == 1   # written, not dropped


def test_byte_lru_keeps_its_bounds_and_evicts_least_recently_used_first():
    from toollat.budget import ODICT_SLOT, ByteLRU

    gone = []
    lru = ByteLRU(4 * ODICT_SLOT + 500, lambda k, v: v[0], max_entries=3, keep=1, on_evict=lambda k, v: gone.append(k))
    for k in "abc":
        lru.put(k, [100])
    assert lru.get("a") == [100]                    # a is now the most recently used
    lru.put("d", [100])                             # 4 entries > 3: b, the least recently used, goes
    assert gone == ["b"] and list(lru) == ["c", "a", "d"]
    lru.put("c", [200])                             # replaced in place: 400 bytes of entries
    assert list(lru) == ["c", "a", "d"] and lru.nbytes == 400 + 4 * ODICT_SLOT
    a = lru.peek("a")
    a[0] += 150                                     # an entry grows in place and says so
    lru.grew("a", 150)                              # 550 + 4 slots > the bound: c goes
    assert gone == ["b", "c"] and lru.usage() == (ODICT_SLOT * 4 + 350, 2)
    assert lru.pop("a") == [250] and lru.nbytes == 100 + 4 * ODICT_SLOT and lru.pop("a") is None
    lru.put("huge", [10_000])                       # larger than the bound alone: kept (keep=1), d goes
    assert list(lru) == ["huge"] and gone[-1] == "d"
    lru.clear()
    assert lru.usage() == (0, 0)
