"""What `repro run` adds to a no-op command: `repro run -- python -c pass` vs `python -c pass`.

Builds a throwaway committed repo with a matching lockfile, then times both commands
interleaved (so machine noise hits both alike) and reports medians and their difference.

    python benchmarks/run_overhead.py [--runs 30]

Target: under 0.15 s added (median) on a 2-core machine.

Both commands run with bytecode caches (PYTHONDONTWRITEBYTECODE is unset for them and the
warm-up runs write the caches), as on any normal install; without caches every module of
repro, and of Python itself, is compiled again on every start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

TARGET_S = 0.15


def make_repo(where: Path) -> Path:
    repo = where / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    (repo / ".gitignore").write_text(".repro/\n")
    (repo / "requirements.lock").write_text(
        "".join(f"{n}=={metadata.version(n)}\n" for n in ("pyyaml", "blake3", "typer", "rich")))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "bench"], cwd=repo, check=True, env=env)
    return repo


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    repro = shutil.which("repro", path=str(Path(sys.executable).parent)) or "repro"
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        bare_cmd = [sys.executable, "-c", "pass"]
        wrapped_cmd = [repro, "run", "--", sys.executable, "-c", "pass"]
        for _ in range(3):  # warm the page cache and the stat cache
            timed(bare_cmd, repo)
            timed(wrapped_cmd, repo)
        bare, wrapped = [], []
        for _ in range(args.runs):
            bare.append(timed(bare_cmd, repo))
            wrapped.append(timed(wrapped_cmd, repo))
    b, w = statistics.median(bare), statistics.median(wrapped)
    added = w - b
    print(f"python -c pass                   median {b * 1000:7.1f} ms  (n={args.runs})")
    print(f"repro run -- python -c pass      median {w * 1000:7.1f} ms")
    print(f"added by repro run               {added * 1000:7.1f} ms   ratio {w / b:.1f}x   "
          f"target < {TARGET_S * 1000:.0f} ms: {'PASS' if added < TARGET_S else 'FAIL'}")
    return 0 if added < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
