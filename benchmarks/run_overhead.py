"""What `repro run` adds to a command: `repro run -- python -c pass` vs `python -c pass`.

Builds a throwaway committed repo with a matching lockfile, then times the commands
interleaved (so machine noise hits all alike) and reports medians and their differences.

    python benchmarks/run_overhead.py [--runs 30]
    python benchmarks/run_overhead.py --torch [--runs 10]
    git worktree add /tmp/main-src main
    python benchmarks/run_overhead.py --against /tmp/main-src   # A/B of a branch's code

`--torch` times a small torch training script (committed in the repo) bare, under
`repro run --determinism seed` and under `repro run` at the default `strict` level.

`--params` gives the command hyperparameters and a YAML config to read (`--lr 0.01
--batch-size 32 --config configs/base.yaml`), which `repro run` records in `params`.
`--baseline REPRO` times another repro executable too, interleaved with this one (an A/B of
two versions, e.g. `--baseline /work/main/.venv/bin/repro`; `--repro` names the other side
when both should start alike, e.g. two wrappers running `python -m repro` from two checkouts).

Target: at most 0.10 s added (median wall time), for `python -c pass` and for the torch
script at `strict`. CPU time (user + system of the command and every process it waited for)
is printed too: on a loaded machine wall time is CPU time stretched by the load, so compare
CPU medians, or interleaved wall medians, never numbers from different moments.

All commands run with bytecode caches (PYTHONDONTWRITEBYTECODE is unset for them and the
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
from importlib import metadata
from pathlib import Path

from hook_overhead import time_once  # benchmarks/ is on sys.path when run as a script

TARGET_S = 0.10

TORCH_SCRIPT = """\
import torch

model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(256, 32), torch.randn(256, 1)
for step in range(20):
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"loss={loss.item():.4f}")
"""


CONFIG = """\
model:
  depth: 12
  width: 256
  dropout: 0.1
optim:
  name: adamw
  lr: 0.0003
  betas: [0.9, 0.999]
data:
  batch_size: 32
  workers: 4
"""
PARAMS = ["--lr", "0.01", "--batch-size", "32", "--config", "configs/base.yaml"]


def make_repo(where: Path) -> Path:
    repo = where / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    (repo / ".gitignore").write_text(".repro/\n")
    (repo / "requirements.lock").write_text(
        "".join(f"{n}=={metadata.version(n)}\n" for n in ("pyyaml", "blake3", "typer", "rich")))
    (repo / "train.py").write_text(TORCH_SCRIPT)
    (repo / "configs").mkdir()
    (repo / "configs" / "base.yaml").write_text(CONFIG)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "bench"], cwd=repo, check=True, env=env)
    return repo


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system, the command's and every process it waited
    for: git, the child), of one run in `cwd`."""
    os.chdir(cwd)
    wall, cpu = time_once(argv, ENV)
    return wall / 1000.0, cpu / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--torch", action="store_true",
                        help="a small torch training script instead of `python -c pass`")
    parser.add_argument("--params", action="store_true",
                        help="hyperparameters and a YAML config on the command line")
    parser.add_argument("--baseline", metavar="REPRO",
                        help="another repro executable to time alongside (A/B)")
    parser.add_argument("--repro", metavar="REPRO", help="the repro executable to time "
                        "(default: the one beside this Python)")
    parser.add_argument("--against", metavar="SRC",
                        help="also time `repro run` from another source tree (e.g. a worktree "
                             "of main), interleaved with this one's, both as `python -m repro` "
                             "with PYTHONPATH set: an A/B of the code alone")
    args = parser.parse_args()
    repro = args.repro or shutil.which("repro", path=str(Path(sys.executable).parent)) or "repro"
    extra = PARAMS if args.params else []
    if args.torch:
        bare_cmd = [sys.executable, "train.py", *extra]
        cases = {"python train.py": bare_cmd,
                 "repro run --determinism seed": [repro, "run", "--determinism", "seed", "--",
                                                  *bare_cmd],
                 "repro run (strict)": [repro, "run", "--", *bare_cmd]}
    else:
        bare_cmd = [sys.executable, "-c", "pass", *extra]
        cases = {"python -c pass": bare_cmd,
                 "repro run -- python -c pass": [repro, "run", "--", *bare_cmd]}
    if args.baseline:
        cases["baseline: repro run (strict)"] = [args.baseline, "run", "--", *bare_cmd]
    if args.against:
        this = str(Path(__file__).resolve().parent.parent)
        for label, src in (("A/B: --against", args.against), ("A/B: this tree", this)):
            cases[label] = ["env", f"PYTHONPATH={src}", sys.executable, "-m", "repro", "run",
                            "--", *bare_cmd]
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in cases}
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp))
        for _ in range(3):  # warm the page cache, the stat cache and the bytecode caches
            for argv in cases.values():
                timed(argv, repo)
        for _ in range(args.runs):
            for label, argv in cases.items():
                times[label].append(timed(argv, repo))
        os.chdir(here)
    wall = {label: statistics.median(t[0] for t in ts) for label, ts in times.items()}
    cpu = {label: statistics.median(t[1] for t in ts) for label, ts in times.items()}
    bare_label = next(iter(cases))
    b, bc = wall[bare_label], cpu[bare_label]
    failed = False
    print(f"{bare_label:30} wall {b * 1000:7.1f} ms  cpu {bc * 1000:7.1f} ms  "
          f"(medians, n={args.runs}, interleaved)")
    for label in list(cases)[1:]:
        w, c = wall[label], cpu[label]
        added = w - b
        verdict = "PASS" if added <= TARGET_S else "FAIL"
        print(f"{label:30} wall {w * 1000:7.1f} ms  cpu {c * 1000:7.1f} ms  added: wall "
              f"{added * 1000:6.1f} ms ({w / b:.2f}x), cpu {(c - bc) * 1000:6.1f} ms  "
              f"wall target <= {TARGET_S * 1000:.0f} ms: {verdict}")
        failed = failed or added > TARGET_S
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
