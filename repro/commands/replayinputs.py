"""A replay's inputs: checked in the checkout before, placed in the worktree, checked after.

Inputs git does not track must hash as recorded in the user's checkout (`check_inputs`); they
are then copied (reflinked where the file system can) into the replay's worktree, or, when too
large or reached through a link, read in place (`place_inputs`); what was read in place must be
unchanged after the replay (`check_in_place`, `check_linked`). Never prints: warnings go through
the Reporter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from repro import errors, report
from repro.capture import data, hashing
from repro.commands import history
from repro.record import manifest, store

if TYPE_CHECKING:
    from repro.commands.replay import Plan


@dataclasses.dataclass(frozen=True)
class Input:
    path: str  # relative to the git root (or absolute, read-only, outside the repo)
    entry: manifest.FileEntry  # the recorded data entry


def check_inputs(plan: Plan, loaded: history.Loaded, runs: store.Store, force: bool,
                  reporter: report.Reporter, own: dict[str, frozenset[str]] | None = None,
                  ) -> tuple[list[str], dict[str, data.Entry]]:
    """Recorded inputs must still hash the same in the user's checkout; names what differs.

    Returns the problems (with --force) and the inputs as they are now, for the check after
    the replay of those it reads in place. A directory input that differs only by files the
    recorded run itself added (a cache beside its data; see `_added_by_run`) is as recorded
    once they are left out: `own` gets them (input path -> relpaths), for `place_inputs`.
    """
    if not plan.inputs:
        return [], {}
    paths = [i.path for i in plan.inputs]
    existing = [p for p in paths if (runs.root / p).exists() or (runs.root / p).is_symlink()]
    with reporter.progress("checking inputs") as progress:
        entries = data.hash_paths(existing, root=runs.root, cache_dir=runs.cache_dir,
                                  progress=progress) if existing else []
    now = {e.path: e for e in entries}
    problems: list[str] = []
    listings: Mapping[str, Mapping[str, tuple[str, int]]] | None = None
    for i in plan.inputs:
        e = now.get(i.path)
        if e is None:
            problems.append(f"{i.path} (missing)")
        elif (e.hash or e.target) != (i.entry.hash or i.entry.target):
            listings = loaded.listings() if listings is None else listings
            added = _added_by_run(i, e, listings, loaded.manifest, runs.root)
            if added and own is not None:
                own[i.path] = added
                shown = ", ".join(sorted(added)[:5]) + (" ..." if len(added) > 5 else "")
                reporter.warn(f"the recorded run appended to input {i.path}: the replay starts "
                              "from the bytes it had, as the run did" if added == {""} else
                              f"input {i.path} has files the recorded run wrote into it "
                              f"({shown}): the replay starts without them, as the run did")
                continue
            problems.append(_changed_files(i, e, listings))
    if problems and not force:
        raise errors.ReplayError("inputs differ from the recorded run: " + "; ".join(problems),
                                 hint="restore the recorded data, or pass --force to replay "
                                      "anyway (recorded in the new run)")
    for p in problems:
        reporter.warn(f"input differs from the recorded run: {p}")
    return problems, now


def _added_by_run(i: Input, now: data.Entry,
                  listings: Mapping[str, Mapping[str, tuple[str, int]]], m: manifest.Manifest,
                  root: Path) -> frozenset[str]:
    """What the recorded run itself added to an input: for a directory, the files it added (the
    listing differs from the recorded one only by them); for a file, `{""}` when the run
    appended to it (it grew and starts with the recorded bytes). Each was changed (ctime, which
    no program can set back) while the run ran. Empty when anything else differs."""
    import datetime as dt

    if not m.run.finished_at:
        return frozenset()
    try:
        window = [dt.datetime.fromisoformat(t).timestamp()
                  for t in (m.run.started_at, m.run.finished_at)]
    except ValueError:
        return frozenset()
    recorded = listings.get(str(i.entry.listing))
    size, digest = i.entry.size, i.entry.hash
    if (i.entry.kind == "file" and now.kind == "file" and size is not None
            and now.size > size and digest is not None):
        added = [""] if hashing.hash_prefix(root / i.path, size) == digest else []
    elif i.entry.kind == "dir" and recorded is not None and now.listing is not None:
        from repro.judge import compare

        changes = compare.diff_listing(recorded, now.listing)
        added = [] if changes["removed"] or changes["modified"] else changes["added"]
    else:
        return frozenset()
    if not added:
        return frozenset()
    for rel in added:
        try:
            # A named file is followed (as it was hashed); links inside a directory are not.
            ctime = (os.lstat(root / i.path / rel) if rel else os.stat(root / i.path)).st_ctime
        except OSError:
            return frozenset()
        if not window[0] - 0.05 <= ctime <= window[1]:  # (file times lag by a clock tick)
            return frozenset()
    return frozenset(added)


def _changed_files(i: Input, now: data.Entry,
                   listings: Mapping[str, Mapping[str, tuple[str, int]]]) -> str:
    """The input and, for a directory whose listing was kept, the files that changed."""
    recorded = listings.get(str(i.entry.listing))
    if i.entry.kind != "dir" or recorded is None or now.listing is None:
        return f"{i.path} (hash changed)"
    from repro.judge import compare

    changes = compare.diff_listing(recorded, now.listing)
    parts = [f"{kind} {', '.join(files[:5])}" + (" ..." if len(files) > 5 else "")
             for kind, files in changes.items() if files]
    return f"{i.path} ({'; '.join(parts)})"


def place_inputs(plan: Plan, root: Path, worktree: Path, budget: int,
                  reporter: report.Reporter,
                  linked: dict[str, tuple[str, Any]] | None = None,
                  own: Mapping[str, frozenset[str]] | None = None) -> list[Input]:
    """Put copies of the inputs git does not track into the worktree; return those read in place.

    Whatever the script does to its inputs (writes, files beside them, deletes) then happens
    to the copies. Reflinks (copy-on-write) are free; plain copies share `budget` bytes. An
    input over it is linked, named now, and checked after the replay, as are inputs outside
    the repository and inputs reached through a symlink the commit itself has. A directory
    input and a file inside it are one input: parents are placed first, children are in them.
    A link inside a copied directory stays a link (the input's hash records it so); one that
    leads out of the worktree is named now and its target goes into `linked` (worktree path
    -> (target, stat tree)) for `check_linked` after the replay. `own`: files the recorded
    run wrote into an input directory (see `check_inputs`), left out of its copy.
    """
    in_place: list[Input] = []
    placed: list[tuple[str, ...]] = []
    copied = 0
    for i in sorted(plan.inputs, key=lambda i: len(PurePosixPath(i.path).parts)):
        if Path(i.path).is_absolute():
            in_place.append(i)  # outside the repository: read where it is
            continue
        parts = PurePosixPath(manifest.confined(i.path, "input path")).parts
        if any(parts[:len(p)] == p for p in placed):
            continue  # inside an input already placed
        placed.append(parts)
        dest = worktree.joinpath(*parts)
        src = root.joinpath(*parts)
        if _through_link(worktree, parts) or dest.is_symlink():
            in_place.append(i)  # a symlink of the commit leads there: never write through it
            continue
        if not src.exists():
            if not dest.exists() and not dest.is_symlink() and src.is_symlink():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(os.readlink(src))  # a dangling link, recorded as a link
            continue
        if dest.exists() and not dest.is_dir():
            continue  # tracked at this commit, or restored with the untracked files
        size = i.entry.size or 0
        skip = (own or {}).get(i.path, frozenset())
        if copied + size > budget and not _can_clone(src, worktree):
            if skip:
                reporter.warn(f"the replay reads input {i.path} in place, with what the "
                              "recorded run wrote into it")
            reporter.warn(f"input {i.path} is too large to copy into the replay "
                          f"({size} bytes; replay_copy_max_bytes is {budget}): the replay "
                          "reads it in place, and repro checks afterwards that it is unchanged",
                          hint="raise `replay_copy_max_bytes` in the configuration to copy it")
            if dest.is_dir():  # the commit tracks part of it: link what the worktree lacks
                for name in sorted(os.listdir(src)):
                    if not os.path.lexists(dest / name) and name not in (".git", ".repro"):
                        (dest / name).symlink_to(src / name)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(src)
            in_place.append(i)
            continue
        out: list[tuple[str, str]] = []
        try:
            copied += _copy_input(src, dest, skip_top=(".git", ".repro") if not parts else (),
                                  worktree=worktree, links_out=out, skip=skip)
            if skip == {""}:  # the run appended to this file: start from the recorded bytes
                os.truncate(dest, size)
        except OSError as e:
            raise errors.ReplayError(
                f"cannot copy input {i.path} into the replay's worktree: {e.strerror or e}",
                hint="check free space in the temporary directory ($TMPDIR)") from e
        if out:
            from repro.capture import written

            shown = ", ".join(f"{rel} -> {target}" for rel, target in out[:5])
            reporter.warn(f"input {i.path} has links out of the replay ({shown}"
                          f"{' ...' if len(out) > 5 else ''}): the replay reads them in place, "
                          "and repro checks afterwards that what they lead to is unchanged")
            for rel, target in out:
                if linked is not None:
                    linked[rel] = (target, written.stat_tree(Path(target)))
    return in_place


def check_linked(linked: Mapping[str, tuple[str, Any]], reporter: report.Reporter,
                  raise_: bool) -> None:
    """What links out of the replay lead to must be as it was before it (one stat per file)."""
    from repro.capture import written

    changed = [f"{rel} -> {target}" for rel, (target, tree) in linked.items()
               if written.stat_tree(Path(target)) != tree]
    if not changed:
        return
    message = ("the replay changed " + "; ".join(changed)
               + " (reached through a link in a copied input, read in place)")
    _changed_input(message, "replace the link by the file", reporter, raise_)


def _through_link(worktree: Path, parts: Sequence[str]) -> bool:
    here = worktree
    for part in parts[:-1]:
        here = here / part
        if here.is_symlink():
            return True
    return False


_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks (btrfs, XFS, bcachefs, ...)


def _can_clone(src: Path, worktree: Path) -> bool:
    """Whether the file system can reflink `src` (its first file) into the worktree."""
    first = src.resolve()
    if first.is_dir():
        first = next((Path(d, f) for d, _, fs in os.walk(first) for f in fs
                      if Path(d, f).is_file() and not Path(d, f).is_symlink()), first)
    if not first.is_file():
        return True  # nothing to copy
    probe = worktree / ".repro-clone-probe"
    try:
        return _clone_or_copy(str(first), str(probe), clone_only=True)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def _clone_or_copy(src: str, dst: str, clone_only: bool = False) -> bool:
    """Copy one regular file; True when it was a reflink (free and copy-on-write)."""
    import fcntl

    with open(src, "rb") as fi, open(dst, "xb") as fo:
        try:
            fcntl.ioctl(fo.fileno(), _FICLONE, fi.fileno())
            cloned = True
        except OSError:
            cloned = False
    if not cloned and not clone_only:
        shutil.copyfile(src, dst)  # sendfile/copy_file_range in the kernel where possible
    with contextlib.suppress(OSError):
        shutil.copystat(src, dst)
    return cloned


def _copy_input(src: Path, dest: Path, skip_top: Sequence[str] = (), worktree: Path | None = None,
                links_out: list[tuple[str, str]] | None = None,
                skip: frozenset[str] = frozenset()) -> int:
    """Copy a file or a directory (merged into what the worktree has); the bytes not reflinked.

    A named symlink is followed (`data -> /mnt/datasets` is copied as a directory); links
    inside a directory stay links, as the input's hash records them. Those that, placed in the
    worktree, lead out of it (absolute, or up past its top) are appended to `links_out` as
    (path relative to the worktree, real target). `skip`: relpaths (in a directory) not copied.
    """
    top = os.path.realpath(worktree) if worktree is not None else None

    def one(s: str, d: str) -> int:
        if os.path.lexists(d):
            return 0  # tracked at this commit: the worktree's version is the recipe's
        st = os.lstat(s)
        if os.path.islink(s):
            os.symlink(os.readlink(s), d)
            if top is not None and links_out is not None:
                target = os.path.realpath(d)
                if not (target + os.sep).startswith(top + os.sep):  # dangling ones too
                    links_out.append((os.path.relpath(d, worktree), target))
            return 0
        if not os.path.isfile(s):
            return 0  # a FIFO or socket: nothing to copy
        return 0 if _clone_or_copy(s, d) else st.st_size

    dest.parent.mkdir(parents=True, exist_ok=True)
    real = os.path.realpath(src)
    if not os.path.isdir(real):
        return one(real, str(dest))
    plain = 0
    for dirpath, dirnames, filenames in os.walk(real):
        rel = os.path.relpath(dirpath, real)
        target = dest if rel == "." else dest / rel
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in skip_top]
            filenames = [f for f in filenames if f not in skip_top]
        target.mkdir(exist_ok=True)
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)
                if _rel_in(rel, name) not in skip:
                    plain += one(os.path.join(dirpath, name), str(target / name))
        for name in filenames:
            if _rel_in(rel, name) not in skip:
                plain += one(os.path.join(dirpath, name), str(target / name))
    return plain


def _rel_in(rel_dir: str, name: str) -> str:
    """A listing's relpath ('/'-separated) of `name` in `rel_dir` (relative to the input)."""
    return name if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/" + name


def check_in_place(inputs: Sequence[Input], before: Mapping[str, data.Entry],
                    loaded: history.Loaded, runs: store.Store, reporter: report.Reporter,
                    raise_: bool) -> None:
    """Inputs the replay read in place must be as they were before it (one stat per file)."""
    paths = [i.path for i in inputs if i.path in before]
    if not paths:
        return
    entries = data.hash_paths(paths, root=runs.root, cache_dir=runs.cache_dir)
    changed = []
    listings: dict[str, Mapping[str, tuple[str, int]]] = {}
    for i, now in zip([i for i in inputs if i.path in before], entries, strict=True):
        was = before[i.path]
        if (now.kind, now.hash, now.target) == (was.kind, was.hash, was.target):
            continue
        if was.listing is not None:
            listings["was"] = was.listing
        entry = manifest.FileEntry(kind=was.kind, listing="was")
        changed.append(_changed_files(Input(i.path, entry), now, listings))
    if not changed:
        return
    message = "the replay changed input " + "; ".join(changed) + " (read in place, not copied)"
    _changed_input(message, "raise `replay_copy_max_bytes` so replays copy it", reporter, raise_)


def _changed_input(message: str, remedy: str, reporter: report.Reporter, raise_: bool) -> None:
    """A replay changed what the user has: an error, or a warning for an interrupted replay."""
    hint = f"restore it from your backup; {remedy}, or keep the script from writing into its inputs"
    if not raise_:
        reporter.warn(message, hint)
        return
    raise errors.ReplayError(message, hint=hint)
