"""Terminal rendering: errors, warnings, progress, `repro show` and summaries (rich).

With the rest of repro/cli/, the only place that writes to the terminal. stdout carries
results, stderr the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, cast

from repro import errors
from repro.record import manifest

if TYPE_CHECKING:
    from rich.console import Console

# rich is imported inside the functions that draw: a `repro run` that has nothing to say
# never pays its ~40 ms import.

PIPE_WIDTH = 10_000  # the console width when output is not a terminal (see _console)
PROGRESS_AFTER_S = 1.0  # only work that takes longer than this gets a progress bar


def escape(text: str) -> str:
    """Make text safe inside rich markup (a `[x]` in a path is not a style)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _console(stderr: bool) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    no_color = bool(os.environ.get("NO_COLOR"))
    # Piped or redirected, with no COLUMNS to follow: no width to fit, so a table row stays
    # one line (rich would assume 80 columns and wrap `loss=0.0016` mid-number).
    tty = _isatty(stream)
    width = None if "COLUMNS" in os.environ or tty else PIPE_WIDTH
    # soft_wrap: an `error:` line stays one line however narrow the terminal (grep-able).
    out = stream if tty else cast("IO[str]", _Rstrip(stream))
    return Console(file=out, no_color=no_color, highlight=False,
                   soft_wrap=True, force_terminal=None if not no_color else False, width=width)


class _Rstrip:
    """A text stream that drops the spaces rich pads table rows with at the end of each line,
    for output read by programs and diffs (`repro runs | cut`, `repro show > a.txt`)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        if lines:
            self._stream.write("".join(line.rstrip(" ") + "\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(self._pending)
            self._pending = ""
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ... of the real stream
        return getattr(self._stream, name)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def err_console() -> Console:
    return _console(stderr=True)


# The exit code a command settled on before printing its report (diff, verify, compare,
# doctor): `repro diff A B | head -1` exits with it even though the reader left early
# (see app.dispatch); None: the command has not said, and a reader that left is exit 0.
exit_if_reader_leaves: int | None = None


def will_exit(code: int) -> int:
    """Say the command's exit code before its report is printed; returns `code`."""
    global exit_if_reader_leaves
    exit_if_reader_leaves = code
    return code


def out_console() -> Console:
    return _console(stderr=False)


def error(e: errors.ReproError) -> None:
    c = err_console()
    c.print(f"[bold red]error:[/] {escape(e.message)}")
    if e.hint:
        c.print(f"[yellow]hint:[/] {escape(e.hint)}")


def warn(message: str, hint: str | None = None) -> None:
    c = err_console()
    c.print(f"[bold yellow]warning:[/] {escape(message)}")
    if hint:
        c.print(f"[yellow]hint:[/] {escape(hint)}")


def info(message: str) -> None:
    err_console().print(f"[dim]repro:[/] {escape(message)}")


def bug(saved_to: str | None, summary: str) -> None:
    where = f"; traceback saved to {saved_to}" if saved_to else ""
    err_console().print(f"[bold red]error:[/] internal error in repro: {escape(summary)}"
                        f"{escape(where)}")


def print_json(doc: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


class CliReporter:
    """report.Reporter for the terminal: warnings on stderr, delayed progress bars."""

    def __init__(self) -> None:
        self._said: set[tuple[str, str | None]] = set()

    def warn(self, message: str, hint: str | None = None) -> None:
        # verify records several runs of one recipe: each would repeat the same warning
        if (message, hint) not in self._said:
            self._said.add((message, hint))
            warn(message, hint)

    def finished(self, outcome: Any) -> None:
        sys.stderr.write(run_summary(outcome.manifest) + "\n")
        sys.stderr.flush()

    @contextlib.contextmanager
    def progress(self, label: str) -> Iterator[Callable[[int, int], None]]:
        console = err_console()
        if not console.is_terminal:
            yield lambda done, total: None
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        state = {"done": 0, "total": 0}
        lock = threading.Lock()
        started = time.monotonic()
        bar: dict[str, Any] = {}

        def update(done: int, total: int) -> None:
            with lock:
                state["done"], state["total"] = done, total
                if "p" not in bar and time.monotonic() - started > PROGRESS_AFTER_S:
                    p = Progress(f"[dim]repro:[/] {escape(label)}", BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                                 transient=True)
                    p.start()
                    bar["p"], bar["task"] = p, p.add_task(label, total=total or None)
                if "p" in bar:
                    bar["p"].update(bar["task"], completed=done, total=total or None)

        try:
            yield update
        finally:
            if "p" in bar:
                bar["p"].stop()


def run_summary(m: manifest.Manifest) -> str:
    """The line `repro run` ends with: plain text, since rich costs ~40 ms to import."""
    r = m.run
    status = r.status
    if r.status == "failed" and r.exit_code is not None:
        status = f"failed (exit {r.exit_code}{', ' + r.signal if r.signal else ''})"
    of = f" (replay of {r.replay_of})" if r.replay_of else ""
    d = m.distributed
    if d is not None and d.node_rank is not None:  # one node's line of a multi-node run
        of += f" (node {d.node_rank} of job {d.job}" + \
            (", INCOMPLETE" if d.complete is False else "") + ")"
    return (f"repro: run {r.run_id}{of} {status} in {_duration(r.duration_s)}, "
            f"seed {m.seed.value};"
            f" details: repro show {r.run_id}")


def hazards(found: Sequence[Any]) -> None:
    c = out_console()
    real = [h for h in found if getattr(h, "severity", "hazard") != "note"]
    for h in found:
        label = "[bold yellow]hazard[/]" if h in real else "[cyan]note[/]"
        c.print(f"{label} [dim]({escape(h.code)})[/] {escape(h.message)}")
        c.print(f"  [yellow]hint:[/] {escape(h.hint)}")
    notes = len(found) - len(real)
    if not real:
        c.print("[green]no determinism hazards found[/]"
                + (f" ({plural(notes, 'note')} on what `repro run` takes care of)"
                   if notes else ""))
        return
    c.print(f"{plural(len(real), 'hazard')} found" + (f", {plural(notes, 'note')}"
                                                     if notes else ""))


def plural(n: int, noun: str, many: str | None = None) -> str:
    """`1 file`, `2 files`: the count and the noun in the right number."""
    return f"{n} {noun if n == 1 else many or noun + 's'}"


def confirm_command(command: str) -> bool:
    """Ask before running a command that came from a manifest recorded elsewhere."""
    c = err_console()
    c.print("[bold yellow]this run was not recorded in this clone.[/] It will execute:")
    c.print(f"  {escape(command)}")
    c.print("run it? \\[y/N] ", end="")
    try:
        answer = input()
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


_VERDICT_STYLE = {"bitwise": "bold green", "within-tolerance": "bold yellow",
                  "not-reproduced": "bold red"}
_STATUS_STYLE = {"same": "green", "within-tolerance": "yellow", "different": "red",
                 "missing": "red"}


def verify_report(report: Any) -> None:
    """The verdict, every check with its status, and what differs by how much."""
    from rich.table import Table

    c = out_console()
    style = _VERDICT_STYLE.get(report.verdict, "bold")
    c.print(f"[{style}]{escape(report.verdict)}[/]  run {escape(report.run)}"
            + (f"  ({plural(len(report.runs), 'new run')}: {escape(', '.join(report.runs))})"
               if report.runs else ""))
    t = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("status", "kind", "name", "detail"):
        t.add_column(col, overflow="fold")
    for check in report.checks:
        st = _STATUS_STYLE.get(check.status, "")
        t.add_row(f"[{st}]{escape(check.status)}[/]", escape(check.kind), escape(check.name),
                  escape(check.detail))
    c.print(t)
    for cond, verdict in report.conditions.items():
        mark = "breaks reproduction" if verdict == "not-reproduced" else "does not matter"
        c.print(f"vary {escape(cond)}: [{_VERDICT_STYLE.get(verdict, 'bold')}]"
                f"{escape(verdict)}[/] ({mark})")


# ---------------------------------------------------------------------------- show


def _pulled_from(run_dir: str | None) -> str | None:
    """The remote a pulled run came from (its `pulled.json`), or None."""
    if run_dir is None:
        return None
    from repro.record import store

    try:
        with open(os.path.join(run_dir, store.PULLED), "rb") as f:
            doc = json.loads(f.read(4096))
    except (OSError, ValueError):
        return None
    return str(doc.get("remote") or "a remote") if isinstance(doc, dict) else None


PARAMS_SHOWN = 30  # parameter rows in `repro show` (a flattened config can have hundreds)


def show_run(m: manifest.Manifest, run_dir: str | None,
             series: Mapping[str, Sequence[float]] | None = None) -> None:
    from rich.table import Table

    c = out_console()
    r = m.run
    title = f"[bold]{escape(r.run_id)}[/]" + (f"  {escape(r.name)}" if r.name else "")
    c.print(title)
    rows: list[tuple[str, str]] = [
        ("status", f"{r.status} (exit {r.exit_code})" if r.exit_code is not None else r.status),
        ("command", _argv_text(m.command.argv) + (f"   (in {m.command.cwd})"
                                                  if m.command.cwd != "." else "")),
        ("started", f"{r.started_at}  ({_duration(r.duration_s)})"),
        ("seed", f"{m.seed.value} ({m.seed.source})"),
        ("determinism", _determinism_text(m.determinism)),
        ("commit", f"{m.code.commit}" + (f" on {m.code.branch}" if m.code.branch else "")
         + (" + uncommitted changes" if m.code.dirty else "")),
    ]
    for call in _script_seeds(m.determinism):
        rows.append(("script seed", call))
    if m.group is not None:
        grp = m.group
        rows.append(("group", f"group:{grp.id}" + (f" ({grp.name})" if grp.name else "")
                     + f", member {grp.index + 1} of {grp.size}, group seed {grp.seed}"))
    if r.replay_of:
        rows.append(("replay of", r.replay_of + ("  (by verify: never `latest`)"
                                                 if r.started_by == "verify" else "")))
    if r.signal:
        rows.append(("signal", r.signal))
    if m.code.remote:
        rows.append(("remote", m.code.remote))
    pulled = _pulled_from(run_dir)
    if pulled:
        rows.append(("pulled from", pulled + "  (by `repro pull`: never `latest`)"))
    env = m.environment
    py = env.python
    if py is not None and py.to_dict():
        rows.append(("python", f"{py.version} {py.executable}"))
    lock = env.lockfile
    if lock is not None:
        state = "matches" if lock.matches else "DOES NOT MATCH"
        rows.append(("lockfile", f"{lock.path} ({state})"))
    elif "lockfile" in env.keys:  # recorded as null: no lockfile
        rows.append(("lockfile", "none (run with --allow-unlocked)"))
    rows.append(("packages", str(len(env.packages))))
    if env.container is not None:
        box_ = env.container
        image = box_.image or "image not exposed (--image NAME@DIGEST)"
        digest = f"@{box_.digest}" if box_.digest else ""
        rows.append(("container", f"{box_.runtime or 'image'}: {image}{digest}"))
    if env.conda is not None:
        rows.append(("conda", f"{env.conda.name} ({env.conda.prefix}), "
                              f"{plural(len(env.conda.packages), 'package')}"))
    hw = m.hardware
    if hw.cpu:
        rows.append(("cpu", f"{hw.cpu.get('model')} ({hw.cpu.get('logical_cores')} threads)"))
    for g in hw.gpus:
        rows.append(("gpu", f"{g.name} {g.uuid}"))
    params = m.params
    for k, v in list(params.values.items())[:PARAMS_SHOWN]:
        source = params.sources.get(k)
        rows.append(("param", f"{_cell(k)} = {_cell(v)}" + (
            f"  ({_cell(source)})" if source != "argv" else "")))
    if len(params.values) > PARAMS_SHOWN:
        rows.append(("param", f"… and {len(params.values) - PARAMS_SHOWN} more (show --json)"))
    for k, words in params.ambiguous.items():
        rows.append(("param", f"{_cell(k)}: ambiguous in the command line: "
                              f"{_argv_text([str(w) for w in words])}"))
    if m.distributed is not None:
        rows.extend(_distributed_rows(m.distributed))
    for label, section in (("input", m.data), ("output", m.outputs)):
        for path, e in section.items():
            rows.append((label, f"{path}  {_entry_text(e)}"))
            if e.stats:
                rows.append(("", _stats_text(e.stats)))
    for k, v in m.metrics.final.items():
        rows.append(("metric", f"{k} = {v}"))
    for k, values in (series or {}).items():
        if len(values) > 1:
            rows.append(("curve", f"{k}  {sparkline(values)}  {_num(values[0])} → "
                                  f"{_num(values[-1])}"))
    if r.tags:
        rows.append(("tags", ", ".join(f"{k}={v}" for k, v in r.tags.items())))
    if r.note:
        rows.append(("note", r.note))
    if run_dir:
        rows.append(("files", run_dir))
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for k, v in rows:
        t.add_row(escape(k), escape(v))
    c.print(t)


def _distributed_rows(d: manifest.Distributed) -> list[tuple[str, str]]:
    """`show`'s lines for a multi-node run: the job, one line per member, what disagrees."""
    state = "" if d.complete is None else "complete" if d.complete else "INCOMPLETE"
    world = f", world size {d.world_size}" if d.world_size is not None else ""
    rows = [("job", f"{d.job} ({d.launcher or 'no launcher'}, {plural(d.nnodes or 1, 'node')}"
                    f"{world})" + (f"  {state}" if state else ""))]
    if not d.members and d.node_rank is not None:
        rows.append(("node", f"{d.node_rank} (this record: one member's own)"))
    for x in d.members:
        ranks = ", ".join(str(r) for r in x.ranks) or "-"
        exit_text = f" (exit {x.exit_code})" if x.exit_code is not None else ""
        text = (f"{x.host or '?'}  {x.status}{exit_text}  ranks {ranks}"
                if x.status != "missing" else
                "MISSING" + (f"  (last seen on {x.host})" if x.host else ""))
        if x.gpus:
            text += "  " + ", ".join(x.gpus)
        if x.reason:
            text += f"  ({x.reason})"
        if x.record and x.node_rank != 0:
            text += f"  {x.record}"
        rows.append((f"node {x.node_rank}", text))
    for problem in d.mismatches:
        job = problem.get("node_rank") is None  # the job's world size, not a node's value
        where, of = ("the job", "expected") if job else (f"node {problem.get('node_rank')}",
                                                         "node 0")
        rows.append(("mismatch", f"{where}: {problem.get('key')} "
                                 f"{problem.get('value')!s:.60} ({of}: "
                                 f"{problem.get('expected')!s:.60})"))
    for warning in d.warnings:
        rows.append(("warning", warning))
    return rows


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], low: float | None = None,
              high: float | None = None) -> str:
    """One character per value, from ▁ (`low`, default the lowest) to █ (`high`, default the
    highest); · for nan/inf."""
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    if not finite:
        return "·" * len(values)
    low = min(finite) if low is None else low
    high = max(finite) if high is None else high
    span = high - low
    out = []
    for v in values:
        if v != v or abs(v) == float("inf"):
            out.append("·")
        else:
            out.append(_BARS[0 if span == 0 else round((v - low) / span * (len(_BARS) - 1))])
    return "".join(out)


def _determinism_text(d: manifest.Determinism) -> str:
    level = d.level if "level" in d.keys else "?"
    hook = d.hook or manifest.HookReport()
    if hook.ran is False:
        return f"{level}; hook did NOT run: {hook.reason}"
    seeded = ", ".join(str(s) for s in hook.seeded)
    threads = f", {d.threads} threads" if d.threads is not None else ""
    return f"{level}{threads}" + (f"; seeded {seeded}" if seeded else "")


def _script_seeds(d: manifest.Determinism) -> list[str]:
    """Seeds the script set itself (they override repro's seed from that point on)."""
    out = []
    for s in d.hook.script_seeds if d.hook else ():
        if isinstance(s, Mapping):  # a free-form record of the call
            where = f" at {s['caller']}" if s.get("caller") else ""
            out.append(f"{s.get('call')}({s.get('value')}){where}: overrides repro's seed from there")
    return out


def _stats_text(stats: Mapping[str, Any]) -> str:
    """An input's statistics in one line: `csv: 10,000 rows; 5 columns (2 with nulls)`."""
    if stats.get("error"):
        return f"{stats.get('format')}: no statistics ({stats['error']})"
    if isinstance(stats.get("subdirs"), Mapping):
        classes = stats["subdirs"]
        shown = ", ".join(f"{k} {v:,}" for k, v in list(classes.items())[:6])
        more = f" +{len(classes) - 6} more" if len(classes) > 6 else ""
        tables = stats.get("tables")
        inside = f"; {plural(len(tables), 'table')} inside" if isinstance(tables, Mapping) \
            and tables else ""
        if not classes:  # a flat directory: no class distribution to show
            files = stats.get("files")
            count = f"{files:,} file{'' if files == 1 else 's'}, " if isinstance(files, int) else ""
            return f"{count}no sub-directories{inside}"
        return (f"{plural(len(classes), 'sub-directory', 'sub-directories')}: {shown}{more}"
                f"{inside}")
    found = stats.get("columns")
    columns: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    with_nulls = sum(1 for c in columns.values() if isinstance(c, Mapping) and bool(c.get("nulls")))
    rows = stats.get("rows")
    text = f"{stats.get('format')}: {rows:,} rows" if isinstance(rows, int) else \
        f"{stats.get('format')}:"
    text += f"; {plural(len(columns), 'column')} ({with_nulls} with nulls)"
    return text + ("; partial (out of time)" if stats.get("partial") else "")


def _entry_text(e: manifest.FileEntry) -> str:
    if e.kind == "dir":
        count = plural(e.files, "file") if e.files is not None else "None files"
        stale = e.stale
        extra = (f"; {stale} stale, not this run's"
                 if isinstance(stale, int) and stale else "")
        if isinstance(e.replaced, int) and e.replaced is not True and e.replaced:
            extra += f"; {e.replaced} there before the run, rewritten"
        return f"{e.hash} ({count}, {_size(e.size)}{extra})"
    if e.kind == "symlink":
        return f"-> {e.target}"
    if e.kind == "missing":
        return "missing"
    if e.stale is True:
        return f"stale: not written by this run ({_size(e.size)})"
    before = "; there before the run, rewritten" if e.replaced is True else ""
    return f"{e.hash} ({_size(e.size)}{before})"


def size_text(n: int) -> str:
    """Bytes in binary units, as every view of repro shows them: `812 B`, `3.4 KiB`."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _size(n: Any) -> str:
    return size_text(n) if isinstance(n, int) and not isinstance(n, bool) else "?"


def _argv_text(argv: Sequence[str]) -> str:
    """Shell-quoted, control characters escaped: a manifest from elsewhere must not move the
    cursor or erase lines of `runs`/`show` (ESC sequences in an argv word)."""
    import shlex

    from repro.record import bounded

    return bounded.escape(" ".join(shlex.quote(a) for a in argv))


def _duration(s: Any) -> str:
    if not isinstance(s, (int, float)):
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def _cell(v: Any) -> str:
    """A --columns cell: numbers as repr (0.01, not 0.01000), lists joined, absent as -."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_cell(x) for x in v) + "]"
    from repro.record import bounded

    return bounded.escape(str(v))  # no ESC sequence from a manifest reaches the terminal


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
