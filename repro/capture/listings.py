"""The manifest ``data``/``outputs`` sections and the listing files of directories.

Owns: ``to_section`` (Entry list -> manifest mapping, writing ``<subdir>/<n>.json`` per
directory) and ``read_listing`` (bounded, checked entry by entry).

Must not: print, import PyYAML, or raise anything but ``errors.DataError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro import errors
from repro.capture import hashing
from repro.record import bounded, manifest

if TYPE_CHECKING:
    from repro.capture.data import Entry

LISTING_SCHEMA = "repro/listing/v1"


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
        raise errors.DataError(f"cannot write listing {path}: {hashing.reason(e)}",
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
