"""Benchmark `repro diff`'s engine: two runs with 500 packages and 100k-file data listings.

Target (the issue): diff_runs under 0.5 s, listing load included. Builds the manifests in
memory and the listings as `repro/listing/v1` JSON files in a temporary directory (loaded with
json, as the CLI will), then times several repetitions and prints medians.

    python benchmarks/diff.py [--files 100000] [--packages 500] [--repeat 7]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from repro.judge import compare
from repro.record import manifest


def make_manifest(run_id: str, packages: dict[str, str], listing: str) -> dict[str, Any]:
    return {
        "schema": "repro/run/v1",
        "run": {"run_id": run_id, "status": "succeeded", "started_at": "2026-11-23T14:25:01Z",
                "exit_code": 0, "duration_s": 8.4, "host": "gpu-box-3", "pid": 41233},
        "command": {"argv": ["python", "train.py", "--lr", "0.01"], "cwd": "."},
        "seed": {"value": 2916384573, "source": "generated"},
        "determinism": {"level": "strict", "threads": 2,
                        "env": {"REPRO_SEED": "2916384573", "PYTHONHASHSEED": "2916384573"},
                        "hook": {"ran": True, "processes": 3, "seeded": ["random", "torch"]}},
        "code": {"commit": "9fceb02d0ae598e95dc970b74767f19372d61af8", "branch": "main",
                 "dirty": False, "patch": None, "untracked": []},
        "environment": {"python": {"version": "3.11.7", "implementation": "CPython"},
                        "packages": packages,
                        "lockfile": {"path": "requirements.lock", "hash": "blake3:00",
                                     "matches": True, "mismatches": [], "unlocked": []}},
        "hardware": {"cpu": {"model": "AMD EPYC 7B13", "logical_cores": 16},
                     "gpus": [{"index": 0, "name": "NVIDIA H100", "uuid": "GPU-1"}]},
        "data": {"data/images": {"kind": "dir", "hash": "blake3:aa", "size": 1 << 30,
                                 "files": 100_000, "listing": listing}},
        "outputs": {"model.pt": {"kind": "file", "hash": "blake3:bb", "size": 1 << 20}},
        "metrics": {"final": {"loss": 0.0123, "accuracy": 0.98}},
        "fingerprint": "blake3:ff",
    }


def make_runs(n_files: int, n_packages: int) -> tuple[dict[str, Any], dict[str, Any],
                                                        dict[str, list[Any]], dict[str, list[Any]]]:
    """Run b: 1% of files modified, 100 added, 100 removed; 5% of packages changed."""
    packages_a = {f"package-{i:04d}": f"1.{i}.0" for i in range(n_packages)}
    packages_b = {k: (v + ".post1" if i % 20 == 0 else v)
                  for i, (k, v) in enumerate(packages_a.items())}
    files_a = {f"class_{i % 1000:03d}/img_{i:07d}.png": [f"blake3:{i:064x}", 4096 + i]
               for i in range(n_files)}
    files_b = dict(files_a)
    for i in range(0, n_files, 100):
        key = f"class_{i % 1000:03d}/img_{i:07d}.png"
        files_b[key] = [f"blake3:{i + 1:064x}", 4096 + i]
    for i in range(100):
        files_b.pop(f"class_{(i + 1) % 1000:03d}/img_{i + 1:07d}.png", None)
        files_b[f"new/img_{i:07d}.png"] = [f"blake3:{i:064x}", 1]
    a = make_manifest("20261123T142501.123456Z-3f2a", packages_a, "data/0.json")
    b = copy.deepcopy(make_manifest("20261124T090000.000001Z-9c1d", packages_b, "data/0.json"))
    b["data"]["data/images"]["hash"] = "blake3:ab"
    b["metrics"]["final"]["loss"] = 0.0125
    return a, b, files_a, files_b


def write_listing(path: Path, dir_path: str, files: dict[str, list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": "repro/listing/v1", "path": dir_path, "files": files}
    path.write_text(json.dumps(doc), encoding="utf-8")


def load_listings(run_dir: Path, m: manifest.Manifest) -> dict[str, Any]:
    """What the CLI does: every hashed directory's listing, keyed by its listing file name.

    JSON's [hash, size] lists are passed as they are: diff_runs reads item 0 of each.
    """
    out: dict[str, Any] = {}
    for section in (m.data, m.outputs):
        for entry in section.values():
            name = entry.listing
            if name:
                with open(run_dir / name, encoding="utf-8") as f:
                    out[name] = json.load(f)["files"]
    return out


def time_once(a: manifest.Manifest, b: manifest.Manifest, run_a: Path, run_b: Path,
              ) -> tuple[float, float, compare.DiffReport]:
    """(engine seconds, load + engine seconds, report) for one repetition."""
    t0 = time.perf_counter()
    la = load_listings(run_a, a)
    lb = load_listings(run_b, b)
    t1 = time.perf_counter()
    report = compare.diff_runs(a, b, listings_a=la, listings_b=lb)
    json.dumps(report.to_dict())
    t2 = time.perf_counter()
    return t2 - t1, t2 - t0, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--packages", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    plain_a, plain_b, files_a, files_b = make_runs(args.files, args.packages)
    a, b = manifest.from_dict(plain_a), manifest.from_dict(plain_b)  # as a CLI call reads them
    with tempfile.TemporaryDirectory() as tmp:
        run_a, run_b = Path(tmp, "a"), Path(tmp, "b")
        write_listing(run_a / "data/0.json", "data/images", files_a)
        write_listing(run_b / "data/0.json", "data/images", files_b)
        size_mb = (run_a / "data/0.json").stat().st_size / 1e6
        # A CLI process holds only what it loaded (keeping these alive doubles the time the
        # cyclic GC spends during json.load).
        del files_a, files_b

        engine: list[float] = []
        total: list[float] = []
        for _ in range(args.repeat):
            seconds, with_load, report = time_once(a, b, run_a, run_b)
            engine.append(seconds)
            total.append(with_load)
            del report  # not alive during the next repetition, as in one CLI call
        _, _, report = time_once(a, b, run_a, run_b)

    files = report.sections["data"].changes[0].detail["files"]
    print(f"runs: {args.packages} packages, {args.files} files per listing "
          f"({size_mb:.1f} MB of JSON each); {args.repeat} repetitions")
    print(f"found: {len(report.sections['environment'].changes)} package changes, "
          f"{len(files['added'])} added / {len(files['removed'])} removed / "
          f"{len(files['modified'])} modified files; verdict: {report.verdict}")
    print(f"diff_runs + to_dict + json.dumps:    median {statistics.median(engine) * 1000:6.1f} ms")
    print(f"json.load listings + diff:           median {statistics.median(total) * 1000:6.1f} ms"
          "   (target < 500 ms)")


if __name__ == "__main__":
    main()
