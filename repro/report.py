"""How the core talks to the user without printing: the Reporter protocol.

The CLI renders a Reporter on the terminal (repro/cli/ui.py), the Python API keeps what it is told
(`repro.api.SilentReporter`), tests collect it. Every flow in repro/commands takes one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

Progress = Callable[[int, int], None]  # (done, total)


class Reporter(Protocol):
    """How the flow talks to the user; the CLI renders it, tests collect it."""

    def warn(self, message: str, hint: str | None = None) -> None: ...

    def progress(self, label: str) -> contextlib.AbstractContextManager[Progress]: ...
