"""What a run starts from, taken before its command runs: the code's uncommitted state
(patch, submodule patches, copies of untracked files) and the paths and hashes of its inputs.

Part of the `repro run` flow (commands/run.py). Reports through a Reporter; never prints.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro import errors, report
from repro.capture import cmdline, data, git, hashing, listings
from repro.record import bounded, config, manifest, store

if TYPE_CHECKING:
    from repro.commands.run import RunRequest


def covered(path: str, by: Sequence[str]) -> bool:
    """`path` is one of `by` or inside one of them."""
    return any(b in (".", "") or path == b or path.startswith(b.rstrip("/") + "/") for b in by)


def check_results_inside(req: RunRequest, cfg: config.Config, root: Path) -> None:
    """Outputs and the metrics file must live in the repository (ignored by git is fine).

    A replay writes them inside its worktree, never into the user's file system, so a result
    written elsewhere could never be verified: refuse before the run, not after it.
    """
    metrics_file = req.metrics or cfg.metrics
    for what, p in [*(("output", o) for o in (*req.outputs, *cfg.outputs)),
                    *([("metrics file", metrics_file)] if metrics_file else [])]:
        where = rel(under(root, req.cwd, p), root)
        if Path(where).is_absolute():
            raise errors.DataError(
                f"{what} {p} is outside the repository ({root})",
                hint="write results inside the repository (and .gitignore them), e.g. "
                     "outputs/; replay and verify rebuild runs in a worktree of it")


def snapshot_dirt(root: Path, run_dir: Path, state: git.TreeState, code: manifest.Code,
                   max_bytes: int, reporter: report.Reporter,
                   subs: Sequence[git.Submodule] = ()) -> manifest.Code:
    """code.patch (staged + unstaged vs HEAD), each modified submodule's patch, and copies of
    untracked files (a submodule's included)."""
    patch_section = None
    diff = git.patch(root)
    if diff:
        (run_dir / "code.patch").write_bytes(diff)
        patch_section = manifest.Patch(file="code.patch", hash=hashing.hash_bytes(diff),
                                       size=len(diff))
    from repro.record import redact

    sub_entries = []
    sub_untracked: list[str] = []
    for i, sub in enumerate(subs):
        entry: dict[str, Any] = {"path": sub.path, "commit": sub.commit, "state": sub.state}
        if sub.modified:
            sub_diff = git.submodule_patch(root, sub.path)
            if sub_diff:
                name = f"submodules/{i}.patch"
                (run_dir / "submodules").mkdir(exist_ok=True)
                (run_dir / name).write_bytes(sub_diff)
                entry["patch"] = {"file": name, "hash": hashing.hash_bytes(sub_diff),
                                  "size": len(sub_diff)}
        if sub.untracked:
            sub_untracked += git.submodule_untracked(root, sub.path)
        sub_entries.append(entry)
    if sub_entries:
        code = dataclasses.replace(code, submodules=tuple(
            manifest.Submodule.from_dict(e, "code.submodules") for e in sub_entries))
    untracked = []
    too_big = []
    secret = []
    for rel in [*state.untracked, *sub_untracked]:
        src = root / rel
        if src.is_symlink():
            untracked.append({"path": rel, "size": 0, "hash": None,
                              "target": os.readlink(src), "copied": False})
            continue
        try:
            size = src.stat().st_size
            digest = hashing.hash_file(src)
        except OSError as e:
            raise errors.DataError(f"cannot read untracked file {rel}: {e.strerror}") from e
        if redact.is_secret_file(rel):
            secret.append(rel)  # hashed and listed, never copied
            untracked.append({"path": rel, "size": size, "hash": digest, "copied": False,
                              "secret": True})
            continue
        copied = size <= max_bytes
        if copied:
            dest = run_dir / "untracked" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        else:
            too_big.append(rel)
        untracked.append({"path": rel, "size": size, "hash": digest, "copied": copied})
    if secret:
        reporter.warn("untracked files that may hold secrets were hashed, not copied: "
                      + ", ".join(secret[:10]) + (" ..." if len(secret) > 10 else ""),
                      hint="a replay takes them from the checkout (checked against the hash)")
    if too_big:
        reporter.warn(f"untracked files over {max_bytes} bytes were hashed, not copied: "
                      + ", ".join(too_big[:10]) + (" ..." if len(too_big) > 10 else ""),
                      hint="raise `untracked_max_bytes` in the configuration, or commit them")
    return dataclasses.replace(code, patch=patch_section, untracked=tuple(
        manifest.Untracked.from_dict(u, "code.untracked") for u in untracked))


def declared_inputs(req: RunRequest, cfg: config.Config, root: Path) -> list[str]:
    """`--data` and the configuration's `data`, relative to the root (not checked)."""
    return [rel(under(root, req.cwd, p), root) for p in (*req.data, *cfg.data)]


def explicit_inputs(req: RunRequest, cfg: config.Config, root: Path) -> list[str]:
    """`--data` and the configuration's inputs; DataError for one that does not exist.

    Also checked before the run directory is created: a refused run is not a run.
    """
    explicit = declared_inputs(req, cfg, root)
    for p in explicit:
        try:
            os.lstat(root / p)
        except (OSError, ValueError) as e:  # missing, or a name too long for the system
            what = "does not exist" if isinstance(e, FileNotFoundError) else \
                f"cannot be read: {e.strerror if isinstance(e, OSError) else e}"
            raise errors.DataError(f"input {bounded.show_path(p)} {what}",
                                   hint="check the --data path (relative to the current "
                                        "directory)") from e
    return explicit


def input_paths(req: RunRequest, cfg: config.Config, root: Path) -> tuple[list[str], list[str]]:
    """(every input path, the ones found in argv alone): relative to the root.

    A path named in argv that is a declared output or the metrics file (or inside one) is a
    result, not an input. The argv-only ones are watched while the command runs: one it
    writes is recorded as an output instead (see _after_child).
    """
    explicit = explicit_inputs(req, cfg, root)
    results = result_paths(req, cfg, root)
    named = [p for p in cmdline.argv_paths(req.argv, req.cwd, root) if not covered(p, results)]
    # The configuration's parameter files shape the run as much as its inputs do: one git
    # does not track (ignored, so never dirt) is hashed, so the fingerprint follows it.
    pfiles = [p for p in cfg.params_files if os.path.lexists(root / p)]
    tracked = git.tracked(root, [*named, *pfiles])
    found = [p for p in named if p not in tracked and p not in explicit]
    extra = [p for p in pfiles if p not in tracked]
    return list(dict.fromkeys([*explicit, *found, *extra])), found


def result_paths(req: RunRequest, cfg: config.Config, root: Path) -> list[str]:
    """Declared outputs and the metrics file, relative to the root."""
    metrics_file = req.metrics or cfg.metrics
    return [rel(under(root, req.cwd, p), root)
            for p in (*req.outputs, *cfg.outputs, *([metrics_file] if metrics_file else []))]


def hash_inputs(paths: Sequence[str], root: Path, runs: store.Store, run_dir: Path, subdir: str,
          reporter: report.Reporter, label: str, cwd: Path | None = None,
          ) -> dict[str, manifest.FileEntry]:
    rel = [rel(under(root, cwd, p), root) if cwd else p for p in paths]
    with reporter.progress(label) as progress:
        entries = data.hash_paths(rel, root=root, cache_dir=runs.cache_dir, progress=progress)
    return manifest.entries(listings.to_section(entries, run_dir, subdir), subdir)


def under(root: Path, cwd: Path | None, p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else (cwd or root) / path


def rel(path: Path, root: Path) -> str:
    """Relative to the git root when inside it; absolute (normalised) when outside."""
    rel = os.path.relpath(path, root)
    if rel == ".." or rel.startswith(".." + os.sep):
        return Path(os.path.normpath(os.path.abspath(path))).as_posix()
    return Path(rel).as_posix()
