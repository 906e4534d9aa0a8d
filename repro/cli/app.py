"""The command line: parse, call one function, render, return an exit code.

`main()` is the single place that turns exceptions into `error:`/`hint:` lines and exit codes.

This module holds the typer `app`, the option types commands share, `dispatch`, completion
helpers and the core commands (run, runs, show, diff); the other commands are in its
cmd_*.py siblings (replay/verify, push/pull/export, compare, init/doctor), imported at the
end so that they register on `app`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from repro import errors
from repro.cli import ui
from repro.errors import ExitCode

if TYPE_CHECKING:
    from repro.commands import run as runflow
    from repro.record import manifest, store

app = typer.Typer(
    name="repro",
    help="Make ML training runs reproducible by prefixing their command.\n\n"
         "    repro run -- python train.py --lr 0.01\n\n"
         "    repro diff latest~1 latest",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

def complete_run(incomplete: str) -> list[str]:
    """Shell completion for RUN arguments: run ids (newest first) and latest."""
    from repro.record import store

    try:
        ids = store.open_here().run_ids()
    except errors.ReproError:
        return []
    return [i for i in ["latest", *ids] if i.startswith(incomplete)]


def warn_future(runs: store.Store, *refs: str) -> None:
    """`latest` skips runs dated in the future (they would pin it for good): say so."""
    from repro.record import store

    if not any(store.LATEST_RE.match(r) for r in refs):
        return
    future = store.future_ids(runs)
    if future:
        ui.warn(f"`latest` skips {len(future)} run(s) dated in the future: "
                + ", ".join(future[:3]) + (" ..." if len(future) > 3 else ""),
                hint="a clock was wrong, or the run directories came from elsewhere; "
                     "name them by id, or remove them")


RunRef = Annotated[str, typer.Argument(
    metavar="RUN", help="Run id, unique prefix, latest, latest~N, run directory, manifest.yaml "
                        "or REMOTE:ref (a run at a named remote, e.g. teammate:latest).",
    autocompletion=complete_run)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


# Options shared by `run` and `verify -- CMD`, defined once.
SeedOpt = Annotated[int | None, typer.Option(
    help="Seed to inject (default: config, else random).", metavar="N", min=0, max=2**32 - 1)]
LevelOpt = Annotated[str | None, typer.Option(
    "--determinism", help="strict (default), warn, seed or off.", metavar="LEVEL")]
ThreadsOpt = Annotated[int | None, typer.Option(
    help="Pin OMP/MKL/OpenBLAS threads to N (default: config, else the core count).",
    metavar="N", min=1, max=4096)]
DirtyOpt = Annotated[bool, typer.Option(
    "--allow-dirty", help="Run with uncommitted files, recording a patch and copies.")]
UnlockedOpt = Annotated[bool, typer.Option(
    "--allow-unlocked", help="Run without a matching lockfile, recording the finding.")]
DataOpt = Annotated[list[str] | None, typer.Option(
    "--data", help="Input file or directory to hash (repeatable).", metavar="PATH")]
OutputOpt = Annotated[list[str] | None, typer.Option(
    "--output", help="Output to hash after the run (repeatable).", metavar="PATH")]
MetricsOpt = Annotated[str | None, typer.Option(
    help="JSON/YAML file of final metrics the command writes.", metavar="PATH")]
NameOpt = Annotated[str | None, typer.Option(help="A name for the run.", metavar="TEXT")]
YesOpt = Annotated[bool, typer.Option(
    "--yes", "-y", help="Run a manifest's command without asking (for CI).")]
SingleNodeOpt = Annotated[bool, typer.Option(
    "--single-node", help="A multi-node run: replay all its ranks on this machine as local "
                          "processes (same world size).")]
KillAfterOpt = Annotated[float | None, typer.Option(
    "--kill-after", metavar="SECONDS", min=0.0,
    help="After SIGTERM/SIGINT/SIGHUP, SIGKILL the command if it still runs this long later "
         "(default: 30; 0: never).")]


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    cmd: Annotated[list[str], typer.Argument(metavar="CMD...", help="The command to run.")],
    seed: SeedOpt = None,
    determinism: LevelOpt = None,
    threads: ThreadsOpt = None,
    allow_dirty: DirtyOpt = False,
    allow_unlocked: UnlockedOpt = False,
    data: DataOpt = None,
    output: OutputOpt = None,
    metrics: MetricsOpt = None,
    name: NameOpt = None,
    tag: Annotated[list[str] | None, typer.Option(
        help="K=V label (repeatable).", metavar="K=V")] = None,
    note: Annotated[str | None, typer.Option(
        help="Free text stored with the run.", metavar="TEXT")] = None,
    kill_after: KillAfterOpt = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", help="No summary line on stderr when the run ends.")] = False,
    data_stats: Annotated[bool, typer.Option(
        "--data-stats", help="Record statistics of the inputs: rows, columns, types and nulls "
                             "of CSV/TSV/JSON-lines/Parquet files, files per class folder.")
                          ] = False,
    image: Annotated[str | None, typer.Option(
        "--image", metavar="NAME[@DIGEST]",
        help="The container image the command runs in (recorded; default: what the "
             "container runtime exposes, or $REPRO_IMAGE).")] = None,
    job_id: Annotated[str | None, typer.Option(
        "--group", metavar="ID",
        help="Job id shared by every node of a multi-node run (default: REPRO_GROUP, SLURM's "
             "job id, torchrun's --rdzv-id).")] = None,
    member_timeout: Annotated[float | None, typer.Option(
        "--member-timeout", metavar="SECONDS", min=0.0,
        help="Multi-node runs: how long node 0 waits for the other nodes' records after its "
             "command ended (default: config, else 600).")] = None,
    repeat: Annotated[int | None, typer.Option(
        "--repeat", metavar="N", min=1,
        help="Run CMD N times as one group, seeds derived from --seed (the group seed).")] = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", metavar="K", min=1,
        help="With --repeat: run K members at once (not with a shared --metrics file or "
             "--output: each member would overwrite the others').")] = None,
    group_member: Annotated[str | None, typer.Option("--group-member", hidden=True)] = None,
) -> None:
    """Run CMD reproducibly: pre-flight, inject seeds and determinism, record a manifest.

    Refuses uncommitted or untracked files and unlocked packages. Everything after `--` (or
    after the first word that is not an option) is passed to CMD untouched. Exits with CMD's
    exit code; 125 when repro refuses or fails, 126/127 when CMD cannot run, 128+N when CMD
    is killed by signal N.

    Example:

        repro run --seed 3 --output checkpoints/ -- python train.py --lr 0.01

    Example (give the command 120 s to save a checkpoint after SIGTERM, then kill it):

        repro run --kill-after 120 -- python train.py

    Example (a group of 5 runs, seeds derived from 7; then `repro compare`):

        repro run --repeat 5 --seed 7 --name baseline -- python train.py --lr 0.01

    Example (statistics of the data, and the image the job runs in, for `repro diff`):

        repro run --data-stats --image org/train:1.2 -- python train.py

    Example (one node of a two-node job; run it on each node with its rank):

        repro run -- torchrun --nnodes 2 --node-rank 0 --rdzv-id $JOB ... train.py
    """
    from repro.commands import run as runflow

    if repeat is not None:
        if group_member is not None:
            raise errors.UsageError("--repeat and --group-member do not go together")
        if job_id is not None:
            raise errors.UsageError(
                "--repeat and --group do not go together: --group names the multi-node job "
                "this node's run belongs to",
                hint="repeat a multi-node job by starting it again on every node")
        raise typer.Exit(_run_group(
            runflow.RunRequest(
                argv=tuple(cmd), cwd=Path.cwd(), seed=seed, determinism=determinism,
                threads=threads, allow_dirty=allow_dirty, allow_unlocked=allow_unlocked,
                data=tuple(data or ()), outputs=tuple(output or ()), metrics=metrics, name=name,
                tags=runflow.parse_tags(tag or []), note=note, kill_after=kill_after,
                data_stats=data_stats, image=image),
            repeat, jobs or 1, quiet))
    if jobs is not None:
        raise errors.UsageError("--jobs goes with --repeat N",
                                hint="e.g. repro run --repeat 8 --jobs 2 -- python train.py")
    if group_member is not None:
        from repro.commands import group as groupflow

        membership = groupflow.parse_member(group_member)
        if seed is None:
            raise errors.UsageError("--group-member needs --seed")
        raise typer.Exit(runflow.run_from_options(
            ui.CliReporter(), cmd=cmd, seed=seed, determinism=determinism, threads=threads,
            allow_dirty=allow_dirty, allow_unlocked=allow_unlocked, data=data, output=output,
            metrics=metrics, name=name, tag=tag, note=note, kill_after=kill_after, quiet=quiet,
            group=membership, data_stats=data_stats, image=image))
    raise typer.Exit(runflow.run_from_options(
        ui.CliReporter(), cmd=cmd, seed=seed, determinism=determinism, threads=threads,
        allow_dirty=allow_dirty, allow_unlocked=allow_unlocked, data=data, output=output,
        metrics=metrics, name=name, tag=tag, note=note, kill_after=kill_after, quiet=quiet,
        data_stats=data_stats, image=image, job_id=job_id, member_timeout=member_timeout))


def _run_group(request: runflow.RunRequest, repeat: int, jobs: int, quiet: bool) -> int:
    """`repro run --repeat N`: the members, then one summary line (a failed member fails it)."""
    from repro.commands import compare as comparemod
    from repro.commands import group as groupflow
    from repro.judge import stats

    reporter = ui.CliReporter()
    outcome = groupflow.run_group(request, repeat, reporter, jobs=jobs)
    from repro.record import store

    succeeded = [m for m in groupflow.group_runs(request.store or store.open_here(), outcome.id)
                 if m.run.status == "succeeded"]
    calls = comparemod.self_seeded(succeeded)
    if calls:
        reporter.warn(comparemod.self_seeded_warning(f"group {outcome.id}", len(succeeded),
                                                     calls), hint=comparemod.SELF_SEEDED_HINT)
    if not quiet:
        values: dict[str, list[float]] = {}
        for m in succeeded:
            for k, x in comparemod.final_metrics(m).items():
                values.setdefault(k, []).append(x)
        # a metric some runs did not record as a number (a NaN loss): say over how many
        shown = [(k if len(v) == len(succeeded) else f"{k} ({len(v)} of {len(succeeded)} runs)",
                  stats.mean(v), stats.sd(v)) for k, v in list(values.items())[:3]]
        sys.stderr.write(groupflow.summary(outcome, shown) + "\n")
    return outcome.exit_code


@app.command("runs")
def runs_cmd(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show at most N runs.", metavar="N",
                                       min=1)] = 20,
    where: Annotated[list[str] | None, typer.Option(
        "--where", metavar="EXPR",
        help="Only runs where a parameter or final metric compares so: NAME=V, NAME!=V, "
             "NAME<V, <=, >, >= (repeatable: all must hold).")] = None,
    columns: Annotated[list[str] | None, typer.Option(
        "--columns", metavar="NAMES",
        help="Parameters and final metrics to show as columns, comma-separated.")] = None,
    expand: Annotated[bool, typer.Option(
        "--expand", help="Show every member of a group (`run --repeat`), not one row.")] = False,
    as_json: JsonFlag = False,
    remote: Annotated[str | None, typer.Option(
        "--remote", metavar="[NAME|URL]",
        help="List the runs of a remote store (default: the configured one) instead; reads "
             "only the manifests shown.")] = None,
) -> None:
    """List runs, newest first. Replays show what they replay; verify's are marked `verify`.

    A group (`repro run --repeat N`) is one row (`group:<id>`, metrics as mean±sd) unless
    --expand; `--json` lists every run, with its `group`.

    Example:

        repro runs --limit 5 --expand

    Example (runs with lr 0.01 and a final loss under 0.1, with their batch size):

        repro runs --where lr=0.01 --where 'loss<0.1' --columns lr,batch_size,loss

    Example (what the team pushed):

        repro runs --remote teammate
    """
    from repro.cli import runsview
    from repro.judge import query
    from repro.record import store

    wheres = [query.parse_where(w) for w in where or []]
    names = query.parse_columns(columns or [])
    runs = store.open_here()
    if remote is not None:
        from repro.commands import pull as pull_mod
        from repro.record import config
        from repro.remote import store as remote_store

        place = remote_store.locate(remote, config.load(runs.root))
        rows, ids, _ = pull_mod.remote_rows(runs, place, limit)  # reads the newest `limit`
        every = rows
        if wheres:
            rows = [dict(r) for r in query.select(rows, wheres)]
    else:
        rows = every = store.run_rows(runs, None if wheres else limit)
        if wheres:
            rows = [dict(r) for r in query.select(rows, wheres, limit)]
        ids = runs.run_ids()
    if as_json:
        if names:
            for r in rows:
                r["columns"] = {n: query.value_of(r, n) for n in names}
        ui.print_json({"schema": "repro/runs/v1",
                       **({"remote": place.url} if remote is not None else {}), "runs": rows})
    elif wheres and not rows:
        missing = query.unknown(every, wheres)
        if missing:
            ui.warn("no run has a parameter or metric " + ", ".join(f"`{n}`" for n in missing),
                    hint="--where filters on parameters and final metrics (`repro runs "
                         "--columns NAME` shows a name's values; `repro show RUN` lists them)")
        ui.info("no runs match " + " and ".join(where or []))
    elif remote is not None and not rows:
        ui.info(f"no runs at {place.label} yet: `repro push` sends yours")
    else:
        if not expand and wheres:
            from repro.cli import statsview

            rows = statsview.collapse_groups(rows)
        elif not expand and remote is not None:
            rows = _group_rows(rows, limit, len(ids),
                               lambda n: pull_mod.remote_rows(runs, place, n)[0])
        elif not expand:
            rows = _group_rows(rows, limit, len(ids), lambda n: store.run_rows(runs, n))
        runsview.runs_table(rows, ids, names)


def _group_rows(rows: list[dict[str, object]], limit: int, total: int,
                read: Callable[[int], list[dict[str, object]]]) -> list[dict[str, object]]:
    """`limit` rows with groups collapsed, each group whole: reads more runs while the oldest
    one read belongs to a group shown (a `--repeat 30` group is not "partial 20/30")."""
    from repro.cli import statsview

    n = limit
    while True:
        shown = statsview.collapse_groups(rows)[:limit]
        oldest = rows[-1] if rows else None
        group = oldest.get("group") if oldest is not None else None
        cut = (isinstance(group, Mapping) and oldest is not None
               and any(r.get("run_id") == f"group:{group.get('id')}" for r in shown))
        if len(rows) < n or n >= total or not cut:
            return shown
        n *= 2
        rows = read(n)


app.command("ls", help="Alias of `runs`.", hidden=True)(runs_cmd)


@app.command()
def show(ref: RunRef, as_json: JsonFlag = False) -> None:
    """Show one run in full.

    Example:

        repro show latest --json | jq .environment.packages
    """
    from repro.record import manifest, store

    runs = store.open_here()
    warn_future(runs, ref)
    path = runs.resolve(local_ref(runs, ref))
    m = store.load_manifest(path)
    if as_json:
        ui.print_json(manifest.to_dict(m))
    else:
        ui.show_run(m, str(path.parent), _series_of(m, path.parent))


def _series_of(m: manifest.Manifest, run_dir: Path) -> dict[str, list[float]]:
    """The run's metric series (its JSON-lines file in the run directory), for a curve."""
    from repro.capture import metrics

    name = m.metrics.series
    if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
        return {}
    return metrics.series_values(run_dir / name)


def _series(runs: store.Store, ref: str) -> dict[str, list[float]]:
    from repro.record import store

    path = runs.resolve(ref)
    return _series_of(store.load_manifest(path), path.parent)


Rtol = Annotated[float | None, typer.Option(
    "--rtol", help="Relative tolerance for metrics (default: config, else 0).", metavar="TOL",
    min=0.0)]
Atol = Annotated[float | None, typer.Option(
    "--atol", help="Absolute tolerance for metrics (default: config, else 0).", metavar="TOL",
    min=0.0)]
MetricTol = Annotated[list[str] | None, typer.Option(
    "--metric", metavar="NAME=TOL", help="Absolute tolerance for one metric (repeatable).")]


@app.command()
def diff(
    left: RunRef,
    right: RunRef,
    as_json: JsonFlag = False,
    as_markdown: Annotated[bool, typer.Option(
        "--markdown", help="GitHub-flavoured markdown, e.g. for a pull-request comment.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Show unchanged sections too.")] = False,
    section: Annotated[list[str] | None, typer.Option(
        "--section", metavar="NAME",
        help="Only this section (repeatable): params, command, seed, determinism, code, "
             "environment, hardware, data, outputs, metrics.")] = None,
    rtol: Rtol = None,
    atol: Atol = None,
    metric: MetricTol = None,
) -> None:
    """Compare two runs section by section. Exit 0 if they match, 1 if they differ, 2 on trouble.

    Example:

        repro diff latest~1 latest --section code --section metrics
    """
    from repro.cli import diffview
    from repro.commands import history
    from repro.judge import compare
    from repro.record import config, store

    runs = store.open_here()
    warn_future(runs, left, right)
    left, right = local_ref(runs, left), local_ref(runs, right)
    tolerance = history.tolerance_from(config.load(runs.root).tolerance, rtol, atol, metric or [])
    names = compare.select_sections(section or [])
    report = history.diff(runs, left, right, tolerance)
    # With --section, the exit code speaks for the sections asked about (CI gates on metrics).
    changed = any(report.sections[n].changed for n in names)
    code = ui.will_exit(ExitCode.DIFFERENT if changed else ExitCode.OK)
    if as_json:
        ui.print_json(report.to_dict())
    elif as_markdown:
        sys.stdout.write(diffview.markdown(report, show_all=show_all, sections=names))
    else:
        curves = (_series(runs, left), _series(runs, right))
        diffview.render(report, ui.out_console(), show_all=show_all, sections=names,
                        curves=curves)
    raise typer.Exit(code)


def local_ref(runs: store.Store, ref: str) -> str:
    """A `REMOTE:ref` reference fetched into the local cache (its path); others unchanged."""
    if ":" not in ref:
        return ref
    from repro.commands import pull as pull_mod

    return pull_mod.local_ref(runs, ref)




def dispatch(args: list[str]) -> int:
    """Run the typer app on `args`; click's own outcomes (usage errors, --help) become codes.

    repro's errors propagate to `repro.cli.main.main`, the one place that translates them.
    """
    if "_REPRO_COMPLETE" in os.environ:
        # Shell completion (completions/ holds the generated scripts): typer registers its
        # shell classes only when asked to, and we keep --install-completion off the CLI.
        typer.completion.completion_init()  # type: ignore[attr-defined]
    command = next((a for a in args if not a.startswith("-")), None)
    if command == "verify" and "--" in args:
        # click swallows `--`; tell verify that the words after it are a command, not a RUN.
        cut = args.index("--")
        args = [*args[:cut], "--command", *args[cut:]]
    if command in ("runs", "ls") and "--remote" in args:
        # `repro runs --remote` alone means the configured remote: typer has no option with
        # an optional value, so give it an empty one.
        at = args.index("--remote")
        if at + 1 == len(args) or args[at + 1].startswith("-"):
            args = [*args[:at + 1], "", *args[at + 1:]]
    ui.exit_if_reader_leaves = None
    try:
        result = app(args=args, prog_name="repro", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except typer.Exit as e:
        return int(e.exit_code)
    except SystemExit as e:
        if not isinstance(e.__context__, BrokenPipeError):
            raise
        # rich's and click's answer to a reader that left (`repro diff A B | head -1`) is
        # exit 1, which for diff and verify means "different": exit with the command's own
        # verdict, or 0 as for any other command whose reader left (main.main).
        return ui.exit_if_reader_leaves if ui.exit_if_reader_leaves is not None else 0
    except typer.Abort:
        return int(ExitCode.INTERRUPTED)
    except typer.TyperException as e:  # click's usage errors (vendored by typer)
        usage = _usage_error(e)
        if usage is not None:  # main.main prints it (error:/hint:, --json) with the exit code
            raise usage from None
        e.show()  # type: ignore[attr-defined]
        code = int(getattr(e, "exit_code", ExitCode.TROUBLE))
        # run/replay: 125, not 2, which the child itself may return (timeout(1), env(1)).
        return int(ExitCode.REFUSED) if code == ExitCode.TROUBLE and command in (
            "run", "replay") else code


def _usage_error(e: typer.TyperException) -> errors.UsageError | None:
    """click's usage error (a bad value, an unknown option or command, a missing argument) as
    repro's own `error:`/`hint:` pair; None for anything else (help shown for no arguments)."""
    if getattr(e, "exit_code", None) != 2 or type(e).__name__ == "NoArgsIsHelpError":
        return None
    message = " ".join(e.format_message().split()).rstrip(".")
    message = message[:1].lower() + message[1:]
    ctx = getattr(e, "ctx", None)
    where = str(getattr(ctx, "command_path", "") or "repro")
    what = "commands" if where == "repro" else "usage and options"
    return errors.UsageError(message or "the command line is not valid",
                             hint=f"`{where} --help` shows the {what}, with examples")


# The other commands live beside this module, one group a module; importing them registers
# them on `app`, in the order `repro --help` lists them.
from repro.cli import cmd_share, cmd_stats, cmd_setup, cmd_verify  # noqa: E402, F401, I001
