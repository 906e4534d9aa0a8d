"""The members of a multi-node run, judged together: one merged `distributed` section.

Pure: member manifests in, a manifest.Distributed out. Checks that every member ran the same
commit, patch, lockfile (and its match), seed and argv (the node rank aside), that the ranks
seen across the nodes are the job's world size without gaps or doubles, and flags mixed GPU
models or drivers. A member without a final record is `missing`, and the run incomplete.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from repro.capture import cmdline
from repro.record import manifest

# Member fields every node of one job must share, in the order mismatches are reported.
SHARED = ("commit", "patch", "lockfile", "lock_matches", "seed", "argv")


def member_of(m: manifest.Manifest, node_rank: int, record: str | None) -> manifest.Member:
    """What the merged record keeps of one member's own manifest."""
    hook = m.determinism.hook
    rank_seeds = {str(k): v for k, v in (hook.rank_seeds if hook else {}).items()
                  if isinstance(v, int) and not isinstance(v, bool)}
    ranks = tuple(sorted(int(k) for k in rank_seeds if k.lstrip("-").isdigit()))
    lock = m.environment.lockfile
    gpus = tuple(_gpu(g.name, g.driver) for g in m.hardware.gpus)
    return manifest.Member(
        keys=every_key(manifest.Member), node_rank=node_rank, status=m.run.status, host=m.run.host, exit_code=m.run.exit_code,
        record=record, ranks=ranks, rank_seeds=rank_seeds, seed=m.seed.value,
        commit=m.code.commit, patch=m.code.patch.hash if m.code.patch else None,
        lockfile=lock.hash if lock else None, lock_matches=lock.matches if lock else None,
        argv=tuple(cmdline.without_node_rank(m.command.argv)), gpus=gpus)


def missing(node_rank: int, reason: str, record: str | None = None,
            host: str | None = None) -> manifest.Member:
    return manifest.Member(keys=every_key(manifest.Member), node_rank=node_rank,
                           status="missing", reason=reason, record=record,
                           host=host)


def merge(job: manifest.Distributed, members: Sequence[manifest.Member]) -> manifest.Distributed:
    """The merged `distributed` section: members in node-rank order, checks, completeness."""
    ordered = sorted(members, key=lambda x: x.node_rank or 0)
    present = [x for x in ordered if x.status != "missing"]
    reference = next((x for x in present if x.node_rank == 0), present[0] if present else None)
    mismatches: list[dict[str, Any]] = []
    if reference is not None:
        for member in present:
            if member is reference:
                continue
            for key in SHARED:
                mine, theirs = getattr(member, key), getattr(reference, key)
                if mine != theirs:
                    mismatches.append({"key": key, "node_rank": member.node_rank,
                                       "value": _plain(mine), "expected": _plain(theirs)})
    warnings: list[str] = []
    seen: dict[int, int] = {}
    for member in present:
        for rank in (r for r in member.ranks if isinstance(r, int)):
            if rank in seen:
                mismatches.append({"key": "ranks", "node_rank": member.node_rank,
                                   "value": rank, "expected": f"rank {rank} only on node "
                                                              f"{seen[rank]}"})
            seen.setdefault(rank, member.node_rank or 0)
    expected_ranks = set(range(job.world_size)) if job.world_size is not None else None
    complete = (len({x.node_rank for x in present}) >= (job.nnodes or 1)
                and all(x.status != "missing" for x in ordered))
    world_size = job.world_size
    if seen:
        if expected_ranks is None:
            world_size = len(seen)
            expected_ranks = set(range(world_size))
        if set(seen) != expected_ranks:
            absent = sorted(expected_ranks - set(seen))
            extra = sorted(set(seen) - expected_ranks)
            # A rank's seed is in the probe it writes at exit: a node that failed or was
            # interrupted may have had its ranks killed before that. Not a world-size problem.
            ended = [x for x in present if x.status in ("failed", "interrupted")]
            # ... but only as many ranks as those nodes ran: a node that succeeded writes its
            # ranks' probes, so ranks missing beyond that are a real world-size problem.
            per_node = (world_size // job.nnodes if world_size and job.nnodes else
                        max((len(x.ranks) for x in present), default=0))
            if len(absent) > sum(max(per_node - len(x.ranks), 0) for x in ended):
                ended = []
            ended_text = ", ".join(f"node {x.node_rank} {x.status}" for x in ended)
            absent_text = (f"{_ranks(absent)} left no probe ({ended_text}: a rank killed "
                           "before it exits writes none)" if ended else
                           f"{_ranks(absent)} never ran the hook")
            what = (absent_text if absent else "") + \
                ("; " if absent and extra else "") + \
                (f"{_ranks(extra)} beyond the world size" if extra else "")
            if complete and (extra or not ended):
                mismatches.append({"key": "world_size", "node_rank": None,
                                   "value": len(seen), "expected": job.world_size})
            warnings.append(f"world size {world_size}: {what}")
    names = [str(g) for x in present for g in x.gpus]
    models = sorted({g.split(" (driver")[0] for g in names})
    drivers = sorted({g.partition(" (driver ")[2].rstrip(")") for g in names if "(driver " in g})
    if len(models) > 1:
        warnings.append("mixed GPU models across nodes: " + ", ".join(models))
    if len(drivers) > 1:
        warnings.append("mixed GPU drivers across nodes: " + ", ".join(drivers))
    if any(x.gpus for x in present) and any(not x.gpus for x in present):
        warnings.append("some nodes have GPUs and some have none")
    return dataclasses.replace(job, keys=every_key(manifest.Distributed),
                               members=tuple(ordered), complete=complete,
                               world_size=world_size, mismatches=tuple(mismatches),
                               warnings=tuple(warnings))


def every_key(cls: type) -> tuple[str, ...]:
    """All of a record's fields, in order: written even when empty or null (`mismatches: []`,
    `reason: null`), so readers of the section find every key (a Record built in code leaves
    unset ones out)."""
    return tuple(f.name for f in dataclasses.fields(cls) if "kind" in f.metadata)


def status_of(own: str, members: Sequence[manifest.Member]) -> str:
    """The run's status: the coordinator's, unless another member failed or was interrupted."""
    if own != "succeeded":
        return own
    others = [x.status or "" for x in members]
    for status in ("failed", "interrupted", "abandoned"):
        if status in others:
            return "failed" if status == "abandoned" else status
    return own


def describe(d: manifest.Distributed) -> list[str]:
    """One line per problem the merged record found (the run's note and `show`)."""
    lines = []
    for member in d.members:
        if member.status == "missing":
            lines.append(f"node {member.node_rank} is missing: {member.reason}")
        elif member.status in ("failed", "interrupted") and member.node_rank != 0:
            lines.append(f"node {member.node_rank} {member.status} (exit {member.exit_code})")
    for x in d.mismatches:
        where = f"node {x.get('node_rank')}" if x.get("node_rank") is not None else "the job"
        lines.append(f"{where}: {x.get('key')} {_short(x.get('value'))} differs from node "
                     f"0's {_short(x.get('expected'))}" if x.get("key") in SHARED else
                     f"{where}: {x.get('key')} is {_short(x.get('value'))}, expected "
                     f"{_short(x.get('expected'))}")
    lines.extend(d.warnings)
    return lines


def topology(d: manifest.Distributed | None) -> dict[str, Any]:
    """What `diff` compares of how a run was spread: nodes, ranks per node, GPUs per node.

    A single-node run (no `distributed` section) is one node. The job id and host names are
    per-run noise (judge/compare.py).
    """
    if d is None:
        return {"nodes": 1}
    out: dict[str, Any] = {"nodes": d.nnodes, "world_size": d.world_size,
                           "launcher": d.launcher, "complete": d.complete, "job": d.job}
    if d.members:  # keyed by node rank: diff names "members.1.ranks", and a host is noise
        out["members"] = {
            str(x.node_rank if x.node_rank is not None else i): {
                "host": x.host, "status": x.status, "ranks": list(x.ranks),
                "gpus": list(x.gpus)}
            for i, x in enumerate(d.members)}
    return out


def _gpu(name: Any, driver: Any) -> str:
    text = str(name or "GPU")
    return f"{text} (driver {driver})" if driver else text


def _ranks(values: Sequence[int]) -> str:
    shown = ", ".join(str(v) for v in values[:8])
    return ("rank " if len(values) == 1 else "ranks ") + shown + (" ..." if len(values) > 8
                                                                  else "")


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value

