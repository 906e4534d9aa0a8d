"""What a run wrote: a stat snapshot of result paths before the command, compared after it.

Owns telling a run's own files from stale ones (there before the run and untouched by it) in
the declared outputs, the metrics file and the paths named in the command line. A file is the
run's when its (size, mtime_ns, ctime_ns, inode) after the run differs from before, or it did
not exist before: ctime cannot be set back by a program, and a file replaced by a rename has a
new inode, so rewriting a file with the same bytes still counts as writing it.

Must not: hash (content hashes are capture/hashing's; `rewrote` asks it for one file's prefix),
print, or follow a symlink inside a directory (a named path is followed, as capture/data
follows it). Stat only: the snapshot is one walk of the named paths, on `repro run`'s hot path.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from repro.capture import data, hashing
from repro.record.schema import FileEntry

Sig = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode
Tree = dict[str, Sig]  # relpath inside a directory ("" for a named file) -> signature

_SKIP = (".git", ".repro")


def _sig(st: os.stat_result) -> Sig:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def stat_tree(path: Path) -> Tree:
    """Signatures of `path` (followed when a symlink): {"": sig} for a file, relpath -> sig for
    every file and symlink below a directory, {} when missing or unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return {}
    if not stat.S_ISDIR(st.st_mode):
        return {"": _sig(st)}
    out: Tree = {}
    top = os.path.realpath(path)
    stack = [(top, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            continue  # unreadable: capture/data reports it when it hashes the path
        for de in entries:
            try:
                if de.is_dir(follow_symlinks=False):
                    if not (prefix == "" and de.name in _SKIP):
                        stack.append((de.path, prefix + de.name + "/"))
                    continue
                out[prefix + de.name] = _sig(de.stat(follow_symlinks=False))
            except OSError:
                continue
    return out


def snapshot(root: Path, paths: Iterable[str]) -> dict[str, Tree]:
    """rel path (to `root`) -> its stat tree, taken before the command starts."""
    return {p: stat_tree(root / p) for p in dict.fromkeys(paths)}


def changed(before: Tree, after: Tree) -> bool:
    """Whether anything was created, modified or removed between two stat trees."""
    return before != after


def rewrote(before: Tree, after: Tree, entry: FileEntry | None, where: Path) -> bool:
    """Whether the run replaced what a path named in its command line held: the sign of an
    output (`--save model.pt` over an earlier model), as opposed to an input it only read,
    wrote new files beside (a cache in the data directory) or appended to (a log, a dataset
    it extends). `entry`: the path's `data` record from before the run (hash and size).

    A file: rewritten, unless it grew and still starts with the bytes it had (appended). A
    directory: a file that was there before was changed or removed; new files alone do not
    count.
    """
    if before == after:
        return False
    if set(before) == {""}:  # a file
        old, now = before[""], after.get("")
        if now is None:
            return True
        if entry is None or now[0] <= old[0] or entry.hash is None:
            return True
        return bool(hashing.hash_prefix(where, old[0]) != entry.hash)
    return any(after.get(rel) != sig for rel, sig in before.items())


def split(entry: data.Entry, where: Path, before: Tree) -> tuple[data.Entry, list[str]]:
    """(the entry restricted to what the run wrote, the stale relpaths left out).

    A file output untouched by the run gives ([""]) as its stale list and keeps its hash (it
    describes the file; `stale` says it is not the run's). A directory's listing, hash, size
    and file count cover only the files the run created or modified: `where` is the directory
    on disk, each file that was there before is stat'ed once more to see whether it changed.
    """
    if entry.kind == "file":
        after = stat_tree(where)
        return entry, ([""] if before and after.get("") == before.get("") else [])
    if entry.kind != "dir" or entry.listing is None or not before:
        return entry, []
    top = os.path.realpath(where)
    stale = []
    for rel in entry.listing:
        old = before.get(rel)
        if old is None:
            continue
        try:
            now = _sig(os.lstat(os.path.join(top, rel)))
        except OSError:
            continue
        if now == old:
            stale.append(rel)
    if not stale:
        return entry, []
    gone = set(stale)
    listing = {k: v for k, v in entry.listing.items() if k not in gone}
    fresh = dataclasses.replace(entry, hash=hashing.hash_listing(listing),
                                size=sum(v[1] for v in listing.values()), files=len(listing),
                                listing=listing)
    return fresh, sorted(stale)


def replaced(entry: data.Entry, where: Path, before: Tree) -> bool | int:
    """What of an output the run rewrote that was there before it started (an earlier run's
    checkpoint): a script may have read it first (resumed from it), which a replay, starting
    without it, cannot do. A file: True when it was there and the run changed it. A directory:
    the count of the run's files (`entry` after `split`) that were there before. 0/False: none.
    """
    if not before:
        return False
    if entry.kind == "file":
        return "" in before and stat_tree(where).get("") != before[""]
    if entry.kind != "dir" or entry.listing is None:
        return False
    return sum(1 for rel in entry.listing if rel in before)

