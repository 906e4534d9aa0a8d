"""The command line: parse, call one function, render, return an exit code.

`main()` is the single place that turns exceptions into `error:`/`hint:` lines and exit codes.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from repro import errors, ui
from repro.errors import ExitCode

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

# Commands whose failures before/around the child exit 125 instead of 2 (design §1).
CHILD_COMMANDS = frozenset({"run", "replay"})


def complete_run(incomplete: str) -> list[str]:
    """Shell completion for RUN arguments: run ids (newest first) and latest."""
    from repro import store

    try:
        ids = store.open_here().run_ids()
    except errors.ReproError:
        return []
    return [i for i in ["latest", *ids] if i.startswith(incomplete)]


RunRef = Annotated[str, typer.Argument(
    metavar="RUN", help="Run id, unique prefix, latest, latest~N, run directory or manifest.yaml.",
    autocompletion=complete_run)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    cmd: Annotated[list[str], typer.Argument(metavar="CMD...", help="The command to run.")],
    seed: Annotated[int | None, typer.Option(help="Seed to inject (default: config, else random).")] = None,
    determinism: Annotated[str | None, typer.Option(
        help="strict (default), warn, seed or off.", metavar="LEVEL")] = None,
    threads: Annotated[int | None, typer.Option(
        help="Pin OMP/MKL/OpenBLAS threads to N (default: config, else the core count).",
        min=1)] = None,
    allow_dirty: Annotated[bool, typer.Option(
        "--allow-dirty", help="Run with uncommitted files, recording a patch and copies.")] = False,
    allow_unlocked: Annotated[bool, typer.Option(
        "--allow-unlocked", help="Run without a matching lockfile, recording the finding.")] = False,
    data: Annotated[list[str] | None, typer.Option(
        "--data", help="Input file or directory to hash (repeatable).", metavar="PATH")] = None,
    output: Annotated[list[str] | None, typer.Option(
        "--output", help="Output to hash after the run (repeatable).", metavar="PATH")] = None,
    metrics: Annotated[str | None, typer.Option(
        help="JSON/YAML file of final metrics the command writes.", metavar="PATH")] = None,
    name: Annotated[str | None, typer.Option(help="A name for the run.")] = None,
    tag: Annotated[list[str] | None, typer.Option(
        help="K=V label (repeatable).", metavar="K=V")] = None,
    note: Annotated[str | None, typer.Option(help="Free text stored with the run.")] = None,
) -> None:
    """Run CMD reproducibly: pre-flight, inject seeds and determinism, record a manifest.

    Refuses uncommitted or untracked files and unlocked packages. Everything after `--` (or
    after the first word that is not an option) is passed to CMD untouched. Exits with CMD's
    exit code; 125 when repro refuses or fails, 126/127 when CMD cannot run, 128+N when CMD
    is killed by signal N.

    Example:

        repro run --seed 3 -- python train.py --lr 0.01 --output checkpoints/
    """
    from repro import record

    request = record.RunRequest(
        argv=tuple(cmd), cwd=Path.cwd(), seed=seed, determinism=_level(determinism),
        threads=threads, allow_dirty=allow_dirty, allow_unlocked=allow_unlocked,
        data=tuple(data or ()), outputs=tuple(output or ()), metrics=metrics, name=name,
        tags=_tags(tag or []), note=note)
    outcome = record.execute(request, ui.CliReporter())
    raise typer.Exit(outcome.exit_code)


@app.command("runs")
def runs_cmd(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show at most N runs.", min=1)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first.

    Example:

        repro runs --limit 5
    """
    from repro import store

    rows: list[dict[str, object]] = []
    for run_id, m in store.open_here().iter_manifests(limit):
        if isinstance(m, errors.ReproError):
            rows.append({"run_id": run_id, "status": "unreadable", "started_at": None,
                         "command": [], "seed": None, "commit": None, "dirty": None,
                         "metrics": {}, "error": m.message})
            continue
        rows.append({"run_id": run_id, "status": m.run.status, "started_at": m.run.started_at,
                     "duration_s": m.run.duration_s, "command": list(m.command.argv),
                     "seed": m.seed.value, "commit": m.code.commit, "dirty": m.code.dirty,
                     "name": m.run.name, "exit_code": m.run.exit_code,
                     "metrics": dict((m.metrics or {}).get("final") or {})})
    if as_json:
        ui.print_json({"schema": "repro/runs/v1", "runs": rows})
    else:
        ui.runs_table(rows)


app.command("ls", help="Alias of `runs`.", hidden=True)(runs_cmd)


@app.command()
def show(ref: RunRef, as_json: JsonFlag = False) -> None:
    """Show one run in full.

    Example:

        repro show latest --json | jq .environment.packages
    """
    from repro import manifest, store

    runs = store.open_here()
    path = runs.resolve(ref)
    m = store.load_manifest(path)
    if as_json:
        ui.print_json(manifest.to_dict(m))
    else:
        ui.show_run(m, str(path.parent))


def _level(value: str | None) -> str | None:
    from repro import manifest

    if value is not None and value not in manifest.LEVELS:
        raise errors.UsageError(f"unknown determinism level {value!r}",
                                hint="use one of: " + ", ".join(manifest.LEVELS))
    return value


def _tags(items: Sequence[str]) -> dict[str, str]:
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise errors.UsageError(f"--tag {item!r} is not K=V", hint="e.g. --tag team=vision")
        tags[key] = value
    return tags


def _command_name(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = _command_name(args)
    trouble = ExitCode.REFUSED if command in CHILD_COMMANDS else ExitCode.TROUBLE
    try:
        result = app(args=args, prog_name="repro", standalone_mode=False)
        return int(result) if isinstance(result, int) else 0
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        return int(ExitCode.INTERRUPTED)
    except typer.TyperException as e:  # click's usage errors (vendored by typer)
        e.show()  # type: ignore[attr-defined]
        return int(getattr(e, "exit_code", ExitCode.TROUBLE))
    except errors.ChildStartError as e:
        ui.error(e)
        return int(e.exit_code)
    except errors.ReproError as e:
        ui.error(e)
        return int(trouble)
    except KeyboardInterrupt:
        ui.err_console().print("interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # `repro runs | head`: the reader left; not an error worth a traceback.
        _silence_stdout()
        return 0
    except Exception as e:
        saved = _save_traceback()
        ui.bug(saved, f"{type(e).__name__}: {e}")
        return int(ExitCode.BUG)


def _save_traceback() -> str | None:
    """Write the traceback under .repro/bugs/ (or the temp dir outside a repo); return its path."""
    import tempfile

    text = traceback.format_exc()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    try:
        from repro import store

        folder = store.open_here().bugs_dir
    except Exception:
        folder = Path(tempfile.gettempdir()) / "repro-bugs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stamp}.txt"
        path.write_text(text, encoding="utf-8")
        return str(path)
    except OSError:
        return None


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
