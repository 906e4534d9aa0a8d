"""The `repro run` flow: pre-flight, inject, snapshot, execute, record.

Orchestrates the lower modules and owns the guarantee that every started run leaves a complete
manifest behind, whatever happens to the child or to repro. Reports through a report.Reporter; never
prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import json
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import repro
from repro import errors, report
from repro.capture import data, environment, git
from repro.child import seeding
from repro.commands import preflight, runner
from repro.record import bounded, config, manifest, store, trust

# Injected variables that name this run's directory: recorded elsewhere, never part of the recipe.
RUN_SPECIFIC = frozenset({"PYTHONPATH", "REPRO_HOOK_OUT", "REPRO_RUN_ID", "REPRO_RUN_DIR",
                          "REPRO_METRICS_FILE"})
# Space set aside in each run directory while the run lasts, released just before the final
# manifest is written: a child that fills the disk cannot also take the record's last write.
RESERVE_BYTES = 256 * 1024


@dataclasses.dataclass(frozen=True)
class RunRequest:
    argv: tuple[str, ...]
    cwd: Path
    seed: int | None = None
    seed_source: str | None = None  # "replayed" when replay passes the recorded seed
    determinism: str | None = None
    threads: int | None = None
    allow_dirty: bool = False
    allow_unlocked: bool = False
    data: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    metrics: str | None = None
    name: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    note: str | None = None
    replay_of: str | None = None
    env: Mapping[str, str] | None = None  # the parent environment; default os.environ
    store: store.Store | None = None  # where to record; default the store of cwd's repo
    root: Path | None = None  # the code's git root (a replay worktree); default cwd's repo
    extra_env: Mapping[str, str] = dataclasses.field(default_factory=dict)  # replay's --vary
    # What the manifest records as the command when it differs from what runs: a replay runs
    # `.venv/bin/python` from the checkout by its absolute path, but the recipe is unchanged.
    recorded_argv: tuple[str, ...] | None = None
    kill_after: float | None = None  # seconds from SIGTERM/SIGINT/SIGHUP to SIGKILL (runner)
    # SOURCE_DATE_EPOCH to inject: a replay passes the recorded value (also with --at, whose
    # commit has another time); None: the time of the commit being run.
    source_date_epoch: int | None = None
    started_by: str | None = None  # "verify" for verify's replays (never `latest`)
    # The child's stdout goes to repro's stderr (and stdout.log): `verify` keeps its own stdout
    # for the verdict, so `--json` is exactly one document.
    stdout_to_stderr: bool = False
    group: manifest.Group | None = None  # a member of `repro run --repeat N`


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    run_id: str
    run_dir: Path
    exit_code: int
    manifest: manifest.Manifest


def run_from_options(reporter: report.Reporter, *, cmd: Sequence[str], seed: int | None = None,
                     determinism: str | None = None, threads: int | None = None,
                     allow_dirty: bool = False, allow_unlocked: bool = False,
                     data: Sequence[str] | None = None, output: Sequence[str] | None = None,
                     metrics: str | None = None, name: str | None = None,
                     tag: Sequence[str] | None = None, note: str | None = None,
                     kill_after: float | None = None, quiet: bool = False,
                     group: manifest.Group | None = None) -> int:
    """`repro run`'s options (as both command-line parsers give them) -> the exit code."""
    request = RunRequest(
        argv=tuple(cmd), cwd=Path.cwd(), seed=seed, determinism=determinism, threads=threads,
        allow_dirty=allow_dirty, allow_unlocked=allow_unlocked, data=tuple(data or ()),
        outputs=tuple(output or ()), metrics=metrics, name=name, tags=parse_tags(tag or []),
        note=note, kill_after=kill_after, group=group,
        seed_source="group" if group is not None else None)
    outcome = execute(request, reporter)
    finished = None if quiet else getattr(reporter, "finished", None)
    if finished is not None:  # the CLI's reporter ends the run with a summary line
        finished(outcome)
    return outcome.exit_code


def parse_tags(items: Sequence[str]) -> dict[str, str]:
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise errors.UsageError(f"--tag {item!r} is not K=V", hint="e.g. --tag team=vision")
        tags[key] = value
    return tags


def execute(req: RunRequest, reporter: report.Reporter) -> RunOutcome:
    if not req.argv:
        raise errors.UsageError("no command given", hint="repro run -- python train.py")
    if req.determinism is not None and req.determinism not in manifest.LEVELS:
        raise errors.UsageError(f"unknown determinism level {req.determinism!r}",
                                hint="use one of: " + ", ".join(manifest.LEVELS))
    env = dict(os.environ if req.env is None else req.env)
    runs = req.store or store.open_here(req.cwd)
    root = req.root or runs.root  # a replay's code lives in its worktree, its record in runs
    status_proc = git.start_status(root)  # these three overlap with the work below
    remote_proc = git.start_remote(root)
    time_proc = git.start_commit_time(root) if req.source_date_epoch is None else None
    cfg = config.load(root)
    python, how = environment.find_interpreter(req.argv, req.cwd, env)
    inspect_proc = environment.start_inspect(python, env)
    remote = git.finish_remote(remote_proc)  # never raises: collected first, never left over
    # What runs produce (declared outputs, the metrics file) is never dirt: the previous run
    # wrote it, and this one will write it again.
    try:
        state = preflight.without_results(git.finish_status(status_proc, root),
                                          _result_paths(req, cfg, root))
    finally:
        commit_time = git.finish_commit_time(time_proc) if time_proc else req.source_date_epoch
    preflight.check_clean(state, req.allow_dirty)
    subs = git.submodules(root, state)
    interp = environment.finish_inspect(inspect_proc, python, how)
    installed = environment.installed_packages(interp.sys_path)
    lock = preflight.check_lock(root, state, cfg.lockfile, installed, req.allow_unlocked,
                                data.hash_file)
    for w in lock.warnings:
        reporter.warn(f"recording an unlocked run: {w}")
    _check_results_inside(req, cfg, root)
    _explicit_inputs(req, cfg, root)
    if cfg.metric_patterns:  # a bad pattern refuses the run now, not after hours of training
        from repro.capture import metrics

        metrics.compile_patterns(cfg.metric_patterns)
    level = req.determinism or cfg.determinism or seeding.DEFAULT_LEVEL
    seed_value, seed_source = _choose_seed(req, cfg)
    threads = req.threads or cfg.threads or seeding.default_threads(os.cpu_count())

    key = trust.key(runs.root)  # marks the manifests below as written in this clone
    if key is None:
        reporter.warn("cannot read or create this clone's key (repro-key in the git directory); "
                      "replay and verify will ask before running this run's command",
                      hint="make the git directory writable, or remove a damaged repro-key")
    run_id, run_dir, reserve = _open_record(runs)
    started = dt.datetime.now(dt.UTC)
    info = manifest.RunInfo(
        run_id=run_id, status="running", started_at=_iso(started), name=req.name,
        tags=dict(req.tags), note=req.note, replay_of=req.replay_of, started_by=req.started_by,
        worktree=str(root) if req.replay_of and req.root else None,
        repro_version=repro.__version__, host=os.uname().nodename, pid=os.getpid(),
        pid_start=store.process_start_ticks(os.getpid()))
    m = manifest.Manifest(
        run=info,
        command=manifest.Command(argv=_recorded_argv(req, runs), cwd=_rel(req.cwd, root)),
        seed=manifest.Seed(value=seed_value, source=seed_source),
        code=manifest.Code(commit=state.commit, branch=state.branch, remote=remote,
                           dirty=state.dirty, submodules=tuple(
                               manifest.Submodule(path=s.path, commit=s.commit, state=s.state)
                               for s in subs)),
        environment=manifest.Environment.from_dict({
            "python": interp.to_manifest(), "interpreter_source": interp.source,
            "packages": dict(installed.versions), "package_sources": dict(installed.sources),
            "lockfile": lock.section, "platform": environment.platform_info(),
            "env": environment.allowed_env(env, cfg.env_allow),
        }, "environment"),
        group=req.group,
    )
    # From here on the run exists: evidence first, and every way out leaves a finished one.
    path = run_dir / store.MANIFEST
    try:
        # No fsync for the `running` manifests (one costs 5-20 ms before the child starts):
        # atomic all the same, and the second is flushed while the child runs (in_background).
        manifest.write(path, m, key, durable=False)
    except OSError as e:
        reserve.release()
        shutil.rmtree(run_dir, ignore_errors=True)
        raise _store_error(runs, e) from e
    result: runner.ChildResult | None = None
    lost: list[str] = []  # what the disk refused once the child ran (one warning at the end)
    try:
        if state.dirty:
            m = m.replace(code=_snapshot_dirt(root, run_dir, state, m.code,
                                              cfg.untracked_max_bytes, reporter, subs))
        inputs, named = _input_paths(req, cfg, root)
        if inputs:
            m = m.replace(data=_hash(inputs, root, runs, run_dir, "data", reporter,
                                     "hashing inputs"))
        # A directory named in argv with many files (a dataset) is an input, never watched:
        # two stat walks of a large tree would cost more than the run's whole overhead.
        named = [p for p in named if not _too_big_to_watch(m.data.get(p))]
        watch = _Watch.before(req, cfg, root, named)
        hook_out = run_dir / "hook"
        hook_out.mkdir()
        plan = seeding.plan(seed_value, level, {**env, **req.extra_env}, threads=threads,
                            hook_out=hook_out, hook_dir=seeding.hook_dir(),
                            source_date_epoch=commit_time)
        child_env = {**plan.env, "REPRO_RUN_ID": run_id, "REPRO_RUN_DIR": str(run_dir),
                     "REPRO_METRICS_FILE": str(run_dir / "metrics.jsonl")}
        m = m.replace(determinism=manifest.Determinism.from_dict({
            "level": level, "threads": plan.threads,
            "env": {k: v for k, v in plan.injected.items() if k not in RUN_SPECIFIC},
            "user_set": dict(plan.user_set),
            "hook": {"ran": None},
        }, "determinism"))
        m = m.replace(fingerprint=fingerprint(m))
        manifest.write(path, m, key, durable=False)

        def in_background() -> Mapping[str, Any]:
            with contextlib.suppress(OSError):
                manifest.sync(path)
            reserve.allocate()
            return _while_child_runs(child_env)

        probe = _Background(in_background)
        with runner.SignalGuard(req.kill_after) as guard:
            try:
                result = runner.run_child(req.argv, cwd=req.cwd, env=child_env,
                                          stdout_log=run_dir / "stdout.log",
                                          stderr_log=run_dir / "stderr.log", guard=guard,
                                          stdout_to_stderr=req.stdout_to_stderr)
            except errors.ChildStartError as e:
                manifest.write(path, _finish(m, started, "failed", int(e.exit_code), None), key)
                raise
            # The child is done: Ctrl-C now stops repro's own work (hashing a large output),
            # and the manifest below still records the child's result.
            guard.armed = True
            lost += result.lost
            if result.killed:
                reporter.warn(f"the command was still running {guard.kill_after:g} s after "
                              "the signal; repro killed it (SIGKILL)",
                              hint="--kill-after SECONDS sets the grace period")
            # Which files the run left that nobody records: git looks while outputs hash.
            after_proc = None if req.replay_of else _start_quietly(root)
            try:
                m = _after_child(m, req, cfg, root, runs, run_dir, result, probe.result(),
                                 reporter, watch)
                _warn_unrecorded(after_proc, root, state, _result_paths(req, cfg, root), m,
                                 reporter)
            except OSError as e:
                if e.errno not in _DISK_ERRNOS:
                    raise
                lost.append(f"the hook's report, outputs and metrics ({e.strerror})")
            status = ("interrupted" if result.interrupted
                      else "succeeded" if result.exit_code == 0 else "failed")
            m = _finish(m, started, status, result.exit_code, result.signal)
            if lost:
                m = m.with_run(note=(m.run.note + "\n" if m.run.note else "")
                               + "incomplete record: " + "; ".join(lost))
            reserve.release()
            try:
                manifest.write(path, m, key)
            except OSError as e:
                if e.errno not in _DISK_ERRNOS:
                    raise
                lost.append(f"the final manifest ({e.strerror}; it still says `running`)")
        if lost:
            reporter.warn(f"the command ran (exit code {result.exit_code}) but its record is "
                          "incomplete: " + "; ".join(lost),
                          hint=f"free space in {runs.home}, or point REPRO_HOME at a "
                               "writable disk")
        return RunOutcome(run_id, run_dir, result.exit_code, m)
    except errors.ChildStartError:
        raise
    except BaseException as e:
        # repro failed or was interrupted after the run started: record what is known.
        if result is not None:
            status = "interrupted" if result.interrupted or isinstance(e, KeyboardInterrupt) \
                else "succeeded" if result.exit_code == 0 else "failed"
            final = _finish(m, started, status, result.exit_code, result.signal)
        elif isinstance(e, KeyboardInterrupt):
            final = _finish(m, started, "interrupted", int(errors.ExitCode.INTERRUPTED), None)
        else:
            final = _finish(m, started, "failed", int(errors.ExitCode.REFUSED), None)
        note = f"repro stopped before finishing the record: {type(e).__name__}: {e}".strip()
        reserve.release()
        with contextlib.suppress(Exception):
            manifest.write(path, final.with_run(note=(m.run.note + "\n" if m.run.note else "")
                                                + note), key)
        if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
            raise _store_error(runs, e) from e
        raise
    finally:
        reserve.release()


_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES,
                          errno.EPERM, errno.EIO})


class _Reserve:
    """RESERVE_BYTES in the run directory, released just before the final write.

    Allocated by the background thread while the child starts (an allocation can wait on the
    file system's journal for milliseconds: never on `repro run`'s critical path); no room
    or no preallocation support simply means no reserve.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".reserve"
        self._lock = threading.Lock()
        self._released = False

    def allocate(self) -> None:
        with self._lock:
            if self._released:
                return
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o600)
            except OSError:
                return
        try:
            for size in (RESERVE_BYTES, RESERVE_BYTES // 4, RESERVE_BYTES // 16):
                try:  # a store nearly full already: a smaller reserve still saves the manifest
                    os.posix_fallocate(fd, 0, size)
                    break
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
            else:
                self._unlink()
        except OSError:
            self._unlink()
        finally:
            os.close(fd)
        with self._lock:
            if self._released:
                self._unlink()

    def release(self) -> None:
        with self._lock:
            self._released = True
            self._unlink()

    def _unlink(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def _open_record(runs: store.Store) -> tuple[str, Path, _Reserve]:
    """A new run directory (and its reserve, allocated later), or a StoreError."""
    try:
        run_id, run_dir = runs.create_run_dir()
    except OSError as e:
        raise _store_error(runs, e) from e
    return run_id, run_dir, _Reserve(run_dir)


def _store_error(runs: store.Store, e: OSError) -> errors.StoreError:
    return errors.StoreError(
        f"cannot write the run record in {runs.runs_dir}: {e.strerror or e}",
        hint="free some space there or make it writable, or point REPRO_HOME at a directory "
             "that is")


@dataclasses.dataclass(frozen=True)
class _Watch:
    """Result paths (relative to the root) and their stat trees from before the command."""

    outputs: tuple[str, ...]  # declared: --output and the configuration's `outputs`
    metrics: str | None  # the metrics file
    named: tuple[str, ...]  # existing paths named in argv, recorded as inputs before the run
    unborn: tuple[str, ...]  # paths named in argv that did not exist before the run
    trees: Mapping[str, Any]  # path -> written.Tree

    @classmethod
    def before(cls, req: RunRequest, cfg: config.Config, root: Path,
               named: Sequence[str]) -> _Watch:
        outputs = tuple(dict.fromkeys(_rel(_under(root, req.cwd, p), root)
                                      for p in (*req.outputs, *cfg.outputs)))
        metrics_path = req.metrics or cfg.metrics
        metrics_rel = _rel(_under(root, req.cwd, metrics_path), root) if metrics_path else None
        results = (*outputs, *([metrics_rel] if metrics_rel else []))
        unborn = tuple(p for p in data.argv_paths(req.argv, req.cwd, root, missing=True)
                       if not _covered(p, results))
        watched = (*results, *named)
        trees: Mapping[str, Any] = {}
        if watched:
            from repro.capture import written

            trees = written.snapshot(root, watched)
        return cls(outputs, metrics_rel, tuple(named), unborn, trees)


def _start_quietly(root: Path) -> Any:
    try:
        return git.start_status(root)
    except errors.ReproError:
        return None


def _warn_unrecorded(proc: Any, root: Path, before: git.TreeState, results: Sequence[str],
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
           and not _covered(d.path, recorded)]
    if new:
        shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
        reporter.warn(f"the run wrote files that are not recorded as outputs: {shown}",
                      hint="declare them with --output PATH (or `outputs:` in repro.yaml) so "
                           "verify compares them, or add them to .gitignore")


WATCH_MAX_FILES = 5_000  # beyond this, an argv-named input directory is not watched


def _too_big_to_watch(entry: manifest.FileEntry | None) -> bool:
    return entry is not None and entry.kind == "dir" and (entry.files or 0) > WATCH_MAX_FILES


def _covered(path: str, by: Sequence[str]) -> bool:
    """`path` is one of `by` or inside one of them."""
    return any(b in (".", "") or path == b or path.startswith(b.rstrip("/") + "/") for b in by)


def _after_child(m: manifest.Manifest, req: RunRequest, cfg: config.Config, root: Path,
                 runs: store.Store, run_dir: Path, result: runner.ChildResult,
                 hw: Mapping[str, Any] | None, reporter: report.Reporter,
                 watch: _Watch) -> manifest.Manifest:
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
            for i, entry in enumerate(entries):
                entries[i], stale[entry.path] = written.split(
                    entry, root / entry.path, watch.trees.get(entry.path) or {})
            m = m.replace(outputs=manifest.entries(
                data.to_section(entries, run_dir, "outputs", stale), "outputs"))
            _keep_outputs(root, run_dir, entries, stale, cfg.keep_outputs_max_bytes)
        except errors.DataError as e:
            reporter.warn(f"outputs were not recorded: {e.message}", e.hint)
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
    if moved:  # they were inputs of the recipe when the run started
        m = m.replace(fingerprint=fingerprint(m))
    return m


def _while_child_runs(child_env: Mapping[str, str]) -> Mapping[str, Any]:
    """Work for the second core while the child starts: hardware facts, and the imports the
    post-run steps need (they would otherwise add to every run's overhead)."""
    from repro.capture import hardware, metrics, written  # noqa: F401
    from repro.child import hookprobe  # noqa: F401

    return hardware.collect(child_env)


KEPT = "kept"  # run-directory folder with copies of small outputs (see _keep_outputs)


def _keep_outputs(root: Path, run_dir: Path, entries: Sequence[data.Entry],
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


def _finish(m: manifest.Manifest, started: dt.datetime, status: str, exit_code: int,
            sig: str | None) -> manifest.Manifest:
    now = dt.datetime.now(dt.UTC)
    return m.with_run(status=status, exit_code=exit_code, signal=sig, finished_at=_iso(now),
                      duration_s=round((now - started).total_seconds(), 6))


def fingerprint(m: manifest.Manifest) -> str:
    """Hash of everything that defines the recipe; equal fingerprints ran the same recipe."""
    recipe = {
        "commit": m.code.commit,
        "patch": m.code.patch.hash if m.code.patch else None,
        "untracked": sorted(((u.path, u.hash) for u in m.code.untracked), key=lambda t: str(t[0])),
        **({"submodules": sorted((str(s.path), str(s.commit),
                                  str(s.patch.hash if s.patch else None))
                                 for s in m.code.submodules)} if m.code.submodules else {}),
        "lockfile": m.environment.lockfile.hash if m.environment.lockfile else None,
        "data": {p: e.hash or e.target for p, e in sorted(m.data.items())},
        "argv": list(m.command.argv),
        "cwd": m.command.cwd,
        "seed": m.seed.value,
        "level": m.determinism.level,
        "threads": m.determinism.threads,
        "env": dict(sorted(m.determinism.env.items())),
        # Values the user had set (and repro kept) shape the run just as much.
        "user_set": dict(sorted(m.determinism.user_set.items())),
    }
    return data.hash_bytes(json.dumps(recipe, sort_keys=True).encode())


def _recorded_argv(req: RunRequest, runs: store.Store) -> tuple[str, ...]:
    """The argv as recorded: values of secret-named arguments as salted-hash placeholders."""
    from repro.record import redact

    def salt() -> bytes:
        return trust.derived(runs.root, "argv-secret-salt") or os.urandom(16)

    return redact.redact_argv(req.recorded_argv or req.argv, salt)


def _check_results_inside(req: RunRequest, cfg: config.Config, root: Path) -> None:
    """Outputs and the metrics file must live in the repository (ignored by git is fine).

    A replay writes them inside its worktree, never into the user's file system, so a result
    written elsewhere could never be verified: refuse before the run, not after it.
    """
    metrics_file = req.metrics or cfg.metrics
    for what, p in [*(("output", o) for o in (*req.outputs, *cfg.outputs)),
                    *([("metrics file", metrics_file)] if metrics_file else [])]:
        where = _rel(_under(root, req.cwd, p), root)
        if Path(where).is_absolute():
            raise errors.DataError(
                f"{what} {p} is outside the repository ({root})",
                hint="write results inside the repository (and .gitignore them), e.g. "
                     "outputs/; replay and verify rebuild runs in a worktree of it")


def _choose_seed(req: RunRequest, cfg: config.Config) -> tuple[int, str]:
    if req.seed is not None:
        return req.seed, req.seed_source or "flag"
    if cfg.seed is not None:
        return cfg.seed, "config"
    return seeding.new_seed(), "generated"


def _snapshot_dirt(root: Path, run_dir: Path, state: git.TreeState, code: manifest.Code,
                   max_bytes: int, reporter: report.Reporter,
                   subs: Sequence[git.Submodule] = ()) -> manifest.Code:
    """code.patch (staged + unstaged vs HEAD), each modified submodule's patch, and copies of
    untracked files (a submodule's included)."""
    patch_section = None
    diff = git.patch(root)
    if diff:
        (run_dir / "code.patch").write_bytes(diff)
        patch_section = manifest.Patch(file="code.patch", hash=data.hash_bytes(diff),
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
                entry["patch"] = {"file": name, "hash": data.hash_bytes(sub_diff),
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
            digest = data.hash_file(src)
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


def _explicit_inputs(req: RunRequest, cfg: config.Config, root: Path) -> list[str]:
    """`--data` and the configuration's inputs; DataError for one that does not exist.

    Also checked before the run directory is created: a refused run is not a run.
    """
    explicit = [_rel(_under(root, req.cwd, p), root) for p in (*req.data, *cfg.data)]
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


def _input_paths(req: RunRequest, cfg: config.Config, root: Path) -> tuple[list[str], list[str]]:
    """(every input path, the ones found in argv alone): relative to the root.

    A path named in argv that is a declared output or the metrics file (or inside one) is a
    result, not an input. The argv-only ones are watched while the command runs: one it
    writes is recorded as an output instead (see _after_child).
    """
    explicit = _explicit_inputs(req, cfg, root)
    results = _result_paths(req, cfg, root)
    named = [p for p in data.argv_paths(req.argv, req.cwd, root) if not _covered(p, results)]
    tracked = git.tracked(root, named)
    found = [p for p in named if p not in tracked and p not in explicit]
    return list(dict.fromkeys([*explicit, *found])), found


def _result_paths(req: RunRequest, cfg: config.Config, root: Path) -> list[str]:
    """Declared outputs and the metrics file, relative to the root."""
    metrics_file = req.metrics or cfg.metrics
    return [_rel(_under(root, req.cwd, p), root)
            for p in (*req.outputs, *cfg.outputs, *([metrics_file] if metrics_file else []))]


def _hash(paths: Sequence[str], root: Path, runs: store.Store, run_dir: Path, subdir: str,
          reporter: report.Reporter, label: str, cwd: Path | None = None,
          ) -> dict[str, manifest.FileEntry]:
    rel = [_rel(_under(root, cwd, p), root) if cwd else p for p in paths]
    with reporter.progress(label) as progress:
        entries = data.hash_paths(rel, root=root, cache_dir=runs.cache_dir, progress=progress)
    return manifest.entries(data.to_section(entries, run_dir, subdir), subdir)


def _under(root: Path, cwd: Path | None, p: str) -> Path:
    path = Path(p)
    return path if path.is_absolute() else (cwd or root) / path


def _rel(path: Path, root: Path) -> str:
    """Relative to the git root when inside it; absolute (normalised) when outside."""
    rel = os.path.relpath(path, root)
    if rel == ".." or rel.startswith(".." + os.sep):
        return Path(os.path.normpath(os.path.abspath(path))).as_posix()
    return Path(rel).as_posix()


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Background:
    """Run a capture in a thread while the child runs; its failure never fails the run."""

    def __init__(self, fn: Callable[[], Mapping[str, Any]]) -> None:
        self._value: Mapping[str, Any] | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Mapping[str, Any]]) -> None:
        with contextlib.suppress(Exception):
            self._value = fn()

    def result(self, timeout: float = 10.0) -> Mapping[str, Any] | None:
        self._thread.join(timeout)
        return self._value
