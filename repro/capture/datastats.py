"""Statistics of data inputs: rows, columns, types and nulls of tables; files per class folder.

Owns the optional `stats` of a `data` entry (`repro run --data-stats`, `data_stats: true`):
- CSV/TSV (`.csv`, `.tsv`, `.tab`, and the same `.gz`-compressed): row count, column names in
  header order, each column's inferred type (int, float, bool, string; `empty` when every
  value is null) and null count (empty, `NA`, `N/A`, `NaN`, `null`, `None`...);
- JSON lines (`.jsonl`, `.ndjson`, `.jsonl.gz`): rows, the keys of the objects as columns,
  their JSON types (int and float make float; other mixes are `mixed`), nulls (null or absent);
- Parquet (`.parquet`, `.pq`): from the file's footer alone, through pyarrow in the *run's*
  interpreter (a small probe process; repro never imports pyarrow): rows, columns, types, and
  nulls where the writer kept statistics;
- directories: files per top-level sub-directory (an image folder's class distribution),
  counted from the hash listing, without touching the disk again; and the statistics above of
  the first MAX_TABLES table files inside (`tables`, by relative path).

Streamed, in bounded memory, under a time budget: when it runs out the statistics say
`partial: true` with the bytes read, and count what was read. Results for a file are cached
by its content hash (the hash already recorded), so a dataset is read once, not every run.
Must not: print, raise anything but nothing (a file that cannot be read gets `error`), import
pyarrow/pandas/numpy, or run on `repro run`'s hot path (the caller runs it while the command
runs, and only when asked).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

SCHEMA = "repro/datastats/v1"  # of the cache files
DEFAULT_SECONDS = 60.0  # budget for all the inputs of one run
BATCH_ROWS = 10_000
BLOCK_CHARS = 1024 * 1024  # text read at a time on the fast path (~ a few MB of field objects)
MAX_COLUMNS = 10_000  # wider tables are listed up to here (`columns_omitted` counts the rest)
MAX_CLASSES = 10_000  # top-level sub-directories counted by name before giving up
MAX_TABLES = 20  # table files inside a directory input given statistics (in path order)
CSV_FIELD_MAX = 64 * 1024 * 1024  # csv's default of 128 KiB refuses legitimate long fields
NULLS = ("", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "<NA>", "#N/A")
_OTHER_NULLS = frozenset(NULLS[1:])
_TABLES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}
_NULL_RE = "|".join(re.escape(n) for n in NULLS if n)
# A whole column (its values joined by "\n") matches when every value is of the type or null.
_TYPE_RES = {
    kind: re.compile(rf"(?:{value}|{_NULL_RE}|)(?:\n(?:{value}|{_NULL_RE}|))*")
    for kind, value in (
        ("int", r"[-+]?\d+"),
        ("float", r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|Inf|INF"
                  r"|infinity|Infinity)"),
        ("bool", r"true|false|True|False|TRUE|FALSE"),
    )
}
# Types a column may still have, given what its earlier batches had (None: nulls only).
_CANDIDATES: dict[str | None, tuple[str, ...]] = {
    None: ("int", "float", "bool"), "int": ("int", "float"), "float": ("float",),
    "bool": ("bool",)}


def table_format(path: str) -> str | None:
    """csv | tsv | jsonl | parquet for a name these statistics understand, else None."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
        kind = _TABLES.get(os.path.splitext(name)[1])
        return kind if kind in ("csv", "tsv", "jsonl") else None
    return _TABLES.get(os.path.splitext(name)[1])


class Budget:
    """A deadline shared by every input of one run, and how far the reading has got (`read`
    of `total` bytes, for a progress bar another thread draws)."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.total = 0
        self.read = 0
        self._base = 0
        self._tell: Callable[[], int] | None = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def track(self, tell: Callable[[], int] | None) -> None:
        """Count what `tell` says from here on (a new file starts), after what was read."""
        self._base = self.read
        self._tell = tell

    def out(self) -> bool:
        if self._tell is not None:
            with contextlib.suppress(OSError, ValueError):
                self.read = self._base + self._tell()
        return time.monotonic() >= self.deadline


def collect(entries: Mapping[str, Mapping[str, Any]], root: Path, *,
            listings: Mapping[str, Mapping[str, Any]] | None = None,
            python: str | None = None, seconds: float = DEFAULT_SECONDS,
            cache_dir: Path | None = None, budget: Budget | None = None
            ) -> dict[str, dict[str, Any]]:
    """path -> stats for the `data` entries (path -> {kind, hash, size...}) this module
    understands. A directory gets its files per sub-directory and, in `tables`, the
    statistics of up to MAX_TABLES table files inside it (by relative path, in path order).

    `listings`: per directory path, its listing (relpath -> (hash, size)). `python`: the run's
    interpreter, for Parquet. `cache_dir`: where results are kept by content hash. `budget`:
    the caller's (to watch its progress), else one of `seconds`.
    """
    budget = budget or Budget(seconds)
    # Every table file to read: (key in `out`, relpath inside a directory or "", path, hash, size)
    todo: list[tuple[str, str, str, Any, int]] = []
    out: dict[str, dict[str, Any]] = {}
    for path, entry in entries.items():
        kind = entry.get("kind")
        if kind == "dir" and listings is not None and path in listings:
            listing = listings[path]
            out[path] = dir_stats(listing)
            inner = [rel for rel in sorted(listing) if table_format(rel) is not None
                     and not str(listing[rel][0]).startswith("symlink:")]
            if len(inner) > MAX_TABLES:
                out[path]["tables_omitted"] = len(inner) - MAX_TABLES
            for rel in inner[:MAX_TABLES]:
                digest, size = listing[rel][0], listing[rel][1]
                todo.append((path, rel, os.path.join(_under(root, path), rel), digest,
                             int(size or 0)))
        elif kind == "file" and table_format(path) is not None:
            todo.append((path, "", _under(root, path), entry.get("hash"),
                         int(entry.get("size") or 0)))
    budget.total = sum(size for _, rel, p, _, size in todo if table_format(p) != "parquet")
    found: dict[tuple[str, str], dict[str, Any]] = {}
    parquet: list[tuple[str, str, str, Any, int]] = []
    for item in todo:
        key, rel, path, digest, _ = item
        fmt = table_format(path)
        cached = _cache_get(cache_dir, digest)
        if cached is not None:
            found[key, rel] = cached
        elif fmt == "parquet":
            parquet.append(item)
        elif fmt is not None:
            stats = table_stats(path, fmt, budget)
            found[key, rel] = stats
            if not stats.get("partial") and "error" not in stats:
                _cache_put(cache_dir, digest, stats)
    if parquet:
        results = parquet_stats([p for _, _, p, _, _ in parquet], python, budget)
        for (key, rel, _, digest, _), stats in zip(parquet, results, strict=True):
            found[key, rel] = stats
            if "error" not in stats:
                _cache_put(cache_dir, digest, stats)
    for (key, rel), stats in sorted(found.items()):
        if rel:
            out[key].setdefault("tables", {})[rel] = stats
        else:
            out[key] = stats
    return out


def _under(root: Path, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(root, path)


# --- directories ----------------------------------------------------------------------------


def dir_stats(listing: Mapping[str, Any]) -> dict[str, Any]:
    """Files per top-level sub-directory (`subdirs`), and files directly in it (`top_files`)."""
    counts: dict[str, int] = {}
    top = 0
    for rel in listing:
        first, sep, _ = rel.partition("/")
        if not sep:
            top += 1
            continue
        counts[first] = counts.get(first, 0) + 1
    stats: dict[str, Any] = {"format": "dir", "files": len(listing), "top_files": top}
    if len(counts) > MAX_CLASSES:
        stats["subdirs"] = None
        stats["subdir_count"] = len(counts)
    else:
        stats["subdirs"] = dict(sorted(counts.items()))
    return stats


# --- CSV / TSV / JSON lines -----------------------------------------------------------------


def table_stats(path: str, fmt: str, budget: Budget) -> dict[str, Any]:
    """Statistics of one CSV/TSV/JSON-lines file, streamed; `error` when it cannot be read."""
    try:
        raw = _open_regular(path)
    except OSError as e:
        return {"format": fmt, "error": e.strerror or str(e)}
    try:
        budget.track(raw.tell)
        stream: IO[bytes] = raw
        if path.lower().endswith(".gz"):
            import gzip

            stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="")
        if fmt == "jsonl":
            stats = _jsonl(text, budget)
        else:
            stats = _csv(text, "\t" if fmt == "tsv" else None, budget)
        stats = {"format": fmt, **stats}
        if stats.get("partial"):
            stats["read_bytes"] = raw.tell()
        return stats
    except Exception as e:  # a damaged file (zlib.error, csv.Error...): no statistics, the run
        return {"format": fmt, "error": _reason(e)}  # goes on
    finally:
        budget.track(None)
        raw.close()


def _open_regular(path: str) -> IO[bytes]:
    """Open for reading, refusing anything but a regular file (a FIFO must never block)."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        return os.fdopen(fd, "rb", buffering=1024 * 1024)
    except BaseException:
        os.close(fd)
        raise


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")


def _csv(text: io.TextIOWrapper, delimiter: str | None, budget: Budget) -> dict[str, Any]:
    """Rows, columns, types and nulls of a delimited file.

    Fast path: a block of lines without quotes, every row as wide as the header, is split in
    C (newlines made delimiters, one `split`, every `width`-th field a column: no per-row
    work in Python). A block with a ragged or blank row goes through the csv module; once a
    quote appears (a quoted field may hold the delimiter or a newline) so does the rest.
    """
    head = text.readline()
    if not head:
        return {"rows": 0, "columns": {}}
    if delimiter is None:  # `.csv` files in the wild also use `;` or tabs
        counts = {d: head.count(d) for d in (",", ";", "\t", "|")}
        delimiter = max(counts, key=lambda d: (counts[d], d == ","))
    csv.field_size_limit(CSV_FIELD_MAX)
    header = next(csv.reader(itertools.chain([head], text), delimiter=delimiter), [])
    acc = _Columns(_unique_names(header[:MAX_COLUMNS]), len(header))
    while True:
        if budget.out():
            acc.partial = True
            break
        block = text.read(BLOCK_CHARS)
        if not block:
            break
        if not block.endswith("\n"):
            block += text.readline()
        if '"' in block:  # from here on the csv module, for the block and the rest
            rest = itertools.chain(io.StringIO(block, newline=""), text)
            _csv_rows(csv.reader(rest, delimiter=delimiter), acc, budget)
            break
        if "\r" in block:
            block = block.replace("\r\n", "\n")
        if not block.endswith("\n"):
            block += "\n"
        lines = block.split("\n")
        del lines[-1]  # after the last newline
        # Every line as wide as the header (counted in C); a total alone could balance out.
        widths = set(map(str.count, lines, itertools.repeat(delimiter)))
        if widths == {acc.fields - 1} and "\r" not in block:
            fields = block.replace("\n", delimiter).split(delimiter)
            del fields[-1]
            acc.rows += len(lines)
            for i in range(acc.width):
                acc.add(i, fields[i::acc.fields])
        else:  # ragged or blank rows, a lone \r: this block row by row
            _csv_rows(csv.reader(io.StringIO(block, newline=""), delimiter=delimiter), acc,
                      budget)
    return acc.stats()


def _csv_rows(reader: Any, acc: _Columns, budget: Budget) -> None:
    """Rows from the csv module, in batches (blank rows skipped, as pandas does)."""
    while True:
        if budget.out():
            acc.partial = True
            return
        batch = list(itertools.islice(reader, BATCH_ROWS))
        if not batch:
            return
        lengths = set(map(len, batch))  # in C: a per-row test in Python costs a fifth more
        if 0 in lengths:
            batch = [r for r in batch if r]
        if lengths - {0} != {acc.fields}:
            acc.ragged += sum(1 for r in batch if len(r) != acc.fields)
            batch = [(r + [""] * acc.width)[:acc.width] if len(r) != acc.fields else r
                     for r in batch]
        acc.rows += len(batch)
        for i, column in enumerate(zip(*batch, strict=False)):
            if i >= acc.width:
                break
            acc.add(i, column)


class _Columns:
    """Null counts and types per column, fed a column of one batch at a time."""

    def __init__(self, names: list[str], fields: int) -> None:
        self.names = names
        self.width = len(names)  # columns kept (at most MAX_COLUMNS)
        self.fields = fields  # fields in the header
        self.nulls = [0] * self.width
        self.types: list[str | None] = [None] * self.width  # None: only nulls so far
        self.rows = 0
        self.ragged = 0
        self.partial = False

    def add(self, i: int, column: Sequence[str]) -> None:
        empty = column.count("")
        n = empty
        other = len(column) != empty and not _OTHER_NULLS.isdisjoint(column)
        if other:
            n += sum(map(column.count, NULLS[1:]))
        self.nulls[i] += n
        if n != len(column):
            self.types[i] = _column_type(self.types[i], column, empty, other)

    def stats(self) -> dict[str, Any]:
        columns = {name: {"type": self.types[i] or "empty", "nulls": self.nulls[i]}
                   for i, name in enumerate(self.names)}
        stats: dict[str, Any] = {"rows": self.rows, "columns": columns}
        if self.fields > self.width:
            stats["columns_omitted"] = self.fields - self.width
        if self.ragged:
            stats["ragged_rows"] = self.ragged  # rows with more or fewer fields than the header
        if self.partial:
            stats["partial"] = True
        return stats


def _column_type(current: str | None, column: Sequence[str], empty: int, other_nulls: bool
                 ) -> str:
    """The narrowest type every value of `column` (and every earlier batch: `current`) has.

    `empty`: how many values are "" (dropped by filter() in C); `other_nulls`: whether other
    null markers (NA, nan...) are among them. Without those, int() and float() over the
    column (map, in C) decide, several times faster than a regular expression per value.
    """
    if current == "string":
        return current
    if not other_nulls:
        values: Any = filter(None, column) if empty else column
        for kind, parse in (("int", int), ("float", float)):
            if kind not in _CANDIDATES[current]:
                continue
            try:
                collections.deque(map(parse, values), maxlen=0)
                return kind
            except (ValueError, OverflowError):
                values = filter(None, column) if empty else column
        if "bool" not in _CANDIDATES[current]:
            return "string"
    joined = "\n".join(column)
    for kind in _CANDIDATES[current]:
        if _TYPE_RES[kind].fullmatch(joined):
            return kind
    return "string"


def _unique_names(header: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(header):
        name = name.strip() or f"column_{i + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name}#{seen[name]}"
        else:
            seen[name] = 1
        out.append(name)
    return out


_JSON_TYPES = {bool: "bool", int: "int", float: "float", str: "string", list: "list",
               dict: "object"}


def _jsonl(text: io.TextIOWrapper, budget: Budget) -> dict[str, Any]:
    rows = 0
    invalid = 0
    present: dict[str, int] = {}
    nulls: dict[str, int] = {}
    types: dict[str, str] = {}
    partial = False
    lines = iter(text)  # JSON lines end at "\n"; a "\r" inside a string is escaped
    while True:
        if budget.out():
            partial = True
            break
        batch = list(itertools.islice(lines, BATCH_ROWS))
        if not batch:
            break
        for line in batch:
            if not line.strip():
                continue
            rows += 1
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError):
                invalid += 1
                continue
            if not isinstance(obj, dict):
                invalid += 1
                continue
            for key, value in obj.items():
                if key not in present:
                    if len(present) >= MAX_COLUMNS:
                        continue
                    present[key] = 0
                    nulls[key] = 0
                present[key] += 1
                if value is None:
                    nulls[key] += 1
                    continue
                kind = _JSON_TYPES.get(type(value), "mixed")
                seen = types.get(key)
                if seen is None or seen == kind:
                    types[key] = kind
                elif {seen, kind} == {"int", "float"}:
                    types[key] = "float"
                else:
                    types[key] = "mixed"
    valid = rows - invalid
    columns = {key: {"type": types.get(key, "empty"),
                     "nulls": nulls[key] + (valid - present[key])} for key in present}
    stats: dict[str, Any] = {"rows": rows, "columns": columns}
    if invalid:
        stats["invalid_rows"] = invalid  # not JSON, or not an object
    if partial:
        stats["partial"] = True
    return stats


# --- Parquet, in the run's interpreter ------------------------------------------------------

_PARQUET_PROBE = r"""
import json, sys
try:
    import pyarrow.parquet as pq
except Exception as e:
    print(json.dumps({"error": "pyarrow is not importable in the run's interpreter (%s)"
                      % type(e).__name__}))
    sys.exit(0)
out = []
for path in sys.argv[1:]:
    try:
        f = pq.ParquetFile(path)
        md = f.metadata
        fields = {field.name: str(field.type) for field in f.schema_arrow}
        names = [md.schema.column(i).path for i in range(md.num_columns)]
        nulls = [0] * md.num_columns
        for g in range(md.num_row_groups):
            group = md.row_group(g)
            for i in range(group.num_columns):
                st = group.column(i).statistics
                if st is None or not st.has_null_count:
                    nulls[i] = None
                elif nulls[i] is not None:
                    nulls[i] += st.null_count
        columns = {}
        for i, name in enumerate(names):
            kind = fields.get(name) or str(md.schema.column(i).physical_type).lower()
            columns[name] = {"type": kind, "nulls": nulls[i]}
        out.append({"rows": md.num_rows, "columns": columns,
                    "row_groups": md.num_row_groups})
    except Exception as e:
        out.append({"error": "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200]
                                         if str(e) else "")})
print(json.dumps({"files": out}))
"""


def parquet_stats(paths: Sequence[str], python: str | None, budget: Budget
                  ) -> list[dict[str, Any]]:
    """Footer statistics of Parquet files, read by pyarrow in `python` (the run's interpreter)."""
    def each(error: str) -> list[dict[str, Any]]:
        return [{"format": "parquet", "error": error} for _ in paths]

    if not python:
        return each("no Python interpreter to read Parquet with")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REPRO_") and k != "PYTHONPATH"}
    try:
        # cwd "/": `python -c` puts the working directory first on sys.path, where a file
        # of the project's could shadow pyarrow or json.
        done = subprocess.run([python, "-c", _PARQUET_PROBE, *map(os.path.abspath, paths)],
                              capture_output=True, timeout=max(1.0, budget.left()), env=env,
                              stdin=subprocess.DEVNULL, check=False, cwd="/")
    except subprocess.TimeoutExpired:
        return [{"format": "parquet", "partial": True, "error": "out of time"} for _ in paths]
    except OSError as e:
        return each(f"cannot start {python}: {e.strerror or e}")
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return each(f"the Parquet probe failed: {last[:200]}")
    if not isinstance(doc, dict):
        return each("the Parquet probe gave no result")
    if "error" in doc:
        return each(str(doc["error"]))
    files = doc.get("files")
    if not isinstance(files, list) or len(files) != len(paths):
        return each("the Parquet probe gave no result")
    return [{"format": "parquet", **f} if isinstance(f, dict) else
            {"format": "parquet", "error": "no result"} for f in files]


# --- cache by content hash ------------------------------------------------------------------


def _cache_path(cache_dir: Path | None, digest: Any) -> Path | None:
    if cache_dir is None or not isinstance(digest, str) or ":" not in digest:
        return None
    algo, _, hexpart = digest.partition(":")
    if not algo.isalnum() or not hexpart or not all(c in "0123456789abcdef" for c in hexpart):
        return None
    return cache_dir / "datastats-v1" / f"{algo}-{hexpart}.json"


def _cache_get(cache_dir: Path | None, digest: Any) -> dict[str, Any] | None:
    path = _cache_path(cache_dir, digest)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(16 * 1024 * 1024 + 1)
        doc = json.loads(data) if len(data) <= 16 * 1024 * 1024 else None
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA \
            or not isinstance(doc.get("stats"), dict):
        return None
    stats: dict[str, Any] = doc["stats"]
    return stats


def _cache_put(cache_dir: Path | None, digest: Any, stats: Mapping[str, Any]) -> None:
    path = _cache_path(cache_dir, digest)
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"schema": SCHEMA, "stats": dict(stats)}))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
