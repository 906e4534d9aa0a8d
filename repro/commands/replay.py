"""`repro replay`: rebuild a recorded run's code in a detached worktree and run it again.

The plan (commit, patch, untracked copies, argv, cwd, seed, level, threads, expected inputs) is
derived from the manifest with every path confined to the worktree; execution never touches
the user's working tree or index. Never prints: warnings go through the Reporter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors, report
from repro.capture import cmdline, environment, git, hashing, statcache
from repro.child import seeding
from repro.commands import history, replayinputs
from repro.commands import run as runflow
from repro.record import bounded, config, manifest, redact, store, trust


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
    inputs: tuple[replayinputs.Input, ...]
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
    # A multi-node run replayed on this machine: every rank as a local process (same world
    # size, same per-rank seeds). Without it, such a run is refused with what it would need.
    single_node: bool = False
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
        if hashing.hash_file(patch) != m.code.patch.hash:
            raise errors.ReplayError(f"the run's patch {patch} does not match its recorded hash",
                                     hint="the run directory was modified")
    untracked = []
    if at is None:
        for u in m.code.untracked:
            rel = manifest.confined(u.path or "", "untracked file")
            copy = run_dir / "untracked" / rel if u.copied else None
            if copy is not None and copy.is_file() and hashing.hash_file(copy) != u.hash:
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
                if not sub_patch.is_file() or hashing.hash_file(sub_patch) != sub.patch.hash:
                    raise errors.ReplayError(
                        f"the patch of submodule {rel} ({sub_patch}) is missing or does not "
                        "match its recorded hash", hint="the run directory is incomplete or was "
                                                        "modified")
            submodules.append((rel, commit or None, sub_patch))
    inputs = []
    for path, entry in m.data.items():
        if not Path(path).is_absolute():
            manifest.confined(path, "input path")
        inputs.append(replayinputs.Input(path, entry))
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


def single_node_plan(plan: Plan, d: manifest.Distributed, allowed: bool) -> Plan:
    """The plan of a multi-node run, rewritten to run every rank here (`--single-node`)."""
    from repro.capture import job

    try:
        argv = job.single_node_argv(plan.argv, d.launcher, d.world_size)
    except errors.UsageError as e:
        if allowed:
            raise
        local = None  # --single-node cannot help: do not offer it
        cannot = e.hint
    else:
        local, cannot = argv, None
    if not allowed:
        world = f", world size {d.world_size}" if d.world_size is not None else ""
        nodes = (f"start `repro run` with the recorded command on {d.nnodes} nodes under a "
                 "new job id")
        raise errors.ReplayError(
            f"run {plan.run_id} ran on {d.nnodes} nodes (job {d.job}, "
            f"{d.launcher or 'no launcher'}{world}): replaying it needs {d.nnodes} nodes "
            "started together with its command",
            hint=("add --single-node to replay every rank on this machine as local processes "
                  f"(same world size, same per-rank seeds); or {nodes}") if local is not None
            else cannot or nodes)
    return dataclasses.replace(plan, argv=tuple(argv))


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
    if loaded.manifest.distributed is not None and (loaded.manifest.distributed.nnodes or 1) > 1:
        plan = single_node_plan(plan, loaded.manifest.distributed, opts.single_node)
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
    forced, before = replayinputs.check_inputs(plan, loaded, runs, opts.force, reporter, own)
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
        in_place = replayinputs.place_inputs(plan, runs.root, worktree, budget, reporter,
                                             linked, own)
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
        replayinputs.check_in_place(in_place, before, loaded, runs, reporter,
                                    raise_=not interrupted)
        replayinputs.check_linked(linked, reporter, raise_=not interrupted)
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
    statcache.forget_cached(runs.cache_dir, [p for p in paths if p.startswith(real + os.sep)])


def from_checkout(plan: Plan, root: Path, worktree: Path | None) -> frozenset[int]:
    """Indices of argv words naming programs that live in the checkout, not in the code.

    `.venv/bin/python train.py` names an interpreter in the user's checkout (ignored by git),
    not in the commit: the replay's worktree has no `.venv`. Such a word (the program, or a
    `python…` word after `env`) must run from the checkout.
    """
    picked = set()
    for i, word in enumerate(plan.argv):
        if i > 0 and not cmdline.is_python(word):
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


def _check_environment(plan: Plan, strict: bool, reporter: report.Reporter) -> None:
    """The interpreter the command will run vs the recorded one: versions and packages."""
    python, how = cmdline.find_interpreter(plan.argv, Path.cwd(), os.environ)
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
    """Apply the patch and restore untracked files (inputs: `place_inputs`)."""
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
            if src.is_file() and hashing.hash_file(src) == entry.hash:
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




def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()
