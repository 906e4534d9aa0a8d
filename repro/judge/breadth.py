"""What differs in the environment's breadth (conda packages) and in data statistics.

Pure comparison of plain data, for compare.py: conda packages as one change each (version,
build and channel together, as pip packages are one change each), and how a data input's
statistics moved (rows, columns added or removed, types, nulls, files per class folder).
Must not: read files, print, or decide what is noise (compare.py does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CONDA_PACKAGES = "conda.packages"


def conda_packages(a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """(name, a's {version, build, channel}, b's) for each conda package that differs, sorted;
    None on the side that lacks it. A channel counts only when both sides recorded one (it is
    read while the command runs, so a run cut short may lack it)."""
    pa = a if isinstance(a, Mapping) else {}
    pb = b if isinstance(b, Mapping) else {}
    out = []
    for name in sorted(set(pa) | set(pb), key=str):
        x, y = pa.get(name), pb.get(name)
        if not _same_package(x, y):
            out.append((str(name), x, y))
    return out


def split_conda(a: Mapping[str, Any], b: Mapping[str, Any]
                ) -> tuple[list[tuple[str, Any, Any]], dict[str, Any], dict[str, Any]]:
    """(`conda.packages.<name>` changes, a and b without conda's packages): the rest of the
    environment section goes through compare's generic walk."""
    ca, cb = a.get("conda"), b.get("conda")
    if not isinstance(ca, Mapping) and not isinstance(cb, Mapping):
        return [], dict(a), dict(b)
    pa = ca.get("packages") if isinstance(ca, Mapping) else None
    pb = cb.get("packages") if isinstance(cb, Mapping) else None
    changes = [(f"{CONDA_PACKAGES}.{n}", x, y) for n, x, y in conda_packages(pa, pb)]
    return changes, {**a, "conda": _without(ca, "packages")}, \
        {**b, "conda": _without(cb, "packages")}


def _without(value: Any, key: str) -> Any:
    return {k: v for k, v in value.items() if k != key} if isinstance(value, Mapping) else value


def _same_package(x: Any, y: Any) -> bool:
    if not isinstance(x, Mapping) or not isinstance(y, Mapping):
        return bool(x == y)
    if any(x.get(k) != y.get(k) for k in ("version", "build")):
        return False
    return not (x.get("channel") and y.get("channel") and x["channel"] != y["channel"])


def stats_change(a: Any, b: Any) -> dict[str, Any] | None:
    """How a data input's statistics changed, or None when either side has none (or they agree).

    Keys, each only when it changed: format [a, b]; rows [a, b] (and partial: true when either
    side was cut short by the time budget); columns_added, columns_removed (names, in order);
    types {column: [a, b]}; nulls {column: [a, b]}; files [a, b]; subdirs_added {name: files},
    subdirs_removed {name: files}; subdirs {name: [a, b]}; tables {relpath: the same, for a
    table file inside a directory that both sides have statistics of}.
    """
    if not isinstance(a, Mapping) or not isinstance(b, Mapping) or "error" in a or "error" in b:
        return None
    out: dict[str, Any] = {}
    if a.get("format") != b.get("format"):
        out["format"] = [a.get("format"), b.get("format")]
    for key in ("rows", "files"):
        if a.get(key) != b.get(key) and (key in a or key in b):
            out[key] = [a.get(key), b.get(key)]
    if a.get("partial") or b.get("partial"):
        out["partial"] = True
    ca, cb = _mapping(a.get("columns")), _mapping(b.get("columns"))
    added = [n for n in cb if n not in ca]
    removed = [n for n in ca if n not in cb]
    if added:
        out["columns_added"] = added
    if removed:
        out["columns_removed"] = removed
    types: dict[str, list[Any]] = {}
    nulls: dict[str, list[Any]] = {}
    for name in ca:
        if name not in cb:
            continue
        x, y = _mapping(ca[name]), _mapping(cb[name])
        if x.get("type") != y.get("type"):
            types[name] = [x.get("type"), y.get("type")]
        if x.get("nulls") != y.get("nulls"):
            nulls[name] = [x.get("nulls"), y.get("nulls")]
    if types:
        out["types"] = types
    if nulls:
        out["nulls"] = nulls
    sa, sb = _mapping(a.get("subdirs")), _mapping(b.get("subdirs"))
    if sa or sb:
        if added_dirs := {k: sb[k] for k in sb if k not in sa}:
            out["subdirs_added"] = added_dirs
        if removed_dirs := {k: sa[k] for k in sa if k not in sb}:
            out["subdirs_removed"] = removed_dirs
        if moved := {k: [sa[k], sb[k]] for k in sa if k in sb and sa[k] != sb[k]}:
            out["subdirs"] = moved
    ta, tb = _mapping(a.get("tables")), _mapping(b.get("tables"))
    tables = {rel: sub for rel in sorted(set(ta) & set(tb))
              if (sub := stats_change(ta[rel], tb[rel])) is not None}
    if tables:
        out["tables"] = tables  # table files inside a directory: how each changed
    if list(out) == ["partial"]:
        return None
    return out or None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def environment_causes(keys: list[str]) -> list[str]:
    """The verdict's words for counted environment changes (dotted keys), most telling first:
    `container`, `python`, `packages (2)`, `conda packages (1)`, `native libraries`, and
    `environment` for anything else (a lockfile, a variable) when the python is the same."""
    def under(prefix: str) -> list[str]:
        return [k for k in keys if k.startswith(prefix + ".")]

    causes: list[str] = []
    python = bool(under("python"))
    if under("container"):
        causes.append("container")
    if python:
        causes.append("python")
    if packages := under("packages"):
        causes.append(f"packages ({len(packages)})")
    if conda := under(CONDA_PACKAGES):
        causes.append(f"conda packages ({len(conda)})")
    if under("native"):
        causes.append("native libraries")
    named = [k for k in keys if k.split(".", 1)[0] in
             ("packages", "conda", "container", "native", "python")]
    if not python and len(keys) > len(named):
        causes.append("environment")
    return causes
