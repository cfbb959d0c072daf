"""Feature pipeline: causality (docs/ARCHITECTURE.md contract) on real sessions, and the shell parser.

Causality: changing the labels or results of calls emitted at or after call c, or in c's
parallel group (c included), leaves c's features unchanged, both when features are built for
unseen calls (``transform``) and for training calls (``fit_transform``). A control shows the
check can fail: changing an *earlier* call's result, which c may see, does change them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from toollat.features import shell
from toollat.features.pipeline import FeatureConfig, FeaturePipeline

RNG = np.random.default_rng(7)


def perturb_from(df: pd.DataFrame, i: int) -> pd.DataFrame:
    """Change labels and results of c = row i, every later call of its session, and its group."""
    c = df.iloc[i]
    same = df["session_id"] == c.session_id
    mask = same & ((df["emitted_at"] >= c.emitted_at) | (df["parallel_group"] == c.parallel_group))
    out = df.copy()
    factor = RNG.uniform(0.01, 100.0, mask.sum())
    out.loc[mask, "wall_ms"] = out.loc[mask, "wall_ms"].clip(lower=1) * factor
    out.loc[mask, "wall_ms"] = out.loc[mask, "wall_ms"].round()
    out.loc[mask, "result_at"] = (out.loc[mask, "emitted_at"] + pd.to_timedelta(out.loc[mask, "wall_ms"], unit="ms")).astype(out["result_at"].dtype)
    out.loc[mask, "internal_ms"] = out.loc[mask, "wall_ms"] * 0.5
    out.loc[mask, "is_error"] = ~out.loc[mask, "is_error"]
    out.loc[mask, "result_chars"] = 1
    return out


def same_row(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def pick(df: pd.DataFrame, n: int) -> list[int]:
    """Calls with some history before them and later calls after them, across sessions."""
    seq = df["seq"].to_numpy()
    cand = np.flatnonzero((seq >= 3))
    return sorted(RNG.choice(cand, size=min(n, len(cand)), replace=False).tolist())


# The default groups, and every group on: the project history and the tail groups (approval
# state, subagents, background jobs and polls), which read the same session history.
CONFIGS = {"default": FeatureConfig(),
           "tail": FeatureConfig(project=True, approval=True, subagents=True, polls=True)}


@pytest.fixture(scope="module", params=list(CONFIGS))
def fitted(request, small_split, embedder):
    train, test = small_split
    pipe = FeaturePipeline(CONFIGS[request.param], embedder)
    pipe.fit_transform(train)
    sessions = test["session_id"].drop_duplicates().head(6)
    part = test[test["session_id"].isin(sessions)].reset_index(drop=True)
    return pipe, part, train


def test_transform_is_causal(fitted):
    pipe, part, _ = fitted
    base = pipe.transform(part)
    for i in pick(part, 25):
        X = pipe.transform(perturb_from(part, i))
        assert same_row(X[i], base[i]), f"features of call {part.call_id[i]} changed when the future changed"


def test_transform_sees_the_past(fitted):
    """Control: an earlier call's result that arrived before c is emitted does change c's features."""
    pipe, part, _ = fitted
    base = pipe.transform(part)
    changed = 0
    for i in pick(part, 10):
        c = part.iloc[i]
        earlier = part.index[(part.session_id == c.session_id) & (part.result_at < c.emitted_at)
                             & (part.parallel_group != c.parallel_group)]
        if len(earlier) == 0:
            continue
        j = earlier[-1]
        mod = part.copy()
        mod.loc[j, "wall_ms"] = mod.loc[j, "wall_ms"] * 50 + 5000
        changed += not same_row(pipe.transform(mod)[i], base[i])
    assert changed > 0


def test_fit_transform_is_causal(fitted, embedder):
    pipe, _, train = fitted
    sessions = train["session_id"].drop_duplicates().head(40)
    part = train[train["session_id"].isin(sessions)].reset_index(drop=True)
    base = FeaturePipeline(pipe.config, embedder).fit_transform(part)
    for i in pick(part, 8):
        mod = perturb_from(part, i)
        X = FeaturePipeline(pipe.config, embedder).fit_transform(mod)
        assert same_row(X[i], base[i]), f"training features of {part.call_id[i]} changed when its future changed"


TAIL_PREFIXES = ("ap_", "sa_", "bg_", "j_cls_", "j_sub_min", "j_cmd_min", "j_prog_min")


def test_tail_features_see_the_past(small_split, embedder):
    """Control for the tail groups: an earlier edit or millisecond command that waited (its result
    seen before c) changes c's approval columns; c's own and later results do not (above)."""
    train, test = small_split
    pipe = FeaturePipeline(CONFIGS["tail"], embedder)
    pipe.fit_transform(train)
    cols = [j for j, n in enumerate(pipe.names) if n.startswith(TAIL_PREFIXES)]
    assert len(cols) > 20
    part = test[test["session_id"].isin(test["session_id"].drop_duplicates().head(12))].reset_index(drop=True)
    base = pipe.transform(part)
    ap_cls = pipe.names.index("ap_cls")
    changed = tried = 0
    for i in pick(part, 40):
        c = part.iloc[i]
        if base[i, ap_cls] not in (1.0, 2.0):   # c is an edit or a millisecond command
            continue
        earlier = part.index[(part.session_id == c.session_id) & (part.result_at < c.emitted_at)
                             & (part.parallel_group != c.parallel_group) & (base[:, ap_cls] == base[i, ap_cls])]
        if len(earlier) == 0:
            continue
        j = earlier[-1]
        mod = part.copy()
        mod.loc[j, "wall_ms"] = 120_000.0     # the earlier one waited two minutes (its result still before c)
        mod.loc[j, "emitted_at"] = mod.loc[j, "result_at"] - pd.Timedelta(milliseconds=120_000)
        tried += 1
        changed += not same_row(pipe.transform(mod)[i][cols], base[i][cols])
        if tried >= 5:
            break
    assert tried > 0 and changed == tried


def test_parallel_siblings_results_are_invisible(fitted):
    """A result of a call in c's own parallel group never reaches c, even if it arrived first."""
    pipe, part, _ = fitted
    groups = part.groupby(["session_id", "parallel_group"]).filter(lambda g: len(g) > 1)
    assert len(groups), "the slice needs a parallel group"
    base = pipe.transform(part)
    for (_, _), g in list(groups.groupby(["session_id", "parallel_group"]))[:5]:
        last = g.index[-1]
        mod = part.copy()
        mod.loc[g.index[:-1], "wall_ms"] = 1.0  # siblings "finish" at once
        mod.loc[g.index[:-1], "result_at"] = mod.loc[g.index[:-1], "emitted_at"]
        assert same_row(pipe.transform(mod)[last], base[last])


@pytest.mark.parametrize("command,program,sub,extra", [
    ("git status --short", "git", "git status", {"vcs_local"}),
    ("cd /x && go test ./... -timeout 120s 2>&1 | tail -20", "go", "go test", {"test"}),
    ("mise exec -- go build ./cmd/x", "go", "go build", {"build"}),
    ("sleep 30 && gh run view 1", "gh", "gh run", {"network", "wait"}),
    ("timeout 60 pytest -x tests/", "pytest", "pytest tests/", {"test"}),
    ("FOO=1 npm run build", "npm", "npm run:build", {"build"}),
    ("for f in *.go; do gofmt -l $f; done", "gofmt", "", {"lint"}),
    ("SCRATCH=$(mktemp -d) && cd $SCRATCH && git clone x", "git", "git clone", {"network"}),
    ("python3 -m pytest -q", "python3", "python3 -m:pytest", {"test"}),
])
def test_shell_parse(command, program, sub, extra):
    sc = shell.parse(command)
    assert sc.program == program
    assert sc.subcommand == sub
    assert extra <= sc.categories


def test_shell_parse_details():
    sc = shell.parse("cd /x && go test ./... -timeout 120s 2>&1 | tail -20")
    assert sc.cd_prefix and sc.n_pipes == 1 and sc.n_and == 1 and sc.timeout_s == 120.0 and not sc.background
    assert shell.parse("sleep 30 && gh run view 1").sleep_s == 30.0
    assert shell.parse("nohup ./server &").background
    assert shell.parse("timeout 5m make").timeout_s == 300.0
    assert shell.parse("cat <<EOF > x\nrm -rf /\nEOF").programs == ["cat"]  # a heredoc body is data
    assert shell.parse("").program == ""


def test_embedding_cache_is_bounded_and_written_in_shards(tmp_path):
    """A server meeting new commands for months: one shard per ``flush_every`` new texts (not a
    file per text), the in-memory copy capped, and every vector read back without re-encoding."""
    from toollat.features.embed import Embedder

    shards = lambda: sorted((tmp_path / "embeddings").rglob("shard-*.npz"))  # noqa: E731
    e = Embedder(tmp_path, flush_every=3, max_cached=4)
    first = e.encode(["Bash: ls", "Bash: git status"])
    assert shards() == []
    e.encode(["Bash: make", "Read: …/src/a.py", "Grep: TODO"])
    assert len(shards()) == 1 and len(e._cache) == 4  # five texts, one shard
    e.encode(["Glob: **/*.py"])
    assert len(shards()) == 1
    e.flush()
    assert len(shards()) == 2
    again = Embedder(tmp_path)
    vecs = again.encode(["Bash: ls", "Bash: git status", "Bash: make", "Read: …/src/a.py", "Grep: TODO", "Glob: **/*.py"])
    assert again.encoded == 0
    np.testing.assert_allclose(vecs[:2], first, atol=1e-3)


def test_arguments_are_read_up_to_their_bound():
    """features.max_arg_chars: strings and keys count their characters, other values one."""
    from toollat.core.call import MAX_ARGS_DEPTH, Call, bound_args, calls_from_frame

    small = {"command": "ls -la", "timeout": 5, "opts": [1, "a"]}
    assert bound_args(small, 100) is small                      # within the bound: the same object
    cut = bound_args({"command": "x" * 500, "description": "later"}, 100)
    assert cut == {"command": "x" * (100 - 1 - len("command"))}  # cut, and what follows dropped
    assert bound_args(cut, 100) is cut                          # a cut value is within the bound
    assert bound_args({"a": ["yy"] * 100}, 21) == {"a": ["yy"] * 9}
    deep: dict = {"leaf": 1}
    for _ in range(MAX_ARGS_DEPTH + 10):
        deep = {"d": deep}
    walked, depth = bound_args(deep, 10_000), 0
    while walked:
        walked, depth = walked.get("d"), depth + 1
    assert depth <= MAX_ARGS_DEPTH + 1
    # both ways in: a request and a table row
    assert len(Call.from_request({"tool": "Bash", "args": {"command": "y" * 10**6}}, 1000).args["command"]) == 992
    row = pd.DataFrame({"tool_name": ["Bash"], "tool_family": ["shell"], "args": ['{"command": "' + "z" * 10**6 + '"}'],
                        "emitted_at": pd.to_datetime(["2026-01-01T00:00:00Z"])})
    assert len(calls_from_frame(row)[0].args["command"]) == 65_536 - 1 - len("command")
