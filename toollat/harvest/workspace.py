"""The harvest workspace: a throw-away git repository of real source code and a small test suite.

``build_workspace`` copies three packages of different sizes (small, medium, large; picked by
the seed from what is installed: the standard library and this environment's site-packages)
into ``src/``, writes a generated pytest suite into ``tests/`` (fast tests, parametrised ones,
and deliberately slow ones with loops and sleeps, so test runs differ in duration), and
commits it all in three commits with a fixed local author and dates, so ``git log`` and
``git diff HEAD~1`` have something to show. Only text source files are copied (``.py``,
``.pyi``, ``.txt``, ``.md``, ...), never compiled extensions, with a cap per package.

The returned ``Workspace`` indexes files and folders with their sizes: the session planner
uses it to pick arguments whose cost it can estimate.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sysconfig
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from .safety import GENERATED_TESTS, child_env

__all__ = ["CANDIDATES", "Package", "Workspace", "build_workspace"]

# (where, import name); the first installed candidate of a shuffled class is taken.
CANDIDATES: dict[str, list[tuple[str, str]]] = {
    "small": [("stdlib", "json"), ("stdlib", "logging"), ("stdlib", "http"), ("stdlib", "urllib"),
              ("stdlib", "concurrent"), ("site", "click"), ("site", "yaml"), ("site", "requests")],
    "medium": [("stdlib", "email"), ("stdlib", "asyncio"), ("stdlib", "unittest"), ("site", "rich"),
               ("site", "_pytest"), ("site", "pydantic"), ("site", "pygments"), ("site", "networkx")],
    "large": [("site", "pandas"), ("site", "scipy"), ("site", "sympy"), ("site", "sklearn"),
              ("site", "sqlalchemy"), ("site", "mlflow")],
}
# Fallbacks from the standard library, in order, for environments without the packages above.
FALLBACK = {"small": [("stdlib", "json")], "medium": [("stdlib", "email")],
            "large": [("stdlib", "test"), ("stdlib", "idlelib"), ("stdlib", "unittest")]}
CAP_BYTES = {"small": 2_000_000, "medium": 8_000_000, "large": 30_000_000}
TEXT_SUFFIXES = (".py", ".pyi", ".txt", ".md", ".rst", ".cfg", ".toml", ".json", ".ini")
GIT_IDENTITY = ["-c", "user.name=toollat harvest", "-c", "user.email=harvest@localhost",
                "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"]
GIT_DATE = "2026-01-01T12:00:00+00:00"


@dataclass
class Package:
    name: str               # import name, e.g. "pandas"
    origin: str             # "stdlib" or "site"
    size_class: str         # "small", "medium", "large"
    rel: str                # folder in the workspace, e.g. "src/pandas"
    files: list[tuple[str, int]] = field(default_factory=list)   # (workspace-relative path, bytes)
    dirs: dict[str, tuple[int, int]] = field(default_factory=dict)  # folder -> (files, bytes), recursive

    @property
    def bytes(self) -> int:
        return self.dirs[self.rel][1]


@dataclass
class Workspace:
    root: Path                      # resolved path of the repository
    home: Path                      # HOME/TMPDIR of the children (beside the root, not in it)
    packages: list[Package]
    tests: list[str]                # workspace-relative paths of the generated test files
    dirs: dict[str, tuple[int, int]]  # every folder (src/..., tests, src) -> (files, bytes)
    total_bytes: int = 0

    def package(self, size_class: str) -> Package:
        return next(p for p in self.packages if p.size_class == size_class)


def _source_dir(origin: str, name: str) -> Path | None:
    base = Path(sysconfig.get_paths()["stdlib" if origin == "stdlib" else "purelib"])
    path = base / name
    return path if (path / "__init__.py").is_file() else None


def _copy_package(src: Path, dest: Path, cap: int) -> list[tuple[Path, int]]:
    """Copy text source files in sorted order until ``cap`` bytes; returns (dest file, bytes)."""
    copied: list[tuple[Path, int]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for fname in sorted(filenames):
            if not fname.endswith(TEXT_SUFFIXES):
                continue
            f = Path(dirpath) / fname
            if f.is_symlink() or not f.is_file():
                continue
            size = f.stat().st_size
            if total + size > cap:
                return copied
            target = dest / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            copied.append((target, size))
            total += size
    return copied


def _pick_packages(rng: random.Random) -> list[tuple[str, str, str]]:
    picked = []
    for size_class, options in CANDIDATES.items():
        options = list(options)
        rng.shuffle(options)
        chosen = next(o for o in options + FALLBACK[size_class] if _source_dir(*o) is not None)
        picked.append((size_class, *chosen))
    return picked


def _git(root: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(["git", *GIT_IDENTITY, *args], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)


def build_workspace(parent: Path, rng: random.Random) -> Workspace:
    """Create the repository in ``parent/harvest-workspace`` (``parent`` is a fresh temp dir)."""
    root = (parent / "harvest-workspace").resolve()
    home = (parent / "home").resolve()
    root.mkdir()
    home.mkdir()
    env = child_env(home) | {"GIT_AUTHOR_DATE": GIT_DATE, "GIT_COMMITTER_DATE": GIT_DATE}
    _git(root, env, "init", "-q", ".")
    (root / ".gitignore").write_text("__pycache__/\n*.pyc\n.pytest_cache/\nbuild/\n")
    (root / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    (root / "build").mkdir()
    (root / "notes").mkdir()

    packages: list[Package] = []
    for i, (size_class, origin, name) in enumerate(_pick_packages(rng)):
        src = _source_dir(origin, name)
        rel = f"src/{name}"
        copied = _copy_package(src, root / rel, CAP_BYTES[size_class])
        pkg = Package(name=name, origin=origin, size_class=size_class, rel=rel,
                      files=[(str(p.relative_to(root)), n) for p, n in copied])
        packages.append(pkg)
        if i == 0:
            (root / "README.md").write_text(_readme(packages))
            _git(root, env, "add", "-A")
            _git(root, env, "commit", "-q", "-m", f"Add {name}")
        elif i == 1:
            _git(root, env, "add", "-A")
            _git(root, env, "commit", "-q", "-m", f"Add {name}")
    tests = _write_tests(root)
    (root / "README.md").write_text(_readme(packages))
    _git(root, env, "add", "-A")
    _git(root, env, "commit", "-q", "-m", f"Add {packages[-1].name} and the test suite")

    dirs = _folder_sizes(root, [(f, n) for p in packages for f, n in p.files] + [(t, (root / t).stat().st_size) for t in tests])
    for pkg in packages:
        pkg.dirs = {d: v for d, v in dirs.items() if d == pkg.rel or d.startswith(pkg.rel + "/")}
    return Workspace(root=root, home=home, packages=packages, tests=tests, dirs=dirs,
                     total_bytes=sum(p.bytes for p in packages))


def _folder_sizes(root: Path, files: list[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    sizes: dict[str, list[int]] = {}
    for rel, n in files:
        parts = Path(rel).parts[:-1]
        for k in range(1, len(parts) + 1):
            entry = sizes.setdefault("/".join(parts[:k]), [0, 0])
            entry[0] += 1
            entry[1] += n
    return {k: (v[0], v[1]) for k, v in sizes.items()}


def _readme(packages: list[Package]) -> str:
    lines = ["# harvest workspace", "", "Source copied from the local Python installation:", ""]
    lines += [f"- `{p.rel}`: {p.origin} package `{p.name}` ({p.size_class})" for p in packages]
    return "\n".join(lines) + "\n"


# -- the generated test suite ---------------------------------------------------------------
_TESTS: dict[str, str] = {
    "test_fast_math.py": """
        import math

        import pytest


        @pytest.mark.parametrize("n", range(30))
        def test_square(n):
            assert n * n == n ** 2


        def test_gcd():
            assert math.gcd(84, 36) == 12


        def test_isqrt():
            assert all(math.isqrt(k * k) == k for k in range(1000))
        """,
    "test_fast_text.py": """
        def test_upper():
            assert "harvest".upper() == "HARVEST"


        def test_split_join():
            words = ("alpha beta gamma " * 50).split()
            assert " ".join(words).count("beta") == 50


        def test_format():
            assert f"{3.14159:.2f}" == "3.14"


        def test_casefold():
            assert "Straße".casefold() == "strasse"
        """,
    "test_params_many.py": """
        import pytest


        @pytest.mark.parametrize("a", range(20))
        @pytest.mark.parametrize("b", range(15))
        def test_add_commutes(a, b):
            assert a + b == b + a
        """,
    "test_medium_loops.py": """
        def _work(n):
            total = 0
            for i in range(n):
                total += i % 7
            return total


        def test_loop_small():
            assert _work(200_000) > 0


        def test_loop_medium():
            assert _work(600_000) > 0


        def test_sorted_big():
            data = [(i * 7919) % 100_003 for i in range(300_000)]
            assert sorted(data)[0] == 0
        """,
    "test_slow_compute.py": """
        def _collatz_steps(n):
            steps = 0
            while n != 1:
                n = n // 2 if n % 2 == 0 else 3 * n + 1
                steps += 1
            return steps


        def test_collatz_range():
            assert max(_collatz_steps(k) for k in range(1, 60_000)) > 300


        def test_prime_sieve():
            n = 2_000_000
            sieve = bytearray([1]) * n
            sieve[0:2] = b"\\x00\\x00"
            for i in range(2, int(n ** 0.5) + 1):
                if sieve[i]:
                    sieve[i * i::i] = bytearray(len(range(i * i, n, i)))
            assert sum(sieve) == 148933
        """,
    "test_slow_sleep.py": """
        import time


        def test_wait_short():
            time.sleep(0.4)


        def test_wait_medium():
            time.sleep(0.9)


        def test_wait_long():
            time.sleep(1.6)
        """,
}
assert tuple(sorted(_TESTS)) == tuple(sorted(GENERATED_TESTS))


def _write_tests(root: Path) -> list[str]:
    (root / "tests").mkdir()
    out = []
    for name in GENERATED_TESTS:
        path = root / "tests" / name
        path.write_text(textwrap.dedent(_TESTS[name]).lstrip())
        out.append(f"tests/{name}")
    return out
