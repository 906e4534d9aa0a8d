"""Metric capture: a final-metrics file, a JSON-lines series, and stdout patterns.

Reads files the command wrote (streamed, bounded memory); never prints and never fails a run
for a metrics problem the user can fix afterwards (those come back as warnings).

Precedence when the same key comes from several sources: the metrics file (what the script
declares final) beats the series (the last logged value), which beats stdout patterns.
Nested mappings flatten with dots (`{"val": {"loss": 1}}` -> `val.loss`); lists are indexed
(`{"acc": [0.1, 0.2]}` -> `acc.0`, `acc.1`), since a list of per-class scores is still metrics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors, manifest

Scalar = int | float | bool | str


def read_metrics_file(path: Path) -> dict[str, Scalar]:
    """A JSON or YAML mapping of scalars, flattened."""
    try:
        if path.suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
        else:
            doc = manifest.read_yaml_file(path)
    except (OSError, UnicodeDecodeError) as e:
        raise errors.DataError(f"cannot read metrics file {path}: {e}") from e
    except ValueError as e:
        raise errors.DataError(f"metrics file {path} is not valid JSON: {e}",
                               hint="write a JSON object of metric names to numbers") from e
    except errors.ManifestError as e:
        raise errors.DataError(e.message, hint="write a YAML mapping of metric names to numbers") from e
    if not isinstance(doc, Mapping):
        raise errors.DataError(f"metrics file {path} must hold a mapping of names to values",
                               hint='e.g. {"loss": 0.12, "accuracy": 0.97}')
    out: dict[str, Scalar] = {}
    _flatten(doc, "", out)
    return out


def read_series(path: Path) -> tuple[dict[str, Scalar], int]:
    """(last value of each key, number of records) from a JSON-lines file scripts append to.

    A line that does not parse (typically the last one, cut by a kill mid-write) is skipped.
    """
    last: dict[str, Scalar] = {}
    count = 0
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, Mapping):
                    continue
                count += 1
                flat: dict[str, Scalar] = {}
                _flatten({k: v for k, v in record.items() if k != "step"}, "", flat)
                last.update(flat)
    except OSError as e:
        raise errors.DataError(f"cannot read metrics series {path}: {e.strerror}") from e
    return last, count


def scan_log(path: Path, patterns: Sequence[str]) -> dict[str, Scalar]:
    """Named groups of regular expressions matched against each line; the last match wins."""
    if not patterns:
        return {}
    compiled = []
    for p in patterns:
        try:
            rx = re.compile(p)
        except re.error as e:
            raise errors.ConfigError(f"metric pattern {p!r} is not a valid regular expression: {e}",
                                     hint="fix `metric_patterns` in the configuration") from e
        if not rx.groupindex:
            raise errors.ConfigError(f"metric pattern {p!r} has no named group",
                                     hint=r"name what to capture, e.g. loss (?P<loss>[\d.e-]+)")
        compiled.append(rx)
    found: dict[str, Scalar] = {}
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            for line in f:
                for rx in compiled:
                    for m in rx.finditer(line):
                        for key, value in m.groupdict().items():
                            if value is not None:
                                found[key] = _number(value)
    except FileNotFoundError:
        return {}
    return found


def collect(*, metrics_file: Path | None, series_file: Path | None, log_file: Path | None,
            patterns: Sequence[str], root: Path) -> dict[str, Any]:
    """The manifest `metrics` section."""
    final: dict[str, Scalar] = {}
    warnings: list[str] = []
    section: dict[str, Any] = {}
    if log_file is not None:
        final.update(scan_log(log_file, patterns))
    if series_file is not None and series_file.exists():
        series, steps = read_series(series_file)
        final.update(series)
        section["series"] = series_file.name
        section["steps"] = steps
    if metrics_file is not None:
        section["source"] = _rel(metrics_file, root)
        if metrics_file.is_file():
            final.update(read_metrics_file(metrics_file))
        else:
            warnings.append(f"metrics file {section['source']} was not written by the command")
    section["final"] = final
    if warnings:
        section["warnings"] = warnings
    return {"final": section.pop("final"), **section}


def _flatten(value: Any, prefix: str, out: dict[str, Scalar]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    elif isinstance(value, (bool, int, float, str)) and prefix:
        out[prefix] = value
    # None and other types carry no metric value: skipped


def _number(text: str) -> Scalar:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
