"""The `repro` entry point: the single place that turns exceptions into exit codes.

`repro run` is hot (it prefixes every training command; budget: 0.15 s over the bare command),
and loading the typer app costs ~150 ms (typer, click, pydantic-based option coercion, rich).
So a plain `repro run [options] -- CMD` is parsed here from a table of the same options the
typer `run` command declares (tests hold the two to the same set and the same results); help,
completion, and anything this parser does not fully understand go to the typer app.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repro import errors
from repro.errors import ExitCode

# Commands whose failures before/around the child exit 125 instead of 2 (design §1).
CHILD_COMMANDS = frozenset({"run", "replay"})

# `repro run` options: flag -> (parameter name, kind). kind: "flag", "int", "float", "str",
# "list", "typer" (left to the typer app).
RUN_OPTIONS: dict[str, tuple[str, str]] = {
    "--seed": ("seed", "int"),
    "--determinism": ("determinism", "str"),
    "--threads": ("threads", "int"),
    "--allow-dirty": ("allow_dirty", "flag"),
    "--allow-unlocked": ("allow_unlocked", "flag"),
    "--data": ("data", "list"),
    "--output": ("output", "list"),
    "--metrics": ("metrics", "str"),
    "--name": ("name", "str"),
    "--tag": ("tag", "list"),
    "--note": ("note", "str"),
    "--kill-after": ("kill_after", "float"),
    "--quiet": ("quiet", "flag"),
    "--data-stats": ("data_stats", "flag"),
    "--image": ("image", "str"),
    "--group": ("job_id", "str"),
    "--member-timeout": ("member_timeout", "float"),
    # A group (`--repeat`) and its members (`--group-member`, what `--jobs` starts) go through
    # the typer app: its ~150 ms are nothing next to N runs.
    "--repeat": ("repeat", "typer"),
    "--jobs": ("jobs", "typer"),
    "--group-member": ("group_member", "typer"),
}
_INT_RANGE = {"seed": (0, 2**32 - 1), "threads": (1, 4096)}  # as config.MAX_SEED/MAX_THREADS


def parse_run(args: Sequence[str]) -> dict[str, Any] | None:
    """Keyword arguments for `runflow.run_from_options`, or None to let typer parse `args`."""
    if not args or args[0] != "run":
        return None
    opts: dict[str, Any] = {}
    defer = False  # a group option: typer's, once the rest is checked
    i = 1
    while i < len(args):
        word = args[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        flag, eq, inline = word.partition("=")
        spec = RUN_OPTIONS.get(flag)
        if spec is None:
            return None  # -h, --help, a typo: typer gives the help or the usage error
        name, kind = spec
        if kind == "flag":
            if eq:
                return None
            opts[name] = True
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(args):
            value = args[i + 1]
            i += 2
            if value == "--":  # `--name -- python t.py`: the value was forgotten
                raise errors.UsageError(f"{flag} needs a value before `--`",
                                        hint=f"e.g. repro run {flag} VALUE -- CMD")
        else:
            return None
        if kind == "typer":
            defer = True
        elif kind == "int":
            try:
                number = int(value)
            except ValueError:
                return None
            low, high = _INT_RANGE[name]
            if number < low or (high is not None and number > high):
                return None
            opts[name] = number
        elif kind == "float":
            try:
                seconds = float(value)
            except ValueError:
                return None
            if not 0 <= seconds < float("inf"):
                return None
            opts[name] = seconds
        elif kind == "list":
            opts.setdefault(name, []).append(value)
        else:
            opts[name] = value
    cmd = list(args[i:])
    if not cmd or defer:
        return None
    return {"cmd": cmd, **opts}


def main(argv: Sequence[str] | None = None) -> int:
    """The `repro` program: `argv` None reads sys.argv and, after a plain `repro run`, may end
    the process at once (`_exit_now`). Callers inside a process pass `argv` and get the code."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args if not a.startswith("-")), None)
    trouble = ExitCode.REFUSED if command in CHILD_COMMANDS else ExitCode.TROUBLE
    try:
        fast = None if "_REPRO_COMPLETE" in os.environ else parse_run(args)
        if fast is not None:
            from repro.capture import git

            git.prestart_status()  # overlaps with the imports below
            try:
                from repro.cli import ui
                from repro.commands import run as runflow

                code = runflow.run_from_options(ui.CliReporter(), **fast)
            finally:
                git.discard_early()
            if argv is None:  # the program itself, not a caller in this process
                _exit_now(code)
            return code
        from repro.cli import app as cli

        return cli.dispatch(args)
    except errors.ChildStartError as e:
        _ui().error(e)
        # run/replay exit 126/127 like a shell; verify and the others keep to 0/1/2.
        code = int(e.exit_code) if command in CHILD_COMMANDS else int(ExitCode.TROUBLE)
        return _json_error(args, e, code)
    except errors.UsageError as e:  # the command line itself is wrong: 2, as argparse does,
        _ui().error(e)  # but 125 for run/replay, whose child may exit 2 itself (as env(1))
        return _json_error(args, e, int(trouble))
    except errors.ReproError as e:
        _ui().error(e)
        return _json_error(args, e, int(trouble))
    except KeyboardInterrupt:
        _ui().err_console().print("interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # `repro runs | head`: the reader left; not an error worth a traceback.
        _silence_stdout()
        return 0
    except Exception as e:
        saved = _save_traceback()
        _ui().bug(saved, f"{type(e).__name__}: {e}")
        return int(ExitCode.BUG)


def _exit_now(code: int) -> None:
    """End the process with `code` now, without the interpreter's teardown (freeing every
    module and object: ~7 ms of each `repro run`), when that teardown has nothing else to
    do: no atexit callback (coverage, weakref.finalize), no other live non-daemon thread, no
    profiler or tracer, not `python -i`; stdout and stderr are flushed first. Returns, and
    the usual exit happens, otherwise (a flush that fails is reported by that exit as ever).
    """
    import atexit
    import threading

    callbacks = getattr(atexit, "_ncallbacks", None)
    thread_atexits = getattr(threading, "_threading_atexits", None)
    if (callbacks is None or callbacks() or thread_atexits is None or thread_atexits
            or sys.getprofile() is not None or sys.gettrace() is not None
            or sys.flags.inspect or not 0 <= code <= 255):
        return
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive()
           for t in threading.enumerate()):
        return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    os._exit(code)


def _json_error(args: Sequence[str], e: errors.ReproError, code: int) -> int:
    """With --json, stdout still carries one JSON document when the command fails, so
    `repro verify latest --json | jq .verdict` reads `null` and the error, not nothing."""
    options = args[:args.index("--")] if "--" in args else args
    if "--json" in options:
        import json

        with contextlib.suppress(OSError, ValueError):
            doc = {"schema": "repro/error/v1", "error": e.message, "hint": e.hint,
                   "exit_code": code}
            if "verify" in options:
                doc["verdict"] = None  # no verdict: trouble, not "not-reproduced"
            print(json.dumps(doc), flush=True)
    junit = _option_value(options, "--junit") if "verify" in options else None
    if junit:  # the CI report says the trouble too, where the job's test summary looks
        from repro.judge import junit as junit_xml
        from repro.record import manifest

        with contextlib.suppress(OSError, ValueError):
            manifest.write_text_atomic(Path(junit), junit_xml.error_xml(
                message=e.message, hint=e.hint, exit_code=code))
    return code


def _option_value(options: Sequence[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in a command line, the last one given."""
    found = None
    for i, word in enumerate(options):
        if word == name and i + 1 < len(options):
            found = options[i + 1]
        elif word.startswith(name + "="):
            found = word.partition("=")[2]
    return found


def _ui() -> Any:
    from repro.cli import ui

    return ui


def _save_traceback() -> str | None:
    """Write the traceback under .repro/bugs/ (or the temp dir outside a repo); return its path."""
    import tempfile
    import traceback

    text = traceback.format_exc()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    try:
        from repro.record import store

        folder = store.open_here().bugs_dir
    except Exception:
        folder = Path(tempfile.gettempdir()) / "repro-bugs"
    for where in (folder, Path(tempfile.gettempdir()) / "repro-bugs"):
        # Whole or not at all: a full disk must not leave a 0-byte report behind.
        path = where / f"{stamp}.txt"
        tmp = where / f".{stamp}.tmp"
        try:
            where.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
            return str(path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return None


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
