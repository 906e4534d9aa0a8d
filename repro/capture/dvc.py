"""The md5 DVC recorded for a data path: from a sibling ``<path>.dvc`` file or ``dvc.lock``.

Must not: print, import PyYAML (DVC files are read through ``manifest.read_yaml_file``), or
raise anything but ``errors.DataError`` (a DVC file that is not valid YAML).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from repro import errors
from repro.record import manifest


def dvc_md5(path: Path, root: Path) -> str | None:
    """The md5 DVC recorded for `path` (relative to `root`, or absolute inside it), or None.

    Looked up in a sibling ``<path>.dvc`` file, then in the ``outs`` (then ``deps``) of the
    stages in ``dvc.lock`` at the root. DataError when one of those files is not valid YAML.
    """
    from repro.capture import data  # data imports this module

    root_real = os.path.realpath(root)
    rel, _ = data.resolve(path, os.path.abspath(root), root_real)
    return DvcIndex(Path(root_real)).md5(rel)


class DvcIndex:
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
