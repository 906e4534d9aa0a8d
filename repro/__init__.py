"""repro: make ML training runs reproducible by prefixing their command.

The Python API (docs/api.md): `repro.runs()`, `repro.load(ref)`, `repro.diff(a, b)`,
`repro.verify(ref)`, `repro.Run`, `repro.SilentReporter`; they live in repro.api and load on
first use, so `import repro` stays cheap (no typer, rich, PyYAML or GitPython).
"""

from __future__ import annotations

import typing as _typing

__version__ = "0.1.0"

if _typing.TYPE_CHECKING:
    from repro.api import Run, SilentReporter, diff, load, runs, verify

_API = frozenset({"Run", "SilentReporter", "diff", "load", "runs", "verify"})
__all__ = ["Run", "SilentReporter", "__version__", "diff", "load", "runs", "verify"]


def __getattr__(name: str) -> _typing.Any:
    if name in _API:
        from repro import api

        return getattr(api, name)
    raise AttributeError(f"module 'repro' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (and the package's own dunders), not the imports used to define them."""
    return sorted({*(n for n in globals() if n.startswith("__")), *__all__})
