"""Content hashes of data inputs and outputs (files, directories, symlinks) and the stat cache.

Owns: BLAKE3 hashes written ``blake3:<hex>`` (the only blake3 user: other modules call
``hash_bytes``/``hash_file``), directory hashes and their listing files, the stat cache under the
cache directory the caller passes, the manifest ``data``/``outputs`` mapping, the md5 DVC recorded
for a path, and picking candidate input paths out of a command line.

Must not: print (progress goes to a callback), follow a symlink, read a whole file into memory,
import PyYAML (DVC files are read through ``manifest.read_yaml_file``), or raise anything but
``errors.ReproError`` subclasses (``errors.DataError`` for anything about the data).

Directory hash. A directory's listing holds every regular file and symlink below it, keyed by
its POSIX path relative to the directory; empty directories are not represented (as in git). A
file's value is its content hash, a symlink's is ``symlink:<target>``. The directory hash is
``blake3:`` + BLAKE3 of the concatenation, sorted by path bytes (UTF-8; undecodable bytes kept
as they are), of ``path + "\\0" + value + "\\0"`` for every entry. Neither a path nor a link
target can contain NUL, so the encoding is unambiguous; sizes, mtimes, permissions and the order
the filesystem lists entries in do not enter it. ``hash_listing`` recomputes it from a listing.

Symlinks are recorded as links and never followed, so a walk can neither leave the tree nor
loop through a directory link. A link that cannot be resolved because of a loop is a DataError
(a dangling link is recorded like any other). A requested path whose parent directories lead
out of the root through a symlink is a DataError. Special files (FIFOs, sockets, devices) are
refused: reading one could block or never end. At the root itself, ``.git`` and ``.repro`` are
skipped.

Stat cache. Re-hashing an unchanged tree costs one ``lstat`` per file: each requested path
(a "shard", keyed by its real absolute path) keeps, under ``<cache_dir>/stat-v1/<key>/``,
snapshot files mapping the path of each file inside it to the signature (size, mtime_ns,
ctime_ns, inode, device) it had when hashed, and the hash. A snapshot is written whole to a
temporary name and renamed into place, and ends with a BLAKE3 checksum of its bytes, so readers
see complete files or none, and a damaged one is ignored. Readers merge all snapshots present
(newest name wins per path); a writer writes one new snapshot with what it saw, then deletes the
snapshots it had read. There are no locks: concurrent runs can only lose entries (costing a
re-hash), never read a wrong one, because an entry is used only when its full signature matches
the file's current ``lstat``. Racy timestamps: a file changed again within the same timestamp
tick as it was hashed keeps its signature, so an entry is stored only when the file's ctime is
older than the start of the hashing by more than the filesystem's tick (``_RACY_MARGIN_NS``);
fresher files are hashed again next time. (ctime, unlike mtime, cannot be set back by a
program.) Filesystem clocks far behind this machine's clock (NFS) weaken that guard.
"""

from __future__ import annotations

import array
import collections
import contextlib
import dataclasses
import errno
import gc
import itertools
import json
import operator
import os
import shutil
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from repro import errors
from repro.capture import cmdline
from repro.record import bounded, manifest

if TYPE_CHECKING:
    import concurrent.futures

LISTING_SCHEMA = "repro/listing/v1"
KINDS = ("file", "dir", "symlink", "missing")

_CHUNK = 128 * 1024  # read size for ordinary files: small enough to stay in cache while hashed
_PIPELINE_MIN = 16 * 1024 * 1024  # from this size a reader thread overlaps I/O with hashing
_PIPELINE_CHUNK = 4 * 1024 * 1024
_SMALL_MAX = 64 * 1024  # smaller files are hashed on the calling thread, with prefetch
_PREFETCH = 64  # small files opened (and announced with fadvise WILLNEED) ahead of hashing
_BATCH_FILES = 16  # files per thread-pool task: amortises the pool's per-task cost
_BATCH_BYTES = 32 * 1024 * 1024
_PROGRESS_INTERVAL_S = 0.1
# Threads hashing files of _SMALL_MAX bytes or more (blake3 and reads release the GIL for
# them). Measured on 2 cores: 2 threads hash 10k 100 KiB files in half the time of 1; more
# gain nothing.
_WORKERS = 2
_SKIP_AT_ROOT = (".git", ".repro")

# O_NONBLOCK: should a file have been swapped for a FIFO, open must not hang.
# O_NOFOLLOW: should it have been swapped for a symlink, do not follow it.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW
_UNREADABLE_HINT = "check the file's permissions, or leave it out of --data/--output"
_CHANGING_HINT = "wait until the process writing to it has finished, then run again"

Progress = Callable[[int, int], None]
Signature = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device
_Work = tuple[str, str, str, os.stat_result]  # absolute path, requested path, relpath, lstat


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


# --- hashing primitives ---------------------------------------------------------------------


def hash_bytes(data: bytes) -> str:
    """``blake3:<hex>`` of `data`."""
    threads = blake3.blake3.AUTO if len(data) >= _PIPELINE_MIN else 1
    return "blake3:" + str(blake3.blake3(data, max_threads=threads).hexdigest())


def keyed_hash(key: bytes, data: bytes) -> str:
    """``blake3-keyed:<hex>``: keyed BLAKE3 (a MAC) of `data` under a 32-byte `key`."""
    return "blake3-keyed:" + str(blake3.blake3(data, key=key).hexdigest())


def hash_file(path: str | Path) -> str:
    """``blake3:<hex>`` of a regular file's content, streamed. DataError if it is not one."""
    p = os.fspath(path)
    display = str(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError as e:
        raise errors.DataError(f"{display} does not exist",
                               hint="check the path; it is relative to the current directory") from e
    except OSError as e:
        raise _access_error(display, e) from e
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(display, st.st_mode)
    digest, _ = _hash_regular(p, display, st, bytearray(_CHUNK), _Counter(), threading.Event())
    return digest


def hash_prefix(path: str | Path, size: int) -> str | None:
    """``blake3:<hex>`` of the first `size` bytes of a file (as hash_file would give for a file
    of just those bytes), streamed; None when it is shorter or cannot be read."""
    hasher = blake3.blake3()
    left = size
    try:
        with open(path, "rb") as f:
            while left > 0:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    return None
                hasher.update(chunk)
                left -= len(chunk)
    except OSError:
        return None
    return "blake3:" + str(hasher.hexdigest())


def hash_listing(listing: Mapping[str, tuple[str, int]]) -> str:
    """The directory hash of a listing (relpath -> (hash, size)); see the module docstring."""
    keys = _sorted_paths(listing)
    return _listing_digest(keys, [listing[k][0] for k in keys])


def _sorted_paths(paths: Iterable[str]) -> list[str]:
    """Sorted by UTF-8 bytes, which for valid Unicode is code point order; undecodable names
    (surrogate-escaped bytes) need their bytes compared."""
    keys = sorted(paths)
    joined = "".join(keys)
    if not joined.isascii() and any("\udc80" <= c <= "\udcff" for c in joined):
        keys.sort(key=lambda k: k.encode("utf-8", "surrogateescape"))
    return keys


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def _listing_digest(keys: Sequence[str], values: Sequence[str]) -> str:
    text = "\0".join(itertools.chain.from_iterable(zip(keys, values, strict=True)))
    data = (text + "\0").encode("utf-8", "surrogateescape") if keys else b""
    return "blake3:" + str(blake3.blake3(data).hexdigest())


def _readinto(fd: int, view: memoryview) -> int:
    """The single place file contents are read (tests count calls through it)."""
    return os.readv(fd, [view])


class _Counter:
    """Bytes hashed by one task; written by its worker thread only, read by the main thread."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class _Cancelled(Exception):
    """Another task failed or the user interrupted: stop early (never escapes hash_paths)."""


def _signature(st: os.stat_result) -> Signature:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _hash_regular(abs_path: str, display: str, st: os.stat_result, buf: bytearray,
                  counter: _Counter, cancel: threading.Event) -> tuple[str, os.stat_result]:
    """Hash a regular file whose lstat was `st`; retry once if it changed while being read."""
    for _ in range(2):
        digest = _hash_once(abs_path, display, st, buf, counter, cancel)
        if digest is not None:
            return digest, st
        try:
            st = os.lstat(abs_path)
        except FileNotFoundError as e:
            raise errors.DataError(f"{display} vanished while hashing", hint=_CHANGING_HINT) from e
        except OSError as e:
            raise _access_error(display, e) from e
        if not stat.S_ISREG(st.st_mode):
            raise errors.DataError(
                f"{display} changed while hashing: it is no longer a regular file",
                hint=_CHANGING_HINT)
    raise errors.DataError(f"{display} changed while hashing (its size or timestamps differed "
                           f"after reading it, twice)", hint=_CHANGING_HINT)


def _hash_once(abs_path: str, display: str, st: os.stat_result, buf: bytearray,
               counter: _Counter, cancel: threading.Event) -> str | None:
    """The file's hash, or None when it is not the file `st` describes any more."""
    try:
        fd = os.open(abs_path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None
        raise _unreadable(display, e) from e
    try:
        hasher = blake3.blake3()
        size = st.st_size
        if size >= _PIPELINE_MIN:
            total = _hash_pipelined(fd, hasher, size, counter, cancel)
        else:
            total = 0
            view = memoryview(buf)
            full = len(buf)
            while True:
                got = _readinto(fd, view)
                if got == 0:
                    break
                hasher.update(view[:got])
                total += got
                counter.n += got
                # A short read of a regular file is its end; fstat below confirms the size.
                if got < full or total > size:
                    break
        after = os.fstat(fd)
    except OSError as e:
        if _changed(abs_path, st):
            return None
        raise _unreadable(display, e) from e
    finally:
        os.close(fd)
    if total != size or _signature(after) != _signature(st):
        return None
    return "blake3:" + str(hasher.hexdigest())


def _hash_pipelined(fd: int, hasher: Any, size: int, counter: _Counter,
                    cancel: threading.Event) -> int:
    """Hash a large file while a reader thread fills the next buffer; memory: three buffers.

    Measured on 2 cores, 1 GiB, warm/cold page cache: read-then-hash 0.69/0.75 s, this
    0.41/0.49 s. blake3's own threads (max_threads=AUTO) on the same buffers gain nothing: the
    copy out of the page cache is the other half of the work. ``update_mmap`` with AUTO is a
    little faster (0.34/0.42 s), but a file truncated while mapped kills the process with
    SIGBUS, so it is not used.
    """
    import queue  # only for large files: not on `repro run`'s hot path

    free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[bytearray, int] | OSError] = queue.SimpleQueue()
    for _ in range(3):
        free.put(bytearray(_PIPELINE_CHUNK))

    def reader() -> None:
        while True:
            buf = free.get()
            if buf is None:
                return
            try:
                got = _readinto(fd, memoryview(buf))
            except OSError as e:
                full.put(e)
                return
            full.put((buf, got))
            if got == 0:
                return

    thread = threading.Thread(target=reader, name="repro-hash-reader", daemon=True)
    thread.start()
    total = 0
    try:
        while True:
            item = full.get()
            if isinstance(item, OSError):
                raise item
            buf, got = item
            if got == 0:
                break
            hasher.update(memoryview(buf)[:got])
            total += got
            counter.n += got
            free.put(buf)
            if total > size:
                break
            if cancel.is_set():
                raise _Cancelled
    finally:
        free.put(None)  # the reader stops at its next buffer; join before the fd is closed
        thread.join()
    return total


def _changed(abs_path: str, st: os.stat_result) -> bool:
    try:
        return _signature(os.lstat(abs_path)) != _signature(st)
    except OSError:
        return True


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _unreadable(display: str, e: OSError) -> errors.DataError:
    return errors.DataError(f"cannot read {display}: {_reason(e)}", hint=_UNREADABLE_HINT)


def _access_error(display: str, e: OSError) -> errors.DataError:
    if e.errno == errno.ELOOP:
        return errors.DataError(f"cannot hash {display}: symlink loop in its path",
                                hint="fix or remove the symlinks that point at each other")
    return errors.DataError(f"cannot access {display}: {_reason(e)}", hint=_UNREADABLE_HINT)


def _not_regular(display: str, mode: int) -> errors.DataError:
    what = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode)
            or stat.S_ISBLK(mode) else "not a regular file")
    return errors.DataError(f"cannot hash {display}: it is {what}, not a regular file",
                            hint="only regular files, directories and symlinks can be hashed; "
                                 "leave it out of --data/--output")


# --- walking --------------------------------------------------------------------------------


@dataclasses.dataclass
class _Item:
    """One requested path while hash_paths works on it."""

    rel: str
    abs: str
    kind: str
    target: str | None = None
    cache: _StatCache | None = None
    # Regular files in walk order, and for each the index of its valid cache entry or -1.
    walked: list[str] = dataclasses.field(default_factory=list)
    hit_index: list[int] = dataclasses.field(default_factory=list)
    misses: list[tuple[str, str, os.stat_result]] = dataclasses.field(default_factory=list)
    miss_ids: list[int] = dataclasses.field(default_factory=list)  # each miss's work index
    links: dict[str, str] = dataclasses.field(default_factory=dict)  # relpath -> target


def _resolve(path: str | Path, root_abs: str, root_real: str) -> tuple[str, str]:
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
        raise _access_error(rel, e) from e
    if stat.S_ISLNK(st.st_mode):
        return "symlink", st, _link_target(abs_path, rel)
    if stat.S_ISDIR(st.st_mode):
        return "dir", st, None
    if stat.S_ISREG(st.st_mode):
        return "file", st, None
    raise _not_regular(rel, st.st_mode)


def _link_target(path: str, display: str, dir_fd: int | None = None) -> str:
    try:
        target = os.readlink(path, dir_fd=dir_fd)
    except OSError as e:
        raise _access_error(display, e) from e
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
    pack = _SIG.pack
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
            raise errors.DataError(f"cannot list directory {display}: {_reason(e)}",
                                   hint=_UNREADABLE_HINT) from e
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
                    raise _access_error(_display(item.rel, prefix + name), err) from err
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
                    raise _not_regular(_display(item.rel, rel), st.st_mode)
            stack.extend(reversed(subdirs))
        except OSError as e:
            raise errors.DataError(f"cannot list directory {display}: {_reason(e)}",
                                   hint=_UNREADABLE_HINT) from e
        finally:
            os.close(fd)


def _check_file(item: _Item, st: os.stat_result) -> None:
    """The cache check of `_walk` for a requested path that is a single file."""
    cache = item.cache
    j = cache.index().get("", -1) if cache is not None else -1
    if j >= 0 and cache is not None:
        try:
            sig = _SIG.pack(*_signature(st))
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
               progress: Progress | None = None) -> list[Entry]:
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
                   progress: Progress | None) -> list[Entry]:
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
                progress: Progress | None, started_ns: int) -> list[Entry]:
    root_abs = os.path.abspath(root)
    root_real = os.path.realpath(root)
    skip = {os.path.join(root_real, name) for name in _SKIP_AT_ROOT}
    if cache_dir is not None:
        skip.add(os.path.realpath(cache_dir))  # it changes while we hash
    items: dict[str, _Item] = {}
    order: list[str] = []
    for path in paths:
        rel, abs_path = _resolve(path, root_abs, root_real)
        order.append(rel)
        if rel in items:
            continue
        kind, st, target = _classify(rel, abs_path)
        item = _Item(rel=rel, abs=abs_path, kind=kind, target=target)
        items[rel] = item
        if kind in ("file", "dir") and cache_dir is not None:
            item.cache = _StatCache(cache_dir, abs_path)
            item.cache.load()
        if kind == "dir":
            _walk(item, frozenset(skip))
        elif kind == "file" and st is not None:
            _check_file(item, st)

    # Every distinct file that missed the cache is hashed once, even when requested twice.
    work: list[_Work] = []
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
    results = _hash_work(work, progress, done, total)
    if progress is not None:
        progress(total, total)

    built: dict[str, Entry] = {}
    dvc = _DvcIndex(Path(root_real))
    for item in items.values():
        entry = _finish(item, results, started_ns)
        built[item.rel] = dataclasses.replace(entry, dvc_md5=dvc.md5(item.rel))
    return [built[rel] for rel in order]


def _display(top: str, rel: str) -> str:
    """A file's path relative to the root, for messages."""
    if not rel:
        return top
    return rel if top == "." else top + "/" + rel


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
    new = _Snapshot() if cache is not None else None
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
        if new is not None and _trusted(st.st_ctime_ns, started_ns):
            try:
                new.add(rel, _SIG.pack(*_signature(st)), value)
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
    keys = _sorted_paths(values)
    listing = dict(zip(keys, map(values.__getitem__, keys), strict=True))
    digest = _listing_digest(keys, list(map(_first, listing.values())))
    size = sum(map(_second, listing.values()))
    return Entry(path=item.rel, kind="dir", hash=digest, size=size, files=len(listing),
                 listing=listing)


# Linux stamps files from a clock that ticks every 1-10 ms (100 ms is generous); filesystems
# with whole-second or 2 s (FAT) timestamps show it in the value: no sub-millisecond part.
_RACY_MARGIN_NS = 100_000_000
_RACY_MARGIN_COARSE_NS = 2_000_000_000


def _trusted(ctime_ns: int, started_ns: int) -> bool:
    """Whether a file hashed after `started_ns` may be cached (the racy-timestamp rule): a
    later change in the same timestamp tick would leave its signature as it is."""
    if ctime_ns % 1_000_000 == 0:
        return ctime_ns < started_ns - _RACY_MARGIN_COARSE_NS
    return ctime_ns < started_ns - _RACY_MARGIN_NS


def _hash_work(work: Sequence[_Work], progress: Progress | None, done: int,
               total: int) -> list[tuple[str, os.stat_result]]:
    """(hash, final lstat) for every file in `work`, in the same order.

    Small files are hashed on this thread, in walk order, with the next ones opened and
    announced to the kernel ahead (``_PREFETCH``): they cost a handful of syscalls each, and
    threads would spend more on handing the GIL over between those than they gain (measured:
    2 threads ran 100k small files slower than 1, and far slower when other processes compete
    for the cores). Larger files go to ``_WORKERS`` threads meanwhile: reading and hashing
    them releases the GIL for long stretches.
    """
    results: list[tuple[str, os.stat_result]] = [("", _NO_STAT)] * len(work)
    if not work:
        return results
    small = [i for i, w in enumerate(work) if w[3].st_size < _SMALL_MAX]
    # Largest first, so that no large file is left running alone at the end.
    large = sorted((i for i, w in enumerate(work) if w[3].st_size >= _SMALL_MAX),
                   key=lambda i: work[i][3].st_size, reverse=True)
    tasks: list[list[int]] = []
    batch: list[int] = []
    batch_bytes = 0
    for i in large:
        batch.append(i)
        batch_bytes += work[i][3].st_size
        if len(batch) >= _BATCH_FILES or batch_bytes >= _BATCH_BYTES:
            tasks.append(batch)
            batch, batch_bytes = [], 0
    if batch:
        tasks.append(batch)
    counters = [_Counter() for _ in range(len(tasks) + 1)]
    cancel = threading.Event()
    futures: list[concurrent.futures.Future[None]] = []
    report = _Reporter(progress, done, total, counters, futures)
    if not tasks:
        _hash_small_files(work, small, results, counters[-1], cancel, report)
        return results
    import concurrent.futures  # lazily: it imports logging, ~13 ms of `repro run` start-up

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(tasks), _WORKERS),
                                               thread_name_prefix="repro-hash") as pool:
        futures.extend(pool.submit(_hash_task, work, t, results, c, cancel)
                       for t, c in zip(tasks, counters, strict=False))
        try:
            _hash_small_files(work, small, results, counters[-1], cancel, report)
            waiting = set(futures)
            while waiting:
                _, waiting = concurrent.futures.wait(
                    waiting, timeout=_PROGRESS_INTERVAL_S,
                    return_when=concurrent.futures.FIRST_EXCEPTION)
                report(force=False)
        except BaseException:
            cancel.set()
            for f in futures:
                f.cancel()
            raise
    for f in futures:
        f.result()
    return results


_NO_STAT = os.stat_result((0,) * 10)


class _Reporter:
    """Throttled progress calls from the main thread; re-raises a failed worker's error."""

    def __init__(self, progress: Progress | None, done: int, total: int,
                 counters: Sequence[_Counter],
                 futures: Sequence[concurrent.futures.Future[Any]]) -> None:
        self.progress = progress
        self.done = done
        self.total = total
        self.counters = counters
        self.futures = futures
        self.next = time.monotonic() + _PROGRESS_INTERVAL_S

    def __call__(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now < self.next:
            return
        self.next = now + _PROGRESS_INTERVAL_S
        for f in self.futures:
            exc = f.exception() if f.done() and not f.cancelled() else None
            if exc is not None:
                raise exc
        if self.progress is not None:
            hashed = sum(c.n for c in self.counters)
            self.progress(min(self.total, self.done + hashed), self.total)


def _hash_small_files(work: Sequence[_Work], ids: Sequence[int],
                      results: list[tuple[str, os.stat_result]], counter: _Counter,
                      cancel: threading.Event, report: _Reporter) -> None:
    """Hash the files `ids` of `work` (smaller than ``_SMALL_MAX``) on this thread, opening
    ``_PREFETCH`` of them ahead.

    Cold, the kernel then has that many reads to schedule at once instead of one (measured on
    2 cores: 100k cold 1-4 KiB files, walk included, in 4.7 s instead of 7.7 s); warm, the
    extra fadvise costs about 1 us a file.
    The loop is flat because it runs once per file: open ahead, read, fstat, close, hash.
    """
    buf = bytearray(max(_SMALL_MAX, _CHUNK))
    view = memoryview(buf)
    ahead: collections.deque[tuple[int, int]] = collections.deque()
    upcoming = iter(ids)
    exhausted = False
    count = 0
    readinto = _readinto
    fadvise = getattr(os, "posix_fadvise", None)  # not on macOS: opening ahead does nothing
    willneed = getattr(os, "POSIX_FADV_WILLNEED", 0)
    try:
        while True:
            while not exhausted and len(ahead) < _PREFETCH:
                i = next(upcoming, -1)
                if i < 0:
                    exhausted = True
                    break
                try:
                    fd = os.open(work[i][0], _OPEN_FLAGS)
                except OSError:
                    fd = -1  # the general path below tells what is wrong
                else:
                    if fadvise is not None:
                        with contextlib.suppress(OSError):
                            fadvise(fd, 0, 0, willneed)
                ahead.append((i, fd))
            if not ahead:
                return
            i, fd = ahead.popleft()
            abs_path, top, rel, st = work[i]
            digest = None
            if fd >= 0:
                try:
                    got = readinto(fd, view)
                    after = os.fstat(fd)
                except OSError:
                    got = -1
                finally:
                    os.close(fd)
                if (got == st.st_size and after.st_mtime_ns == st.st_mtime_ns
                        and after.st_ctime_ns == st.st_ctime_ns and after.st_size == got
                        and after.st_ino == st.st_ino and after.st_dev == st.st_dev):
                    digest = "blake3:" + str(blake3.blake3(view[:got]).hexdigest())
            if digest is not None:
                results[i] = (digest, st)
                counter.n += got
            else:  # anything unusual: the general path retries or tells what happened
                results[i] = _hash_regular(abs_path, _display(top, rel), st, buf, counter,
                                           cancel)
            count += 1
            if count & 63 == 0:
                if cancel.is_set():
                    raise _Cancelled
                report(force=False)
    finally:
        for _, fd in ahead:
            if fd >= 0:
                os.close(fd)


def _hash_task(work: Sequence[_Work], ids: Sequence[int],
               results: list[tuple[str, os.stat_result]], counter: _Counter,
               cancel: threading.Event) -> None:
    """A pool thread's batch of files of at least ``_SMALL_MAX`` bytes (each result slot is
    written by one thread only)."""
    buf = bytearray(_CHUNK)
    for i in ids:
        if cancel.is_set():
            raise _Cancelled
        abs_path, top, rel, st = work[i]
        results[i] = _hash_regular(abs_path, _display(top, rel), st, buf, counter, cancel)


# --- the stat cache -------------------------------------------------------------------------


_SNAP_MAGIC = b"repro-stat-v1\n" + (b"l\n" if sys.byteorder == "little" else b"b\n")
_SNAP_HEADER = struct.Struct("<QQ32s")  # entries, bytes of path/hash text, directory hash
_SIG = struct.Struct("<qqqQQ")  # size, mtime_ns, ctime_ns, inode, device
_SNAP_SUFFIX = ".snap"
_TMP_PREFIX = ".tmp-"
_TMP_MAX_AGE_S = 3600
_NO_DIGEST = bytes(32)


class _Snapshot:
    """Cache entries in walk order: parallel lists of path, packed signature, hash, size."""

    def __init__(self) -> None:
        self.rels: list[str] = []
        self.sigs: list[bytes] = []
        self.hashes: list[str] = []
        self.sizes: list[int] = []

    def add(self, rel: str, sig: bytes, value: tuple[str, int]) -> None:
        self.rels.append(rel)
        self.sigs.append(sig)
        self.hashes.append(value[0])
        self.sizes.append(value[1])


class _StatCache:
    """The stat cache of one requested path (a shard): see the module docstring.

    Snapshot layout: magic (with byte order); header (entry count, text length, and the
    directory hash of exactly these entries, or zeros); per entry, in walk order, its packed
    signature (``_SIG``); the sizes again as an int64 column; the entries' sorted order as a
    uint32 column; the text ``relpath\0hash\0...`` in UTF-8 (surrogateescape); then 32 bytes
    of BLAKE3 over all of it. Loading 100k entries builds only lists (tens of ms): no
    dictionary, no sorting, no re-hashing of an unchanged directory's listing.
    """

    def __init__(self, cache_dir: Path, abs_path: str) -> None:
        key = blake3.blake3(os.fsencode(abs_path)).hexdigest()[:32]
        self.dir = os.path.join(os.fspath(cache_dir), "stat-v1", key)
        self.rels: list[str] = []
        self.sigs: list[bytes] = []
        self.hashes: list[str] = []
        self.sizes: Sequence[int] = []
        self.order: Sequence[int] = []  # indices in sorted path order (single snapshot only)
        self.digest: str | None = None  # directory hash of the entries (single snapshot only)
        self.loaded: list[str] = []
        self._index: dict[str, int] | None = None

    def index(self) -> dict[str, int]:
        """relpath -> entry index; the newest snapshot's entry wins."""
        if self._index is None:
            self._index = dict(zip(self.rels, range(len(self.rels)), strict=True))
        return self._index

    def load(self) -> None:
        """Read every snapshot present; a vanished, damaged or foreign one is ignored."""
        try:
            with os.scandir(self.dir) as it:
                names = sorted(e.name for e in it)
        except OSError:
            return
        parts: list[tuple[list[str], list[bytes], list[str], Sequence[int], Sequence[int],
                          str | None]] = []
        for name in names:
            path = os.path.join(self.dir, name)
            if name.startswith(_TMP_PREFIX):
                self._remove_stale_tmp(path)
                continue
            if not name.endswith(_SNAP_SUFFIX):
                continue
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue  # another writer compacted it away: its entries are in a newer one
            parsed = _parse_snapshot(data)
            if parsed is None:
                _unlink_quietly(path)
                continue
            parts.append(parsed)
            self.loaded.append(path)
        if len(parts) == 1:
            self.rels, self.sigs, self.hashes, self.sizes, self.order, self.digest = parts[0]
        else:
            sizes: list[int] = []
            for rels, sigs, hashes, part_sizes, _, _ in parts:
                self.rels.extend(rels)
                self.sigs.extend(sigs)
                self.hashes.extend(hashes)
                sizes.extend(part_sizes)
            self.sizes = sizes

    def save(self, new: _Snapshot, *, changed: bool, digest: bool) -> None:
        """Write `new` as one snapshot and delete the ones loaded. Skipped when nothing changed
        and there is nothing to merge. OSErrors are ignored: the cache only saves time, and a
        run must not fail because it cannot be written."""
        if not changed and len(self.loaded) <= 1:
            return
        data = _format_snapshot(new, digest=digest)
        suffix = f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(4).hex()}"
        tmp = os.path.join(self.dir, _TMP_PREFIX + suffix)
        try:
            os.makedirs(self.dir, exist_ok=True)
            with open(tmp, "xb") as f:
                f.write(data)
            os.replace(tmp, os.path.join(self.dir, suffix + _SNAP_SUFFIX))
        except OSError:
            _unlink_quietly(tmp)
            return
        for path in self.loaded:
            _unlink_quietly(path)

    @staticmethod
    def _remove_stale_tmp(path: str) -> None:
        try:
            if time.time() - os.lstat(path).st_mtime > _TMP_MAX_AGE_S:
                os.unlink(path)  # left by a writer that was killed
        except OSError:
            pass


def _format_snapshot(new: _Snapshot, *, digest: bool) -> bytes:
    n = len(new.rels)
    keys = _sorted_paths(new.rels)
    position = dict(zip(new.rels, range(n), strict=True))
    order = array.array("I", (position[k] for k in keys))
    text = "\0".join(itertools.chain.from_iterable(zip(new.rels, new.hashes, strict=True)))
    blob = (text + "\0").encode("utf-8", "surrogateescape") if n else b""
    listing_digest = _NO_DIGEST
    if digest:
        hashes = [new.hashes[j] for j in order]
        listing_digest = bytes.fromhex(_listing_digest(keys, hashes).removeprefix("blake3:"))
    body = b"".join([_SNAP_MAGIC, _SNAP_HEADER.pack(n, len(blob), listing_digest),
                     *new.sigs, array.array("q", new.sizes).tobytes(), order.tobytes(), blob])
    return body + blake3.blake3(body).digest()


def _parse_snapshot(data: bytes) -> tuple[list[str], list[bytes], list[str], Sequence[int],
                                          Sequence[int], str | None] | None:
    """(paths, signatures, hashes, sizes, sorted order, directory hash), or None if damaged."""
    head = len(_SNAP_MAGIC) + _SNAP_HEADER.size
    if len(data) < head + 32 or not data.startswith(_SNAP_MAGIC):
        return None
    view = memoryview(data)
    if blake3.blake3(view[:-32]).digest() != data[-32:]:
        return None
    n, blob_len, listing_digest = _SNAP_HEADER.unpack_from(data, len(_SNAP_MAGIC))
    row = _SIG.size
    if head + (row + 8 + 4) * n + blob_len + 32 != len(data):
        return None
    sigs = [data[i:i + row] for i in range(head, head + row * n, row)]
    offset = head + row * n
    sizes = array.array("q")
    sizes.frombytes(view[offset:offset + 8 * n])
    offset += 8 * n
    order = array.array("I")
    order.frombytes(view[offset:offset + 4 * n])
    offset += 4 * n
    try:
        fields = str(data[offset:offset + blob_len], "utf-8", "surrogateescape").split("\0")
    except UnicodeDecodeError:
        return None
    if len(fields) != 2 * n + 1 or (n and max(order) >= n):
        return None
    digest = None if listing_digest == _NO_DIGEST else "blake3:" + listing_digest.hex()
    return fields[0:2 * n:2], sigs, fields[1:2 * n:2], sizes, order, digest


def forget_cached(cache_dir: Path, abs_paths: Iterable[str]) -> None:
    """Drop the stat cache of paths that will never be hashed again (a replay's worktree)."""
    for p in abs_paths:
        key = blake3.blake3(os.fsencode(p)).hexdigest()[:32]
        shutil.rmtree(os.path.join(os.fspath(cache_dir), "stat-v1", key), ignore_errors=True)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# --- manifest sections and listing files ----------------------------------------------------


def to_section(entries: Sequence[Entry], run_dir: Path, subdir: str,
               stale: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The manifest `data`/`outputs` mapping; writes `run_dir/subdir/<n>.json` for each dir.

    `stale`: per output path, what was there before the run and untouched by it (see
    capture/written): `[""]` marks a file `stale: true`; a directory gets `stale: N` and the
    N relative paths under `stale` in its listing file.
    """
    section: dict[str, Any] = {}
    stale = stale or {}
    n = 0
    for entry in entries:
        record: dict[str, Any] = {"kind": entry.kind}
        if entry.hash is not None:
            record["hash"] = entry.hash
        record["size"] = entry.size
        if entry.files is not None:
            record["files"] = entry.files
        if entry.kind == "dir" and entry.listing is not None:
            name = f"{subdir}/{n}.json"
            n += 1
            _write_listing(run_dir / name, entry.path, entry.listing, stale.get(entry.path))
            record["listing"] = name
        if entry.target is not None:
            record["target"] = entry.target
        if entry.dvc_md5 is not None:
            record["dvc_md5"] = entry.dvc_md5
        names = stale.get(entry.path)
        if names:
            record["stale"] = True if entry.kind == "file" else len(names)
        section[entry.path] = record
    return section


def _write_listing(path: Path, dir_path: str, listing: Mapping[str, tuple[str, int]],
                   stale: Sequence[str] | None = None) -> None:
    doc: dict[str, Any] = {"schema": LISTING_SCHEMA, "path": dir_path,
                           "files": {k: [h, s] for k, (h, s) in listing.items()}}
    if stale:
        doc["stale"] = list(stale)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # ensure_ascii: undecodable names travel as \udcXX escapes and load back unchanged.
        manifest.write_text_atomic(path, json.dumps(doc, ensure_ascii=True) + "\n")
    except OSError as e:
        raise errors.DataError(f"cannot write listing {path}: {_reason(e)}",
                               hint="check free space and permissions of the run directory") from e


def read_listing(path: Path) -> dict[str, tuple[str, int]]:
    """relpath -> (hash, size) from a listing file; DataError naming it when it is not one."""
    hint = "the run directory is damaged; the listing cannot be trusted"
    # Bounded (a listing may come with a run from another machine); its fixed shape is
    # checked below, entry by entry, so no depth walk over a million files is needed.
    text = bounded.read_text(path, bounded.LISTING_MAX, errors.DataError, "listing")
    try:
        doc = json.loads(text)
    except RecursionError as e:
        raise errors.DataError(f"listing {path} is nested too deeply", hint=hint) from e
    except ValueError as e:
        raise errors.DataError(f"listing {path} is not valid JSON: {bounded.reason(e)}",
                               hint=hint) from e
    if not isinstance(doc, dict) or doc.get("schema") != LISTING_SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else None
        raise errors.DataError(f"listing {path} has unknown schema {got!r:.100} "
                               f"(expected {LISTING_SCHEMA!r})", hint=hint)
    files = doc.get("files")
    if not isinstance(files, dict):
        raise errors.DataError(f"listing {path}: 'files' must be a mapping", hint=hint)
    out: dict[str, tuple[str, int]] = {}
    for rel, value in files.items():
        if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str)
                or not isinstance(value[1], int) or isinstance(value[1], bool)):
            raise errors.DataError(f"listing {path}: entry {rel!r} must be [hash, size], "
                                   f"got {value!r:.100}", hint=hint)
        out[rel] = (value[0], value[1])
    return out


# --- DVC ------------------------------------------------------------------------------------


def dvc_md5(path: Path, root: Path) -> str | None:
    """The md5 DVC recorded for `path` (relative to `root`, or absolute inside it), or None.

    Looked up in a sibling ``<path>.dvc`` file, then in the ``outs`` (then ``deps``) of the
    stages in ``dvc.lock`` at the root. DataError when one of those files is not valid YAML.
    """
    root_real = os.path.realpath(root)
    rel, _ = _resolve(path, os.path.abspath(root), root_real)
    return _DvcIndex(Path(root_real)).md5(rel)


class _DvcIndex:
    """dvc.lock read at most once per hash_paths call (and PyYAML imported only if present)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock: dict[str, str] | None = None

    def md5(self, rel: str) -> str | None:
        if rel == ".":
            return None
        sibling = self.root / (rel + ".dvc")
        if sibling.is_file():
            found = _md5_from_dvc_file(sibling, os.path.basename(rel))
            if found is not None:
                return found
        return self._lock_entries().get(rel)

    def _lock_entries(self) -> dict[str, str]:
        if self._lock is None:
            self._lock = {}
            lock = self.root / "dvc.lock"
            if lock.is_file():
                self._lock = _md5s_from_lock(_read_dvc_yaml(lock))
        return self._lock


def _read_dvc_yaml(path: Path) -> Any:
    try:
        return manifest.read_yaml_file(path)
    except errors.ManifestError as e:
        raise errors.DataError(f"cannot read DVC file {path}: {e.message}",
                               hint="fix or remove it; repro reads it only to record the md5 "
                                    "DVC tracks for the data") from e


def _md5_from_dvc_file(path: Path, name: str) -> str | None:
    doc = _read_dvc_yaml(path)
    outs = doc.get("outs") if isinstance(doc, dict) else None
    if not isinstance(outs, list):
        return None
    outs = [o for o in outs if isinstance(o, dict)]
    for out in outs:  # the out naming this path, else the first (the usual single-out file)
        if out.get("path") == name and isinstance(out.get("md5"), str):
            return str(out["md5"])
    if outs and isinstance(outs[0].get("md5"), str):
        return str(outs[0]["md5"])
    return None


def _md5s_from_lock(doc: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    stages = doc.get("stages") if isinstance(doc, dict) else None
    if not isinstance(stages, dict):
        return found
    for section in ("deps", "outs"):  # outs last: an output's own record wins
        for stage in stages.values():
            deps = stage.get(section) if isinstance(stage, dict) else None
            for dep in deps if isinstance(deps, list) else ():
                if (isinstance(dep, dict) and isinstance(dep.get("path"), str)
                        and isinstance(dep.get("md5"), str)):
                    found[os.path.normpath(dep["path"]).replace(os.sep, "/")] = dep["md5"]
    return found


# --- candidate inputs from argv -------------------------------------------------------------


def argv_paths(argv: Sequence[str], cwd: Path, root: Path, *, missing: bool = False
               ) -> list[str]:
    """Existing paths inside `root` named in `argv`, relative to `root`, deduplicated in order.

    Words are plain arguments, ``--flag=path`` values and ``key=path`` values (Hydra-style
    overrides). argv[0] is skipped, and so is the script when argv[0] is a Python interpreter;
    so are the root itself and anything under ``.repro/`` or ``.git/``. `missing`: instead,
    the words that would name a path inside `root` that does not exist (yet): a run that
    creates one wrote an output (``--save model.pt``).
    """
    words = list(argv[1:])
    if argv and cmdline.is_python(argv[0]):
        words = list(cmdline.python_args(words).args)
    root_real = os.path.realpath(root)
    base = os.path.abspath(cwd)
    seen: set[str] = set()
    out: list[str] = []
    for word in words:
        for candidate in _candidates(word):
            rel = _inside(candidate, base, root_real, missing)
            if rel is not None and rel not in seen:
                seen.add(rel)
                out.append(rel)
                break
    return out


def _candidates(word: str) -> list[str]:
    if not word or "\0" in word:
        return []
    if word.startswith("-"):
        return [word.split("=", 1)[1]] if "=" in word else []
    if "=" in word:
        return [word, word.split("=", 1)[1]]
    return [word]


def _inside(candidate: str, cwd: str, root_real: str, missing: bool = False) -> str | None:
    if not candidate:
        return None
    try:
        abs_path = os.path.normpath(os.path.join(cwd, candidate))
        if os.path.lexists(abs_path) == missing:
            return None
        real_parent = os.path.realpath(os.path.dirname(abs_path))
        real = os.path.join(real_parent, os.path.basename(abs_path))
    except (OSError, ValueError):
        return None
    rel = os.path.relpath(real, root_real)
    if rel == "." or rel == ".." or rel.startswith("../") or os.path.isabs(rel):
        return None
    rel = rel.replace(os.sep, "/")
    if rel.split("/", 1)[0] in _SKIP_AT_ROOT:
        return None
    return rel
