"""`repro verify`: replay a run (or run a command N times) and judge whether it reproduces.

Orchestrates replays and hands pairs of runs to `judge`; the verdict levels are design §4's.
Never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from repro import errors, report
from repro.commands import history, replay, runresults
from repro.commands import run as runflow
from repro.judge import checks as judge
from repro.judge import compare
from repro.record import manifest, store

VARY = ("threads", "hashseed", "cwd", "tz", "locale")


@dataclasses.dataclass(frozen=True)
class Options:
    at: str | None = None
    runs: int = 1  # fresh executions
    tolerance: compare.Tolerance = dataclasses.field(default_factory=compare.Tolerance)
    vary: tuple[str, ...] = ()
    yes: bool = False
    force: bool = False
    strict_env: bool = False
    keep: bool = False
    single_node: bool = False  # replay a multi-node run's ranks on this machine


@dataclasses.dataclass(frozen=True)
class Report:
    run: str  # the run judged against (the recorded baseline, or the first fresh run)
    verdict: str
    checks: tuple[judge.Check, ...]
    runs: tuple[str, ...]  # ids of the runs verify recorded
    conditions: Mapping[str, str]  # --vary condition -> verdict against a plain replay
    duration_s: float
    # What the reporter was told on the way (the Python API's default reporter keeps them):
    # (message, hint) pairs, such as a replay under another interpreter. Not in the JSON.
    warnings: tuple[tuple[str, str | None], ...] = ()

    @property
    def reproduced(self) -> bool:
        return self.verdict != "not-reproduced"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "repro/verify/v1", "run": self.run, "verdict": self.verdict,
                "checks": [c.to_dict() for c in self.checks], "runs": list(self.runs),
                "conditions": dict(self.conditions), "duration_s": round(self.duration_s, 3)}


def parse_vary(spec: str | None) -> tuple[str, ...]:
    if not spec:
        return ()
    names = tuple(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip()))
    unknown = [n for n in names if n not in VARY]
    if unknown:
        raise errors.UsageError(f"unknown --vary condition {unknown[0]!r}",
                                hint=f"conditions: {','.join(VARY)}")
    return names


@dataclasses.dataclass(frozen=True)
class _Side:
    """One run to judge, and where its output files can be looked at."""

    loaded: history.Loaded
    files_root: Path | None  # where its outputs live (the checkout, or a replay's worktree)
    unrecorded: tuple[str, ...] = ()  # files a failed replay missed that the checkout has
    # Where the run's command ran (the checkout, or a replay's worktree): paths under it that a
    # checkpoint embeds name the same place on both sides. None: not known.
    checkout_root: Path | None = None
    # Produced in this clone: its checkpoints may be unpickled in full (see judge.Structural).
    trusted: bool = False

    @property
    def python(self) -> str:
        py = self.loaded.manifest.environment.python
        return (py.executable if py else None) or "python3"


def judge_pair(expected: _Side, actual: _Side, tol: compare.Tolerance,
               label: str | None = None) -> list[judge.Check]:
    roots = tuple(dict.fromkeys(r for r in (expected.checkout_root, actual.checkout_root)
                                if r is not None))
    checks = judge.compare_runs(
        expected.loaded.manifest, actual.loaded.manifest, expected_root=expected.files_root,
        actual_root=actual.files_root or actual.loaded.run_dir,
        expected_listings=expected.loaded.listings(), actual_listings=actual.loaded.listings(),
        python=actual.python, tol=tol,
        structural=judge.Structural(roots, expected.trusted and actual.trusted))
    exit_check = checks[0]
    if not exit_check.passed and actual.unrecorded:
        message, hint = replay.unrecorded_message(actual.unrecorded[0])
        checks[0] = dataclasses.replace(exit_check, detail=f"{exit_check.detail}; {message} "
                                                           f"(hint: {hint})")
    elif not exit_check.passed and _other_interpreter(expected.python, actual.python):
        # `python` found on another PATH (a notebook, CI without the venv): say it here, where
        # the verdict is read, not only in a warning before the command's own output.
        checks[0] = dataclasses.replace(exit_check, detail=(
            f"{exit_check.detail}; the replay ran {actual.python}, the run "
            f"{expected.python} (hint: activate the run's environment)"))
    checks = [_resumed(c, expected.loaded.manifest.outputs) for c in checks]
    if label:
        checks = [dataclasses.replace(c, name=f"{label}: {c.name}") for c in checks]
    return checks


def _other_interpreter(recorded: str | None, replayed: str | None) -> bool:
    """The replay ran another interpreter than the run's, which exists here: a PATH that finds
    another `python`. (A run recorded on another machine names a path this one may not have:
    that is no sign of a wrong environment.)"""
    if not recorded or not replayed or not os.path.exists(recorded):
        return False
    # Not resolved: a venv's `python` is a link to the base interpreter, in another prefix.
    return os.path.abspath(recorded) != os.path.abspath(replayed)


def _resumed(check: judge.Check, outputs: Mapping[str, manifest.FileEntry]) -> judge.Check:
    """A differing output that was there before the recorded run started and that the run
    rewrote (`replaced`): the likeliest cause is a script that resumed from it (a checkpoint an
    earlier run left), which the replay, in a fresh worktree, could not do. Said in the detail."""
    if check.passed or check.kind != "output":
        return check
    for path, entry in outputs.items():
        if not entry.replaced or not (check.name == path or check.name.startswith(f"{path}/")):
            continue
        what = ("it was there before the recorded run started and the run rewrote it"
                if entry.replaced is True else
                f"{path} held {entry.replaced} file(s) from before the recorded run that it "
                "rewrote (which ones is not recorded); if this is one of them")
        return dataclasses.replace(check, detail=(
            f"{check.detail}; {what}: if the script resumed from it (an earlier run's "
            "checkpoint), the replay, which starts without it, cannot match (hint: delete it "
            "before a run that should start fresh)"))
    return check


def verify_run(runs: store.Store, ref: str, opts: Options, reporter: report.Reporter,
               confirm: Callable[[str], bool] | None) -> Report:
    """Replay RUN (opts.runs times, plus one per --vary condition) and judge against it."""
    started = time.monotonic()
    baseline = history.load(runs, ref)
    _require_results(baseline)
    kept = baseline.run_dir / runresults.KEPT
    # Outputs kept in the run directory still are the recorded files; the checkout's copies
    # may have been overwritten since (judge checks their hashes either way).
    # The recorded run ran in the checkout, or (a run a replay recorded) in a worktree that is
    # gone, which its manifest names: paths under it that checkpoints embed are the checkout.
    ran_in = baseline.manifest.run.worktree
    base = _Side(baseline, kept if kept.is_dir() else runs.root,
                 checkout_root=Path(ran_in) if ran_in and Path(ran_in).is_absolute()
                 else runs.root)
    checks: list[judge.Check] = []
    new_ids: list[str] = []
    conditions: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        fresh: list[_Side] = []
        for i in range(max(1, opts.runs)):
            fresh.append(_replay(stack, runs, baseline, opts, reporter, confirm, {}, None,
                                 name=f"verify {i + 1}", new_ids=new_ids))
            opts = dataclasses.replace(opts, yes=True)  # consent once, not per replay
        # The recorded files are trusted when the replays say the manifest is this clone's.
        base = dataclasses.replace(base, trusted=fresh[0].trusted,
                                   checkout_root=base.checkout_root if fresh[0].trusted
                                   else runs.root)  # a foreign manifest's worktree: not taken
        label = "replay" if len(fresh) == 1 else "run 1"
        checks += judge_pair(base, fresh[0], opts.tolerance,
                             None if len(fresh) == 1 and not opts.vary else label)
        for i, side in enumerate(fresh[1:], start=2):
            checks += judge_pair(fresh[0], side, opts.tolerance, f"run {i} vs run 1")
        for cond in opts.vary:
            extra, threads, workdir = _varied(cond, baseline)
            side = _replay(stack, runs, baseline, opts, reporter, confirm, extra, threads,
                           name=f"verify --vary {cond}", new_ids=new_ids, workdir=workdir)
            found = judge_pair(fresh[0], side, opts.tolerance, f"vary {cond}")
            conditions[cond] = judge.verdict(found)
            checks += found
    return Report(baseline.manifest.run_id, judge.verdict(checks), tuple(checks),
                  tuple(new_ids), conditions, time.monotonic() - started)


def verify_command(request: runflow.RunRequest, opts: Options,
                   reporter: report.Reporter) -> Report:
    """`verify --runs N -- CMD`: run CMD once as a recorded run, then N-1 replays of it."""
    if opts.runs < 2 and not opts.vary:
        raise errors.UsageError("verifying a command needs --runs N (N >= 2) or --vary",
                                hint="e.g. repro verify --runs 2 -- python train.py")
    _require_declared_results(request)
    started = time.monotonic()
    first = runflow.execute(dataclasses.replace(request, stdout_to_stderr=True), reporter)
    if first.manifest.run.status == "interrupted":
        raise KeyboardInterrupt  # Ctrl-C: exit 130 and no verdict
    runs = request.store or store.open_here(request.cwd)
    rest = dataclasses.replace(opts, runs=max(1, opts.runs - 1), yes=True)
    report = verify_run(runs, first.run_id, rest, reporter, None)
    return dataclasses.replace(report, runs=(first.run_id, *report.runs),
                               duration_s=time.monotonic() - started)


def _require_declared_results(request: runflow.RunRequest) -> None:
    """Before running anything: a command with no outputs, metrics file or metric pattern
    declared (flags or configuration) could only be judged on its exit code."""
    from repro.record import config

    if request.outputs or request.metrics:
        return
    runs = request.store or store.open_here(request.cwd)
    cfg = config.load(request.root or runs.root)
    if cfg.outputs or cfg.metrics or cfg.metric_patterns:
        return
    raise errors.UsageError(
        "nothing to compare: the command declares no outputs and no metrics",
        hint="add --output PATH / --metrics FILE (or `outputs`, `metrics`, `metric_patterns` in "
             "repro.yaml), e.g. repro verify --runs 2 --output out/ -- python train.py")


def _require_results(loaded: history.Loaded) -> None:
    """A run without outputs or metrics cannot be judged: its exit code alone proves nothing."""
    m = loaded.manifest
    if m.metrics.final or any(_written(e) for e in m.outputs.values()):
        return
    what = "only outputs an earlier run left (stale)" if m.outputs else "no outputs"
    raise errors.ReproError(
        f"run {m.run_id} recorded {what} and no metrics: there is nothing to compare",
        hint="record results with --output PATH / --metrics FILE (or `outputs`/`metrics` in "
             "repro.yaml), then verify that run")


def _written(entry: manifest.FileEntry) -> bool:
    """Whether an outputs entry holds something the run itself wrote (not only stale files)."""
    if entry.stale is True:
        return False
    return not (entry.kind == "dir" and not entry.files and entry.stale)


def _replay(stack: contextlib.ExitStack, runs: store.Store, baseline: history.Loaded,
            opts: Options, reporter: report.Reporter, confirm: Callable[[str], bool] | None,
            extra_env: Mapping[str, str], threads: int | None, *, name: str,
            new_ids: list[str], workdir: str = "worktree") -> _Side:
    ropts = replay.Options(at=opts.at, keep=opts.keep, force=opts.force,
                           strict_env=opts.strict_env, yes=opts.yes, extra_env=extra_env,
                           threads=threads, name=name, workdir_name=workdir,
                           started_by="verify", stdout_to_stderr=True,
                           single_node=opts.single_node)
    done = stack.enter_context(replay.session(runs, baseline, ropts, reporter, confirm))
    new_ids.append(done.outcome.run_id)
    loaded = history.Loaded(done.outcome.manifest, done.outcome.run_dir)
    return _Side(loaded, done.worktree, done.unrecorded, checkout_root=done.worktree,
                 trusted=not done.plan.foreign)


def _varied(cond: str, baseline: history.Loaded) -> tuple[dict[str, str], int | None, str]:
    """(extra environment, thread count, worktree directory name) for one --vary condition."""
    m = baseline.manifest
    if cond == "threads":
        return {}, 1 if m.determinism.threads != 1 else 2, "worktree"
    if cond == "hashseed":
        return {"PYTHONHASHSEED": str((m.seed.value + 1) % 2**32)}, None, "worktree"
    if cond == "cwd":
        return {}, None, "a different working dir"
    if cond == "tz":
        return {"TZ": "Pacific/Kiritimati"}, None, "worktree"  # UTC+14: far from any default
    if cond == "locale":
        lc_all = str(m.environment.env.get("LC_ALL", ""))
        return {"LC_ALL": "C" if lc_all != "C" else "C.UTF-8"}, None, "worktree"
    raise errors.UsageError(f"unknown --vary condition {cond!r}")


def junit(report: Report) -> str:
    return judge.junit_xml(run_id=report.run, verdict=report.verdict, checks=report.checks,
                           duration_s=report.duration_s)
