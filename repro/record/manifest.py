"""The run manifest: schema dataclasses, to/from plain data, atomic YAML read/write.

The only PyYAML user. Never prints; never executes anything found in a manifest.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repro import errors
from repro.record import bounded

SCHEMA = "repro/run/v1"
STATUSES = ("running", "succeeded", "failed", "interrupted", "abandoned")
SEED_SOURCES = ("flag", "config", "replayed", "generated", "job")
LEVELS = ("off", "seed", "warn", "strict")
# Sections whose contents other modules define (hook probe, hashing, metrics): kept as mappings.
FREE_SECTIONS = ("determinism", "environment", "hardware", "data", "outputs", "metrics")


@dataclasses.dataclass(frozen=True)
class RunInfo:
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


@dataclasses.dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    cwd: str = "."


@dataclasses.dataclass(frozen=True)
class Seed:
    value: int
    source: str


@dataclasses.dataclass(frozen=True)
class Code:
    commit: str
    branch: str | None = None
    remote: str | None = None
    dirty: bool = False
    patch: Mapping[str, Any] | None = None
    untracked: tuple[Mapping[str, Any], ...] = ()
    submodules: tuple[Mapping[str, Any], ...] = ()  # path, commit, state[, patch]


MEMBER_STATUSES = (*STATUSES, "missing")


@dataclasses.dataclass(frozen=True)
class Member:
    """One node (or srun task) of a multi-node run, as the merged record lists it."""

    node_rank: int
    status: str  # a run status, or "missing": no final record within the wait
    host: str | None = None
    exit_code: int | None = None
    record: str | None = None  # its own manifest, relative to the run directory
    ranks: tuple[int, ...] = ()  # the RANKs whose processes ran the hook on this node
    rank_seeds: Mapping[str, int] = dataclasses.field(default_factory=dict)
    seed: int | None = None
    commit: str | None = None
    patch: str | None = None  # hash of the uncommitted changes, None when clean
    lockfile: str | None = None  # the lockfile's hash
    lock_matches: bool | None = None
    argv: tuple[str, ...] = ()  # with the node rank as `{node_rank}`
    gpus: tuple[str, ...] = ()  # "name (driver D)" per GPU
    reason: str | None = None  # why it is missing


@dataclasses.dataclass(frozen=True)
class Distributed:
    """A run over several nodes: the job, and (in the merged record) every member."""

    job: str  # the identity every node shares: "rdzv:job42", "slurm:1234.0", "exp-7" (--group)
    source: str  # where it came from: flag, env, slurm, rdzv
    launcher: str | None  # torchrun, accelerate, deepspeed, srun, None
    nnodes: int  # members expected
    world_size: int | None  # ranks expected (None: unknown), else the ranks seen
    node_rank: int | None  # the node that wrote this record
    members: tuple[Member, ...] = ()  # the merged record's; empty in a member's own record
    complete: bool | None = None  # every expected member reported (None: not merged)
    mismatches: tuple[Mapping[str, Any], ...] = ()  # {key, node_rank, value, expected}
    warnings: tuple[str, ...] = ()  # mixed GPU models or drivers, ranks not seen


@dataclasses.dataclass(frozen=True)
class Manifest:
    run: RunInfo
    command: Command
    seed: Seed
    code: Code
    determinism: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    environment: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    hardware: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    outputs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    fingerprint: str | None = None
    distributed: Distributed | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def replace(self, **sections: Any) -> Manifest:
        return dataclasses.replace(self, **sections)

    def with_run(self, **fields: Any) -> Manifest:
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **fields))


def to_dict(m: Manifest) -> dict[str, Any]:
    """Plain data in the documented order (docs/manifest.md)."""
    return {
        "schema": SCHEMA,
        "run": {**_plain(dataclasses.asdict(m.run))},
        "command": {"argv": list(m.command.argv), "cwd": m.command.cwd},
        "seed": {"value": m.seed.value, "source": m.seed.source},
        "determinism": _plain(m.determinism),
        "code": {
            "commit": m.code.commit,
            "branch": m.code.branch,
            "remote": m.code.remote,
            "dirty": m.code.dirty,
            "patch": _plain(m.code.patch),
            "untracked": _plain(list(m.code.untracked)),
            **({"submodules": _plain(list(m.code.submodules))} if m.code.submodules else {}),
        },
        "environment": _plain(m.environment),
        "hardware": _plain(m.hardware),
        "data": _plain(m.data),
        "outputs": _plain(m.outputs),
        "metrics": _plain(m.metrics),
        **({"distributed": distributed_to_dict(m.distributed)} if m.distributed else {}),
        "fingerprint": m.fingerprint,
    }


def distributed_to_dict(d: Distributed) -> dict[str, Any]:
    out = _plain(dataclasses.asdict(d))
    out["members"] = [_plain(dataclasses.asdict(member)) for member in d.members]
    return dict(out)


def distributed_from_dict(d: Mapping[str, Any], source: str) -> Distributed:
    where = f"{source}: distributed"
    members = []
    for i, raw in enumerate(_opt(d, "members", list, where) or []):
        if not isinstance(raw, Mapping):
            raise errors.ManifestError(f"{where}.members[{i}] must be a mapping")
        at = f"{where}.members[{i}]"
        members.append(Member(
            node_rank=_req(raw, "node_rank", int, at),
            status=_choice(raw, "status", MEMBER_STATUSES, at),
            host=_opt(raw, "host", str, at),
            exit_code=_opt(raw, "exit_code", int, at),
            record=_opt(raw, "record", str, at),
            ranks=tuple(r for r in _opt(raw, "ranks", list, at) or [] if isinstance(r, int)),
            rank_seeds={str(k): v for k, v in _opt_map(raw, "rank_seeds", at).items()
                        if isinstance(v, int)},
            seed=_opt(raw, "seed", int, at),
            commit=_opt(raw, "commit", str, at),
            patch=_opt(raw, "patch", str, at),
            lockfile=_opt(raw, "lockfile", str, at),
            lock_matches=_opt(raw, "lock_matches", bool, at),
            argv=tuple(str(a) for a in _opt(raw, "argv", list, at) or []),
            gpus=tuple(str(g) for g in _opt(raw, "gpus", list, at) or []),
            reason=_opt(raw, "reason", str, at),
        ))
    complete = d.get("complete")
    if complete is not None and not isinstance(complete, bool):
        raise errors.ManifestError(f"{where}.complete must be true, false or null")
    return Distributed(
        job=_req(d, "job", str, where), source=_req(d, "source", str, where),
        launcher=_opt(d, "launcher", str, where), nnodes=_req(d, "nnodes", int, where),
        world_size=_opt(d, "world_size", int, where), node_rank=_opt(d, "node_rank", int, where),
        members=tuple(members), complete=complete,
        mismatches=tuple(x for x in _opt(d, "mismatches", list, where) or []
                         if isinstance(x, Mapping)),
        warnings=tuple(str(w) for w in _opt(d, "warnings", list, where) or []))


def from_dict(d: Any, source: str = "manifest") -> Manifest:
    """Validate plain data into a Manifest; any shape problem is a ManifestError naming `source`."""
    if not isinstance(d, Mapping):
        raise errors.ManifestError(f"{source} is not a mapping", hint=_CORRUPT_HINT)
    schema = d.get("schema")
    if schema != SCHEMA:
        raise errors.ManifestError(
            f"{source} has unknown schema {schema!r} (expected {SCHEMA!r})",
            hint="it was written by another version of repro, or is not a repro manifest",
        )
    run = _section(d, "run", source)
    command = _section(d, "command", source)
    seed = _section(d, "seed", source)
    code = _section(d, "code", source)
    try:
        info = RunInfo(
            run_id=_req(run, "run_id", str, source),
            status=_choice(run, "status", STATUSES, source),
            started_at=_req(run, "started_at", str, source),
            name=_opt(run, "name", str, source),
            tags={str(k): str(v) for k, v in _opt_map(run, "tags", source).items()},
            note=_opt(run, "note", str, source),
            exit_code=_opt(run, "exit_code", int, source),
            signal=_opt(run, "signal", str, source),
            finished_at=_opt(run, "finished_at", str, source),
            duration_s=_opt_float(run, "duration_s", source),
            replay_of=_opt(run, "replay_of", str, source),
            started_by=_opt(run, "started_by", str, source),
            worktree=_opt(run, "worktree", str, source),
            repro_version=_opt(run, "repro_version", str, source),
            host=_opt(run, "host", str, source),
            pid=_opt(run, "pid", int, source),
            pid_start=_opt(run, "pid_start", int, source),
        )
        argv = _req(command, "argv", list, source)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise errors.ManifestError(f"{source}: command.argv must be a non-empty list of strings")
        patch = code.get("patch")
        if patch is not None and not isinstance(patch, Mapping):
            raise errors.ManifestError(f"{source}: code.patch must be a mapping or null")
        untracked = _opt(code, "untracked", list, source) or []
        submodules = _opt(code, "submodules", list, source) or []
        sections = {name: _opt_map(d, name, source) for name in FREE_SECTIONS}
        _check_nested(sections, source)
        return Manifest(
            run=info,
            command=Command(argv=tuple(argv), cwd=_opt(command, "cwd", str, source) or "."),
            seed=Seed(value=_req(seed, "value", int, source),
                      source=_choice(seed, "source", SEED_SOURCES, source)),
            code=Code(
                commit=_commit(_req(code, "commit", str, source), source),
                branch=_opt(code, "branch", str, source),
                remote=_opt(code, "remote", str, source),
                dirty=bool(code.get("dirty", False)),
                patch=patch,
                untracked=tuple(u for u in untracked if isinstance(u, Mapping)),
                submodules=tuple(u for u in submodules if isinstance(u, Mapping)),
            ),
            fingerprint=_opt(d, "fingerprint", str, source),
            distributed=None if d.get("distributed") is None else
            distributed_from_dict(_section(d, "distributed", source), source),
            **sections,
        )
    except errors.ManifestError as e:
        if e.hint is None:
            e.hint = _CORRUPT_HINT
        raise


_CORRUPT_HINT = "the file is damaged or was edited by hand; restore it or remove the run directory"


def dumps(data: Any) -> str:
    """Plain data (mappings, lists, str, int, float, bool, None) as block-style YAML.

    Our own emitter rather than PyYAML's: `repro run` writes the manifest twice, and importing
    PyYAML costs ~30 ms of the 150 ms overhead budget. Any string that is not obviously plain
    is double-quoted with escapes, so PyYAML's safe loader reads back exactly what was written
    (tests hold this with property-based round trips), including lone surrogates from
    undecodable bytes in argv, which PyYAML's own dumper cannot write.
    """
    out: list[str] = []
    _emit(data, 0, out)
    return "".join(out)


def _emit(value: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            out.append(f"{pad}{{}}\n")
            return
        for k, v in value.items():
            key = _scalar(str(k))
            if _is_block(v):
                out.append(f"{pad}{key}:\n")
                _emit(v, indent + 2, out)
            else:
                out.append(f"{pad}{key}: {_inline(v)}\n")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append(f"{pad}[]\n")
            return
        for v in value:
            if _is_block(v):
                lines: list[str] = []
                _emit(v, indent + 2, lines)
                first = lines[0]
                lines[0] = f"{pad}- {first[indent + 2:]}"
                out.extend(lines)
            else:
                out.append(f"{pad}- {_inline(v)}\n")
    else:
        out.append(f"{pad}{_inline(value)}\n")


def _is_block(v: Any) -> bool:
    return isinstance(v, (Mapping, list, tuple)) and len(v) > 0


def _inline(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return ".nan"
        if v in (float("inf"), float("-inf")):
            return ".inf" if v > 0 else "-.inf"
        text = repr(v)
        # YAML 1.1 (PyYAML) reads `1e-05` as a string: it wants a dot and a signed exponent.
        if "e" in text and "." not in text.split("e")[0]:
            mant, exp = text.split("e")
            text = f"{mant}.0e{exp}"
        if "e" in text and text.split("e")[1][0] not in "+-":
            mant, exp = text.split("e")
            text = f"{mant}e+{exp}"
        return text
    if isinstance(v, Mapping):
        return "{}"
    if isinstance(v, (list, tuple)):
        return "[]"
    return _scalar(str(v))


_PLAIN_RE = None
_RESERVED = frozenset({"null", "~", "true", "false", "yes", "no", "on", "off", "y", "n"})


def _scalar(text: str) -> str:
    """A plain scalar when unambiguous, else a double-quoted one with escapes."""
    global _PLAIN_RE
    if _PLAIN_RE is None:
        import re

        _PLAIN_RE = re.compile(r"[A-Za-z_/][A-Za-z0-9_./+@-]*")
    if _PLAIN_RE.fullmatch(text) and text.lower() not in _RESERVED \
            and not text.lower().startswith(("0x", "0o", ".inf", ".nan")):
        return text
    return _quote(text)


def _quote(text: str) -> str:
    parts = ['"']
    for ch in text:
        o = ord(ch)
        if ch == '"':
            parts.append('\\"')
        elif ch == "\\":
            parts.append("\\\\")
        elif ch == "\n":
            parts.append("\\n")
        elif ch == "\t":
            parts.append("\\t")
        elif o < 0x20 or 0x7F <= o <= 0x9F:
            parts.append(f"\\x{o:02x}")
        elif 0xD800 <= o <= 0xDFFF or o in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF):
            parts.append(f"\\u{o:04x}")
        else:
            parts.append(ch)
    parts.append('"')
    return "".join(parts)


def loads(text: str, source: str) -> Any:
    """Parse YAML as plain data only: `!!python/...` tags are refused, never constructed;
    aliases and duplicate keys are refused; depth and numbers are bounded (bounded.check_tree).

    Aliases are refused before anything is constructed: a manifest never needs one (the
    emitter above never writes one), and a few lines of them expand to gigabytes.
    """
    import yaml

    loader = _loader()
    error = errors.ManifestError
    try:
        try:
            _refuse_aliases(text, loader, source)
            data = yaml.load(text, Loader=loader)
        except yaml.YAMLError as e:
            if loader is _py_loader() or getattr(e, "problem", None) != _C_ESCAPE_PROBLEM:
                raise
            # libyaml refuses escaped lone surrogates ("\udcff", from undecodable bytes in
            # argv or file names) that the pure-Python safe loader reads exactly.
            loader = _py_loader()
            _refuse_aliases(text, loader, source)
            data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as e:
        raise error(f"{source} is not valid YAML: {_yaml_reason(e)}", hint=_CORRUPT_HINT) from e
    except RecursionError as e:  # the pure-Python composer recurses once per level
        raise error(f"{source} is nested too deeply to read", hint=_CORRUPT_HINT) from e
    except ValueError as e:  # int() refuses more than 4,300 decimal digits
        raise error(f"{source} holds a number with more than 4,300 digits",
                    hint=_CORRUPT_HINT) from e
    bounded.check_tree(data, source, error)
    return data


def _yaml_reason(e: Exception) -> str:
    """What PyYAML found and where, on one line ("exceeded maximum nesting depth at line 3")."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if isinstance(problem, str) and problem:
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{problem}{where}"[:300]
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


_DOUBLE_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_C_ESCAPE_PROBLEM = "found invalid Unicode character escape code"
_LOADERS: dict[str, Any] = {}


def _loader() -> Any:
    """libyaml's safe loader when available (several times faster), made stricter."""
    if "c" not in _LOADERS:
        import yaml

        base = getattr(yaml, "CSafeLoader", None)
        _LOADERS["c"] = _strict(base) if base is not None else _py_loader()
    return _LOADERS["c"]


def _py_loader() -> Any:
    if "py" not in _LOADERS:
        import yaml

        _LOADERS["py"] = _strict(yaml.SafeLoader)
    return _LOADERS["py"]


def _strict(base: Any) -> Any:
    """`base` (a safe loader) that refuses duplicate keys and merge keys, reads timestamps as
    the strings they are written as, and refuses !!binary, !!set, !!omap, !!pairs: a manifest,
    a configuration or a metrics file holds plain data only."""
    import yaml
    from yaml.constructor import ConstructorError, SafeConstructor

    class Strict(base):  # type: ignore[misc]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            mapping = super().construct_mapping(node, deep=deep)
            if len(mapping) != len(node.value):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    if key in seen:
                        raise ConstructorError(None, None, f"found duplicate key {key!r:.80}",
                                               key_node.start_mark)
                    seen.add(key)
            return mapping

        def flatten_mapping(self, node: Any) -> None:
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConstructorError(None, None, "found a merge key (<<), which repro "
                                           "does not expand", key_node.start_mark)

        def refuse(self, node: Any) -> Any:
            raise ConstructorError(None, None, f"found a {node.tag} value, which is not "
                                   "plain data", node.start_mark)

    Strict.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)
    for tag in ("binary", "set", "omap", "pairs"):
        Strict.add_constructor(f"tag:yaml.org,2002:{tag}", Strict.refuse)
    Strict.__name__ = f"Strict{base.__name__}"
    del yaml
    return Strict


def _refuse_aliases(text: str, loader: Any, source: str) -> None:
    """An alias (`*name`) needs an anchor (`&name`): without an `&` outside double-quoted
    strings (where the emitter puts every `&` it writes, e.g. `bash -c "a && b"`) there is
    none, and the common case costs a scan of the text. Otherwise the events are read, not
    composed. Should this guess ever be fooled, bounded.check_tree still refuses what an
    alias shares, and the loader refuses merge keys: nothing is ever expanded."""
    if "&" not in text or "*" not in text:
        return
    import re

    if "&" not in re.sub(_DOUBLE_QUOTED, "", text):
        return
    import yaml

    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            mark = event.start_mark
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise errors.ManifestError(
                f"{source} uses a YAML alias (*{event.anchor}){where}",
                hint="repro reads plain YAML without aliases (a few lines of them expand to "
                     "gigabytes); write the value out")


def read_yaml_file(path: Path, limit: int = bounded.MANIFEST_MAX) -> Any:
    """Plain data from a YAML (or JSON) file: config, metrics, DVC files, conda-lock.

    A regular file of at most `limit` bytes (never a FIFO or a device), refused otherwise.
    """
    text = bounded.read_text(path, limit, errors.ManifestError)
    return loads(text, bounded.show_path(path))


def read(path: Path) -> Manifest:
    data = read_yaml_file(path)
    return from_dict(data, str(path))


def write(path: Path, m: Manifest, key: bytes | None = None, durable: bool = True) -> None:
    """Write the manifest atomically; with this clone's `key`, its tag first (repro.record.trust).

    `durable=False` skips the fsync (still atomic): `repro run` writes its `running` manifests
    so and flushes the last of them while the child runs (see sync)."""
    text = dumps(to_dict(m))
    if key is not None:
        from repro.record import trust

        # No fsync for the tag (one per manifest write is the manifest's own): a tag lost to
        # a power cut only makes the run ask before a replay, like a foreign one.
        write_text_atomic(trust.tag_path(path), trust.tag_text(key, text.encode(), path),
                          durable=False)
    write_text_atomic(path, text, durable)


def sync(path: Path) -> None:
    """fsync a file written with `durable=False` (its rename is already done)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str, durable: bool = True) -> None:
    """Temp file in the same directory, flush, fsync, rename: readers see old or new, never half."""
    fd, tmp = _mkstemp(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp)
        raise


def _mkstemp(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """tempfile.mkstemp's file (new, mode 0600, not inherited) without importing tempfile
    and random on `repro run`'s hot path (~1 ms)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no usable temporary file name found", str(folder))


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, *_: object) -> bool:
        return et is not None and issubclass(et, OSError)


def confined(rel: str, what: str) -> str:
    """A path from a manifest: relative, without `..` or NUL (design §6), as POSIX text.

    Every use of a manifest path (replay's worktree, verify's files, listings) goes through
    here; a manifest is data and must never name a place outside its run or worktree.
    """
    from pathlib import PurePosixPath

    p = PurePosixPath(rel)
    if not rel or "\0" in rel or p.is_absolute() or os.path.isabs(rel) or ".." in p.parts:
        raise errors.ManifestError(
            f"the manifest's {what} {rel!r} escapes the worktree",
            hint="paths in a manifest must be relative and free of '..'; refusing to use it")
    return p.as_posix()


def _reason(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _plain(value: Any) -> Any:
    """Mappings -> dict, tuples -> list, recursively: what safe_dump can write."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _section(d: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = d.get(key)
    if not isinstance(value, Mapping):
        raise errors.ManifestError(f"{source}: section {key!r} is missing or not a mapping",
                                   hint=_CORRUPT_HINT)
    return value


def _commit(value: str, source: str) -> str:
    """A commit id goes to git as an argument: hex only, so a manifest cannot pass an option."""
    if not re.fullmatch(r"[0-9a-f]{1,64}", value):
        raise errors.ManifestError(f"{source}: 'commit' must be a hexadecimal commit id, "
                                   f"got {value[:80]!r}")
    return value


def _req(d: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    value = d.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise errors.ManifestError(f"{source}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _opt(d: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    return None if d.get(key) is None else _req(d, key, kind, source)


def _opt_float(d: Mapping[str, Any], key: str, source: str) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.ManifestError(f"{source}: {key!r} must be a number, got {value!r}")
    return float(value)


def _opt_map(d: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise errors.ManifestError(f"{source}: {key!r} must be a mapping")
    return value


# Fields inside the free-form sections that repro itself reads back (show, diff, replay,
# verify): checked here once, so a hand-edited manifest is one clear error, not a crash later.
_NESTED: tuple[tuple[str, str, type], ...] = (
    ("determinism", "level", str), ("determinism", "threads", int),
    ("determinism", "env", Mapping), ("determinism", "user_set", Mapping),
    ("determinism", "hook", Mapping),
    ("environment", "python", Mapping), ("environment", "packages", Mapping),
    ("environment", "package_sources", Mapping), ("environment", "lockfile", Mapping),
    ("environment", "platform", Mapping), ("environment", "env", Mapping),
    ("hardware", "cpu", Mapping), ("hardware", "os", Mapping), ("hardware", "gpus", list),
    ("hardware", "torch", Mapping), ("hardware", "threads", Mapping),
    ("metrics", "final", Mapping), ("metrics", "source", str),
)
_HOOK_LISTS = ("seeded", "script_seeds", "errors", "warnings", "overridden")


def _check_nested(sections: Mapping[str, Mapping[str, Any]], source: str) -> None:
    for section, key, kind in _NESTED:
        value = sections[section].get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise errors.ManifestError(
                f"{source}: {section}.{key} must be a {_KIND_NAMES[kind]}, got {value!r:.60}")
    hook = sections["determinism"].get("hook") or {}
    for key in _HOOK_LISTS:
        if hook.get(key) is not None and not isinstance(hook[key], list):
            raise errors.ManifestError(f"{source}: determinism.hook.{key} must be a list")
    for section in ("data", "outputs"):
        for path, entry in sections[section].items():
            if not isinstance(entry, Mapping):
                raise errors.ManifestError(f"{source}: {section}[{path!r}] must be a mapping")
    for i, gpu in enumerate(sections["hardware"].get("gpus") or []):
        if not isinstance(gpu, Mapping):
            raise errors.ManifestError(f"{source}: hardware.gpus[{i}] must be a mapping")


_KIND_NAMES = {str: "string", int: "integer", list: "list", Mapping: "mapping"}


def _choice(d: Mapping[str, Any], key: str, choices: tuple[str, ...], source: str) -> str:
    value = d.get(key)
    if value not in choices:
        raise errors.ManifestError(f"{source}: {key!r} is {value!r}, not one of {', '.join(choices)}")
    return str(value)
