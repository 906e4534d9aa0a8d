"""`repro pull`, `repro runs --remote` and `REMOTE:ref` references: runs from a remote store.

A pulled run is downloaded into a hidden temp directory beside its destination, every file
checked against the BLAKE3 hash in the run's index (a mismatch is an error, never a run), its
manifest read and checked, then renamed into place: a run appears whole or not at all.
`repro pull` puts runs in `.repro/runs/` (marked `pulled.json`: they never become `latest`,
which counts the runs you started). `REMOTE:ref` (`teammate:latest`, an id, a prefix) fetches
that one run into a cache under `.repro/remotes/`, checked by hash each time it is used, so
`repro diff mine teammate:latest` downloads one run and nothing else. Never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from repro import errors
from repro.capture import hashing
from repro.record import bounded, config, manifest, store
from repro.remote import layout
from repro.remote import store as remote
from repro.report import Reporter

JOBS = 8
CACHE_INDEX = ".remote-index.json"
_CORRUPT_HINT = ("the remote's copy is damaged: delete that object at the remote and push the "
                 "run again from a clone that has it")


@dataclasses.dataclass
class PullResult:
    remote: str
    pulled: list[str] = dataclasses.field(default_factory=list)
    already: list[str] = dataclasses.field(default_factory=list)
    conflicts: list[str] = dataclasses.field(default_factory=list)  # a different local copy
    downloaded_files: int = 0
    downloaded_bytes: int = 0
    stats: dict[str, object] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"schema": "repro/pull/v1", "remote": self.remote, "pulled": self.pulled,
                "already": self.already, "conflicts": self.conflicts,
                "downloaded_files": self.downloaded_files,
                "downloaded_bytes": self.downloaded_bytes, "stats": self.stats}


def pull(runs: store.Store, where: remote.Location, refs: list[str], everything: bool,
         reporter: Reporter) -> PullResult:
    if not refs and not everything:
        raise errors.UsageError("nothing to pull",
                                hint="name runs (an id, a prefix, latest) or give --all")
    configured = {r.name: r.url for r in config.load(runs.root).remotes}
    refs = [_at(ref, where, configured) for ref in refs]
    backend = remote.open_backend(where)
    backend.check()
    result = PullResult(remote=where.url)
    ids = layout.visible_runs(list(backend.list("runs/")))
    home = cache_home(runs, where)
    wanted = ids if everything else list(dict.fromkeys(
        run_id for ref in refs for run_id in (
            group_ids(backend, home, ids, ref) if ref.startswith(store.GROUP_PREFIX)
            else [resolve_id(backend, home, ids, ref)])))
    if not runs.runs_dir.is_dir():
        runs.runs_dir.mkdir(parents=True, exist_ok=True)
        store.ignore_store(runs.home)
    marker = json.dumps({"schema": "repro/pulled/v1", "remote": where.url}).encode() + b"\n"
    local: dict[str, Path] = {}  # hash -> a file this pull already wrote and checked
    with reporter.progress("pulling") as progress:
        for n, run_id in enumerate(reversed(wanted), 1):
            dest = runs.runs_dir / run_id
            if (dest / store.MANIFEST).exists():
                theirs = backend.get_bytes(layout.run_key(run_id, store.MANIFEST),
                                           bounded.MANIFEST_MAX)
                same = (dest / store.MANIFEST).read_bytes() == theirs
                (result.already if same else result.conflicts).append(run_id)
            else:
                files, size = materialize(backend, run_id, dest, {layout.PULLED: marker},
                                          local=local)
                if files is None:
                    result.already.append(run_id)
                else:
                    result.pulled.append(run_id)
                    result.downloaded_files += files
                    result.downloaded_bytes += size
            progress(n, len(wanted))
    result.stats = backend.stats.to_dict()
    return result


def cache_home(runs: store.Store, where: remote.Location) -> Path:
    """Where runs fetched for `REMOTE:ref` and remote listings are kept, per remote URL."""
    digest = hashing.hash_bytes(where.url.encode()).partition(":")[2][:12]
    return runs.home / "remotes" / f"{where.name or 'url'}-{digest}"


def resolve_id(backend: remote.Backend, home: Path, ids: list[str], ref: str) -> str:
    """A reference to a run at the remote: latest, latest~N, an id or a unique prefix."""
    latest = store.LATEST_RE.match(ref)
    if latest:
        back, found = int(latest.group(1) or 0), 0
        for run_id in store.not_future(ids):
            if _manifest_of(backend, home, run_id).run.started_by == "verify":
                continue
            if found == back:
                return run_id
            found += 1
        raise errors.RunNotFoundError(
            f"{ref}: {backend.url} has {'only ' + str(found) if found else 'no'} "
            f"run{'s' if found != 1 else ''}",
            hint="list them with `repro runs --remote`; push some with `repro push`")
    if ref in ids:
        return ref
    matches = [i for i in ids if i.startswith(ref)] if ref else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise errors.RunNotFoundError(f"no run at {backend.url} matches {ref!r}",
                                      hint="list them with `repro runs --remote`")
    raise errors.RunNotFoundError(f"{ref!r} is ambiguous at {backend.url}: it matches "
                                  + ", ".join(matches[:5]),
                                  hint="give more characters of the run id")


def group_ids(backend: remote.Backend, home: Path, ids: list[str], ref: str) -> list[str]:
    """The runs of a group at the remote (`group:<id>` or `group:<name>`, the newest group of
    that name), newest first. Reads the manifests (cached: runs are write-once)."""
    key = ref[len(store.GROUP_PREFIX):]
    chosen: str | None = None
    found: list[str] = []
    for run_id in ids:  # newest first: the first match is the newest group of that name
        g = _manifest_of(backend, home, run_id).group
        if g is None:
            continue
        if chosen is None and key in (g.id, g.name):
            chosen = g.id
        if g.id == chosen:
            found.append(run_id)
    if not found:
        raise errors.RunNotFoundError(f"no group at {backend.url} matches {ref!r}",
                                      hint="list them with `repro runs --remote`")
    return found


def _manifest_of(backend: remote.Backend, home: Path, run_id: str) -> manifest.Manifest:
    """A remote run's manifest, cached under `home` (runs are write-once: never stale)."""
    path = home / "runs" / run_id / store.MANIFEST
    if not path.is_file():
        raw = backend.get_bytes(layout.run_key(run_id, store.MANIFEST), bounded.MANIFEST_MAX)
        _write_atomic(path, raw)
    return manifest.read(path)


def remote_rows(runs: store.Store, where: remote.Location, limit: int
                ) -> tuple[list[dict[str, object]], list[str], dict[str, object]]:
    """Rows of `repro runs --remote`: listing the remote, reading only the newest `limit`
    manifests (cached), never a run's files. Also returns every visible id and the stats."""
    backend = remote.open_backend(where)
    ids = layout.visible_runs(list(backend.list("runs/")))
    if not ids:
        backend.check()  # a mistyped file:// path lists nothing too: not "no runs yet"
    home = cache_home(runs, where)
    shown = ids[:limit]
    missing = [i for i in shown if not (home / "runs" / i / store.MANIFEST).is_file()]
    with remote.workers(JOBS) as pool:
        for _ in pool.map(lambda i: _manifest_of(backend, home, i), missing):
            pass
    keep = set(shown)
    rows = [r for r in store.run_rows(store.Store(root=runs.root, home=home))
            if r["run_id"] in keep]
    return rows[:limit], ids, backend.stats.to_dict()


def _remote_name(ref: str, names: set[str]) -> str | None:
    """The configured remote a `NAME:ref` names, or None (`group:x`, an id, a path)."""
    name, sep, _ = ref.partition(":")
    return name if sep and name != "group" and name in names else None


def remote_of(refs: Sequence[str], cfg: config.Config) -> str | None:
    """The one configured remote that `REMOTE:ref` words name (None when they name none)."""
    named = {n for n in (_remote_name(r, {x.name for x in cfg.remotes}) for r in refs) if n}
    if len(named) > 1:
        raise errors.UsageError(f"the runs name {len(named)} remotes ({', '.join(sorted(named))})",
                                hint="pull from one remote at a time")
    return next(iter(named), None)


def _at(ref: str, where: remote.Location, configured: Mapping[str, str] | None = None) -> str:
    """`NAME:ref` for the remote pulled from (by name, or a configured name whose URL --remote
    gave) -> `ref`; a word naming another remote, or none configured, is refused."""
    name, sep, rest = ref.partition(":")
    if not sep or name == "group" or not config.REMOTE_NAME_RE.match(name):
        return ref
    if name == where.name:
        return rest
    if configured is not None and name not in configured:
        known = ", ".join(sorted(configured)) or "none"
        raise errors.UsageError(f"{ref}: no remote named {name!r} (configured: {known})",
                                hint="check the name under `remote` in repro.yaml / "
                                     "[tool.repro]")
    if configured is not None and configured[name].rstrip("/") == where.url.rstrip("/"):
        return rest  # --remote URL of the very remote the word names
    raise errors.UsageError(f"{ref} names remote {name!r}, but this pull reads "
                            f"{where.name or where.url}",
                            hint=f"pull it with `repro pull {ref}` alone or --remote {name}")


def local_ref(runs: store.Store, ref: str) -> str:
    """`NAME:ref` -> the path of that run fetched into the cache; any other ref unchanged."""
    name, sep, rest = ref.partition(":")
    if not sep or not config.REMOTE_NAME_RE.match(name) or name == "group" or "/" in name:
        return ref
    if name in ("s3", "file") and rest.startswith("//"):
        raise errors.RunNotFoundError(
            f"{ref}: a run at a remote is named REMOTE:ref with the remote's name, not its URL",
            hint="name it under `remote` in repro.yaml / [tool.repro] (remote: {team: "
                 f"{name}:{rest.rpartition(':')[0] or rest}}}), then use team:latest; or "
                 "`repro pull --remote URL RUN`")
    cfg = config.load(runs.root)
    if name not in {r.name for r in cfg.remotes}:
        with contextlib.suppress(OSError, ValueError):
            if Path(ref).exists():
                return ref
        known = ", ".join(sorted(r.name for r in cfg.remotes)) or "none configured"
        raise errors.RunNotFoundError(
            f"no remote named {name!r} ({known})",
            hint="name remotes under `remote` in repro.yaml / [tool.repro], e.g. "
                 f"remote: {{{name}: s3://BUCKET/PREFIX}}")
    if rest.startswith(store.GROUP_PREFIX):
        raise errors.RunNotFoundError(
            f"{ref}: a group at a remote is not read in place (REMOTE:ref names one run)",
            hint=f"pull it first (repro pull --remote {name} {rest}), then use {rest}")
    where = remote.locate(name, cfg)
    return str(fetch(runs, where, rest))


def fetch(runs: store.Store, where: remote.Location, ref: str,
          backend: remote.Backend | None = None) -> Path:
    """One remote run in the local cache, checked by hash; only it is downloaded."""
    backend = backend or remote.open_backend(where)
    home = cache_home(runs, where)
    if store.RUN_ID_RE.match(ref) and cached(home / "runs" / ref, ref):
        return home / "runs" / ref
    ids = layout.visible_runs(list(backend.list("runs/")))
    if not ids:
        backend.check()
    run_id = resolve_id(backend, home, ids, ref)
    dest = home / "runs" / run_id
    if not cached(dest, run_id):
        materialize(backend, run_id, dest, {}, replace=True)
    return dest


def cached(run_dir: Path, run_id: str) -> bool:
    """A complete cached copy whose every file still has the hash the remote's index gives."""
    try:
        raw = (run_dir / CACHE_INDEX).read_bytes()
        index = layout.parse_index(raw, run_id, str(run_dir / CACHE_INDEX))
        if hashing.hash_file(run_dir / store.MANIFEST) != index.manifest_hash:
            return False
        return all(hashing.hash_file(run_dir / f.path) == f.hash for f in index.files)
    except (OSError, errors.ReproError):
        return False


def materialize(backend: remote.Backend, run_id: str, dest: Path, extra: dict[str, bytes],
                replace: bool = False, local: dict[str, Path] | None = None
                ) -> tuple[int | None, int]:
    """Download a run into `dest` (whole or not at all); (files, bytes downloaded), or
    (None, 0) when `dest` appeared meanwhile (another pull won) and `replace` is off.

    `local` maps hashes to files already pulled (a blob shared by many runs, such as an
    identical log, is copied from there, checked, rather than fetched again); it is updated
    with this run's files."""
    local = {} if local is None else local
    idx_key = layout.run_key(run_id, layout.INDEX)
    try:
        raw = backend.get_bytes(idx_key, layout.INDEX_MAX)
    except remote.RemoteNotFound as e:
        raise errors.RemoteError(f"{backend.url}: run {run_id} has no file index",
                                 hint="the remote's copy is damaged or was written by "
                                      "something other than repro push") from e
    index = layout.parse_index(raw, run_id, f"{backend.url}/{idx_key}")
    tmp = dest.parent / f".pull-{run_id}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        tmp.mkdir(parents=True)
        man = backend.get_bytes(layout.run_key(run_id, store.MANIFEST), bounded.MANIFEST_MAX)
        _check(hashing.hash_bytes(man), index.manifest_hash, backend.url,
               layout.run_key(run_id, store.MANIFEST), run_id)
        (tmp / store.MANIFEST).write_bytes(man)
        got = manifest.read(tmp / store.MANIFEST)
        if got.run.run_id != run_id:
            raise errors.RemoteError(f"{backend.url}: runs/{run_id} holds the manifest of "
                                     f"{got.run.run_id}", hint=_CORRUPT_HINT)
        with remote.workers(JOBS) as pool:
            sizes = list(pool.map(_downloader(backend, tmp, run_id, local), index.files))
        (tmp / CACHE_INDEX).write_bytes(raw)
        for name, body in extra.items():
            (tmp / name).write_bytes(body)
        if replace and dest.exists():
            old = dest.parent / f".old-{run_id}.{os.urandom(4).hex()}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(dest, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, dest)
        except OSError:
            if (dest / store.MANIFEST).exists():
                return None, 0
            raise
        for f in index.files:
            local.setdefault(f.hash, dest / f.path)
        return sum(1 for n in sizes if n is not None) + 1, sum(n or 0 for n in sizes) + len(man)
    except OSError as e:
        raise errors.StoreError(f"cannot write {bounded.show_path(dest)}: {bounded.reason(e)}",
                                hint="check free space and permissions under .repro/") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _downloader(backend: remote.Backend, tmp: Path, run_id: str, local: dict[str, Path]
                ) -> Callable[[layout.FileEntry], int | None]:
    """Fetch one file (its size), or copy it from a local file with its hash (None)."""
    def one(f: layout.FileEntry) -> int | None:
        target = tmp / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        have = local.get(f.hash)
        if have is not None:
            with contextlib.suppress(OSError, errors.ReproError):
                shutil.copyfile(have, target)
                if hashing.hash_file(target) == f.hash:
                    return None
            with contextlib.suppress(OSError):
                target.unlink()
        key = remote.blob_key(f.hash)
        size = backend.get_file(key, target, f.size)
        _check(hashing.hash_file(target), f.hash, backend.url, key, f"{run_id}/{f.path}")
        return size
    return one


def _check(got: str, want: str, url: str, key: str, what: str) -> None:
    if got != want:
        raise errors.RemoteError(
            f"{url}: {key} is corrupted: its content hashes to {got}, not {want} ({what})",
            hint=_CORRUPT_HINT)


def _write_atomic(path: Path, raw: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
