"""What a pushed run is: its manifest and an index of its other files by BLAKE3 hash.

    runs/<run_id>/files.json      {"schema": "repro/remote-run/v1", "run_id", "manifest":
                                   {"hash", "size"}, "files": {relpath: {"hash", "size"}}}
    runs/<run_id>/manifest.yaml   the manifest, byte for byte: its presence makes the run visible

Hashes are repro's own BLAKE3 (repro.capture.hashing, blake3's one home). Never prints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repro import errors
from repro.capture import hashing
from repro.record import bounded, manifest, store

SCHEMA = "repro/remote-run/v1"
INDEX = "files.json"
INDEX_MAX = 64 * bounded.MiB
PULLED = store.PULLED  # marks a run `repro pull` wrote: never `latest` (not the user's run)
# Files of a run directory that belong to this clone only: never pushed.
LOCAL_ONLY = frozenset({"manifest.yaml.tag", "pulled.json", ".remote-index.json"})


def run_key(run_id: str, name: str) -> str:
    return f"runs/{run_id}/{name}"


@dataclasses.dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the run directory, POSIX
    hash: str
    size: int


@dataclasses.dataclass(frozen=True)
class RunIndex:
    run_id: str
    manifest_hash: str
    manifest_size: int
    files: tuple[FileEntry, ...]

    def to_json(self) -> bytes:
        doc = {"schema": SCHEMA, "run_id": self.run_id,
               "manifest": {"hash": self.manifest_hash, "size": self.manifest_size},
               "files": {f.path: {"hash": f.hash, "size": f.size} for f in self.files}}
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    @property
    def total_bytes(self) -> int:
        return self.manifest_size + sum(f.size for f in self.files)


def index_run(run_id: str, run_dir: Path) -> RunIndex:
    """Hash every regular file of a run directory (symlinks and temp files are not the run)."""
    files: list[FileEntry] = []
    for dirpath, dirnames, filenames in os.walk(run_dir):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(run_dir).as_posix()
            if rel in LOCAL_ONLY or rel == store.MANIFEST or name.endswith(".tmp"):
                continue
            st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                continue
            files.append(FileEntry(rel, hashing.hash_file(full), st.st_size))
    man = run_dir / store.MANIFEST
    return RunIndex(run_id, hashing.hash_file(man), man.stat().st_size,
                    tuple(sorted(files, key=lambda f: f.path)))


def parse_index(raw: bytes, run_id: str, source: str) -> RunIndex:
    """A run index read from a remote: bounded, every path confined, every hash well formed."""
    doc: Any = bounded.loads_json(raw, source, errors.RemoteError)
    bad = errors.RemoteError(f"{source} is not a repro run index",
                             hint="the remote's copy is damaged; push the run again from a "
                                  "clone that has it")
    if (not isinstance(doc, Mapping) or doc.get("schema") != SCHEMA
            or doc.get("run_id") != run_id or not isinstance(doc.get("files"), Mapping)
            or not isinstance(doc.get("manifest"), Mapping)):
        raise bad
    entries = []
    for rel, entry in doc["files"].items():
        try:
            rel = manifest.confined(rel, "file")
        except errors.ManifestError as e:
            raise errors.RemoteError(f"{source}: {e.message}", hint=bad.hint) from e
        entries.append(FileEntry(rel, *_hash_size(entry, bad)))
    if any(e.path in LOCAL_ONLY or e.path == store.MANIFEST for e in entries):
        raise bad
    h, size = _hash_size(doc["manifest"], bad)
    return RunIndex(run_id, h, size, tuple(sorted(entries, key=lambda f: f.path)))


def _hash_size(entry: Any, bad: errors.RemoteError) -> tuple[str, int]:
    if not isinstance(entry, Mapping):
        raise bad
    h, size = entry.get("hash"), entry.get("size")
    if (not isinstance(h, str) or not h.startswith("blake3:") or isinstance(size, bool)
            or not isinstance(size, int) or size < 0):
        raise bad
    return h, size


def visible_runs(keys: list[str]) -> list[str]:
    """Run ids whose manifest is at the remote (the ones that count), newest first."""
    ids = set()
    for key in keys:
        parts = key.split("/")
        if (len(parts) == 3 and parts[0] == "runs" and parts[2] == store.MANIFEST
                and store.RUN_ID_RE.match(parts[1])):
            ids.add(parts[1])
    return sorted(ids, reverse=True)
