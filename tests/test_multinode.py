"""Multi-node runs with real processes: torchrun over two "nodes" on loopback (gloo, CPU), a
simulated `srun` (two `repro run` processes with one job's SLURM variables), a killed member,
a refused launch and a member on another commit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import PYTHON, git
from tests.test_manifest_docs import documented, undocumented

DDP = """\
import datetime, os, random
import torch
import torch.distributed as dist
# A peer that died makes the others fail within a minute instead of hanging for 30.
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
rank = dist.get_rank()
torch.set_num_threads(1)
model = torch.nn.Linear(4, 1)
ddp = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
for _ in range(3):
    loss = ddp(torch.randn(8, 4)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
os.makedirs("out", exist_ok=True)
weights = [p.detach().flatten().tolist() for p in model.parameters()]
with open(f"out/rank{rank}.txt", "w") as f:
    f.write(f"{random.random()!r} {torch.rand(1).item()!r} {weights}\\n")
dist.barrier()  # every rank is done before any leaves: gloo aborts a rank whose peer left
dist.destroy_process_group()
"""
TASK = """\
import os, random, sys, time
os.makedirs("out", exist_ok=True)
with open(f"out/task{os.environ.get('SLURM_PROCID', os.environ.get('REPRO_NODE_RANK'))}.txt", "w") as f:
    f.write(repr(random.random()))
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def commit(repo: Path, name: str, text: str) -> None:
    (repo / name).write_text(text)
    (repo / ".gitignore").write_text(".repro/\nout/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(repo: Path, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([PYTHON, "-m", "repro", "run", "--quiet", *args], cwd=repo,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, err


def runs(repo: Path, home: Path | None = None) -> list[Path]:
    folder = (home or repo / ".repro") / "runs"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def record(run_dir: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((run_dir / "manifest.yaml").read_text())  # type: ignore[no-any-return]


def torchrun_pair(repo: Path, seed: int, job: str = "job42") -> dict:  # type: ignore[type-arg]
    port = str(free_port())
    procs = [start(repo, ["--seed", str(seed), "--output", "out", "--", PYTHON, "-m",
                          "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
                          "--nproc-per-node", "2", "--rdzv-id", job, "--master-addr",
                          "127.0.0.1", "--master-port", port, "ddp.py"])
             for rank in (0, 1)]
    try:
        for proc in procs:
            code, err = finish(proc)
            assert code == 0, err
    finally:
        for proc in procs:  # a node left running would hold its port and CPU for good
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return {path.name: path.read_bytes() for path in sorted((repo / "out").iterdir())}


@pytest.mark.slow
def test_two_torchrun_nodes_make_one_run_with_one_seed_and_bitwise_replays(repo: Path) -> None:
    pytest.importorskip("torch")
    commit(repo, "ddp.py", DDP)
    first = torchrun_pair(repo, seed=11)
    (only,) = runs(repo)  # one run for the two nodes
    m = record(only)
    d = m["distributed"]
    assert (d["job"], d["launcher"], d["nnodes"], d["world_size"]) == ("rdzv:job42", "torchrun",
                                                                       2, 4)
    assert d["complete"] is True and d["mismatches"] == [] and m["run"]["status"] == "succeeded"
    assert [(x["node_rank"], x["status"], x["ranks"]) for x in d["members"]] == [
        (0, "succeeded", [0, 1]), (1, "succeeded", [2, 3])]
    assert {x["seed"] for x in d["members"]} == {11} and m["seed"] == {"value": 11,
                                                                       "source": "flag"}
    seeds = {r: s for x in d["members"] for r, s in x["rank_seeds"].items()}
    assert sorted(seeds) == ["0", "1", "2", "3"] and len(set(seeds.values())) == 4
    member = yaml.safe_load((only / "members" / "1" / "manifest.yaml").read_text())
    assert member["run"]["run_id"] == m["run"]["run_id"]
    assert (only / "members" / "1" / "stdout.log").exists()
    assert list(m["outputs"]) == ["out"] and m["outputs"]["out"]["files"] == 4
    # distinct per-rank streams: every rank drew other numbers
    assert len(first) == 4 and len({v.split(b" [")[0] for v in first.values()}) == 4

    second = torchrun_pair(repo, seed=11, job="job43")  # the next job: a new run, same results
    again = runs(repo)
    assert len(again) == 2
    m2 = record(again[-1])
    assert m2["distributed"]["complete"] is True and second == first
    assert m2["outputs"]["out"]["hash"] == m["outputs"]["out"]["hash"]
    # Its own job id and port are where the nodes met, not the recipe: the same command.
    assert m2["fingerprint"] == m["fingerprint"]
    done = subprocess.run([PYTHON, "-m", "repro", "diff", only.name, again[-1].name],
                          cwd=repo, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("same recipe, same results")
    assert "argv (not counted)" in done.stdout

    # verify: a multi-node run needs its nodes, or --single-node (4 local ranks, same seeds)
    done = subprocess.run([PYTHON, "-m", "repro", "verify", only.name], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "ran on 2 nodes" in done.stderr
    assert "--single-node" in done.stderr
    done = subprocess.run([PYTHON, "-m", "repro", "verify", only.name, "--single-node",
                           "--json", "--yes"], cwd=repo, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"] == "bitwise"


SRUN = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_NNODES": "2"}


def task(rank: int, step: int) -> dict[str, str]:
    return {**SRUN, "SLURM_STEP_ID": str(step), "SLURM_PROCID": str(rank),
            "SLURM_NODEID": str(rank)}


@pytest.mark.slow
def test_srun_tasks_make_one_record_and_a_killed_member_is_missing(repo: Path) -> None:
    commit(repo, "task.py", TASK)
    procs = [start(repo, ["--", PYTHON, "task.py"], task(rank, 0)) for rank in (1, 0)]
    for proc in procs:
        code, err = finish(proc)
        assert code == 0, err
    (run_dir,) = runs(repo)
    d = record(run_dir)["distributed"]
    assert (d["job"], d["launcher"], d["complete"], d["world_size"]) == ("slurm:4242.0", "srun",
                                                                         True, 2)
    assert [x["ranks"] for x in d["members"]] == [[0], [1]]  # REPRO_RANK from SLURM_PROCID
    assert undocumented({"distributed": d}, documented()) == []  # docs/manifest.md
    assert set(d["members"][1]) <= set(documented()["distributed"]["members"][0])
    assert (repo / "out" / "task0.txt").read_text() != (repo / "out" / "task1.txt").read_text()
    assert record(run_dir)["seed"]["source"] == "job"
    # srun's tasks cannot be replayed on one machine: replay does not offer --single-node
    done = subprocess.run([PYTHON, "-m", "repro", "replay", run_dir.name, "--yes"], cwd=repo,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 125 and "ran on 2 nodes" in done.stderr
    assert "--single-node" not in done.stderr and "srun on as many tasks" in done.stderr
    done = subprocess.run([PYTHON, "-m", "repro", "runs", "--json"], cwd=repo,
                          capture_output=True, text=True, timeout=60)
    (row,) = json.loads(done.stdout)["runs"]  # one row for the two tasks
    assert row["distributed"] == {"job": "slurm:4242.0", "nnodes": 2, "present": 2,
                                  "complete": True, "world_size": 2}
    wide = {**os.environ, "COLUMNS": "200"}  # no column of the tables cut short
    done = subprocess.run([PYTHON, "-m", "repro", "show", "latest"], cwd=repo, env=wide,
                          capture_output=True, text=True, timeout=60)
    assert "slurm:4242.0 (srun, 2 nodes, world size 2)  complete" in done.stdout
    assert "node 1" in done.stdout and "members/1/manifest.yaml" in done.stdout

    # Step 1: task 1 is killed (repro and its command) while it runs.
    victim = start(repo, ["--", PYTHON, "task.py", "60"], task(1, 1))
    member = None
    for _ in range(300):
        member = next((p / "members" / "1" / "manifest.yaml" for p in runs(repo)
                       if p != run_dir and (p / "members" / "1" / "manifest.yaml").exists()), None)
        if member is not None and b"REPRO_SEED" in member.read_bytes():
            break
        time.sleep(0.1)
    assert member is not None
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    began = time.monotonic()
    code, err = finish(start(repo, ["--member-timeout", "60", "--", PYTHON, "task.py"],
                             task(0, 1)))
    assert code == 0, err
    assert time.monotonic() - began < 30  # a member dead on this host is not waited for
    m = record(member.parent.parent.parent)
    d = m["distributed"]
    assert d["complete"] is False and m["run"]["status"] == "succeeded"
    assert [(x["node_rank"], x["status"]) for x in d["members"]] == [(0, "succeeded"),
                                                                     (1, "missing")]
    assert "killed" in d["members"][1]["reason"] and "node 1 is missing" in m["run"]["note"]
    assert "node 1 is missing" in err
    done = subprocess.run([PYTHON, "-m", "repro", "diff", run_dir.name, m["run"]["run_id"],
                           "--json"], cwd=repo, capture_output=True, text=True, timeout=60)
    topology = {c["key"]: (c["a"], c["b"])
                for c in json.loads(done.stdout)["sections"]["topology"]["changes"]}
    assert topology["complete"] == (True, False)
    done = subprocess.run([PYTHON, "-m", "repro", "runs"], cwd=repo, capture_output=True,
                          text=True, timeout=60, env=wide)
    assert "(1/2 nodes)" in done.stdout and "(2 nodes)" in done.stdout

    # Step 2: task 1 never comes at all.
    code, err = finish(start(repo, ["--member-timeout", "1", "--", PYTHON, "task.py"],
                             task(0, 2)))
    assert code == 0, err
    d = record(runs(repo)[-1])["distributed"]
    assert d["complete"] is False and "never joined" in d["members"][1]["reason"]


def test_a_multi_node_launch_without_a_job_id_is_refused(repo: Path) -> None:
    proc = start(repo, ["--", PYTHON, "-m", "torch.distributed.run", "--nnodes", "2",
                        "--node-rank", "0", "--nproc-per-node", "2", "train.py"])
    code, err = finish(proc, timeout=60)
    assert code == 125
    assert "error: torchrun starts a job over several nodes (--nnodes 2)" in err
    assert "hint: give every node the same id" in err
    assert runs(repo) == []


@pytest.mark.slow
def test_a_member_on_another_commit_is_flagged(repo: Path, tmp_path: Path) -> None:
    commit(repo, "task.py", TASK)
    other = tmp_path / "other"
    git(repo, "worktree", "add", "-q", str(other))
    commit(other, "task.py", TASK + "# changed\n")
    home = tmp_path / "store"  # the store every node shares
    env = {"REPRO_HOME": str(home), "REPRO_NNODES": "2"}
    procs = [start(repo, ["--group", "exp-1", "--", PYTHON, "task.py"],
                   {**env, "REPRO_NODE_RANK": "0"}),
             start(other, ["--group", "exp-1", "--", PYTHON, "task.py"],
                   {**env, "REPRO_NODE_RANK": "1"})]
    errs = []
    for proc in procs:
        code, err = finish(proc)
        assert code == 0, err
        errs.append(err)
    (run_dir,) = runs(repo, home)
    m = record(run_dir)
    assert [(x["key"], x["node_rank"]) for x in m["distributed"]["mismatches"]] == [("commit", 1)]
    assert m["distributed"]["complete"] is True
    assert "node 1: commit" in errs[0] and "node 1: commit" in m["run"]["note"]


def test_a_one_node_job_and_a_lone_member_read_as_words(repo: Path) -> None:
    """`--group` on one node: "(1 node)"; a member whose node 0 never came: no "None"."""
    commit(repo, "task.py", TASK)
    wide = {**os.environ, "COLUMNS": "200"}
    code, err = finish(start(repo, ["--group", "one", "--", PYTHON, "task.py"]))
    assert code == 0, err
    done = subprocess.run([PYTHON, "-m", "repro", "runs"], cwd=repo, capture_output=True,
                          text=True, timeout=60, env=wide)
    assert "(1 node)" in done.stdout and "(1 nodes)" not in done.stdout
    code, err = finish(start(repo, ["--group", "lone", "--", PYTHON, "task.py"],
                             {"REPRO_NODE_RANK": "1", "REPRO_NNODES": "2"}))
    assert code == 0, err
    newest = max(runs(repo), key=lambda p: p.name)
    done = subprocess.run([PYTHON, "-m", "repro", "show", newest.name], cwd=repo,
                          capture_output=True, text=True, timeout=60, env=wide)
    assert done.returncode == 0, done.stderr
    assert "None" not in done.stdout, done.stdout
    done = subprocess.run([PYTHON, "-m", "repro", "runs"], cwd=repo, capture_output=True,
                          text=True, timeout=60, env=wide)
    # before: "abandoned (2 nodes)", as if both nodes had recorded
    assert "(2 nodes, no record from node 0)" in done.stdout, done.stdout


@pytest.mark.slow
def test_a_node_interrupted_is_not_a_world_size_mismatch(repo: Path) -> None:
    """scancel (SIGTERM) of one task: its rank never writes its probe. The record says that
    node was interrupted and its rank left no probe, not that the job's world size was wrong."""
    commit(repo, "task.py", "import os, time\ntime.sleep(float(os.environ['NAP']))\n")
    victim = start(repo, ["--", PYTHON, "task.py"], {**task(1, 0), "NAP": "60"})
    member = None
    for _ in range(300):
        member = next((p / "members" / "1" / "manifest.yaml" for p in runs(repo)
                       if (p / "members" / "1" / "manifest.yaml").exists()), None)
        if member is not None and b"REPRO_SEED" in member.read_bytes():
            break
        time.sleep(0.1)
    assert member is not None
    time.sleep(0.5)  # the task's interpreter is up (its hook marker written)
    os.killpg(victim.pid, signal.SIGTERM)
    code, _ = finish(victim)
    assert code == 128 + signal.SIGTERM
    code, err = finish(start(repo, ["--", PYTHON, "task.py"], {**task(0, 0), "NAP": "0"}))
    m = record(member.parent.parent.parent)
    d = m["distributed"]
    assert [(x["node_rank"], x["status"]) for x in d["members"]] == [(0, "succeeded"),
                                                                     (1, "interrupted")]
    assert d["mismatches"] == []  # rank 1 ran: it was killed before its probe
    assert d["warnings"] == ["world size 2: rank 1 left no probe (node 1 interrupted: a rank "
                             "killed before it exits writes none)"]
    assert "node 1 interrupted" in err and "world_size" not in err


@pytest.mark.slow
def test_a_rank_that_left_no_probe_is_the_jobs_mismatch_in_show(repo: Path) -> None:
    commit(repo, "task.py", "import os\nif os.environ['SLURM_PROCID'] == '1':\n"
                            "    os._exit(0)  # no probe at exit\n")
    procs = [start(repo, ["--", PYTHON, "task.py"], task(rank, 0)) for rank in (1, 0)]
    for proc in procs:
        code, err = finish(proc)
        assert code == 0, err
    d = record(runs(repo)[0])["distributed"]
    assert d["mismatches"] == [{"key": "world_size", "node_rank": None, "value": 1,
                                "expected": 2}]
    done = subprocess.run([PYTHON, "-m", "repro", "show", "latest"], cwd=repo,
                          env={**os.environ, "COLUMNS": "200"}, capture_output=True,
                          text=True, timeout=60)
    assert "the job: world_size 1 (expected: 2)" in done.stdout and "None" not in done.stdout
