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
    # metric -> the values that are no number (strings, bools; nan/inf count in nonfinite)
    unusable: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    self_seeded: str | None = None  # the seed calls every run made itself, identically
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
    warnings: tuple[str, ...] = ()  # about the samples (values left out), before the result's

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
                "warnings": [*self.warnings, *self.result.warnings]}


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


def load_side(runs: store.Store, ref: str, *, series: bool = True,
              label: str | None = None) -> Side:
    """The runs of `ref`; `label` is how to name it (a `REMOTE:ref` fetched to a path)."""
    members = store.resolve_set(runs, ref)
    ok = [(p, m) for p, m in members if m.run.status == "succeeded"]
    left_out = tuple(m.run_id for _, m in members if m.run.status != "succeeded")
    if not ok:
        raise errors.ReproError(f"{label or ref}: none of its {len(members)} run(s) succeeded",
                                hint="compare runs that finished: see `repro runs --expand`")
    values: dict[str, list[float]] = {}
    unusable: dict[str, list[str]] = {}
    for _, m in ok:
        for k, v in m.metrics.final.items():
            x = numeric(v)
            if x is not None:
                values.setdefault(str(k), []).append(x)
            elif not isinstance(v, float):  # nan and inf are counted apart (nonfinite)
                unusable.setdefault(str(k), []).append(_shown(v))
    curves: dict[str, list[tuple[float, ...]]] = {}
    if series:
        for path, m in ok:
            for k, ys in _series(m, path.parent).items():
                curves.setdefault(k, []).append(tuple(ys))
    first = members[0][1].group
    group = first.id if first is not None and _is_group_ref(ref, members) else None
    seeded = self_seeded([m for _, m in ok])
    return Side(label or ref, tuple(m.run_id for _, m in ok), group, left_out,
                {k: tuple(v) for k, v in values.items()},
                {k: tuple(v) for k, v in curves.items()},
                {k: tuple(v) for k, v in unusable.items()}, seeded,
                count_nonfinite([m for _, m in ok]))


def self_seeded(ms: Sequence[manifest.Manifest]) -> str | None:
    """The seeds every one of these runs set itself, identically (`torch.manual_seed(1111)`),
    when their metrics came out identical too (else None). Such runs share one seed whatever
    repro injected: a group of them measures no seed noise. (A script that fixes one seed,
    say its data split's, and lets repro's seed the rest gives metrics that vary: not this.)"""
    if len(ms) < 2:
        return None
    finals = [final_metrics(m) for m in ms]
    if any(f != finals[0] for f in finals):
        return None
    found: list[tuple[tuple[str, str], ...]] = []
    for m in ms:
        hook = m.determinism.hook
        calls = tuple(sorted({(str(s.get("call")), str(s.get("value")))
                              for s in (hook.script_seeds if hook else ())
                              if isinstance(s, Mapping)}))
        if not calls or (found and calls != found[0]):
            return None
        found.append(calls)
    return ", ".join(f"{call}({value})" for call, value in found[0][:3])


SELF_SEEDED_HINT = ("let the script take repro's seed, e.g. "
                    "torch.manual_seed(int(os.environ['REPRO_SEED'])), or drop its own seeding "
                    "(repro seeds random, numpy and torch)")


def self_seeded_warning(what: str, n: int, calls: str) -> str:
    return (f"{what}: all {n} runs seeded themselves with {calls}: they share that one seed, "
            "whatever seed repro gave them, so they measure no seed noise")


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 20 else text[:19] + "…"


def _kinds(values: Sequence[str]) -> str:
    """`nan in 2 runs, 'high' in 1` (the distinct values, most frequent first)."""
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    parts = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{v} in {c} run{'s' if c != 1 else ''}" for v, c in parts)


def sample_warnings(a: Side, b: Side, names: Sequence[str], named: bool) -> list[str]:
    """What the comparison leaves out, said out loud: runs whose value of a compared metric is
    not a number (a string; nan and inf are the verdict's business), and, comparing every
    shared metric, the metrics only one side has as numbers."""
    out = []
    for side, label in ((a, "A"), (b, "B")):
        if side.self_seeded:
            out.append(self_seeded_warning(f"{label} ({side.ref})", len(side.run_ids),
                                           side.self_seeded))
        for n in names:
            bad = side.unusable.get(n)
            if bad:
                total = len(bad) + len(side.values.get(n, ()))
                out.append(f"{label} ({side.ref}): {n} is not a number in {len(bad)} of "
                           f"{total} runs ({_kinds(bad)}); those runs are left out of {n}")
    if not named:
        known = {*a.values, *a.unusable, *b.values, *b.unusable}
        for n in sorted(known - set(names)):
            missing = [(label, side) for side, label in ((a, "A"), (b, "B"))
                       if n not in side.values]
            why = "; ".join(f"{label} ({side.ref}) has "
                            + (f"no numeric value ({_kinds(side.unusable[n])})"
                               if n in side.unusable else "no such metric")
                            for label, side in missing)
            if any(n in side.values for side in (a, b)):
                out.append(f"{n} is not compared: {why}")
    return out


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
                 reporter: report.Reporter | None = None,
                 labels: tuple[str, str] | None = None) -> Report:
    """Compare the runs of `ref_a` and `ref_b`, metric by metric (all they share, or those
    named in `metric_specs`, `NAME[:higher|lower]`). `labels`: how to name the two sides,
    when the refs are paths a `REMOTE:ref` was fetched to."""
    if fail_on not in ("difference", "worse"):
        raise errors.UsageError(f"--fail-on {fail_on!r}: use difference or worse")
    specs = [parse_metric(s) for s in metric_specs]
    said: dict[str, str | None] = {}
    for n, d in specs:
        if n in said and said[n] != d:
            raise errors.UsageError(f"--metric {n} is given twice, as {n}:{said[n] or '-'} and "
                                    f"{n}:{d or '-'}",
                                    hint="say once which way is better: higher or lower")
        said[n] = d
    label_a, label_b = labels or (None, None)
    a, b = load_side(runs, ref_a, label=label_a), load_side(runs, ref_b, label=label_b)
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
                    if n in side.unusable:
                        raise errors.ReproError(
                            f"{side.ref} recorded {n!r} in no run as a number "
                            f"({_kinds(side.unusable[n])})",
                            hint=f"its numeric metrics: {known}")
                    raise errors.UsageError(f"{side.ref} recorded no numeric metric {n!r}",
                                            hint=f"its metrics: {known}")
    else:
        for side, other in ((a, b), (b, a)):
            for n in other.values:  # a metric the other side has, that every run here lost
                if n not in side.values and n in side.nonfinite:
                    raise _all_diverged(side, n)
        names = [n for n in a.values if n in b.values]
        if not names:
            raise errors.ReproError(f"{a.ref} and {b.ref} share no numeric metric",
                                    hint="record metrics with --metrics FILE, or name them "
                                         "with --metric")
    warnings = sample_warnings(a, b, names, bool(specs))
    if set(a.run_ids) == set(b.run_ids):
        warnings.insert(0, f"{a.ref} and {b.ref} are the same {len(a.run_ids)} run(s): "
                           "there is nothing to compare")
    if reporter is not None:
        for w in warnings:
            reporter.warn(w, hint=SELF_SEEDED_HINT if "seeded themselves" in w else None)
    directions = {n: d for n, d in specs}
    result = statistical.compare({n: a.values[n] for n in names},
                                 {n: b.values[n] for n in names}, directions,
                                 nonfinite_a=a.nonfinite, nonfinite_b=b.nonfinite)
    if fail_on == "worse" and not any(d for d in directions.values()):
        raise errors.UsageError("--fail-on worse needs a direction for at least one metric",
                                hint="e.g. --metric loss:lower --fail-on worse")
    return Report(a, b, result, fail_on, tuple(warnings))
