"""Bounded reads of the files repro parses: regular files only, a size cap, a depth cap.

Manifests, listings, configuration, lockfiles and metrics files may come from another machine
or a hostile commit (design §6): reading one must never hang (a FIFO), exhaust memory
(`/dev/zero`, a billion-laughs document) or overflow the stack (a document nested 100,000
deep). Standard library only; never prints. Errors are raised as the caller's `ReproError`
subclass, naming the file.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from repro import errors

MiB = 1024 * 1024
MANIFEST_MAX = 16 * MiB  # a manifest with 500 packages is ~30 KiB
CONFIG_MAX = 4 * MiB
LOCK_MAX = 64 * MiB  # a conda-lock.yml of a large environment is a few MiB
METRICS_MAX = 64 * MiB
LISTING_MAX = 1024 * MiB  # ~10 million files
PROBE_MAX = 4 * MiB  # the hook's per-process JSON files
# Deeper than any file repro reads legitimately (a manifest is ~6 deep), shallow enough that
# the recursive code that renders and compares what was read never meets the stack limit.
MAX_DEPTH = 64
# Python refuses to convert ints of more than 4,300 digits to text (CVE-2020-10735): such a
# number (e.g. written in hex, which parses unbounded) could be read but never shown.
MAX_INT_BITS = 14_000

ErrorType = type[errors.ReproError]


def read_bytes(path: Path, limit: int, error: ErrorType, what: str = "") -> bytes:
    """The content of the regular file `path`, refused when over `limit` bytes.

    Messages read `cannot read <what> <path>: ...` (`what`: "metrics file", "lockfile"...).
    """
    shown = f"{what} {show_path(path)}".lstrip()
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError) as e:
        raise error(f"cannot read {shown}: {reason(e)}",
                    hint="check the path and its permissions") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"cannot read {shown}: it is {_kind(st.st_mode)}, not a regular file",
                        hint="repro reads only regular files")
        if st.st_size > limit:
            raise error(too_big(shown, limit), hint=_BIG_HINT)
        chunks: list[bytes] = []
        total = 0
        while True:  # the size may change while reading: never hold more than limit + 1
            chunk = os.read(fd, min(limit + 1 - total, 1 << 20) or 1)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise error(too_big(shown, limit), hint=_BIG_HINT)
        return b"".join(chunks)
    except OSError as e:
        raise error(f"cannot read {shown}: {reason(e)}",
                    hint="check the path and its permissions") from e
    finally:
        os.close(fd)


def read_head(path: str, limit: int) -> bytes | None:
    """At most `limit` bytes from the start of a regular file, or None when it is absent,
    not a regular file (a FIFO is refused, never waited on) or unreadable: for the probes
    that read markers and metadata files and record nothing when they cannot."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError):
        return None
    try:
        # /proc files report size 0: regular all the same, and read up to `limit`.
        return os.read(fd, limit) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def open_regular(path: Path, error: ErrorType, what: str = "") -> BinaryIO:
    """`path` opened for reading in binary, refused unless a regular file (a FIFO never
    blocks the open); for files read as a stream, in bounded memory."""
    shown = f"{what} {show_path(path)}".lstrip()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise error(f"cannot read {shown}: {reason(e)}",
                    hint="check the path and its permissions") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"cannot read {shown}: it is {_kind(mode)}, not a regular file",
                        hint="repro reads only regular files")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_text(path: Path, limit: int, error: ErrorType, what: str = "") -> str:
    """read_bytes decoded as UTF-8."""
    raw = read_bytes(path, limit, error, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        shown = f"{what} {show_path(path)}".lstrip()
        raise error(f"cannot read {shown}: not UTF-8 text ({e.reason} at byte "
                    f"{e.start})", hint="the file is damaged or is not a text file") from e


def loads_json(text: str | bytes, source: str, error: ErrorType) -> Any:
    """JSON as plain data, its depth and numbers bounded (check_tree)."""
    try:
        value = json.loads(text)
    except RecursionError as e:
        raise error(f"{source} is nested too deeply to read", hint=_DEEP_HINT) from e
    except ValueError as e:  # JSONDecodeError, or an integer over Python's digit limit
        raise error(f"{source} is not valid JSON: {_first_line(e)}",
                    hint="the file is damaged or is not JSON") from e
    check_tree(value, source, error)
    return value


# A TOML key of more than MAX_DEPTH dots (`a.b.c…`, bare or quoted parts). tomllib's
# time and memory grow with the square of a dotted key's depth: a 100 KB `a.a.a… = 1` line
# took 30 s and 14 GB, before any depth check on the parsed value could run.
_TOML_PART = r"""(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')"""
_TOML_DOTTED = rf"{_TOML_PART}(?:[ \t]*\.[ \t]*{_TOML_PART})+"


def toml_too_deep(text: str) -> bool:
    """Does TOML `text` hold a dotted key (or table header) of more than MAX_DEPTH dots?
    Checked on the text, in linear time, before tomllib sees it; a dotted run in a value
    counts too (never legit)."""
    if text.count(".") <= MAX_DEPTH:
        return False  # the common case: no regular expression
    import re

    for m in re.finditer(_TOML_DOTTED, text):  # maximal runs, each scanned once
        run = m.group()
        if run.count(".") > MAX_DEPTH and \
                re.sub(r"""(?:"[^"\n]*"|'[^'\n]*')""", "q", run).count(".") > MAX_DEPTH:
            return True
    return False


_PLAIN = (str, int, float, bool, type(None))
_SIMPLE = frozenset({str, float, bool, type(None)})  # scalars that need no further check


def check_tree(value: Any, source: str, error: ErrorType, max_depth: int = MAX_DEPTH) -> None:
    """Refuse data nested deeper than `max_depth`, shared or cyclic containers (YAML aliases),
    integers too long to print, and anything but mappings, lists and scalars.

    Iterative, one visit per node (~0.5 µs): a few percent of what parsing the text cost.
    """
    if type(value) not in (dict, list):
        _check_scalar(value, source, error)
        return
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise error(f"{source} is nested more than {max_depth} levels deep",
                        hint=_DEEP_HINT)
        if id(item) in seen:
            raise error(f"{source} repeats a mapping or list by reference (a YAML alias)",
                        hint="write each value out; repro does not expand aliases")
        seen.add(id(item))
        if type(item) is dict:
            for k in item:
                if type(k) not in _SIMPLE:
                    _check_scalar(k, source, error)
            children: Any = item.values()
        else:
            children = item
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind not in _SIMPLE:
                _check_scalar(child, source, error)


def _check_scalar(item: Any, source: str, error: ErrorType) -> None:
    if isinstance(item, int) and not isinstance(item, bool):
        if item.bit_length() > MAX_INT_BITS:
            raise error(f"{source} holds a number with more than 4,000 digits",
                        hint="the file is damaged or hostile; write large numbers as strings")
    elif not isinstance(item, _PLAIN):
        raise error(f"{source} holds a {type(item).__name__}, not plain data",
                    hint="only mappings, lists, strings, numbers, booleans and null are read")


def too_big(shown: str, limit: int) -> str:
    return f"{shown} is larger than {limit // MiB} MiB"


_BIG_HINT = "the file is damaged or is not what repro expects there"
_DEEP_HINT = f"the file is damaged or hostile; repro reads at most {MAX_DEPTH} levels"


def show_path(path: Path | str, limit: int = 200) -> str:
    """A path for a message: escaped (see escape), the middle cut when long."""
    text = escape(str(path))
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 2:]}"


def escape(text: str) -> str:
    """Text safe to print on one line: bytes that were not UTF-8 (surrogate escapes) as
    `\\xff`, control and other non-printable characters as Python escapes."""
    if text.isprintable():
        return text
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def reason(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
