"""Metric tolerance, shared by `repro diff` (judge/compare) and `repro verify` (judge/checks):
how far two numbers may be apart and still count as reproduced.

Must not: read files, print, import rich or yaml.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

from repro import errors

MetricStatus = Literal["same", "within-tolerance", "different", "missing"]



@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far two numeric metrics may be apart and still count as reproduced.

    `|a - b| <= atol + rtol * max(|a|, |b|)` (symmetric, like math.isclose). A per-metric entry
    `{name: tol}` is an *absolute* tolerance that replaces rtol/atol for that metric: it is
    what a user reads off a plot ("loss within 1e-4", "accuracy within 0.01").
    """

    rtol: float = 0.0
    atol: float = 0.0
    per_metric: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for label, value in (("rtol", self.rtol), ("atol", self.atol), *self.per_metric.items()):
            _check_tol(label, value)
        object.__setattr__(self, "per_metric", {str(k): float(v) for k, v in self.per_metric.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"rtol": self.rtol, "atol": self.atol, "per_metric": dict(self.per_metric)}


def _check_tol(label: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or value < 0:
        raise errors.UsageError(f"tolerance {label} must be a number >= 0, got {value!r}",
                                hint="e.g. --rtol 1e-5 --atol 1e-8 --metric loss=1e-4")


def parse_metric_tolerance(spec: str) -> tuple[str, float]:
    """`"loss=1e-4"` -> `("loss", 1e-4)`: an absolute tolerance for one metric."""
    name, sep, value = spec.rpartition("=")  # the number never contains "=", a name might
    name = name.strip()
    hint = "write NAME=TOLERANCE, e.g. --metric loss=1e-4"
    if not sep or not name:
        raise errors.UsageError(f"bad metric tolerance {spec!r}: expected NAME=TOLERANCE", hint=hint)
    try:
        tol = float(value)
    except ValueError:
        raise errors.UsageError(f"bad metric tolerance {spec!r}: {value.strip()!r} is not a number",
                                hint=hint) from None
    if math.isnan(tol) or tol < 0:
        raise errors.UsageError(f"bad metric tolerance {spec!r}: must be a number >= 0", hint=hint)
    return name, tol


def is_number(value: object) -> bool:
    """A metric value compared numerically (bools are labels, not numbers)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same_number(a: float, b: float) -> bool:
    """Exactly equal, with NaN == NaN (a run that diverged twice the same way reproduced)."""
    return a == b or (math.isnan(a) and math.isnan(b))


def within(a: float, b: float, tol: Tolerance, name: str) -> bool:
    """True when a and b are equal (NaN == NaN) or within the tolerance for metric `name`."""
    if same_number(a, b):
        return True
    gap = abs(a - b)
    if math.isnan(gap):
        return False
    if name in tol.per_metric:
        return gap <= tol.per_metric[name]
    return gap <= tol.atol + tol.rtol * max(abs(a), abs(b))


def metric_status(a: object, b: object, tol: Tolerance, name: str) -> MetricStatus:
    """Judge one metric: `missing` (absent on one side), `same`, `within-tolerance`, `different`.

    Numbers compare with `within`; anything else (strings, bools, lists) by equality.
    """
    if a is None or b is None:
        return "same" if a is None and b is None else "missing"
    if is_number(a) and is_number(b):
        fa, fb = float(a), float(b)  # type: ignore[arg-type]
        if same_number(fa, fb):
            return "same"
        return "within-tolerance" if within(fa, fb, tol, name) else "different"
    return "same" if same_value(a, b) else "different"


def metric_delta(a: float, b: float) -> tuple[float, float | None]:
    """(b - a, (b - a) / |a|); the relative delta is None when a is 0 or not finite."""
    delta = b - a
    rel = delta / abs(a) if a != 0 and math.isfinite(a) else None
    return delta, rel


def same_value(a: Any, b: Any) -> bool:
    """Plain-data equality: lists == tuples, NaN == NaN, 1 == 1.0, a missing key == null."""
    if a is b:
        return True
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = set(a) | set(b)
        return all(same_value(a.get(k), b.get(k)) for k in keys)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return same_number(a, b)
    if isinstance(a, bool) != isinstance(b, bool):
        return False  # YAML's `true` is not `1`
    return bool(a == b)
