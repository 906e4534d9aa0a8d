"""The run table of `repro runs` (rich): one row per run or group, short ids, chosen columns."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from repro.cli.ui import _argv_text, _cell, _duration, _num, err_console, escape, out_console


def runs_table(rows: Sequence[Mapping[str, Any]], all_ids: Sequence[str] = (),
               columns: Sequence[str] = ()) -> None:
    """`all_ids`: every run id in the store, so the short ids shown stay unique references.
    `columns`: parameters and final metrics shown one per column (instead of the metrics)."""
    c = out_console()
    if not rows:
        err_console().print("no runs yet: record one with `repro run -- CMD`")
        return
    from rich.table import Table

    # The id already says when a run started (and `--json` has started_at): the width goes to
    # the command and metrics, the only columns allowed to wrap.
    t = Table(box=None, pad_edge=False, header_style="bold")
    # `--name`: what a group is called by (`repro compare lr-0.1 lr-0.3`), so it is shown
    with_names = any(r.get("name") for r in rows)
    for col in ("run", *(("name",) if with_names else ()), "status", "time", "commit", "seed"):
        t.add_column(col, no_wrap=col != "name", overflow="fold", max_width=None)
    t.add_column("command", overflow="fold", ratio=2, min_width=12)
    with_metrics = not columns and any(r.get("metrics") for r in rows)
    short = short_ids([str(r["run_id"]) for r in rows if not r.get("is_group")], all_ids)
    if with_metrics:
        t.add_column("metrics", overflow="fold", ratio=1)
    from repro.judge import query

    cells = {name: [_cell(query.value_of(r, name)) for r in rows] for name in columns}
    for name in columns:  # values are never cut: the command column folds instead
        width = min(24, max(len(name), *(len(c) for c in cells[name])))
        t.add_column(escape(name), justify="right", min_width=width, overflow="fold")
    for i, r in enumerate(rows):
        status = str(r["status"])
        style = {"succeeded": "green", "failed": "red", "interrupted": "yellow",
                 "abandoned": "magenta", "running": "cyan", "unreadable": "red"}.get(status, "")
        commit = (str(r["commit"] or "")[:8] + ("*" if r.get("dirty") else "")) or "-"
        # One parenthesis of marks: "(pulled, 2 nodes)", each in its own style.
        marks: list[tuple[str, str]] = []
        # One of verify's replays: listed, marked, never `latest` (`show` names what it replays).
        if r.get("started_by") == "verify":
            marks.append(("verify", "dim"))
        # Brought by `repro pull`: a teammate's run, listed, never `latest`.
        if r.get("pulled"):
            marks.append(("pulled", "dim"))
        nodes = r.get("distributed")
        if isinstance(nodes, Mapping):  # one row per multi-node run, however many nodes
            present, total = nodes.get("present"), nodes.get("nnodes")
            if nodes.get("complete") is False:
                marks.append((f"{present}/{total} nodes", "red"))
            elif nodes.get("complete") is None and status != "running" and total != 1:
                # never merged: node 0 did not finish (the record is another node's)
                marks.append((f"{total} nodes, no record from node 0", "red"))
            else:
                marks.append((f"{total} node{'' if total == 1 else 's'}", "dim"))
        edge = "red" if any(style == "red" for _, style in marks) else "dim"
        mark = (f" [{edge}]([/]" + f"[{edge}], [/]".join(f"[{style}]{escape(text)}[/]"
                                                        for text, style in marks)
                + f"[{edge}])[/]") if marks else ""
        t.add_row(
            escape(short.get(str(r["run_id"]), str(r["run_id"]))),
            *([escape(str(r.get("name") or ""))] if with_names else []),
            (f"[{style}]{escape(status)}[/]" if style else escape(status)) + mark,
            _duration(r.get("duration_s")), escape(commit),
            escape(str(r.get("seed") if r.get("seed") is not None else "-")),
            escape(_argv_text(_short_program(r.get("command") or []))),
            *([escape(_metrics_text(r.get("metrics") or {}))] if with_metrics else []),
            *[escape(cells[name][i]) for name in columns],
        )
    c.print(t)


def short_ids(shown: Sequence[str], all_ids: Sequence[str], least: int = 15) -> dict[str, str]:
    """Each id's shortest prefix (at least the `YYYYMMDDTHHMMSS` timestamp) that names only it,
    like git's abbreviated hashes: any of them works as a RUN reference."""
    everyone = sorted(set(all_ids) | set(shown))
    out = {}
    for run_id in shown:
        n = least
        while n < len(run_id) and sum(1 for other in everyone if other[:n] == run_id[:n]) > 1:
            n += 1
        out[run_id] = run_id[:n]
    return out


def _short_program(argv: Sequence[str]) -> list[str]:
    """`/venv/bin/python t.py` -> `python t.py` for listings; `show` has the full argv."""
    return [os.path.basename(argv[0]), *argv[1:]] if argv else []


def _metrics_text(final: Mapping[str, Any], most: int = 3) -> str:
    items = list(final.items())[:most]
    text = " ".join(f"{k}={_num(v)}" for k, v in items)
    return text + (" …" if len(final) > most else "")
