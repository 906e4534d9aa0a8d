"""Verdicts from samples of runs: compare two groups, verify a result within seed noise.

Pure: metric values in, frozen results out (no I/O, no printing). The procedure:

- compare (group A vs group B, per metric): Welch's t-test and an exact (or seeded
  Monte-Carlo) permutation test of the difference of means; the metric's p-value is the larger
  of the two (both must agree, so non-normal noise cannot make a false alarm), Holm-corrected
  over the metrics compared. Where the permutation test cannot resolve the level at all (4 vs
  4 runs can give no p below 2/70), Welch's test decides alone. A single run on one side is tested as one more
  draw from the other side's distribution (prediction interval); one run on each side cannot
  be judged at all.
- verify against one recorded run: the recorded value must lie inside the new runs' 95%
  prediction interval (Holm over metrics).
- verify against a recorded group: equivalence by two one-sided tests (TOST) with the margin
  `tolerance.metrics.<name>`, or else DERIVED_MARGIN_SDS baseline standard deviations;
  a difference shown by the compare test is `not-reproduced`; neither is `inconclusive`, with
  the number of runs that would decide.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from repro.judge import stats

ALPHA = 0.05
POWER = 0.8
DERIVED_MARGIN_SDS = 2.0  # without a configured tolerance: within two seed-noise sd
MIN_NEW_RUNS = 3  # a prediction interval from 2 runs is 15 sd wide: it tells nothing

BETTER, WORSE, DIFFERENT, SAME = "better", "worse", "different", "no-detectable-difference"
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = ("statistically-reproduced", "not-reproduced",
                                            "inconclusive")
DIRECTIONS = ("higher", "lower")


def _finite(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else x


@dataclasses.dataclass(frozen=True)
class MetricComparison:
    """One metric of `compare`: both samples summarised, the tests, and the verdict."""

    name: str
    direction: str | None  # "higher" or "lower" is better; None: undirected
    n_a: int
    n_b: int
    mean_a: float
    sd_a: float
    mean_b: float
    sd_b: float
    difference: float  # mean(b) - mean(a)
    ci_low: float | None  # 95% (Welch) interval of the difference; None with one run a side
    ci_high: float | None
    p_welch: float | None
    p_permutation: float | None
    permutation_exact: bool | None
    p_value: float | None  # what the verdict uses, before the Holm correction
    p_adjusted: float | None
    prob_b_greater: float  # P(B > A) for one run of each
    prob_ci_low: float | None  # None with one run on a side: resampling it shows nothing
    prob_ci_high: float | None
    detectable_effect: float | None  # what these n could detect (power 0.8); None: nothing
    verdict: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ci"] = [self.ci_low, self.ci_high] if self.ci_low is not None else None
        d["prob_b_greater_ci"] = ([self.prob_ci_low, self.prob_ci_high]
                                  if self.prob_ci_low is not None else None)
        for k in ("ci_low", "ci_high", "prob_ci_low", "prob_ci_high"):
            del d[k]
        return {k: (_finite(v) if isinstance(v, float) else v) for k, v in d.items()}


@dataclasses.dataclass(frozen=True)
class Comparison:
    metrics: tuple[MetricComparison, ...]
    verdict: str  # overall: better, worse, different or no-detectable-difference
    alpha: float
    warnings: tuple[str, ...] = ()

    @property
    def differs(self) -> bool:
        return self.verdict != SAME

    @property
    def worse(self) -> bool:
        return any(m.verdict == WORSE for m in self.metrics)


def compare(a: Mapping[str, Sequence[float]], b: Mapping[str, Sequence[float]],
            directions: Mapping[str, str | None] | None = None, *, alpha: float = ALPHA,
            seed: int = stats.DEFAULT_SEED,
            permutation_resamples: int = stats.PERMUTATION_RESAMPLES,
            bootstrap_resamples: int = stats.BOOTSTRAP_RESAMPLES,
            full: bool = True, nonfinite_a: Mapping[str, int] | None = None,
            nonfinite_b: Mapping[str, int] | None = None) -> Comparison:
    """Compare every metric named in both `a` and `b` (name -> values of each run).

    `nonfinite_a`/`nonfinite_b`: per metric, how many more runs of that side gave nan or inf
    (left out of `a`/`b`). Where only one side has such runs the metric differs whatever the
    finite values say: a run whose loss went to nan is not seed noise.

    `directions` names which way is better for a metric ("higher"/"lower"); without one a
    difference is `different`. Metrics with no value on a side are left out. `full=False`
    (simulations) skips what cannot change a verdict: the permutation test where Welch's
    p-value is already above the level, and the bootstrap interval of P(B > A).
    """
    directions = directions or {}
    names = [n for n in a if n in b and a[n] and b[n]]
    warnings: list[str] = []
    raw: list[tuple[str, float | None, dict[str, Any]]] = []
    level = alpha / max(1, sum(1 for n in names if len(a[n]) > 1 or len(b[n]) > 1))
    for name in names:
        xs, ys = list(a[name]), list(b[name])
        raw.append((name, *_test_pair(xs, ys, seed, permutation_resamples, level, full,
                                      alpha)))
    p_values = [p for _, p, _ in raw if p is not None]
    adjusted = iter(stats.holm(p_values))
    m = max(1, len(p_values))
    results = []
    for name, p, parts in raw:
        xs, ys = list(a[name]), list(b[name])
        direction = directions.get(name)
        p_adj = next(adjusted) if p is not None else None
        prob = stats.prob_greater(xs, ys)
        # A side of one run resamples to itself: the interval would show only the other
        # side's spread, e.g. [0.00, 0.00] for 1 vs 4 runs (as `ci`, none then).
        prob_ci: tuple[float | None, float | None] = stats.bootstrap_ci(
            xs, ys, stats.prob_greater, resamples=bootstrap_resamples, seed=seed) \
            if full and len(xs) > 1 and len(ys) > 1 else (None, None)
        diff = stats.mean(ys) - stats.mean(xs)
        note = parts.get("note")
        bad_a, bad_b = (nonfinite_a or {}).get(name, 0), (nonfinite_b or {}).get(name, 0)
        if bool(bad_a) != bool(bad_b):
            verdict = DIFFERENT if direction is None else BETTER if bad_a else WORSE
            effect: float | None = None
            side, bad, n_ok = ("A", bad_a, len(xs)) if bad_a else ("B", bad_b, len(ys))
            note = (f"{bad} of {bad + n_ok} run(s) of {side} gave nan or inf "
                    f"(none of the other side's did)")
        elif p_adj is not None and p_adj < alpha:
            verdict = _directed(diff, direction)
            effect = None
        else:
            verdict = SAME
            effect, why = _detectable(xs, ys, alpha / m)
            note = note or why
        results.append(MetricComparison(
            name=name, direction=direction, n_a=len(xs), n_b=len(ys),
            mean_a=stats.mean(xs), sd_a=stats.sd(xs), mean_b=stats.mean(ys), sd_b=stats.sd(ys),
            difference=diff, ci_low=parts.get("ci_low"), ci_high=parts.get("ci_high"),
            p_welch=parts.get("p_welch"), p_permutation=parts.get("p_permutation"),
            permutation_exact=parts.get("exact"), p_value=p, p_adjusted=p_adj,
            prob_b_greater=prob, prob_ci_low=prob_ci[0], prob_ci_high=prob_ci[1],
            detectable_effect=effect, verdict=verdict, note=note))
    if names and (all(len(a[n]) == 1 for n in names) or all(len(b[n]) == 1 for n in names)):
        warnings.append("one run on a side: one sample cannot tell seed noise from a change; "
                        "record groups with `repro run --repeat N`")
    return Comparison(tuple(results), overall(r.verdict for r in results), alpha, tuple(warnings))


def _test_pair(xs: list[float], ys: list[float], seed: int, resamples: int,
               level: float, full: bool = True,
               alpha: float = ALPHA) -> tuple[float | None, dict[str, Any]]:
    """The p-value a metric's verdict uses, and the parts shown beside it. `level`: the
    smallest significance level the verdict may need (alpha over the number of metrics);
    `alpha`: the largest (Holm rejects the last metric at alpha itself)."""
    if len(xs) == 1 and len(ys) == 1:
        return None, {"note": "one run on each side: no estimate of noise"}
    if len(xs) == 1 or len(ys) == 1:
        single, group = (xs[0], ys) if len(xs) == 1 else (ys[0], xs)
        p = stats.prediction_p_value(single, group)
        return p, {"note": "one run on a side: tested as one more draw from the other side"}
    w = stats.welch(xs, ys)
    if w.se == 0.0:  # two constants: equal, or a difference no noise explains
        return w.p_value, {"p_welch": w.p_value, "ci_low": w.ci_low, "ci_high": w.ci_high,
                           "note": "no run-to-run variation on either side"}
    # The permutation test confirms Welch's where it can resolve the level; below that (too
    # few runs for any split to be rare enough) it could only ever say "no".
    resolves = stats.min_permutation_p(len(xs), len(ys)) < level
    if not full and (not resolves or w.p_value >= alpha):  # the permutation test cannot matter
        return w.p_value, {"p_welch": w.p_value, "ci_low": w.ci_low, "ci_high": w.ci_high}
    perm = stats.permutation_test(xs, ys, seed=seed, resamples=resamples)
    return max(w.p_value, perm.p_value) if resolves else w.p_value, {
        "p_welch": w.p_value, "p_permutation": perm.p_value, "exact": perm.exact,
        "ci_low": w.ci_low, "ci_high": w.ci_high}


def _directed(diff: float, direction: str | None) -> str:
    if direction == "higher":
        return BETTER if diff > 0 else WORSE
    if direction == "lower":
        return BETTER if diff < 0 else WORSE
    return DIFFERENT


def _detectable(xs: list[float], ys: list[float], alpha: float) -> tuple[float | None, str | None]:
    na, nb = len(xs), len(ys)
    if na < 2 and nb < 2:
        return None, "one run on each side: no estimate of noise"
    spread = stats.pooled_sd(xs, ys) if na >= 2 and nb >= 2 else stats.sd(xs if na >= 2 else ys)
    return stats.detectable_effect(na, nb, spread, alpha=alpha, power=POWER), None


def overall(verdicts: Any) -> str:
    found = {v for v in verdicts if v != SAME}
    if not found:
        return SAME
    if WORSE in found:
        return WORSE
    if found == {BETTER}:
        return BETTER
    return DIFFERENT


# --- verify at the statistical level ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MetricCheck:
    """One metric of `verify --level statistical`."""

    name: str
    method: str  # "prediction-interval" (one recorded run) or "equivalence" (a recorded group)
    n_recorded: int
    n_new: int
    recorded_mean: float
    recorded_sd: float
    new_mean: float | None
    new_sd: float | None
    interval: tuple[float, float] | None  # the prediction interval, or the 90% CI of the difference
    margin: float | None
    margin_source: str | None  # "tolerance" or "baseline-spread"
    p_difference: float | None
    p_adjusted: float | None
    p_equivalence: float | None
    verdict: str
    runs_needed: int | None = None  # new runs that would decide, when inconclusive
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["interval"] = list(self.interval) if self.interval else None
        return {k: (_finite(v) if isinstance(v, float) else v) for k, v in d.items()}


@dataclasses.dataclass(frozen=True)
class Verification:
    checks: tuple[MetricCheck, ...]
    verdict: str
    alpha: float

    @property
    def runs_needed(self) -> int | None:
        needed = [c.runs_needed for c in self.checks if c.verdict == INCONCLUSIVE
                  and c.runs_needed is not None]
        return max(needed) if needed else None


def _overall_verify(checks: Sequence[MetricCheck]) -> str:
    verdicts = {c.verdict for c in checks}
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    if INCONCLUSIVE in verdicts or not checks:
        return INCONCLUSIVE
    return REPRODUCED


def _nonfinite_note(bad: int, finite: int) -> str:
    return f"{bad} of {bad + finite} new run(s) gave nan or inf"


def verify_run(recorded: Mapping[str, float], new: Mapping[str, Sequence[float]], *,
               alpha: float = ALPHA, nonfinite: Mapping[str, int] | None = None) -> Verification:
    """One recorded run's metrics against N new runs: inside the 95% prediction interval?

    `nonfinite`: per metric, how many more new runs gave nan or inf (left out of `new`); a
    metric with any is not reproduced (the recorded value is finite)."""
    nonfinite = nonfinite or {}
    names = list(recorded)
    p_values = {n: stats.prediction_p_value(recorded[n], new[n]) for n in names
                if len(new.get(n, ())) >= MIN_NEW_RUNS and not nonfinite.get(n)}
    adjusted = dict(zip(p_values, stats.holm(list(p_values.values())), strict=True))
    checks = []
    for n in names:
        xs = list(new.get(n, ()))
        base: dict[str, Any] = dict(name=n, method="prediction-interval", n_recorded=1, n_new=len(xs),
                    recorded_mean=recorded[n], recorded_sd=0.0, margin=None, margin_source=None,
                    p_equivalence=None)
        if nonfinite.get(n):
            checks.append(MetricCheck(**base, new_mean=stats.mean(xs) if xs else None,
                                      new_sd=stats.sd(xs) if xs else None, interval=None,
                                      p_difference=None, p_adjusted=None, verdict=NOT_REPRODUCED,
                                      note=_nonfinite_note(nonfinite[n], len(xs))))
            continue
        if not xs:
            checks.append(MetricCheck(**base, new_mean=None, new_sd=None, interval=None,
                                      p_difference=None, p_adjusted=None, verdict=NOT_REPRODUCED,
                                      note="the new runs did not record this metric"))
            continue
        if n not in p_values:
            checks.append(MetricCheck(**base, new_mean=stats.mean(xs), new_sd=stats.sd(xs),
                                      interval=None, p_difference=None, p_adjusted=None,
                                      verdict=INCONCLUSIVE, runs_needed=MIN_NEW_RUNS,
                                      note=f"{len(xs)} new run(s) cannot bound the noise"))
            continue
        interval = stats.prediction_interval(xs, 1.0 - alpha)
        verdict = NOT_REPRODUCED if adjusted[n] < alpha else REPRODUCED
        checks.append(MetricCheck(**base, new_mean=stats.mean(xs), new_sd=stats.sd(xs),
                                  interval=interval, p_difference=p_values[n],
                                  p_adjusted=adjusted[n], verdict=verdict))
    return Verification(tuple(checks), _overall_verify(checks), alpha)


def verify_group(recorded: Mapping[str, Sequence[float]], new: Mapping[str, Sequence[float]],
                 margins: Mapping[str, float] | None = None, *, alpha: float = ALPHA,
                 seed: int = stats.DEFAULT_SEED,
                 permutation_resamples: int = stats.PERMUTATION_RESAMPLES,
                 full: bool = True, nonfinite: Mapping[str, int] | None = None,
                 recorded_nonfinite: Mapping[str, int] | None = None) -> Verification:
    """A recorded group's metrics against N new runs: equivalent within the margin (TOST)?

    Every metric must be shown equivalent at alpha (an intersection-union test needs no
    correction); a difference (the compare test, Holm-corrected) is `not-reproduced`.
    `nonfinite`/`recorded_nonfinite`: per metric, how many more new/recorded runs gave nan or
    inf (left out of `new`/`recorded`); new ones where no recorded run had any do not reproduce.
    """
    margins = margins or {}
    diverged = {n: k for n, k in (nonfinite or {}).items()
                if k and not (recorded_nonfinite or {}).get(n)}
    names = [n for n in recorded if len(recorded[n]) >= 2]
    testable = [n for n in names if len(new.get(n, ())) >= 2 and n not in diverged]
    level = alpha / max(1, len(testable))
    p_diff = {n: _test_pair(list(recorded[n]), list(new[n]), seed, permutation_resamples,
                            level, full, alpha)[0] for n in testable}
    adjusted = dict(zip(p_diff, stats.holm([1.0 if p is None else p for p in p_diff.values()]), strict=True))
    checks = []
    for n in (n for n in recorded if recorded[n]):
        base_xs = list(recorded[n])
        xs = list(new.get(n, ()))
        sd_a = stats.sd(base_xs)
        if n in margins:
            margin, source = margins[n], "tolerance"
        else:
            margin, source = DERIVED_MARGIN_SDS * sd_a, "baseline-spread"
        common: dict[str, Any] = dict(name=n, method="equivalence", n_recorded=len(base_xs), n_new=len(xs),
                      recorded_mean=stats.mean(base_xs), recorded_sd=sd_a, margin=margin,
                      margin_source=source)
        if n in diverged:
            checks.append(MetricCheck(**common, new_mean=stats.mean(xs) if xs else None,
                                      new_sd=stats.sd(xs) if xs else None, interval=None,
                                      p_difference=None, p_adjusted=None, p_equivalence=None,
                                      verdict=NOT_REPRODUCED,
                                      note=_nonfinite_note(diverged[n], len(xs))))
            continue
        if not xs:
            checks.append(MetricCheck(**common, new_mean=None, new_sd=None, interval=None,
                                      p_difference=None, p_adjusted=None, p_equivalence=None,
                                      verdict=NOT_REPRODUCED,
                                      note="the new runs did not record this metric"))
            continue
        if n not in p_diff:
            why = ("the recorded group has one run of this metric" if len(base_xs) < 2
                   else f"{len(xs)} new run(s) cannot bound the noise")
            checks.append(MetricCheck(**common, new_mean=stats.mean(xs), new_sd=stats.sd(xs),
                                      interval=None, p_difference=None, p_adjusted=None,
                                      p_equivalence=None, verdict=INCONCLUSIVE,
                                      runs_needed=MIN_NEW_RUNS if len(base_xs) >= 2 else None,
                                      note=why))
            continue
        w = stats.welch(base_xs, xs, confidence=1.0 - 2 * alpha)
        p_eq = stats.tost(base_xs, xs, margin)
        sd_b = stats.sd(xs)
        runs_needed = None
        note: str | None = None
        if p_eq < alpha:
            verdict = REPRODUCED
        elif adjusted[n] < alpha:
            verdict = NOT_REPRODUCED
        else:
            verdict = INCONCLUSIVE
            if abs(w.difference) >= margin:
                runs_needed = stats.runs_for_difference(sd_a, len(base_xs), sd_b, w.difference,
                                                        alpha=alpha, power=POWER)
            else:
                runs_needed = stats.runs_for_equivalence(sd_a, len(base_xs), sd_b,
                                                         w.difference, margin, alpha=alpha,
                                                         power=POWER)
            if runs_needed is None:
                note = (f"no number of new runs decides against a recorded group of "
                        f"{len(base_xs)}: record a larger baseline (repro run --repeat N)")
            else:
                runs_needed = max(runs_needed, len(xs) + 1)
        checks.append(MetricCheck(**common, new_mean=stats.mean(xs), new_sd=sd_b,
                                  interval=(w.ci_low, w.ci_high), p_difference=p_diff[n],
                                  p_adjusted=adjusted[n], p_equivalence=p_eq, verdict=verdict,
                                  runs_needed=runs_needed, note=note))
    return Verification(tuple(checks), _overall_verify(checks), alpha)
