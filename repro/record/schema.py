"""The run manifest's schema: one frozen dataclass per section, validated in one place.

`from_dict` turns plain data (a loaded manifest.yaml) into a `Manifest`, refusing any shape
problem with one ManifestError that names the file and the field; `to_dict` gives back the same
plain data, in the documented order (docs/manifest.md), so a manifest read and written again is
the same text. The YAML itself lives in repro.record.yamlio; files in repro.record.manifest;
the plain-data checks `from_dict` makes (keys, kinds, choices) in repro.record.schemacheck.

Adding a section (docs/design.md §5): one dataclass here (a `Record` with `field(KIND)`s, plus
a line in `Manifest`, `to_dict` and `from_dict`), one capture function, one renderer in
cli/ui.py, and a row in judge/compare.py's SECTIONS and noise table.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from repro import errors
from repro.record import schemacheck as check
from repro.record.fields import (
    ANY,
    BOOL,
    INT,
    LIST,
    MAP,
    STR,
    STR_MAP,
    Plain,
    Record,
    field,
    plain_methods,
    record,
    record_map,
    records,
)
from repro.record.yamlio import CORRUPT_HINT as CORRUPT_HINT

SCHEMA = "repro/run/v1"
STATUSES = ("running", "succeeded", "failed", "interrupted", "abandoned")
SEED_SOURCES = ("flag", "config", "replayed", "generated", "group", "job")
LEVELS = ("off", "seed", "warn", "strict")


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class RunInfo:
    """The `run` section: identity, status and timing of the run."""

    run_id: str
    status: str
    started_at: str
    name: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    note: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    replay_of: str | None = None
    # Who started the run: None for the user (`run`, `replay`), "verify" for verify's own
    # replays, which are recorded but never count as `latest` (design §1).
    started_by: str | None = None
    # A replay's worktree (absolute), where its command ran: verify takes paths under it that
    # the run's checkpoints embed for the checkout. None: it ran in the checkout.
    worktree: str | None = None
    repro_version: str | None = None
    host: str | None = None
    pid: int | None = None
    pid_start: int | None = None  # the pid's start time (clock ticks since boot), see store


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Command:
    """The `command` section: the argv as recorded (secrets redacted) and where it ran."""

    argv: tuple[str, ...]
    cwd: str = "."


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Seed:
    """The `seed` section: the seed injected and where it came from."""

    value: int
    source: str


# --------------------------------------------------------------------------------------- code


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Patch(Record):
    """A patch file in the run directory: `code.patch` or `submodules/<n>.patch`."""

    file: str | None = field(STR)
    hash: str | None = field(STR)
    size: int | None = field(INT)


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Untracked(Record):
    """An untracked file the run saw (the `code.untracked` list)."""

    path: str | None = field(STR)
    size: int | None = field(INT)
    hash: str | None = field(STR)  # None for a symlink (see target)
    target: str | None = field(STR)
    copied: bool | None = field(BOOL)  # kept under untracked/ in the run directory
    secret: bool | None = field(BOOL)  # hashed and listed, never copied


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Submodule(Record):
    """A git submodule and its commit (the `code.submodules` list)."""

    path: str | None = field(STR)
    commit: str | None = field(STR)
    state: str | None = field(STR)  # clean | modified | uninitialized
    patch: Patch | None = field(record(Patch))


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Code:
    """The `code` section: the commit, branch and remote, and how the tree differed from it."""

    commit: str
    branch: str | None = None
    remote: str | None = None
    dirty: bool = False
    patch: Patch | None = None
    untracked: tuple[Untracked, ...] = ()
    submodules: tuple[Submodule, ...] = ()


# ------------------------------------------------------------------------------- determinism


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class HookReport(Record):
    """What the sitecustomize hook saw in the command's Python processes (child/hookprobe)."""

    ran: bool | None = field(BOOL)
    reason: str | None = field(STR)
    processes: int | None = field(INT)
    finished: int | None = field(INT)
    seeded: tuple[Plain, ...] = field(LIST)
    deterministic_algorithms: bool | None = field(BOOL)
    overridden: tuple[Plain, ...] = field(LIST)
    script_seeds: tuple[Plain, ...] = field(LIST)
    rank_seeds: Mapping[str, Plain] = field(MAP)
    nondeterministic_error: Plain = field(ANY)
    errors: tuple[Plain, ...] = field(LIST)
    warnings: tuple[Plain, ...] = field(LIST)


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Determinism(Record):
    """The `determinism` section: the level, threads and variables repro set, and the hook."""

    level: str | None = field(STR)  # off | seed | warn | strict
    threads: int | None = field(INT)
    env: Mapping[str, str] = field(STR_MAP)  # every variable repro injected
    user_set: Mapping[str, str] = field(STR_MAP)  # variables the user had set, kept
    hook: HookReport | None = field(record(HookReport))


# ------------------------------------------------------------------------------- environment


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class PythonInfo(Record):
    """The interpreter the command ran (`environment.python`)."""

    version: str | None = field(STR)
    implementation: str | None = field(STR)
    executable: str | None = field(STR)


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Lockfile(Record):
    """The lockfile pinning the environment (`environment.lockfile`)."""

    path: str | None = field(STR)
    kind: str | None = field(STR)
    hash: str | None = field(STR)
    matches: bool | None = field(BOOL)
    mismatches: tuple[Plain, ...] = field(LIST)  # [{name, locked, installed}]
    unlocked: tuple[Plain, ...] = field(LIST)


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Container(Record):
    """The container the run ran in (capture/container.py)."""

    # kubernetes | podman | docker | containerd | apptainer | singularity; None: only an image
    # was named (--image, REPRO_IMAGE)
    runtime: str | None = field(STR)
    image: str | None = field(STR)  # name[:tag]
    digest: str | None = field(STR)  # sha256:...
    image_id: str | None = field(STR)  # Podman's local image id
    id: str | None = field(STR)  # this container instance (noise for diff)
    name: str | None = field(STR)
    engine: str | None = field(STR)  # Podman's version
    namespace: str | None = field(STR)  # Kubernetes
    path: str | None = field(STR)  # Apptainer/Singularity image file
    source: str | None = field(STR)  # where image came from


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Conda(Record):
    """The conda environment of the command's interpreter (capture/conda.py)."""

    name: str | None = field(STR)
    prefix: str | None = field(STR)
    source: str | None = field(STR)  # interpreter | CONDA_PREFIX
    packages: Mapping[str, Plain] = field(MAP)  # conda name -> {version, build, channel}


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Environment(Record):
    """The `environment` section: interpreter, packages, lockfile, platform, variables."""

    python: PythonInfo | None = field(record(PythonInfo))
    interpreter_source: str | None = field(STR)  # argv | shebang | beside | repro
    packages: Mapping[str, Plain] = field(MAP)  # normalised name -> version
    package_sources: Mapping[str, Plain] = field(MAP)  # name -> {url, editable, vcs, commit}
    lockfile: Lockfile | None = field(record(Lockfile))
    platform: Mapping[str, Plain] = field(MAP)  # system, release, machine
    env: Mapping[str, Plain] = field(MAP)  # allow-listed variables
    container: Container | None = field(record(Container))
    conda: Conda | None = field(record(Conda))
    # Numeric libraries the command's process had loaded at exit (the hook): cuda_runtime,
    # cudnn, nccl, mkl, onednn, openmp, blas, lapack, libraries {file name: version}.
    native: Mapping[str, Plain] = field(MAP)


# ---------------------------------------------------------------------------------- hardware


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Gpu(Record):
    """One GPU (`hardware.gpus`)."""

    index: Plain = field(ANY)
    name: Plain = field(ANY)
    uuid: Plain = field(ANY)
    memory_bytes: Plain = field(ANY)
    driver: Plain = field(ANY)
    cuda_driver: Plain = field(ANY)
    compute_capability: Plain = field(ANY)
    pci_bus_id: Plain = field(ANY)
    visible: Plain = field(ANY)
    cuda_index: Plain = field(ANY)


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Hardware(Record):
    """The `hardware` section: CPU, memory, OS, threads, GPUs and torch's view of them."""

    cpu: Mapping[str, Plain] = field(MAP)  # model, logical_cores, physical_cores, usable_cores
    memory_bytes: Plain = field(ANY)
    os: Mapping[str, Plain] = field(MAP)  # system, release, version, machine
    threads: Mapping[str, Plain] = field(MAP)  # thread variables; torch_intra_op
    cuda_visible_devices: Plain = field(ANY)
    gpus: tuple[Gpu, ...] = field(records(Gpu))
    nvml_error: Plain = field(ANY)
    torch: Mapping[str, Plain] = field(MAP)  # version, cuda, cudnn, cuda_initialized


# -------------------------------------------------------------------------- data and outputs


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class FileEntry(Record):
    """One input (`data`) or output (`outputs`) path: a file, a directory, or missing."""

    kind: str | None = field(STR)  # file | dir | missing
    hash: str | None = field(STR)
    size: int | None = field(INT)
    files: int | None = field(INT)  # a directory's file count
    listing: str | None = field(STR)  # data/<n>.json or outputs/<n>.json in the run directory
    target: Plain = field(ANY)
    dvc_md5: Plain = field(ANY)
    # outputs: a file the run did not write has `stale: true`; a directory, the count of
    # files an earlier run left there (`stale: 3`).
    stale: bool | int | None = field(ANY)
    # outputs: there before the run started and rewritten by it (an earlier run's checkpoint
    # the script may have resumed from): `replaced: true` for a file, the count for a directory.
    replaced: bool | int | None = field(ANY)
    # inputs, with --data-stats: rows, columns {name: {type, nulls}}, subdirs... (datastats)
    stats: Mapping[str, Plain] = field(MAP)

    @property
    def is_stale_file(self) -> bool:
        return self.stale is True


# ------------------------------------------------------------------------------------ params


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Params(Record):
    """Hyperparameters (capture/params.py): config files, the script's command line, Hydra's
    resolved config and what the script wrote at $REPRO_PARAMS_FILE, merged in that order."""

    values: Mapping[str, Plain] = field(MAP)  # key (dotted) -> typed value
    sources: Mapping[str, Plain] = field(MAP)  # key -> argv | file:<path> | hydra | script
    ambiguous: Mapping[str, Plain] = field(MAP)  # key -> the raw argv words (no value)
    program: tuple[Plain, ...] = field(LIST)  # the words that start the script
    args: tuple[Plain, ...] = field(LIST)  # the script's words that are no parameter
    files: tuple[Plain, ...] = field(LIST)  # configuration files read
    parsed: bool | None = field(BOOL)  # false: no script could be told in the command
    truncated: Mapping[str, Plain] = field(MAP)  # source -> keys it had, when over the cap


# ----------------------------------------------------------------------------------- metrics


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Metrics(Record):
    """The `metrics` section: final values, where they came from, and the series."""

    final: Mapping[str, Plain] = field(MAP)  # name -> value (nested mappings allowed)
    source: str | None = field(STR)  # --metrics path, relative to the root
    series: Plain = field(ANY)  # metrics.jsonl in the run directory
    steps: Plain = field(ANY)
    warnings: tuple[Plain, ...] = field(LIST)


# ------------------------------------------------------------------------------ distributed

MEMBER_STATUSES = (*STATUSES, "missing")


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Member(Record):
    """One node (or srun task) of a multi-node run, as the merged record lists it."""

    node_rank: int | None = field(INT)
    status: str | None = field(STR)  # a run status, or "missing": no final record in the wait
    host: str | None = field(STR)
    exit_code: int | None = field(INT)
    record: str | None = field(STR)  # its own manifest, relative to the run directory
    ranks: tuple[Plain, ...] = field(LIST)  # the RANKs whose processes ran the hook there
    rank_seeds: Mapping[str, Plain] = field(MAP)
    seed: int | None = field(INT)
    commit: str | None = field(STR)
    patch: str | None = field(STR)  # hash of its uncommitted changes; None when clean
    lockfile: str | None = field(STR)  # the lockfile's hash
    lock_matches: bool | None = field(BOOL)
    argv: tuple[Plain, ...] = field(LIST)  # with the node rank as `{node_rank}`
    gpus: tuple[Plain, ...] = field(LIST)  # "name (driver D)" per GPU
    reason: str | None = field(STR)  # why it is missing


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Distributed(Record):
    """A run over several nodes: the job, and (in node 0's merged record) every member."""

    job: str | None = field(STR)  # the id every node shares: rdzv:job42, slurm:1234.0, --group's
    source: str | None = field(STR)  # flag | env | slurm | rdzv
    launcher: str | None = field(STR)  # torchrun | accelerate | deepspeed | srun
    nnodes: int | None = field(INT)  # members expected
    world_size: int | None = field(INT)  # ranks expected (None: unknown), else the ranks seen
    node_rank: int | None = field(INT)  # the node that wrote this record
    members: tuple[Member, ...] = field(records(Member))  # empty in a member's own record
    complete: bool | None = field(BOOL)  # every expected member reported (None: not merged)
    mismatches: tuple[Plain, ...] = field(LIST)  # [{key, node_rank, value, expected}]
    warnings: tuple[Plain, ...] = field(LIST)  # mixed GPU models or drivers, ranks not seen


# ------------------------------------------------------------------------------------- group


GROUP_ID_RE = re.compile(r"^[0-9a-zA-Z][0-9a-zA-Z._-]{0,79}$")


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Group:
    """The run is member `index` (0-based) of a group of `size` runs of one recipe (`repro run
    --repeat N`, the fresh runs of `verify --level statistical`), whose member seeds derive
    from the group's `seed`. Every field but `name` is required (validated in from_dict)."""

    id: str
    index: int
    size: int
    seed: int
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "index": self.index, "size": self.size, "seed": self.seed,
                "name": self.name}

    @classmethod
    def from_dict(cls, d: Any, source: str = "manifest") -> Group:
        if not isinstance(d, Mapping):
            raise errors.ManifestError(f"{source}: section 'group' must be a mapping")
        group = cls(id=check.req(d, "id", str, source), index=check.req(d, "index", int, source),
                    size=check.req(d, "size", int, source), seed=check.req(d, "seed", int, source),
                    name=check.opt(d, "name", str, source))
        if not GROUP_ID_RE.match(group.id) or not 0 <= group.index < group.size:
            raise errors.ManifestError(f"{source}: group {group.id[:80]!r} index {group.index} "
                                       f"of {group.size} is not a valid group membership")
        return group


# ---------------------------------------------------------------------------------- manifest


@plain_methods
@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Manifest:
    """A run's whole record, one attribute per section (docs/manifest.md)."""

    run: RunInfo
    command: Command
    seed: Seed
    code: Code
    determinism: Determinism = Determinism()
    environment: Environment = Environment()
    hardware: Hardware = Hardware()
    params: Params = Params()
    data: Mapping[str, FileEntry] = dataclasses.field(default_factory=dict)
    outputs: Mapping[str, FileEntry] = dataclasses.field(default_factory=dict)
    metrics: Metrics = Metrics()
    fingerprint: str | None = None
    distributed: Distributed | None = None  # multi-node runs only
    group: Group | None = None  # a member of a group of runs (`repro run --repeat N`)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def replace(self, **sections: Any) -> Manifest:
        return dataclasses.replace(self, **sections)

    def with_run(self, **fields: Any) -> Manifest:
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **fields))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def to_dict(m: Manifest) -> dict[str, Any]:
    """Plain data in the documented order (docs/manifest.md)."""
    return {
        "schema": SCHEMA,
        "run": {**check.plain(dataclasses.asdict(m.run))},
        "command": {"argv": list(m.command.argv), "cwd": m.command.cwd},
        "seed": {"value": m.seed.value, "source": m.seed.source},
        "determinism": check.plain(m.determinism.to_dict()),
        "code": {
            "commit": m.code.commit,
            "branch": m.code.branch,
            "remote": m.code.remote,
            "dirty": m.code.dirty,
            "patch": None if m.code.patch is None else check.plain(m.code.patch.to_dict()),
            "untracked": [check.plain(u.to_dict()) for u in m.code.untracked],
            **({"submodules": [check.plain(s.to_dict()) for s in m.code.submodules]}
               if m.code.submodules else {}),
        },
        "environment": check.plain(m.environment.to_dict()),
        "hardware": check.plain(m.hardware.to_dict()),
        **({"params": check.plain(m.params.to_dict())} if m.params.to_dict() else {}),
        "data": {k: check.plain(e.to_dict()) for k, e in m.data.items()},
        "outputs": {k: check.plain(e.to_dict()) for k, e in m.outputs.items()},
        "metrics": check.plain(m.metrics.to_dict()),
        **({"distributed": check.plain(m.distributed.to_dict())} if m.distributed else {}),
        "fingerprint": m.fingerprint,
        **({"group": m.group.to_dict()} if m.group is not None else {}),
    }


def entries(d: Any, where: str, source: str = "manifest") -> dict[str, FileEntry]:
    """A `data`/`outputs` mapping (path -> entry) from plain data."""
    if d is None:
        return {}
    parsed: dict[str, FileEntry] = record_map(FileEntry).parse(d, where, source)
    return parsed


def from_dict(d: Any, source: str = "manifest") -> Manifest:
    """Validate plain data into a Manifest; any shape problem is a ManifestError naming `source`."""
    if not isinstance(d, Mapping):
        raise errors.ManifestError(f"{source} is not a mapping", hint=CORRUPT_HINT)
    schema = d.get("schema")
    if schema != SCHEMA:
        raise errors.ManifestError(
            f"{source} has unknown schema {schema!r} (expected {SCHEMA!r})",
            hint="it was written by another version of repro, or is not a repro manifest",
        )
    run = check.section(d, "run", source)
    command = check.section(d, "command", source)
    seed = check.section(d, "seed", source)
    code = check.section(d, "code", source)
    try:
        info = RunInfo(
            run_id=check.req(run, "run_id", str, source),
            status=check.choice(run, "status", STATUSES, source),
            started_at=check.req(run, "started_at", str, source),
            name=check.opt(run, "name", str, source),
            tags={str(k): str(v) for k, v in check.opt_map(run, "tags", source).items()},
            note=check.opt(run, "note", str, source),
            exit_code=check.opt(run, "exit_code", int, source),
            signal=check.opt(run, "signal", str, source),
            finished_at=check.opt(run, "finished_at", str, source),
            duration_s=check.opt_float(run, "duration_s", source),
            replay_of=check.opt(run, "replay_of", str, source),
            started_by=check.opt(run, "started_by", str, source),
            worktree=check.opt(run, "worktree", str, source),
            repro_version=check.opt(run, "repro_version", str, source),
            host=check.opt(run, "host", str, source),
            pid=check.opt(run, "pid", int, source),
            pid_start=check.opt(run, "pid_start", int, source),
        )
        argv = check.req(command, "argv", list, source)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise errors.ManifestError(f"{source}: command.argv must be a non-empty list of strings")
        patch = code.get("patch")
        if patch is not None and not isinstance(patch, Mapping):
            raise errors.ManifestError(f"{source}: code.patch must be a mapping or null")
        untracked = check.opt(code, "untracked", list, source) or []
        submodules = check.opt(code, "submodules", list, source) or []
        return Manifest(
            run=info,
            command=Command(argv=tuple(argv), cwd=check.opt(command, "cwd", str, source) or "."),
            seed=Seed(value=check.req(seed, "value", int, source),
                      source=check.choice(seed, "source", SEED_SOURCES, source)),
            code=Code(
                commit=check.commit(check.req(code, "commit", str, source), source),
                branch=check.opt(code, "branch", str, source),
                remote=check.opt(code, "remote", str, source),
                dirty=bool(code.get("dirty", False)),
                patch=None if patch is None else Patch.from_dict(patch, "code.patch", source),
                untracked=tuple(Untracked.from_dict(u, f"code.untracked[{i}]", source)
                                for i, u in enumerate(untracked) if isinstance(u, Mapping)),
                submodules=tuple(Submodule.from_dict(u, f"code.submodules[{i}]", source)
                                 for i, u in enumerate(submodules) if isinstance(u, Mapping)),
            ),
            determinism=Determinism.from_dict(check.opt_map(d, "determinism", source),
                                              "determinism", source),
            environment=Environment.from_dict(check.opt_map(d, "environment", source),
                                              "environment", source),
            hardware=Hardware.from_dict(check.opt_map(d, "hardware", source), "hardware", source),
            params=Params.from_dict(check.opt_map(d, "params", source), "params", source),
            data=entries(check.opt_map(d, "data", source), "data", source),
            outputs=entries(check.opt_map(d, "outputs", source), "outputs", source),
            metrics=Metrics.from_dict(check.opt_map(d, "metrics", source), "metrics", source),
            fingerprint=check.opt(d, "fingerprint", str, source),
            distributed=None if d.get("distributed") is None else Distributed.from_dict(
                check.section(d, "distributed", source), "distributed", source),
            group=None if d.get("group") is None else Group.from_dict(d["group"], source),
        )
    except errors.ManifestError as e:
        if e.hint is None:
            e.hint = CORRUPT_HINT
        raise
