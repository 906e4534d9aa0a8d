"""What recording a run costs with repro and with its peers, on the same small torch script.

    python benchmarks/peers.py [--runs 5] [--tools repro,sacred,dvc,mlflow,wandb]

Each peer is installed from PyPI into its own temporary venv (torch comes from this
interpreter's site-packages through a .pth file, so it is not downloaded again), and each
works in its own copy of a committed git repo holding the training script:

- bare:   python train.py
- repro:  repro run --quiet -- python train.py          (this interpreter's repro)
- sacred: python train_sacred.py  (an Experiment with a FileStorageObserver around the script)
- dvc:    dvc exp run --force     (a dvc.yaml stage running `python train.py`)
- mlflow: python train_mlflow.py  (a run in a local file store, ./mlruns, logging the loss)
- wandb:  python train_wandb.py   (WANDB_MODE=offline, logging the loss)

The commands run interleaved, `--runs` times each; the medians of wall and CPU time (user +
system of the command and everything it waited for) are printed with their ratio to bare.
Installing the peers takes minutes and needs network access to PyPI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from hook_overhead import time_once  # benchmarks/ is on sys.path when run as a script
from run_overhead import ENV, TORCH_SCRIPT, make_repo

PACKAGES = {"sacred": "sacred", "dvc": "dvc", "mlflow": "mlflow", "wandb": "wandb"}

SACRED = """\
from sacred import Experiment
from sacred.observers import FileStorageObserver

ex = Experiment("train")
ex.observers.append(FileStorageObserver("sacred_runs"))


@ex.automain
def main():
    exec(compile(open("train.py").read(), "train.py", "exec"), {"__name__": "__main__"})
"""
MLFLOW = """\
import mlflow

mlflow.set_tracking_uri("file:./mlruns")
with mlflow.start_run():
    scope = {"__name__": "__main__"}
    exec(compile(open("train.py").read(), "train.py", "exec"), scope)
    mlflow.log_metric("loss", scope["loss"].item())
"""
WANDB = """\
import wandb

run = wandb.init(project="bench", mode="offline")
scope = {"__name__": "__main__"}
exec(compile(open("train.py").read(), "train.py", "exec"), scope)
run.log({"loss": scope["loss"].item()})
run.finish()
"""
DVC_YAML = """\
stages:
  train:
    cmd: python train.py
    deps: [train.py]
"""


def torch_site() -> str:
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        raise SystemExit("torch is not installed in this interpreter")
    return str(Path(spec.origin).parent.parent)


def make_venv(where: Path, package: str) -> Path:
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "zz-torch.pth").write_text(torch_site() + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", package], check=True)
    return python


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
    subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)


def setup(tool: str, tmp: Path) -> tuple[list[str], Path, dict[str, str]]:
    """(argv, repo, environment) of one tool's case."""
    (tmp / tool).mkdir()
    repo = make_repo(tmp / tool)
    (repo / "train.py").write_text(TORCH_SCRIPT)
    env = dict(ENV)
    python = sys.executable
    if tool in PACKAGES:
        python = str(make_venv(tmp / f"venv-{tool}", PACKAGES[tool]))
        env["PATH"] = str(Path(python).parent) + os.pathsep + env.get("PATH", "")
    if tool == "bare":
        argv = [python, "train.py"]
    elif tool == "repro":
        repro = shutil.which("repro", path=str(Path(sys.executable).parent)) or "repro"
        argv = [repro, "run", "--quiet", "--", python, "train.py"]
    elif tool == "sacred":
        (repo / "train_sacred.py").write_text(SACRED)
        argv = [python, "train_sacred.py"]
    elif tool == "mlflow":
        (repo / "train_mlflow.py").write_text(MLFLOW)
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"  # mlflow 3 refuses a file store without it
        argv = [python, "train_mlflow.py"]
    elif tool == "wandb":
        (repo / "train_wandb.py").write_text(WANDB)
        env["WANDB_MODE"] = "offline"
        env["WANDB_SILENT"] = "true"
        argv = [python, "train_wandb.py"]
    elif tool == "dvc":
        subprocess.run([python, "-m", "dvc", "init", "-q"], cwd=repo, check=True, env=env)
        (repo / "dvc.yaml").write_text(DVC_YAML)
        argv = [python, "-m", "dvc", "exp", "run", "--force", "-q"]  # unforced: cached, skipped
    else:
        raise SystemExit(f"unknown tool {tool}")
    with open(repo / ".gitignore", "a") as f:
        f.write("sacred_runs/\nmlruns/\nwandb/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"{tool} setup")
    return argv, repo, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tools", default="repro,sacred,dvc,mlflow,wandb")
    args = parser.parse_args()
    tools = ["bare", *[t for t in args.tools.split(",") if t]]
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="repro-peers-") as tmp:
        cases = {}
        for tool in tools:
            print(f"setting up {tool} ...", file=sys.stderr, flush=True)
            cases[tool] = setup(tool, Path(tmp))
        for tool, (argv, repo, env) in list(cases.items()):  # warm caches; drop what fails
            done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{tool} failed ({done.returncode}), left out:\n{done.stderr[-2000:]}",
                      file=sys.stderr)
                del cases[tool]
        tools = list(cases)
        times: dict[str, list[tuple[float, float]]] = {t: [] for t in tools}
        for _ in range(args.runs):
            for tool, (argv, repo, env) in cases.items():
                os.chdir(repo)
                times[tool].append(time_once(argv, env))
        os.chdir(here)
    bare_wall = statistics.median(t[0] for t in times["bare"])
    bare_cpu = statistics.median(t[1] for t in times["bare"])
    print(f"{'tool':8} {'wall ms':>9} {'x bare':>7} {'cpu ms':>9} {'x bare':>7}   (medians of "
          f"{args.runs}, interleaved)")
    for tool in tools:
        wall = statistics.median(t[0] for t in times[tool])
        cpu = statistics.median(t[1] for t in times[tool])
        print(f"{tool:8} {wall:9.0f} {wall / bare_wall:7.2f} {cpu:9.0f} {cpu / bare_cpu:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
