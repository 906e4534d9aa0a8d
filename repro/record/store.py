"""The .repro layout: run ids, run directories, RUN reference resolution, listing.

Knows where runs live and how to name and find them; never prints and never runs anything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path

from repro import errors
from repro.record import bounded, manifest

RUN_ID_RE = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{4,}$")
LATEST_RE = re.compile(r"^latest(?:~(\d+))?$")
MANIFEST = "manifest.yaml"
PULLED = "pulled.json"  # in a run `repro pull` brought from a remote: never `latest`


def find_root(start: Path) -> Path:
    """The git work tree root containing `start` (a `.git` dir or file), without running git."""
    here = start.resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    raise errors.NotAGitRepoError(
        f"{start} is not inside a git repository",
        hint="repro records the commit a run came from: run `git init` and commit your code first",
    )


@dataclasses.dataclass(frozen=True)
class Store:
    root: Path  # git root
    home: Path  # .repro (or $REPRO_HOME)

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def bugs_dir(self) -> Path:
        return self.home / "bugs"

    def create_run_dir(self, now: dt.datetime | None = None,
                       suffix: str | None = None) -> tuple[str, Path]:
        """A new, empty run directory with a time-sortable id that never collides.

        `suffix` (hex) ends the id instead of random digits: a multi-node run's id carries its
        job's key. Two ids in the same microsecond with one suffix draw again (random then)."""
        if not self.runs_dir.is_dir():
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            ignore_store(self.home)
        while True:
            run_id = new_run_id(now) if suffix is None else new_run_id(now, suffix)
            path = self.runs_dir / run_id
            try:
                path.mkdir()
            except FileExistsError:
                now = suffix = None  # same microsecond and suffix: draw again
                continue
            return run_id, path

    def run_ids(self) -> list[str]:
        """Every run id, newest first (ids sort by start time)."""
        try:
            names = os.listdir(self.runs_dir)
        except FileNotFoundError:
            return []
        return sorted((n for n in names if RUN_ID_RE.match(n)), reverse=True)

    def resolve(self, ref: str) -> Path:
        """RUN reference -> path of its manifest.yaml (which may not exist for a path ref)."""
        if not ref or "\0" in ref or len(ref) > MAX_REF:
            raise errors.RunNotFoundError(f"{_show(ref)} is not a run reference",
                                          hint="give a run id, latest, latest~N or a path")
        latest = LATEST_RE.match(ref)
        if latest:
            back = int(latest.group(1) or 0)
            found = 0
            for run_id in not_future(self.run_ids()):
                if _starting(self.runs_dir / run_id):
                    continue
                if (_started_by_verify(self.runs_dir / run_id / MANIFEST)
                        or _exists(self.runs_dir / run_id / PULLED)):
                    continue
                if found == back:
                    return self.runs_dir / run_id / MANIFEST
                found += 1
            raise errors.RunNotFoundError(
                f"{ref}: there are only {found} run{'s' if found != 1 else ''}" if found
                else f"{ref}: no runs yet",
                hint="list runs with `repro runs` (verify's own replays do not count as latest)"
                if found else "record one with `repro run -- CMD`",
            )
        as_path = Path(ref)
        if os.sep in ref or ref.endswith((".yaml", ".yml")) or ref in (".", ".."):
            if _is_dir(as_path):
                return as_path / MANIFEST
            if _exists(as_path):
                return as_path
            raise errors.RunNotFoundError(f"{_show(ref)}: no such file or directory")
        ids = self.run_ids()
        if ref in ids:
            return self.runs_dir / ref / MANIFEST
        matches = [i for i in ids if i.startswith(ref)]
        if len(matches) == 1:
            return self.runs_dir / matches[0] / MANIFEST
        if not matches:
            if _is_dir(as_path) and _exists(as_path / MANIFEST):
                return as_path / MANIFEST
            members = group_members(self, ref)
            if members:
                gid = members[0][1].group.id if members[0][1].group else ref
                what = (f"{_show(ref)!r}" if ref == GROUP_PREFIX + gid
                        else f"{_show(ref)!r} (group:{gid})")
                raise errors.RunNotFoundError(
                    f"{what} is a group of {len(members)} runs; this command takes one run, "
                    f"e.g. its first: {members[0][1].run_id}",
                    hint=f"compare groups with `repro compare group:{gid} B`, check one with "
                         f"`repro verify group:{gid} --level statistical`; "
                         "`repro runs --expand` lists the runs")
            raise errors.RunNotFoundError(f"no run matches {_show(ref)!r}",
                                          hint="list runs with `repro runs`")
        shown = ", ".join(matches[:10]) + (f" and {len(matches) - 10} more" if len(matches) > 10 else "")
        raise errors.RunNotFoundError(f"{_show(ref)!r} is ambiguous: it matches {shown}",
                                      hint="give more characters of the run id")

    def load(self, ref: str) -> manifest.Manifest:
        return load_manifest(self.resolve(ref))

    def iter_manifests(self, limit: int | None = None) -> Iterator[tuple[str, manifest.Manifest | errors.ReproError]]:
        """(run id, manifest or the error reading it), newest first; a bad run never hides others."""
        for run_id in self.run_ids()[:limit]:
            try:
                yield run_id, load_manifest(self.runs_dir / run_id / MANIFEST)
            except errors.RunNotFoundError as e:  # no manifest: is it being created?
                if not _starting(self.runs_dir / run_id):
                    yield run_id, e
            except errors.ReproError as e:
                yield run_id, e


STARTING_S = 10.0  # a run directory without a manifest younger than this is being created


def _starting(run_dir: Path) -> bool:
    """A run directory `repro run` has just made and not yet written its first manifest to
    (a fraction of a millisecond): not a run yet, neither `latest` nor an `unreadable` row.
    One left without a manifest for longer (repro killed in that moment) is listed as ever."""
    import time

    try:
        if (run_dir / MANIFEST).exists():
            return False
        return time.time() - run_dir.stat().st_mtime < STARTING_S
    except (OSError, ValueError):
        return False


def _started_by_verify(path: Path) -> bool:
    """A replay `verify` made: recorded, but never `latest` (design §1).

    `latest~N` reads manifests newest first only as far as it needs (~1 ms each); one that
    cannot be read counts as the user's, so a damaged run is still found and reported.
    """
    try:
        return manifest.read(path).run.started_by == "verify"
    except errors.ReproError:
        return False


def load_manifest(path: Path) -> manifest.Manifest:
    """Read a manifest; a `running` one whose repro process is gone reads as `abandoned`."""
    if not _exists(path):
        raise errors.RunNotFoundError(f"{bounded.show_path(path)} does not exist",
                                      hint="the run directory has no manifest.yaml")
    m = manifest.read(path)
    if m.run.status == "running" and not _still_running(m):
        # The process may have written its final record and exited between our read and the
        # check: read again, now that it is gone, before calling the run abandoned.
        m = manifest.read(path)
        if m.run.status == "running":
            return m.with_run(status="abandoned")
    return m


MAX_REF = 4096  # PATH_MAX: no longer reference names a file


def _show(ref: str) -> str:
    return bounded.show_path(ref, limit=120)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # ENAMETOOLONG, EACCES: not a run directory we can use
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def ignore_store(home: Path) -> None:
    """A new store ignores itself (`*` in its own .gitignore, as pytest's and mypy's caches do),
    so that the runs it records never make the tree dirty, with or without `repro init`. A
    store that already had runs is left as it is: its owner may track it on purpose."""
    path = home / ".gitignore"
    if not path.exists():
        path.write_text("# repro's run store: not code. Written by repro.\n*\n", encoding="utf-8")


def open_here(cwd: Path | None = None) -> Store:
    root = find_root(cwd or Path.cwd())
    home = os.environ.get("REPRO_HOME")
    return Store(root=root, home=Path(home).resolve() if home else root / ".repro")


# How far a run id may lie in the future (another host's clock, sharing REPRO_HOME) and still
# count for `latest`; beyond it, a run dated 2099 (committed, or from a broken clock) would
# pin `latest` for good.
CLOCK_SKEW = dt.timedelta(minutes=5)


def not_future(ids: list[str], now: dt.datetime | None = None) -> list[str]:
    """The run ids not dated beyond now + CLOCK_SKEW (ids start with their UTC start time)."""
    limit = new_run_id((now or dt.datetime.now(dt.UTC)) + CLOCK_SKEW)
    return [i for i in ids if i <= limit]


def future_ids(runs: Store) -> list[str]:
    """Run ids dated in the future, which `latest` skips (the CLI warns about them)."""
    ids = runs.run_ids()
    kept = set(not_future(ids))
    return [i for i in ids if i not in kept]


def new_run_id(now: dt.datetime | None = None, suffix: str | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S.%fZ") + "-" + (suffix or os.urandom(2).hex())


def process_start_ticks(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (Linux), to tell a live run from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22, counted after the parenthesised command name (which may contain spaces).
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def _still_running(m: manifest.Manifest) -> bool:
    pid = m.run.pid
    if pid is None:
        return False
    if m.run.host and m.run.host != os.uname().nodename:
        return True  # another machine's run: we cannot tell, so do not call it abandoned
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    # A pid can be reused after a reboot or a long time: the start time must match too.
    return m.run.pid_start is None or process_start_ticks(pid) == m.run.pid_start


def run_rows(runs: Store, limit: int | None = None) -> list[dict[str, object]]:
    """One summary row per run, newest first: the rows of `repro runs --json` (design §3).

    A run whose manifest cannot be read is a row with status `unreadable` and the error.
    """
    rows: list[dict[str, object]] = []
    for run_id, m in runs.iter_manifests(limit):
        if isinstance(m, errors.ReproError):
            rows.append({"run_id": run_id, "status": "unreadable", "started_at": None,
                         "command": [], "seed": None, "commit": None, "dirty": None,
                         "params": {}, "metrics": {}, "error": m.message})
            continue
        rows.append({"run_id": run_id, "status": m.run.status, "started_at": m.run.started_at,
                     "duration_s": m.run.duration_s, "command": list(m.command.argv),
                     "seed": m.seed.value, "commit": m.code.commit, "dirty": m.code.dirty,
                     "name": m.run.name, "exit_code": m.run.exit_code,
                     "replay_of": m.run.replay_of, "started_by": m.run.started_by,
                     "params": dict(m.params.values),
                     "metrics": dict(m.metrics.final),
                     "group": m.group.to_dict() if m.group else None,
                     "pulled": _exists(runs.runs_dir / run_id / PULLED),
                     **({"distributed": _nodes(m.distributed)} if m.distributed else {})})
    return rows


GROUP_PREFIX = "group:"


def group_members(runs: Store, ref: str) -> list[tuple[Path, manifest.Manifest]]:
    """The runs of one group (`repro run --repeat N`), by member index: `ref` is `group:<id>`,
    a group id, or a group's name (the newest group of that name). [] when none matches."""
    key = ref[len(GROUP_PREFIX):] if ref.startswith(GROUP_PREFIX) else ref
    chosen: str | None = None
    found: list[tuple[Path, manifest.Manifest]] = []
    for run_id, m in runs.iter_manifests():  # newest first: the first match is the newest
        if isinstance(m, errors.ReproError) or m.group is None:
            continue
        if chosen is None and key in (m.group.id, m.group.name):
            chosen = m.group.id
        if m.group.id == chosen:
            found.append((runs.runs_dir / run_id / MANIFEST, m))
    return sorted(found, key=lambda pm: pm[1].group.index if pm[1].group else 0)


def resolve_set(runs: Store, ref: str) -> list[tuple[Path, manifest.Manifest]]:
    """A RUN reference or a group (`group:<id>`, a group's name, or a directory of run
    directories, such as a group's manifests committed for CI) -> its runs' manifests."""
    as_path = Path(ref)
    if (os.sep in ref or ref in (".", "..")) and _is_dir(as_path) \
            and not _exists(as_path / MANIFEST):
        found = sorted(as_path.glob("*/" + MANIFEST))
        if found:
            return [(p, load_manifest(p)) for p in found]
    if ref.startswith(GROUP_PREFIX):
        members = group_members(runs, ref)
        if not members:
            raise errors.RunNotFoundError(f"no group matches {_show(ref)!r}",
                                          hint="record one with `repro run --repeat N -- CMD`; "
                                               "list them with `repro runs`")
        return members
    try:
        path = runs.resolve(ref)
    except errors.RunNotFoundError:
        members = group_members(runs, ref)
        if members:
            return members
        raise
    return [(path, load_manifest(path))]


def _nodes(d: manifest.Distributed) -> dict[str, object]:
    """A multi-node run's summary in `repro runs`: its job, nodes expected and present."""
    present = sum(1 for x in d.members if x.status != "missing") if d.members else None
    return {"job": d.job, "nnodes": d.nnodes, "present": present, "complete": d.complete,
            "world_size": d.world_size}
