"""Judging reproduction: a recorded run's outputs, metrics and exit code against a replay's.

Owns: `Check` (one judged output file, metric or exit code), the verdict over a list of checks,
the closer look at an output whose hash differs (tensor files numerically through
`repro/child/tensorcmp.py`, run by the run's own interpreter; text files by their first
differing line; other files by their first differing byte), and the JUnit XML report.
Must not: print, import torch or numpy (tensors are loaded only in the probe's process), yaml
or rich, modify a file, or raise anything but `errors.ReproError` subclasses. Paths from a
manifest are confined: an absolute path or one with `..` is a ManifestError, and a file reached
through a symlink that leaves its root is never opened.

"Recorded"/"expected" is the run being verified; "replay"/"actual" is the run judged against it.

Rules:
- verdict: `bitwise` when every check is `same`; `within-tolerance` when none is `different`
  or `missing` and at least one is `within-tolerance`; else `not-reproduced`. No checks at all
  is `not-reproduced`: nothing was shown to reproduce (verify always adds the exit-code check,
  so this only guards against a caller that forgot it). An unknown status counts as failing.
- exit code: equal is `same`, unequal `different`; unknown on either side (a run that never
  finished) is `missing`.
- metrics (`metrics.final` mappings; nested mappings are flattened to dotted names like
  `val.loss`): judged by `compare.metric_status`, so absent on either side is `missing`, numbers
  are within tolerance by `compare.within` (per-metric tolerances win over rtol/atol), NaN
  equals NaN, and anything else compares by equality.
- outputs, per path (sorted):
  - equal hashes are `same` without reading a file; symlinks compare by target; `kind:
    missing` (the path did not exist when recorded) on both sides is `same`. A file marked
    `stale` (there before the run, untouched by it) counts as absent: it is not the run's.
  - recorded but absent (or `kind: missing`) in the replay is `missing`; present in the replay
    but not in the recorded run is `different` ("not in the recorded run"): the replay's
    results are not the recorded ones. A change of kind (file, dir, symlink) is `different`.
  - a file whose hash differs gets a closer look when both files are at hand: the recorded
    one under `expected_root` and the replay's under `actual_root`, each still hashing to what
    its manifest records (so a file edited since is never mistaken for the recorded result).
    Otherwise the check is `different`, "hash differs (recorded file not available for a
    closer look)" (e.g. a committed baseline manifest verified in a fresh clone).
  - tensor files (`.npy .npz .pt .pth .safetensors`) compare numerically. Identical tensors
    (same names, dtypes, shapes and bytes) in files whose bytes differ are `same`: the result
    reproduced bitwise, only the container did not (`torch.save` writes the file name into
    the archive). Values within `|a - b| <= atol + rtol * max(|a|, |b|)` are
    `within-tolerance` (the global rtol/atol: per-metric tolerances are for metrics only);
    anything else, and any failure of the probe (interpreter gone, crash, timeout, unreadable
    file), is `different` with the reason. All tensor files are compared by one probe process,
    so torch is imported once, however many checkpoints differ.
  - checkpoints (`.pt .pth`, and `.ckpt .pkl .pickle .bin` that start like a pickle or
    torch.save's zip) are walked structurally by the probe: tensors numerically, other values
    by equality, strings and keys that embed the recorded run's checkout or the replay's
    worktree (`Structural.roots`) compared with that root replaced. A value equal only after
    that is `within-tolerance`, never `same` (the bytes differ); a file whose every other value
    is identical says "only embedded paths differ (ROOT vs ROOT in N values: names)".
    Loading is weights-only; full unpickling (`Structural.unpickle`) only where this clone
    produced both runs. A `.ckpt .pkl .pickle .bin` the probe cannot read is compared as bytes,
    the reason appended.
  - any other file is `different`; the detail names the cause where a known format says it
    (`format_cause`: PDF dates and /ID, PNG tIME and text chunks, zip member times, the gzip
    header's mtime), else its first differing line (UTF-8 text) or byte.
  - a directory with both listings gives one check per added (`different`), removed
    (`missing`) or modified file, named `dir/relpath`, modified ones examined as files; without
    both listings, one check on the directory's hash. An unchanged directory is one `same`
    check.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import os
import posixpath
import re
import signal
import stat
import struct
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors
from repro.capture import hashing
from repro.judge import compare
from repro.record import manifest

VERDICTS = ("bitwise", "within-tolerance", "not-reproduced")
STATUSES = ("same", "within-tolerance", "different", "missing")
KINDS = ("output", "metric", "exit")

TENSORCMP = Path(__file__).resolve().parent.parent / "child" / "tensorcmp.py"
TENSOR_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors")
# Checkpoints and pickles that may hold tensors: compared structurally when the probe can load
# them, else by their bytes (a `.bin` or `.pkl` is often something else entirely).
CHECKPOINT_SUFFIXES = (".ckpt", ".pkl", ".pickle", ".bin")
# Per pair of tensor files; the probe gets this times the number of pairs. Loading two
# multi-GB checkpoints and comparing them in float64 takes minutes on a slow disk, not hours.
TENSORCMP_TIMEOUT_S = 300.0

_UNAVAILABLE = "hash differs (recorded file not available for a closer look)"
_UNAVAILABLE_ACTUAL = "hash differs (replay's file not available for a closer look)"
_CHUNK = 1024 * 1024  # bytes read at a time when looking for the first difference
_SAMPLE = 8192  # bytes at the head of a file that decide whether it is text
_LINE_MAX = 4096  # bytes of a differing line read to show it
_SHOW = 48  # characters of a differing line shown in a detail
_MAX_TENSORS_IN_DATA = 20  # differing tensors listed in a check's data


# ---------------------------------------------------------------------------------------------
# Checks and the verdict.


@dataclasses.dataclass(frozen=True)
class Check:
    """One judged item: an output file, a metric or the exit code.

    `detail` is one human line saying how much it differs; `data` holds the numbers behind it
    for `verify --json` (merged into the check's JSON object, never over the four fixed keys).
    """

    kind: str  # "output" | "metric" | "exit"
    name: str  # output path ("dir/file" inside a directory), metric name, or "exit_code"
    status: str  # "same" | "within-tolerance" | "different" | "missing"
    detail: str
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status in ("same", "within-tolerance")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "status": self.status,
                               "detail": self.detail}
        for key, value in self.data.items():
            if key not in out:
                out[str(key)] = _plain(value)
        return out


def verdict(checks: Sequence[Check]) -> str:
    """`bitwise`, `within-tolerance` or `not-reproduced` (see the module docstring)."""
    if not checks:
        return "not-reproduced"
    if any(not c.passed for c in checks):
        return "not-reproduced"
    if all(c.status == "same" for c in checks):
        return "bitwise"
    return "within-tolerance"


def _plain(value: Any) -> Any:
    """JSON-safe plain data: non-finite floats as "nan"/"inf"/"-inf", tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------
# Numbers in details.


def describe_number(x: object) -> str:
    """A metric value as a user would type it: `0.51`, `1e-07`, `3`, `nan`, `inf`, `'adam'`.

    Floats use the shortest text that reads back as the same float, so two values that differ
    never look equal in a detail line.
    """
    if isinstance(x, bool) or not compare.is_number(x):
        return _clip(repr(x), 60)
    if isinstance(x, float):
        return "nan" if math.isnan(x) else repr(x)
    return str(x)


def describe_delta(x: float) -> str:
    """A difference, signed, to 3 significant digits: `+0.01`, `-3e-07`."""
    return "nan" if math.isnan(x) else f"{x:+.3g}"


def _g(x: float | None) -> str:
    return "?" if x is None else ("nan" if math.isnan(x) else f"{x:.3g}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Exit code and metrics.


def compare_exit(expected: int | None, actual: int | None) -> Check:
    """The exit-code check (`name: exit_code`); None on a side means it is not known."""
    info = {"expected": expected, "actual": actual}
    if expected is None or actual is None:
        side = "recorded run" if expected is None else "replay"
        known = actual if expected is None else expected
        tail = "" if known is None else f" (the other side exited {_exit_text(known)})"
        return Check("exit", "exit_code", "missing", f"no exit code for the {side}{tail}", info)
    if expected == actual:
        return Check("exit", "exit_code", "same", f"exit code {_exit_text(expected)}", info)
    return Check("exit", "exit_code", "different",
                 f"exit code {_exit_text(expected)} vs {_exit_text(actual)}", info)


def _exit_text(code: int) -> str:
    if 128 < code < 128 + 65:
        try:
            return f"{code} ({signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return str(code)


def compare_metrics(expected: Mapping[str, Any], actual: Mapping[str, Any],
                    tol: compare.Tolerance) -> list[Check]:
    """One check per metric name in either `metrics.final` mapping, sorted by name."""
    fe: dict[str, Any] = {}
    fa: dict[str, Any] = {}
    compare.flatten(expected, "", fe)
    compare.flatten(actual, "", fa)
    return [_metric_check(name, fe.get(name), fa.get(name), tol)
            for name in sorted(fe.keys() | fa.keys())]


def _metric_check(name: str, a: Any, b: Any, tol: compare.Tolerance) -> Check:
    status = compare.metric_status(a, b, tol, name)
    info: dict[str, Any] = {"expected": a, "actual": b}
    if status == "missing":
        if b is None:
            detail = f"{name}: recorded {describe_number(a)}, missing from the replay"
        else:
            detail = f"{name}: not in the recorded run (replay has {describe_number(b)})"
        return Check("metric", name, status, detail, info)
    if status == "same":
        return Check("metric", name, status, f"{name}: {describe_number(a)}", info)
    if not (compare.is_number(a) and compare.is_number(b)):
        return Check("metric", name, status,
                     f"{name}: {describe_number(a)} vs {describe_number(b)}", info)
    fa, fb = float(a), float(b)
    delta, rel = compare.metric_delta(fa, fb)
    allowed = _allowed(fa, fb, tol, name)
    info.update(delta=delta, rel_delta=rel, allowed=allowed)
    parts = []
    if math.isfinite(delta):
        parts.append(f"delta {describe_delta(delta)}")
        if rel is not None:
            parts.append(f"{rel * 100:+.3g}%")
    text = f"{name}: {describe_number(a)} vs {describe_number(b)}"
    if parts:
        text += f" ({', '.join(parts)}; tolerance {_g(allowed)})"
    return Check("metric", name, status, text, info)


def _allowed(a: float, b: float, tol: compare.Tolerance, name: str) -> float:
    """The largest gap `compare.within` accepts between a and b for metric `name`."""
    if name in tol.per_metric:
        return tol.per_metric[name]
    return tol.atol + tol.rtol * max(abs(a), abs(b))


# ---------------------------------------------------------------------------------------------
# Outputs.


@dataclasses.dataclass(frozen=True)
class _TensorJob:
    """A pair of tensor files waiting for the probe; becomes a Check afterwards."""

    name: str
    expected: Path
    actual: Path
    info: Mapping[str, Any]
    bytes_fallback: bool = False  # a probe error means "not tensors": compare bytes instead


@dataclasses.dataclass(frozen=True)
class _Roots:
    expected: Path | None
    actual: Path


@dataclasses.dataclass(frozen=True)
class Structural:
    """How the probe compares checkpoints: which checkout roots name the same place (strings
    embedding one are compared with it replaced), and whether files weights_only cannot load
    may be unpickled in full (only when this clone produced both runs: unpickling runs code
    named by the file)."""

    roots: tuple[Path, ...] = ()
    unpickle: bool = False


def compare_outputs(expected: Mapping[str, Any], actual: Mapping[str, Any], *,
                    expected_root: Path | None, actual_root: Path,
                    expected_listings: Mapping[str, Mapping[str, tuple[str, int]]],
                    actual_listings: Mapping[str, Mapping[str, tuple[str, int]]],
                    python: str, tol: compare.Tolerance,
                    structural: Structural = Structural()) -> list[Check]:
    """Checks for the `outputs` sections of the recorded run and the replay (module docstring).

    `expected_root`/`actual_root`: the directories the output paths are relative to (None: the
    recorded files are not at hand). Listings: relpath -> (hash, size), keyed by the entry's
    `listing` file name (or by the directory's path). `python`: the run's interpreter, which
    loads tensor files (it has the torch/numpy the run used; repro never imports them).
    `structural`: checkout roots and unpickling for checkpoints (see `Structural`).
    """
    for path in expected.keys() | actual.keys():
        manifest.confined(str(path), "output path")
    roots = _Roots(expected_root, actual_root)
    slots: list[Check | _TensorJob] = []
    for path in sorted(expected.keys() | actual.keys(), key=str):
        e, a = _own(_entry(expected, path)), _own(_entry(actual, path))
        slots.extend(_compare_entry(roots, str(path), e, a, expected_listings, actual_listings))
    return _run_jobs(slots, python, tol, structural)


def _entry(section: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    value = section.get(path)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise errors.ManifestError(f"outputs entry {path!r} is not a mapping",
                                   hint="the manifest is damaged or was edited by hand")
    return value


def _own(entry: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A file the run did not write (`stale: true`, left by an earlier run) is not its output:
    compared as absent. (A directory's hash and listing already cover only the run's files.)"""
    return None if entry is not None and entry.get("stale") is True else entry


def _kind(entry: Mapping[str, Any] | None) -> str:
    return "missing" if entry is None else str(entry.get("kind") or "missing")


def _summary(entry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {k: entry[k] for k in ("kind", "hash", "size", "files", "target") if k in entry}


def _compare_entry(roots: _Roots, path: str, e: Mapping[str, Any] | None,
                   a: Mapping[str, Any] | None,
                   expected_listings: Mapping[str, Mapping[str, tuple[str, int]]],
                   actual_listings: Mapping[str, Mapping[str, tuple[str, int]]],
                   ) -> list[Check | _TensorJob]:
    ke, ka = _kind(e), _kind(a)
    info: dict[str, Any] = {"expected": _summary(e), "actual": _summary(a)}
    if ke == "missing" and ka == "missing":
        return [Check("output", path, "same", "absent in both runs", info)]
    if ka == "missing":
        return [Check("output", path, "missing", f"recorded {_noun(ke)} missing from the replay",
                      info)]
    if ke == "missing":
        return [Check("output", path, "different",
                      f"not in the recorded run (the replay produced a {_noun(ka)})", info)]
    if e is None or a is None or ke != ka:  # (None only with kind "missing", handled above)
        return [Check("output", path, "different", f"was a {_noun(ke)}, now a {_noun(ka)}", info)]
    if ke == "symlink":
        return [_symlink_check(path, e.get("target"), a.get("target"), info)]
    he, ha = e.get("hash"), a.get("hash")
    if he is not None and he == ha:
        if ke == "dir":
            files = e.get("files")
            return [Check("output", path, "same",
                          "identical" + (f" ({_count(files, 'file')})" if isinstance(files, int)
                                         else ""), info)]
        return [Check("output", path, "same", "identical", info)]
    if he is None or ha is None:
        return [Check("output", path, "different",
                      f"no hash recorded for the {'recorded run' if he is None else 'replay'}",
                      info)]
    if ke == "file":
        return [_examine_file(roots, path, path, str(he), str(ha), info)]
    if ke == "dir":
        return _compare_dir(roots, path, e, a, expected_listings, actual_listings, info)
    return [Check("output", path, "different", f"hash differs ({_noun(ke)})", info)]


def _noun(kind: str) -> str:
    return {"dir": "directory"}.get(kind, kind)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _symlink_check(name: str, te: Any, ta: Any, info: Mapping[str, Any]) -> Check:
    if te == ta:
        return Check("output", name, "same", f"symlink to {_clip(str(te), 80)}", info)
    return Check("output", name, "different",
                 f"symlink to {_clip(repr(te), 60)} vs {_clip(repr(ta), 60)}", info)


def _listing(listings: Mapping[str, Mapping[str, tuple[str, int]]], entry: Mapping[str, Any],
             path: str) -> Mapping[str, tuple[str, int]] | None:
    name = entry.get("listing")
    if isinstance(name, str) and name in listings:
        return listings[name]
    return listings.get(path)


def _compare_dir(roots: _Roots, path: str, e: Mapping[str, Any], a: Mapping[str, Any],
                 expected_listings: Mapping[str, Mapping[str, tuple[str, int]]],
                 actual_listings: Mapping[str, Mapping[str, tuple[str, int]]],
                 info: Mapping[str, Any]) -> list[Check | _TensorJob]:
    le, la = _listing(expected_listings, e, path), _listing(actual_listings, a, path)
    if le is None or la is None:
        side = "recorded run" if le is None else "replay"
        return [Check("output", path, "different",
                      f"directory hash differs (no file listing for the {side} to say which "
                      f"files)", info)]
    out: list[Check | _TensorJob] = []
    le, la, logs = _without_event_logs(path, le, la, info)
    out += logs
    changes = compare.diff_listing(le, la)
    for rel in changes["removed"]:
        name = _inside(path, rel)
        out.append(Check("output", name, "missing", "recorded file missing from the replay",
                         {"dir": path, "expected": _file_summary(le[rel]), "actual": None}))
    for rel in changes["added"]:
        name = _inside(path, rel)
        out.append(Check("output", name, "different", "not in the recorded run (new file)",
                         {"dir": path, "expected": None, "actual": _file_summary(la[rel])}))
    for rel in changes["modified"]:
        name = _inside(path, rel)
        ve, va = le[rel], la[rel]
        finfo = {"dir": path, "expected": _file_summary(ve), "actual": _file_summary(va)}
        he, ha = str(ve[0]), str(va[0])
        if he.startswith("symlink:") or ha.startswith("symlink:"):
            if he.startswith("symlink:") and ha.startswith("symlink:"):
                out.append(_symlink_check(name, he[8:], ha[8:], finfo))
            else:
                what = (("symlink", "file") if he.startswith("symlink:") else ("file", "symlink"))
                out.append(Check("output", name, "different", f"was a {what[0]}, now a {what[1]}",
                                 finfo))
            continue
        out.append(_examine_file(roots, name, name, he, ha, finfo))
    if not out:  # the hashes differ but the listings agree: they do not describe the dirs
        out.append(Check("output", path, "different",
                         "directory hash differs but its listings agree (damaged listing?)",
                         info))
    return sorted(out, key=lambda c: c.name)


def _is_event_log(rel: str) -> bool:
    """A TensorBoard event file (`events.out.tfevents.<time>.<host>.<pid>...`): its name and
    its records hold wall-clock times, so no two runs write the same one."""
    return posixpath.basename(rel).startswith("events.out.tfevents.")


def _without_event_logs(path: str, le: Mapping[str, tuple[str, int]],
                        la: Mapping[str, tuple[str, int]], info: Mapping[str, Any],
                        ) -> tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]],
                                   list[Check | _TensorJob]]:
    """The listings without TensorBoard event files, and one check for those: the same number
    in each folder is `within-tolerance` (they are logs, not results: what they hold is
    judged through the metrics), a different number is `different`."""
    de = Counter(posixpath.dirname(r) for r in le if _is_event_log(r))
    da = Counter(posixpath.dirname(r) for r in la if _is_event_log(r))
    if not de and not da:
        return dict(le), dict(la), []
    rest_e = {r: v for r, v in le.items() if not _is_event_log(r)}
    rest_a = {r: v for r, v in la.items() if not _is_event_log(r)}
    n = sum(de.values())
    if de == da:
        check = Check("output", path, "within-tolerance",
                      f"{_count(n, 'TensorBoard event file')} not compared byte for byte: "
                      "their names and records hold wall-clock times (compare the metrics)",
                      info)
    else:
        check = Check("output", path, "different",
                      f"TensorBoard event files: {n} recorded, {sum(da.values())} in the "
                      "replay", info)
    return rest_e, rest_a, [check]


def _inside(path: str, rel: str) -> str:
    manifest.confined(rel, f"file in the listing of {path!r}:")
    return rel if path in (".", "") else posixpath.join(path, rel)


def _file_summary(value: Sequence[Any]) -> dict[str, Any]:
    h = str(value[0])
    if h.startswith("symlink:"):
        return {"kind": "symlink", "target": h[8:]}
    return {"kind": "file", "hash": h, "size": value[1] if len(value) > 1 else None}


def _available(root: Path | None, rel: str, want: str) -> Path | None:
    """root/rel when it is a regular file inside root whose content still hashes to `want`."""
    if root is None:
        return None
    p = root / rel
    try:
        if not stat.S_ISREG(os.lstat(p).st_mode):
            return None
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, os.path.realpath(p)]) != real_root:
            return None  # a directory symlink on the way leads out of the root
        return p if hashing.hash_file(p) == want else None
    except (OSError, ValueError, errors.ReproError):
        return None


def _examine_file(roots: _Roots, name: str, rel: str, he: str, ha: str,
                  info: Mapping[str, Any]) -> Check | _TensorJob:
    pe = _available(roots.expected, rel, he)
    if pe is None:
        return Check("output", name, "different", _UNAVAILABLE, {**info, "compared": "hash"})
    pa = _available(roots.actual, rel, ha)
    if pa is None:
        return Check("output", name, "different", _UNAVAILABLE_ACTUAL,
                     {**info, "compared": "hash"})
    if rel.lower().endswith(TENSOR_SUFFIXES):
        return _TensorJob(name, pe, pa, info)
    if rel.lower().endswith(CHECKPOINT_SUFFIXES) and _pickled(pe) and _pickled(pa):
        return _TensorJob(name, pe, pa, info, bytes_fallback=True)
    return _compare_bytes(name, pe, pa, info)


def _pickled(p: Path) -> bool:
    """The file starts like torch.save's zip or a pickle (protocol 2 and up)."""
    try:
        head = _read_at(p, 0, 4)
    except OSError:
        return False
    return head.startswith((b"PK\x03\x04", b"\x80"))


# --- text and binary files ----------------------------------------------------------------------


def _compare_bytes(name: str, pe: Path, pa: Path, info: Mapping[str, Any]) -> Check:
    try:
        found = _first_difference(pe, pa)
        if found is None:
            return Check("output", name, "same", "contents identical",
                         {**info, "compared": "bytes"})
        offset, line, line_start = found
        return _describe_difference(name, pe, pa, offset, line, line_start, info)
    except OSError as e:
        return Check("output", name, "different",
                     f"hash differs (cannot read the files: {e.strerror or e})",
                     {**info, "compared": "hash"})


def _first_difference(pe: Path, pa: Path, start: int = 0) -> tuple[int, int, int] | None:
    """(byte offset, 1-based line number, offset of that line's start) of the first
    difference, streaming both files from `start` (lines counted from there); None when their
    contents are equal."""
    offset = start
    newlines = 0
    line_start = start
    with open(pe, "rb") as fe, open(pa, "rb") as fa:
        fe.seek(start)
        fa.seek(start)
        while True:
            ce, ca = fe.read(_CHUNK), fa.read(_CHUNK)
            same = ce == ca
            i = len(ce) if same else _mismatch(ce, ca)
            prefix = ce[:i]
            newlines += prefix.count(b"\n")
            last = prefix.rfind(b"\n")
            if last >= 0:
                line_start = offset + last + 1
            if not same:
                return offset + i, newlines + 1, line_start
            if not ce:
                return None
            offset += len(ce)


def _mismatch(x: bytes, y: bytes) -> int:
    """Index of the first byte where x and y differ (len of the shorter if one is a prefix)."""
    n = min(len(x), len(y))
    i = 0
    step = 4096
    while i < n and x[i:i + step] == y[i:i + step]:
        i += step
    end = min(i + step, n)
    while i < end and x[i] == y[i]:
        i += 1
    return i


def _describe_difference(name: str, pe: Path, pa: Path, offset: int, line: int,
                         line_start: int, info: Mapping[str, Any]) -> Check:
    se, sa = pe.stat().st_size, pa.stat().st_size
    cause = format_cause(pe, pa)
    if cause is not None:
        where = (f"first difference at byte {offset}; "
                 + (f"both {se} bytes" if se == sa else f"sizes {se} vs {sa}"))
        return Check("output", name, "different", f"{cause} ({where})",
                     {**info, "compared": "format", "cause": cause, "size_expected": se,
                      "size_actual": sa, "offset": offset})
    head_e, line_e = _read_at(pe, 0, _SAMPLE), _read_line(pe, line_start)
    head_a, line_a = _read_at(pa, 0, _SAMPLE), _read_line(pa, line_start)
    sizes = {"size_expected": se, "size_actual": sa, "offset": offset}
    if all(_is_text(b) for b in (head_e, head_a, line_e, line_a)):
        col = offset - line_start
        te, ta = _shown_line(line_e, col, offset >= se), _shown_line(line_a, col, offset >= sa)
        return Check("output", name, "different", f"first difference at line {line}: {te} vs {ta}",
                     {**info, "compared": "text", "line": line, **sizes,
                      "line_expected": line_e.decode("utf-8", "replace")[:200],
                      "line_actual": line_a.decode("utf-8", "replace")[:200]})
    if offset >= se or offset >= sa:
        shorter = "recorded file" if offset >= se else "replay's file"
        detail = f"{shorter} ends at byte {offset}; sizes {se} vs {sa}"
    else:
        be, ba = _read_at(pe, offset, 1), _read_at(pa, offset, 1)
        detail = (f"first difference at byte {offset} (0x{be.hex()} vs 0x{ba.hex()}); "
                  + (f"both {se} bytes" if se == sa else f"sizes {se} vs {sa}"))
    return Check("output", name, "different", detail, {**info, "compared": "bytes", **sizes})


# --- known formats: why their bytes differ -----------------------------------------------------

_FORMAT_READ_MAX = 32 * 1024 * 1024  # bytes of a PDF read to look for its dates
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = (b"tIME", b"tEXt", b"iTXt", b"zTXt")
_PNG_MAX_CHUNKS = 100_000
_PNG_TEXT_MAX = 64 * 1024  # a text chunk's bytes read to get its keyword
_ZIP_MAX_MEMBERS = 100_000
_SDE_HINT = ("SOURCE_DATE_EPOCH fixes it: repro sets it at determinism `seed` and up unless the "
             "environment has one")
# PDF values that change with the clock, not with the figure: the Info dictionary's dates,
# the trailer's file identifier and the XMP metadata's dates.
_PDF_VOLATILE = (
    ("/CreationDate", re.compile(rb"/CreationDate\s*\((?:[^()\\]|\\.){0,128}\)")),
    ("/ModDate", re.compile(rb"/ModDate\s*\((?:[^()\\]|\\.){0,128}\)")),
    ("/ID", re.compile(rb"/ID\s*\[\s*<[0-9A-Fa-f]{0,128}>\s*<[0-9A-Fa-f]{0,128}>\s*\]")),
    ("xmp:CreateDate", re.compile(rb"<xmp:CreateDate>[^<]{0,128}</xmp:CreateDate>")),
    ("xmp:ModifyDate", re.compile(rb"<xmp:ModifyDate>[^<]{0,128}</xmp:ModifyDate>")),
    ("xmp:MetadataDate", re.compile(rb"<xmp:MetadataDate>[^<]{0,128}</xmp:MetadataDate>")),
)


def format_cause(pe: Path, pa: Path) -> str | None:
    """Why two files of a known format differ, when the format says: PDF dates and /ID, PNG
    tIME and text chunks, zip member times, the gzip header's mtime. None: not a known format,
    or nothing more precise to say than the first differing byte.

    Reads headers, chunk tables and central directories, not whole files (a PDF is read up to
    _FORMAT_READ_MAX bytes). Never raises for a damaged file.
    """
    try:
        head_e, head_a = _read_at(pe, 0, 8), _read_at(pa, 0, 8)
        if head_e.startswith(b"%PDF-") and head_a.startswith(b"%PDF-"):
            return _pdf_cause(pe, pa)
        if head_e == _PNG_SIGNATURE and head_a == _PNG_SIGNATURE:
            return _png_cause(pe, pa)
        if head_e.startswith(b"PK\x03\x04") and head_a.startswith(b"PK\x03\x04"):
            return _zip_cause(pe, pa)
        if head_e.startswith(b"\x1f\x8b") and head_a.startswith(b"\x1f\x8b"):
            return _gzip_cause(pe, pa)
    except (OSError, ValueError, EOFError, struct.error, zipfile.BadZipFile):
        return None
    return None


def _pdf_cause(pe: Path, pa: Path) -> str | None:
    if max(pe.stat().st_size, pa.stat().st_size) > _FORMAT_READ_MAX:
        return None
    be, ba = pe.read_bytes(), pa.read_bytes()
    differing = []
    for label, pattern in _PDF_VOLATILE:
        if pattern.findall(be) != pattern.findall(ba):
            differing.append(label)
        be, ba = pattern.sub(label.encode(), be), pattern.sub(label.encode(), ba)
    if not differing:
        return None
    what = ", ".join(differing)
    if be == ba:
        return f"differs only in the PDF's {what} ({_SDE_HINT}; or savefig(..., " \
               f"metadata={{'CreationDate': None}}))"
    return f"the PDF's content differs, not only its {what}"


def _png_chunks(p: Path) -> list[tuple[bytes, int, bytes, bytes]] | None:
    """(type, length, crc, text keyword) per chunk; the image data is skipped, not read."""
    chunks = []
    with open(p, "rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return None
        for _ in range(_PNG_MAX_CHUNKS):
            head = f.read(8)
            if len(head) < 8:
                break
            length, ctype = struct.unpack(">I4s", head)
            keyword = b""
            if ctype in (b"tEXt", b"iTXt", b"zTXt") and length <= _PNG_TEXT_MAX:
                keyword = f.read(length).split(b"\0", 1)[0]
            else:
                f.seek(length, os.SEEK_CUR)
            chunks.append((ctype, length, f.read(4), keyword))
            if ctype == b"IEND":
                break
    return chunks


def _png_cause(pe: Path, pa: Path) -> str | None:
    ce, ca = _png_chunks(pe), _png_chunks(pa)
    if ce is None or ca is None:
        return None
    image_e = [c for c in ce if c[0] not in _PNG_METADATA]
    image_a = [c for c in ca if c[0] not in _PNG_METADATA]
    meta_e = {(c[0], c[3]): c[2] for c in ce if c[0] in _PNG_METADATA}
    meta_a = {(c[0], c[3]): c[2] for c in ca if c[0] in _PNG_METADATA}
    changed = sorted((k for k in meta_e.keys() | meta_a.keys() if meta_e.get(k) != meta_a.get(k)),
                     key=lambda k: (k[0] != b"tIME", k))
    labels = ["tIME chunk" if t == b"tIME" else f"text chunk {kw.decode('latin-1')!r}"
              for t, kw in changed]
    if image_e == image_a:
        if not labels:
            return None  # same chunks, in another order
        return f"differs only in the PNG's {', '.join(labels)} ({_SDE_HINT}, or drop the " \
               f"metadata when saving)"
    types = sorted({c[0].decode("latin-1") for c in image_e + image_a}
                   - {c[0].decode("latin-1") for c in set(image_e) & set(image_a)})
    text = f"the PNG's image data differs ({', '.join(types) or 'chunk order'})"
    return text + (f"; its {', '.join(labels)} too" if labels else "")


def _zip_cause(pe: Path, pa: Path) -> str | None:
    with zipfile.ZipFile(pe) as ze, zipfile.ZipFile(pa) as za:
        le, la = ze.infolist(), za.infolist()
    if max(len(le), len(la)) > _ZIP_MAX_MEMBERS:
        return None
    me = {i.filename: i for i in le}
    ma = {i.filename: i for i in la}
    content = sorted(n for n in me.keys() | ma.keys()
                     if n not in me or n not in ma
                     or (me[n].CRC, me[n].file_size) != (ma[n].CRC, ma[n].file_size))
    if content:
        return f"zip members differ: {_names(content)}"
    timed = [n for n in me if me[n].date_time != ma[n].date_time]
    if timed:
        return (f"differs only in zip member times ({_count(len(timed), 'member')} of "
                f"{len(me)}: {_names(sorted(timed))}; {_SDE_HINT} and the writer honours it)")
    if [i.filename for i in le] != [i.filename for i in la]:
        return "differs only in the order of the zip's members"
    return "zip members identical; the archive's headers differ (extra fields, comments or " \
        "compression)"


def _gzip_cause(pe: Path, pa: Path) -> str | None:
    he, ha = _read_at(pe, 0, 10), _read_at(pa, 0, 10)
    if len(he) < 10 or len(ha) < 10 or he[4:8] == ha[4:8]:
        return None
    if he[:4] != ha[:4] or he[8:] != ha[8:] or _first_difference(pe, pa, start=10) is not None:
        return None
    return f"differs only in the gzip header's mtime ({_SDE_HINT}, or write it with mtime=0)"


def _read_at(p: Path, offset: int, n: int) -> bytes:
    with open(p, "rb") as f:
        f.seek(offset)
        return f.read(n)


def _read_line(p: Path, start: int) -> bytes:
    """The line starting at `start`, without its newline, at most _LINE_MAX bytes."""
    chunk = _read_at(p, start, _LINE_MAX)
    end = chunk.find(b"\n")
    return chunk if end < 0 else chunk[:end]


def _is_text(sample: bytes) -> bool:
    """No NUL and valid UTF-8 (a character cut at the end of the sample is fine)."""
    if b"\0" in sample:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _shown_line(raw: bytes, col: int, at_end: bool) -> str:
    """A differing line for a detail: a window around byte column `col`, quoted."""
    if at_end and not raw:
        return "end of file"
    text = raw.decode("utf-8", "replace")
    char_col = len(raw[:col].decode("utf-8", "ignore"))
    if len(text) <= _SHOW:
        return repr(text)
    start = max(0, min(char_col - _SHOW // 4, len(text) - _SHOW))
    piece = text[start:start + _SHOW]
    return ("…" if start else "") + repr(piece) + ("…" if start + _SHOW < len(text) else "")


# --- tensor files -------------------------------------------------------------------------------


def _run_jobs(slots: Sequence[Check | _TensorJob], python: str,
              tol: compare.Tolerance, structural: Structural) -> list[Check]:
    jobs = [s for s in slots if isinstance(s, _TensorJob)]
    if not jobs:
        return [s for s in slots if isinstance(s, Check)]
    results = _run_tensorcmp(python, [(j.expected, j.actual) for j in jobs], tol, structural)
    by_job = {id(j): r for j, r in zip(jobs, results, strict=True)}
    return [_tensor_check(s, by_job[id(s)], structural.roots) if isinstance(s, _TensorJob)
            else s for s in slots]


def _run_tensorcmp(python: str, pairs: Sequence[tuple[Path, Path]],
                   tol: compare.Tolerance,
                   structural: Structural = Structural()) -> list[dict[str, Any] | str]:
    """One probe process for all pairs: each pair's result object, or why there is none."""
    cmd = [python, str(TENSORCMP), "--pairs", "-", "--rtol", repr(float(tol.rtol)),
           "--atol", repr(float(tol.atol))]
    for root in structural.roots:
        cmd += ["--root", os.fspath(root)]
    if structural.unpickle:
        cmd.append("--unpickle")
    stdin = json.dumps([[os.fspath(a), os.fspath(b)] for a, b in pairs])
    timeout = TENSORCMP_TIMEOUT_S * len(pairs)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    failure: str | None = None
    stdout: str | bytes | None
    try:
        done = subprocess.run(cmd, input=stdin.encode(), capture_output=True, timeout=timeout,
                              env=env, check=False)
        stdout = done.stdout
        if done.returncode != 0:
            failure = (f"the comparison crashed ({_returncode_text(done.returncode)})"
                       + _last_line(done.stderr))
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout
        failure = f"the comparison timed out after {timeout:g} s"
    except OSError as e:
        stdout = None
        failure = f"cannot run the run's interpreter {python}: {e.strerror or e}"
    results: dict[int, dict[str, Any]] = {}
    for raw in _decode(stdout).splitlines():
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        index = obj.get("index")
        if isinstance(index, int) and 0 <= index < len(pairs):
            results[index] = obj
        elif obj.get("status") == "error" and failure is None:
            failure = f"the comparison failed: {obj.get('message')}"
    return [results.get(i) or (failure or "the comparison gave no result")
            for i in range(len(pairs))]


def _decode(out: str | bytes | None) -> str:
    if out is None:
        return ""
    return out.decode("utf-8", "replace") if isinstance(out, bytes) else out


def _returncode_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


def _last_line(stderr: bytes | None) -> str:
    lines = [ln.strip() for ln in _decode(stderr).splitlines() if ln.strip()]
    return f": {_clip(lines[-1], 160)}" if lines else ""


def _float(x: Any) -> float | None:
    """A probe number: floats, or "nan"/"inf"/"-inf" (the probe writes strict JSON)."""
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return None
    return None


def _tensor_check(job: _TensorJob, result: dict[str, Any] | str,
                  roots: Sequence[Path] = ()) -> Check:
    info: dict[str, Any] = {**job.info, "compared": "tensors"}
    if isinstance(result, str):
        return _probe_failed(job, result, info)
    status = result.get("status")
    raw_tensors = result.get("tensors")
    tensors = [t for t in raw_tensors if isinstance(t, dict)] \
        if isinstance(raw_tensors, list) else []
    if status == "error" or status not in ("same", "within-tolerance", "different"):
        message = _clip(str(result.get("message") or f"unknown status {status!r}"), 200)
        return _probe_failed(job, message, info)
    changed = [t for t in tensors if t.get("status") != "same"]
    info.update(tensor_count=len(tensors), tensors_differing=len(changed),
                tensors=changed[:_MAX_TENSORS_IN_DATA])
    if status == "same":
        what = "tensor identical" if len(tensors) == 1 else f"{len(tensors)} tensors identical"
        return Check("output", job.name, "same", f"bytes differ, {what}", info)
    embedded = [t for t in changed if t.get("embedded_path")]
    changed = [t for t in changed if not t.get("embedded_path")]
    paths = _embedded_detail(embedded, roots)
    if embedded:
        info.update(embedded_paths=[str(t.get("name")) for t in embedded][:_MAX_TENSORS_IN_DATA])
    structural = _structure_detail(tensors)
    if structural is not None:
        return Check("output", job.name, "different", structural + paths, info)
    worst = max(changed, key=lambda t: _sort_key(_float(t.get("max_abs"))), default=None)
    if worst is None:
        if embedded and status == "within-tolerance":
            # Every value equal once the recorded and the replay's checkout roots are taken
            # for one place: the file reproduced, but its bytes are not the same (a Lightning
            # checkpoint's ModelCheckpoint.dirpath), so it is within tolerance, never bitwise.
            same = len(tensors) - len(embedded)
            return Check("output", job.name, "within-tolerance",
                         f"only {paths[2:]}; {_count(same, 'other value')} identical", info)
        # the probe said the files differ but listed no value that does
        return Check("output", job.name, str(status),
                     _clip(str(result.get("message") or "tensors differ"), 200) + paths, info)
    max_abs, max_rel = _float(worst.get("max_abs")), _float(worst.get("max_rel"))
    info.update(max_abs=max_abs, max_rel=max_rel, worst_tensor=worst.get("name"))
    where = f" in {worst.get('name')}" if worst.get("name") else ""
    index = worst.get("worst_index")
    if isinstance(index, list) and index:
        where += f" at [{', '.join(str(i) for i in index)}]"
    nan_mismatch = worst.get("nan_mismatch")
    if worst.get("max_abs") is None and worst.get("dtype_a") == worst.get("dtype_b") \
            and worst.get("numel") == 1 and not isinstance(index, list):
        detail = f"value differs{where}"  # a string or other plain value in a checkpoint
    elif max_abs == 0.0:  # every value equal, yet the bytes differ: -0.0 vs 0.0, NaN payloads
        detail = f"values equal, bits differ (-0.0 vs 0.0 or NaN payloads){where}"
    else:
        detail = f"max abs diff {_g(max_abs)} (rel {_g(max_rel)}){where}"
    if status == "different":
        beyond, numel = worst.get("beyond"), worst.get("numel")
        if isinstance(beyond, int) and isinstance(numel, int) and worst.get("max_abs") is not None:
            detail += f"; {beyond} of {numel} elements beyond tolerance"
        if isinstance(nan_mismatch, int) and nan_mismatch:
            detail += f", {nan_mismatch} NaN vs a number"
    if len(tensors) > 1:
        detail += f" ({len(changed)} of {len(tensors) - len(embedded)} tensors differ)"
    return Check("output", job.name, str(status), detail + paths, info)


def _probe_failed(job: _TensorJob, reason: str, info: Mapping[str, Any]) -> Check:
    if not job.bytes_fallback:
        return Check("output", job.name, "different",
                     f"hash differs; tensors could not be compared: {reason}", dict(info))
    check = _compare_bytes(job.name, job.expected, job.actual, job.info)
    return dataclasses.replace(check, detail=f"{check.detail}; not compared structurally: "
                                             f"{_clip(reason, 200)}")


def _embedded_detail(embedded: Sequence[Mapping[str, Any]], roots: Sequence[Path]) -> str:
    """"; embedded paths differ (/home/me/proj vs /tmp/…/worktree in 2 values: a, b)" or ""."""
    if not embedded:
        return ""
    names = _names([_short_name(str(t.get("name"))) for t in embedded])
    where = (f"{_clip_left(os.fspath(roots[0]), 100)} vs {_clip_left(os.fspath(roots[-1]), 100)}"
             if len(roots) > 1 else "the checkout root")
    return f"; embedded paths differ ({where} in {_count(len(embedded), 'value')}: {names})"


def _clip_left(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def _short_name(name: str) -> str:
    """A checkpoint leaf's dotted name with over-long keys (Lightning's `ModelCheckpoint{...}`
    callback keys run to 150 characters) clipped."""
    return ".".join(part if len(part) <= 32 else part[:20] + "…" for part in name.split("."))


def _sort_key(x: float | None) -> float:
    if x is None:
        return -1.0
    return math.inf if math.isnan(x) else x


def _structure_detail(tensors: Sequence[Mapping[str, Any]]) -> str | None:
    """What differs in names, dtypes or shapes, or None when the structure agrees."""
    only_e = [_tname(t) for t in tensors if t.get("dtype_b") is None]
    only_a = [_tname(t) for t in tensors if t.get("dtype_a") is None]
    changed = [t for t in tensors if t.get("dtype_a") is not None and t.get("dtype_b") is not None
               and (t.get("dtype_a") != t.get("dtype_b") or t.get("shape_a") != t.get("shape_b"))]
    parts = []
    if only_e:
        parts.append(f"only in the recorded file: {_names(only_e)}")
    if only_a:
        parts.append(f"only in the replay's: {_names(only_a)}")
    if changed:
        t = changed[0]
        if t.get("dtype_a") != t.get("dtype_b"):
            what = f"dtype {t.get('dtype_a')} vs {t.get('dtype_b')}"
        else:
            what = f"shape {_shape(t.get('shape_a'))} vs {_shape(t.get('shape_b'))}"
        more = f" (+{len(changed) - 1} more)" if len(changed) > 1 else ""
        parts.append(f"{_tname(t)}: {what}{more}")
    return "tensors differ: " + "; ".join(parts) if parts else None


def _tname(t: Mapping[str, Any]) -> str:
    return str(t.get("name") or "(array)")


def _names(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit} more" if len(names) > limit else "")


def _shape(shape: Any) -> str:
    if isinstance(shape, list):
        return "[" + ", ".join(str(d) for d in shape) + "]"
    return str(shape)


# ---------------------------------------------------------------------------------------------
# JUnit XML.

# XML 1.0 cannot carry these characters at all, not even as character references.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: object) -> str:
    return _XML_ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                            else f"\\u{ord(m.group()):04x}", str(value))


def junit_xml(*, run_id: str, verdict: str, checks: Sequence[Check],
              duration_s: float | None) -> str:
    """A JUnit XML report: one testsuite, one testcase per check.

    `different`/`missing` checks fail (`<failure>` with the detail); `within-tolerance` ones
    pass and say so in `<system-out>`. When the verdict is `not-reproduced` but no check failed
    (no checks at all), a failing `repro.verdict` testcase keeps the report and exit code in
    agreement.
    """
    failures = [c for c in checks if not c.passed]
    extra = verdict == "not-reproduced" and not failures
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", _attrs(
        name=f"repro verify {run_id}", tests=len(checks) + extra,
        failures=len(failures) + extra, errors=0, skipped=0,
        time=None if duration_s is None else f"{duration_s:.3f}"))
    props = ET.SubElement(suite, "properties")
    for key, value in (("run", run_id), ("verdict", verdict)):
        ET.SubElement(props, "property", _attrs(name=key, value=value))
    for c in checks:
        case = ET.SubElement(suite, "testcase", _attrs(classname=f"repro.{c.kind}", name=c.name))
        if not c.passed:
            failure = ET.SubElement(case, "failure", _attrs(message=c.detail, type=c.status))
            failure.text = _xml_text(f"{c.status}: {c.detail}")
        elif c.status == "within-tolerance":
            ET.SubElement(case, "system-out").text = _xml_text(f"within tolerance: {c.detail}")
    if extra:
        case = ET.SubElement(suite, "testcase", _attrs(classname="repro.verdict", name="verdict"))
        ET.SubElement(case, "failure", _attrs(message="nothing was compared",
                                              type="not-reproduced")).text = \
            "not-reproduced: no outputs, metrics or exit code were compared"
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _attrs(**values: object) -> dict[str, str]:
    return {k: _xml_text(v) for k, v in values.items() if v is not None}
