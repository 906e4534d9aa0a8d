"""Metric capture: a final-metrics file, a JSON-lines series, and stdout patterns.

Owns reading the files a command wrote about its results, streamed in bounded memory, into the
manifest ``metrics`` section. Must not print, import PyYAML (YAML goes through
``manifest.read_yaml_file``), or fail a run for a metrics problem the user can fix afterwards:
``collect`` turns those into ``warnings`` in the section. The readers themselves raise
``errors.DataError`` naming the file (``errors.ConfigError`` for a bad pattern).

Names. Nested mappings flatten with dots (``{"val": {"loss": 1}}`` -> ``val.loss``); lists are
indexed (``{"acc": [0.9, 0.8]}`` -> ``acc.0``, ``acc.1``: per-class scores are metrics too),
except lists longer than ``MAX_LIST`` items, which are skipped as data rather than metrics.
Values are int, float, bool or str; nulls and anything else are skipped. When two names
flatten alike, the later one in the file wins.

Precedence when the same name comes from several sources: the metrics file (what the script
declares final) beats the series (the last value it logged), which beats stdout patterns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from repro import errors
from repro.record import bounded, manifest

Scalar = int | float | bool | str

MAX_LIST = 1000  # longer lists are data (predictions, curves), not metrics
MAX_LINE = 1024 * 1024  # bytes of one series or log line held at once; longer ones are cut

_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)",
                       re.IGNORECASE)


def read_metrics_file(path: Path) -> dict[str, Scalar]:
    """Flattened scalars from a JSON (``.json``) or YAML (any other suffix) mapping."""
    hint = 'write a mapping of metric names to values, e.g. {"loss": 0.12, "accuracy": 0.97}'
    if not path.exists():
        raise errors.DataError(f"metrics file {path} was not written",
                               hint="check that the command writes it, and the --metrics path")
    try:
        if path.suffix.lower() == ".json":
            raw = bounded.read_text(path, bounded.METRICS_MAX, errors.DataError, "metrics file")
            doc = bounded.loads_json(raw, f"metrics file {bounded.show_path(path)}",
                                     errors.DataError)
        else:
            doc = manifest.read_yaml_file(path, limit=bounded.METRICS_MAX)
    except errors.ManifestError as e:  # its message names the file
        message = e.message
        message = (f"cannot read metrics file {message.removeprefix('cannot read ')}"
                   if message.startswith("cannot read ") else f"metrics file {message}")
        raise errors.DataError(message, hint=hint) from e
    except errors.DataError as e:
        if e.hint is None or "damaged" in e.hint:
            e.hint = hint
        raise
    if not isinstance(doc, Mapping):
        raise errors.DataError(f"metrics file {path} holds a {type(doc).__name__}, not a "
                               f"mapping of names to values", hint=hint)
    out: dict[str, Scalar] = {}
    _flatten(doc, "", out)
    return out


def read_series(path: Path) -> tuple[dict[str, Scalar], int]:
    """(last value of each name except ``step``, number of records) from a JSON-lines file.

    Scripts append one JSON object per line (``REPRO_METRICS_FILE``). A line that is not a JSON
    object is skipped: typically the last one, cut short when the script was killed mid-write.
    Streamed: memory holds one line (at most ``MAX_LINE`` bytes) and the last values.
    """
    last, count, _ = _read_series(path)
    return last, count


def _read_series(path: Path) -> tuple[dict[str, Scalar], int, list[int]]:
    """read_series, plus the numbers of the lines skipped other than a truncated last one."""
    last: dict[str, Scalar] = {}
    count = 0
    bad: list[int] = []
    try:
        with bounded.open_regular(path, errors.DataError, "metrics series") as f:
            for number, line, state in _lines(f):
                text = line.strip()
                if not text:
                    continue
                record = None
                if state != _OVERLONG:
                    record = _json_line(text)
                if not isinstance(record, Mapping):
                    if state != _CUT:  # a cut last line is a write cut short: expected
                        bad.append(number)
                    continue
                count += 1
                _flatten({k: v for k, v in record.items() if k != "step"}, "", last)
    except OSError as e:
        raise errors.DataError(f"cannot read metrics series {path}: {_reason(e)}",
                               hint="check the file's permissions") from e
    return last, count, bad


def _json_line(text: bytes) -> Any:
    """One series record, or None when the line is not JSON (or is nested absurdly deep)."""
    try:
        record = json.loads(text)
        bounded.check_tree(record, "", errors.DataError)
    except (ValueError, RecursionError, errors.DataError):
        return None
    return record


def compile_patterns(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    """Compiled stdout patterns; ConfigError naming the first bad one (check before a run)."""
    compiled = []
    for p in patterns:
        try:
            rx = re.compile(p)
        except re.error as e:
            raise errors.ConfigError(
                f"metric pattern {p!r} is not a valid regular expression: {e}",
                hint="fix `metric_patterns` in the configuration") from e
        if not rx.groupindex:
            raise errors.ConfigError(
                f"metric pattern {p!r} has no named group, so it captures no metric",
                hint=r"name what to capture, e.g. 'loss=(?P<loss>[-+.\deE]+)'")
        compiled.append(rx)
    return compiled


def scan_log(path: Path, patterns: Sequence[str]) -> dict[str, Scalar]:
    """Named groups of `patterns` matched against each line of a log; the last match wins.

    Numbers become int or float; other captures stay strings. A missing log yields nothing.
    """
    compiled = compile_patterns(patterns)
    found: dict[str, Scalar] = {}
    if not compiled:
        return found
    try:
        with bounded.open_regular(path, errors.DataError, "log") as f:
            for _, raw, _ in _lines(f):
                line = raw.decode("utf-8", errors="replace")
                for rx in compiled:
                    for m in rx.finditer(line):
                        for key, value in m.groupdict().items():
                            if value is not None:
                                found[key] = to_scalar(value)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise errors.DataError(f"cannot read log {path}: {_reason(e)}",
                               hint="check the run directory's permissions") from e
    return found


def to_scalar(text: str) -> Scalar:
    """``"3"`` -> 3, ``"0.5"``/``"1e-3"``/``"nan"`` -> float, anything else unchanged."""
    s = text.strip()
    if _INT_RE.fullmatch(s):
        try:
            return int(s)
        except ValueError:  # over 4,300 digits: Python would refuse to print it again
            return text
    if _FLOAT_RE.fullmatch(s):
        return float(s)
    return text


def collect(*, metrics_file: Path | None, series_file: Path | None, log_file: Path | None,
            patterns: Sequence[str], root: Path, rewritten: bool = True) -> dict[str, Any]:
    """The manifest ``metrics`` section.

    ``{"final": {name: value}, "source": metrics file relative to root (or None), "series":
    the series file's name (or None when the script logged nothing), "steps": records in it}``
    plus ``"warnings": [...]`` when a file was missing or unreadable: the other sources are
    still used, and the run is still recorded. A relative `metrics_file` is relative to
    `root`. A bad pattern raises ConfigError: that is the configuration, not the run.
    `rewritten=False`: the metrics file exists but the command did not write it (it is left
    from an earlier run, e.g. this one was interrupted first): its values are not this run's,
    so they are not read, and a warning says so.
    """
    compile_patterns(patterns)  # fail on the configuration before reading anything
    final: dict[str, Scalar] = {}
    warnings: list[str] = []
    series: str | None = None
    steps = 0
    if log_file is not None and patterns:
        try:
            scanned = scan_log(log_file, patterns)
        except errors.DataError as e:
            warnings.append(e.message)
        else:
            final.update(scanned)
            for pattern, rx in zip(patterns, compile_patterns(patterns), strict=True):
                if not set(rx.groupindex) & set(scanned):  # a typo records nothing, silently
                    warnings.append(f"metric pattern {pattern!r} matched nothing the command "
                                    "printed")
    if series_file is not None and series_file.exists():
        try:
            values, steps, bad = _read_series(series_file)
        except errors.DataError as e:
            warnings.append(e.message)
        else:
            final.update(values)
            series = series_file.name if steps else None
            if bad:
                shown = ", ".join(str(n) for n in bad[:5]) + (" ..." if len(bad) > 5 else "")
                warnings.append(f"{series_file.name}: skipped {len(bad)} line(s) that are not "
                                f"JSON objects (line {shown})")
    source: str | None = None
    if metrics_file is not None:
        path = metrics_file if metrics_file.is_absolute() else root / metrics_file
        source = _rel(path, root)
        if not path.exists():
            warnings.append(f"metrics file {source} was not written")
        elif not rewritten:
            warnings.append(f"metrics file {source} was not rewritten by the command: its "
                            f"values are from an earlier run and are not recorded")
        else:
            try:
                final.update(read_metrics_file(path))
            except errors.DataError as e:
                warnings.append(e.message)
    section: dict[str, Any] = {"final": final, "source": source, "series": series,
                               "steps": steps}
    if warnings:
        section["warnings"] = warnings
    return section


_WHOLE, _CUT, _OVERLONG = "whole", "cut", "overlong"


def _lines(f: BinaryIO) -> Iterator[tuple[int, bytes, str]]:
    """(line number, bytes, state) per line, holding at most MAX_LINE bytes at once. The state
    is _WHOLE (ends with a newline), _CUT (the last line, without one) or _OVERLONG (only its
    first MAX_LINE bytes are given; the rest is skipped)."""
    number = 0
    while True:
        line = f.readline(MAX_LINE)
        if not line:
            return
        number += 1
        if line.endswith(b"\n"):
            yield number, line, _WHOLE
        elif len(line) < MAX_LINE:
            yield number, line, _CUT
        else:
            while True:  # skip the rest of the over-long line without holding it
                rest = f.readline(MAX_LINE)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, line, _OVERLONG


def _flatten(value: Any, prefix: str, out: dict[str, Scalar]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, (list, tuple)):
        if len(value) <= MAX_LIST:
            for i, v in enumerate(value):
                _flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    elif isinstance(value, (bool, int, float, str)) and prefix:
        out[prefix] = value
    # None and other types carry no metric value: skipped


def _reason(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)


def series_values(path: Path, points: int = 60) -> dict[str, list[float]]:
    """Each numeric name's values in a JSON-lines series, thinned to at most `points`.

    For the curve `repro show` draws: a long series keeps every k-th record (k doubling as it
    grows), so memory stays bounded however long the run logged. Unreadable lines are
    skipped; a missing or unreadable file gives nothing.
    """
    kept: dict[str, list[float]] = {}
    stride, seen = 1, 0
    try:
        with bounded.open_regular(path, errors.DataError, "metrics series") as f:
            for record in _records(f):
                seen += 1
                if (seen - 1) % stride:
                    continue
                flat: dict[str, Scalar] = {}
                _flatten({k: v for k, v in record.items() if k != "step"}, "", flat)
                for name, value in flat.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        kept.setdefault(name, []).append(float(value))
                if any(len(v) > 2 * points for v in kept.values()):
                    stride *= 2
                    kept = {k: v[::2] for k, v in kept.items()}
    except (OSError, errors.DataError):
        return {}
    return {k: _thin(v, points) for k, v in kept.items()}


def _records(f: BinaryIO) -> Iterator[Mapping[str, Any]]:
    """The JSON objects of a JSON-lines series, one line in memory; other lines skipped."""
    for _, line, state in _lines(f):
        text = line.strip()
        record = _json_line(text) if text and state != _OVERLONG else None
        if isinstance(record, Mapping):
            yield record


def _thin(values: list[float], points: int) -> list[float]:
    """At most `points` of `values`, evenly spaced, first and last kept."""
    if len(values) <= points or points < 2:
        return values[:max(points, 1)] if points < 2 else values
    last = len(values) - 1
    return [values[round(i * last / (points - 1))] for i in range(points)]


def series_records(path: Path) -> Iterator[tuple[int, dict[str, Scalar]]]:
    """(step, flattened values) for each record of a JSON-lines series, streamed.

    The step is the record's own integer ``step`` when it has one, else its index among the
    records (0, 1, ...). Lines that are not JSON objects are skipped, as ``read_series`` skips
    them; memory holds one line. A file that cannot be opened raises ``errors.DataError``.
    """
    index = 0
    try:
        with bounded.open_regular(path, errors.DataError, "metrics series") as f:
            for record in _records(f):
                step = record.get("step")
                if isinstance(step, bool) or not isinstance(step, int) or abs(step) >= 2**63:
                    step = index
                index += 1
                flat: dict[str, Scalar] = {}
                _flatten({k: v for k, v in record.items() if k != "step"}, "", flat)
                yield step, flat
    except OSError as e:
        raise errors.DataError(f"cannot read metrics series {path}: {_reason(e)}",
                               hint="check the file's permissions") from e
