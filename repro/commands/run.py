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
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import repro
from repro import errors, report
from repro.capture import cmdline, environment, git, hashing
from repro.child import seeding
from repro.commands import preflight, runextra, runner, runresults, runsnapshot
from repro.record import config, manifest, store, trust

# Injected variables that name this run's directory: recorded elsewhere, never part of the recipe.
RUN_SPECIFIC = frozenset({"PYTHONPATH", "REPRO_HOOK_OUT", "REPRO_RUN_ID", "REPRO_RUN_DIR",
                          "REPRO_METRICS_FILE", "REPRO_PARAMS_FILE", "REPRO_RANK"})
PARAMS_FILE = "params.json"  # what the script may write at $REPRO_PARAMS_FILE (paramfiles)
T = TypeVar("T")
if TYPE_CHECKING:
    from repro.capture import paramfiles
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
    data_stats: bool = False  # --data-stats: statistics of the inputs (also config data_stats)
    image: str | None = None  # --image NAME[@DIGEST]: the container image, when not detected
    # Multi-node runs (commands/distributed.py): the job id every node shares (`--group ID`),
    # and how long node 0 waits for the other nodes' records after its command ended (seconds).
    job_id: str | None = None
    member_timeout: float | None = None


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
                     group: manifest.Group | None = None, data_stats: bool = False,
                     image: str | None = None, job_id: str | None = None,
                     member_timeout: float | None = None) -> int:
    """`repro run`'s options (as both command-line parsers give them) -> the exit code."""
    request = RunRequest(
        argv=tuple(cmd), cwd=Path.cwd(), seed=seed, determinism=determinism, threads=threads,
        allow_dirty=allow_dirty, allow_unlocked=allow_unlocked, data=tuple(data or ()),
        outputs=tuple(output or ()), metrics=metrics, name=name, tags=parse_tags(tag or []),
        note=note, kill_after=kill_after, group=group,
        seed_source="group" if group is not None else None, data_stats=data_stats,
        image=image, job_id=job_id, member_timeout=member_timeout)
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
    if req.image is not None:
        runextra.check_image(req.image)
    env = dict(os.environ if req.env is None else req.env)
    job = None  # a multi-node job (commands/distributed.py): looked at only when hinted at
    if req.job_id or env.get("REPRO_GROUP") or env.get("SLURM_JOB_ID") \
            or cmdline.launcher_hint(req.argv):
        from repro.capture import job as jobs

        job = jobs.detect(req.argv, env, req.job_id)
    runs = req.store or store.open_here(req.cwd)
    root = req.root or runs.root  # a replay's code lives in its worktree, its record in runs
    status_proc = git.start_status(root)  # these three overlap with the work below
    remote_proc = git.start_remote(root)
    time_proc = git.start_commit_time(root) if req.source_date_epoch is None else None
    cfg = config.load(root)
    python, how = cmdline.find_interpreter(req.argv, req.cwd, env)
    inspect_proc = environment.start_inspect(python, env)
    remote = git.finish_remote(remote_proc)  # never raises: collected first, never left over
    # What runs produce (declared outputs, the metrics file) is never dirt: the previous run
    # wrote it, and this one will write it again.
    try:
        state = preflight.without_results(git.finish_status(status_proc, root),
                                          runsnapshot.result_paths(req, cfg, root))
        state = preflight.without_inputs(state, runsnapshot.declared_inputs(req, cfg, root))
    finally:
        commit_time = git.finish_commit_time(time_proc) if time_proc else req.source_date_epoch
    preflight.check_clean(state, req.allow_dirty)
    subs = git.submodules(root, state)
    interp = environment.finish_inspect(inspect_proc, python, how)
    installed = environment.installed_packages(interp.sys_path)
    # The conda environment of the command's interpreter: looked up before the run only for
    # a conda-lock.yml's check, else while the command runs (with the container).
    conda_env = runextra.CondaLookup(python if how != "repro" else None, env)
    lock = preflight.check_lock(root, state, cfg.lockfile, installed, req.allow_unlocked,
                                hashing.hash_file, conda_env.installed)
    for w in lock.warnings:
        reporter.warn(f"recording an unlocked run: {w}")
    runsnapshot.check_results_inside(req, cfg, root)
    runsnapshot.explicit_inputs(req, cfg, root)
    if cfg.metric_patterns:  # a bad pattern refuses the run now, not after hours of training
        from repro.capture import metrics

        metrics.compile_patterns(cfg.metric_patterns)
    level = req.determinism or cfg.determinism or seeding.DEFAULT_LEVEL
    seed_value, seed_source = _choose_seed(req, cfg, job)
    threads = req.threads or cfg.threads or seeding.default_threads(os.cpu_count())

    key = trust.key(runs.root)  # marks the manifests below as written in this clone
    if key is None:
        reporter.warn("cannot read or create this clone's key (repro-key in the git directory); "
                      "replay and verify will ask before running this run's command",
                      hint="make the git directory writable, or remove a damaged repro-key")
    ms = None
    if job is not None:
        from repro.commands import distributed

        ms = distributed.join(runs, job)
        run_id, run_dir, reserve = ms.run_id, ms.run_dir, _Reserve(ms.run_dir)
    else:
        run_id, run_dir, reserve = _open_record(runs)
    coordinator = ms is None or ms.coordinator
    started = dt.datetime.now(dt.UTC)
    info = manifest.RunInfo(
        run_id=run_id, status="running", started_at=_iso(started), name=req.name,
        tags=dict(req.tags), note=req.note, replay_of=req.replay_of, started_by=req.started_by,
        worktree=str(root) if req.replay_of and req.root else None,
        repro_version=repro.__version__, host=os.uname().nodename, pid=os.getpid(),
        pid_start=store.process_start_ticks(os.getpid()))
    m = manifest.Manifest(
        run=info,
        command=manifest.Command(argv=_recorded_argv(req, runs),
                                 cwd=runsnapshot.rel(req.cwd, root)),
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
        distributed=ms.section() if ms else None,
        group=req.group,
    )
    # From here on the run exists: evidence first, and every way out leaves a finished one.
    path = run_dir / store.MANIFEST
    try:
        # No fsync for the `running` manifests (one costs 5-20 ms before the child starts):
        # atomic all the same, and the second is flushed while the child runs (in_background).
        manifest.write(path, m, key, durable=False)
        if ms is not None and ms.created and not coordinator:  # `repro runs` shows it at once
            distributed.write_initial(ms.root_dir / store.MANIFEST, m, key)
    except OSError as e:
        reserve.release()
        if ms is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise _store_error(runs, e) from e
    result: runner.ChildResult | None = None
    lost: list[str] = []  # what the disk refused once the child ran (one warning at the end)
    try:
        if state.dirty:
            m = m.replace(code=runsnapshot.snapshot_dirt(root, run_dir, state, m.code,
                                                         cfg.untracked_max_bytes, reporter,
                                                         subs))
        # Node 0 captures inputs and outputs once for the whole job; the others run, and record
        # their own environment, hardware, logs and probes (distributed.py).
        inputs, named = runsnapshot.input_paths(req, cfg, root) if coordinator else ([], [])
        if inputs:
            m = m.replace(data=runsnapshot.hash_inputs(inputs, root, runs, run_dir, "data",
                                                       reporter, "hashing inputs"))
        # While the command runs: the container, the conda environment, the inputs' statistics.
        beside = runextra.start(req, cfg, root, runs, run_dir, m, env, conda_env,
                                interp.executable)
        # A directory named in argv with many files (a dataset) is an input, never watched:
        # two stat walks of a large tree would cost more than the run's whole overhead.
        named = [p for p in named if not runresults.too_big_to_watch(m.data.get(p))]
        watch = runresults.Watch.before(req, cfg, root, named) if coordinator \
            else runresults.Watch.nothing()
        hook_out = run_dir / "hook"
        hook_out.mkdir()
        plan = seeding.plan(seed_value, level, {**env, **req.extra_env}, threads=threads,
                            hook_out=hook_out, hook_dir=seeding.hook_dir(),
                            source_date_epoch=commit_time)
        child_env = {**plan.env, "REPRO_RUN_ID": run_id, "REPRO_RUN_DIR": str(run_dir),
                     "REPRO_METRICS_FILE": str(run_dir / "metrics.jsonl"),
                     "REPRO_PARAMS_FILE": str(run_dir / PARAMS_FILE)}
        if job is not None and job.launcher == "srun" and job.node_rank is not None:
            # srun's tasks are the ranks: the hook seeds each from (seed, SLURM_PROCID).
            child_env["REPRO_RANK"] = str(job.node_rank)
        m = m.replace(determinism=manifest.Determinism.from_dict({
            "level": level, "threads": plan.threads,
            "env": {k: v for k, v in plan.injected.items() if k not in RUN_SPECIFIC},
            "user_set": dict(plan.user_set),
            "hook": {"ran": None},
        }, "determinism"))
        # The command line's parameters (~1 ms): a running or abandoned run has them too.
        from repro.capture import paramfiles

        argv = m.command.argv  # as recorded: secret values already placeholders
        m = m.replace(params=manifest.Params.from_dict(paramfiles.argv_section(argv),
                                                       "params", "run"))
        m = m.replace(fingerprint=fingerprint(m))
        manifest.write(path, m, key, durable=False)

        def in_background() -> Mapping[str, Any]:
            with contextlib.suppress(OSError):
                manifest.sync(path)
            reserve.allocate()
            return _while_child_runs(child_env)

        probe = _Background(in_background)
        # The configuration files the command line names, read while the child starts
        # (importing PyYAML alone costs a good part of repro's start-up budget).
        params_job = _Background(lambda: _params_start(argv, req, cfg, root, runs))
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
            others = []  # node 0 of a multi-node run: the other nodes' records, or `missing`
            if ms is not None and coordinator and job is not None and job.multi:
                others = distributed.wait_for_members(
                    ms, 0.0 if result.interrupted  # Ctrl-C: what is there now, no waiting
                    else req.member_timeout if req.member_timeout is not None
                    else cfg.member_timeout if cfg.member_timeout is not None
                    else distributed.DEFAULT_TIMEOUT, reporter)
            # Which files the run left that nobody records: git looks while outputs hash.
            after_proc = None if req.replay_of or not coordinator \
                else runresults.start_quietly(root)
            try:
                m = runresults.after_child(m, req, cfg, root, runs, run_dir, result,
                                           probe.result(), reporter, watch)
                m = _with_params(m, params_job.result(), req, root, run_dir, started, reporter)
                m = runextra.merge(m, runextra.wait(beside, req, cfg, reporter))
                runresults.warn_unrecorded(after_proc, root, state,
                                           runsnapshot.result_paths(req, cfg, root), m, reporter)
                if not req.replay_of and coordinator and result.exit_code == 0:
                    flagged = [runsnapshot.rel(runsnapshot.under(root, req.cwd, p), root)
                               for p in req.outputs]
                    runresults.warn_unwritten(m, watch.outputs, root, reporter, flagged)
            except OSError as e:
                if e.errno not in _DISK_ERRNOS:
                    raise
                lost.append(f"the hook's report, outputs and metrics ({e.strerror})")
            status = ("interrupted" if result.interrupted
                      else "succeeded" if result.exit_code == 0 else "failed")
            m = _finish(m, started, status, result.exit_code, result.signal)
            if ms is not None and coordinator:
                m = distributed.merged(ms, m, others)
                for problem in distributed.problems_of(m):
                    reporter.warn(f"job {job.identity if job else ''}: {problem}")
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


def _params_start(argv: Sequence[str], req: RunRequest, cfg: config.Config, root: Path,
                  runs: store.Store) -> paramfiles.Builder:
    """The command line's parameters and the configuration files' (run while the child starts)."""
    from repro.capture import paramfiles

    def salt() -> bytes:
        return trust.derived(runs.root, "argv-secret-salt") or os.urandom(16)

    return paramfiles.start(argv, cwd=req.cwd, root=root, config_files=cfg.params_files,
                            redact=paramfiles.secret_redactor(salt))


def _with_params(m: manifest.Manifest, builder: paramfiles.Builder | None, req: RunRequest,
                 root: Path, run_dir: Path, started: dt.datetime,
                 reporter: report.Reporter) -> manifest.Manifest:
    """The `params` section: what was read while the child ran, then what the run wrote
    (Hydra's resolved config, the script's $REPRO_PARAMS_FILE)."""
    from repro.capture import paramfiles

    try:
        if builder is None:  # the reading thread failed (never expected): read it here
            builder = paramfiles.start(m.command.argv, cwd=req.cwd, root=root)
        done = paramfiles.finish(builder, cwd=req.cwd, root=root,
                                 script_file=run_dir / PARAMS_FILE,
                                 hydra_since=started.timestamp())
    except (errors.ReproError, OSError, ValueError) as e:  # the run happened: record it anyway
        reporter.warn(f"parameters were not recorded: {e}")
        return m
    for w in done.warnings:
        reporter.warn(w)
    return m.replace(params=manifest.Params.from_dict(done.section, "params", "run"))


def _while_child_runs(child_env: Mapping[str, str]) -> Mapping[str, Any]:
    """Work for the second core while the child starts: hardware facts, and the imports the
    post-run steps need (they would otherwise add to every run's overhead)."""
    from repro.capture import hardware, metrics, written  # noqa: F401
    from repro.child import hookprobe  # noqa: F401

    return hardware.collect(child_env)


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
        # Each job of one recipe has its own rendezvous (`--rdzv-id $SLURM_JOB_ID`, a free
        # port): not the recipe. (A seed derived from the job id is in "seed".)
        "argv": cmdline.without_rendezvous(m.command.argv),
        "cwd": m.command.cwd,
        "seed": m.seed.value,
        "level": m.determinism.level,
        "threads": m.determinism.threads,
        "env": dict(sorted(m.determinism.env.items())),
        # Values the user had set (and repro kept) shape the run just as much.
        "user_set": dict(sorted(m.determinism.user_set.items())),
    }
    return hashing.hash_bytes(json.dumps(recipe, sort_keys=True).encode())


def _recorded_argv(req: RunRequest, runs: store.Store) -> tuple[str, ...]:
    """The argv as recorded: values of secret-named arguments as salted-hash placeholders."""
    from repro.record import redact

    def salt() -> bytes:
        return trust.derived(runs.root, "argv-secret-salt") or os.urandom(16)

    return redact.redact_argv(req.recorded_argv or req.argv, salt)


def _choose_seed(req: RunRequest, cfg: config.Config, job: Any = None) -> tuple[int, str]:
    if req.seed is not None:
        return req.seed, req.seed_source or "flag"
    if cfg.seed is not None:
        return cfg.seed, "config"
    if job is not None:  # one seed for every node of the job, never drawn per node
        return job.seed(), "job"
    return seeding.new_seed(), "generated"


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Background(Generic[T]):
    """Run a capture in a thread while the child runs; its failure never fails the run."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._value: T | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        with contextlib.suppress(Exception):
            self._value = fn()

    def result(self, timeout: float = 10.0) -> T | None:
        self._thread.join(timeout)
        return self._value
