"""What one repro run, or a group of runs, becomes in MLflow: tags, params, metric points, files.

Pure: reads the run directory (the metric series is streamed, never held), never talks to a
server and never imports mlflow. Names and limits are MLflow's own (a tag value of at most
8,000 characters, a param value of at most 6,000, keys of letters, digits, `_ - . : /` and
spaces). Everything that identifies the run in MLflow is derived from the record alone, so a
second export computes the same tags, points and files and can tell what is already there.

Metric points: each record of the series gives one point per numeric value, at the record's
own `step` (else its index), timestamped with the run's end (the series has no times). A final
value that the series does not end with (the metrics file wins, as in the manifest) is logged
after it, at the same step one millisecond later, so MLflow's "latest value" is repro's final.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import math
import os
import posixpath
import re
import shlex
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from repro import errors
from repro.capture import cmdline, git, metrics
from repro.record import manifest

MAX_KEY = 250
MAX_TAG_VALUE = 8000
MAX_PARAM_VALUE = 6000
ARTIFACT_DIR = "repro"  # the run's files go under this artifact folder
COMPLETE_TAG = "repro.export.complete"  # set last: a run without it was exported in part
RUN_ID_TAG = "repro.run_id"
KIND_TAG = "repro.kind"  # "run" or "group" (a group's parent run)
GROUP_TAG = "repro.group.id"
PARENT_TAG = "mlflow.parentRunId"

# repro's run status -> MLflow's RunStatus
STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "interrupted": "KILLED",
          "abandoned": "KILLED", "running": "RUNNING"}

_BAD_CHAR = re.compile(r"[^/\w.\- :]")
# Run and group ids go into MLflow search filters: this alphabet has no quote to escape.
_ID = re.compile(r"^[\w.:-]{1,200}$")
_DAMAGED = "the manifest is damaged or was edited by hand; restore it or remove the run directory"


class NameMap:
    """repro names -> names MLflow accepts, for one kind (metrics, params or tags) of one run.

    Characters MLflow refuses become `_` (`acc@1` -> `acc_1`); a name that is still not
    usable (too long, `..`, or taken by another name) is dropped. `renamed` and `dropped`
    say what changed, for one warning.
    """

    def __init__(self) -> None:
        self._names: dict[str, str | None] = {}
        self._taken: dict[str, str] = {}
        self.renamed: dict[str, str] = {}
        self.dropped: list[str] = []

    def get(self, name: str) -> str | None:
        if name in self._names:
            return self._names[name]
        out: str | None = posixpath.normpath(_BAD_CHAR.sub("_", name)) if name else None
        if (out is None or out in (".", "") or out.startswith(("..", "/")) or len(out) > MAX_KEY
                or self._taken.get(out, name) != name):
            out = None
            self.dropped.append(name)
        else:
            self._taken[out] = name
            if out != name:
                self.renamed[name] = out
        self._names[name] = out
        return out

    def notes(self, kind: str) -> list[str]:
        """Sentences for a warning: what was renamed or left out."""
        out = []
        if self.renamed:
            shown = ", ".join(f"{a!r} as {b!r}" for a, b in list(self.renamed.items())[:5])
            out.append(f"{kind} {shown}{' ...' if len(self.renamed) > 5 else ''}")
        if self.dropped:
            shown = ", ".join(repr(n[:60]) for n in self.dropped[:5])
            out.append(f"{kind} {shown}{' ...' if len(self.dropped) > 5 else ''} left out")
        return out


@dataclasses.dataclass(frozen=True)
class Point:
    key: str
    value: float
    step: int
    timestamp: int  # milliseconds since the epoch


@dataclasses.dataclass(frozen=True)
class RunPlan:
    run_id: str
    name: str
    start_ms: int
    end_ms: int | None
    status: str  # repro's (succeeded, failed, ...)
    tags: Mapping[str, str]
    params: Mapping[str, str]
    series: Path | None  # the JSON-lines series, read when the points are
    finals: Mapping[str, Any]  # metrics.final
    artifacts: tuple[tuple[str, Path], ...]  # (artifact path, e.g. repro/data/0.json; file)
    group: manifest.Group | None  # the run's `group` section
    tag_names: NameMap
    param_names: NameMap

    @property
    def mlflow_status(self) -> str:
        return STATUS.get(self.status, "FAILED")

    @property
    def work_bytes(self) -> int:
        """Bytes the export reads: every artifact and the series (for a progress bar)."""
        return sum(_size(p) for _, p in self.artifacts) + (_size(self.series)
                                                             if self.series else 0)

    def points(self, names: NameMap, read: list[int] | None = None) -> Iterator[Point]:
        """Every metric point, series first, then the final values it does not end with.

        `read`, when given, is a one-item counter of the series records read so far.
        """
        ts = self.end_ms if self.end_ms is not None else self.start_ms
        last: dict[str, tuple[int, float]] = {}
        if self.series is not None:
            for step, flat in metrics.series_records(self.series):
                if read is not None:
                    read[0] += 1
                for name, value in flat.items():
                    number = _number(value)
                    key = names.get(name) if number is not None else None
                    if number is None or key is None:
                        continue
                    last[name] = (step, number)
                    yield Point(key, number, step, ts)
        for name, value in self.finals.items():
            number = _number(value)
            key = names.get(str(name)) if number is not None else None
            if number is None or key is None:
                continue
            prev = last.get(str(name))
            if prev is not None and same_value(prev[1], number):
                continue
            yield Point(key, number, prev[0] if prev else 0, ts + 1 if prev else ts)


@dataclasses.dataclass(frozen=True)
class GroupPlan:
    group: manifest.Group
    name: str
    start_ms: int
    end_ms: int | None
    mlflow_status: str
    tags: Mapping[str, str]
    params: Mapping[str, str]


def run_plan(m: manifest.Manifest, run_dir: Path, manifest_path: Path | None = None,
             user: str | None = None) -> RunPlan:
    """What the run `m` (recorded in `run_dir`, read from `manifest_path`) becomes."""
    run = m.run
    if not _ID.match(run.run_id):
        raise errors.ManifestError(f"run id {run.run_id[:80]!r} is not one repro writes",
                                   hint=_DAMAGED)
    group = m.group
    tag_names, param_names = NameMap(), NameMap()
    tags: dict[str, str] = {
        "mlflow.runName": run.name or run.run_id,
        "mlflow.user": user or _user(),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": source_name(m.command.argv, m.command.cwd),
        "mlflow.source.git.commit": m.code.commit,
    }
    if m.code.branch:
        tags["mlflow.source.git.branch"] = m.code.branch
    if m.code.remote:
        tags["mlflow.source.git.repoURL"] = git.strip_credentials(m.code.remote)
    if run.note:
        tags["mlflow.note.content"] = run.note
    lock = m.environment.lockfile
    matches = lock.matches if lock is not None else None
    determinism = m.determinism.level
    tags.update({
        RUN_ID_TAG: run.run_id,
        KIND_TAG: "run",
        "repro.status": run.status,
        "repro.command": shlex.join(m.command.argv),
        "repro.seed": str(m.seed.value),
        "repro.seed_source": m.seed.source,
        "repro.determinism": str(determinism) if determinism is not None else "unknown",
        "repro.dirty": _flag(m.code.dirty),
        "repro.lockfile_matches": _flag(matches) if isinstance(matches, bool) else "no lockfile",
    })
    optional = {"repro.fingerprint": m.fingerprint, "repro.exit_code": run.exit_code,
                "repro.signal": run.signal, "repro.replay_of": run.replay_of,
                "repro.started_by": run.started_by, "repro.host": run.host,
                "repro.version": run.repro_version}
    tags.update({k: str(v) for k, v in optional.items() if v is not None})
    nodes = m.distributed
    if nodes is not None:  # a multi-node run: what MLflow's status alone cannot say
        missing = [str(mb.node_rank) for mb in nodes.members if mb.status == "missing"]
        info = {"repro.distributed.job": nodes.job, "repro.distributed.launcher": nodes.launcher,
                "repro.distributed.nnodes": nodes.nnodes,
                "repro.distributed.world_size": nodes.world_size,
                "repro.distributed.complete": None if nodes.complete is None
                else _flag(nodes.complete),
                "repro.distributed.missing_nodes": ",".join(missing) or None,
                "repro.distributed.mismatches": len(nodes.mismatches) or None}
        tags.update({k: str(v) for k, v in info.items() if v is not None})
    if group is not None:
        tags.update({GROUP_TAG: group.id, "repro.group.index": str(group.index),
                     "repro.group.size": str(group.size)})
        if group.name:
            tags["repro.group.name"] = group.name
    for key, value in (run.tags or {}).items():
        key = str(key)
        # The user's own tags keep their names, except where they would pose as MLflow's or
        # repro's own (`mlflow.runName`, `repro.run_id`).
        name = tag_names.get(f"repro.tag.{key}" if key.startswith(("mlflow.", "repro."))
                             else key)
        if name is not None and name not in tags:
            tags[name] = str(value)
    params: dict[str, str] = {}
    flat: dict[str, Any] = {}
    # `params.values`: the run's parameters, typed, nested keys already dotted (the rest of the
    # section says where each came from, and is not a parameter).
    _flatten(m.params.values, "", flat)
    for key, value in flat.items():
        name = param_names.get(key)
        if name is not None:
            params[name] = clip(_text(value), MAX_PARAM_VALUE)
    params["seed" if "seed" not in params else "repro.seed"] = str(m.seed.value)
    final = m.metrics.final
    return RunPlan(
        run_id=run.run_id, name=run.name or run.run_id, start_ms=_ms(run.started_at, run.run_id),
        end_ms=_ms(run.finished_at, run.run_id) if run.finished_at else None,
        status=run.status, tags={k: clip(v, MAX_TAG_VALUE) for k, v in tags.items()},
        params=params, series=_series(m, run_dir),
        finals=dict(final) if isinstance(final, Mapping) else {},
        artifacts=artifacts(m, run_dir, manifest_path or run_dir / "manifest.yaml"),
        group=group, tag_names=tag_names, param_names=param_names)


def group_plan(group: manifest.Group, members: Iterable[RunPlan], user: str | None = None
               ) -> GroupPlan:
    """The parent run of a group: its name, span, overall status and the members' source."""
    members = list(members)
    first = members[0] if members else None
    statuses = {p.mlflow_status for p in members}
    status = ("FAILED" if "FAILED" in statuses else "KILLED" if "KILLED" in statuses
              else "RUNNING" if "RUNNING" in statuses or not members else "FINISHED")
    ends = [p.end_ms for p in members if p.end_ms is not None]
    name = group.name or f"group:{group.id}"
    tags = {"mlflow.runName": name, "mlflow.user": user or _user(), KIND_TAG: "group",
            GROUP_TAG: group.id}
    if first is not None:
        tags.update({k: v for k, v in first.tags.items() if k.startswith("mlflow.source.")})
    tags.update({"repro.group.size": str(group.size), "repro.group.seed": str(group.seed)})
    if group.name:
        tags["repro.group.name"] = group.name
    params = {"seed": str(group.seed)}
    return GroupPlan(group=group, name=name,
                     start_ms=min((p.start_ms for p in members), default=0),
                     end_ms=max(ends) if ends and len(ends) == len(members) else None,
                     mlflow_status=status, tags=tags, params=params)


def artifacts(m: manifest.Manifest, run_dir: Path, manifest_path: Path
              ) -> tuple[tuple[str, Path], ...]:
    """The run's files that go to MLflow: the manifest, the logs, the metric series, the
    patches and the listings. Only regular files inside the run directory: a name from the
    manifest that escapes it, or a symlink, is left out (a manifest is data, design §6)."""
    names = ["stdout.log", "stderr.log"]
    series = m.metrics.series
    if isinstance(series, str):
        names.append(series)
    for patch in (m.code.patch, *(sub.patch for sub in m.code.submodules)):
        if patch is not None and patch.file is not None:
            names.append(patch.file)
    for section in (m.data, m.outputs):
        for entry in section.values():
            if entry.listing is not None:
                names.append(entry.listing)
    out: list[tuple[str, Path]] = []
    if _regular(manifest_path):
        out.append((f"{ARTIFACT_DIR}/manifest.yaml", manifest_path))
    try:
        top = os.path.realpath(run_dir)
    except (OSError, ValueError):
        return tuple(out)
    seen = {"manifest.yaml"}
    for name in names:
        try:
            rel = manifest.confined(name, "file")
        except errors.ManifestError:
            continue
        path = run_dir / rel
        if rel in seen or not _regular(path) or not _inside(path, top):
            continue
        seen.add(rel)
        out.append((f"{ARTIFACT_DIR}/{rel}", path))
    return tuple(out)


def source_name(argv: tuple[str, ...] | list[str], cwd: str = ".") -> str:
    """What MLflow calls the run's source: the script (`train.py`), `-m module`, else the
    program; relative to the repository root, as the command ran in `cwd`."""
    words = list(argv)
    at = cmdline.python_index(words)
    name = words[0] if words else ""
    if at is not None:
        args = cmdline.python_args(words[at + 1:])
        if args.module:
            return f"-m {args.module}"
        if args.script and args.script != "-":
            name = args.script
    # A script, or a program named by a path, is relative to where the command ran; a bare
    # program name (`bash`) was found on PATH.
    if cwd not in ("", ".") and not os.path.isabs(name) and (at is not None or "/" in name):
        name = posixpath.normpath(posixpath.join(cwd, name))
    return name


def same_value(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def ms(text: str) -> int:
    """An ISO 8601 time (`2026-11-23T14:25:01.123456Z`) as milliseconds since the epoch."""
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _ms(text: str, run_id: str) -> int:
    try:
        return ms(text)
    except (ValueError, OverflowError, OSError) as e:
        raise errors.ManifestError(f"run {run_id}: {text!r} is not a time",
                                   hint=_DAMAGED) from e


def _series(m: manifest.Manifest, run_dir: Path) -> Path | None:
    name = m.metrics.series
    if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
        return None
    path = run_dir / name
    return path if _regular(path) else None


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif prefix:
        out[prefix] = value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, sort_keys=True, default=str)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _flag(value: Any) -> str:
    return "true" if value else "false"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def _inside(path: Path, top: str) -> bool:
    """`path` has no symlinked folder on its way out of `top`."""
    try:
        return os.path.realpath(path).startswith(top + os.sep)
    except (OSError, ValueError):
        return False


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
