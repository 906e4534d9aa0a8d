"""Rendering of `repro push` and `repro pull`: one summary on stdout, details on stderr."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from repro.cli import ui

if TYPE_CHECKING:
    from repro.commands.pull import PullResult
    from repro.commands.push import PushResult


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def push_summary(result: PushResult, label: str) -> None:
    for run_id, reason in result.skipped:
        ui.info(f"skipped {run_id}: {reason}")
    if result.dry_run:
        for run_id in result.pushed:
            sys.stdout.write(f"would push {run_id}\n")
        sys.stdout.write(f"would push {_runs(len(result.pushed))} "
                         f"({size(result.planned_bytes)} before deduplication) to {label}; "
                         f"{len(result.already)} already there\n")
        return
    for run_id in result.pushed:
        sys.stdout.write(f"pushed {run_id}\n")
    sys.stdout.write(
        f"pushed {_runs(len(result.pushed))} to {label}: uploaded {result.uploaded_files} "
        f"file(s), {size(result.uploaded_bytes)}; {result.reused_files} already there"
        + (f"; {len(result.already)} run(s) were already pushed" if result.already else "")
        + "\n")


def pull_summary(result: PullResult, label: str) -> None:
    for run_id in result.pulled:
        sys.stdout.write(f"pulled {run_id}\n")
    sys.stdout.write(
        f"pulled {_runs(len(result.pulled))} from {label}: {result.downloaded_files} file(s), "
        f"{size(result.downloaded_bytes)}"
        + (f"; {len(result.already)} already here" if result.already else "") + "\n")
