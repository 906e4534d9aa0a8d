"""Rendering of a `compare.DiffReport`: rich tables for the terminal, markdown for pull requests.

Owns how a diff looks. Must not compare anything (compare.py decides what differs and what
is noise) nor read files; it writes only to the console it is given. Values go into rich as
`Text`, never as markup, so a `[` in a path or argv is printed as is.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from repro.cli.ui import size_text
from repro.judge import compare
from repro.record import bounded

VALUE_WIDTH = 60  # a cell longer than this is cut to a window around the first difference
LIST_LIMIT = 10  # paths listed per changed directory or commit before "… and N more"
PACKAGE_LIMIT = 40  # package rows before "… and N more packages"
RELATIVE_MAX = 100.0  # a relative change of 10,000% or more is from a value near zero: n/a

_A, _B = "red", "green"
_HASH_HEX = 12  # blake3:9fceb02d0ae5… is enough to tell hashes apart by eye


# ---------------------------------------------------------------------------------------------
# Formatting shared by the terminal and markdown.


def format_value(value: Any, key: str = "") -> str:
    """One value as a short single line: hashes shortened, argv shell-quoted, entries summed up."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):  # control characters escaped: no ESC from a manifest
        return bounded.escape(_short_hash(value).replace("\n", " "))
    if isinstance(value, Mapping):
        return _mapping(value)
    if isinstance(value, (list, tuple)):
        if key == "argv" and all(isinstance(v, str) for v in value):
            return bounded.escape(shlex.join(value))
        return ", ".join(format_value(v) for v in value) if value else "(none)"
    return str(value)


def _float(v: float) -> str:
    if math.isnan(v):
        return "nan"
    return repr(v)  # shortest round-trip form: 0.50001 and 0.5 never print alike


def _short_hash(s: str) -> str:
    algo, sep, hexpart = s.partition(":")
    if sep and algo.isalnum() and len(hexpart) > _HASH_HEX + 4 and _is_hex(hexpart):
        return f"{algo}:{hexpart[:_HASH_HEX]}…"
    if len(s) == 40 and _is_hex(s):  # a git commit
        return s[:_HASH_HEX]
    return s


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in s)


def _mapping(m: Mapping[str, Any]) -> str:
    kind = m.get("kind")
    if kind == "missing":
        return "missing"
    if kind == "symlink":
        return f"symlink → {m.get('target')}"
    if "hash" in m and kind in ("file", "dir", None):
        parts = [format_value(m.get("hash"))]
        if kind == "dir":
            parts.insert(0, "dir")
            if isinstance(m.get("files"), int):
                parts.append(f"{m['files']:,} file{'s' * (m['files'] != 1)}")
        if isinstance(m.get("size"), int):
            parts.append(size_text(m["size"]))
        return "  ".join(parts)
    return ", ".join(f"{k}={format_value(v)}" for k, v in m.items())




def pair_text(a: Any, b: Any, key: str = "", width: int = VALUE_WIDTH) -> tuple[str, str]:
    """Both sides as text; when one is too long, the same window of each around where they part."""
    ta, tb = format_value(a, key), format_value(b, key)
    if len(ta) <= width and len(tb) <= width:
        return ta, tb
    first = next((i for i, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y),
                 min(len(ta), len(tb)))
    start = max(0, first - width // 3)
    if key == "argv":
        word = _argv_difference(a, b)
        if word is not None:  # shown where the command differs, past a new --rdzv-id/port
            at_a, at_b = (max(0, len(shlex.join(v[:word])) + (1 if word else 0) - width // 3)
                          for v in (a, b))
            return _window(ta, at_a, width), _window(tb, at_b, width)
    return _window(ta, start, width), _window(tb, start, width)


def _argv_difference(a: Any, b: Any) -> int | None:
    """The first word where two command lines differ apart from the launcher's rendezvous
    values (job id, address, port), when they differ there too; None otherwise."""
    if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
            and all(isinstance(w, str) for w in (*a, *b))):
        return None
    from repro.capture import cmdline

    na, nb = cmdline.without_rendezvous(a), cmdline.without_rendezvous(b)
    if na == nb or (na == list(a) and nb == list(b)):
        return None
    return next((i for i, (x, y) in enumerate(zip(na, nb, strict=False)) if x != y),
                min(len(na), len(nb)))


def _window(s: str, start: int, width: int) -> str:
    if len(s) <= width:
        return s
    start = min(start, max(0, len(s) - width))
    body = s[start:start + width]
    return ("…" if start > 0 else "") + body + ("…" if start + width < len(s) else "")


def _delta(v: Any, relative: bool = False) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "—"
    if relative:
        if math.isfinite(v) and abs(v) >= RELATIVE_MAX:
            return "n/a"  # from a value near zero: +61191386.536% says nothing
        return f"{v:+.3%}" if math.isfinite(v) else _float(v)
    return f"{v:+.6g}" if math.isfinite(v) else _float(v)


def _tol_mark(c: compare.Change) -> str:
    # Only the exception is marked: a change beyond tolerance is what every other row is.
    return "≈ within tolerance" if c.within_tolerance else ""


def _key_label(section: str) -> str:
    return "path" if section in ("data", "outputs") else "key"


def _shown(groups: Sequence[tuple[str, str, list[str]]]) -> int:
    """How many paths of each group to list: about LIST_LIMIT in all, at least 3 per group."""
    return max(3, LIST_LIMIT // max(1, len(groups)))


def _file_groups(c: compare.Change) -> list[tuple[str, str, list[str]]]:
    """(mark, label, paths) for a change that carries files: dirs, commits, untracked files."""
    files = c.detail.get("files")
    if isinstance(files, Mapping):
        return [(mark, label, list(files.get(label, ())))
                for mark, label in (("+", "added"), ("-", "removed"), ("~", "modified"))
                if files.get(label)]
    if isinstance(files, list) and files:
        return [("", "changed between commits",
                 [f"{f.get('status', '?')} {f.get('path')}" for f in files])]
    return []


def _file_summary(c: compare.Change) -> str:
    groups = _file_groups(c)
    if c.key == "commit":
        n = len(groups[0][2]) if groups else 0
        return f"{n} file{'s' * (n != 1)} changed between commits"
    return ", ".join(f"{len(paths):,} {label}" for _, label, paths in groups)


def _visible(report: compare.DiffReport, show_all: bool,
             sections: Sequence[str]) -> list[compare.Section]:
    names = compare.select_sections(sections)
    # A section asked for by name is shown whatever it holds ("same", its not-counted rows).
    return [report.sections[n] for n in names
            if show_all or sections or report.sections[n].changes]


# Environment changes listed as package tables: (key prefix, first column's title).
_PACKAGE_TABLES = (("packages.", "package"), ("conda.packages.", "conda package"))


def _split_packages(s: compare.Section
                    ) -> tuple[list[compare.Change], list[tuple[str, str, list[compare.Change]]]]:
    """(other changes, [(prefix, title, package changes)]) for the package tables."""
    if s.name != "environment":
        return list(s.changes), []
    tables = [(prefix, title, [c for c in s.changes if c.key.startswith(prefix)])
              for prefix, title in _PACKAGE_TABLES]
    listed = {id(c) for _, _, changes in tables for c in changes}
    return [c for c in s.changes if id(c) not in listed], [t for t in tables if t[2]]


def package_text(value: Any) -> str:
    """A pip version as is; a conda package as `version build (channel)`."""
    if isinstance(value, Mapping) and "version" in value:
        text = " ".join(format_value(value[k]) for k in ("version", "build") if value.get(k))
        return text + (f" ({format_value(value['channel'])})" if value.get("channel") else "")
    return format_value(value)


def stats_lines(c: compare.Change) -> list[tuple[str, str]]:
    """(path, how its statistics moved) for a changed input, and for each table file inside a
    changed directory (`data/train.csv` under `data`), at most LIST_LIMIT of those."""
    stats = c.detail.get("stats")
    if not isinstance(stats, Mapping):
        return []
    out = []
    own = stats_text(stats)
    if own:
        out.append((c.key, own))
    tables = stats.get("tables")
    for rel, moved in list(tables.items() if isinstance(tables, Mapping) else ())[:LIST_LIMIT]:
        if isinstance(moved, Mapping) and (text := stats_text(moved)):
            out.append((f"{c.key.rstrip('/')}/{rel}", text))
    return out


def stats_text(stats: Mapping[str, Any]) -> str:
    """How a data input's statistics moved, in one line: `10,000 → 9,874 rows; column `label`
    added; `x` int → float; nulls in `y` 3 → 5`."""
    parts: list[str] = []
    cut = " (partial count)" if stats.get("partial") else ""

    def number(v: Any) -> str:
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else format_value(v)

    def names(items: Sequence[str]) -> str:
        shown = ", ".join(f"`{bounded.escape(n)}`" for n in items[:5])
        return shown + (f" +{len(items) - 5} more" if len(items) > 5 else "")

    if "format" in stats:
        a, b = stats["format"]
        parts.append(f"format {format_value(a)} → {format_value(b)}")
    if "rows" in stats:
        a, b = stats["rows"]
        parts.append(f"{number(a)} → {number(b)} rows{cut}")
    if "files" in stats:
        a, b = stats["files"]
        parts.append(f"{number(a)} → {number(b)} files")
    for key, verb in (("columns_added", "added"), ("columns_removed", "removed")):
        if stats.get(key):
            cols = list(stats[key])
            parts.append(f"column{'s' * (len(cols) != 1)} {names(cols)} {verb}")
    for name, (a, b) in list(stats.get("types", {}).items())[:5]:
        parts.append(f"`{bounded.escape(name)}` {format_value(a)} → {format_value(b)}")
    for name, (a, b) in list(stats.get("nulls", {}).items())[:5]:
        parts.append(f"nulls in `{bounded.escape(name)}` {number(a)} → {number(b)}")
    for key, verb in (("subdirs_added", "added"), ("subdirs_removed", "removed")):
        for name, n in list(stats.get(key, {}).items())[:5]:
            parts.append(f"class `{bounded.escape(name)}` {verb} ({number(n)} files)")
    for name, (a, b) in list(stats.get("subdirs", {}).items())[:5]:
        parts.append(f"class `{bounded.escape(name)}` {number(a)} → {number(b)} files")
    return "; ".join(parts)


_HEADER_ORDER = ("name", "started_at", "finished_at", "duration_s", "host", "pid")


def _header_info(report: compare.DiffReport, show_all: bool = True) -> list[compare.Change]:
    """Run-level facts that differ (never counted), with the host, in reading order.

    Without `show_all` only the name: times, host and pid differ between any two runs.
    """
    hardware = report.sections.get("hardware")
    host = [c for c in hardware.info if c.key == "host"] if hardware else []
    rank = {k: i for i, k in enumerate(_HEADER_ORDER)}
    rows = [c for c in [*report.info, *host] if c.key != "run_id"
            and (show_all or c.key == "name")]
    return sorted(rows, key=lambda c: rank.get(c.key, len(rank)))


# ---------------------------------------------------------------------------------------------
# Terminal.


def render(report: compare.DiffReport, console: Console, *, show_all: bool = False,
           sections: Sequence[str] = (),
           curves: tuple[Mapping[str, Sequence[float]], Mapping[str, Sequence[float]]]
           | None = None) -> None:
    """The verdict, the two runs, then a table per section that differs (every one with show_all).

    `sections` limits the output to the named sections (errors.UsageError for unknown names).
    `curves`: each run's metric series (see metrics.series_values), drawn on one scale under
    the metrics section.
    """
    visible = _visible(report, show_all, sections)
    style = "bold red" if report.changed else "bold green"
    console.print(Text(report.verdict, style=style))
    console.print(_runs_table(report, show_all))
    for s in visible:
        console.print()
        _render_section(s, console)
    if curves and any(s.name == "metrics" for s in visible):
        _render_curves(curves, console)


def _runs_table(report: compare.DiffReport, show_all: bool) -> Table:
    t = _table("run")
    t.add_row(Text("id"), Text(report.a or "—", style=_A), Text(report.b or "—", style=_B))
    for c in _header_info(report, show_all):
        a, b = pair_text(c.a, c.b, c.key)
        t.add_row(Text(c.key, style="dim"), Text(a, style="dim"), Text(b, style="dim"))
    return t


def _table(first: str, *extra: str) -> Table:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, header_style="bold")
    t.add_column(first, no_wrap=True, overflow="fold", max_width=40)
    t.add_column("a", overflow="fold")
    t.add_column("b", overflow="fold")
    for col in extra:
        t.add_column(col, no_wrap=True)
    return t


def _render_section(s: compare.Section, console: Console) -> None:
    if not s.changes and not s.info:
        console.print(Text.assemble((s.name, "bold"), "  ", ("same", "green")))
        return
    status = ("changed", "bold red") if s.changed else ("same", "green")
    console.print(Text.assemble((s.name, "bold"), "  ", status))
    if s.name == "metrics":
        _render_metrics(s, console)
        return
    if s.name == "params":
        _render_params(s, console)
        return
    plain, tables = _split_packages(s)
    if plain or s.info:
        t = _table(_key_label(s.name))
        for c in plain:
            a, b = pair_text(c.a, c.b, c.key)
            t.add_row(Text(c.key), Text(a, style=_A), Text(b, style=_B))
        _info_rows(t, s.info)
        console.print(t)
    for c in s.info:  # outputs the same but for Hydra's clock-named directory: say so
        why = c.detail.get("hydra")
        if isinstance(why, str):
            console.print(Text.assemble("  ", (c.key, "bold"), ": ", (why, "dim")))
    for c in plain:
        for path, text in stats_lines(c):
            console.print(Text.assemble("  ", (path, "bold"), ": ", text))
        _render_files(c, console)
    for prefix, title, packages in tables:
        t = _table(title)
        for c in packages[:PACKAGE_LIMIT]:
            t.add_row(Text(c.key.removeprefix(prefix)), Text(package_text(c.a), style=_A),
                      Text(package_text(c.b), style=_B))
        console.print(t)
        if len(packages) > PACKAGE_LIMIT:
            console.print(Text(f"  … and {len(packages) - PACKAGE_LIMIT} more {title}s",
                               style="dim"))


def info_label(c: compare.Change) -> str:
    """`key (not counted)`, or `key (not recorded in a)` for what an earlier repro did not
    record."""
    side = c.detail.get("not_recorded")
    return f"{c.key} (not recorded in {side})" if side else f"{c.key} (not counted)"


def _info_rows(t: Table, info: Iterable[compare.Change], cells: int = 0) -> None:
    for c in info:
        a, b = pair_text(c.a, c.b, c.key)
        t.add_row(Text(info_label(c), style="dim"), Text(a, style="dim"),
                  Text(b, style="dim"), *[Text("")] * cells)


def _render_files(c: compare.Change, console: Console) -> None:
    groups = _file_groups(c)
    if not groups:
        return
    console.print(Text.assemble("  ", (c.key, "bold"), ": ", _file_summary(c)))
    colour = {"+": _B, "-": _A, "~": "yellow", "": ""}
    limit = _shown(groups)
    for mark, label, paths in groups:
        for p in paths[:limit]:
            console.print(Text(f"    {mark} {p}" if mark else f"    {p}", style=colour[mark]))
        if len(paths) > limit:
            console.print(Text(f"    … and {len(paths) - limit:,} more {label}", style="dim"))


def _render_curves(curves: tuple[Mapping[str, Sequence[float]], Mapping[str, Sequence[float]]],
                   console: Console) -> None:
    """Each metric both series logged, a over b on one scale (▁ the lowest of both)."""
    from repro.cli.ui import sparkline

    a, b = curves
    names = [n for n in a if n in b and len(a[n]) > 1 and len(b[n]) > 1]
    if not names:
        return
    console.print()
    console.print(Text.assemble(("curves", "bold"), "  ", ("a over b, one scale per metric",
                                                           "dim")))
    width = max(len(n) for n in names)
    for n in names:
        both = [v for v in (*a[n], *b[n]) if v == v and abs(v) != float("inf")]
        low, high = (min(both), max(both)) if both else (0.0, 0.0)
        console.print(Text.assemble(f"{n:<{width}}  a ", (sparkline(a[n], low, high), _A)))
        console.print(Text.assemble(f"{'':<{width}}  b ", (sparkline(b[n], low, high), _B)))


def param_line(c: compare.Change) -> tuple[str, str, str]:
    """(mark, `key: `, `a → b`): `lr: 0.01 → 0.02`; `+ dropout: 0.1` added, `- warmup: 100`
    removed; a key read two ways from the command line shows its raw words."""
    a, b = (_param_value(v) for v in (c.a, c.b))
    if len(a) > VALUE_WIDTH or len(b) > VALUE_WIDTH:
        a, b = pair_text(a, b)
    if c.kind == "added":
        return "+", f"{c.key}: ", b
    if c.kind == "removed":
        return "-", f"{c.key}: ", a
    return "", f"{c.key}: ", f"{a} → {b}"


def _param_value(value: Any) -> str:
    if isinstance(value, Mapping) and set(value) == {"ambiguous"}:
        words = value["ambiguous"]
        raw = shlex.join(words) if isinstance(words, list) and all(
            isinstance(w, str) for w in words) else format_value(words)
        return f"{bounded.escape(raw)} (ambiguous)"
    return format_value(value)


def _param_info(c: compare.Change) -> str:
    if c.key == "recorded":  # one run predates parameter capture
        side = "a" if c.a is None else "b"
        return f"run {side} has no params section (recorded before repro captured them)"
    a, b = pair_text(c.a, c.b)
    return f"{c.key} (not counted): {a} → {b}"


def _render_params(s: compare.Section, console: Console) -> None:
    colour = {"+": _B, "-": _A, "": ""}
    for c in s.changes:
        mark, key, text = param_line(c)
        console.print(Text.assemble("  ", (f"{mark} " if mark else "", colour[mark]),
                                    (key, "bold"), text))
    for c in s.info:
        console.print(Text(f"  {_param_info(c)}", style="dim"))


def _render_metrics(s: compare.Section, console: Console) -> None:
    t = _table("metric", "delta", "rel delta", "")
    for c in s.changes:
        a, b = pair_text(c.a, c.b, c.key, width=30)
        style = "dim" if c.within_tolerance else ""
        t.add_row(Text(c.key, style=style), Text(a, style=_A), Text(b, style=_B),
                  Text(_delta(c.detail.get("delta"))),
                  Text(_delta(c.detail.get("rel_delta"), relative=True)),
                  Text(_tol_mark(c), style="green" if c.within_tolerance else "red"))
    _info_rows(t, s.info, cells=3)
    console.print(t)


# ---------------------------------------------------------------------------------------------
# Markdown (GitHub-flavoured), for a pull-request comment.


def markdown(report: compare.DiffReport, *, show_all: bool = False,
             sections: Sequence[str] = ()) -> str:
    """The same content as `render`, as GitHub-flavoured markdown."""
    visible = _visible(report, show_all, sections)
    out: list[str] = [f"**repro diff**: {_md_text(report.verdict)}", ""]
    rows = [["id", _md_code(report.a or "—"), _md_code(report.b or "—")]]
    rows += [[f"{_md_text(c.key)} _(not counted)_", *map(_md_code, pair_text(c.a, c.b, c.key))]
             for c in _header_info(report, show_all)]
    out += _md_table(["run", "a", "b"], rows)
    for s in visible:
        out.append("")
        out += _md_section(s)
    return "\n".join(out) + "\n"


def _md_section(s: compare.Section) -> list[str]:
    if not s.changes and not s.info:
        return [f"#### {s.name}: same"]
    out = [f"#### {s.name}: {'changed' if s.changed else 'same'}", ""]
    info = [[_md_text(c.key) + " _(" + info_label(c).removeprefix(c.key + " (")[:-1] + ")_",
             *map(_md_code, pair_text(c.a, c.b, c.key))] for c in s.info]
    if s.name == "params":
        lines = []
        for c in s.changes:
            mark, key, text = param_line(c)
            label = {"+": " _(added)_", "-": " _(removed)_"}.get(mark, "")
            lines.append(f"- {_md_text(key)}{_md_code(text)}{label}")
        lines += [f"- {_md_text(_param_info(c))}" for c in s.info]
        return out + lines
    if s.name == "metrics":
        rows = [[_md_text(c.key), *map(_md_code, pair_text(c.a, c.b, c.key, width=30)),
                 _md_text(_delta(c.detail.get("delta"))),
                 _md_text(_delta(c.detail.get("rel_delta"), relative=True)),
                 _md_text(_tol_mark(c))] for c in s.changes]
        return out + _md_table(["metric", "a", "b", "delta", "rel delta", ""],
                               rows + [[*r, "", "", ""] for r in info])
    plain, tables = _split_packages(s)
    rows = [[_md_text(c.key), *map(_md_code, pair_text(c.a, c.b, c.key))] for c in plain]
    if rows or info:
        out += _md_table([_key_label(s.name), "a", "b"], rows + info)
    for c in s.info:  # as in the terminal: why a Hydra output is not counted
        why = c.detail.get("hydra")
        if isinstance(why, str):
            out += ["", f"{_md_code(c.key)}: {_md_text(why)}"]
    for c in plain:
        for path, text in stats_lines(c):
            out += ["", f"{_md_code(path)}: {_md_stats(text)}"]
        out += _md_files(c)
    for prefix, title, packages in tables:
        out += [*([""] if rows or info or out[-1] else []), *_md_table([title, "a", "b"], [
            [_md_text(c.key.removeprefix(prefix)), _md_code(package_text(c.a)),
             _md_code(package_text(c.b))] for c in packages[:PACKAGE_LIMIT]])]
        if len(packages) > PACKAGE_LIMIT:
            out += ["", f"… and {len(packages) - PACKAGE_LIMIT} more {title}s"]
    return out


def _md_stats(text: str) -> str:
    """stats_text's line for markdown: its backticked names stay code, the rest is escaped."""
    pieces = text.split("`")
    return "".join(_md_code(p) if i % 2 else _md_text(p) for i, p in enumerate(pieces))


def _md_files(c: compare.Change) -> list[str]:
    groups = _file_groups(c)
    if not groups:
        return []
    out = ["", f"<details><summary>{_html(c.key)}: {_html(_file_summary(c))}</summary>", ""]
    limit = _shown(groups)
    for mark, label, paths in groups:
        out += [f"- {_md_code(f'{mark} {p}' if mark else p)}" for p in paths[:limit]]
        if len(paths) > limit:
            out.append(f"- … and {len(paths) - limit:,} more {label}")
    return [*out, "", "</details>"]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    return [line(header), line("---" for _ in header), *(line(r) for r in rows)]


def _md_code(s: str) -> str:
    """A code span safe inside a table cell: pipes escaped, fence longer than any backtick run."""
    if s in ("", "—"):
        return s or " "
    s = s.replace("|", "\\|")
    longest = 0
    run = 0
    for ch in s:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _md_text(s: str) -> str:
    """Plain text with markdown's punctuation escaped (paths and metric names are free text)."""
    escaped = "".join("\\" + ch if ch in "\\`*_[]<>#|~" else ch for ch in s)
    return escaped.replace("\n", " ")


def _html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
