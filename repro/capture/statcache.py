"""The stat cache: re-hashing an unchanged tree costs one ``lstat`` per file.

Owns: the snapshot files under ``<cache_dir>/stat-v1/<key>/``, the racy-timestamp rule
(``trusted``), and dropping a shard (``forget_cached``). capture/data.py walks and asks it.

Must not: print, raise (the cache only saves time: a damaged, vanished or unwritable snapshot
is ignored), or trust an entry whose full signature does not match the file's current lstat.

Each requested path (a "shard", keyed by its real absolute path) keeps, under ``<cache_dir>/stat-v1/<key>/``,
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
import contextlib
import itertools
import os
import shutil
import struct
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from repro.capture import hashing

# Linux stamps files from a clock that ticks every 1-10 ms (100 ms is generous); filesystems
# with whole-second or 2 s (FAT) timestamps show it in the value: no sub-millisecond part.
_RACY_MARGIN_NS = 100_000_000
_RACY_MARGIN_COARSE_NS = 2_000_000_000


def trusted(ctime_ns: int, started_ns: int) -> bool:
    """Whether a file hashed after `started_ns` may be cached (the racy-timestamp rule): a
    later change in the same timestamp tick would leave its signature as it is."""
    if ctime_ns % 1_000_000 == 0:
        return ctime_ns < started_ns - _RACY_MARGIN_COARSE_NS
    return ctime_ns < started_ns - _RACY_MARGIN_NS

_SNAP_MAGIC = b"repro-stat-v1\n" + (b"l\n" if sys.byteorder == "little" else b"b\n")
_SNAP_HEADER = struct.Struct("<QQ32s")  # entries, bytes of path/hash text, directory hash
SIG = struct.Struct("<qqqQQ")  # size, mtime_ns, ctime_ns, inode, device
_SNAP_SUFFIX = ".snap"
_TMP_PREFIX = ".tmp-"
_TMP_MAX_AGE_S = 3600
_NO_DIGEST = bytes(32)


class Snapshot:
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


class StatCache:
    """The stat cache of one requested path (a shard): see the module docstring.

    Snapshot layout: magic (with byte order); header (entry count, text length, and the
    directory hash of exactly these entries, or zeros); per entry, in walk order, its packed
    signature (``SIG``); the sizes again as an int64 column; the entries' sorted order as a
    uint32 column; the text ``relpath\0hash\0...`` in UTF-8 (surrogateescape); then 32 bytes
    of BLAKE3 over all of it. Loading 100k entries builds only lists (tens of ms): no
    dictionary, no sorting, no re-hashing of an unchanged directory's listing.
    """

    def __init__(self, cache_dir: Path, abs_path: str) -> None:
        key = hashing.raw_digest(os.fsencode(abs_path)).hex()[:32]
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

    def save(self, new: Snapshot, *, changed: bool, digest: bool) -> None:
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


def _format_snapshot(new: Snapshot, *, digest: bool) -> bytes:
    n = len(new.rels)
    keys = hashing.sorted_paths(new.rels)
    position = dict(zip(new.rels, range(n), strict=True))
    order = array.array("I", (position[k] for k in keys))
    text = "\0".join(itertools.chain.from_iterable(zip(new.rels, new.hashes, strict=True)))
    blob = (text + "\0").encode("utf-8", "surrogateescape") if n else b""
    listing_digest = _NO_DIGEST
    if digest:
        hashes = [new.hashes[j] for j in order]
        listing_digest = bytes.fromhex(hashing.listing_digest(keys, hashes).removeprefix("blake3:"))
    body = b"".join([_SNAP_MAGIC, _SNAP_HEADER.pack(n, len(blob), listing_digest),
                     *new.sigs, array.array("q", new.sizes).tobytes(), order.tobytes(), blob])
    return body + hashing.raw_digest(body)


def _parse_snapshot(data: bytes) -> tuple[list[str], list[bytes], list[str], Sequence[int],
                                          Sequence[int], str | None] | None:
    """(paths, signatures, hashes, sizes, sorted order, directory hash), or None if damaged."""
    head = len(_SNAP_MAGIC) + _SNAP_HEADER.size
    if len(data) < head + 32 or not data.startswith(_SNAP_MAGIC):
        return None
    view = memoryview(data)
    if hashing.raw_digest(view[:-32]) != data[-32:]:
        return None
    n, blob_len, listing_digest = _SNAP_HEADER.unpack_from(data, len(_SNAP_MAGIC))
    row = SIG.size
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
        key = hashing.raw_digest(os.fsencode(p)).hex()[:32]
        shutil.rmtree(os.path.join(os.fspath(cache_dir), "stat-v1", key), ignore_errors=True)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
