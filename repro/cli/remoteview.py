"""Rendering of `repro push` and `repro pull`: one summary on stdout, details on stderr."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from repro.cli import ui

if TYPE_CHECKING:
    from repro.commands.pull import PullResult
    from repro.commands.push import PushResult




def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def push_summary(result: PushResult, label: str) -> None:
    for run_id, reason in result.skipped:
        ui.info(f"skipped {run_id}: {reason}")
    if result.dry_run:
        for run_id in result.pushed:
            sys.stdout.write(f"would push {run_id}\n")
        sys.stdout.write(f"would push {_runs(len(result.pushed))} "
                         f"({ui.size_text(result.planned_bytes)} before deduplication) to "
                         f"{label}; {_runs(len(result.already))} already there\n")
        return
    if not (result.pushed or result.already or result.skipped or result.conflicts):
        sys.stdout.write(f"nothing to push: every run here is already at {label}\n")
        return
    for run_id in result.pushed:
        sys.stdout.write(f"pushed {run_id}\n")
    sys.stdout.write(
        f"pushed {_runs(len(result.pushed))} to {label}: uploaded {result.uploaded_files} "
        f"file(s), {ui.size_text(result.uploaded_bytes)}; {result.reused_files} file(s) "
        "already there"
        + (f"; {len(result.already)} run(s) were already pushed" if result.already else "")
        + "\n")


def pull_summary(result: PullResult, label: str) -> None:
    for run_id in result.pulled:
        sys.stdout.write(f"pulled {run_id}\n")
    sys.stdout.write(
        f"pulled {_runs(len(result.pulled))} from {label}: {result.downloaded_files} file(s), "
        f"{ui.size_text(result.downloaded_bytes)}"
        + (f"; {len(result.already)} already here" if result.already else "") + "\n")
