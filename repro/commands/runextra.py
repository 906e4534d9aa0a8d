"""What `repro run` reads beside the command, not before it: the container, the conda
environment (with its channels), and the inputs' statistics (`--data-stats`).

Part of the `repro run` flow (commands/run.py): a thread starts just before the command and
its findings are merged into the manifest once the command has ended, so none of this adds
to the run's start-up. Only a `conda-lock.yml`'s check reads the conda environment before the
run (`CondaLookup`, shared by both). Reports through a Reporter; never prints; a failure here
never fails the run (the record then lacks what could not be read).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro import errors, report
from repro.record import config, manifest, store

if TYPE_CHECKING:
    from repro.commands.run import RunRequest

# How long to wait, once the command has ended, for the container and conda lookups beyond
# the statistics' own budget (they take milliseconds; this only bounds a stuck file system).
SLACK_S = 30.0


class CondaLookup:
    """The conda environment of the command's interpreter (None outside one), looked up once:
    by the lock check before the run when the lock is a conda-lock.yml, else by the thread
    that runs beside the command (conda-meta's file names: one listdir)."""

    def __init__(self, python: str | None, env: Mapping[str, str]) -> None:
        self._python = python
        self._env = env
        self._found: tuple[Any, dict[str, tuple[str, str]] | None] | None = None

    def _lookup(self) -> tuple[Any, dict[str, tuple[str, str]] | None]:
        if self._found is None:
            from repro.capture import conda

            prefix = conda.find_prefix(self._python, self._env)
            self._found = (prefix, conda.installed(prefix.path) if prefix else None)
        return self._found

    def prefix(self) -> Any:
        return self._lookup()[0]

    def installed(self) -> dict[str, tuple[str, str]] | None:
        return self._lookup()[1]


def check_image(image: str) -> None:
    """`--image NAME[@DIGEST]`: a UsageError for a digest that is not `algorithm:hex`."""
    from repro.capture import container

    try:
        container.parse_image(image)
    except ValueError as e:
        raise errors.UsageError(f"--image {image!r}: {e}",
                                hint="e.g. --image pytorch/pytorch:2.3.0@sha256:<digest>") from e


def stats_wanted(req: RunRequest, cfg: config.Config) -> bool:
    return req.data_stats or cfg.data_stats


class Job:
    """The thread that reads beside the command; its failure is an empty result."""

    def __init__(self, fn: Callable[[], Mapping[str, Any]], budget: Any) -> None:
        self.budget = budget  # datastats.Budget when statistics are read: their progress
        self._value: Mapping[str, Any] | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True,
                                        name="repro-beside")
        self._thread.start()

    def _run(self, fn: Callable[[], Mapping[str, Any]]) -> None:
        with contextlib.suppress(Exception):
            self._value = fn()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; whether the work has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def value(self) -> Mapping[str, Any] | None:
        return self._value


def start(req: RunRequest, cfg: config.Config, root: Path, runs: store.Store, run_dir: Path,
          m: manifest.Manifest, env: Mapping[str, str], conda_env: CondaLookup,
          python: str) -> Job:
    """Begin reading the container, the conda environment and (when asked) the statistics of
    the inputs in `m.data`, in a thread; `python` is the run's interpreter (for Parquet)."""
    stats = stats_wanted(req, cfg) and bool(m.data)
    entries = {p: e.to_dict() for p, e in m.data.items()} if stats else {}
    budget = None
    if stats:
        from repro.capture import datastats

        budget = datastats.Budget(cfg.data_stats_seconds)

    def work() -> Mapping[str, Any]:
        from repro.capture import conda, container

        out: dict[str, Any] = {
            "container": container.detect(env, container.system_root(env), req.image)}
        prefix, packages = conda_env.prefix(), conda_env.installed()
        if prefix is None:
            out["conda"] = None  # looked for: not a conda environment (judge/compare._LATER)
        elif packages is not None:
            out["conda"] = conda.section(prefix, packages,
                                         conda.read_channels(prefix.path, packages))
        if budget is not None:
            from repro.capture import datastats, listings

            found = {}
            for p, e in entries.items():
                if e.get("kind") == "dir" and isinstance(e.get("listing"), str):
                    with contextlib.suppress(errors.ReproError):
                        found[p] = listings.read_listing(run_dir / e["listing"])
            out["stats"] = datastats.collect(entries, root, listings=found, python=python,
                                             cache_dir=runs.cache_dir, budget=budget)
        return out

    return Job(work, budget)


def wait(job: Job, req: RunRequest, cfg: config.Config,
         reporter: report.Reporter) -> Mapping[str, Any] | None:
    """What the job found, once it ends: the statistics stop themselves at their budget (a
    progress bar shows them when they outlast the command); the rest takes milliseconds."""
    timeout = (cfg.data_stats_seconds if stats_wanted(req, cfg) else 0.0) + SLACK_S
    budget = job.budget
    if budget is None or job.join(0.05):
        job.join(timeout)
        return job.value
    give_up = time.monotonic() + timeout
    with reporter.progress("data statistics") as progress:
        while not job.join(0.1) and time.monotonic() < give_up:
            progress(budget.read, budget.total)
    return job.value


def merge(m: manifest.Manifest, found: Mapping[str, Any] | None) -> manifest.Manifest:
    """The container and conda environment into `environment`, the statistics into the data
    entries still inputs (a path the run rewrote has moved to outputs)."""
    if not found:
        return m
    # null where looked for and not found: "no container" is not "not recorded"
    breadth = {k: found[k] for k in ("container", "conda") if k in found}
    if breadth:
        m = m.replace(environment=manifest.Environment.from_dict(
            {**m.environment.to_dict(), **breadth}, "environment"))
    stats = found.get("stats")
    if isinstance(stats, Mapping) and stats:
        m = m.replace(data={p: (dataclasses.replace(e, stats=stats[p]) if p in stats else e)
                            for p, e in m.data.items()})
    return m
