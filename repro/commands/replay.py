"""`repro replay`: rebuild a recorded run's code in a detached worktree and run it again.

The plan (commit, patch, untracked copies, argv, cwd, seed, level, threads, expected inputs) is
derived from the manifest with every path confined to the worktree; execution never touches
the user's working tree or index. Never prints: warnings go through the Reporter.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from repro import errors, report
from repro.capture import data, environment, git
from repro.child import seeding
from repro.commands import history
from repro.commands import run as runflow
from repro.record import bounded, config, manifest, redact, store, trust


@dataclasses.dataclass(frozen=True)
class Input:
    path: str  # relative to the git root (or absolute, read-only, outside the repo)
    entry: manifest.FileEntry  # the recorded data entry


@dataclasses.dataclass(frozen=True)
class Plan:
    run_id: str
    commit: str
    at: str | None  # --at REV: the recorded recipe on another commit (patch not applied)
    patch: Path | None  # the recorded code.patch
    untracked: tuple[tuple[str, Path | None, manifest.Untracked], ...]  # (path, copy, entry)
    submodules: tuple[tuple[str, str | None, Path | None], ...]  # (path, commit, patch)
    argv: tuple[str, ...]
    cwd: str
    seed: int
    level: str
    threads: int | None
    user_env: Mapping[str, str]  # variables the user had set that the run kept
    restored_env: Mapping[str, str]  # allow-listed variables of `environment.env`, restored
    inputs: tuple[Input, ...]
    outputs: tuple[str, ...]
    metrics: str | None
    python: manifest.PythonInfo
    packages: Mapping[str, Any]
    foreign: bool  # the manifest was not produced in this clone
    # The SOURCE_DATE_EPOCH repro injected into the recorded run (the recorded commit's time):
    # injected again as recorded, also with --at (whose commit has another time).
    source_date_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id, "commit": self.commit, "at": self.at,
            "patch": str(self.patch) if self.patch else None,
            "untracked": [u[0] for u in self.untracked], "argv": list(self.argv),
            "submodules": {path: commit for path, commit, _ in self.submodules},
            "cwd": self.cwd, "seed": self.seed, "determinism": self.level,
            "threads": self.threads, "env": {**self.restored_env, **self.user_env},
            "inputs": {i.path: i.entry.hash for i in self.inputs},
            "outputs": list(self.outputs), "metrics": self.metrics,
        }


@dataclasses.dataclass(frozen=True)
class Options:
    at: str | None = None
    keep: bool = False
    force: bool = False  # go on with changed inputs, recording it
    strict_env: bool = False  # refuse (not just warn) when the environment differs
    yes: bool = False  # run a foreign manifest's command without asking
    extra_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    threads: int | None = None  # override the recorded thread count (verify --vary)
    name: str | None = None
    workdir_name: str = "worktree"
    kill_after: float | None = None  # seconds from SIGTERM to SIGKILL (runner.KILL_AFTER_S)
    started_by: str | None = None  # "verify": the replay is verify's, never `latest`
    stdout_to_stderr: bool = False  # verify keeps its stdout for the verdict
    # verify --level statistical: a fresh seed instead of the recorded one, and the group of
    # fresh runs this replay belongs to
    seed: int | None = None
    group: manifest.Group | None = None


def make_plan(loaded: history.Loaded, runs: store.Store, at: str | None = None) -> Plan:
    m, run_dir = loaded.manifest, loaded.run_dir
    manifest.confined(m.command.cwd, "working directory") if m.command.cwd != "." else None
    patch = None
    if m.code.patch and at is None:
        name = manifest.confined(m.code.patch.file or "code.patch", "patch file")
        patch = run_dir / name
        if not patch.is_file():
            raise errors.ReplayError(f"the run's patch {patch} is missing",
                                     hint="the run directory is incomplete")
        if data.hash_file(patch) != m.code.patch.hash:
            raise errors.ReplayError(f"the run's patch {patch} does not match its recorded hash",
                                     hint="the run directory was modified")
    untracked = []
    if at is None:
        for u in m.code.untracked:
            rel = manifest.confined(u.path or "", "untracked file")
            copy = run_dir / "untracked" / rel if u.copied else None
            if copy is not None and copy.is_file() and data.hash_file(copy) != u.hash:
                # A signed manifest does not vouch for files beside it: a pull can replace an
                # ignored copy under .repro/ with a tracked one.
                raise errors.ReplayError(
                    f"the run's copy of untracked file {rel} does not match its recorded hash",
                    hint="the run directory was modified")
            untracked.append((rel, copy, u))
    submodules = []
    if at is None:
        for sub in m.code.submodules:
            rel = manifest.confined(sub.path or "", "submodule path")
            commit = sub.commit or ""
            if commit and not all(c in "0123456789abcdef" for c in commit):
                raise errors.ManifestError(f"the manifest's submodule {rel} has a malformed "
                                           f"commit {commit[:50]!r}")
            sub_patch = None
            if sub.patch is not None:
                name = manifest.confined(sub.patch.file or "", "patch file")
                sub_patch = run_dir / name
                if not sub_patch.is_file() or data.hash_file(sub_patch) != sub.patch.hash:
                    raise errors.ReplayError(
                        f"the patch of submodule {rel} ({sub_patch}) is missing or does not "
                        "match its recorded hash", hint="the run directory is incomplete or was "
                                                        "modified")
            submodules.append((rel, commit or None, sub_patch))
    inputs = []
    for path, entry in m.data.items():
        if not Path(path).is_absolute():
            manifest.confined(path, "input path")
        inputs.append(Input(path, entry))
    outputs = tuple(manifest.confined(p, "output path") for p in m.outputs)
    metrics_src = m.metrics.source
    det = m.determinism
    injected = replayable_env(det.env, "determinism.env")  # only repro's own, named sanely
    epoch = injected.get("SOURCE_DATE_EPOCH")
    if epoch is not None and not epoch.isdigit():
        raise errors.ManifestError(f"the manifest's determinism.env SOURCE_DATE_EPOCH {epoch!r} "
                                   "is not a number of seconds",
                                   hint="the manifest is damaged or was edited by hand")
    return Plan(
        run_id=m.run_id, commit=m.code.commit, at=at, patch=patch, untracked=tuple(untracked),
        submodules=tuple(submodules),
        argv=m.command.argv, cwd=m.command.cwd, seed=m.seed.value,
        level=det.level or "strict",
        threads=det.threads,
        user_env=replayable_env(det.user_set, "determinism.user_set"),
        restored_env=restorable_env(m.environment.env, config.load(runs.root).env_allow),
        inputs=tuple(inputs), outputs=outputs,
        metrics=manifest.confined(metrics_src, "metrics file") if metrics_src is not None else None,
        python=m.environment.python or manifest.PythonInfo(),
        packages=m.environment.packages,
        foreign=not trust.produced_here(loaded.path or run_dir / store.MANIFEST, runs.root),
        source_date_epoch=int(epoch) if epoch is not None else None,
    )


def replayable_env(values: Mapping[str, str], what: str) -> dict[str, str]:
    """Only variables repro itself manages may come from a manifest into a replay.

    A manifest is data: it must not be able to set LD_PRELOAD, BASH_ENV or PATH for the
    replayed command, nor smuggle shell syntax into `--script` through a variable's name.
    """
    import re

    allowed = seeding.managed_variables()
    out = {}
    for key, value in values.items():
        name = str(key)
        if name == "PYTHONPATH":
            continue  # the user's own, recorded for information; the replay uses today's
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name not in allowed:
            raise errors.ReplayError(
                f"the manifest's {what} sets {name!r}, which repro does not manage",
                hint="refusing to take environment variables from a manifest beyond repro's own")
        out[name] = str(value)
    return out


# Recorded for information, not settings to restore: which environment it was, by path.
_NOT_RESTORED = frozenset({"VIRTUAL_ENV", "CONDA_DEFAULT_ENV"})


def restorable_env(values: Mapping[str, Any], env_allow: Sequence[str]) -> dict[str, str]:
    """The recorded `environment.env` variables a replay sets again.

    Only names on the allow-list (repro's defaults plus this checkout's `env_allow`, which the
    user controls, not the manifest), never secret-looking ones, never repro's own or those
    `determinism.user_set` already carries. Anything else in a manifest is ignored.
    """
    import fnmatch

    patterns = (*environment.DEFAULT_ENV_ALLOW, *env_allow)
    managed = seeding.managed_variables()
    out = {}
    for key, value in values.items():
        name = str(key)
        if (not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or environment.is_secret_name(name)
                or name.startswith("REPRO_") or name in managed or name in _NOT_RESTORED
                or not isinstance(value, (str, int, float)) or isinstance(value, bool)):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            out[name] = str(value)
    return out


@dataclasses.dataclass(frozen=True)
class Replayed:
    outcome: runflow.RunOutcome
    worktree: Path
    plan: Plan
    unrecorded: tuple[str, ...] = ()  # files the failed replay missed that the checkout has


@contextlib.contextmanager
def session(runs: store.Store, loaded: history.Loaded, opts: Options, reporter: report.Reporter,
            confirm: Callable[[str], bool] | None) -> Iterator[Replayed]:
    """Replay the run; the worktree lives until the block ends (verify judges files in it)."""
    plan = make_plan(loaded, runs, opts.at)
    _consent(plan, opts, confirm)
    commit = git.resolve_rev(runs.root, opts.at) if opts.at else plan.commit
    if not git.has_commit(runs.root, commit):
        raise errors.ReplayError(f"commit {commit[:12]} of run {plan.run_id} is not in this clone",
                                 hint="fetch it (`git fetch --all`) and try again")
    if opts.at and (plan.patch is not None or loaded.manifest.code.dirty):
        reporter.warn(f"run {plan.run_id} had uncommitted changes; --at {opts.at} runs the "
                      "committed code at that revision without them")
    redact.restore_argv(plan.argv, os.environ)  # secret arguments: refuse now, not later
    own: dict[str, frozenset[str]] = {}  # files the recorded run added to its inputs
    forced, before = _check_inputs(plan, loaded, runs, opts.force, reporter, own)
    _check_environment(plan, opts.strict_env, reporter)
    clean_stale(runs.root)
    _warn_restored_env(plan, opts.extra_env, reporter)
    budget = config.load(runs.root).replay_copy_max_bytes
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
    _claim(tmp)
    worktree = tmp / opts.workdir_name
    try:
        git.add_worktree(runs.root, worktree, commit)
        git.populate_submodules(runs.root, worktree, plan.submodules)
        _rebuild(plan, runs.root, worktree, opts.force, reporter)
        _make_cwd(worktree, plan.cwd)
        linked: dict[str, tuple[str, Any]] = {}  # links out of the replay (see _copy_input)
        in_place = _place_inputs(plan, runs.root, worktree, budget, reporter, linked, own)
        note = "replayed with changed inputs (--force): " + ", ".join(forced) if forced else None
        request = runflow.RunRequest(
            argv=redact.restore_argv(replay_argv(plan, runs.root, worktree), os.environ),
            recorded_argv=plan.argv,
            cwd=worktree / plan.cwd, seed=plan.seed if opts.seed is None else opts.seed,
            seed_source="replayed" if opts.seed is None else "group", group=opts.group,
            determinism=plan.level, threads=opts.threads or plan.threads, allow_dirty=True,
            allow_unlocked=True, data=tuple(i.path if Path(i.path).is_absolute()
                                             else str(worktree / i.path) for i in plan.inputs),
            outputs=tuple(str(worktree / p) for p in plan.outputs),
            metrics=str(worktree / plan.metrics) if plan.metrics else None,
            name=opts.name, note=note, replay_of=plan.run_id,
            env=_replay_env(plan, opts), source_date_epoch=plan.source_date_epoch,
            store=runs, root=worktree, started_by=opts.started_by,
            stdout_to_stderr=opts.stdout_to_stderr, kill_after=opts.kill_after)
        outcome = runflow.execute(request, reporter)
        interrupted = outcome.manifest.run.status == "interrupted"
        _check_in_place(in_place, before, loaded, runs, reporter, raise_=not interrupted)
        _check_linked(linked, reporter, raise_=not interrupted)
        if interrupted and (opts.started_by == "verify"
                            or outcome.manifest.run.signal not in ("SIGTERM", "SIGHUP",
                                                                   "SIGKILL")):
            # Ctrl-C: exit 130 and no verdict; the run says interrupted. (A replay whose
            # command SIGTERM killed exits 143, and 137 after --kill-after, as `run` does.)
            raise KeyboardInterrupt
        unrecorded = _unrecorded_reads(outcome, plan, runs.root, worktree) \
            if outcome.exit_code != 0 else ()
        for rel in unrecorded:
            reporter.warn(*unrecorded_message(rel))
        yield Replayed(outcome, worktree, plan, unrecorded)
    finally:
        _forget_worktree_cache(runs, worktree, plan)
        if opts.keep:
            with contextlib.suppress(OSError):
                (tmp / OWNER).unlink()  # kept on purpose: never cleaned up as stale
            reporter.warn(f"kept the replay worktree at {worktree}",
                          hint=f"remove it with `git worktree remove --force {worktree}`")
        else:
            with contextlib.suppress(errors.ReproError):
                git.remove_worktree(runs.root, worktree)
            shutil.rmtree(tmp, ignore_errors=True)


TMP_PREFIX = "repro-replay-"
OWNER = "owner"  # in each replay's temp dir: "<pid> <start ticks> <host>" of its repro


def _claim(tmp: Path) -> None:
    pid = os.getpid()
    (tmp / OWNER).write_text(f"{pid} {store.process_start_ticks(pid)} {os.uname().nodename}\n",
                             encoding="utf-8")


def clean_stale(root: Path) -> None:
    """Remove what replays killed before their cleanup (SIGKILL, a power cut) left behind:
    temp dirs whose owning repro is gone, and the worktrees git still has registered there."""
    for tmp in Path(tempfile.gettempdir()).glob(TMP_PREFIX + "*"):
        try:
            pid_text, ticks_text, host = (tmp / OWNER).read_text(encoding="utf-8").split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue  # not a replay's, kept with --keep, or made by an older repro
        if host != os.uname().nodename:
            continue  # a /tmp shared with another machine or container: its pids are not ours
        if pid == os.getpid() or _alive(pid, ticks_text):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
    git.prune_worktrees(root)


def _alive(pid: int, ticks: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return ticks == "None" or str(store.process_start_ticks(pid)) == ticks


def _make_cwd(worktree: Path, cwd: str) -> None:
    """The run's working directory existed when it was recorded, but git does not keep a
    directory with no tracked files in it (an ignored `runs/` folder): create it."""
    if cwd in (".", ""):
        return
    here = worktree
    for part in Path(manifest.confined(cwd, "working directory")).parts:
        here = here / part
        if here.is_symlink():
            return  # a tracked link: the runner says where it leads if it is broken
        if not here.exists():
            here.mkdir()


def _replay_env(plan: Plan, opts: Options) -> dict[str, str]:
    """The parent environment of the replayed run: ours, the recorded allow-listed variables,
    the variables the user had set for the recorded run, --vary's. A SOURCE_DATE_EPOCH repro
    injected is injected again as recorded, not taken from the caller's shell (where it may
    hold a build's date)."""
    env = {**os.environ, **_with_credentials(plan.restored_env), **plan.user_env,
           **opts.extra_env}
    if plan.source_date_epoch is not None and "SOURCE_DATE_EPOCH" not in plan.user_env:
        env.pop("SOURCE_DATE_EPOCH", None)
    return env


def _forget_worktree_cache(runs: store.Store, worktree: Path, plan: Plan) -> None:
    """The stat cache of the worktree's copies and outputs: never hashed again, so dropped
    (a linked input resolves to the checkout, whose cache entries are kept)."""
    real = os.path.realpath(worktree)
    paths = [os.path.realpath(worktree / p) for p in (*(i.path for i in plan.inputs
                                                         if not Path(i.path).is_absolute()),
                                                      *plan.outputs)]
    data.forget_cached(runs.cache_dir, [p for p in paths if p.startswith(real + os.sep)])


def from_checkout(plan: Plan, root: Path, worktree: Path | None) -> frozenset[int]:
    """Indices of argv words naming programs that live in the checkout, not in the code.

    `.venv/bin/python train.py` names an interpreter in the user's checkout (ignored by git),
    not in the commit: the replay's worktree has no `.venv`. Such a word (the program, or a
    `python…` word after `env`) must run from the checkout.
    """
    picked = set()
    for i, word in enumerate(plan.argv):
        if i > 0 and not environment.is_python_word(word):
            continue
        if os.path.isabs(word) or "/" not in word:
            continue
        in_tree = worktree is not None and (worktree / plan.cwd / word).exists()
        if not in_tree and (root / plan.cwd / word).exists():
            picked.add(i)
    return frozenset(picked)


def replay_argv(plan: Plan, root: Path, worktree: Path) -> tuple[str, ...]:
    picked = from_checkout(plan, root, worktree)
    return tuple(str(root / plan.cwd / w) if i in picked else w for i, w in enumerate(plan.argv))


def _consent(plan: Plan, opts: Options, confirm: Callable[[str], bool] | None) -> None:
    if not plan.foreign or opts.yes:
        return
    command = " ".join(shlex.quote(a) for a in plan.argv)
    shown_env = {**plan.restored_env, **plan.user_env}
    if shown_env:
        command = " ".join(f"{k}={shlex.quote(v)}" for k, v in shown_env.items()) + " " + command
    # Shown as it will run: a control character (ESC[1A, ESC[2K...) in a foreign argv must
    # not redraw the terminal to hide the real command behind a harmless-looking one.
    command = bounded.escape(command)
    if confirm is None:
        raise errors.ReplayError(
            f"run {plan.run_id} was not recorded in this clone (or was changed since); "
            f"refusing to run its command "
            f"without confirmation: {command}",
            hint="read the command, then pass --yes (CI) or run on a terminal to be asked")
    if not confirm(command):
        raise errors.ReplayError("replay cancelled", hint=None)


def _check_inputs(plan: Plan, loaded: history.Loaded, runs: store.Store, force: bool,
                  reporter: report.Reporter, own: dict[str, frozenset[str]] | None = None,
                  ) -> tuple[list[str], dict[str, data.Entry]]:
    """Recorded inputs must still hash the same in the user's checkout; names what differs.

    Returns the problems (with --force) and the inputs as they are now, for the check after
    the replay of those it reads in place. A directory input that differs only by files the
    recorded run itself added (a cache beside its data; see `_added_by_run`) is as recorded
    once they are left out: `own` gets them (input path -> relpaths), for `_place_inputs`.
    """
    if not plan.inputs:
        return [], {}
    paths = [i.path for i in plan.inputs]
    existing = [p for p in paths if (runs.root / p).exists() or (runs.root / p).is_symlink()]
    with reporter.progress("checking inputs") as progress:
        entries = data.hash_paths(existing, root=runs.root, cache_dir=runs.cache_dir,
                                  progress=progress) if existing else []
    now = {e.path: e for e in entries}
    problems: list[str] = []
    listings: Mapping[str, Mapping[str, tuple[str, int]]] | None = None
    for i in plan.inputs:
        e = now.get(i.path)
        if e is None:
            problems.append(f"{i.path} (missing)")
        elif (e.hash or e.target) != (i.entry.hash or i.entry.target):
            listings = loaded.listings() if listings is None else listings
            added = _added_by_run(i, e, listings, loaded.manifest, runs.root)
            if added and own is not None:
                own[i.path] = added
                shown = ", ".join(sorted(added)[:5]) + (" ..." if len(added) > 5 else "")
                reporter.warn(f"the recorded run appended to input {i.path}: the replay starts "
                              "from the bytes it had, as the run did" if added == {""} else
                              f"input {i.path} has files the recorded run wrote into it "
                              f"({shown}): the replay starts without them, as the run did")
                continue
            problems.append(_changed_files(i, e, listings))
    if problems and not force:
        raise errors.ReplayError("inputs differ from the recorded run: " + "; ".join(problems),
                                 hint="restore the recorded data, or pass --force to replay "
                                      "anyway (recorded in the new run)")
    for p in problems:
        reporter.warn(f"input differs from the recorded run: {p}")
    return problems, now


def _added_by_run(i: Input, now: data.Entry,
                  listings: Mapping[str, Mapping[str, tuple[str, int]]], m: manifest.Manifest,
                  root: Path) -> frozenset[str]:
    """What the recorded run itself added to an input: for a directory, the files it added (the
    listing differs from the recorded one only by them); for a file, `{""}` when the run
    appended to it (it grew and starts with the recorded bytes). Each was changed (ctime, which
    no program can set back) while the run ran. Empty when anything else differs."""
    import datetime as dt

    if not m.run.finished_at:
        return frozenset()
    try:
        window = [dt.datetime.fromisoformat(t).timestamp()
                  for t in (m.run.started_at, m.run.finished_at)]
    except ValueError:
        return frozenset()
    recorded = listings.get(str(i.entry.listing))
    size, digest = i.entry.size, i.entry.hash
    if (i.entry.kind == "file" and now.kind == "file" and size is not None
            and now.size > size and digest is not None):
        added = [""] if data.hash_prefix(root / i.path, size) == digest else []
    elif i.entry.kind == "dir" and recorded is not None and now.listing is not None:
        from repro.judge import compare

        changes = compare.diff_listing(recorded, now.listing)
        added = [] if changes["removed"] or changes["modified"] else changes["added"]
    else:
        return frozenset()
    if not added:
        return frozenset()
    for rel in added:
        try:
            # A named file is followed (as it was hashed); links inside a directory are not.
            ctime = (os.lstat(root / i.path / rel) if rel else os.stat(root / i.path)).st_ctime
        except OSError:
            return frozenset()
        if not window[0] - 0.05 <= ctime <= window[1]:  # (file times lag by a clock tick)
            return frozenset()
    return frozenset(added)


def _changed_files(i: Input, now: data.Entry,
                   listings: Mapping[str, Mapping[str, tuple[str, int]]]) -> str:
    """The input and, for a directory whose listing was kept, the files that changed."""
    recorded = listings.get(str(i.entry.listing))
    if i.entry.kind != "dir" or recorded is None or now.listing is None:
        return f"{i.path} (hash changed)"
    from repro.judge import compare

    changes = compare.diff_listing(recorded, now.listing)
    parts = [f"{kind} {', '.join(files[:5])}" + (" ..." if len(files) > 5 else "")
             for kind, files in changes.items() if files]
    return f"{i.path} ({'; '.join(parts)})"


def _check_environment(plan: Plan, strict: bool, reporter: report.Reporter) -> None:
    """The interpreter the command will run vs the recorded one: versions and packages."""
    python, how = environment.find_interpreter(plan.argv, Path.cwd(), os.environ)
    interp = environment.finish_inspect(environment.start_inspect(python, os.environ), python, how)
    installed = environment.installed_packages(interp.sys_path).versions
    diffs = []
    if plan.python.version and plan.python.version != interp.version:
        diffs.append(f"python {plan.python.version} -> {interp.version}")
    for name in sorted(set(plan.packages) | set(installed)):
        a, b = plan.packages.get(name), installed.get(name)
        if a != b and name != "repro":
            diffs.append(f"{name} {a or '(none)'} -> {b or '(none)'}")
    if not diffs:
        return
    # Most often the cause is another interpreter (`python` found elsewhere on PATH than the
    # venv the run used): say so first, not after ten package names.
    recorded = plan.python.executable
    moved = recorded is not None and recorded != interp.executable
    if moved:
        diffs.insert(0, f"interpreter {recorded} -> {interp.executable}")
    shown = ", ".join(diffs[:10]) + (f" and {len(diffs) - 10} more" if len(diffs) > 10 else "")
    where = f"the run used {recorded}: activate its environment; " if moved else ""
    if strict:
        raise errors.ReplayError(
            f"the environment differs from the recorded run: {shown}",
            hint=f"{where}install the recorded versions, or drop --strict-env")
    reporter.warn(f"the environment differs from the recorded run: {shown}",
                  hint=f"{where}results may differ; --strict-env refuses instead")


def _rebuild(plan: Plan, root: Path, worktree: Path, force: bool,
             reporter: report.Reporter) -> None:
    """Apply the patch and restore untracked files (inputs: `_place_inputs`)."""
    if plan.patch is not None:
        git.apply_patch(worktree, plan.patch)
    for rel, copy, entry in plan.untracked:
        dest = _inside(worktree, rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if entry.target is not None:
            dest.symlink_to(str(entry.target))
        elif copy is not None and copy.is_file():
            shutil.copy2(copy, dest)
        else:
            src = root / rel  # too big to copy at record time: take it from the checkout
            if src.is_file() and data.hash_file(src) == entry.hash:
                shutil.copy2(src, dest)
            elif not force and entry.secret:
                raise errors.ReplayError(
                    f"untracked file {rel} may hold secrets, so it was hashed, not copied, at "
                    "record time; the checkout's copy differs or is missing",
                    hint=f"put the recorded {rel} back in the checkout (its hash is checked), "
                         "or pass --force to replay without it")
            elif not force:
                raise errors.ReplayError(
                    f"untracked file {rel} was not copied at record time and the checkout's "
                    "copy differs or is missing",
                    hint="restore it, or pass --force to replay without it")
            else:
                reporter.warn(f"replaying without untracked file {rel}")


def _place_inputs(plan: Plan, root: Path, worktree: Path, budget: int,
                  reporter: report.Reporter,
                  linked: dict[str, tuple[str, Any]] | None = None,
                  own: Mapping[str, frozenset[str]] | None = None) -> list[Input]:
    """Put copies of the inputs git does not track into the worktree; return those read in place.

    Whatever the script does to its inputs (writes, files beside them, deletes) then happens
    to the copies. Reflinks (copy-on-write) are free; plain copies share `budget` bytes. An
    input over it is linked, named now, and checked after the replay, as are inputs outside
    the repository and inputs reached through a symlink the commit itself has. A directory
    input and a file inside it are one input: parents are placed first, children are in them.
    A link inside a copied directory stays a link (the input's hash records it so); one that
    leads out of the worktree is named now and its target goes into `linked` (worktree path
    -> (target, stat tree)) for `_check_linked` after the replay. `own`: files the recorded
    run wrote into an input directory (see `_check_inputs`), left out of its copy.
    """
    in_place: list[Input] = []
    placed: list[tuple[str, ...]] = []
    copied = 0
    for i in sorted(plan.inputs, key=lambda i: len(PurePosixPath(i.path).parts)):
        if Path(i.path).is_absolute():
            in_place.append(i)  # outside the repository: read where it is
            continue
        parts = PurePosixPath(manifest.confined(i.path, "input path")).parts
        if any(parts[:len(p)] == p for p in placed):
            continue  # inside an input already placed
        placed.append(parts)
        dest = worktree.joinpath(*parts)
        src = root.joinpath(*parts)
        if _through_link(worktree, parts) or dest.is_symlink():
            in_place.append(i)  # a symlink of the commit leads there: never write through it
            continue
        if not src.exists():
            if not dest.exists() and not dest.is_symlink() and src.is_symlink():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(os.readlink(src))  # a dangling link, recorded as a link
            continue
        if dest.exists() and not dest.is_dir():
            continue  # tracked at this commit, or restored with the untracked files
        size = i.entry.size or 0
        skip = (own or {}).get(i.path, frozenset())
        if copied + size > budget and not _can_clone(src, worktree):
            if skip:
                reporter.warn(f"the replay reads input {i.path} in place, with what the "
                              "recorded run wrote into it")
            reporter.warn(f"input {i.path} is too large to copy into the replay "
                          f"({size} bytes; replay_copy_max_bytes is {budget}): the replay "
                          "reads it in place, and repro checks afterwards that it is unchanged",
                          hint="raise `replay_copy_max_bytes` in the configuration to copy it")
            if dest.is_dir():  # the commit tracks part of it: link what the worktree lacks
                for name in sorted(os.listdir(src)):
                    if not os.path.lexists(dest / name) and name not in (".git", ".repro"):
                        (dest / name).symlink_to(src / name)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(src)
            in_place.append(i)
            continue
        out: list[tuple[str, str]] = []
        try:
            copied += _copy_input(src, dest, skip_top=(".git", ".repro") if not parts else (),
                                  worktree=worktree, links_out=out, skip=skip)
            if skip == {""}:  # the run appended to this file: start from the recorded bytes
                os.truncate(dest, size)
        except OSError as e:
            raise errors.ReplayError(
                f"cannot copy input {i.path} into the replay's worktree: {e.strerror or e}",
                hint="check free space in the temporary directory ($TMPDIR)") from e
        if out:
            from repro.capture import written

            shown = ", ".join(f"{rel} -> {target}" for rel, target in out[:5])
            reporter.warn(f"input {i.path} has links out of the replay ({shown}"
                          f"{' ...' if len(out) > 5 else ''}): the replay reads them in place, "
                          "and repro checks afterwards that what they lead to is unchanged")
            for rel, target in out:
                if linked is not None:
                    linked[rel] = (target, written.stat_tree(Path(target)))
    return in_place


def _check_linked(linked: Mapping[str, tuple[str, Any]], reporter: report.Reporter,
                  raise_: bool) -> None:
    """What links out of the replay lead to must be as it was before it (one stat per file)."""
    from repro.capture import written

    changed = [f"{rel} -> {target}" for rel, (target, tree) in linked.items()
               if written.stat_tree(Path(target)) != tree]
    if not changed:
        return
    message = ("the replay changed " + "; ".join(changed)
               + " (reached through a link in a copied input, read in place)")
    _changed_input(message, "replace the link by the file", reporter, raise_)


def _through_link(worktree: Path, parts: Sequence[str]) -> bool:
    here = worktree
    for part in parts[:-1]:
        here = here / part
        if here.is_symlink():
            return True
    return False


_FICLONE = 0x40049409  # linux/fs.h: share the source's blocks (btrfs, XFS, bcachefs, ...)


def _can_clone(src: Path, worktree: Path) -> bool:
    """Whether the file system can reflink `src` (its first file) into the worktree."""
    first = src.resolve()
    if first.is_dir():
        first = next((Path(d, f) for d, _, fs in os.walk(first) for f in fs
                      if Path(d, f).is_file() and not Path(d, f).is_symlink()), first)
    if not first.is_file():
        return True  # nothing to copy
    probe = worktree / ".repro-clone-probe"
    try:
        return _clone_or_copy(str(first), str(probe), clone_only=True)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def _clone_or_copy(src: str, dst: str, clone_only: bool = False) -> bool:
    """Copy one regular file; True when it was a reflink (free and copy-on-write)."""
    import fcntl

    with open(src, "rb") as fi, open(dst, "xb") as fo:
        try:
            fcntl.ioctl(fo.fileno(), _FICLONE, fi.fileno())
            cloned = True
        except OSError:
            cloned = False
    if not cloned and not clone_only:
        shutil.copyfile(src, dst)  # sendfile/copy_file_range in the kernel where possible
    with contextlib.suppress(OSError):
        shutil.copystat(src, dst)
    return cloned


def _copy_input(src: Path, dest: Path, skip_top: Sequence[str] = (), worktree: Path | None = None,
                links_out: list[tuple[str, str]] | None = None,
                skip: frozenset[str] = frozenset()) -> int:
    """Copy a file or a directory (merged into what the worktree has); the bytes not reflinked.

    A named symlink is followed (`data -> /mnt/datasets` is copied as a directory); links
    inside a directory stay links, as the input's hash records them. Those that, placed in the
    worktree, lead out of it (absolute, or up past its top) are appended to `links_out` as
    (path relative to the worktree, real target). `skip`: relpaths (in a directory) not copied.
    """
    top = os.path.realpath(worktree) if worktree is not None else None

    def one(s: str, d: str) -> int:
        if os.path.lexists(d):
            return 0  # tracked at this commit: the worktree's version is the recipe's
        st = os.lstat(s)
        if os.path.islink(s):
            os.symlink(os.readlink(s), d)
            if top is not None and links_out is not None:
                target = os.path.realpath(d)
                if not (target + os.sep).startswith(top + os.sep):  # dangling ones too
                    links_out.append((os.path.relpath(d, worktree), target))
            return 0
        if not os.path.isfile(s):
            return 0  # a FIFO or socket: nothing to copy
        return 0 if _clone_or_copy(s, d) else st.st_size

    dest.parent.mkdir(parents=True, exist_ok=True)
    real = os.path.realpath(src)
    if not os.path.isdir(real):
        return one(real, str(dest))
    plain = 0
    for dirpath, dirnames, filenames in os.walk(real):
        rel = os.path.relpath(dirpath, real)
        target = dest if rel == "." else dest / rel
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in skip_top]
            filenames = [f for f in filenames if f not in skip_top]
        target.mkdir(exist_ok=True)
        for name in list(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                dirnames.remove(name)
                if _rel_in(rel, name) not in skip:
                    plain += one(os.path.join(dirpath, name), str(target / name))
        for name in filenames:
            if _rel_in(rel, name) not in skip:
                plain += one(os.path.join(dirpath, name), str(target / name))
    return plain


def _rel_in(rel_dir: str, name: str) -> str:
    """A listing's relpath ('/'-separated) of `name` in `rel_dir` (relative to the input)."""
    return name if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/" + name


def _check_in_place(inputs: Sequence[Input], before: Mapping[str, data.Entry],
                    loaded: history.Loaded, runs: store.Store, reporter: report.Reporter,
                    raise_: bool) -> None:
    """Inputs the replay read in place must be as they were before it (one stat per file)."""
    paths = [i.path for i in inputs if i.path in before]
    if not paths:
        return
    entries = data.hash_paths(paths, root=runs.root, cache_dir=runs.cache_dir)
    changed = []
    listings: dict[str, Mapping[str, tuple[str, int]]] = {}
    for i, now in zip([i for i in inputs if i.path in before], entries, strict=True):
        was = before[i.path]
        if (now.kind, now.hash, now.target) == (was.kind, was.hash, was.target):
            continue
        if was.listing is not None:
            listings["was"] = was.listing
        entry = manifest.FileEntry(kind=was.kind, listing="was")
        changed.append(_changed_files(Input(i.path, entry), now, listings))
    if not changed:
        return
    message = "the replay changed input " + "; ".join(changed) + " (read in place, not copied)"
    _changed_input(message, "raise `replay_copy_max_bytes` so replays copy it", reporter, raise_)


def _changed_input(message: str, remedy: str, reporter: report.Reporter, raise_: bool) -> None:
    """A replay changed what the user has: an error, or a warning for an interrupted replay."""
    hint = f"restore it from your backup; {remedy}, or keep the script from writing into its inputs"
    if not raise_:
        reporter.warn(message, hint)
        return
    raise errors.ReplayError(message, hint=hint)


# `open('x')` -> "[Errno 2] No such file or directory: 'x'"; coreutils -> "cat: x: No such ..."
_MISSING_RES = (re.compile(r"No such file or directory: (?:'([^'\n]+)'|\"([^\"\n]+)\")"),
                re.compile(r"(?m)^[\w.-]+: (?:cannot (?:open|stat|access) )?'?([^':\n]+?)'?: "
                           r"No such file or directory"))


def _unrecorded_reads(outcome: runflow.RunOutcome, plan: Plan, root: Path,
                      worktree: Path) -> tuple[str, ...]:
    """Files the failed replay could not find that exist in the checkout: inputs not recorded."""
    try:
        with open(outcome.run_dir / "stderr.log", "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ()
    found: list[str] = []
    cwd = worktree / plan.cwd
    for pattern in _MISSING_RES:
        for match in pattern.finditer(text):
            word = next(g for g in match.groups() if g)
            path = os.path.normpath(os.path.join(cwd, word))
            rel = os.path.relpath(path, worktree)
            if rel == "." or rel.startswith(".."):
                continue
            rel = rel.replace(os.sep, "/")
            if (os.path.lexists(root / rel) and not os.path.lexists(worktree / rel)
                    and rel not in found):
                found.append(rel)
    return tuple(found)


def unrecorded_message(rel: str) -> tuple[str, str]:
    return (f"the replay could not find {rel}: it exists in your checkout, but the run did not "
            "record it as an input",
            f"record it with the run (`repro run --data {rel} -- ...`, or `data: [{rel}]` in "
            "repro.yaml), then verify that run")


def _with_credentials(restored: Mapping[str, str]) -> dict[str, str]:
    """The restored variables, less those the user has set to the recorded value plus the
    credentials recording stripped (`https://u:pw@host` recorded as `https://host`): the
    replay keeps the user's value, which it needs to authenticate."""
    from repro.capture.git import strip_credentials

    return {k: v for k, v in restored.items()
            if k not in os.environ or strip_credentials(os.environ[k]) != v}


def _warn_restored_env(plan: Plan, extra: Mapping[str, str], reporter: report.Reporter) -> None:
    from repro.capture.git import strip_credentials

    for name, value in _with_credentials(plan.restored_env).items():
        mine = os.environ.get(name)
        if mine is not None and mine != value and name not in extra and name not in plan.user_env:
            reporter.warn(f"the replay sets {name}={value!r} as the run recorded it "
                          f"(yours is {strip_credentials(mine)!r})")  # never a password


def _inside(worktree: Path, rel: str, existing_ok: bool = False) -> Path:
    """Where to write `rel` in the worktree, refusing any path that passes through a symlink.

    A string check is not enough: a manifest could create `lnk -> /home/me` first and then
    restore `lnk/.bashrc`. No parent may be a symlink, and the file itself must not exist
    (the worktree is fresh: an existing entry is a tracked file or link we must not replace).
    """
    parts = Path(manifest.confined(rel, "path")).parts
    here = worktree
    for part in parts[:-1]:
        here = here / part
        if here.is_symlink():
            raise errors.ReplayError(
                f"the manifest's path {rel!r} passes through a symlink ({here.relative_to(worktree)})",
                hint="repro never writes through a symlink in a replay's worktree; a manifest "
                     "repro recorded never asks for it, so this one came from elsewhere")
    dest = here / parts[-1]
    if dest.is_symlink() and not existing_ok:
        raise errors.ReplayError(f"the manifest's path {rel!r} is a symlink in the worktree",
                                 hint="refusing to write through a symlink")
    return dest


# ---------------------------------------------------------------------------- --script

def _shell_quote(word: str) -> str:
    """shlex.quote, but a word with control characters (ESC, CR...) as bash's `$'...'` with
    them escaped: the same word for bash, and `cat script` cannot redraw the terminal."""
    if word.isprintable():
        return shlex.quote(word)
    return "$'" + "".join(_ansi_c(c) for c in word) + "'"


def _ansi_c(c: str) -> str:
    n = ord(c)
    if c in "\\'":
        return "\\" + c
    if c.isprintable():
        return c
    if 0xDC80 <= n <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): that byte
        return f"\\x{n - 0xDC00:02x}"
    return f"\\x{n:02x}" if n < 0x80 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def script(plan: Plan, m: manifest.Manifest, root: Path) -> str:
    """A bash script that reproduces the run without repro: worktree, patch, env, command."""
    injected = replayable_env(m.determinism.env, "determinism.env")
    hook_src = (seeding.hook_dir() / "sitecustomize.py").read_text(encoding="utf-8")
    q = _shell_quote
    lines = [
        "#!/usr/bin/env bash",
        f"# Reproduces repro run {plan.run_id} without repro installed.",
        "# Usage: bash this-script [CLONE]   (default: the git repository of the current dir)",
        "set -euo pipefail",
        'repo="$(cd "${1:-.}" && git rev-parse --show-toplevel)"',
        'work="$(mktemp -d)"',
        f'git -C "$repo" worktree add --quiet --detach "$work/tree" {q(plan.commit)}',
        'cd "$work/tree"',
    ]
    for n, (rel, commit, sub_patch) in enumerate(plan.submodules):
        # From the clone's own copy of the submodule: no network.
        lines += [f'git clone --quiet --shared --no-checkout "$repo"/{q(rel)} {q(rel)}',
                  f"git -C {q(rel)} checkout --quiet --detach {q(commit or 'HEAD')}"]
        if sub_patch is not None:
            encoded = base64.b64encode(sub_patch.read_bytes()).decode()
            lines += [f"base64 -d > \"$work/submodule-{n}.patch\" <<'REPRO_EOF'",
                      *_wrap(encoded), "REPRO_EOF",
                      f'git -C {q(rel)} apply --binary "$work/submodule-{n}.patch"']
    if plan.patch is not None:
        encoded = base64.b64encode(plan.patch.read_bytes()).decode()
        lines += ["base64 -d > \"$work/code.patch\" <<'REPRO_EOF'", *_wrap(encoded), "REPRO_EOF",
                  'git apply --binary "$work/code.patch"']
    for rel, copy, _entry in plan.untracked:
        if copy is None or not copy.is_file():
            lines.append(f"cp {q(rel)} {q(rel)} 2>/dev/null || "
                         f"cp \"$repo\"/{q(rel)} {q(rel)}  # not copied at record time")
            continue
        encoded = base64.b64encode(copy.read_bytes()).decode()
        lines += [f"mkdir -p {q(str(Path(rel).parent))}",
                  f"base64 -d > {q(rel)} <<'REPRO_EOF'", *_wrap(encoded), "REPRO_EOF"]
    placed: list[tuple[str, ...]] = []
    for i in sorted(plan.inputs, key=lambda i: len(PurePosixPath(i.path).parts)):
        parts = PurePosixPath(i.path).parts
        if not parts or Path(i.path).is_absolute() or any(parts[:len(p)] == p for p in placed):
            continue  # read in place, or inside an input copied whole
        placed.append(parts)
        # Copies, never links: the script must not write into the user's data either.
        p, src = q(i.path), f'"$repo"/{q(i.path)}'
        lines.append(f"if [ ! -e {p} ] && [ ! -L {p} ]; then mkdir -p {q(str(Path(i.path).parent))}; "
                     f"cp -RH --reflink=auto {src} {p} 2>/dev/null || {{ rm -rf {p}; "
                     f"cp -RH {src} {p}; }}; elif [ -d {p} ] && [ ! -L {p} ] && [ -d {src} ]; "
                     f"then cp -RHn {src}/. {p}/; fi")
        if (root / i.path).is_dir():
            # A link inside the copy that leads out of the worktree (to the user's file) is
            # replaced by a copy of that file; one to a directory is named.
            lines.append(
                f'find {p} -type l | while IFS= read -r l; do t="$(readlink -f -- "$l")" || '
                'continue; case "$t" in "$(cd "$work" && pwd -P)"/*) ;; *) if [ -f "$t" ]; then '
                'cp -- "$t" "$l.repro-copy" && mv -f -- "$l.repro-copy" "$l"; else echo "warning: '
                '$l leads to $t, outside the replay" >&2; fi;; esac; done')
    lines += [
        "# The seeding hook repro injects (standard library only), so an unmodified script",
        "# gets the same seeds and deterministic settings.",
        'mkdir -p "$work/hook" "$work/probe"',
        "cat > \"$work/hook/sitecustomize.py\" <<'REPRO_EOF'", hook_src.rstrip("\n"), "REPRO_EOF",
        'export PYTHONPATH="$work/hook${PYTHONPATH:+:$PYTHONPATH}"',
        'export REPRO_HOOK_OUT="$work/probe"',
    ]
    for k, v in sorted({**plan.restored_env, **injected, **plan.user_env}.items()):
        if k in runflow.RUN_SPECIFIC:
            continue
        lines.append(f"export {k}={q(v)}")
    picked = from_checkout(plan, root, None)
    command = " ".join(f'"$repo"/{q(str(Path(plan.cwd, w)))}' if i in picked
                       else redact.shell_word(w, q) for i, w in enumerate(plan.argv))
    lines += [f"cd {q(plan.cwd)}", command,
              # The worktree stays registered in the clone until removed: say how.
              'echo "when done: git -C \\"$repo\\" worktree remove --force \\"$work/tree\\""'
              ' "&& rm -rf \\"$work\\"" >&2',
              'echo "outputs are in $work/tree" >&2']
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int = 76) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)] or [""]


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()
