"""Hostile-ingest study: real logs mixed with ~200 MB of junk; writes results.md beside this file.

Two directories are ingested by the real `toollat ingest` command, each in its own process:
``clean/`` holds two real logs; ``hostile/`` holds the same two logs (one of them with junk
lines woven between its records) plus junk files. The calls tables must be equal, the junk
counted by reason, and the hostile run's peak RSS (from ``wait4`` of the child) under 1 GB.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pandas as pd

from toollat.paths import corpus_dir

HERE = Path(__file__).resolve().parent
CLAUDE = "PackmindHub__context-evaluator/claude-code/8ecab05f-4481-43d6-9428-a6b177981877.jsonl.gz"
CODEX = "EntityProcess__agentv/codex/019ed99c-d00d-7613-b2e7-d2f512f78afd.jsonl.gz"
MIB = 1024 * 1024
RSS_BUDGET = 1024 * MIB
PRINTABLE = bytes(10 if b < 2 else 33 + b % 94 for b in range(256))  # random byte -> text


def write_long_line_gz(path: Path, gib: float) -> None:
    """A .gz whose content is one line of ``gib`` GiB, compressed piece by piece (never held)."""
    piece = b'{"type": "user", "message": "' + b"A" * (MIB - 29)
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip container
    with open(path, "wb") as fh:
        for _ in range(int(gib * 1024)):
            fh.write(comp.compress(piece))
        fh.write(comp.compress(b'"}\n'))
        fh.write(comp.flush())


def junk_lines(rng: random.Random, n: int) -> tuple[list[bytes], dict[str, int]]:
    """Bad lines of known kinds, and how many of each the report must count."""
    kinds = {
        "nested too deep": lambda: b"[" * rng.randint(1_000, 20_000),
        "nested too deep (valid JSON)": lambda: b'{"type":"user","x":' + b"[" * 400 + b"]" * 400 + b"}",
        "invalid JSON": lambda: b"@" + bytes(rng.randrange(32, 256) for _ in range(rng.randint(10, 2_000))),
        "not a JSON object": lambda: b"[1, 2, 3]",
    }
    lines, expected = [], {}
    names = list(kinds)
    for _ in range(n):
        k = rng.choice(names)
        lines.append(kinds[k]())
        reason = "nested too deep" if k.startswith("nested") else k
        expected[reason] = expected.get(reason, 0) + 1
    return lines, expected


def build(root: Path, args) -> dict:
    corpus = corpus_dir()
    rng = random.Random(0)
    clean, hostile = root / "clean" / "real", root / "hostile" / "real"
    clean.mkdir(parents=True)
    hostile.mkdir(parents=True)
    for rel, name in ((CLAUDE, "claude.jsonl.gz"), (CODEX, "codex.jsonl.gz")):
        shutil.copy(corpus / rel, clean / name)
    shutil.copy(corpus / CLAUDE, hostile / "claude.jsonl.gz")
    # The Codex rollout with junk between its records, and one over-long line among them.
    with gzip.open(corpus / CODEX, "rb") as fh:
        records = [l for l in fh.read().split(b"\n") if l.strip()]
    bad, expected = junk_lines(rng, args.junk_lines)
    expected["line too long"] = 1
    mixed = list(records)
    for b in bad:
        mixed.insert(rng.randint(1, len(mixed)), b)
    mixed.insert(len(mixed) // 2, b'{"type":"event_msg","payload":{"pad":"' + b"x" * (17 * MIB) + b'"}}')
    with gzip.open(hostile / "codex.jsonl.gz", "wb", compresslevel=1) as fh:
        fh.write(b"\n".join(mixed) + b"\n")
    junk = root / "hostile" / "junk"
    junk.mkdir()
    with open(junk / "random.bin", "wb") as fh:
        for _ in range(args.random_mb):
            fh.write(os.urandom(MIB))
    # Random printable text (a newline every ~128 bytes): a text file, so its lines are counted.
    text_lines = 0
    with open(junk / "noise.log", "wb") as fh:
        for _ in range(args.noise_mb):
            chunk = os.urandom(MIB).translate(PRINTABLE)
            text_lines += chunk.count(b"\n")
            fh.write(chunk)
        fh.write(b"\n")
        text_lines += 1
    with open(junk / "brackets.jsonl", "wb") as fh:
        n_brackets = 0
        while fh.tell() < args.brackets_mb * MIB:
            fh.write(b"[" * rng.randint(1_000, 50_000) + b"\n")
            n_brackets += 1
    t = time.perf_counter()
    write_long_line_gz(junk / "one_line.jsonl.gz", args.long_line_gib)
    return {
        "expected_in_mixed_log": expected, "bracket_lines": n_brackets, "noise_lines": text_lines,
        "junk_bytes_on_disk": sum(p.stat().st_size for p in junk.iterdir()) + (hostile / "codex.jsonl.gz").stat().st_size,
        "long_line_gz_bytes": (junk / "one_line.jsonl.gz").stat().st_size, "long_line_build_s": time.perf_counter() - t,
    }


def run_ingest(path: Path, out: Path) -> dict:
    """`toollat ingest PATH --out OUT --json` in a child; its exit code, summary, wall time, peak RSS."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        proc = subprocess.Popen([sys.executable, "-m", "toollat.cli", "ingest", str(path), "--out", str(out), "--json"],
                                stdout=so, stderr=se)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        stdout, stderr = so.read().decode(), se.read().decode()
    return {"rc": proc.returncode, "seconds": time.perf_counter() - t, "peak_rss": usage.ru_maxrss * 1024,
            "summary": json.loads(stdout) if proc.returncode == 0 else None, "stderr": stderr[-2000:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--random-mb", type=int, default=100, help="file of random bytes (binary)")
    ap.add_argument("--noise-mb", type=int, default=50, help="file of random bytes without NULs (text-like)")
    ap.add_argument("--brackets-mb", type=int, default=50, help="file of nested-bracket lines")
    ap.add_argument("--junk-lines", type=int, default=300, help="bad lines woven into the Codex rollout")
    ap.add_argument("--long-line-gib", type=float, default=3.0, help="size of the single decompressed line")
    ap.add_argument("--no-write", action="store_true", help="print, do not write results.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="toollat-hostile-") as tmp:
        root = Path(tmp)
        built = build(root, args)
        clean = run_ingest(root / "clean", root / "clean.parquet")
        hostile = run_ingest(root / "hostile", root / "hostile.parquet")
        assert clean["rc"] == 0, clean["stderr"]
        cols = lambda df: df.drop(columns=["origin"]).sort_values("call_id").reset_index(drop=True)
        a = cols(pd.read_parquet(root / "clean.parquet"))
        b = cols(pd.read_parquet(root / "hostile.parquet")) if hostile["rc"] == 0 else None
        same = b is not None and a.equals(b)
    lines = render(args, built, clean, hostile, same, len(a), None if b is None else len(b))
    print(lines)
    if not args.no_write:
        (HERE / "results.md").write_text(lines)


def render(args, built, clean, hostile, same, n_clean, n_hostile) -> str:
    s = hostile["summary"] or {}
    skipped = s.get("lines_skipped", {})
    exp = built["expected_in_mixed_log"]
    want = {
        "nested too deep": exp.get("nested too deep", 0),
        "invalid JSON": exp.get("invalid JSON", 0),
        "not a JSON object": exp.get("not a JSON object", 0),
        "line too long": exp["line too long"],
    }
    file_level = {k: v for k, v in skipped.items() if k.startswith("unsupported file")}
    # junk files skipped whole: the bracket file, the noise file and the single long line
    want_file_level = built["bracket_lines"] + built["noise_lines"] + 1
    counted = all(skipped.get(k, 0) == v for k, v in want.items()) and sum(file_level.values()) == want_file_level
    checks = [
        ("exit code 0", hostile["rc"] == 0, f"{hostile['rc']}"),
        ("every valid call kept (calls table equal to the clean run, `origin` aside)", same,
         f"{n_hostile} vs {n_clean} calls"),
        ("every bad line counted by reason", counted, "see table"),
        ("peak RSS < 1 GB", hostile["peak_rss"] < RSS_BUDGET, f"{hostile['peak_rss'] / MIB:.0f} MiB"),
    ]
    out = [
        "# Hostile ingest: results", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        f"Junk on disk: {built['junk_bytes_on_disk'] / MIB:.0f} MiB (random bytes {args.random_mb} MiB, "
        f"printable noise {args.noise_mb} MiB, nested brackets {args.brackets_mb} MiB, "
        f"{args.junk_lines} bad lines and one 17 MiB line woven into a real Codex rollout), plus a "
        f"{built['long_line_gz_bytes'] / MIB:.1f} MiB .gz holding one {args.long_line_gib:g} GiB line.", "",
        "| check | holds | measured |", "|---|---|---|",
        *(f"| {name} | {'yes' if ok else '**no**'} | {m} |" for name, ok, m in checks), "",
        "| run | exit | wall s | peak RSS MiB | calls |", "|---|---|---|---|---|",
        f"| clean (two real logs) | {clean['rc']} | {clean['seconds']:.1f} | {clean['peak_rss'] / MIB:.0f} | {n_clean} |",
        f"| hostile (same logs + junk) | {hostile['rc']} | {hostile['seconds']:.1f} | {hostile['peak_rss'] / MIB:.0f} | {n_hostile} |",
        "", "Bad lines: counted by the hostile run vs put there by the study (the first rows are lines woven "
        "into the real rollout; a whole junk file is skipped under `unsupported file: <what it looks like>`).", "",
        "| reason | counted | expected |", "|---|---|---|",
        *(f"| {k} | {skipped.get(k, 0):,} | {v:,} |" for k, v in want.items()),
        *(f"| {k} | {v:,} | |" for k, v in sorted(file_level.items())),
        f"| (all unsupported-file lines) | {sum(file_level.values()):,} | {want_file_level:,} |",
        "", "Unsupported files: " + ", ".join(f"`{k}` ({v})" for k, v in sorted(s.get("unsupported", {}).items())) + ".",
        "The random-bytes file is recognised as binary and skipped whole (its bytes are not lines); the "
        f"noise file's {built['noise_lines']:,} lines and the bracket file's {built['bracket_lines']:,} are counted "
        f"under their file's reason; the {args.long_line_gib:g} GiB line is stepped over in 1 MiB pieces (sniffing and line counting), never held.", "",
        f"Hostile run stderr tail: `{hostile['stderr'].strip()[-300:] or '(empty)'}`" if hostile["rc"] else "",
        "Rerun: `.venv/bin/python experiments/ingest_hostile/run.py` (about a minute; options shrink the junk).", "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    main()
