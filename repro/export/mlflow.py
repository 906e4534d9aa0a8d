"""The MLflow side of `repro export mlflow`: one tracking server, one experiment, its runs.

The only module that imports mlflow (the `mlflow-skinny` client: the optional extra
`repro[mlflow]`), and only when a command calls `connect`. Credentials come from MLflow's own
variables (`MLFLOW_TRACKING_TOKEN`, `MLFLOW_TRACKING_USERNAME`/`_PASSWORD`), read by the client;
repro never writes them, and names the server with `strip_credentials` wherever it shows it.

Idempotent by construction: a repro run is found again by its `repro.run_id` tag, and an
export that was cut short (no `repro.export.complete` tag) is completed by adding only what is
missing: tags and params by name, metric points by (key, step, timestamp, value), artifacts by
path and size. Every failure the server or the network causes is an `errors.ExportError` with
a hint, raised in bounded time: MLflow's HTTP timeout and retries are set for the client made
here (where the user has not set them), so an unreachable server fails in seconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors, report
from repro.capture import git
from repro.export import plan as planmod

# Defaults for MLflow's HTTP settings while this module talks to the server; a value the user
# set in the environment wins. The first request (a probe) uses a shorter leash.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    # set_terminated otherwise writes "View run ... at ..." to stdout, which is ours
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
PROBE = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}

MAX_BATCH = 1000  # MLflow: at most 1000 metrics, 100 params and 100 tags per log_batch
MAX_PARAMS_TAGS = 100

EXTRA_HINT = "pip install 'repro[mlflow]'"
_AUTH_HINT = ("set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
              "MLFLOW_TRACKING_PASSWORD, to credentials the server accepts")
_REACH_HINT = ("check the URI (--tracking-uri, MLFLOW_TRACKING_URI or mlflow_tracking_uri in the "
               "configuration) and that the server is up")
_UNREACHABLE = re.compile(r"Max retries exceeded|Connection refused|Failed to establish|"
                          r"timed out|timeout|NameResolution|Name or service not known|"
                          r"RemoteDisconnected|Connection aborted|Connection reset", re.I)
_HTTP_CODE = re.compile(r"error code (\d{3})")

Tick = Callable[[int], None]  # bytes of the run's files done


def shown(uri: str) -> str:
    """The tracking URI as repro shows it: without credentials or query."""
    return git.strip_credentials(uri)


@contextlib.contextmanager
def http_settings(env: Mapping[str, str] | None = None) -> Iterator[Callable[[bool], None]]:
    """MLflow's HTTP variables set for this export (those the user set are left alone), and
    put back as they were afterwards. Yields `probe(on)`: the short leash for the first call."""
    environ = os.environ
    before = {k: environ.get(k) for k in HTTP_DEFAULTS}
    user = {k for k, v in (env if env is not None else before).items() if v is not None}

    def apply(values: Mapping[str, str]) -> None:
        for k, v in values.items():
            if k not in user:
                environ[k] = v

    def probe(on: bool) -> None:
        apply({**HTTP_DEFAULTS, **PROBE} if on else HTTP_DEFAULTS)

    apply(HTTP_DEFAULTS)
    try:
        yield probe
    finally:
        for k, v in before.items():
            if v is None:
                environ.pop(k, None)
            else:
                environ[k] = v


def _client_modules() -> tuple[Any, Any, Any, Any]:
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise errors.ExportError(
            f"the MLflow client is not installed ({e.msg if hasattr(e, 'msg') else e})",
            hint=EXTRA_HINT) from e
    return MlflowClient, Metric, Param, RunTag


class Server:
    """One experiment on one tracking server, through MLflow's client."""

    def __init__(self, uri: str, experiment: str, reporter: report.Reporter,
                 probe: Callable[[bool], None] | None = None) -> None:
        client_cls, self._metric, self._param, self._tag = _client_modules()
        self.uri = uri
        self.reporter = reporter
        try:
            self.client = client_cls(tracking_uri=uri)
        except Exception as e:  # a URI MLflow does not understand
            raise self._translate(e, "connect") from e
        if probe is not None:
            probe(True)
        try:
            self.experiment = experiment
            self.experiment_id = self._experiment(experiment)
        finally:
            if probe is not None:
                probe(False)

    # -- the server's answers, translated ------------------------------------------------

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.ReproError:
            raise
        except Exception as e:  # MlflowException, requests' and OSError, from the client
            raise self._translate(e, what) from e

    def _translate(self, e: BaseException, what: str) -> errors.ExportError:
        where = shown(self.uri)
        text = git.strip_credentials(str(e)).strip()
        code = getattr(e, "error_code", None)
        status = _HTTP_CODE.search(text)
        http = int(status.group(1)) if status else None
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or http in (401, 403):
            verb = "refused the credentials" if (code == "UNAUTHENTICATED" or http == 401) \
                else "denied access"
            return errors.ExportError(f"the MLflow server at {where} {verb} ({what})",
                                      hint=_AUTH_HINT)
        if http in (404, 405) and code not in ("RESOURCE_DOES_NOT_EXIST",):
            return errors.ExportError(
                f"{where} does not answer as an MLflow tracking server (HTTP {http} while "
                f"{what})", hint="give the tracking server's base URL, e.g. http://HOST:5000")
        if _UNREACHABLE.search(text):
            return errors.ExportError(f"cannot reach the MLflow server at {where}",
                                      hint=_REACH_HINT)
        first = text.splitlines()[0] if text else type(e).__name__
        if len(first) > 300:
            first = first[:299] + "…"
        return errors.ExportError(f"MLflow server at {where}: {what} failed: {first}",
                                  hint="see the server's log; export again to complete "
                                       "what is missing")

    def _experiment(self, name: str) -> str:
        found = self._call("looking up the experiment", self.client.get_experiment_by_name, name)
        if found is not None and found.lifecycle_stage == "deleted":
            raise errors.ExportError(
                f"experiment {name!r} is deleted on the MLflow server at {shown(self.uri)}",
                hint=f"restore it (MLflow UI, or `mlflow experiments restore --experiment-id "
                     f"{found.experiment_id}`), or export into another with --experiment NAME")
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except Exception as e:
            again = self._call("looking up the experiment", self.client.get_experiment_by_name,
                               name)
            if again is not None and again.lifecycle_stage != "deleted":
                return str(again.experiment_id)  # someone created it meanwhile
            raise self._translate(e, "creating the experiment") from e

    @property
    def url(self) -> str | None:
        """The experiment's page in the MLflow UI, for an http(s) server."""
        base = shown(self.uri).rstrip("/")
        if not base.startswith(("http://", "https://")):
            return None
        return f"{base}/#/experiments/{self.experiment_id}"

    def find(self, conditions: Mapping[str, str]) -> Any:
        """The active run of the experiment whose tags are `conditions` (run and group ids,
        whose alphabets have no quote: checked again here), preferring a complete one."""
        if any("'" in v or "\\" in v for v in conditions.values()):
            raise errors.ExportError(f"cannot search MLflow for {dict(conditions)!r}",
                                     hint="a run or group id with a quote is not repro's")
        where = " AND ".join(f"tags.`{k}` = '{v}'" for k, v in conditions.items())
        found = self._call("searching runs", self.client.search_runs, [self.experiment_id],
                           filter_string=where, max_results=10)
        done = [r for r in found if r.data.tags.get(planmod.COMPLETE_TAG) == "true"]
        return (done or list(found) or [None])[0]

    # -- one run ---------------------------------------------------------------------------

    def export_run(self, p: planmod.RunPlan, parent: str | None, tick: Tick) -> tuple[str, str]:
        """(MLflow run id, "created" | "completed" | "unchanged") for the repro run `p`."""
        found = self.find({planmod.RUN_ID_TAG: p.run_id})
        if found is not None and found.data.tags.get(planmod.COMPLETE_TAG) == "true":
            tick(p.work_bytes)
            return found.info.run_id, "unchanged"
        tags = dict(p.tags)
        if parent is not None:
            tags[planmod.PARENT_TAG] = parent
        run_id, action, have_tags, have_params = self._open(
            found, tags, (planmod.RUN_ID_TAG, planmod.KIND_TAG), p.start_ms, p.name)
        self._tags(run_id, {k: v for k, v in tags.items() if have_tags.get(k) != v})
        self._params(run_id, p, have_params)
        self._metrics(run_id, p, found)
        self._artifacts(run_id, p, found is not None, tick)
        self._finish(run_id, p.mlflow_status, p.end_ms if p.end_ms is not None else p.start_ms)
        notes = p.tag_names.notes("tag") + p.param_names.notes("param")
        if notes:
            self.reporter.warn(f"run {p.run_id}: MLflow names refused characters; exported "
                               + "; ".join(notes),
                               hint="MLflow names allow letters, digits, _ - . : / and spaces")
        return run_id, action

    def _open(self, found: Any, tags: Mapping[str, str], keys: tuple[str, ...],
              start_ms: int, name: str) -> tuple[str, str, dict[str, str], dict[str, str]]:
        """(MLflow run id, action, its tags, its params): the run found (an export cut short:
        "completed") or one created with the tags that identify it (run name, user, `keys`)."""
        if found is not None:
            return (found.info.run_id, "completed", dict(found.data.tags),
                    dict(found.data.params))
        first = {k: tags[k] for k in ("mlflow.runName", "mlflow.user", *keys)}
        created = self._call("creating a run", self.client.create_run, self.experiment_id,
                             start_time=start_ms, tags=first, run_name=name)
        return created.info.run_id, "created", first, {}

    def export_group(self, g: planmod.GroupPlan) -> tuple[str, str]:
        """(MLflow run id, action) of the parent run of group `g`."""
        found = self.find({planmod.KIND_TAG: "group", planmod.GROUP_TAG: g.group.id})
        if found is not None and found.data.tags.get(planmod.COMPLETE_TAG) == "true":
            return found.info.run_id, "unchanged"
        run_id, action, have_tags, have_params = self._open(
            found, g.tags, (planmod.KIND_TAG, planmod.GROUP_TAG), g.start_ms, g.name)
        self._tags(run_id, {k: v for k, v in g.tags.items() if have_tags.get(k) != v})
        params = {k: v for k, v in g.params.items() if k not in have_params}
        self._batches(run_id, params=[self._param(k, v) for k, v in params.items()])
        self._finish(run_id, g.mlflow_status, g.end_ms if g.end_ms is not None else g.start_ms)
        return run_id, action

    def _tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self._batches(run_id, tags=[self._tag(k, v) for k, v in tags.items()])

    def _params(self, run_id: str, p: planmod.RunPlan, have: Mapping[str, str]) -> None:
        missing = {k: v for k, v in p.params.items() if k not in have}
        differ = [k for k, v in p.params.items() if k in have and have[k] != v]
        if differ:
            self.reporter.warn(
                f"run {p.run_id}: MLflow already holds other values for param(s) "
                f"{', '.join(differ[:5])}, and MLflow params cannot change: kept",
                hint="delete the MLflow run and export again to replace it")
        self._batches(run_id, params=[self._param(k, v) for k, v in missing.items()])

    def _batches(self, run_id: str, *, params: Sequence[Any] = (),
                 tags: Sequence[Any] = ()) -> None:
        for start in range(0, len(params), MAX_PARAMS_TAGS):
            self._call("logging params", self.client.log_batch, run_id,
                       params=params[start:start + MAX_PARAMS_TAGS])
        for start in range(0, len(tags), MAX_PARAMS_TAGS):
            self._call("setting tags", self.client.log_batch, run_id,
                       tags=tags[start:start + MAX_PARAMS_TAGS])

    def _metrics(self, run_id: str, p: planmod.RunPlan, found: Any) -> None:
        have: set[tuple[str, int, int, float | str]] = set()
        if found is not None:
            for key in found.data.metrics:
                history = self._call("reading metric history", self.client.get_metric_history,
                                     run_id, key)
                have.update((m.key, m.step, m.timestamp, _value_key(m.value)) for m in history)
        names = planmod.NameMap()
        batch: list[Any] = []
        for point in p.points(names):
            if have and (point.key, point.step, point.timestamp,
                         _value_key(point.value)) in have:
                continue
            batch.append(self._metric(point.key, point.value, point.timestamp, point.step))
            if len(batch) == MAX_BATCH:
                self._call("logging metrics", self.client.log_batch, run_id, metrics=batch)
                batch = []
        if batch:
            self._call("logging metrics", self.client.log_batch, run_id, metrics=batch)
        notes = names.notes("metric")
        if notes:
            self.reporter.warn(f"run {p.run_id}: exported " + "; ".join(notes),
                               hint="MLflow names allow letters, digits, _ - . : / and spaces")

    def _artifacts(self, run_id: str, p: planmod.RunPlan, existing: bool, tick: Tick) -> None:
        have = self._listing(run_id, planmod.ARTIFACT_DIR) if existing else {}
        if p.series is not None:
            tick(_size(p.series))
        with tempfile.TemporaryDirectory(prefix="repro-export-") as tmp:
            for artifact, path in p.artifacts:
                size = _size(path)
                if have.get(artifact) != size:
                    folder, name = posixpath.split(artifact)
                    source = path
                    if path.name != name:  # a manifest read from `baseline.yaml`, say
                        source = Path(tmp) / name
                        shutil.copyfile(path, source)
                    self._call(f"uploading {artifact}", self.client.log_artifact, run_id,
                               str(source), folder)
                tick(size)

    def _listing(self, run_id: str, folder: str) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for info in self._call("listing artifacts", self.client.list_artifacts, run_id, folder):
            if info.is_dir:
                out.update(self._listing(run_id, info.path))
            else:
                out[info.path] = info.file_size or 0  # an empty file lists as None
        return out

    def _finish(self, run_id: str, status: str, end_ms: int) -> None:
        if status == "RUNNING":
            return  # not ended yet: a later export ends it and marks it complete
        self._call("ending the run", self.client.set_terminated, run_id, status,
                   end_time=end_ms)
        self._call("marking the export complete", self.client.set_tag, run_id,
                   planmod.COMPLETE_TAG, "true")


def _value_key(value: float) -> float | str:
    return "nan" if isinstance(value, float) and math.isnan(value) else float(value)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
