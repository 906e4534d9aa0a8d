"""The run manifest on disk: read and write `manifest.yaml` (typed, via repro.record.schema
and repro.record.yamlio), and the one check every manifest path goes through (`confined`).

The schema (sections, validation) is repro.record.schema; the YAML emitter and loader are
repro.record.yamlio. Both are re-exported here, so `manifest.Manifest`, `manifest.from_dict`,
`manifest.dumps` keep working for callers. Never prints; never executes anything found in a
manifest.
"""

from __future__ import annotations

import os
from pathlib import Path

from repro import errors
from repro.record.schema import (
    CORRUPT_HINT,
    LEVELS,
    SCHEMA,
    SEED_SOURCES,
    STATUSES,
    Code,
    Command,
    Determinism,
    Environment,
    FileEntry,
    Gpu,
    Group,
    Hardware,
    HookReport,
    Lockfile,
    Manifest,
    Metrics,
    Patch,
    PythonInfo,
    RunInfo,
    Seed,
    Submodule,
    Untracked,
    entries,
    from_dict,
    to_dict,
)
from repro.record.yamlio import (
    dumps,
    loads,
    read_yaml_file,
    sync,
    write_text_atomic,
)

__all__ = [
    "CORRUPT_HINT",
    "LEVELS",
    "SCHEMA",
    "SEED_SOURCES",
    "STATUSES",
    "Code",
    "Command",
    "Determinism",
    "Environment",
    "FileEntry",
    "Gpu",
    "Group",
    "Hardware",
    "HookReport",
    "Lockfile",
    "Manifest",
    "Metrics",
    "Patch",
    "PythonInfo",
    "RunInfo",
    "Seed",
    "Submodule",
    "Untracked",
    "confined",
    "dumps",
    "entries",
    "from_dict",
    "loads",
    "read",
    "read_yaml_file",
    "sync",
    "to_dict",
    "write",
    "write_text_atomic",
]


def read(path: Path) -> Manifest:
    data = read_yaml_file(path)
    return from_dict(data, str(path))


def write(path: Path, m: Manifest, key: bytes | None = None, durable: bool = True) -> None:
    """Write the manifest atomically; with this clone's `key`, its tag first (repro.record.trust).

    `durable=False` skips the fsync (still atomic): `repro run` writes its `running` manifests
    so and flushes the last of them while the child runs (see sync)."""
    text = dumps(to_dict(m))
    if key is not None:
        from repro.record import trust

        # No fsync for the tag (one per manifest write is the manifest's own): a tag lost to
        # a power cut only makes the run ask before a replay, like a foreign one.
        write_text_atomic(trust.tag_path(path), trust.tag_text(key, text.encode(), path),
                          durable=False)
    write_text_atomic(path, text, durable)


def confined(rel: str, what: str) -> str:
    """A path from a manifest: relative, without `..` or NUL (design §6), as POSIX text.

    Every use of a manifest path (replay's worktree, verify's files, listings) goes through
    here; a manifest is data and must never name a place outside its run or worktree.
    """
    from pathlib import PurePosixPath

    p = PurePosixPath(rel)
    if not rel or "\0" in rel or p.is_absolute() or os.path.isabs(rel) or ".." in p.parts:
        raise errors.ManifestError(
            f"the manifest's {what} {rel!r} escapes the worktree",
            hint="paths in a manifest must be relative and free of '..'; refusing to use it")
    return p.as_posix()


