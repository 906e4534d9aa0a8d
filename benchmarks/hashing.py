"""Benchmark repro's data hashing against sha256sum (and b3sum when installed).

Creates, in a temporary directory: one large file (1 GiB), 10k medium files (50-150 KiB,
~1 GiB) and 100k small files (1-4 KiB). Then, in the same run and interleaved round by round:

- cold hashing (no stat cache; the page cache dropped before each run when this process may
  write /proc/sys/vm/drop_caches, else stated as warm) by repro and by `sha256sum` (through
  `find -print0 | xargs -0`, as one would run it), and `b3sum` when on PATH;
- the same with a warm page cache;
- re-checking the 100k unchanged small files through the stat cache (target: under 0.7 s);
- peak memory (peak RSS, VmHWM) of a process hashing the large file vs a small file.

Each repro measurement runs in a fresh child process, which reports the time of the
`hash_paths` call itself; the table also gives the child's whole wall time (interpreter start
included). The data is deleted at the end, also on failure or Ctrl-C.

    /tmp/venv/bin/python benchmarks/hashing.py            # full sizes, a few minutes
    /tmp/venv/bin/python benchmarks/hashing.py --quick    # small sizes, under a minute
    /tmp/venv/bin/python benchmarks/hashing.py --dir /mnt/fast --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RECHECK_TARGET_S = 0.7

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from repro.capture import data
target, root, cache = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
t = time.perf_counter()
[entry] = data.hash_paths([target], root=root, cache_dir=None if cache == "-" else Path(cache))
seconds = time.perf_counter() - t
# Peak RSS of this process image: VmHWM. (ru_maxrss would do, but Linux carries the parent's
# peak over fork+exec into it, so a child of a big parent reports the parent's size.)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    with open("/proc/self/status") as f:
        peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
print(json.dumps({"seconds": seconds, "hash": entry.hash, "files": entry.files or 1,
                  "size": entry.size, "maxrss_kib": peak}))
"""


@dataclass
class Dataset:
    name: str
    path: str  # relative to the data root
    files: int
    size: int


@dataclass
class Result:
    wall: list[float] = field(default_factory=list)
    inner: list[float] = field(default_factory=list)  # repro: the hash_paths call alone


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (about 1/8)")
    ap.add_argument("--dir", default=None, help="where to create the data (default: /tmp)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per tool and dataset")
    args = ap.parse_args()
    scale = 8 if args.quick else 1
    base = Path(tempfile.mkdtemp(prefix="repro-hashbench-", dir=args.dir))
    try:
        return run(base, scale, args.rounds)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(base: Path, scale: int, rounds: int) -> int:
    root = base / "data"
    print(f"creating data under {root} ...", file=sys.stderr, flush=True)
    datasets = make_data(root, scale)
    cold = can_drop_caches()
    tools = ["repro", "sha256sum"] + (["b3sum"] if shutil.which("b3sum") else [])
    print(f"host: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, {platform.system()} {platform.release()}")
    print(f"page cache: {'dropped before each cold run' if cold else 'NOT dropped (no permission): every run is warm'}")
    print(f"rounds: {rounds} per tool and dataset, interleaved; figures are medians\n")

    results: dict[tuple[str, str, str], Result] = {}
    hashes: dict[str, set[str]] = {}
    conditions = ["cold", "warm"] if cold else ["warm"]
    for condition in conditions:
        for ds in datasets:
            for r in range(rounds):
                order = tools if r % 2 == 0 else list(reversed(tools))
                for tool in order:
                    if condition == "cold":
                        drop_caches()
                        warm_tools()
                    elif r == 0 and tool == order[0]:
                        read_all(root / ds.path)  # bring the data into the page cache
                    res = results.setdefault((condition, ds.name, tool), Result())
                    if tool == "repro":
                        out, wall = repro_child(root, ds.path, None)
                        res.inner.append(out["seconds"])
                        res.wall.append(wall)
                        hashes.setdefault(ds.name, set()).add(out["hash"])
                    else:
                        res.wall.append(external(tool, root / ds.path, ds.files))
                    print(f"  {condition} {ds.name} {tool} round {r + 1}: "
                          f"{res.wall[-1]:.2f} s", file=sys.stderr, flush=True)

    print_table(results, datasets, conditions, tools)
    consistent = all(len(h) == 1 for h in hashes.values())

    # Re-check through the stat cache: hash once with the cache, let the files age past the
    # racy-timestamp margin (they were just written), then re-check unchanged.
    small = datasets[-1]
    cache = base / "cache"
    repro_child(root, small.path, cache)
    time.sleep(0.2)
    repro_child(root, small.path, cache)  # stores the entries that were too fresh before
    inner: list[float] = []
    walls: list[float] = []
    for _ in range(max(5, rounds)):
        out, wall = repro_child(root, small.path, cache)
        inner.append(out["seconds"])
        walls.append(wall)
        hashes[small.name].add(out["hash"])
    med = statistics.median(inner)
    print(f"\nre-check of {small.files:,} unchanged files through the stat cache "
          f"({len(inner)} runs):")
    print(f"  hash_paths call: median {med:.3f} s, best {min(inner):.3f} s, "
          f"worst {max(inner):.3f} s  (target < {RECHECK_TARGET_S} s: "
          f"{'met' if med < RECHECK_TARGET_S else 'MISSED'})")
    print(f"  whole process (interpreter start, imports, call): median "
          f"{statistics.median(walls):.3f} s")

    # Peak memory: flat in file size.
    big = datasets[0]
    tiny = root / "tiny.bin"
    tiny.write_bytes(os.urandom(4096))
    out_big, _ = repro_child(root, big.path, None)
    out_tiny, _ = repro_child(root, "tiny.bin", None)
    rss_big, rss_tiny = out_big["maxrss_kib"] / 1024, out_tiny["maxrss_kib"] / 1024
    print(f"\npeak memory (peak RSS of the hashing process): {big.size / 2**20:,.0f} MiB file "
          f"{rss_big:.1f} MiB, 4 KiB file {rss_tiny:.1f} MiB (+{rss_big - rss_tiny:.1f} MiB)")
    print(f"\nhashes identical across all repro runs of each dataset: "
          f"{'yes' if consistent and all(len(h) == 1 for h in hashes.values()) else 'NO'}")
    return 0 if consistent else 1


def make_data(root: Path, scale: int) -> list[Dataset]:
    rng = random.Random(20261123)
    pool = rng.randbytes(8 * 2**20)  # small files are slices of this, at random offsets

    big = root / "large.bin"
    big.parent.mkdir(parents=True)
    size = 2**30 // scale
    with open(big, "wb") as f:
        written = 0
        while written < size:
            chunk = min(64 * 2**20, size - written)
            f.write(os.urandom(chunk))
            written += chunk

    def many(name: str, count: int, lo: int, hi: int) -> Dataset:
        total = 0
        for i in range(count):
            d = root / name / f"{i // 1000:03d}"
            if i % 1000 == 0:
                d.mkdir(parents=True)
            n = rng.randint(lo, hi)
            off = rng.randrange(0, len(pool) - hi)
            (d / f"f{i:06d}.bin").write_bytes(i.to_bytes(8, "little") + pool[off:off + n - 8])
            total += n
        return Dataset(f"{count // 1000}k files", name, count, total)

    medium = many("medium", 10_000 // scale, 50 * 1024, 150 * 1024)
    small = many("small", 100_000 // scale, 1024, 4096)
    return [Dataset(f"{size // 2**20} MiB file", "large.bin", 1, size), medium, small]


def can_drop_caches() -> bool:
    try:
        drop_caches()
    except OSError:
        return False
    return True


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def warm_tools() -> None:
    """After dropping caches, bring the tools themselves back: only the data is cold."""
    subprocess.run([sys.executable, "-c", "import repro.capture.data"], check=True)
    for tool in ("sha256sum", "b3sum", "find", "xargs"):
        if shutil.which(tool):
            subprocess.run([tool, "--version"], stdout=subprocess.DEVNULL, check=False)


def read_all(path: Path) -> None:
    subprocess.run(f"find {path} -type f -print0 | xargs -0 cat > /dev/null", shell=True,
                   check=True)


def repro_child(root: Path, rel: str, cache: Path | None) -> tuple[dict[str, float], float]:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, rel, str(root),
                           str(cache) if cache else "-"],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    return json.loads(done.stdout), wall


def external(tool: str, path: Path, files: int) -> float:
    if files == 1:
        cmd = f"{tool} {path} > /dev/null"
    else:
        cmd = f"find {path} -type f -print0 | xargs -0 {tool} > /dev/null"
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True)
    return time.perf_counter() - t


def print_table(results: dict[tuple[str, str, str], Result], datasets: list[Dataset],
                conditions: list[str], tools: list[str]) -> None:
    head = (f"{'page cache':<10} {'dataset':<14} {'files':>7} {'MiB':>6}  {'tool':<10} "
            f"{'seconds':>8} {'MB/s':>7}  {'vs sha256sum':>13}  {'repro call':>10}")
    print(head)
    print("-" * len(head))
    for condition in conditions:
        for ds in datasets:
            sha = statistics.median(results[(condition, ds.name, "sha256sum")].wall)
            for tool in tools:
                res = results[(condition, ds.name, tool)]
                wall = statistics.median(res.wall)
                speed = ds.size / 1e6 / wall
                ratio = sha / wall
                inner = f"{statistics.median(res.inner):.2f} s" if res.inner else ""
                print(f"{condition:<10} {ds.name:<14} {ds.files:>7,} {ds.size / 2**20:>6,.0f}  "
                      f"{tool:<10} {wall:>8.2f} {speed:>7,.0f}  {ratio:>12.1f}x  {inner:>10}")
        print()
    print("seconds: whole process, median; for repro it includes interpreter start-up and "
          "imports\n('repro call' is the hash_paths call alone). vs sha256sum: its time / "
          "this time.")


if __name__ == "__main__":
    sys.exit(main())
