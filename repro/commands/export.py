"""`repro export mlflow`: which runs, which server and experiment; then export and summarise.

The flow: resolve RUN references (`group:<id>` for every run of a group), pick the tracking URI
and experiment (flag, then MLflow's variables, then the configuration), plan each run
(export/plan.py) and hand the plans to the server (export/mlflow.py, the only mlflow user).
Runs still running are skipped with a warning. Never prints: progress and warnings go to the
Reporter, the result is a `Report` (`to_dict()` is the `--json` document).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors, report
from repro.capture import git
from repro.export import plan as planmod
from repro.record import config, manifest, store

SCHEMA = "repro/export-mlflow/v1"


@dataclasses.dataclass(frozen=True)
class Exported:
    run_id: str
    mlflow_run_id: str | None
    action: str  # created | completed | unchanged | skipped
    parent_run_id: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ExportedGroup:
    id: str
    mlflow_run_id: str
    action: str
    runs: tuple[str, ...]  # the members exported this time
    size: int | None = None  # the group's size (its members exported now or before, or not)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "mlflow_run_id": self.mlflow_run_id, "action": self.action,
                "runs": list(self.runs), "size": self.size}


@dataclasses.dataclass(frozen=True)
class Report:
    tracking_uri: str  # credentials stripped
    experiment: str
    experiment_id: str
    url: str | None  # the experiment's page in the MLflow UI
    runs: tuple[Exported, ...]
    groups: tuple[ExportedGroup, ...] = ()

    def count(self, action: str) -> int:
        return sum(1 for r in self.runs if r.action == action)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "tracking_uri": self.tracking_uri,
                "experiment": {"name": self.experiment, "id": self.experiment_id},
                "url": self.url, "runs": [r.to_dict() for r in self.runs],
                "groups": [g.to_dict() for g in self.groups]}


@dataclasses.dataclass(frozen=True)
class Target:
    tracking_uri: str
    experiment: str


@dataclasses.dataclass(frozen=True)
class Selected:
    manifest: manifest.Manifest
    run_dir: Path
    path: Path  # the manifest file read


# `localhost:5000`, `10.0.0.1:5000/mlflow`: a server given without http://
_HOST_PORT = re.compile(r"[A-Za-z0-9.-]+:\d+(/\S*)?\Z")


def target(root: Path, tracking_uri: str | None, experiment: str | None,
           env: Mapping[str, str]) -> Target:
    """The server and experiment: flag, else MLflow's variable, else the configuration; the
    experiment defaults to the repository's directory name."""
    cfg = config.load(root)
    configured = cfg.mlflow_tracking_uri
    if configured and git.strip_credentials(configured) != configured:
        raise errors.ConfigError(
            f"{cfg.source}: 'mlflow_tracking_uri' carries credentials, and the configuration "
            "is committed with the code",
            hint="remove them from the URI; set MLFLOW_TRACKING_TOKEN, or "
                 "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, instead")
    uri = tracking_uri or env.get("MLFLOW_TRACKING_URI") or configured
    if not uri:
        raise errors.UsageError(
            "no MLflow tracking server given",
            hint="pass --tracking-uri http://HOST:5000, or set MLFLOW_TRACKING_URI, or "
                 "mlflow_tracking_uri in the configuration")
    if _HOST_PORT.match(uri):  # MLflow would take it for a folder: its file store's notice
        raise errors.UsageError(
            f"the MLflow tracking URI {git.strip_credentials(uri)!r} has no scheme",
            hint=f"give the server as http://{git.strip_credentials(uri)} (or https://)")
    name = experiment or env.get("MLFLOW_EXPERIMENT_NAME") or cfg.mlflow_experiment or root.name
    return Target(tracking_uri=uri, experiment=name)


def select(runs: store.Store, refs: Sequence[str], all_runs: bool = False) -> list[Selected]:
    """The runs `refs` name, in order, each once: RUN references, `group:<id>` or a group's
    name (every run of the group, by index: store.resolve_set); `all_runs`: every run,
    oldest first."""
    if all_runs:
        if refs:
            raise errors.UsageError("give RUN references or --all, not both")
        refs = list(reversed(runs.run_ids()))
        if not refs:
            raise errors.RunNotFoundError("no runs yet", hint="record one with `repro run -- CMD`")
    if not refs:
        raise errors.UsageError("no runs to export",
                                hint="name them (RUN..., latest, group:ID) or pass --all")
    out: list[Selected] = []
    seen: set[str] = set()
    for ref in refs:
        for path, m in store.resolve_set(runs, ref):
            if m.run_id not in seen:
                seen.add(m.run_id)
                out.append(_selected(path, m))
    return out


def export_mlflow(runs: store.Store, refs: Sequence[str], *, tracking_uri: str | None = None,
                  experiment: str | None = None, all_runs: bool = False,
                  reporter: report.Reporter, env: Mapping[str, str] | None = None) -> Report:
    """Export the runs `refs` name into MLflow; see the module docstring."""
    environ = dict(os.environ if env is None else env)
    where = target(runs.root, tracking_uri, experiment, environ)
    selected = select(runs, refs, all_runs)
    plans: list[planmod.RunPlan] = []
    skipped: dict[str, Exported] = {}
    for sel in selected:
        if sel.manifest.run.status == "running":
            reporter.warn(f"run {sel.manifest.run_id} is still running: not exported",
                          hint="export it once it has ended")
            skipped[sel.manifest.run_id] = Exported(sel.manifest.run_id, None, "skipped",
                                                    reason="still running")
            continue
        plans.append(planmod.run_plan(sel.manifest, sel.run_dir, sel.path))
    groups = _group_plans(runs, plans)

    from repro.export import mlflow as mlflowmod

    total = sum(p.work_bytes for p in plans)
    done = [0]
    exported: dict[str, Exported] = dict(skipped)
    out_groups: list[ExportedGroup] = []
    with mlflowmod.http_settings(env) as probe, \
            reporter.progress("exporting to MLflow") as progress:
        server = mlflowmod.Server(where.tracking_uri, where.experiment, reporter, probe)

        def tick(n: int) -> None:
            done[0] += n
            progress(done[0], total)

        parents: dict[str, str] = {}
        for gid, (gplan, members) in groups.items():
            group_run, action = server.export_group(gplan)
            parents[gid] = group_run
            out_groups.append(ExportedGroup(gid, group_run, action, tuple(members),
                                            gplan.group.size))
        for p in plans:
            parent = parents.get(p.group.id) if p.group is not None else None
            mlflow_id, action = server.export_run(p, parent, tick)
            exported[p.run_id] = Exported(p.run_id, mlflow_id, action, parent)
    return Report(tracking_uri=mlflowmod.shown(where.tracking_uri),
                  experiment=where.experiment, experiment_id=server.experiment_id,
                  url=server.url,
                  runs=tuple(exported[s.manifest.run_id] for s in selected),
                  groups=tuple(out_groups))


def _group_plans(runs: store.Store, plans: Sequence[planmod.RunPlan]
                 ) -> dict[str, tuple[planmod.GroupPlan, list[str]]]:
    """A parent run for each group among `plans`, planned from every local run of the group
    (its span and status), so exporting one member makes the same parent as exporting all."""
    out = {}
    for gid, group in {p.group.id: p.group for p in plans if p.group is not None}.items():
        members = []
        for path, m in store.group_members(runs, f"{store.GROUP_PREFIX}{gid}"):
            try:
                members.append(planmod.run_plan(m, path.parent, path))
            except errors.ReproError:
                continue
        mine = [p.run_id for p in plans if p.group is not None and p.group.id == gid]
        out[gid] = (planmod.group_plan(group, members or [p for p in plans
                                                          if p.run_id in mine]), mine)
    return out


def _selected(path: Path, m: manifest.Manifest) -> Selected:
    return Selected(m, path.parent, path)
