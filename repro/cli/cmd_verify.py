"""Run a recorded run again: `repro replay`, and `repro verify` (bitwise or statistical).

Typer functions only (parse, call the flow in repro/commands/, render, return a code); they
register on `repro.cli.app.app`, which imports this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from repro import errors
from repro.cli import ui
from repro.cli.app import (
    Atol,
    DataOpt,
    DirtyOpt,
    JsonFlag,
    KillAfterOpt,
    LevelOpt,
    MetricsOpt,
    OutputOpt,
    Rtol,
    RunRef,
    SeedOpt,
    SingleNodeOpt,
    ThreadsOpt,
    UnlockedOpt,
    YesOpt,
    app,
    complete_run,
    local_ref,
    warn_future,
)
from repro.errors import ExitCode

if TYPE_CHECKING:
    from repro.record import store


@app.command()
def replay(
    ref: RunRef,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the worktree afterwards.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replay even if inputs changed (recorded in the new run).")] = False,
    strict_env: Annotated[bool, typer.Option(
        "--strict-env", help="Refuse when packages or Python differ from the run's.")] = False,
    yes: YesOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; run nothing.")] = False,
    as_script: Annotated[bool, typer.Option(
        "--script", help="Print a bash script that reproduces the run without repro.")] = False,
    kill_after: KillAfterOpt = None,
    single_node: SingleNodeOpt = False,
) -> None:
    """Run a recorded run again: same commit, patch, argv, seed and settings, in a worktree.

    Your working tree and index are never touched. Exits with the command's exit code.

    Example:

        repro replay latest~1
    """
    from repro.commands import history
    from repro.commands import replay as replay_mod
    from repro.record import store

    runs = store.open_here()
    warn_future(runs, ref)
    loaded = history.load(runs, local_ref(runs, ref))
    if dry_run or as_script:
        plan = replay_mod.make_plan(loaded, runs)
        if as_script:
            from repro.commands import replayscript

            sys.stdout.write(replayscript.script(plan, loaded.manifest, runs.root))
        else:
            ui.print_json(plan.to_dict())
        raise typer.Exit(ExitCode.OK)
    opts = replay_mod.Options(keep=keep, force=force, strict_env=strict_env, yes=yes,
                              kill_after=kill_after, single_node=single_node)
    confirm = ui.confirm_command if replay_mod.interactive() else None
    reporter = ui.CliReporter()
    with replay_mod.session(runs, loaded, opts, reporter, confirm) as done:
        code = done.outcome.exit_code
    reporter.finished(done.outcome)  # the new run's id, as `repro run` ends
    raise typer.Exit(code)


@app.command()
def verify(
    target: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN | -- CMD...]", help="A recorded run, or `-- CMD` with --runs N.",
        autocompletion=complete_run)] = None,
    at: Annotated[str | None, typer.Option(
        "--at", metavar="REV", help="Run the recorded recipe on REV (e.g. HEAD).")] = None,
    runs_n: Annotated[int | None, typer.Option(
        "--runs", help="Fresh executions to compare (default 1; 5 with --level statistical).",
        metavar="N", min=1)] = None,
    level: Annotated[str, typer.Option(
        "--level", metavar="LEVEL",
        help="bitwise (default: bitwise or within tolerance) or statistical (N fresh-seed "
             "runs judged within seed noise).")] = "bitwise",
    rtol: Rtol = None,
    atol: Atol = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", metavar="NAME=TOL",
        help="Absolute tolerance for one metric (repeatable); with --level statistical, the "
             "equivalence margin against a recorded group.")] = None,
    vary: Annotated[str | None, typer.Option(
        metavar="LIST", help="Rerun varying threads,hashseed,cwd,tz,locale and name the "
                             "condition that breaks reproduction.")] = None,
    junit: Annotated[Path | None, typer.Option(
        "--junit", metavar="FILE", help="Write a JUnit XML report.")] = None,
    as_json: JsonFlag = False,
    yes: YesOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Go on when inputs changed.")] = False,
    strict_env: Annotated[bool, typer.Option(
        "--strict-env", help="Refuse when packages or Python differ.")] = False,
    seed: SeedOpt = None,
    determinism: LevelOpt = None,
    threads: ThreadsOpt = None,
    allow_dirty: DirtyOpt = False,
    allow_unlocked: UnlockedOpt = False,
    data: DataOpt = None,
    output: OutputOpt = None,
    metrics: MetricsOpt = None,
    command: Annotated[bool, typer.Option("--command", hidden=True)] = False,
    single_node: SingleNodeOpt = False,
) -> None:
    """Replay a run and judge it: bitwise / within-tolerance exit 0, not-reproduced 1, trouble 2.

    Example (CI, against a baseline manifest committed to the repository):

        repro verify baselines/manifest.yaml --at HEAD --yes --junit verify.xml

    Example (is this command deterministic at all?):

        repro verify --runs 2 --output out/ -- python train.py

    Example (a two-node torchrun run, its 4 ranks replayed on this machine):

        repro verify latest --single-node

    Example (does the recorded group still reproduce within seed noise, on HEAD?):

        repro verify group:baseline --level statistical --runs 5 --at HEAD --yes

    With --level statistical: statistically-reproduced exits 0; not-reproduced and
    inconclusive (too few runs to tell; it names how many would decide) exit 1.
    """
    from repro.commands import history
    from repro.commands import replay as replay_mod
    from repro.commands import run as runflow
    from repro.commands import verify as verify_mod
    from repro.record import config, store

    words = list(target or [])
    runs = store.open_here()
    if level not in ("bitwise", "statistical"):
        raise errors.UsageError(f"--level {level!r}: use bitwise or statistical")
    if junit is not None:
        _check_report_path(junit, "--junit")  # before the replays, not after them
    if level == "statistical":
        if vary:
            raise errors.UsageError("--vary goes with bitwise verify, not --level statistical")
        margins = history.tolerance_from(config.load(runs.root).tolerance, None, None,
                                         metric or []).per_metric
        _verify_statistical(runs, words, command, at=at, runs_n=runs_n, junit=junit,
                            as_json=as_json, yes=yes, force=force, strict_env=strict_env,
                            margins=margins,
                            named=[m.partition("=")[0] for m in metric or []])
    opts = verify_mod.Options(
        at=at, runs=runs_n or 1, vary=verify_mod.parse_vary(vary), yes=yes, force=force,
        strict_env=strict_env, single_node=single_node,
        tolerance=history.tolerance_from(config.load(runs.root).tolerance, rtol, atol,
                                         metric or []))
    reporter = ui.CliReporter()
    if command:
        if at:
            raise errors.UsageError("--at goes with a recorded RUN, not with -- CMD")
        request = runflow.RunRequest(
            argv=tuple(words), cwd=Path.cwd(), seed=seed, determinism=determinism,
            threads=threads, allow_dirty=allow_dirty, allow_unlocked=allow_unlocked,
            data=tuple(data or ()), outputs=tuple(output or ()), metrics=metrics, store=runs)
        report = verify_mod.verify_command(request, opts, reporter)
    elif len(words) == 1:
        warn_future(runs, words[0])
        confirm = ui.confirm_command if replay_mod.interactive() else None
        report = verify_mod.verify_run(runs, local_ref(runs, words[0]), opts, reporter, confirm)
    elif words:
        raise errors.UsageError(f"verify takes one RUN, got {len(words)} words",
                                hint="to verify a command, put it after `--`: "
                                     "repro verify --runs 2 -- python train.py")
    else:
        raise errors.UsageError("nothing to verify",
                                hint="repro verify RUN, or repro verify --runs 2 -- CMD")
    _finish(report, junit, lambda: verify_mod.junit(report), as_json, ui.verify_report)


def _finish(report: Any, junit: Path | None, junit_xml: Callable[[], str], as_json: bool,
            render: Callable[[Any], None]) -> NoReturn:
    """A verify's end, bitwise or statistical: the JUnit file, the report, the exit code."""
    if junit is not None:
        _write_report(junit, junit_xml(), "--junit")
    code = ui.will_exit(ExitCode.OK if report.reproduced else ExitCode.DIFFERENT)
    if as_json:
        ui.print_json(report.to_dict())
    else:
        render(report)
    raise typer.Exit(code)


def _check_report_path(path: Path, option: str) -> None:
    """A report file must be writable where it is to go: a missing or unwritable folder is
    said before the work, not found after it (it was a traceback)."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise errors.UsageError(f"{option} {path}: is a directory", hint="give a file path")
    if not folder.is_dir():
        raise errors.UsageError(f"{option} {path}: no folder {folder}",
                                hint=f"create it (mkdir -p {folder}) or give another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise errors.UsageError(f"{option} {path}: cannot write in {folder}",
                                hint="give a path in a folder you can write to")


def _write_report(path: Path, text: str, option: str) -> None:
    from repro.record import bounded, manifest

    try:
        manifest.write_text_atomic(path, text)
    except OSError as e:
        raise errors.ReproError(f"{option} {path}: cannot write it: {bounded.reason(e)}",
                                hint="give a path in a folder you can write to") from e


def _verify_statistical(runs: store.Store, words: list[str], command: bool, *, at: str | None,
                        runs_n: int | None, junit: Path | None, as_json: bool, yes: bool,
                        force: bool, strict_env: bool, margins: Mapping[str, float],
                        named: Sequence[str] = ()) -> None:
    from repro.cli import statsview
    from repro.commands import replay as replay_mod
    from repro.commands import statverify

    if command or len(words) != 1:
        raise errors.UsageError("--level statistical verifies one recorded RUN or group",
                                hint="repro verify group:<id> --level statistical --runs 5")
    warn_future(runs, words[0])
    confirm = ui.confirm_command if replay_mod.interactive() else None
    report = statverify.verify(runs, local_ref(runs, words[0]), n=runs_n or statverify.DEFAULT_RUNS, at=at,
                               yes=yes, force=force, strict_env=strict_env, margins=margins,
                               named=named, shown=words[0],
                               reporter=ui.CliReporter(), confirm=confirm)
    _finish(report, junit, lambda: statverify.junit(report), as_json, statsview.verify_report)
