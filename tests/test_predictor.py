"""The Predictor in process: online features equal the training pipeline's, history, bounds, threads."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from toollat.estimator import ToolLatencyModel
from toollat.online import GLOBAL_PROJECT
from toollat.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(small_bundle, embedder):
    return Predictor(ToolLatencyModel.load(small_bundle, embedder))


def ms(ts) -> float:
    return (ts.value // 1000) / 1000.0


def as_request(row) -> dict:
    return {"tool": row.tool_name, "args": row.args, "call_id": row.call_id, "session_id": row.session_id,
            "agent": row.agent, "model": row.model, "permission_mode": row.permission_mode,
            "emitted_at": ms(row.emitted_at),
            "turn_started_at": None if row.turn_started_at is None or row.turn_started_at != row.turn_started_at else ms(row.turn_started_at),
            "prev_turn_ended_at": None if row.prev_turn_ended_at != row.prev_turn_ended_at else ms(row.prev_turn_ended_at),
            "turn_index": int(row.turn_index), "context_tokens": row.context_tokens if row.context_tokens == row.context_tokens else None,
            "parallel_group": row.parallel_group, "poll_of": row.poll_of}


def replay_online(p: Predictor, session_df):
    """Predict each call at its emission, observe each result once visible, in time order."""
    rows, events = {}, []
    df = session_df.reset_index(drop=True)
    last_emit = df.groupby("parallel_group")["emitted_at"].transform("max")
    for i, r in df.iterrows():
        e = ms(r.emitted_at)
        events.append((e, 0, i))
        events.append((max(e + r.wall_ms, ms(last_emit[i])), 1, i))
    for t, kind, i in sorted(events):
        r = df.iloc[i]
        if kind == 0:
            call = as_request(r)
            from toollat.core.call import Call

            c = Call.from_request(call)
            hist = p._session(c.session_id)
            proj = p._project(c.project or GLOBAL_PROJECT) if p._uses_projects else None   # as predict() does
            rows[i], _ = p.pipeline.online_row(c, hist, c.emitted_ms, proj)
            p.predict(call)
        else:
            p.observe(call_id=r.call_id, latency_ms=float(r.wall_ms), is_error=bool(r.is_error), at_ms=t)
    return np.stack([rows[i] for i in range(len(df))])


def test_online_features_equal_batch_features(predictor, small_split):
    """One pipeline: serving a session call by call gives the features evaluation computes."""
    _, test = small_split
    for sid in test["session_id"].drop_duplicates().head(3):
        s = test[test.session_id == sid].sort_values("seq").reset_index(drop=True)
        predictor.reset()
        online = replay_online(predictor, s)
        batch = predictor.pipeline.transform(s)
        assert np.allclose(online, batch, equal_nan=True, atol=1e-5), "online and batch features differ"


def test_history_changes_the_next_prediction(small_bundle, embedder):
    model = ToolLatencyModel.load(small_bundle, embedder)
    model.online = {"aci_step": 0.0}  # the session's history alone, without the per-family shifts it also moves
    predictor = Predictor(model)
    call = {"tool": "Bash", "args": {"command": "make integration-test"}, "session_id": "h1"}
    first = predictor.predict({**call, "call_id": "h1-a"})
    assert predictor.observe(call_id="h1-a", latency_ms=240_000)
    again = predictor.predict({**call, "call_id": "h1-b"})
    fresh = predictor.predict({**call, "session_id": "h2", "call_id": "h2-a"})
    assert again.p50_ms > 2 * first.p50_ms
    assert fresh.p50_ms == pytest.approx(first.p50_ms)
    assert predictor.observe(session_id="h1", tool="Bash", latency_ms=1000)  # by session + tool
    assert not predictor.observe(call_id="never-predicted", latency_ms=10)


def test_prediction_fields(predictor):
    pr = predictor.predict({"tool": "Read", "args": '{"file_path": "/x/y.py"}'})
    assert pr.quantiles["p10"] <= pr.quantiles["p50"] <= pr.quantiles["p90"] <= pr.quantiles["p99"]
    assert pr.p50_ms == pr.quantiles["p50"] and 0 <= pr.p_long <= 1
    assert pr.hint.action in ("keep", "offload", "drop") and pr.hint.ttl_ms >= 0
    assert pr.model_version == predictor.model.version_ and pr.fallback is None


def test_unknown_tool_gets_a_marked_fallback(predictor):
    pr = predictor.predict({"tool": "TeleportToMars", "args": {"where": "olympus"}})
    assert pr.fallback == "global" and pr.p50_ms > 0
    assert predictor.predict({"tool": "mcp__weird__thing"}).fallback == "family"


def test_bad_calls_are_refused(predictor):
    with pytest.raises(ValueError):
        predictor.predict({"args": {}})
    with pytest.raises(ValueError):
        predictor.predict({"tool": "Bash", "args": "{not json"})
    for bad in (-1, float("nan"), 1e12, "10"):
        with pytest.raises(ValueError):
            predictor.observe(call_id="x", latency_ms=bad)


def test_sessions_are_bounded(small_bundle, embedder):
    p = Predictor(ToolLatencyModel.load(small_bundle, embedder), max_sessions=50, max_pending=100)
    for i in range(500):
        p.predict({"tool": "Bash", "args": {"command": "ls"}, "session_id": f"s{i}", "call_id": f"c{i}"})
    info = p.model_info()["state"]
    assert info["sessions"] == 50 and info["pending"] == 100 and info["evicted_sessions"] == 450


def test_thread_safe(small_bundle, embedder):
    p = Predictor(ToolLatencyModel.load(small_bundle, embedder), max_sessions=1000)
    errors = []

    def worker(k):
        try:
            for i in range(100):
                cid = f"t{k}-{i}"
                p.predict({"tool": "Grep", "args": {"pattern": f"x{i % 7}"}, "session_id": f"s{k % 4}", "call_id": cid})
                p.observe(call_id=cid, latency_ms=float(10 + i))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    state = p.model_info()["state"]
    assert state["predicted"] == 800 and state["observed"] == 800 and state["pending"] == 0


def test_running_calibration(predictor):
    predictor.reset()
    for i in range(20):
        predictor.predict({"tool": "Grep", "args": {"pattern": "foo"}, "session_id": "cal", "call_id": f"g{i}"})
        predictor.observe(call_id=f"g{i}", latency_ms=1e6 if i % 2 else 1.0)
    cal = predictor.model_info()["running_calibration"]
    assert cal["search"]["n"] == 20 and cal["*"]["n"] == 20
    assert 0.3 <= cal["search"]["coverage_p50"] <= 0.7


def test_a_ten_mib_command_predicts_in_bounded_time_as_its_prefix(predictor):
    """The features read the first 64 Ki characters (features.max_arg_chars): parsing and the
    regular expressions over 10 MiB held the GIL for 1.4 s."""
    import time
    import uuid

    from toollat.core.call import MAX_ARG_CHARS

    cmd = f"pytest -k {uuid.uuid4().hex} " + "y" * (10 * 2**20)
    prefix = predictor.predict({"tool": "Bash", "args": {"command": cmd[:MAX_ARG_CHARS - 1 - len("command")]}})
    # the 10 MiB command is that prefix to the features: the same cached call, whatever its length
    # (unbounded, hashing it for the cache and parsing it took ~1.4 s, before any embedding)
    t = time.perf_counter()
    big = predictor.predict({"tool": "Bash", "args": {"command": cmd}})
    took = time.perf_counter() - t
    assert big.quantiles == prefix.quantiles and big.hint == prefix.hint
    assert took < 0.1, f"{took * 1000:.0f} ms for a 10 MiB command"
