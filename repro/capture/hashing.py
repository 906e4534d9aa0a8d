"""The hashing engine: BLAKE3 of bytes, of files streamed, of directory listings, and of many
files at once.

Owns: hashes written ``blake3:<hex>`` and keyed ones ``blake3-keyed:<hex>`` (the only blake3
user: other modules call ``hash_bytes``/``hash_file``/``raw_digest``), the directory-hash
encoding (``listing_digest``; see capture/data.py), reading a regular file without following a
link or blocking on a swapped-in FIFO, retrying a file that changed while read, and spreading
many files over this thread (small ones, with prefetch) and worker threads (large ones).

Must not: print (progress goes to a callback), follow a symlink, read a whole file into memory,
or raise anything but ``errors.DataError`` for anything about the data.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from repro import errors

if TYPE_CHECKING:
    import concurrent.futures

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

# O_NONBLOCK: should a file have been swapped for a FIFO, open must not hang.
# O_NOFOLLOW: should it have been swapped for a symlink, do not follow it.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW
UNREADABLE_HINT = "check the file's permissions, or leave it out of --data/--output"
_CHANGING_HINT = "wait until the process writing to it has finished, then run again"

Progress = Callable[[int, int], None]
Signature = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device
Work = tuple[str, str, str, os.stat_result]  # absolute path, requested path, relpath, lstat


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
        raise access_error(display, e) from e
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(display, st.st_mode)
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
    """The directory hash of a listing (relpath -> (hash, size)); see capture/data.py."""
    keys = sorted_paths(listing)
    return listing_digest(keys, [listing[k][0] for k in keys])


def sorted_paths(paths: Iterable[str]) -> list[str]:
    """Sorted by UTF-8 bytes, which for valid Unicode is code point order; undecodable names
    (surrogate-escaped bytes) need their bytes compared."""
    keys = sorted(paths)
    joined = "".join(keys)
    if not joined.isascii() and any("\udc80" <= c <= "\udcff" for c in joined):
        keys.sort(key=lambda k: k.encode("utf-8", "surrogateescape"))
    return keys


def listing_digest(keys: Sequence[str], values: Sequence[str]) -> str:
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
    """Another task failed or the user interrupted: stop early (never escapes hash_files)."""


def signature(st: os.stat_result) -> Signature:
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
            raise access_error(display, e) from e
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
    if total != size or signature(after) != signature(st):
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
        return signature(os.lstat(abs_path)) != signature(st)
    except OSError:
        return True


def reason(e: OSError) -> str:
    return e.strerror or str(e)


def _unreadable(display: str, e: OSError) -> errors.DataError:
    return errors.DataError(f"cannot read {display}: {reason(e)}", hint=UNREADABLE_HINT)


def access_error(display: str, e: OSError) -> errors.DataError:
    if e.errno == errno.ELOOP:
        return errors.DataError(f"cannot hash {display}: symlink loop in its path",
                                hint="fix or remove the symlinks that point at each other")
    return errors.DataError(f"cannot access {display}: {reason(e)}", hint=UNREADABLE_HINT)


def not_regular(display: str, mode: int) -> errors.DataError:
    what = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode)
            or stat.S_ISBLK(mode) else "not a regular file")
    return errors.DataError(f"cannot hash {display}: it is {what}, not a regular file",
                            hint="only regular files, directories and symlinks can be hashed; "
                                 "leave it out of --data/--output")


def raw_digest(data: bytes | memoryview) -> bytes:
    """The 32 raw bytes of BLAKE3 of `data` (checksums and cache keys, not recorded hashes)."""
    return bytes(blake3.blake3(data).digest())


def display(top: str, rel: str) -> str:
    """A file's path relative to the root, for messages: `rel` under the requested path `top`."""
    if not rel:
        return top
    return rel if top == "." else top + "/" + rel


# --- many files at once ---------------------------------------------------------------------


def hash_files(work: Sequence[Work], progress: Progress | None, done: int,
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


def _hash_small_files(work: Sequence[Work], ids: Sequence[int],
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
                results[i] = _hash_regular(abs_path, display(top, rel), st, buf, counter,
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


def _hash_task(work: Sequence[Work], ids: Sequence[int],
               results: list[tuple[str, os.stat_result]], counter: _Counter,
               cancel: threading.Event) -> None:
    """A pool thread's batch of files of at least ``_SMALL_MAX`` bytes (each result slot is
    written by one thread only)."""
    buf = bytearray(_CHUNK)
    for i in ids:
        if cancel.is_set():
            raise _Cancelled
        abs_path, top, rel, st = work[i]
        results[i] = _hash_regular(abs_path, display(top, rel), st, buf, counter, cancel)

