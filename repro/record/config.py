"""Project configuration: `[tool.repro]` in pyproject.toml or `repro.yaml` at the git root.

Validates keys and types and names the key and the file on any error. Never prints.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repro import errors
from repro.record import bounded, manifest

if TYPE_CHECKING:
    from repro.judge.tolerance import Tolerance

DEFAULT_UNTRACKED_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP_OUTPUTS_MAX_BYTES = 64 * 1024 * 1024
# Inputs a replay copies into its worktree (reflinks cost nothing and do not count); larger
# inputs are linked, named before the replay and checked after it.
DEFAULT_REPLAY_COPY_MAX_BYTES = 1024 * 1024 * 1024
DEFAULT_DATA_STATS_SECONDS = 60.0


@dataclasses.dataclass(frozen=True)
class RemoteConfig:
    """A remote run store (`repro push`/`pull`, `NAME:run` references). No credentials here:
    they come from the standard AWS chain only."""

    name: str
    url: str
    endpoint: str | None = None  # S3 endpoint for this remote (else AWS_ENDPOINT_URL)
    region: str | None = None


REMOTE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
DEFAULT_REMOTE = "origin"  # the name of a `remote: URL` given alone


@dataclasses.dataclass(frozen=True)
class Config:
    source: str | None = None  # the file it came from, for messages
    seed: int | None = None
    determinism: str | None = None
    threads: int | None = None
    data: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    metrics: str | None = None
    metric_patterns: tuple[str, ...] = ()
    lockfile: str | None = None
    env_allow: tuple[str, ...] = ()
    tolerance: Tolerance | None = None  # None: exact (compare is imported only when needed)
    untracked_max_bytes: int = DEFAULT_UNTRACKED_MAX_BYTES
    keep_outputs_max_bytes: int = DEFAULT_KEEP_OUTPUTS_MAX_BYTES
    replay_copy_max_bytes: int = DEFAULT_REPLAY_COPY_MAX_BYTES
    params_files: tuple[str, ...] = ()  # YAML/JSON/TOML files whose keys are run parameters
    data_stats: bool = False  # statistics of the inputs (rows, columns, nulls, classes)
    data_stats_seconds: float = DEFAULT_DATA_STATS_SECONDS  # their time budget per run
    member_timeout: int | None = None  # seconds node 0 waits for a multi-node run's others
    mlflow_tracking_uri: str | None = None  # `repro export mlflow`; credentials never here
    mlflow_experiment: str | None = None
    remotes: tuple[RemoteConfig, ...] = ()  # key `remote`: a URL, or names -> URLs


MAX_SEED = 2**32 - 1  # what numpy's legacy seeding and PL_GLOBAL_SEED accept
MAX_THREADS = 4096

# key -> (expected kind, description for messages)
_KEYS: dict[str, tuple[str, str]] = {
    "seed": ("seed", f"an integer from 0 to {MAX_SEED}"),
    "determinism": ("level", "one of off, seed, warn, strict"),
    "threads": ("threads", f"an integer from 1 to {MAX_THREADS}"),
    "data": ("paths", "a list of paths"),
    "outputs": ("paths", "a list of paths"),
    "metrics": ("path", "a path"),
    "metric_patterns": ("strs", "a list of regular expressions"),
    "lockfile": ("relpath", "a path relative to the repository root, without '..'"),
    "env_allow": ("strs", "a list of variable names or glob patterns"),
    "tolerance": ("tolerance", "a mapping with rtol, atol, metrics"),
    "untracked_max_bytes": ("int", "an integer number of bytes"),
    "keep_outputs_max_bytes": ("int", "an integer number of bytes"),
    "replay_copy_max_bytes": ("int", "an integer number of bytes"),
    "params_files": ("paths", "a list of paths (YAML, JSON or TOML files of parameters)"),
    "data_stats": ("bool", "true or false"),
    "data_stats_seconds": ("seconds", "a number of seconds greater than 0"),
    "member_timeout": ("int", "an integer number of seconds"),
    "mlflow_tracking_uri": ("str", "a tracking server URI, e.g. http://mlflow:5000"),
    "mlflow_experiment": ("str", "an MLflow experiment name"),
    "remote": ("remote", "a URL (s3://BUCKET/PREFIX, file:///PATH) or a mapping of names to "
                         "URLs or to {url, endpoint, region}"),
}
_FIELD = {"remote": "remotes"}


def key_names() -> tuple[str, ...]:
    """Every configuration key, in the order the documentation gives them."""
    return tuple(_KEYS)


def load(root: Path) -> Config:
    """Read the configuration at `root`; a missing file gives the defaults."""
    yaml_path = root / "repro.yaml"
    pyproject = root / "pyproject.toml"
    table: Mapping[str, Any] | None = None
    source: Path | None = None
    if pyproject.is_file():
        table = _pyproject_table(pyproject)
        source = pyproject if table is not None else None
    if yaml_path.is_file():
        if table is not None:
            raise errors.ConfigError(
                f"both {yaml_path.name} and [tool.repro] in {pyproject.name} configure repro",
                hint="keep one of them",
            )
        try:
            data = manifest.read_yaml_file(yaml_path, limit=bounded.CONFIG_MAX)
        except errors.ManifestError as e:
            raise errors.ConfigError(e.message, hint=f"fix {yaml_path.name}") from e
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise errors.ConfigError(f"{yaml_path.name} must be a mapping of settings",
                                     hint="see `repro init` for a starter file")
        table, source = data, yaml_path
    if table is None or source is None:
        return Config()
    return parse(table, source.name)


def parse(table: Mapping[str, Any], source: str) -> Config:
    values: dict[str, Any] = {"source": source}
    for key, raw in table.items():
        if key not in _KEYS:
            known = ", ".join(sorted(_KEYS))
            raise errors.ConfigError(f"{source}: unknown key {key!r}", hint=f"known keys: {known}")
        kind, desc = _KEYS[key]
        values[_FIELD.get(key, key)] = _convert(raw, kind, f"{source}: {key!r} must be {desc}, got {raw!r:.100}")
    return Config(**values)


def _convert(raw: Any, kind: str, message: str) -> Any:
    hint = "fix the value in the configuration file"
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            raise errors.ConfigError(message, hint=hint)
        return raw
    if kind in ("path", "relpath"):
        if not isinstance(raw, str) or not _is_path(raw):
            raise errors.ConfigError(message, hint=hint)
        if kind == "relpath" and (raw.startswith("/") or ".." in raw.split("/")):
            raise errors.ConfigError(message, hint=hint)
        return raw
    if kind == "level":
        if raw is False:
            raw = "off"  # YAML 1.1 reads an unquoted `off` as false
        if raw not in manifest.LEVELS:
            raise errors.ConfigError(message, hint=hint)
        return raw
    if kind == "bool":
        if not isinstance(raw, bool):
            raise errors.ConfigError(message, hint=hint)
        return raw
    if kind == "seconds":
        if not _is_number(raw) or raw <= 0 or raw == float("inf"):
            raise errors.ConfigError(message, hint=hint)
        return float(raw)
    if kind == "str":
        if not isinstance(raw, str) or not raw:
            raise errors.ConfigError(message, hint=hint)
        return raw
    if kind in ("paths", "strs"):
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
            raise errors.ConfigError(message, hint=hint)
        if kind == "paths" and not all(_is_path(x) for x in raw):
            raise errors.ConfigError(message, hint=hint)
        return tuple(raw)
    if kind == "tolerance":
        if not isinstance(raw, Mapping) or set(raw) - {"rtol", "atol", "metrics"}:
            raise errors.ConfigError(message, hint=hint)
        per = raw.get("metrics", {})
        if not isinstance(per, Mapping) or not all(_is_number(v) for v in per.values()):
            raise errors.ConfigError(message, hint=hint)
        for k in ("rtol", "atol"):
            if k in raw and not _is_number(raw[k]):
                raise errors.ConfigError(message, hint=hint)
        from repro.judge.tolerance import Tolerance

        return Tolerance(rtol=float(raw.get("rtol", 0.0)), atol=float(raw.get("atol", 0.0)),
                         per_metric={str(k): float(v) for k, v in per.items()})
    if kind == "remote":
        return _remotes(raw, message, hint)
    raise AssertionError(kind)


def _remotes(raw: Any, message: str, hint: str) -> tuple[RemoteConfig, ...]:
    """`remote: URL` (named origin) or `remote: {name: URL | {url, endpoint, region}}`."""
    if isinstance(raw, str):
        raw = {DEFAULT_REMOTE: raw}
    if not isinstance(raw, Mapping) or not raw:
        raise errors.ConfigError(message, hint=hint)
    out = []
    for name, value in raw.items():
        if not isinstance(name, str) or not REMOTE_NAME_RE.match(name) or name == "group":
            raise errors.ConfigError(f"{message}: {name!r} is not a remote name",
                                     hint="names start with a letter: letters, digits, _ . -")
        if isinstance(value, str):
            value = {"url": value}
        if (not isinstance(value, Mapping) or set(value) - {"url", "endpoint", "region"}
                or not all(isinstance(v, str) and _is_path(v) for v in value.values())
                or "url" not in value):
            raise errors.ConfigError(message, hint=hint)
        if any("@" in str(v).partition("://")[2].partition("/")[0] for v in value.values()):
            raise errors.ConfigError(
                f"{message}: remote {name!r} holds credentials",
                hint="remove them: repro reads credentials only from the standard AWS chain")
        out.append(RemoteConfig(name=name, url=value["url"], endpoint=value.get("endpoint"),
                                region=value.get("region")))
    return tuple(out)


_INT_RANGES = {"int": (0, 2**63 - 1), "seed": (0, MAX_SEED), "threads": (1, MAX_THREADS)}


def _is_path(text: str) -> bool:
    return bool(text) and "\0" not in text and len(text) <= 4096


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0


def _pyproject_table(path: Path) -> Mapping[str, Any] | None:
    import tomllib

    text = bounded.read_text(path, bounded.CONFIG_MAX, errors.ConfigError)
    if bounded.toml_too_deep(text):
        raise errors.ConfigError(f"cannot read {path.name}: nested too deeply",
                                 hint=f"fix {path.name}")
    try:
        doc = tomllib.loads(text)
    except RecursionError as e:
        raise errors.ConfigError(f"cannot read {path.name}: nested too deeply",
                                 hint=f"fix {path.name}") from e
    except ValueError as e:  # TOMLDecodeError (duplicate keys among others), huge integers
        raise errors.ConfigError(f"cannot read {path.name}: {bounded.reason(e)}",
                                 hint=f"fix {path.name}") from e
    tool = doc.get("tool")
    table = tool.get("repro") if isinstance(tool, dict) else None
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise errors.ConfigError(f"{path.name}: [tool.repro] must be a table")
    try:
        bounded.check_tree(table, f"{path.name}: [tool.repro]", errors.ConfigError)
    except errors.ConfigError as e:
        e.hint = f"fix {path.name}"
        raise
    return table
