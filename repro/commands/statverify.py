"""`repro verify RUN --level statistical`: does the recorded result reproduce within seed noise?

Replays the recorded recipe N times with fresh seeds (derived from one new group seed; the
replays form a group of their own, marked as verify's) and judges with judge.statistical:
against one recorded run, its value must lie in the new runs' prediction interval; against a
recorded group, the means must be equivalent within a margin (TOST). Never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from repro import errors, report
from repro.child import seeding
from repro.commands import compare, history, replay
from repro.commands import group as groupflow
from repro.judge import statistical
from repro.record import config, manifest, store

DEFAULT_RUNS = 5


@dataclasses.dataclass(frozen=True)
class Report:
    run: str  # the recorded run, or group:<id>
    baseline_runs: tuple[str, ...]
    verdict: str
    verification: statistical.Verification
    runs: tuple[str, ...]  # the fresh runs verify recorded
    group: str  # their group id
    failed: tuple[str, ...]  # fresh runs that did not succeed
    duration_s: float
    level: str = "statistical"

    @property
    def reproduced(self) -> bool:
        return self.verdict == statistical.REPRODUCED

    @property
    def checks(self) -> tuple[statistical.MetricCheck, ...]:
        return self.verification.checks

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "repro/verify/v1", "level": self.level, "run": self.run,
                "baseline_runs": list(self.baseline_runs), "verdict": self.verdict,
                "runs_needed": self.verification.runs_needed,
                "checks": [{"kind": "metric", "status": _status(c.verdict), **c.to_dict()}
                           for c in self.verification.checks],
                "runs": list(self.runs), "group": self.group, "failed": list(self.failed),
                "alpha": self.verification.alpha, "duration_s": round(self.duration_s, 3)}


def _status(verdict: str) -> str:
    return {statistical.REPRODUCED: "same", statistical.NOT_REPRODUCED: "different"}.get(
        verdict, "inconclusive")


def verify(runs: store.Store, ref: str, *, n: int = DEFAULT_RUNS, at: str | None = None,
           yes: bool = False, force: bool = False, strict_env: bool = False,
           margins: Mapping[str, float] | None = None, reporter: report.Reporter,
           confirm: Callable[[str], bool] | None = None) -> Report:
    """Run the recipe of `ref` (a run or a group) `n` times with fresh seeds and judge.

    `margins`: equivalence margins per metric (absolute); default the configuration's
    `tolerance.metrics`."""
    if n < 2:
        raise errors.UsageError("--level statistical needs --runs N with N >= 2 (default 5)",
                                hint="e.g. repro verify RUN --level statistical --runs 5")
    started = time.monotonic()
    members = store.resolve_set(runs, ref)
    baseline = [(p, m) for p, m in members if m.run.status == "succeeded"]
    if not baseline:
        raise errors.ReproError(f"{ref}: no run of it succeeded; there is no result to verify",
                                hint="verify a run that finished")
    recorded: dict[str, list[float]] = {}
    for _, m in baseline:
        for k, x in compare.final_metrics(m).items():
            recorded.setdefault(k, []).append(x)
    if not recorded:
        raise errors.ReproError(f"{ref} recorded no numeric metrics: there is nothing to judge "
                                "statistically",
                                hint="record metrics with --metrics FILE (or metric_patterns)")
    recipe_path, recipe = baseline[0]
    loaded = history.Loaded(recipe, recipe_path.parent)
    group_seed = seeding.new_seed()
    gid = groupflow.new_group_id()
    label = f"verify {ref}"
    new_ids: list[str] = []
    failed: list[str] = []
    fresh: dict[str, list[float]] = {}
    fresh_ok: list[manifest.Manifest] = []
    for i in range(n):
        group = manifest.Group(id=gid, index=i, size=n, seed=group_seed, name=label)
        opts = replay.Options(at=at, force=force, strict_env=strict_env, yes=yes,
                              name=f"{label} ({i + 1}/{n})", started_by="verify",
                              stdout_to_stderr=True, seed=groupflow.member_seed(group_seed, i),
                              group=group)
        with contextlib.ExitStack() as stack:
            done = stack.enter_context(replay.session(runs, loaded, opts, reporter, confirm))
            outcome = done.outcome
        yes = True  # consent once, not per replay
        new_ids.append(outcome.run_id)
        if outcome.manifest.run.status != "succeeded":
            failed.append(outcome.run_id)
            continue
        fresh_ok.append(outcome.manifest)
        for k, x in compare.final_metrics(outcome.manifest).items():
            fresh.setdefault(k, []).append(x)
    if failed:
        reporter.warn(f"{len(failed)} of {n} fresh run(s) failed: {', '.join(failed[:3])}",
                      hint="a run that fails does not reproduce; see `repro show RUN`")
    nonfinite = compare.count_nonfinite(fresh_ok)
    if len(baseline) == 1:
        verification = statistical.verify_run({k: v[0] for k, v in recorded.items()}, fresh,
                                              nonfinite=nonfinite)
    else:
        verification = statistical.verify_group(
            recorded, fresh, _margins(runs) if margins is None else margins,
            nonfinite=nonfinite,
            recorded_nonfinite=compare.count_nonfinite([m for _, m in baseline]))
    verdict = verification.verdict
    if failed and verdict == statistical.REPRODUCED:
        verdict = statistical.NOT_REPRODUCED
    first = baseline[0][1]
    name = (f"group:{first.group.id}" if first.group is not None and len(members) > 1
            else first.run_id)
    return Report(name, tuple(m.run_id for _, m in baseline), verdict, verification,
                  tuple(new_ids), gid, tuple(failed), time.monotonic() - started)


def _margins(runs: store.Store) -> Mapping[str, float]:
    """Equivalence margins: the configuration's absolute per-metric tolerances."""
    tol = config.load(runs.root).tolerance
    return dict(tol.per_metric) if tol is not None else {}


def junit(rep: Report) -> str:
    """A JUnit XML report: one test case per metric; not-reproduced and inconclusive fail."""
    from xml.sax.saxutils import escape, quoteattr

    cases = []
    failures = 0
    for c in rep.checks:
        body = ""
        if c.verdict != statistical.REPRODUCED:
            failures += 1
            detail = _detail(c)
            body = (f"<failure message={quoteattr(c.verdict)} type={quoteattr(c.verdict)}>"
                    f"{escape(detail)}</failure>")
        cases.append(f'    <testcase classname="repro.verify.statistical" '
                     f"name={quoteattr(c.name)}>{body}</testcase>")
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            f"<testsuites>\n  <testsuite name={quoteattr('repro verify ' + rep.run)} "
            f'tests="{len(rep.checks)}" failures="{failures}" errors="0" '
            f'time="{rep.duration_s:.3f}">\n' + "\n".join(cases)
            + "\n  </testsuite>\n</testsuites>\n")


def _detail(c: statistical.MetricCheck) -> str:
    parts = [f"recorded {c.recorded_mean:.6g}"
             + (f" ± {c.recorded_sd:.3g} (n={c.n_recorded})" if c.n_recorded > 1 else "")]
    if c.new_mean is not None:
        parts.append(f"new {c.new_mean:.6g} ± {c.new_sd or 0:.3g} (n={c.n_new})")
    if c.interval is not None:
        what = "95% prediction interval" if c.method == "prediction-interval" \
            else "90% CI of the difference"
        parts.append(f"{what} [{c.interval[0]:.6g}, {c.interval[1]:.6g}]")
    if c.margin is not None:
        parts.append(f"margin ±{c.margin:.3g} ({c.margin_source})")
    if c.runs_needed is not None:
        parts.append(f"about {c.runs_needed} new runs would decide")
    if c.note:
        parts.append(c.note)
    return "; ".join(parts)


detail = _detail
