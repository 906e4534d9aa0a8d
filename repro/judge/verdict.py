"""A judged item (`Check`) and the verdict over a list of them; how numbers read in details.

The rules are in repro/judge/checks.py's docstring. Never prints.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from repro.judge import compare

VERDICTS = ("bitwise", "within-tolerance", "not-reproduced")
STATUSES = ("same", "within-tolerance", "different", "missing")
KINDS = ("output", "metric", "exit")


# ---------------------------------------------------------------------------------------------
# Checks and the verdict.


@dataclasses.dataclass(frozen=True)
class Check:
    """One judged item: an output file, a metric or the exit code.

    `detail` is one human line saying how much it differs; `data` holds the numbers behind it
    for `verify --json` (merged into the check's JSON object, never over the four fixed keys).
    """

    kind: str  # "output" | "metric" | "exit"
    name: str  # output path ("dir/file" inside a directory), metric name, or "exit_code"
    status: str  # "same" | "within-tolerance" | "different" | "missing"
    detail: str
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status in ("same", "within-tolerance")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "status": self.status,
                               "detail": self.detail}
        for key, value in self.data.items():
            if key not in out:
                out[str(key)] = _plain(value)
        return out


def verdict(checks: Sequence[Check]) -> str:
    """`bitwise`, `within-tolerance` or `not-reproduced` (see the module docstring)."""
    if not checks:
        return "not-reproduced"
    if any(not c.passed for c in checks):
        return "not-reproduced"
    if all(c.status == "same" for c in checks):
        return "bitwise"
    return "within-tolerance"


def _plain(value: Any) -> Any:
    """JSON-safe plain data: non-finite floats as "nan"/"inf"/"-inf", tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------
# Numbers in details.


def describe_number(x: object) -> str:
    """A metric value as a user would type it: `0.51`, `1e-07`, `3`, `nan`, `inf`, `'adam'`.

    Floats use the shortest text that reads back as the same float, so two values that differ
    never look equal in a detail line.
    """
    if isinstance(x, bool) or not compare.is_number(x):
        return _clip(repr(x), 60)
    if isinstance(x, float):
        return "nan" if math.isnan(x) else repr(x)
    return str(x)


def describe_delta(x: float) -> str:
    """A difference, signed, to 3 significant digits: `+0.01`, `-3e-07`."""
    return "nan" if math.isnan(x) else f"{x:+.3g}"


def _g(x: float | None) -> str:
    return "?" if x is None else ("nan" if math.isnan(x) else f"{x:.3g}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _names(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit} more" if len(names) > limit else "")
