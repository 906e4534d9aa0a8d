"""The `params` section of `repro diff`: which hyperparameters differ, key by key.

A key's value is compared as recorded (`lr: 0.01 → 0.02`); a key read ambiguously from the
command line (capture/params.py) compares by its raw argv words. Where a value came from
(`argv`, `file:<path>`, `hydra`, `script`) is shown, never counted: a key moved from the
command line into a config file with the same value is the same recipe. Pure: plain data in,
compare.Change out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from repro.judge import compare
from repro.judge.tolerance import same_value


def diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[list[compare.Change],
                                                             list[compare.Change]]:
    """(changes, info) between two `params` sections (plain data).

    A run recorded before repro captured parameters has no section: nothing is compared
    (every parameter would read as added), and the info says which run lacks it."""
    if not a or not b:
        if a or b:
            return [], [compare.Change("recorded", bool(a) or None, bool(b) or None,
                                       "added" if b else "removed", noise=True)]
        return [], []
    va, vb = _values(a), _values(b)
    sa, sb = _map(a, "sources"), _map(b, "sources")
    changes: list[compare.Change] = []
    info: list[compare.Change] = []
    for key in sorted(va.keys() | vb.keys()):
        x, y = va.get(key, _ABSENT), vb.get(key, _ABSENT)
        if x is not _ABSENT and y is not _ABSENT and same_value(x, y):
            if sa.get(key) != sb.get(key):
                info.append(compare.Change(f"{key} (source)", sa.get(key), sb.get(key),
                                           noise=True))
            continue
        kind: compare.ChangeKind = "added" if x is _ABSENT else \
            "removed" if y is _ABSENT else "changed"
        detail: dict[str, Any] = {"source": {"a": sa.get(key), "b": sb.get(key)}}
        changes.append(compare.Change(key, None if x is _ABSENT else x,
                                      None if y is _ABSENT else y, kind, detail=detail))
    return changes, info


def explains_command(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Do both command lines run the same program with the same other words, so that a
    difference in argv is a difference in parameters alone?"""
    if not a or not b or a.get("parsed") is False or b.get("parsed") is False:
        return False
    return same_value(a.get("program"), b.get("program")) and \
        same_value(a.get("args"), b.get("args"))


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def _map(section: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = section.get(key)
    return value if isinstance(value, Mapping) else {}


def _values(section: Mapping[str, Any]) -> dict[str, Any]:
    """Values, and each ambiguous key as `{"ambiguous": [raw words]}`."""
    out = dict(_map(section, "values"))
    for key, words in _map(section, "ambiguous").items():
        out[key] = {"ambiguous": list(words) if isinstance(words, (list, tuple)) else words}
    return out


def is_ambiguous(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"ambiguous"}
