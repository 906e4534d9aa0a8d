"""The Python API: the runs of a repository, one run's record, a diff, a verify, from Python.

    import repro
    rows = repro.runs()                       # newest first, the rows of `repro runs --json`
    run = repro.load("latest")                # run.run_id, run.seed.value, run.metrics.final
    report = repro.diff("latest~1", "latest")  # report.changed, report.sections["metrics"]
    result = repro.verify("latest")           # result.verdict, result.checks

`root` is any directory inside the repository (default: the current one); runs are found as
the CLI finds them (REPRO_HOME too). Failures raise the CLI's errors (`repro.errors.ReproError`
subclasses, with `.message` and `.hint`); nothing is printed: warnings go to the
reporter (by default a `SilentReporter`, which keeps them). A replayed command's own output goes
to stderr, as with `repro verify`. docs/api.md has a worked example.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from repro.record import manifest, store

if TYPE_CHECKING:
    from repro import report
    from repro.commands import history
    from repro.commands import verify as verify_mod
    from repro.judge import compare

__all__ = ["Run", "SilentReporter", "diff", "load", "runs", "verify"]


@dataclasses.dataclass(frozen=True)
class Run(manifest.Manifest):
    """One recorded run: every section of its manifest (`run`, `command`, `seed`, `code`,
    `determinism`, `environment`, `hardware`, `data`, `outputs`, `metrics`, `fingerprint`;
    docs/manifest.md), plus `run_dir`, the directory it was loaded from."""

    run_dir: Path = dataclasses.field(kw_only=True)

    @classmethod
    def of(cls, m: manifest.Manifest, run_dir: Path) -> Run:
        fields = {f.name: getattr(m, f.name) for f in dataclasses.fields(manifest.Manifest)}
        return cls(**fields, run_dir=run_dir)

    @property
    def manifest(self) -> manifest.Manifest:
        """The plain record, without `run_dir`."""
        return manifest.Manifest(**{f.name: getattr(self, f.name)
                                    for f in dataclasses.fields(manifest.Manifest)})

    def to_dict(self) -> dict[str, object]:
        """The manifest as plain data, as `repro show --json` prints it."""
        return manifest.to_dict(self.manifest)


RunRef: TypeAlias = "str | os.PathLike[str] | Run"
"""A run id, a unique prefix of one, latest, latest~N, a run directory, a manifest.yaml path,
`REMOTE:ref` (a run at a configured remote, fetched into the local cache), or a `Run` already
loaded."""


class SilentReporter:
    """A reporter that prints nothing: warnings are kept in `warnings` as (message, hint)."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, str | None]] = []

    def warn(self, message: str, hint: str | None = None) -> None:
        self.warnings.append((message, hint))

    @contextlib.contextmanager
    def progress(self, label: str) -> Iterator[Callable[[int, int], None]]:
        yield lambda done, total: None


def _store(root: str | os.PathLike[str]) -> store.Store:
    return store.open_here(Path(root))


def runs(root: str | os.PathLike[str] = ".", *, limit: int | None = None
         ) -> list[dict[str, object]]:
    """Every run of the repository at `root`, newest first, as `repro runs --json` rows
    (run_id, status, started_at, duration_s, command, seed, commit, dirty, name, exit_code,
    replay_of, started_by, params, metrics, group); a run that cannot be read has status
    `unreadable`."""
    return store.run_rows(_store(root), limit)


def load(ref: RunRef, root: str | os.PathLike[str] = ".") -> Run:
    """The run `ref` names, with its sections: `load("latest").seed.value`."""
    if isinstance(ref, Run):
        return ref
    where = _store(root)
    path = where.resolve(_here(where, os.fspath(ref)))
    return Run.of(store.load_manifest(path), path.parent)


def _here(where: store.Store, ref: str) -> str:
    """`REMOTE:ref` (a run at a configured remote) fetched into the local cache; its path."""
    if ":" not in ref:
        return ref
    from repro.commands import pull

    return pull.local_ref(where, ref)


def diff(a: RunRef, b: RunRef, root: str | os.PathLike[str] = ".", *,
         rtol: float | None = None, atol: float | None = None,
         metric: Mapping[str, float] | None = None) -> compare.DiffReport:
    """Compare run `a` with run `b` section by section, as `repro diff` does.

    `.changed` says whether anything differs, `.sections[name]` holds each section's
    changes, `.verdict` the one-line summary, `.to_dict()` the `repro diff --json` document.
    Tolerances default to the repository's configuration, as on the command line.
    """
    from repro.commands import history

    where = _store(root)
    tolerance = _tolerance(where, rtol, atol, metric)
    return history.diff_loaded(where.root, _loaded(a, where), _loaded(b, where), tolerance)


def verify(ref: RunRef, root: str | os.PathLike[str] = ".", *, yes: bool = False,
           at: str | None = None, runs: int = 1, rtol: float | None = None,
           atol: float | None = None, metric: Mapping[str, float] | None = None,
           vary: Sequence[str] = (), force: bool = False, strict_env: bool = False,
           single_node: bool = False,
           reporter: report.Reporter | None = None) -> verify_mod.Report:
    """Replay run `ref` and judge it, as `repro verify RUN` does (same options, same errors).

    `.verdict` is bitwise, within-tolerance or not-reproduced (`.reproduced` is a bool),
    `.checks` the checks with their details, `.runs` the ids of the replays it recorded,
    `.warnings` the (message, hint) pairs the command line would have printed (a replay under
    another interpreter than the run's), when `reporter` is a SilentReporter or none.
    `yes=True` runs a manifest recorded elsewhere without asking (there is no prompt here:
    without it such a run raises `ReplayError`). `single_node=True` replays a multi-node run's
    ranks on this machine (`--single-node`).
    """
    from repro.commands import verify as verify_mod

    where = _store(root)
    opts = verify_mod.Options(
        at=at, runs=runs, vary=verify_mod.parse_vary(",".join(vary)), yes=yes, force=force,
        strict_env=strict_env, single_node=single_node,
        tolerance=_tolerance(where, rtol, atol, metric))
    target = ref if not isinstance(ref, Run) else ref.run_dir / store.MANIFEST
    told = reporter or SilentReporter()
    before = len(told.warnings) if isinstance(told, SilentReporter) else 0
    result = verify_mod.verify_run(where, _here(where, os.fspath(target)), opts, told, None)
    if isinstance(told, SilentReporter):  # why a verdict is what it is, where it is read
        # this call's warnings only: a SilentReporter the caller reuses holds earlier ones
        result = dataclasses.replace(result, warnings=tuple(told.warnings[before:]))
    return result


def _loaded(ref: RunRef, where: store.Store) -> history.Loaded:
    from repro.commands import history

    run = load(ref, where.root) if not isinstance(ref, Run) else ref
    return history.Loaded(run.manifest, run.run_dir)


def _tolerance(where: store.Store, rtol: float | None, atol: float | None,
               metric: Mapping[str, float] | None) -> compare.Tolerance:
    from repro.commands import history
    from repro.record import config

    specs = [f"{name}={tol!r}" for name, tol in (metric or {}).items()]
    return history.tolerance_from(config.load(where.root).tolerance, rtol, atol, specs)
