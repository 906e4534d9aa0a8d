"""`repro runs --where EXPR --columns NAMES`: runs selected and shown by parameters and metrics.

A NAME is a parameter (`params.values`) or a final metric (`metrics.final`, nested names
dotted: `val.loss`); a bare name is looked up among the parameters first, `params.lr` and
`metrics.loss` say which. An expression is NAME OP VALUE with OP one of `=` (`==`), `!=`, `<`,
`<=`, `>`, `>=`; VALUE is typed as a command-line word is (capture/params.type_value), and
compared typed: numbers as numbers (`lr=0.01` matches 1e-2), anything else by equality; the
ordering operators need a number. A run without the name never matches. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from repro import errors
from repro.capture.params import type_value

OPERATORS = ("<=", ">=", "!=", "==", "=", "<", ">")  # longest first where they share a start
_ORDERING = frozenset({"<", "<=", ">", ">="})
_HINT = "write NAME OP VALUE, e.g. --where lr=0.01 --where 'loss<0.1' (OP: = != < <= > >=)"
_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Where:
    """One `--where` expression, parsed."""

    name: str
    op: str
    value: Any

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Does the run (a `repro runs --json` row: its `params` and `metrics`) match?"""
        found = lookup(row, self.name)
        if found is _MISSING:
            return False
        a, b = _comparable(found, self.value)
        if self.op in ("=", "=="):
            return _equal(a, b)
        if self.op == "!=":
            return not _equal(a, b)
        if not _is_number(a) or not _is_number(b) or math.isnan(a) or math.isnan(b):
            return False
        return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op])


def parse_where(expr: str) -> Where:
    """`"loss<0.1"` -> Where("loss", "<", 0.1); UsageError naming what is wrong."""
    at = next((i for i, c in enumerate(expr) if c in "<>=!"), None)
    if at is None:
        raise errors.UsageError(f"--where {expr!r} has no comparison", hint=_HINT)
    op = next((o for o in OPERATORS if expr.startswith(o, at)), None)
    if op is None:
        raise errors.UsageError(f"--where {expr!r}: {expr[at:at + 2]!r} is not an operator",
                                hint=_HINT)
    name, raw = expr[:at].strip(), expr[at + len(op):].strip()
    if not name:
        raise errors.UsageError(f"--where {expr!r} names no parameter or metric", hint=_HINT)
    if not raw:
        raise errors.UsageError(f"--where {expr!r} has no value after {op!r}", hint=_HINT)
    if raw[0] in "<>=!":
        raise errors.UsageError(f"--where {expr!r}: {op + raw[0]!r} is not an operator",
                                hint=_HINT)
    value = type_value(raw)
    if op in _ORDERING and not _is_number(value):
        raise errors.UsageError(f"--where {expr!r}: {op!r} compares numbers, and {raw!r} is "
                                "not one", hint="use = or != for text, e.g. --where model=resnet")
    return Where(name, op, value)


def parse_columns(specs: Iterable[str]) -> list[str]:
    """`["lr,batch_size", "loss"]` -> `["lr", "batch_size", "loss"]` (commas or repeats)."""
    names = [n.strip() for spec in specs for n in spec.split(",")]
    if any(not n for n in names):
        raise errors.UsageError(f"--columns {','.join(specs)!r} has an empty name",
                                hint="e.g. --columns lr,batch_size,loss")
    return list(dict.fromkeys(names))


def lookup(row: Mapping[str, Any], name: str) -> Any:
    """The run's value for NAME (parameters first, then final metrics); _MISSING if none."""
    scope, _, rest = name.partition(".")
    params = row.get("params")
    params = params if isinstance(params, Mapping) else {}
    if scope == "params" and rest and name not in params:
        return params.get(rest, _MISSING)
    if scope == "metrics" and rest and name not in params:
        return _metric(row, rest)
    if name in params:
        return params[name]
    return _metric(row, name)


def value_of(row: Mapping[str, Any], name: str) -> Any:
    """lookup, with None for a run that has no such name (for a table cell or JSON)."""
    found = lookup(row, name)
    return None if found is _MISSING else found


def select(rows: Sequence[Mapping[str, Any]], wheres: Sequence[Where],
           limit: int | None = None) -> list[Mapping[str, Any]]:
    """The rows every expression matches, in order, at most `limit`."""
    out = [r for r in rows if all(w.matches(r) for w in wheres)]
    return out[:limit] if limit is not None else out


def unknown(rows: Sequence[Mapping[str, Any]], wheres: Sequence[Where]) -> list[str]:
    """The names of `wheres` that no run has as a parameter or final metric (a typo, or a
    table column such as `seed` that is not one)."""
    return list(dict.fromkeys(w.name for w in wheres
                              if all(lookup(r, w.name) is _MISSING for r in rows)))


def _metric(row: Mapping[str, Any], name: str) -> Any:
    value: Any = row.get("metrics")
    if not isinstance(value, Mapping):
        return _MISSING
    if name in value:
        return value[name]
    for part in name.split("."):  # `val.loss` in {"val": {"loss": 1}}
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _comparable(found: Any, value: Any) -> tuple[Any, Any]:
    """A recorded string that is a number (`"1e-3"` read from YAML 1.1) compares as one."""
    if isinstance(found, str) and _is_number(value):
        typed = type_value(found)
        if _is_number(typed):
            return typed, value
    return found, value


def _equal(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
