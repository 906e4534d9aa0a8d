"""What `--data-stats` costs on a large CSV: rows, columns, types and nulls of a 1 GiB file.

Writes a CSV of `--gib` GiB (default 1) in a temporary directory (an id, two floats with 1 in
20 empty, an int label, a short string), then, in fresh child processes:

- its BLAKE3 hash (what every run pays for an input anyway), for scale;
- the statistics, with a budget large enough to read it all (wall and CPU seconds, MB/s of
  CPU, peak memory: on a loaded machine wall time is CPU time stretched by the load, so
  compare CPU);
- the statistics again through the cache keyed by the content hash (what the next run pays);
- with the default budget of 60 s cut to `--budget` seconds, to show a partial result.

    python benchmarks/data_stats.py              # 1 GiB, a few minutes on a loaded machine
    python benchmarks/data_stats.py --gib 0.1    # quick

The data is deleted at the end. Run on an idle machine for stable numbers; the medians of
`--rounds` runs are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from repro.capture import data, datastats
path, mode, budget, cache = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
t = time.perf_counter()
c = time.process_time()
if mode == "hash":
    out = {"hash": data.hash_file(path)}
elif mode == "stats":
    out = datastats.table_stats(path, "csv", datastats.Budget(budget))
else:  # through collect, with the cache
    digest = sys.argv[5]
    out = datastats.collect({"big.csv": {"kind": "file", "hash": digest}}, Path(path).parent,
                            seconds=budget, cache_dir=Path(cache))["big.csv"]
seconds = time.perf_counter() - t
cpu = time.process_time() - c
with open("/proc/self/status") as f:
    peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_kib": peak, "result": out}))
"""


def write_csv(path: Path, size: int) -> int:
    rng = random.Random(0)
    rows = 0
    with open(path, "w", newline="") as f:
        f.write("id,x,y,label,name\n")
        written = 0
        while written < size:
            chunk = []
            for _ in range(10_000):
                x = "" if rng.random() < 0.05 else f"{rng.random():.6f}"
                chunk.append(f"{rows},{x},{rng.gauss(0, 1):.5f},{rng.randrange(10)},"
                             f"item{rng.randrange(1000)}\n")
                rows += 1
            text = "".join(chunk)
            f.write(text)
            written += len(text)
    return rows


def child(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True,
                          timeout=3600, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=5.0,
                        help="a short budget, to show a partial result")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        t = time.perf_counter()
        rows = write_csv(path, int(args.gib * 1024**3))
        size = path.stat().st_size
        print(f"wrote {size / 1e6:,.0f} MB, {rows:,} rows in {time.perf_counter() - t:.1f} s")
        cache = str(Path(tmp) / "cache")
        runs: dict[str, list[dict[str, object]]] = {"hash": [], "stats": [], "cached": []}
        digest = ""
        for _ in range(args.rounds):  # interleaved: machine noise hits all alike
            h = child(str(path), "hash", "0", "-")
            digest = str(h["result"]["hash"])  # type: ignore[index]
            runs["hash"].append(h)
            runs["stats"].append(child(str(path), "stats", "3600", "-"))
            child(str(path), "collect", "3600", cache, digest)  # fills the cache once
            runs["cached"].append(child(str(path), "collect", "3600", cache, digest))
        partial = child(str(path), "stats", str(args.budget), "-")
        os.sync()

    def median(key: str, what: str = "seconds") -> float:
        return statistics.median(float(r[what]) for r in runs[key])  # type: ignore[arg-type]

    stats = runs["stats"][0]["result"]
    assert isinstance(stats, dict) and stats["rows"] == rows, stats
    peak = max(int(r["peak_kib"]) for r in runs["stats"])  # type: ignore[call-overload]
    for label, key in (("hash (BLAKE3)", "hash"), ("statistics", "stats")):
        wall, cpu = median(key), median(key, "cpu")
        print(f"{label:24} wall {wall:7.2f} s  cpu {cpu:7.2f} s  "
              f"{size / 1e6 / cpu:6.0f} MB/s of cpu")
    print(f"statistics peak RSS {peak / 1024:.0f} MiB ({rows:,} rows, "
          f"{len(stats['columns'])} columns)")
    print(f"statistics, cached       wall {median('cached') * 1000:7.1f} ms")
    result = partial["result"]
    assert isinstance(result, dict)
    print(f"budget {args.budget:g} s             partial={result.get('partial')} after "
          f"{result['rows']:,} rows, {int(result.get('read_bytes', 0)) / 1e6:,.0f} MB read "
          f"(medians of {args.rounds} interleaved rounds)")
    print(json.dumps(stats["columns"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
