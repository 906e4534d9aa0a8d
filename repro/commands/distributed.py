"""Multi-node runs: every node's `repro run` joins one run directory; node 0 merges the record.

The run directory of a job is claimed once, by whichever node comes first: a symbolic link
`<store>/jobs/<key>.<generation>` -> `../runs/<run id>`, created atomically (a second node's `symlink`
fails and it reads the winner's). Each node then takes its slot, `members/<node rank>/`, by
`mkdir` (atomic too): a slot already taken means the job id was used before (`--rdzv-id job42`
run twice), so the node moves on to the next generation, where the nodes of the new job meet.
These are plain POSIX operations, atomic on local and network file systems (NFS included).

Node 0 (the coordinator) records in the run directory itself, exactly as a single-node run:
code, lockfile, inputs, outputs, metrics, its logs and hook probes; every other node records its
own complete manifest in `members/<rank>/` (logs and probes beside it). After its command ends,
node 0 waits (bounded) for the others' final records, hashes the outputs, and writes the run's
manifest with the merged `distributed` section (repro/judge/members.py). Reports through a
Reporter; never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from repro import errors, report
from repro.capture import job as jobs
from repro.judge import members
from repro.record import manifest, store

MEMBERS = "members"
JOBS = "jobs"  # <store>/jobs/<key>.<generation> -> run id
DEFAULT_TIMEOUT = 600.0  # seconds node 0 waits for the others after its own command ended
POLL_S = 0.25
MAX_GENERATIONS = 10_000


@dataclasses.dataclass(frozen=True)
class Membership:
    job: jobs.Job
    run_id: str
    root_dir: Path  # the job's run directory
    run_dir: Path  # where this node records: root_dir for node 0, members/<rank> otherwise
    created: bool  # this node created the run directory

    @property
    def coordinator(self) -> bool:
        return self.job.node_rank == 0

    def section(self) -> manifest.Distributed:
        """The `distributed` section of this node's own record (before any merge)."""
        j = self.job
        keys = ("job", "source", "launcher", "nnodes", "world_size", "node_rank")
        return manifest.Distributed(keys=keys, job=j.identity or "", source=j.source or "",
                                    launcher=j.launcher, nnodes=j.nnodes,
                                    world_size=j.world_size, node_rank=j.node_rank)


def join(runs: store.Store, job: jobs.Job) -> Membership:
    """This node's place in the job's run directory (created by the first node to come)."""
    rank = job.node_rank if job.node_rank is not None else 0
    try:
        links = runs.home / JOBS
        links.mkdir(parents=True, exist_ok=True)
        for generation in range(MAX_GENERATIONS):
            link = links / f"{job.key}.{generation}"
            created = False
            run_id = _read_link(link)
            if run_id is None:
                run_id, run_dir = runs.create_run_dir(suffix=job.key[:8])
                try:
                    os.symlink(f"../runs/{run_id}", link)
                    created = True
                except FileExistsError:  # another node came first: its directory is the one
                    shutil.rmtree(run_dir, ignore_errors=True)
                    run_id = _read_link(link)
            root_dir = runs.runs_dir / (run_id or "")
            if not run_id or not store.RUN_ID_RE.match(run_id) or not root_dir.is_dir():
                continue  # a damaged or removed claim: the next generation
            slots = root_dir / MEMBERS
            slots.mkdir(exist_ok=True)
            try:
                (slots / str(rank)).mkdir()
            except FileExistsError:
                continue  # this node rank has a record there: an earlier job with the same id
            run_dir = root_dir if rank == 0 else slots / str(rank)
            return Membership(job=job, run_id=run_id, root_dir=root_dir, run_dir=run_dir,
                              created=created)
    except OSError as e:
        raise errors.StoreError(
            f"cannot join job {job.identity} in {runs.runs_dir}: {e.strerror or e}",
            hint="every node needs the same writable store (a shared file system: the same "
                 "repository path, or REPRO_HOME)") from e
    raise errors.StoreError(f"job {job.identity} was recorded {MAX_GENERATIONS} times",
                            hint="give the job a fresh id (--group, REPRO_GROUP, --rdzv-id)")


def _read_link(link: Path) -> str | None:
    """The run id a claim names (`../runs/<run id>`); "" for a damaged claim, None for none."""
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return None
    except OSError:
        return ""  # not a link: treated as a damaged claim
    head, _, run_id = target.rpartition("/")
    return run_id if head == "../runs" else ""


def wait_for_members(ms: Membership, timeout: float, reporter: report.Reporter,
                     sleep: Callable[[float], None] = time.sleep) -> list[manifest.Member]:
    """Every other member's record once final, or `missing` (bounded by `timeout` seconds).

    Members are the node ranks 1..nnodes-1 plus any other slot taken (an elastic job's extra
    nodes). A member whose repro died on this host (its record says `running`, its process is
    gone) is missing at once; one on another host is waited for until the timeout.
    """
    slots = ms.root_dir / MEMBERS
    expected = set(range(1, ms.job.nnodes))
    deadline = time.monotonic() + timeout
    done: dict[int, manifest.Member] = {}
    with reporter.progress(f"waiting for the other nodes of job {ms.job.identity}") as progress:
        while True:
            taken = _slots(slots) - {0}
            pending = sorted((expected | taken) - set(done))
            for rank in pending:
                found = _member(slots, rank)
                if found is not None:
                    done[rank] = found
            total = len(expected | taken)
            progress(len(done), total)
            if len(done) >= total or time.monotonic() >= deadline:
                break
            sleep(POLL_S)
    result = list(done.values())
    for rank in sorted((expected | _slots(slots) - {0}) - set(done)):
        registered = (slots / str(rank)).is_dir()
        host = _host(slots, rank)
        if timeout <= 0:
            reason = "not waited for: node 0's command was interrupted"
        elif registered:
            reason = (f"no final record after {timeout:g} s (its repro is still running, or "
                      "was killed on another host)")
        else:
            reason = f"it never joined the run within {timeout:g} s"
        result.append(members.missing(rank, reason, record=_record(rank) if registered else None,
                                      host=host))
    return result


def _slots(slots: Path) -> set[int]:
    try:
        return {int(name) for name in os.listdir(slots) if name.isdigit()}
    except OSError:
        return set()


def _record(rank: int) -> str:
    return f"{MEMBERS}/{rank}/{store.MANIFEST}"


def _member(slots: Path, rank: int) -> manifest.Member | None:
    """The member's final record, `missing` when its repro died, None while it runs."""
    path = slots / str(rank) / store.MANIFEST
    if not path.exists():
        return None
    try:
        m = store.load_manifest(path)
    except errors.ReproError as e:
        if "does not exist" in e.message:
            return None
        return members.missing(rank, f"its record cannot be read: {e.message}", _record(rank))
    if m.run.status == "running":
        return None
    if m.run.status == "abandoned":
        return members.missing(rank, "its repro ended without finishing the record (killed?)",
                               _record(rank), host=m.run.host)
    return members.member_of(m, rank, _record(rank))


def _host(slots: Path, rank: int) -> str | None:
    with contextlib.suppress(errors.ReproError, OSError):
        return manifest.read(slots / str(rank) / store.MANIFEST).run.host
    return None


def merged(ms: Membership, own: manifest.Manifest,
           others: Sequence[manifest.Member]) -> manifest.Manifest:
    """Node 0's final manifest with the merged `distributed` section, status and note."""
    section = members.merge(ms.section(), [members.member_of(own, 0, store.MANIFEST), *others])
    status = members.status_of(own.run.status, section.members)
    m = own.replace(distributed=section).with_run(status=status)
    problems = members.describe(section)
    if problems:
        note = ("incomplete run: " if not section.complete else "multi-node record: ") + \
            "; ".join(problems)
        m = m.with_run(note=(m.run.note + "\n" if m.run.note else "") + note)
    return m


def problems_of(m: manifest.Manifest) -> list[str]:
    return members.describe(m.distributed) if m.distributed else []


def write_initial(path: Path, m: manifest.Manifest, key: bytes | None) -> None:
    """A `running` manifest at the run directory's top, unless node 0 wrote one already."""
    if not path.exists():
        manifest.write(path, m, key, durable=False)
