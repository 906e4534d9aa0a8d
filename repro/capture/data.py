"""The content of the data inputs and outputs a run names (files, directories, symlinks).

Owns: ``hash_paths`` (one ``Entry`` per named path: resolving it, walking a directory, checking
each file against the stat cache, having the rest hashed, and the directory hash), and the rules
of what a hashed tree holds. The hashing itself is capture/hashing.py, the cache
capture/statcache.py, the manifest sections and listing files capture/listings.py, DVC's md5
capture/dvc.py, and the paths a command line names capture/cmdline.py.

Must not: print (progress goes to a callback), follow a symlink inside a tree, read file
contents itself, or raise anything but ``errors.ReproError`` subclasses (``errors.DataError``
for anything about the data).

Directory hash. A directory's listing holds every regular file and symlink below it, keyed by
its POSIX path relative to the directory; empty directories are not represented (as in git). A
file's value is its content hash, a symlink's is ``symlink:<target>``. The directory hash is
``blake3:`` + BLAKE3 of the concatenation, sorted by path bytes (UTF-8; undecodable bytes kept
as they are), of ``path + "\\0" + value + "\\0"`` for every entry. Neither a path nor a link
target can contain NUL, so the encoding is unambiguous; sizes, mtimes, permissions and the order
the filesystem lists entries in do not enter it. ``hashing.hash_listing`` recomputes it from a
listing.

Symlinks are recorded as links and never followed, so a walk can neither leave the tree nor
loop through a directory link. A link that cannot be resolved because of a loop is a DataError
(a dangling link is recorded like any other). A requested path whose parent directories lead
out of the root through a symlink is a DataError. Special files (FIFOs, sockets, devices) are
refused: reading one could block or never end. At the root itself, ``.git`` and ``.repro`` are
skipped.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import operator
import os
import stat
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from repro import errors
from repro.capture import dvc, hashing, statcache
from repro.capture.hashing import display as _display

KINDS = ("file", "dir", "symlink", "missing")
SKIP_AT_ROOT = (".git", ".repro")  # at the root itself: the repository's own stores

_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One hashed path, as the manifest records it."""

    path: str  # POSIX, relative to root, as recorded
    kind: str  # "file" | "dir" | "symlink" | "missing"
    hash: str | None
    size: int  # bytes (dir: sum of its files)
    files: int | None = None  # dirs: number of entries in the listing
    target: str | None = None  # symlinks
    listing: Mapping[str, tuple[str, int]] | None = None  # dirs: relpath -> (hash, size)
    dvc_md5: str | None = None


# --- walking --------------------------------------------------------------------------------


@dataclasses.dataclass
class _Item:
    """One requested path while hash_paths works on it."""

    rel: str
    abs: str
    kind: str
    target: str | None = None
    cache: statcache.StatCache | None = None
    # Regular files in walk order, and for each the index of its valid cache entry or -1.
    walked: list[str] = dataclasses.field(default_factory=list)
    hit_index: list[int] = dataclasses.field(default_factory=list)
    misses: list[tuple[str, str, os.stat_result]] = dataclasses.field(default_factory=list)
    miss_ids: list[int] = dataclasses.field(default_factory=list)  # each miss's work index
    links: dict[str, str] = dataclasses.field(default_factory=dict)  # relpath -> target


def resolve(path: str | Path, root_abs: str, root_real: str) -> tuple[str, str]:
    """(recorded POSIX path relative to the root, absolute path under the real root)."""
    p = os.fspath(path)
    if not p:
        raise errors.DataError("an empty path cannot be hashed", hint="name a file or directory")
    if os.path.isabs(p):
        norm = os.path.normpath(p)
        for base in (root_abs, root_real):
            if norm == base or norm.startswith(base.rstrip("/") + "/"):
                rel = os.path.relpath(norm, base)
                break
        else:
            raise errors.DataError(f"{p} is outside the repository ({root_abs})",
                                   hint="data and outputs must live inside the repository")
    else:
        rel = os.path.normpath(p)
    if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
        raise errors.DataError(f"{p} is outside the repository ({root_abs})",
                               hint="data and outputs must live inside the repository")
    abs_path = root_real if rel == "." else os.path.join(root_real, rel)
    if rel != ".":
        parent = os.path.realpath(os.path.dirname(abs_path))
        if parent != root_real and not parent.startswith(root_real.rstrip("/") + "/"):
            raise errors.DataError(
                f"{rel} leads outside the repository through a symlinked directory "
                f"({os.path.dirname(rel)} -> {parent})",
                hint="repro never follows symlinks out of the repository; name the path "
                     "without the symlinked directory")
    return rel.replace(os.sep, "/"), abs_path


def _classify(rel: str, abs_path: str) -> tuple[str, os.stat_result | None, str | None]:
    try:
        st = os.lstat(abs_path)
    except (FileNotFoundError, NotADirectoryError):
        return "missing", None, None
    except OSError as e:
        raise hashing.access_error(rel, e) from e
    if stat.S_ISLNK(st.st_mode):
        return "symlink", st, _link_target(abs_path, rel)
    if stat.S_ISDIR(st.st_mode):
        return "dir", st, None
    if stat.S_ISREG(st.st_mode):
        return "file", st, None
    raise hashing.not_regular(rel, st.st_mode)


def _link_target(path: str, display: str, dir_fd: int | None = None) -> str:
    try:
        target = os.readlink(path, dir_fd=dir_fd)
    except OSError as e:
        raise hashing.access_error(display, e) from e
    try:
        os.stat(path, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise errors.DataError(
                f"symlink loop at {display} (-> {target})",
                hint="fix or remove the link; repro records symlinks as links and never "
                     "follows them, but this one points at itself through other links") from e
        # Dangling or unreachable: recorded as a link all the same.
    return target


def _walk(item: _Item, skip: frozenset[str]) -> None:
    """List regular files and symlinks below item.abs, checking each file against the cache.

    This loop is the whole cost of re-checking an unchanged tree, so it is written flat: one
    lstat per file (by the walk), then the cache entry at the position the previous walk met
    the file (an unchanged directory is walked in the same order), else a dictionary lookup,
    which resynchronises after an added or removed file.
    """
    cache = item.cache
    rels = cache.rels if cache is not None else []
    sigs = cache.sigs if cache is not None else []
    n = len(rels)
    k = 0
    walked = item.walked
    hit_index = item.hit_index
    misses = item.misses
    links = item.links
    pack = statcache.SIG.pack
    is_reg = stat.S_ISREG
    seen_dirs: set[tuple[int, int]] = set()
    stack = [(item.abs, "")]
    while stack:
        directory, prefix = stack.pop()
        display = _display(item.rel, prefix.rstrip("/"))
        try:
            # By descriptor, refusing a symlink: a directory swapped for a link mid-walk is not
            # followed, and entries are stat'ed relative to it.
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise errors.DataError(f"cannot list directory {display}: {hashing.reason(e)}",
                                   hint=hashing.UNREADABLE_HINT) from e
        try:
            dst = os.fstat(fd)
            if (dst.st_dev, dst.st_ino) in seen_dirs:
                raise errors.DataError(f"directory loop at {display}: it was already walked",
                                       hint="a bind mount makes the tree contain itself; "
                                            "unmount it or hash a directory inside it")
            seen_dirs.add((dst.st_dev, dst.st_ino))
            # In the order the filesystem lists entries (stable for an unchanged directory,
            # which is what the cache's in-order matching needs): sorting names here would
            # cost a re-check of 100k files 10%.
            with os.scandir(fd) as scanner:
                entries = list(scanner)
            subdirs: list[tuple[str, str]] = []
            for de in entries:
                name = de.name
                try:
                    if de.is_dir(follow_symlinks=False):
                        sub = directory + "/" + name
                        if sub not in skip:
                            subdirs.append((sub, prefix + name + "/"))
                        continue
                    st = de.stat(follow_symlinks=False)
                except OSError as err:
                    raise hashing.access_error(_display(item.rel, prefix + name), err) from err
                rel = prefix + name
                if is_reg(st.st_mode):
                    j = -1
                    if n:
                        if k < n and rels[k] == rel:
                            j = k
                        elif cache is not None:
                            j = cache.index().get(rel, -1)
                        if j >= 0:
                            k = j + 1
                            try:
                                sig = pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                           st.st_ino, st.st_dev)
                            except struct.error:
                                sig = b""
                            if sigs[j] != sig:
                                j = -1
                    walked.append(rel)
                    hit_index.append(j)
                    if j < 0:
                        misses.append((rel, directory + "/" + name, st))
                elif stat.S_ISLNK(st.st_mode):
                    links[rel] = _link_target(name, _display(item.rel, rel), dir_fd=fd)
                else:
                    raise hashing.not_regular(_display(item.rel, rel), st.st_mode)
            stack.extend(reversed(subdirs))
        except OSError as e:
            raise errors.DataError(f"cannot list directory {display}: {hashing.reason(e)}",
                                   hint=hashing.UNREADABLE_HINT) from e
        finally:
            os.close(fd)


def _check_file(item: _Item, st: os.stat_result) -> None:
    """The cache check of `_walk` for a requested path that is a single file."""
    cache = item.cache
    j = cache.index().get("", -1) if cache is not None else -1
    if j >= 0 and cache is not None:
        try:
            sig = statcache.SIG.pack(*hashing.signature(st))
        except struct.error:
            sig = b""
        if cache.sigs[j] != sig:
            j = -1
    item.walked.append("")
    item.hit_index.append(j)
    if j < 0:
        item.misses.append(("", item.abs, st))


# --- hash_paths -----------------------------------------------------------------------------


def hash_paths(paths: Sequence[str | Path], *, root: Path, cache_dir: Path | None,
               progress: hashing.Progress | None = None) -> list[Entry]:
    """One Entry per path (relative to `root`, or absolute), in order.

    A path the caller names is followed when it is a symlink, and may lie outside `root`:
    datasets usually live elsewhere (`data -> /mnt/datasets/x`, `--data /scratch/imagenet`) and
    it is their content the run depends on. Such a path is recorded as given (relative to
    `root` when inside it, else absolute) and hashed read-only where it really is. Symlinks
    *inside* a hashed directory are recorded as links and never followed.

    `cache_dir` holds the stat cache (None: hash everything). `progress(bytes_done,
    bytes_total)` is called from this thread once the walk has found the total, then at most
    every 0.1 s, and a last time with done == total. DataError naming the path on anything
    that cannot be hashed.
    """
    located = [_locate(p, root) for p in paths]
    groups: dict[str, list[str]] = {}
    for _, eff_root, rel in located:
        groups.setdefault(eff_root, []).append(rel)
    found: dict[tuple[str, str], Entry] = {}
    for eff_root, rels in groups.items():
        for entry in _hash_paths_at(rels, Path(eff_root), cache_dir, progress):
            found[(eff_root, entry.path)] = entry
    return [dataclasses.replace(found[(eff_root, rel)], path=shown)
            for shown, eff_root, rel in located]


def _locate(path: str | Path, root: Path) -> tuple[str, str, str]:
    """(recorded path, root to hash under, path relative to that root) for a named path."""
    p = os.fspath(path)
    if not p:
        raise errors.DataError("an empty path cannot be hashed", hint="name a file or directory")
    root_real = os.path.realpath(root)
    given = os.path.normpath(p if os.path.isabs(p) else os.path.join(os.path.abspath(root), p))
    real = os.path.realpath(given)
    if os.path.islink(real):
        real = given  # a symlink loop: leave it to the engine to report as a link
    for base in (os.path.abspath(root), root_real):
        if given == base or given.startswith(base.rstrip("/") + "/"):
            shown = os.path.relpath(given, base).replace(os.sep, "/")
            break
    else:
        shown = given  # outside the repository: recorded by its absolute path
    if real == root_real or real.startswith(root_real.rstrip("/") + "/"):
        return shown, root_real, os.path.relpath(real, root_real)
    if real == "/":
        raise errors.DataError(f"{p} resolves to / and cannot be hashed",
                               hint="name the dataset's directory")
    return shown, os.path.dirname(real), os.path.basename(real)


def _hash_paths_at(paths: Sequence[str], root: Path, cache_dir: Path | None,
                   progress: hashing.Progress | None) -> list[Entry]:
    started_ns = time.time_ns()
    gc_was_enabled = gc.isenabled()
    # The walk builds ~5 objects per file; with the cyclic GC on, its repeated full scans
    # of them cost more than the rest of a 100k-file re-check. Nothing here makes cycles.
    gc.disable()
    try:
        return _hash_paths(paths, root, cache_dir, progress, started_ns)
    finally:
        if gc_was_enabled:
            gc.enable()


def _hash_paths(paths: Sequence[str | Path], root: Path, cache_dir: Path | None,
                progress: hashing.Progress | None, started_ns: int) -> list[Entry]:
    root_abs = os.path.abspath(root)
    root_real = os.path.realpath(root)
    skip = {os.path.join(root_real, name) for name in SKIP_AT_ROOT}
    if cache_dir is not None:
        skip.add(os.path.realpath(cache_dir))  # it changes while we hash
    items: dict[str, _Item] = {}
    order: list[str] = []
    for path in paths:
        rel, abs_path = resolve(path, root_abs, root_real)
        order.append(rel)
        if rel in items:
            continue
        kind, st, target = _classify(rel, abs_path)
        item = _Item(rel=rel, abs=abs_path, kind=kind, target=target)
        items[rel] = item
        if kind in ("file", "dir") and cache_dir is not None:
            item.cache = statcache.StatCache(cache_dir, abs_path)
            item.cache.load()
        if kind == "dir":
            _walk(item, frozenset(skip))
        elif kind == "file" and st is not None:
            _check_file(item, st)

    # Every distinct file that missed the cache is hashed once, even when requested twice.
    work: list[hashing.Work] = []
    work_ids: dict[str, int] = {}
    done = 0
    pending = 0
    for item in items.values():
        if item.cache is not None and progress is not None:
            sizes = item.cache.sizes
            done += sum(sizes[j] for j in item.hit_index if j >= 0)
        for rel, abs_path, st in item.misses:
            i = work_ids.setdefault(abs_path, len(work))
            if i == len(work):
                work.append((abs_path, item.rel, rel, st))
                pending += st.st_size
            item.miss_ids.append(i)
    total = done + pending
    if progress is not None:
        progress(done, total)
    results = hashing.hash_files(work, progress, done, total)
    if progress is not None:
        progress(total, total)

    built: dict[str, Entry] = {}
    dvc_index = dvc.DvcIndex(Path(root_real))
    for item in items.values():
        entry = _finish(item, results, started_ns)
        built[item.rel] = dataclasses.replace(entry, dvc_md5=dvc_index.md5(item.rel))
    return [built[rel] for rel in order]


def _finish(item: _Item, results: Sequence[tuple[str, os.stat_result]],
            started_ns: int) -> Entry:
    """The Entry for one requested path; stores what the stat cache may trust."""
    if item.kind == "missing":
        return Entry(path=item.rel, kind="missing", hash=None, size=0)
    if item.kind == "symlink":
        return Entry(path=item.rel, kind="symlink", hash=None, size=0, target=item.target)
    cache = item.cache
    if (item.kind == "dir" and cache is not None and cache.digest is not None
            and not item.misses and not item.links and len(item.walked) == len(cache.rels)):
        # Unchanged directory: exactly the snapshot's files (distinct paths, all hits, as
        # many), so its sorted order and directory hash hold as they are.
        order = cache.order
        pairs = zip(map(cache.hashes.__getitem__, order), map(cache.sizes.__getitem__, order),
                    strict=True)
        listing = dict(zip(map(cache.rels.__getitem__, order), pairs, strict=True))
        return Entry(path=item.rel, kind="dir", hash=cache.digest, size=sum(cache.sizes),
                     files=len(listing), listing=listing)
    values: dict[str, tuple[str, int]] = {}
    new = statcache.Snapshot() if cache is not None else None
    stored_new = False
    miss_ids = iter(item.miss_ids)
    for rel, j in zip(item.walked, item.hit_index, strict=True):
        if j >= 0 and cache is not None:
            value = (cache.hashes[j], cache.sizes[j])
            values[rel] = value
            if new is not None:
                new.add(rel, cache.sigs[j], value)
            continue
        digest, st = results[next(miss_ids)]
        value = (digest, st.st_size)
        values[rel] = value
        if new is not None and statcache.trusted(st.st_ctime_ns, started_ns):
            try:
                new.add(rel, statcache.SIG.pack(*hashing.signature(st)), value)
                stored_new = True
            except struct.error:
                pass  # a value no int64 holds: never cached
    if cache is not None and new is not None:
        cache.save(new, changed=stored_new or len(new.rels) != len(cache.rels),
                   digest=item.kind == "dir")
    if item.kind == "file":
        digest, size = values[""]
        return Entry(path=item.rel, kind="file", hash=digest, size=size)
    for rel, target in item.links.items():
        values[rel] = ("symlink:" + target, 0)
    keys = hashing.sorted_paths(values)
    listing = dict(zip(keys, map(values.__getitem__, keys), strict=True))
    digest = hashing.listing_digest(keys, list(map(_first, listing.values())))
    size = sum(map(_second, listing.values()))
    return Entry(path=item.rel, kind="dir", hash=digest, size=size, files=len(listing),
                 listing=listing)

