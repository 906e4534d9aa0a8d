"""`repro push`: copy runs to a remote store, create-only, the manifest last.

For each run: hash its files (repro.remote.layout), upload the blobs the remote lacks, then the
file index, then the manifest. Until the manifest is there the run does not exist for anyone
(listings, pulls, `REMOTE:latest`), so a push killed midway leaves only blobs and an index that
the next push finds and completes. Every create is conditional, so pushing twice uploads
nothing the second time and two clones pushing at once cannot overwrite each other.
Never prints: progress and warnings go to the Reporter.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from repro import errors
from repro.record import store
from repro.remote import layout
from repro.remote import store as remote
from repro.report import Reporter

JOBS = 8


@dataclasses.dataclass
class PushResult:
    remote: str
    dry_run: bool
    pushed: list[str] = dataclasses.field(default_factory=list)
    already: list[str] = dataclasses.field(default_factory=list)  # at the remote, unchanged
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (id, reason)
    conflicts: list[str] = dataclasses.field(default_factory=list)  # remote differs: kept
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    reused_files: int = 0  # blobs the remote already had
    planned_bytes: int = 0  # dry run: what the runs to push hold (before deduplication)
    stats: dict[str, object] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"schema": "repro/push/v1", "remote": self.remote, "dry_run": self.dry_run,
                "pushed": self.pushed, "already": self.already,
                "skipped": [{"run_id": i, "reason": r} for i, r in self.skipped],
                "conflicts": self.conflicts, "uploaded_files": self.uploaded_files,
                "uploaded_bytes": self.uploaded_bytes, "reused_files": self.reused_files,
                "planned_bytes": self.planned_bytes, "stats": self.stats}


def push(runs: store.Store, where: remote.Location, refs: list[str], reporter: Reporter,
         dry_run: bool = False) -> PushResult:
    backend = remote.open_backend(where)
    backend.check()
    result = PushResult(remote=where.url, dry_run=dry_run)
    at_remote = set(layout.visible_runs(list(backend.list("runs/"))))
    chosen: list[tuple[str, Path]] = []
    if refs:
        seen = set()
        for ref in refs:
            run_id, run_dir = _local_run(runs, ref)
            if run_id not in seen:
                seen.add(run_id)
                chosen.append((run_id, run_dir))
    else:
        chosen = [(i, runs.runs_dir / i) for i in reversed(runs.run_ids()) if i not in at_remote]
        chosen = [(i, d) for i, d in chosen if not (d / layout.PULLED).exists()]
    plans: list[layout.RunIndex] = []
    dirs: dict[str, Path] = {}
    for run_id, run_dir in chosen:
        m = store.load_manifest(run_dir / store.MANIFEST)
        if m.run.status == "running":
            result.skipped.append((run_id, "still running"))
            continue
        if run_id in at_remote:
            same = backend.get_bytes(layout.run_key(run_id, store.MANIFEST),
                                     _MANIFEST_MAX) == (run_dir / store.MANIFEST).read_bytes()
            (result.already if same else result.conflicts).append(run_id)
            continue
        plans.append(layout.index_run(run_id, run_dir))
        dirs[run_id] = run_dir
    result.planned_bytes = sum(p.total_bytes for p in plans)
    if dry_run:
        result.pushed = [p.run_id for p in plans]
        result.stats = backend.stats.to_dict()
        return result
    pusher = _Pusher(backend)
    done_bytes = 0
    with (reporter.progress("pushing") as progress, remote.workers(JOBS) as blobs,
          remote.workers(RUN_JOBS) as pool):
        progress(0, result.planned_bytes)
        # A few runs at once (each in its own order: blobs, index, manifest), so that the
        # round trips of one run overlap with another's.
        futures = [pool.submit(pusher.push_run, plan, dirs[plan.run_id], blobs)
                   for plan in plans]
        for plan, future in zip(plans, futures, strict=True):
            outcome, uploaded, uploaded_bytes, reused = future.result()
            {"pushed": result.pushed, "already": result.already,
             "conflict": result.conflicts}[outcome].append(plan.run_id)
            result.uploaded_files += uploaded
            result.uploaded_bytes += uploaded_bytes
            result.reused_files += reused
            done_bytes += plan.total_bytes
            progress(done_bytes, result.planned_bytes)
    result.stats = backend.stats.to_dict()
    return result


_MANIFEST_MAX = 16 * 1024 * 1024
RUN_JOBS = 4


class _Pusher:
    """Pushes runs, several at once; remembers the blobs the remote has (thread-safe)."""

    def __init__(self, backend: remote.Backend) -> None:
        self.backend = backend
        self.known: set[str] = set()  # blobs this push found at the remote or put there
        self.lock = threading.Lock()

    def push_run(self, plan: layout.RunIndex, run_dir: Path, blobs: ThreadPoolExecutor
                 ) -> tuple[str, int, int, int]:
        """(outcome, files uploaded, bytes uploaded, blobs already there) for one run:
        its blobs, then its index, then its manifest, which makes it visible."""
        with self.lock:
            todo = {f.hash: f for f in plan.files if f.hash not in self.known}
        upload = functools.partial(_put_blob, self.backend, run_dir)
        uploaded = uploaded_bytes = reused = 0
        for created, f in zip(blobs.map(upload, todo.values()), todo.values(), strict=True):
            with self.lock:
                self.known.add(f.hash)
            if created:
                uploaded, uploaded_bytes = uploaded + 1, uploaded_bytes + f.size
            else:
                reused += 1
        _put_index(self.backend, plan)
        man = run_dir / store.MANIFEST
        key = layout.run_key(plan.run_id, store.MANIFEST)
        if self.backend.put_file(key, man):
            return "pushed", uploaded + 1, uploaded_bytes + plan.manifest_size, reused
        if self.backend.get_bytes(key, _MANIFEST_MAX) == man.read_bytes():
            return "already", uploaded, uploaded_bytes, reused  # a concurrent push won
        return "conflict", uploaded, uploaded_bytes, reused


def _local_run(runs: store.Store, ref: str) -> tuple[str, Path]:
    path = runs.resolve(ref)
    m = store.load_manifest(path)
    run_id = m.run.run_id
    if not store.RUN_ID_RE.match(run_id) or path.name != store.MANIFEST:
        raise errors.UsageError(f"{ref}: only recorded runs can be pushed",
                                hint="push a run of `repro runs` by id, prefix or latest")
    return run_id, path.parent


def _put_blob(backend: remote.Backend, run_dir: Path, f: layout.FileEntry) -> bool:
    """Upload one file by hash unless the remote has it; True if this call created it."""
    key = remote.blob_key(f.hash)
    size = backend.size(key)
    if size == f.size:
        return False
    if size is not None:
        # A damaged copy (a server that kept part of an upload cut short): the key is the
        # content's hash, so replacing it with the content it names loses nothing.
        backend.delete(key)
    return backend.put_file(key, run_dir / f.path)


def _put_index(backend: remote.Backend, plan: layout.RunIndex) -> None:
    """The run's file index; one left by an earlier, killed push must say the same."""
    key = layout.run_key(plan.run_id, layout.INDEX)
    body = plan.to_json()
    if backend.put_bytes(key, body):
        return
    theirs = backend.get_bytes(key, layout.INDEX_MAX)
    if layout.parse_index(theirs, plan.run_id, key) != plan:
        raise errors.RemoteError(
            f"{backend.url}: an unfinished push of {plan.run_id} left a different file index",
            hint=f"the run is not visible there yet; remove {key} at the remote and push again")
