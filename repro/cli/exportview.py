"""How `repro export mlflow` reports what it did: one line per run, then a summary.

Plain text on stdout (the result); warnings and progress went to stderr on the way.
"""

from __future__ import annotations

import sys
from typing import Any

from repro.cli import ui


def render(report: Any) -> None:
    """`report`: repro.commands.export.Report."""
    lines = []
    for g in report.groups:
        of = f" of {g.size}" if g.size and g.size > len(g.runs) else ""  # one member alone
        lines.append(f"{g.action:<9}  group:{g.id} -> {g.mlflow_run_id} (parent of "
                     f"{ui.plural(len(g.runs), 'run')}{of})")
    for r in report.runs:
        target = r.mlflow_run_id or f"({r.reason})"
        lines.append(f"{r.action:<9}  {r.run_id} -> {target}")
    counts = [f"{report.count(a)} {a}" for a in ("created", "completed", "unchanged",
                                                 "skipped") if report.count(a)]
    lines.append(f"{ui.plural(len(report.runs), 'run')} in experiment {report.experiment!r} "
                 f"at {report.tracking_uri}: {', '.join(counts) or 'nothing to do'}")
    if report.url:
        lines.append(report.url)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
