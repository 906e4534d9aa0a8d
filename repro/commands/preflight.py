"""Pre-flight: refuse a run that could not be reproduced later (dirty tree, unlocked packages).

Decides; never prints. Findings that `--allow-dirty` / `--allow-unlocked` let through are
returned so they are recorded in the manifest and shown as warnings by the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors
from repro.capture import environment, git, lockfiles

SHOWN = 10  # offending paths listed before "and N more"


@dataclasses.dataclass(frozen=True)
class LockFinding:
    section: dict[str, Any] | None  # environment.lockfile for the manifest
    warnings: tuple[str, ...]


def without_results(state: git.TreeState, results: Sequence[str]) -> git.TreeState:
    """`state` without the dirt that runs produce: files at or under the declared outputs and
    the metrics file (`results`, relative to the root). The previous run wrote them and this
    one writes them again; they are recorded as outputs, not as code."""
    prefixes = [r.rstrip("/") for r in results if r.rstrip("/") not in ("", ".")]
    if not prefixes or not state.dirt:
        return state
    kept = tuple(d for d in state.dirt
                 if not any(d.path == p or d.path.startswith(p + "/") for p in prefixes))
    return dataclasses.replace(state, dirt=kept)


def without_inputs(state: git.TreeState, inputs: Sequence[str]) -> git.TreeState:
    """`state` without the untracked files at or under the declared inputs (`--data`, the
    configuration's `data`): they are hashed as inputs and reach replays as copies, not code.
    A tracked file there that changed stays dirt: a replay checks out the committed one."""
    prefixes = [p.rstrip("/") for p in inputs if p.rstrip("/") not in ("", ".")]
    if not prefixes or not state.dirt:
        return state
    kept = tuple(d for d in state.dirt if d.state != "untracked"
                 or not any(d.path == p or d.path.startswith(p + "/") for p in prefixes))
    return dataclasses.replace(state, dirt=kept)


def check_clean(state: git.TreeState, allow_dirty: bool) -> None:
    """Uncommitted or untracked files: refuse, naming them, unless --allow-dirty."""
    if not state.dirty or allow_dirty:
        return
    listed = [f"{d.path} ({d.state})" for d in state.dirt]
    shown = ", ".join(listed[:SHOWN])
    if len(listed) > SHOWN:
        shown += f" and {len(listed) - SHOWN} more"
    hint = "commit them (or add them to .gitignore), or pass --allow-dirty to record a patch"
    if any(d.state == "untracked" for d in state.dirt):
        hint += ("; files your runs write are results: declare them with --output PATH "
                 "(or `outputs:` in repro.yaml) and they never count as dirt")
    raise errors.DirtyTreeError(
        f"the work tree has uncommitted or untracked files: {shown}", hint=hint)


def check_lock(root: Path, state: git.TreeState, configured: str | None,
               installed: environment.Packages, allow_unlocked: bool,
               hash_file: Any,
               conda_installed: Callable[[], Mapping[str, tuple[str, str]] | None] | None = None
               ) -> LockFinding:
    """Find the lockfile, check it is committed and that installed packages match its pins
    (conda-lock's conda entries against `conda_installed()`, the conda-meta of the command's
    conda environment, None outside one: called only for a lock with conda entries)."""
    path = lockfiles.find_lockfile(root, configured)
    if path is None:
        return _refuse_or_record(
            allow_unlocked, None,
            errors.LockfileError(
                "no lockfile found (uv.lock, poetry.lock, pdm.lock, Pipfile.lock, "
                "conda-lock.yml, requirements*.lock, or a fully pinned requirements*.txt)",
                hint="lock your dependencies (e.g. `pip freeze > requirements.lock`) and commit "
                     "the file, or pass --allow-unlocked",
            ))
    rel = path.relative_to(root).as_posix()
    dirt = {d.path: d.state for d in state.dirt}
    if rel in dirt:
        what = "not committed" if dirt[rel] == "untracked" else f"{dirt[rel]} since the last commit"
        return _refuse_or_record(
            allow_unlocked, {"path": rel, "matches": False},
            errors.LockfileError(f"the lockfile {rel} is {what}",
                                 hint=f"commit {rel}, or pass --allow-unlocked"))
    if not git.is_tracked(root, rel):
        return _refuse_or_record(
            allow_unlocked, {"path": rel, "matches": False},
            errors.LockfileError(f"the lockfile {rel} is not tracked by git (ignored?)",
                                 hint=f"commit {rel}, or pass --allow-unlocked"))
    lock = lockfiles.read_lock(root, path)
    conda_have = conda_installed() if lock.conda and conda_installed is not None else None
    result = lockfiles.check_lock(lock, installed.versions, conda_have)
    section = {"path": rel, "kind": lock.kind, "hash": hash_file(path), **result}
    if result["matches"]:
        return LockFinding(section, ())
    how = (f"`conda-lock install -p PREFIX {rel}`" if lock.kind == "conda-lock"
           else f"`pip install -r {rel}`")
    return _refuse_or_record(allow_unlocked, section,
                             errors.LockfileError(mismatch_message(rel, result["mismatches"]),
                                                  hint=f"install the locked versions (e.g. "
                                                       f"{how}), or pass --allow-unlocked"))


def mismatch_message(rel: str, mismatches: Sequence[dict[str, Any]]) -> str:
    parts = [f"{'conda:' if m.get('manager') == 'conda' else ''}{m['name']} "
             f"(locked {m['locked']}, installed {m['installed'] or 'none'})"
             for m in mismatches]
    shown = ", ".join(parts[:SHOWN]) + (f" and {len(parts) - SHOWN} more" if len(parts) > SHOWN
                                        else "")
    return f"installed packages do not match {rel}: {shown}"


def _refuse_or_record(allow: bool, section: dict[str, Any] | None,
                      err: errors.LockfileError) -> LockFinding:
    if not allow:
        raise err
    return LockFinding(section, (err.message,))
