"""What a run left, read after its command: the hook's report, the outputs (declared ones, and
paths named in argv that the run created or rewrote), metrics, copies of small outputs, and
the files it wrote that nobody records.

Part of the `repro run` flow (commands/run.py). Reports through a Reporter; never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from repro import errors, report
from repro.capture import cmdline, data, git, listings
from repro.commands import preflight, runner, runsnapshot
from repro.record import config, manifest, store

if TYPE_CHECKING:
    from repro.commands.run import RunRequest


@dataclasses.dataclass(frozen=True)
class Watch:
    """Result paths (relative to the root) and their stat trees from before the command."""

    outputs: tuple[str, ...]  # declared: --output and the configuration's `outputs`
    metrics: str | None  # the metrics file
    named: tuple[str, ...]  # existing paths named in argv, recorded as inputs before the run
    unborn: tuple[str, ...]  # paths named in argv that did not exist before the run
    trees: Mapping[str, Any]  # path -> written.Tree
    # existing paths named in argv at or under a declared output: the run's inputs when it
    # writes nothing there (`sample.py --out_dir=out` reads the checkpoint train.py wrote)
    named_results: tuple[str, ...] = ()

    @classmethod
    def nothing(cls) -> Watch:
        """No results watched: a multi-node run's other nodes (node 0 records the results)."""
        return cls((), None, (), (), {})

    @classmethod
    def before(cls, req: RunRequest, cfg: config.Config, root: Path,
               named: Sequence[str]) -> Watch:
        outputs = tuple(dict.fromkeys(runsnapshot.rel(runsnapshot.under(root, req.cwd, p), root)
                                      for p in (*req.outputs, *cfg.outputs)))
        metrics_path = req.metrics or cfg.metrics
        metrics_rel = (runsnapshot.rel(runsnapshot.under(root, req.cwd, metrics_path), root)
                       if metrics_path else None)
        results = (*outputs, *([metrics_rel] if metrics_rel else []))
        unborn = tuple(p for p in cmdline.argv_paths(req.argv, req.cwd, root, missing=True)
                       if not runsnapshot.covered(p, results))
        named_results = tuple(p for p in cmdline.argv_paths(req.argv, req.cwd, root)
                              if runsnapshot.covered(p, outputs)) if outputs else ()
        watched = (*results, *named)
        trees: Mapping[str, Any] = {}
        if watched:
            from repro.capture import written

            trees = written.snapshot(root, watched)
        return cls(outputs, metrics_rel, tuple(named), unborn, trees, named_results)

    def untouched(self, path: str, root: Path) -> bool:
        """Whether the run wrote nothing at or under `path`, a path inside a declared output
        (compared by stat signatures, as outputs are)."""
        from repro.capture import written

        for out in self.outputs:
            if runsnapshot.covered(path, [out]):
                sub = path[len(out):].strip("/") if out not in (".", "") else path
                before = _subtree(self.trees.get(out) or {}, sub)
                return before == _subtree(written.stat_tree(root / out), sub)
        return False


def _subtree(tree: Mapping[str, Any], sub: str) -> dict[str, Any]:
    return {k: v for k, v in tree.items() if not sub or k == sub or k.startswith(sub + "/")}


def start_quietly(root: Path) -> Any:
    try:
        return git.start_status(root)
    except errors.ReproError:
        return None


def warn_unrecorded(proc: Any, root: Path, before: git.TreeState, results: Sequence[str],
                     m: manifest.Manifest, reporter: report.Reporter) -> None:
    """Name the files the run created that git does not ignore and repro does not record
    (`mnist_cnn.pt` written beside the script): verify could not compare them, and the next
    run would be refused for them. Replays skip this: their recorded run already said it."""
    if proc is None:
        return
    try:
        after = preflight.without_results(git.finish_status(proc, root), results)
    except errors.ReproError:
        return
    known = {d.path for d in before.dirt}
    recorded = [*m.outputs, *m.data]
    new = [d.path for d in after.dirt if d.state == "untracked" and d.path not in known
           and not runsnapshot.covered(d.path, recorded)]
    if new:
        shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
        reporter.warn(f"the run wrote files that are not recorded as outputs: {shown}",
                      hint="declare them with --output PATH (or `outputs:` in repro.yaml) so "
                           "verify compares them, or add them to .gitignore")


def warn_unwritten(m: manifest.Manifest, declared: Sequence[str], root: Path,
                   reporter: report.Reporter, flagged: Sequence[str] = ()) -> None:
    """Name the declared outputs a successful run did not write: a typo, a path relative to
    another folder, or a wildcard (`--output 'predict*.pdf'`), which repro takes literally.
    Without this the record said `missing` and the run said nothing.

    `flagged`: the outputs given with --output (this command's own); the others come from the
    project's `outputs:`, which name what *some* of its scripts write (train.py the
    checkpoints, sample.py the samples, a Hydra sweep multirun/ instead of outputs/): those are
    named only when the run wrote none of the declared outputs at all."""
    named: list[str] = []
    project = False  # a named path that comes from the project's `outputs:` only
    wildcards: list[str] = []
    own = set(flagged)
    wild = False  # a missing output with wildcard characters
    wrote_some = any(_written(m.outputs.get(p)) for p in declared)
    for path in dict.fromkeys(declared):
        if path not in own and wrote_some:
            continue  # the project's list: another script's output
        entry = m.outputs.get(path)
        if entry is None or any(runsnapshot.covered(p, [path]) for p in m.data):
            continue  # nothing recorded, or the run read it: an input (see after_child)
        if _written(entry):
            continue
        project = project or path not in own
        if entry.kind == "missing":
            named.append(f"{path} (missing)")
            wild = wild or any(c in path for c in "*?[")
            # `**` could walk the whole tree (.git, datasets) after every run: not expanded
            if any(c in path for c in "*?[") and "**" not in path:
                matches = bounded_glob(root, path)
                if matches:
                    shown = ", ".join(matches[:5]) + (
                        f" and {len(matches) - 5} more" if len(matches) > 5 else "")
                    wildcards.append(f"{path} matches {shown}")
        elif entry.is_stale_file:
            named.append(f"{path} (an earlier run's file)")
        elif entry.kind == "dir" and not entry.files:
            named.append(f"{path} (only an earlier run's files)" if entry.stale
                         else f"{path} (no files)")
    if not named:
        return
    if wild:
        matched = f": {'; '.join(wildcards)}" if wildcards else ""
        hint = (f"repro does not expand wildcards{matched}; name each file with --output, or "
                "the directory they are in")
    elif not project:
        hint = ("check the path (relative to the directory repro runs in), or drop it from "
                "--output; verify has nothing of it to compare")
    else:  # the project's list: a script that writes none of it (data preparation) is fine
        hint = ("nothing to do if this script writes none of the project's `outputs:` (data "
                "preparation, evaluation); otherwise check their paths (relative to the "
                "repository root)")
    reporter.warn(f"declared outputs the run did not write: {', '.join(named)}", hint=hint)


GLOB_MAX_ENTRIES = 10_000  # directory entries read to expand a wildcard for a hint


def bounded_glob(root: Path, pattern: str) -> list[str]:
    """What `pattern` (no `**`) matches under `root`, reading at most GLOB_MAX_ENTRIES
    directory entries (a `*/*/*.pt` over a dataset must not cost the run seconds); hidden
    names match only a pattern part that starts with a dot, as in the shell."""
    import fnmatch

    current = [""]
    seen = 0
    for part in PurePosixPath(pattern).parts:
        if part == "/":
            return []  # an absolute pattern: outside the checkout, not a declared output
        found: list[str] = []
        for rel in current:
            if not any(c in part for c in "*?["):
                candidate = f"{rel}/{part}" if rel else part
                if os.path.lexists(root / candidate):
                    found.append(candidate)
                continue
            try:
                with os.scandir(root / rel if rel else root) as it:
                    for e in it:
                        seen += 1
                        if seen > GLOB_MAX_ENTRIES:
                            return []  # too big to look through: no matches named
                        if (not e.name.startswith(".") or part.startswith(".")) and \
                                fnmatch.fnmatchcase(e.name, part):
                            found.append(f"{rel}/{e.name}" if rel else e.name)
            except OSError:
                continue
        current = found
    return sorted(current)


def _written(entry: manifest.FileEntry | None) -> bool:
    """The run wrote this output: present, not an earlier run's file, a directory with files."""
    if entry is None or entry.kind == "missing" or entry.is_stale_file:
        return False
    return entry.kind != "dir" or bool(entry.files)


WATCH_MAX_FILES = 5_000  # beyond this, an argv-named input directory is not watched


def too_big_to_watch(entry: manifest.FileEntry | None) -> bool:
    return entry is not None and entry.kind == "dir" and (entry.files or 0) > WATCH_MAX_FILES


def after_child(m: manifest.Manifest, req: RunRequest, cfg: config.Config, root: Path,
                 runs: store.Store, run_dir: Path, result: runner.ChildResult,
                 hw: Mapping[str, Any] | None, reporter: report.Reporter,
                 watch: Watch) -> manifest.Manifest:
    """Read what the child left: the hook's probes, outputs, metrics."""
    from repro.capture import metrics
    from repro.child import hookprobe

    hook = manifest.HookReport.from_dict(hookprobe.summarize(run_dir / "hook", req.argv),
                                         "determinism.hook")
    if not hook.ran:
        hint = "run Python without -I, -E or -S so repro's start-up hook can load"
        if hook.reason == hookprobe.NO_PYTHON:  # `repro run -- make`, `-- yes`
            hint = ("a command that runs no Python has nothing to seed: nothing to do; for one "
                    "that does, keep PYTHONPATH and run Python without -I, -E or -S")
        reporter.warn(f"the seed could not be applied inside the command: {hook.reason}",
                      hint=hint)
    elif hook.deterministic_algorithms is False and m.determinism.level in ("strict", "warn"):
        reporter.warn("the script turned deterministic algorithms off "
                      "(torch.use_deterministic_algorithms(False)); results may not reproduce")
    for err in hook.errors:
        reporter.warn(f"repro's start-up hook failed inside the command: {err}")
    m = m.replace(determinism=dataclasses.replace(m.determinism, hook=hook))

    top = hookprobe.top_probe(run_dir / "hook")
    env_section = m.environment.to_dict()
    if top:
        # The child's own view of its interpreter beats our pre-run guess (it may differ, e.g.
        # a shell script that activates another venv).
        for key in ("python", "packages", "package_sources"):
            if top.get(key):
                env_section[key] = top[key]
        if "native" in top:  # null: no numeric library loaded (not "not recorded")
            env_section["native"] = top["native"] or None
    hw_section = dict(hw or {})
    if top:
        for key in ("torch", "threads"):
            if top.get(key):
                hw_section[key] = top[key]
    m = m.replace(environment=manifest.Environment.from_dict(env_section, "environment"),
                  hardware=manifest.Hardware.from_dict(hw_section, "hardware"))

    # A path named in the command line that the run created or rewrote is an output, not an
    # input: `--save model.pt` over the model of an earlier run (see written.rewrote).
    from repro.capture import written

    moved = [p for p in watch.named
             if written.rewrote(watch.trees.get(p) or {}, written.stat_tree(root / p),
                                m.data.get(p), root / p)]
    born = [p for p in watch.unborn if os.path.lexists(root / p)]
    if moved:
        gone = set(moved)
        for p in moved:
            recorded = m.data.get(p)
            listing = recorded.listing if recorded is not None else None
            if listing is not None:
                with contextlib.suppress(OSError):
                    (run_dir / listing).unlink()
        m = m.replace(data={p: e for p, e in m.data.items() if p not in gone})
    outputs = list(dict.fromkeys([*watch.outputs, *moved, *born]))
    if outputs:
        try:
            with reporter.progress("hashing outputs") as progress:
                entries = data.hash_paths(outputs, root=root, cache_dir=runs.cache_dir,
                                          progress=progress)
            stale: dict[str, list[str]] = {}
            replaced: dict[str, bool | int] = {}
            for i, entry in enumerate(entries):
                before = watch.trees.get(entry.path) or {}
                entries[i], stale[entry.path] = written.split(entry, root / entry.path, before)
                replaced[entry.path] = written.replaced(entries[i], root / entry.path, before)
            section = listings.to_section(entries, run_dir, "outputs", stale)
            for path, what in replaced.items():  # verify names it when the replay differs
                if what and path in section:
                    section[path]["replaced"] = what
            m = m.replace(outputs=manifest.entries(section, "outputs"))
            keep_outputs(root, run_dir, entries, stale, cfg.keep_outputs_max_bytes)
        except errors.DataError as e:
            reporter.warn(f"outputs were not recorded: {e.message}", e.hint)
    # A declared output named in argv that the run only read is an input of this run (the
    # checkpoint a sampling script loads), hashed now: the run left it as it was.
    read = [p for p in watch.named_results if watch.untouched(p, root)]
    if read:
        try:
            read_entries = data.hash_paths(read, root=root, cache_dir=runs.cache_dir)
            m = m.replace(data={**m.data, **manifest.entries(
                listings.to_section(read_entries, run_dir, "data-read"), "data")})
        except errors.DataError as e:
            reporter.warn(f"inputs were not recorded: {e.message}", e.hint)
            read = []
    series = run_dir / "metrics.jsonl"
    metrics_file = root / watch.metrics if watch.metrics else None
    rewritten = metrics_file is None or written.changed(
        watch.trees.get(watch.metrics or "") or {}, written.stat_tree(metrics_file))
    try:
        m = m.replace(metrics=manifest.Metrics.from_dict(metrics.collect(
            metrics_file=metrics_file, series_file=series if series.exists() else None,
            log_file=run_dir / "stdout.log", patterns=cfg.metric_patterns, root=root,
            rewritten=rewritten), "metrics"))
    except errors.ReproError as e:
        reporter.warn(f"metrics were not recorded: {e.message}", e.hint)
    for w in m.metrics.warnings:
        reporter.warn(str(w))
    if moved or read:  # the recipe's inputs are not what they were when the run started
        from repro.commands.run import fingerprint  # run imports this module

        m = m.replace(fingerprint=fingerprint(m))
    return m


KEPT = "kept"  # run-directory folder with copies of small outputs (see keep_outputs)


def keep_outputs(root: Path, run_dir: Path, entries: Sequence[data.Entry],
                  stale: Mapping[str, Sequence[str]], cap: int) -> None:
    """Copy the outputs into the run directory when they total at most `cap` bytes.

    `verify` judges a replay's tensors and text against the recorded files; the checkout's
    copies are usually overwritten by the next run, so without these a result that reproduced
    within tolerance could only be reported as "hash differs". Copies, not hard links: torch
    and numpy rewrite files in place, which would change a linked copy too. Only what the run
    wrote: stale files are never compared, so never kept.
    """
    kept = [e for e in entries if e.kind in ("file", "dir")
            and not (e.kind == "file" and stale.get(e.path))]
    if not kept or sum(e.size for e in kept) > cap:
        return
    try:
        for entry in kept:
            src, dest = root / entry.path, run_dir / KEPT / entry.path
            if entry.kind == "file":
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                continue
            dest.mkdir(parents=True, exist_ok=True)
            for rel, (digest, _) in (entry.listing or {}).items():
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if digest.startswith("symlink:"):
                    os.symlink(digest.removeprefix("symlink:"), target)
                else:
                    shutil.copyfile(src / rel, target, follow_symlinks=False)
    except OSError:
        shutil.rmtree(run_dir / KEPT, ignore_errors=True)  # all or nothing
