"""Job identity from launchers and SLURM (capture/job.py, cmdline's launcher model), and the
merged multi-node record's checks (judge/members.py): table-driven, literal data."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro import errors
from repro.capture import cmdline
from repro.capture import job as jobs
from repro.judge import members
from repro.record import manifest

PY = "/venv/bin/python"
TORCHRUN = ["torchrun", "--nnodes", "2", "--nproc-per-node", "2"]
SRUN = {"SLURM_JOB_ID": "1234", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2",
        "SLURM_STEP_NUM_TASKS": "2", "SLURM_NNODES": "2"}


@pytest.mark.parametrize(("argv", "name", "options"), [
    (["torchrun", "--nnodes=2", "--node-rank", "1", "t.py", "--lr", "1"], "torchrun",
     {"nnodes": "2", "node_rank": "1"}),
    ([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4", "t.py"],
     "torchrun", {"standalone": "", "nproc_per_node": "4"}),
    ([PY, "-u", "-m", "torch.distributed.launch", "--node_rank=0", "t.py"], "torchrun",
     {"node_rank": "0"}),
    (["env", "A=1", "/x/bin/torchrun", "--rdzv-id", "j", "-m", "pkg.train"], "torchrun",
     {"rdzv_id": "j", "m": ""}),
    (["accelerate", "launch", "--num_machines", "2", "--machine_rank", "1", "t.py"],
     "accelerate", {"num_machines": "2", "machine_rank": "1"}),
    ([PY, "-m", "accelerate.commands.launch", "--multi_gpu", "t.py"], "accelerate",
     {"multi_gpu": ""}),
    (["deepspeed", "--no_ssh", "--node_rank", "1", "--num_nodes", "2", "t.py", "--deepspeed"],
     "deepspeed", {"no_ssh": "", "node_rank": "1", "num_nodes": "2"}),
])
def test_launchers_and_their_options_are_found(argv: list[str], name: str,
                                               options: dict[str, str]) -> None:
    found = cmdline.find_launcher(argv)
    assert found is not None and cmdline.launcher_hint(argv)
    assert (found.name, found.options) == (name, options)


@pytest.mark.parametrize("argv", [
    [PY, "train.py", "--nnodes", "2"], ["accelerate", "config"], [PY, "-m", "torch.utils"],
    ["python", "torchrun.py"], ["make", "train"],
])
def test_commands_that_are_no_launcher(argv: list[str]) -> None:
    assert cmdline.find_launcher(argv) is None


def test_the_node_rank_is_left_out_of_what_nodes_must_share() -> None:
    a = ["torchrun", "--node-rank", "0", "--nnodes=2", "t.py"]
    b = ["torchrun", "--node_rank=1", "--nnodes=2", "t.py"]
    assert cmdline.without_node_rank(a) == ["torchrun", "--node-rank", "{node_rank}",
                                            "--nnodes=2", "t.py"]
    assert cmdline.without_node_rank(b)[1] == "--node_rank={node_rank}"
    assert cmdline.without_node_rank(["deepspeed", "--node_rank", "3", "t.py"])[2] == "{node_rank}"


@pytest.mark.parametrize(("argv", "env", "group", "expected"), [
    # torchrun's rendezvous id is the identity; world size = nodes x processes per node
    ([*TORCHRUN, "--node-rank", "1", "--rdzv-id", "job42", "t.py"], {}, None,
     ("rdzv:job42", "rdzv", "torchrun", 2, 1, 4)),
    # --group beats REPRO_GROUP beats SLURM beats --rdzv-id
    ([*TORCHRUN, "--node-rank", "0", "--rdzv-id", "j", "t.py"],
     {"REPRO_GROUP": "env-id", "SLURM_JOB_ID": "9"}, "flag-id",
     ("flag-id", "flag", "torchrun", 2, 0, 4)),
    ([*TORCHRUN, "--node-rank", "0", "--rdzv-id", "j", "t.py"],
     {"REPRO_GROUP": "env-id", "SLURM_JOB_ID": "9"}, None,
     ("env-id", "env", "torchrun", 2, 0, 4)),
    ([*TORCHRUN, "--node-rank", "0", "--rdzv-id", "j", "t.py"], {"SLURM_JOB_ID": "9"}, None,
     ("slurm:9", "slurm", "torchrun", 2, 0, 4)),
    # torchrun on each node under srun: the node rank is SLURM_NODEID
    ([*TORCHRUN, "t.py"], {**SRUN, "SLURM_PROCID": "1", "SLURM_NODEID": "1",
                           "SLURM_ARRAY_TASK_ID": "3"}, None,
     ("slurm:1234_3.0", "slurm", "torchrun", 2, 1, 4)),
    # srun's tasks are the members: SLURM_PROCID is the rank, the tasks the world
    ([PY, "train.py"], {**SRUN, "SLURM_PROCID": "1"}, None,
     ("slurm:1234.0", "slurm", "srun", 2, 1, 2)),
    # torchrun's PET_ variables stand for its options
    (["torchrun", "t.py"], {"PET_NNODES": "2", "PET_NODE_RANK": "1", "PET_RDZV_ID": "x",
                            "PET_NPROC_PER_NODE": "3"}, None,
     ("rdzv:x", "rdzv", "torchrun", 2, 1, 6)),
    # an elastic range: the minimum is waited for, any rank up to the maximum may join
    (["torchrun", "--nnodes", "1:4", "--node-rank", "3", "--rdzv-id", "e", "t.py"], {}, None,
     ("rdzv:e", "rdzv", "torchrun", 1, 3, None)),
    # accelerate and DeepSpeed (--no_ssh: each node launched on its own)
    (["accelerate", "launch", "--num_machines", "2", "--machine_rank", "1",
      "--num_processes", "8", "t.py"], {"REPRO_GROUP": "a"}, None,
     ("a", "env", "accelerate", 2, 1, 8)),
    (["deepspeed", "--no_ssh", "--num_nodes", "2", "--node_rank", "0", "--num_gpus", "4",
      "t.py"], {}, "d", ("d", "flag", "deepspeed", 2, 0, 8)),
    # --group alone: REPRO_NODE_RANK / REPRO_NNODES say where this node stands
    ([PY, "train.py"], {"REPRO_NODE_RANK": "1", "REPRO_NNODES": "3"}, "g",
     ("g", "flag", None, 3, 1, None)),
    ([PY, "train.py"], {}, "g", ("g", "flag", None, 1, 0, None)),
])
def test_job_identity(argv: list[str], env: dict[str, str], group: str | None,
                      expected: tuple[object, ...]) -> None:
    job = jobs.detect(argv, env, group)
    assert job is not None
    assert (job.identity, job.source, job.launcher, job.nnodes, job.node_rank,
            job.world_size) == expected


@pytest.mark.parametrize(("argv", "env"), [
    ([PY, "train.py"], {}),
    (["torchrun", "--standalone", "--nproc-per-node", "4", "t.py"], {}),
    # one node, one task: a plain run, its SLURM job id notwithstanding
    ([PY, "train.py"], {"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "1"}),
    # a batch script's own step (no srun): SLURM_NTASKS says nothing about this process
    ([PY, "train.py"], {"SLURM_JOB_ID": "5", "SLURM_NTASKS": "4"}),
    (["torchrun", "--nnodes", "1", "--rdzv-id", "j", "t.py"], {}),
])
def test_single_node_runs_are_no_job(argv: list[str], env: dict[str, str]) -> None:
    assert jobs.detect(argv, env) is None


@pytest.mark.parametrize(("argv", "env", "says"), [
    ([*TORCHRUN, "--node-rank", "0", "t.py"], {}, "--nnodes 2"),
    ([*TORCHRUN, "--node-rank", "0", "--rdzv-id", "none", "t.py"], {}, "which job"),
    (["torchrun", "--nnodes", "1:4", "t.py"], {}, "--nnodes 1:4"),
    (["accelerate", "launch", "--num_machines", "2", "t.py"], {}, "--num-machines 2"),
    (["deepspeed", "--no_ssh", "--num_nodes", "2", "--node_rank", "1", "t.py"], {}, "--num-nodes"),
])
def test_a_multi_node_launch_without_identity_is_refused(argv: list[str], env: dict[str, str],
                                                         says: str) -> None:
    with pytest.raises(errors.UsageError) as e:
        jobs.detect(argv, env)
    assert says in e.value.message and "--group" in (e.value.hint or "")


@pytest.mark.parametrize(("argv", "env", "says"), [
    ([*TORCHRUN, "--rdzv-id", "j", "t.py"], {}, "rank is unknown"),
    ([*TORCHRUN, "--node-rank", "2", "--rdzv-id", "j", "t.py"], {}, "outside 0..1"),
    ([*TORCHRUN, "--node-rank", "x", "--rdzv-id", "j", "t.py"], {}, "not an integer"),
    (["torchrun", "--nnodes", "3:2", "--rdzv-id", "j", "t.py"], {}, "node count"),
])
def test_unusable_node_ranks_are_refused(argv: list[str], env: dict[str, str], says: str) -> None:
    with pytest.raises(errors.UsageError, match=says):
        jobs.detect(argv, env)


def test_the_job_seed_is_derived_from_the_identity() -> None:
    a = jobs.detect([*TORCHRUN, "--node-rank", "0", "--rdzv-id", "j", "t.py"], {})
    b = jobs.detect([*TORCHRUN, "--node-rank", "1", "--rdzv-id", "j", "t.py"], {})
    c = jobs.detect([*TORCHRUN, "--node-rank", "1", "--rdzv-id", "k", "t.py"], {})
    assert a and b and c
    assert a.seed() == b.seed() != c.seed() and 0 <= a.seed() < 2**32
    assert a.key == b.key != c.key


JOB = manifest.Distributed(job="rdzv:j", source="rdzv", launcher="torchrun", nnodes=2,
                           world_size=4, node_rank=0)


def member(rank: int, **kw: object) -> manifest.Member:
    base: dict[str, object] = dict(
        node_rank=rank, status="succeeded", host=f"n{rank}", exit_code=0,
        ranks=(2 * rank, 2 * rank + 1), seed=7, commit="a" * 40, lockfile="blake3:1",
        lock_matches=True, argv=("torchrun", "--node-rank", "{node_rank}", "t.py"),
        gpus=("NVIDIA H100 (driver 550)",))
    base.update(kw)
    return manifest.Member(**base)  # type: ignore[arg-type]


def test_members_that_agree_make_a_complete_record() -> None:
    merged = members.merge(JOB, [member(1), member(0)])
    assert merged.complete is True and [x.node_rank for x in merged.members] == [0, 1]
    assert merged.mismatches == () and merged.warnings == ()
    assert members.describe(merged) == []


@pytest.mark.parametrize(("other", "key"), [
    (member(1, commit="b" * 40), "commit"), (member(1, patch="blake3:p"), "patch"),
    (member(1, lockfile="blake3:2"), "lockfile"), (member(1, lock_matches=False), "lock_matches"),
    (member(1, seed=8), "seed"), (member(1, argv=("torchrun", "t.py", "--lr", "2")), "argv"),
])
def test_a_member_that_ran_something_else_is_flagged(other: manifest.Member, key: str) -> None:
    merged = members.merge(JOB, [member(0), other])
    assert [(x["key"], x["node_rank"]) for x in merged.mismatches] == [(key, 1)]
    assert f"node 1: {key}" in members.describe(merged)[0]


def test_a_missing_member_makes_the_run_incomplete() -> None:
    merged = members.merge(JOB, [member(0), members.missing(1, "never joined")])
    assert merged.complete is False
    assert merged.members[1].status == "missing"
    assert members.describe(merged)[0] == "node 1 is missing: never joined"
    # ranks 2 and 3 were never seen: said, but not a mismatch of an incomplete run
    assert "ranks 2, 3 never ran the hook" in merged.warnings[0] and not merged.mismatches
    assert members.status_of("succeeded", merged.members) == "succeeded"
    failed = members.merge(JOB, [member(0), member(1, status="failed", exit_code=3)])
    assert members.status_of("succeeded", failed.members) == "failed"
    assert members.describe(failed) == ["node 1 failed (exit 3)"] and failed.complete


def test_world_size_and_doubled_ranks_are_checked() -> None:
    short = members.merge(JOB, [member(0), member(1, ranks=(2,))])
    assert [x["key"] for x in short.mismatches] == ["world_size"]
    doubled = members.merge(JOB, [member(0), member(1, ranks=(1, 2, 3))])
    assert "ranks" in [x["key"] for x in doubled.mismatches]
    # a node that ended early excuses the ranks it ran, not ranks missing from the others:
    # node 0 succeeded with one rank of its two (a wrong --nproc-per-node) and node 1 failed
    # before its probes: three absent ranks, at most two of them node 1's
    early = members.merge(JOB, [member(0, ranks=(0,)), member(1, status="failed",
                                                              exit_code=1, ranks=())])
    assert [x["key"] for x in early.mismatches] == ["world_size"]
    assert "never ran the hook" in early.warnings[0]
    excused = members.merge(JOB, [member(0), member(1, status="failed", exit_code=1,
                                                    ranks=())])
    assert excused.mismatches == () and "left no probe" in excused.warnings[0]
    unknown = members.merge(manifest.Distributed(job="g", source="flag", launcher=None,
                                                 nnodes=2, world_size=None, node_rank=0),
                            [member(0), member(1)])
    assert unknown.world_size == 4 and not unknown.mismatches


def test_mixed_gpus_and_drivers_are_flagged() -> None:
    merged = members.merge(JOB, [member(0), member(1, gpus=("NVIDIA A100 (driver 535)",))])
    assert "mixed GPU models across nodes: NVIDIA A100, NVIDIA H100" in merged.warnings
    assert "mixed GPU drivers across nodes: 535, 550" in merged.warnings
    assert not merged.mismatches


def test_the_distributed_section_round_trips_through_yaml() -> None:
    merged = members.merge(JOB, [member(0, rank_seeds={"0": 1, "1": 2}),
                                 members.missing(1, "gone", record="members/1/manifest.yaml")])
    text = manifest.dumps(merged.to_dict())
    assert manifest.Distributed.from_dict(manifest.loads(text, "t"), "distributed", "t") == merged


@pytest.mark.parametrize(("argv", "launcher", "expected"), [
    ([PY, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", "1",
      "--nproc-per-node", "2", "--rdzv-id", "j", "--master-addr", "10.0.0.1",
      "--master-port=29500", "--max-restarts", "3", "t.py", "--nnodes", "9"], "torchrun",
     [PY, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node",
      "4", "--max-restarts", "3", "t.py", "--nnodes", "9"]),
    (["accelerate", "launch", "--num_machines", "2", "--machine_rank=1", "--main_process_ip",
      "h", "t.py"], "accelerate",
     ["accelerate", "launch", "--num_machines", "1", "--machine_rank", "0", "--num_processes",
      "4", "t.py"]),
    (["deepspeed", "--no_ssh", "--node_rank", "1", "--num_nodes", "2", "t.py"], "deepspeed",
     ["deepspeed", "--num_nodes", "1", "--num_gpus", "4", "t.py"]),
])
def test_a_multi_node_command_rewritten_for_one_machine(argv: list[str], launcher: str,
                                                       expected: list[str]) -> None:
    assert jobs.single_node_argv(argv, launcher, 4) == expected


@pytest.mark.parametrize(("argv", "launcher", "world", "hint"), [
    ([PY, "train.py"], "srun", 2, "with srun on as many tasks"),
    (["torchrun", "t.py"], "torchrun", None, "on as many nodes"),
    ([PY, "train.py"], None, 2, "REPRO_NODE_RANK"),  # --group: no srun to name
])
def test_what_cannot_be_replayed_on_one_machine_says_why(argv: list[str], launcher: str | None,
                                                         world: int | None, hint: str) -> None:
    with pytest.raises(errors.UsageError) as caught:
        jobs.single_node_argv(argv, launcher, world)
    assert hint in (caught.value.hint or "")
    if launcher != "srun":
        assert "srun" not in (caught.value.hint or "")


def test_nodes_meet_in_one_run_directory_and_a_reused_job_id_starts_a_new_run(
        tmp_path: Path) -> None:
    from repro.commands import distributed
    from repro.record import store

    runs = store.Store(root=tmp_path, home=tmp_path / ".repro")
    argv = [*TORCHRUN, "--rdzv-id", "j", "t.py"]
    node = {r: jobs.detect([*argv[:1], "--node-rank", str(r), *argv[1:]], {}) for r in (0, 1)}
    one = distributed.join(runs, node[1])  # node 1 comes first: it creates the directory
    zero = distributed.join(runs, node[0])
    assert one.created and not zero.created and one.run_id == zero.run_id
    assert one.run_id.endswith("-" + node[0].key[:8])  # the id carries the job's key
    assert zero.run_dir == zero.root_dir and one.run_dir == one.root_dir / "members" / "1"
    again = distributed.join(runs, node[0])  # the job id used again: a new run
    assert again.run_id != zero.run_id and again.created
    assert distributed.join(runs, node[1]).run_id == again.run_id
    # a claim whose run directory was removed is skipped, never followed
    (runs.home / "jobs" / f"{node[0].key}.2").symlink_to("../runs/20260101T000000.000000Z-0000")
    third = distributed.join(runs, node[1])
    assert third.run_id not in (zero.run_id, again.run_id)
    assert (runs.home / "jobs" / f"{node[0].key}.3").resolve() == third.root_dir


def test_node_0_waits_for_final_records_and_names_the_missing(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from repro.api import SilentReporter
    from repro.commands import distributed
    from repro.record import store

    runs = store.Store(root=tmp_path, home=tmp_path / ".repro")
    argv = ["torchrun", "--nnodes", "4", "--nproc-per-node", "1", "--rdzv-id", "w", "t.py"]
    node = {r: jobs.detect([*argv[:1], "--node-rank", str(r), *argv[1:]], {}) for r in range(4)}
    ms = {r: distributed.join(runs, node[r]) for r in (0, 1, 2)}  # node 3 never comes
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def record(rank: int, status: str, pid: int | None) -> None:
        m = manifest.from_dict({
            "schema": manifest.SCHEMA,
            "run": {"run_id": ms[rank].run_id, "status": status, "started_at": "t",
                    "host": os.uname().nodename, "pid": pid, "exit_code": 0},
            "command": {"argv": [*argv[:1], "--node-rank", str(rank), *argv[1:]]},
            "seed": {"value": 5, "source": "job"}, "code": {"commit": "a" * 40},
            "determinism": {"hook": {"rank_seeds": {str(rank): 9}}}})
        manifest.write(ms[rank].run_dir / store.MANIFEST, m)

    record(1, "succeeded", None)
    record(2, "running", dead.pid)  # its repro is gone: abandoned, not waited for
    found = {x.node_rank: x for x in distributed.wait_for_members(ms[0], 0.5, SilentReporter())}
    assert found[1].status == "succeeded" and found[1].ranks == (1,) and found[1].seed == 5
    assert found[1].argv[2] == "{node_rank}" and found[1].record == "members/1/manifest.yaml"
    assert found[2].status == "missing" and "killed" in (found[2].reason or "")
    assert found[3].status == "missing" and "never joined" in (found[3].reason or "")
    interrupted = distributed.wait_for_members(ms[0], 0.0, SilentReporter())
    assert "interrupted" in (next(x for x in interrupted if x.node_rank == 3).reason or "")


@pytest.mark.parametrize(("argv", "expected"), [
    (["torchrun", "--rdzv-id", "job42", "--master-port=29500", "--standalone", "t.py",
      "--master-port", "1"],
     ["torchrun", "--rdzv-id", "{rendezvous}", "--master-port={rendezvous}", "--standalone",
      "t.py", "--master-port", "1"]),  # the script's own --master-port is recipe
    (["python", "-m", "torch.distributed.run", "--nnodes", "2", "--master_addr", "10.0.0.1",
      "train.py", "--lr", "0.1"],
     ["python", "-m", "torch.distributed.run", "--nnodes", "2", "--master_addr",
      "{rendezvous}", "train.py", "--lr", "0.1"]),
    (["python", "train.py", "--master-port", "1"], ["python", "train.py", "--master-port", "1"]),
])
def test_only_the_launchers_rendezvous_values_are_left_out(argv: list[str],
                                                           expected: list[str]) -> None:
    # before: a script's own `--master-port 2` vs `1` was blanked too, and two runs of
    # different recipes had one fingerprint
    assert cmdline.without_rendezvous(argv) == expected
