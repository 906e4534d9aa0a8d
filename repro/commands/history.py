"""Recorded runs side by side: load two runs with their listings and the commits' file changes.

The I/O half of `repro diff` (compare.py is the pure half). Never prints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from repro.capture import git, listings
from repro.judge import compare
from repro.record import manifest, store


@dataclasses.dataclass(frozen=True)
class Loaded:
    manifest: manifest.Manifest
    run_dir: Path  # may lack everything but the manifest (a baseline committed to a repo)
    path: Path | None = None  # the manifest file read (`baseline.yaml`); default run_dir's

    def listings(self) -> dict[str, Mapping[str, tuple[str, int]]]:
        """Per-file listings of hashed directories, keyed by listing file (`data/0.json`)."""
        out: dict[str, Mapping[str, tuple[str, int]]] = {}
        for section in (self.manifest.data, self.manifest.outputs):
            for entry in section.values():
                name = entry.listing
                if name is None:
                    continue
                path = self.run_dir / manifest.confined(name, "listing file")
                if path.is_file():
                    out[name] = listings.read_listing(path)
        return out


def load(runs: store.Store, ref: str) -> Loaded:
    path = runs.resolve(ref)
    return Loaded(store.load_manifest(path), path.parent, path)


def diff(runs: store.Store, ref_a: str, ref_b: str,
         tolerance: compare.Tolerance) -> compare.DiffReport:
    a, b = load(runs, ref_a), load(runs, ref_b)
    return diff_loaded(runs.root, a, b, tolerance)


def diff_loaded(root: Path, a: Loaded, b: Loaded,
                tolerance: compare.Tolerance) -> compare.DiffReport:
    ca, cb = a.manifest.code.commit, b.manifest.code.commit
    code_files: list[tuple[str, str]] = []
    if ca != cb and git.has_commit(root, ca) and git.has_commit(root, cb):
        code_files = git.changed_files(root, ca, cb)
    return compare.diff_runs(a.manifest, b.manifest,
                             code_files=code_files, listings_a=a.listings(),
                             listings_b=b.listings(), tolerance=tolerance)


def tolerance_from(cfg_tol: compare.Tolerance | None, rtol: float | None, atol: float | None,
                   metric_specs: list[str]) -> compare.Tolerance:
    """Command-line tolerances override the configured ones, key by key."""
    cfg_tol = cfg_tol or compare.Tolerance()
    per = dict(cfg_tol.per_metric)
    for spec in metric_specs:
        name, tol = compare.parse_metric_tolerance(spec)
        per[name] = tol
    return compare.Tolerance(rtol=cfg_tol.rtol if rtol is None else rtol,
                             atol=cfg_tol.atol if atol is None else atol, per_metric=per)


