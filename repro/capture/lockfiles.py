"""Lockfiles: finding one at the git root, reading its pins, and matching installed packages.

Reads uv.lock, poetry.lock, pdm.lock (TOML), Pipfile.lock (JSON), conda-lock.yml (YAML, through
record/manifest) and pinned requirement files, all bounded (bounded.LOCK_MAX bytes, MAX_DEPTH
levels). Never runs a package manager, never prints; a lockfile it cannot read is a
``errors.LockfileError`` naming it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repro import errors
from repro.capture.environment import normalize
from repro.record import bounded, manifest

LOCK_NAMES = ("uv.lock", "poetry.lock", "pdm.lock", "Pipfile.lock", "conda-lock.yml")


@dataclasses.dataclass(frozen=True)
class Lock:
    path: str  # relative to the git root
    kind: str  # uv | poetry | pdm | pipenv | conda-lock | requirements
    pins: Mapping[str, frozenset[str]]  # name -> allowed versions (several with platform markers)
    # Locks that cover several platforms or optional groups pin packages this environment
    # may legitimately lack; only requirement files list exactly one environment.
    exhaustive: frozenset[str]  # names that must be installed


def find_lockfile(root: Path, configured: str | None) -> Path | None:
    """The configured lockfile, else the first one found at the git root."""
    if configured:
        path = (root / configured)
        if not path.is_file():
            raise errors.LockfileError(f"the configured lockfile {configured} does not exist",
                                       hint="fix `lockfile` in the repro configuration")
        return path
    for name in LOCK_NAMES:
        if (root / name).is_file():
            return root / name
    candidates = sorted(root.glob("requirements*.lock")) + sorted(root.glob("requirements*.txt"))
    for path in candidates:
        if path.suffix == ".lock" or _all_pinned(path):
            return path
    return None


def _all_pinned(path: Path) -> bool:
    try:
        reqs = list(_requirement_lines(
            bounded.read_text(path, bounded.LOCK_MAX, errors.LockfileError)))
    except errors.LockfileError:
        return False
    return bool(reqs) and all(_pin_of(r) is not None for r in reqs)


def read_lock(root: Path, path: Path) -> Lock:
    """The pins of a lockfile; LockfileError naming it when it is unreadable, malformed, of an
    unknown version, or pins nothing (bounded: bounded.LOCK_MAX bytes, MAX_DEPTH levels)."""
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError as e:
        raise errors.LockfileError(f"the lockfile {bounded.show_path(path)} is outside the "
                                   f"repository", hint="lock files must be committed") from e
    name = path.name
    text = bounded.read_text(path, bounded.LOCK_MAX, errors.LockfileError, "lockfile")
    try:
        if name in ("uv.lock", "poetry.lock", "pdm.lock"):
            lock = _toml_lock(text, rel, name.split(".")[0])
        elif name == "Pipfile.lock":
            lock = _pipfile_lock(text, rel)
        elif name == "conda-lock.yml":
            lock = _conda_lock(text, rel)
        else:
            lock = _requirements_lock(text, rel)
    except _Malformed as e:
        raise errors.LockfileError(f"cannot read lockfile {rel}: {e}",
                                   hint="regenerate it with your package manager") from e
    return lock


class _Malformed(Exception):
    """A lockfile that parses but does not have the shape of its kind."""


# Lock format versions this reader understands; a newer one may move the pins elsewhere.
# (poetry and pdm keep theirs under [metadata] and have changed it compatibly so far)
_TOML_VERSIONS: dict[str, tuple[str, set[int] | None]] = {
    "uv": ("version", {1}), "poetry": ("lock-version", None), "pdm": ("lock_version", None)}


def _toml_lock(text: str, rel: str, kind: str) -> Lock:
    import tomllib

    if bounded.toml_too_deep(text):
        raise _Malformed("nested too deeply")
    try:
        doc = tomllib.loads(text)
    except RecursionError as e:
        raise _Malformed("nested too deeply") from e
    except ValueError as e:  # TOMLDecodeError, or an integer of more than 4,300 digits
        raise _Malformed(bounded.reason(e)) from e
    _check_shape(doc, rel)
    key, known = _TOML_VERSIONS[kind]
    version = doc.get(key)
    if known is not None and version is not None and version not in known:
        raise _Malformed(f"{key} = {version!r:.40} is not a version repro understands "
                         f"(known: {', '.join(map(str, sorted(known)))})")
    packages = doc.get("package", [])
    if not isinstance(packages, list):
        raise _Malformed(f"'package' must be an array of tables, got {_kind(packages)}")
    pins: dict[str, set[str]] = {}
    for i, pkg in enumerate(packages):
        if not isinstance(pkg, dict):
            raise _Malformed(f"package {i + 1} must be a table, got {_kind(pkg)}")
        source = pkg.get("source", {})
        if isinstance(source, dict) and ({"editable", "virtual"} & set(source)):
            continue  # the project itself
        if "version" in pkg:
            pname, version = pkg.get("name"), pkg["version"]
            if not isinstance(pname, str) or not isinstance(version, str):
                raise _Malformed(f"package {i + 1} needs a string name and version")
            pins.setdefault(normalize(pname), set()).add(version)
    if not packages:
        raise _Malformed("it lists no packages")
    return Lock(rel, kind, {k: frozenset(v) for k, v in pins.items()}, frozenset())


def _pipfile_lock(text: str, rel: str) -> Lock:
    try:
        doc = bounded.loads_json(text, rel, errors.LockfileError)
    except errors.LockfileError as e:
        raise _Malformed(_after(rel, e.message)) from e
    if not isinstance(doc, dict):
        raise _Malformed(f"the top level must be an object, got {_kind(doc)}")
    pins: dict[str, frozenset[str]] = {}
    entries = 0
    for group in ("default", "develop"):
        section = doc.get(group, {})
        if not isinstance(section, dict):
            raise _Malformed(f"{group!r} must be an object of packages, got {_kind(section)}")
        for pname, spec in section.items():
            if not isinstance(spec, dict):
                raise _Malformed(f"{group}.{pname} must be an object, got {_kind(spec)}")
            entries += 1
            version = spec.get("version", "")
            if isinstance(version, str) and version.startswith("=="):
                pins[normalize(pname)] = frozenset([version[2:]])
    if not entries:
        raise _Malformed("it lists no packages")
    return Lock(rel, "pipenv", pins, frozenset())


def _conda_lock(text: str, rel: str) -> Lock:
    try:
        doc = manifest.loads(text, rel)
    except errors.ManifestError as e:
        raise _Malformed(_after(rel, e.message)) from e
    if not isinstance(doc, dict):
        raise _Malformed(f"the top level must be a mapping, got {_kind(doc)}")
    packages = doc.get("package")
    if not isinstance(packages, list):
        raise _Malformed(f"'package' must be a list, got {_kind(packages)}")
    if not packages:
        raise _Malformed("it lists no packages")
    pins: dict[str, set[str]] = {}
    for i, pkg in enumerate(packages):
        if not isinstance(pkg, dict):
            raise _Malformed(f"package {i + 1} must be a mapping, got {_kind(pkg)}")
        # conda package names differ from Python distribution names (pytorch vs torch), so
        # only pip-managed entries are held to the lock; conda's own are recorded by hash.
        if pkg.get("manager") == "pip":
            pname, version = pkg.get("name"), pkg.get("version")
            if not isinstance(pname, str) or isinstance(version, (dict, list)) or version is None:
                raise _Malformed(f"package {i + 1} needs a name and a version")
            pins.setdefault(normalize(pname), set()).add(str(version))
    return Lock(rel, "conda-lock", {k: frozenset(v) for k, v in pins.items()}, frozenset())


def _requirements_lock(text: str, rel: str) -> Lock:
    pins: dict[str, frozenset[str]] = {}
    must: set[str] = set()
    for req in _requirement_lines(text):
        pin = _pin_of(req)
        if pin is None:
            raise errors.LockfileError(
                f"{rel} is not a lockfile: {req!r:.200} is not pinned with ==",
                hint="pin every requirement (pip-compile, `uv pip compile`, `pip freeze`)",
            )
        pname, version, has_marker = pin
        pins[pname] = frozenset([version])
        if not has_marker:
            must.add(pname)  # a marker may exclude this platform: then absence is fine
    if not pins:
        raise errors.LockfileError(
            f"the lockfile {rel} pins no packages",
            hint="write your pinned requirements into it (e.g. `pip freeze > requirements.lock`)"
                 ", or remove it and pass --allow-unlocked")
    return Lock(rel, "requirements", pins, frozenset(must))


def _check_shape(doc: Any, rel: str) -> None:
    try:
        bounded.check_tree(doc, rel, errors.LockfileError)
    except errors.LockfileError as e:
        raise _Malformed(_after(rel, e.message)) from e


def _after(rel: str, message: str) -> str:
    """`Pipfile.lock is nested too deeply` -> `nested too deeply` (the caller names the file)."""
    return message.removeprefix(f"{rel} ").removeprefix("is ")


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", int: "a number",
             float: "a number", bool: "a boolean", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def _requirement_lines(text: str) -> Any:
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        yield line


_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*===?\s*([^\s;,]+)\s*(;.*)?$")


def _pin_of(req: str) -> tuple[str, str, bool] | None:
    req = re.sub(r"\s--hash[= ]\S+", "", req).strip()
    m = _PIN_RE.match(req)
    if not m:
        return None
    return normalize(m.group(1)), m.group(3), bool(m.group(4))


def check_lock(lock: Lock, installed: Mapping[str, str]) -> dict[str, Any]:
    """Match installed packages against the lock's pins, for the manifest."""
    mismatches = []
    for pname, allowed in sorted(lock.pins.items()):
        have = installed.get(pname)
        if have is None:
            if pname in lock.exhaustive:
                mismatches.append({"name": pname, "locked": _one(allowed), "installed": None})
        elif not _version_in(have, allowed):
            mismatches.append({"name": pname, "locked": _one(allowed), "installed": have})
    unlocked = sorted(set(installed) - set(lock.pins))
    return {"matches": not mismatches, "mismatches": mismatches, "unlocked": unlocked}


def _one(versions: frozenset[str]) -> str:
    return " | ".join(sorted(versions))


def _version_in(have: str, allowed: frozenset[str]) -> bool:
    # Local version labels (+cpu, +cu121) identify a build of the same release.
    return have in allowed or have.split("+")[0] in {v.split("+")[0] for v in allowed}
