"""`repro compare A B`: is B's result a real change from A's, or seed noise?

A and B are groups (`group:<id>`, a group's name) or single runs. Loads each side's final
metrics (and series, for the curves) and hands them to judge.statistical. Never prints.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors, report
from repro.judge import statistical
from repro.record import manifest, store

SCHEMA = "repro/compare/v1"


@dataclasses.dataclass(frozen=True)
class Side:
    ref: str
    run_ids: tuple[str, ...]  # the runs whose metrics count (succeeded)
    group: str | None  # the group id, when the side is a group
    left_out: tuple[str, ...]  # members that did not succeed
    values: Mapping[str, tuple[float, ...]]  # metric -> one value per run
    series: Mapping[str, tuple[tuple[float, ...], ...]]  # metric -> one curve per run
    nonfinite: Mapping[str, int] = dataclasses.field(default_factory=dict)  # runs with nan/inf

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "group": self.group, "runs": list(self.run_ids),
                "left_out": list(self.left_out)}


@dataclasses.dataclass(frozen=True)
class Report:
    a: Side
    b: Side
    result: statistical.Comparison
    fail_on: str  # "difference" or "worse"

    @property
    def verdict(self) -> str:
        return self.result.verdict

    @property
    def failing(self) -> bool:
        return self.result.worse if self.fail_on == "worse" else self.result.differs

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "a": self.a.to_dict(), "b": self.b.to_dict(),
                "verdict": self.result.verdict, "alpha": self.result.alpha,
                "fail_on": self.fail_on,
                "metrics": [m.to_dict() for m in self.result.metrics],
                "warnings": list(self.result.warnings)}


def parse_metric(spec: str) -> tuple[str, str | None]:
    """`loss:lower` -> ("loss", "lower"); `acc` -> ("acc", None)."""
    name, sep, direction = spec.rpartition(":")
    if not sep or direction not in statistical.DIRECTIONS:
        if sep and direction and name:
            raise errors.UsageError(f"--metric {spec!r}: the direction must be higher or lower",
                                    hint="e.g. --metric accuracy:higher --metric loss:lower")
        return spec, None
    if not name:
        raise errors.UsageError(f"--metric {spec!r} names no metric",
                                hint="e.g. --metric loss:lower")
    return name, direction


def numeric(value: Any) -> float | None:
    """A metric value as a float, or None (flags, strings, NaN and infinities do not count)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def final_metrics(m: manifest.Manifest) -> dict[str, float]:
    out = {}
    for k, v in m.metrics.final.items():
        x = numeric(v)
        if x is not None:
            out[str(k)] = x
    return out


def nonfinite_metrics(m: manifest.Manifest) -> list[str]:
    """The final metrics that are nan or inf (a diverged run), left out by final_metrics."""
    return [str(k) for k, v in m.metrics.final.items()
            if isinstance(v, float) and not math.isfinite(v)]


def count_nonfinite(ms: Sequence[manifest.Manifest]) -> dict[str, int]:
    """Per metric, how many of `ms` gave nan or inf."""
    counts: dict[str, int] = {}
    for m in ms:
        for k in nonfinite_metrics(m):
            counts[k] = counts.get(k, 0) + 1
    return counts


def load_side(runs: store.Store, ref: str, *, series: bool = True) -> Side:
    members = store.resolve_set(runs, ref)
    ok = [(p, m) for p, m in members if m.run.status == "succeeded"]
    left_out = tuple(m.run_id for _, m in members if m.run.status != "succeeded")
    if not ok:
        raise errors.ReproError(f"{ref}: none of its {len(members)} run(s) succeeded",
                                hint="compare runs that finished: see `repro runs --expand`")
    values: dict[str, list[float]] = {}
    for _, m in ok:
        for k, x in final_metrics(m).items():
            values.setdefault(k, []).append(x)
    curves: dict[str, list[tuple[float, ...]]] = {}
    if series:
        for path, m in ok:
            for k, ys in _series(m, path.parent).items():
                curves.setdefault(k, []).append(tuple(ys))
    first = members[0][1].group
    group = first.id if first is not None and _is_group_ref(ref, members) else None
    return Side(ref, tuple(m.run_id for _, m in ok), group, left_out,
                {k: tuple(v) for k, v in values.items()},
                {k: tuple(v) for k, v in curves.items()},
                count_nonfinite([m for _, m in ok]))


def _all_diverged(side: Side, name: str) -> errors.ReproError:
    return errors.ReproError(f"every run of {side.ref} gave nan or inf for {name!r}: they "
                             "diverged, there is nothing to compare",
                             hint="see `repro show RUN`; name the metrics to compare with "
                                  "--metric")


def _is_group_ref(ref: str, members: Sequence[tuple[Path, manifest.Manifest]]) -> bool:
    return ref.startswith(store.GROUP_PREFIX) or len(members) > 1


def _series(m: manifest.Manifest, run_dir: Path) -> dict[str, list[float]]:
    from repro.capture import metrics

    name = m.metrics.series
    if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
        return {}
    try:
        return metrics.series_values(run_dir / name)
    except errors.ReproError:
        return {}


def compare_refs(runs: store.Store, ref_a: str, ref_b: str, metric_specs: Sequence[str] = (),
                 *, fail_on: str = "difference",
                 reporter: report.Reporter | None = None) -> Report:
    """Compare the runs of `ref_a` and `ref_b`, metric by metric (all they share, or those
    named in `metric_specs`, `NAME[:higher|lower]`)."""
    if fail_on not in ("difference", "worse"):
        raise errors.UsageError(f"--fail-on {fail_on!r}: use difference or worse")
    specs = [parse_metric(s) for s in metric_specs]
    a, b = load_side(runs, ref_a), load_side(runs, ref_b)
    for side in (a, b):
        if side.left_out and reporter is not None:
            reporter.warn(f"{side.ref}: left out {len(side.left_out)} run(s) that did not "
                          f"succeed: {', '.join(side.left_out[:3])}",
                          hint="a failed member fails its group: see `repro runs --expand`")
    if specs:
        names = [n for n, _ in specs]
        for n in names:
            for side in (a, b):
                if n not in side.values and n in side.nonfinite:
                    raise _all_diverged(side, n)
                if n not in side.values:
                    known = ", ".join(sorted(side.values)[:10]) or "none"
                    raise errors.UsageError(f"{side.ref} recorded no numeric metric {n!r}",
                                            hint=f"its metrics: {known}")
    else:
        for side, other in ((a, b), (b, a)):
            for n in other.values:  # a metric the other side has, that every run here lost
                if n not in side.values and n in side.nonfinite:
                    raise _all_diverged(side, n)
        names = [n for n in a.values if n in b.values]
        if not names:
            raise errors.ReproError(f"{ref_a} and {ref_b} share no numeric metric",
                                    hint="record metrics with --metrics FILE, or name them "
                                         "with --metric")
    directions = {n: d for n, d in specs}
    result = statistical.compare({n: a.values[n] for n in names},
                                 {n: b.values[n] for n in names}, directions,
                                 nonfinite_a=a.nonfinite, nonfinite_b=b.nonfinite)
    if fail_on == "worse" and not any(d for d in directions.values()):
        raise errors.UsageError("--fail-on worse needs a direction for at least one metric",
                                hint="e.g. --metric loss:lower --fail-on worse")
    return Report(a, b, result, fail_on)
