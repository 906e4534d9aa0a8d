"""`repro run --repeat N`: one recipe run N times, with seeds derived from one group seed.

Each member is a normal run whose manifest has a `group` section {id, index, size, seed, name};
`group:<id>` (or the group's name) names the set (record/store.py). Members run one at a time
in this process, or K at once (`--jobs K`) as `repro run` processes of their own. A member
that fails stops the group from starting more, and fails it. Never prints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from repro import errors, report
from repro.child import seeding
from repro.commands import run as runflow
from repro.record import config, manifest, store


def member_seed(group_seed: int, index: int) -> int:
    """The seed of member `index`: a hash of (group seed, index), so members are independent
    streams and the group seed alone reproduces all of them."""
    digest = hashlib.sha256(f"repro-group:{group_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")  # 0 .. 2**32 - 1, what every framework accepts


def new_group_id(now: dt.datetime | None = None) -> str:
    """A group id: its start time (sorts like run ids) and a random suffix."""
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + os.urandom(3).hex()


@dataclasses.dataclass(frozen=True)
class Member:
    index: int
    seed: int
    run_id: str | None  # None: never started (an earlier member failed)
    exit_code: int | None
    status: str  # succeeded, failed, interrupted, not-run


@dataclasses.dataclass(frozen=True)
class GroupOutcome:
    id: str
    name: str | None
    seed: int
    seed_source: str
    members: tuple[Member, ...]

    @property
    def failed(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.status != "succeeded")

    @property
    def exit_code(self) -> int:
        """0 when every member succeeded, else the first failed member's code."""
        for m in self.members:
            if m.status == "interrupted":
                return int(m.exit_code or errors.ExitCode.INTERRUPTED)
        for m in self.members:
            if m.status == "failed":
                return int(m.exit_code or errors.ExitCode.REFUSED)
        return int(errors.ExitCode.REFUSED) if self.failed else 0


def run_group(request: runflow.RunRequest, repeat: int, reporter: report.Reporter, *,
              jobs: int = 1) -> GroupOutcome:
    """Run `request` `repeat` times as one group (the request's seed is the group seed)."""
    if repeat < 1:
        raise errors.UsageError("--repeat needs N >= 1", hint="e.g. repro run --repeat 5 -- CMD")
    if jobs < 1:
        raise errors.UsageError("--jobs needs K >= 1")
    runs = request.store or store.open_here(request.cwd)
    cfg = config.load(request.root or runs.root)
    if jobs > 1:
        outputs = [*request.outputs, *cfg.outputs]
        if outputs:
            raise errors.UsageError(
                f"--jobs {jobs}: members running at once would write the same declared output "
                f"{outputs[0]} (and each record the others' files)",
                hint="run them one at a time (--jobs 1): a declared output (--output, `outputs:` "
                     "in repro.yaml) is one path for every member")
        metrics_file = request.metrics or cfg.metrics
        if metrics_file:
            raise errors.UsageError(
                f"--jobs {jobs}: members running at once would overwrite each other's "
                f"{metrics_file} (and read each other's results)",
                hint="run them one at a time (--jobs 1), or have the script log metrics to "
                     "$REPRO_METRICS_FILE (one file per run) or print them (metric_patterns)")
    if request.seed is not None:
        group_seed, source = request.seed, "flag"
    else:
        group_seed, source = ((cfg.seed, "config") if cfg.seed is not None
                              else (seeding.new_seed(), "generated"))
    gid = new_group_id()

    def membership(i: int) -> manifest.Group:
        return manifest.Group(id=gid, index=i, size=repeat, seed=group_seed, name=request.name)

    members: list[Member | None] = [None] * repeat
    if jobs == 1:
        for i in range(repeat):
            seed = member_seed(group_seed, i)
            req = dataclasses.replace(request, seed=seed, seed_source="group",
                                      group=membership(i), store=runs)
            try:
                outcome = runflow.execute(req, reporter)
            except errors.ChildStartError:
                raise  # the command cannot run at all: every member would say the same
            except errors.ReproError as e:
                if i == 0:
                    raise  # refused before anything ran: the plain error
                # e.g. the first member left an untracked file and the tree is dirty now
                reporter.warn(f"member {i + 1} of {repeat} (group {gid}) was refused: "
                              f"{e.message}",
                              hint=e.hint)
                members[i] = Member(i, seed, None, int(errors.ExitCode.REFUSED), "failed")
                break
            finished = getattr(reporter, "finished", None)
            if finished is not None:
                finished(outcome)
            status = outcome.manifest.run.status
            members[i] = Member(i, seed, outcome.run_id, outcome.exit_code, status)
            if status != "succeeded":
                break
    else:
        _run_parallel(request, repeat, jobs, group_seed, membership, members, runs)
    done = tuple(m if m is not None else Member(i, member_seed(group_seed, i), None, None,
                                                "not-run")
                 for i, m in enumerate(members))
    return GroupOutcome(gid, request.name, group_seed, source, done)


def _run_parallel(request: runflow.RunRequest, repeat: int, jobs: int, group_seed: int,
                  membership: Callable[[int], manifest.Group], members: list[Member | None],
                  runs: store.Store) -> None:
    """K members at once, each a `repro run` process of its own (signal handling and the
    child's terminal are per process); once one fails, no more start."""
    stop = threading.Event()

    def one(i: int) -> None:
        if stop.is_set():
            return
        seed = member_seed(group_seed, i)
        group = membership(i)
        argv = member_command(request, seed, group)
        env = dict(os.environ)
        if request.store is not None:
            env["REPRO_HOME"] = str(runs.home)
        proc = subprocess.run(argv, cwd=request.cwd, env=env, check=False)
        found = [m for m in group_runs(runs, group.id) if m.group and m.group.index == i]
        if found:
            m = found[0]
            status = m.run.status if m.run.status != "running" else "failed"
            members[i] = Member(i, seed, m.run_id, m.run.exit_code, status)
        else:
            members[i] = Member(i, seed, None, proc.returncode, "failed")
        if proc.returncode != 0:
            stop.set()

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            list(pool.map(one, range(repeat)))
        except KeyboardInterrupt:
            # Ctrl-C reached the members too (one process group): they record themselves as
            # interrupted and exit; start no more, wait for them, and let the group say so.
            stop.set()
            pool.shutdown(wait=True)


def member_command(request: runflow.RunRequest, seed: int, group: manifest.Group) -> list[str]:
    """The `repro run` command line of one member, for `--jobs K`."""
    argv = [sys.executable, "-m", "repro", "run", "--quiet", "--seed", str(seed),
            "--group-member", json.dumps(group.to_dict())]
    if request.determinism:
        argv += ["--determinism", request.determinism]
    if request.threads:
        argv += ["--threads", str(request.threads)]
    if request.allow_dirty:
        argv.append("--allow-dirty")
    if request.allow_unlocked:
        argv.append("--allow-unlocked")
    for d in request.data:
        argv += ["--data", d]
    for o in request.outputs:
        argv += ["--output", o]
    if request.metrics:
        argv += ["--metrics", request.metrics]
    if request.name:
        argv += ["--name", request.name]
    for k, v in request.tags.items():
        argv += ["--tag", f"{k}={v}"]
    if request.note:
        argv += ["--note", request.note]
    if request.kill_after is not None:
        argv += ["--kill-after", str(request.kill_after)]
    if request.data_stats:
        argv.append("--data-stats")
    if request.image:
        argv += ["--image", request.image]
    return [*argv, "--", *request.argv]


def parse_member(text: str) -> manifest.Group:
    """`--group-member JSON` (what member_command passes) -> the membership."""
    try:
        return manifest.Group.from_dict(json.loads(text), "--group-member")
    except (ValueError, errors.ManifestError) as e:
        raise errors.UsageError(f"--group-member: {e}",
                                hint="this option is for repro's own use (--jobs)") from e


def group_runs(runs: store.Store, ref: str) -> list[manifest.Manifest]:
    """The members of the group with this id (or newest group with this name), by index."""
    return [m for _, m in store.group_members(runs, ref)]


def summary(outcome: GroupOutcome, values: Sequence[tuple[str, float, float]] = ()) -> str:
    """The line `repro run --repeat` ends with (plain text)."""
    n = len(outcome.members)
    ok = n - len(outcome.failed)
    name = f" ({outcome.name})" if outcome.name else ""
    head = f"repro: group {outcome.id}{name}: {ok} of {n} runs succeeded"
    bad = [m for m in outcome.members if m.status in ("failed", "interrupted")]
    if bad:
        m = bad[0]
        what = (f"(run {m.run_id}) {m.status}" if m.run_id
                else f"{m.status} before its run started")
        head += (f"; GROUP FAILED: member {m.index + 1} of {n} {what}"
                 f"{f' (exit {m.exit_code})' if m.exit_code is not None else ''}")
        skipped = sum(1 for m in outcome.members if m.status == "not-run")
        if skipped:
            head += f", {skipped} not run"
    head += f"; group seed {outcome.seed} ({outcome.seed_source})"
    stats_text = ", ".join(f"{k} {mu:.4g} ± {sd:.2g}" for k, mu, sd in values)
    if stats_text:
        head += f"; {stats_text} (mean ± sd)"
    return head + f"; compare: repro compare group:{outcome.id} ..."
