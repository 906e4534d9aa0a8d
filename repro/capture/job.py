"""Which distributed job a `repro run` belongs to: identity, node rank, expected nodes and ranks.

Pure: reads the command line (through capture/cmdline.py, the one command-line model) and the
environment it is given, never `os.environ`; no I/O. `repro run` calls `detect` only when a
launcher word (cmdline.launcher_hint), a SLURM variable or a job id is present, so a
single-node run imports nothing of this.

Identity, first found: `--group ID`; `REPRO_GROUP`; SLURM's job id, step id and array task id
(`srun repro run ...`); torchrun's `--rdzv-id` (not "none", its default; PET_RDZV_ID too).
Node rank (the member's key): the launcher's `--node-rank`/`--node_rank`/`--machine_rank`
(PET_NODE_RANK), else SLURM_PROCID in a SLURM step of several tasks (SLURM_NODEID for a launcher
under srun), else REPRO_NODE_RANK.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence

from repro import errors
from repro.capture import cmdline

NO_RDZV_ID = "none"  # torchrun's default rendezvous id: the same for every job, so no identity
# The options that say how many nodes a launcher's job has, and which node this is.
_NNODES = {"torchrun": ("nnodes",), "accelerate": ("num_machines",), "deepspeed": ("num_nodes",)}
_NODE_RANK = {"torchrun": ("node_rank",), "accelerate": ("machine_rank",),
              "deepspeed": ("node_rank",)}
# torchrun reads its options from PET_<NAME> variables too (torch.distributed.argparse_util).
_PET = {"nnodes": "PET_NNODES", "node_rank": "PET_NODE_RANK", "rdzv_id": "PET_RDZV_ID",
        "nproc_per_node": "PET_NPROC_PER_NODE"}


@dataclasses.dataclass(frozen=True)
class Job:
    """This node's view of the job it is part of."""

    identity: str | None  # "rdzv:job42", "slurm:1234.0", "exp-7" (--group as given); None
    source: str | None  # flag, env, slurm, rdzv
    launcher: str | None  # torchrun, accelerate, deepspeed, srun, None (plain --group)
    nnodes: int  # members (nodes, or srun tasks) expected: the launcher's minimum
    nnodes_max: int  # an elastic range's maximum (`--nnodes 1:4`); nnodes otherwise
    node_rank: int | None  # this member's key; None: unknown
    world_size: int | None  # ranks expected across the job; None: unknown
    multi: bool  # more than one member: records merge under one run directory

    @property
    def key(self) -> str:
        """A file-name-safe digest of the identity (the run directory's claim)."""
        return hashlib.sha256((self.identity or "").encode()).hexdigest()[:16]

    def seed(self) -> int:
        """The job-wide seed derived from the identity: the same on every node."""
        digest = hashlib.sha256(b"repro-job-seed:" + (self.identity or "").encode()).digest()
        return int.from_bytes(digest[:4], "little")


def detect(argv: Sequence[str], env: Mapping[str, str], group: str | None = None) -> Job | None:
    """The job `argv` (run with `env`) belongs to; None for a single-node run with no identity.

    A launcher invocation with more than one node and no identity is a UsageError: each node
    would record an unrelated run with its own seed.
    """
    launcher = cmdline.find_launcher(argv)
    opts = launcher.options if launcher else {}
    name = launcher.name if launcher else None

    def option(keys: Sequence[str]) -> str | None:
        for key in keys:
            if key in opts:
                return opts[key]
        if name == "torchrun":
            for key in keys:
                if env.get(_PET.get(key, "")):
                    return env[_PET[key]]
        return None

    nnodes_min = nnodes_max = 1
    if name:
        nnodes_min, nnodes_max = _nnodes(option(_NNODES[name]), name)
    slurm_step = bool(env.get("SLURM_JOB_ID")) and env.get("SLURM_STEP_ID") is not None
    tasks = _int(env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS"), "SLURM_NTASKS") \
        if slurm_step else None
    launcher_multi = nnodes_max > 1
    srun_multi = slurm_step and (tasks or 1) > 1 and not launcher_multi

    identity, source = _identity(group, env, option(("rdzv_id",)) if name == "torchrun" else None)
    if launcher_multi and identity is None:
        flag = _NNODES[name or "torchrun"][0]
        raise errors.UsageError(
            f"{name} starts a job over several nodes (--{flag.replace('_', '-')} "
            f"{option((flag,))}) but nothing tells this node's repro which job it is: "
            "every node would record an unrelated run with its own seed",
            hint="give every node the same id: repro run --group $JOB_ID -- ..., or "
                 "REPRO_GROUP, or torchrun --rdzv-id $JOB_ID (under SLURM the job id is used)")
    if identity is None or (not launcher_multi and not srun_multi and source in ("slurm", "rdzv")
                            and not env.get("REPRO_NNODES")):
        return None  # one node, one task: a plain run (its SLURM job id is in the environment)

    node_rank: int | None
    if launcher_multi:
        given = option(_NODE_RANK[name or ""])
        node_rank = _int(given, f"--{_NODE_RANK[name or ''][0]}") if given not in (None, "") \
            else _int(env.get("SLURM_NODEID") if slurm_step else None, "SLURM_NODEID")
        if node_rank is None:
            node_rank = _int(env.get("REPRO_NODE_RANK"), "REPRO_NODE_RANK")
        members = nnodes_min
    elif srun_multi:
        node_rank = _int(env.get("SLURM_PROCID"), "SLURM_PROCID")
        members = tasks or 1
    else:
        node_rank = _int(env.get("REPRO_NODE_RANK"), "REPRO_NODE_RANK")
        members = _int(env.get("REPRO_NNODES"), "REPRO_NNODES") or 1
        if node_rank is None and members == 1:
            node_rank = 0
    multi = launcher_multi or srun_multi or members > 1
    if multi and node_rank is None:
        raise errors.UsageError(
            f"job {identity}: this node's rank is unknown, so its record cannot join the others",
            hint="pass the launcher's node rank (torchrun --node-rank R), or set "
                 "REPRO_NODE_RANK=R on each node")
    if node_rank is not None and not 0 <= node_rank < max(members, nnodes_max):
        raise errors.UsageError(
            f"job {identity}: node rank {node_rank} is outside 0..{max(members, nnodes_max) - 1}",
            hint="check --node-rank and --nnodes (or SLURM_PROCID and SLURM_NTASKS)")
    return Job(identity=identity, source=source,
               launcher=name or ("srun" if slurm_step and srun_multi else None),
               nnodes=members, nnodes_max=max(members, nnodes_max), node_rank=node_rank,
               world_size=_world_size(name, option, members, tasks if srun_multi else None),
               multi=multi)


def _identity(group: str | None, env: Mapping[str, str],
              rdzv_id: str | None) -> tuple[str | None, str | None]:
    if group:
        return _checked(group, "--group"), "flag"
    if env.get("REPRO_GROUP"):
        return _checked(env["REPRO_GROUP"], "REPRO_GROUP"), "env"
    job_id = env.get("SLURM_JOB_ID")
    if job_id:
        ident = job_id
        if env.get("SLURM_ARRAY_TASK_ID"):
            ident += "_" + env["SLURM_ARRAY_TASK_ID"]
        if env.get("SLURM_STEP_ID") is not None:
            ident += "." + env["SLURM_STEP_ID"]
        return "slurm:" + _checked(ident, "SLURM_JOB_ID"), "slurm"
    if rdzv_id and rdzv_id != NO_RDZV_ID:
        return "rdzv:" + _checked(rdzv_id, "--rdzv-id"), "rdzv"
    return None, None


def _checked(value: str, what: str) -> str:
    if len(value) > 200 or not value.isprintable():
        raise errors.UsageError(f"{what} {value[:60]!r} is not a usable job id",
                                hint="use up to 200 printable characters")
    return value


def _nnodes(value: str | None, launcher: str) -> tuple[int, int]:
    """`2` -> (2, 2); `1:4` (elastic) -> (1, 4); absent -> (1, 1)."""
    if value in (None, ""):
        return 1, 1
    low, sep, high = value.partition(":")
    a = _int(low, "--nnodes")
    b = _int(high, "--nnodes") if sep else a
    if a is None or b is None or a < 1 or b < a:
        raise errors.UsageError(f"{launcher}: cannot read the node count {value!r}",
                                hint="e.g. --nnodes 2 or --nnodes 1:4")
    return a, b


def _world_size(name: str | None, get: Callable[[Sequence[str]], str | None], members: int,
                tasks: int | None) -> int | None:
    if name == "torchrun":
        per = get(("nproc_per_node",))
        if per and per.isdigit():
            return int(per) * members
        return None
    if name == "accelerate":
        total = get(("num_processes",))
        return int(total) if total and total.isdigit() else None
    if name == "deepspeed":
        per = get(("num_gpus",))
        return int(per) * members if per and per.isdigit() else None
    return tasks


def _int(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise errors.UsageError(f"{what} is {value[:40]!r}, not an integer",
                                hint="check the launcher's options and the job's variables") \
            from None


# What a one-machine replay of a multi-node launch drops from the launcher's options, and what
# it puts instead: every rank on this machine, ranks in the recorded order (node 0's first).
_PLACEMENT = frozenset({
    "nnodes", "node_rank", "nproc_per_node", "master_addr", "master_port", "rdzv_backend",
    "rdzv_endpoint", "rdzv_id", "rdzv_conf", "standalone",
    "num_machines", "machine_rank", "num_processes", "main_process_ip", "main_process_port",
    "same_network", "num_nodes", "num_gpus", "no_ssh", "no_ssh_check", "hostfile",
    "include", "exclude", "launcher", "ssh_port",
})


def single_node_argv(argv: Sequence[str], launcher: str | None,
                     world_size: int | None) -> list[str]:
    """`argv` of one node of a multi-node run, rewritten to run every rank on this machine.

    torchrun: `--standalone --nnodes 1 --nproc-per-node W` (a local rendezvous on a free port;
    RANK 0..W-1 as before, so every rank keeps its seed stream); accelerate: one machine, W
    processes; DeepSpeed: one node, W processes. A UsageError when it cannot be done.
    """
    if world_size is None or world_size < 1:
        raise errors.UsageError("the run's world size is unknown, so it cannot be replayed "
                                "on one machine",
                                hint="replay it on as many nodes as it had, with the same "
                                     "launcher options")
    add = {"torchrun": ["--standalone", "--nnodes", "1", "--nproc-per-node", str(world_size)],
           "accelerate": ["--num_machines", "1", "--machine_rank", "0", "--num_processes",
                          str(world_size)],
           "deepspeed": ["--num_nodes", "1", "--num_gpus", str(world_size)]}.get(launcher or "")
    rewritten = cmdline.rewrite_launcher(argv, _PLACEMENT, add) if add else None
    if rewritten is None:
        raise errors.UsageError(
            f"a {launcher or 'launcher-less'} job cannot be replayed on one machine by repro",
            hint="srun's tasks are separate commands: replay it with srun on as many tasks, "
                 "or launch the script through torchrun" if launcher == "srun" else
                 "its nodes ran separate commands: start them again on as many nodes (with "
                 "REPRO_NODE_RANK and REPRO_NNODES under a new --group), or launch the script "
                 "through torchrun")
    return rewritten
