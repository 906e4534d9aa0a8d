"""Judging reproduction: a recorded run's outputs, metrics and exit code against a replay's.

Owns: the checks of two runs (`compare_runs`, which takes the two `Manifest`s; `compare_exit`,
`compare_metrics`, `compare_outputs`) and the closer look at an output whose hash differs,
dispatched here and done in its own module: tensor files numerically (judge/tensors.py, through
`repro/child/tensorcmp.py`, run by the run's own interpreter), other files by their format's
cause or first differing line or byte (judge/filediff.py). `Check` and the verdict live in
judge/verdict.py, the JUnit XML report in judge/junit.py; all are re-exported here.
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

import dataclasses
import math
import os
import posixpath
import signal
import stat
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors
from repro.capture import hashing
from repro.judge import compare, hydra
from repro.judge.filediff import _compare_bytes, _read_at, format_cause
from repro.judge.junit import junit_xml
from repro.judge.tensors import TENSORCMP, Structural, _run_jobs, _TensorJob
from repro.judge.verdict import (
    KINDS,
    STATUSES,
    VERDICTS,
    Check,
    _clip,
    _count,
    _g,
    describe_delta,
    describe_number,
    verdict,
)
from repro.record import manifest
from repro.record.schema import FileEntry, Manifest

__all__ = [
    "CHECKPOINT_SUFFIXES", "KINDS", "STATUSES", "TENSORCMP", "TENSOR_SUFFIXES", "VERDICTS",
    "Check", "Structural", "compare_exit", "compare_metrics", "compare_outputs",
    "compare_runs", "describe_delta", "describe_number", "format_cause", "junit_xml", "verdict",
]

TENSOR_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors")
# Checkpoints and pickles that may hold tensors: compared structurally when the probe can load
# them, else by their bytes (a `.bin` or `.pkl` is often something else entirely).
CHECKPOINT_SUFFIXES = (".ckpt", ".pkl", ".pickle", ".bin")

_UNAVAILABLE = "hash differs (recorded file not available for a closer look)"
_UNAVAILABLE_ACTUAL = "hash differs (replay's file not available for a closer look)"


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
class _Roots:
    expected: Path | None
    actual: Path
    hydra_jobs: frozenset[str] = frozenset()  # Hydra's job names: their `<name>.log` logs


def compare_runs(expected: Manifest, actual: Manifest, *, expected_root: Path | None,
                 actual_root: Path,
                 expected_listings: Mapping[str, Mapping[str, tuple[str, int]]],
                 actual_listings: Mapping[str, Mapping[str, tuple[str, int]]],
                 python: str, tol: compare.Tolerance,
                 structural: Structural = Structural()) -> list[Check]:
    """What verify judges between two runs: the exit code first, then every output (sorted by
    path) and every final metric (sorted by name). Arguments as for `compare_outputs`."""
    return [compare_exit(expected.run.exit_code, actual.run.exit_code),
            *compare_outputs(expected.outputs, actual.outputs, expected_root=expected_root,
                             actual_root=actual_root, expected_listings=expected_listings,
                             actual_listings=actual_listings, python=python, tol=tol,
                             structural=structural,
                             hydra_jobs=hydra.job_names(expected.command.argv)),
            *compare_metrics(expected.metrics.final, actual.metrics.final, tol)]


def compare_outputs(expected: Mapping[str, FileEntry], actual: Mapping[str, FileEntry], *,
                    expected_root: Path | None, actual_root: Path,
                    expected_listings: Mapping[str, Mapping[str, tuple[str, int]]],
                    actual_listings: Mapping[str, Mapping[str, tuple[str, int]]],
                    python: str, tol: compare.Tolerance,
                    structural: Structural = Structural(),
                    hydra_jobs: Collection[str] = ()) -> list[Check]:
    """Checks for the `outputs` sections of the recorded run and the replay (module docstring).

    `expected_root`/`actual_root`: the directories the output paths are relative to (None: the
    recorded files are not at hand). Listings: relpath -> (hash, size), keyed by the entry's
    `listing` file name (or by the directory's path). `python`: the run's interpreter, which
    loads tensor files (it has the torch/numpy the run used; repro never imports them).
    `structural`: checkout roots and unpickling for checkpoints (see `Structural`).
    `hydra_jobs`: the run's Hydra job names (hydra.job_names), whose job logs are compared
    without their clock times.
    """
    for path in expected.keys() | actual.keys():
        manifest.confined(str(path), "output path")
    roots = _Roots(expected_root, actual_root, frozenset(hydra_jobs))
    slots: list[Check | _TensorJob] = []
    for path in sorted(expected.keys() | actual.keys(), key=str):
        e, a = _own(expected.get(path)), _own(actual.get(path))
        slots.extend(_compare_entry(roots, str(path), e, a, expected_listings, actual_listings))
    return _run_jobs(slots, python, tol, structural)


def _own(entry: FileEntry | None) -> FileEntry | None:
    """A file the run did not write (`stale: true`, left by an earlier run) is not its output:
    compared as absent. (A directory's hash and listing already cover only the run's files.)
    Nor is a directory holding none of the run's files (only an earlier run's, or none): the
    replay, in a fresh worktree, has no such directory at all."""
    if entry is None or entry.stale is True:
        return None
    if entry.kind == "dir" and entry.files == 0:
        return None
    return entry


def _kind(entry: FileEntry | None) -> str:
    return "missing" if entry is None else str(entry.kind or "missing")


def _summary(entry: FileEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    recorded = entry.to_dict()
    return {k: recorded[k] for k in ("kind", "hash", "size", "files", "target") if k in recorded}


def _compare_entry(roots: _Roots, path: str, e: FileEntry | None, a: FileEntry | None,
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
        return [_symlink_check(path, e.target, a.target, info)]
    he, ha = e.hash, a.hash
    if he is not None and he == ha:
        if ke == "dir":
            files = e.files
            return [Check("output", path, "same",
                          "identical" + (f" ({_count(files, 'file')})" if files is not None
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




def _symlink_check(name: str, te: Any, ta: Any, info: Mapping[str, Any]) -> Check:
    if te == ta:
        return Check("output", name, "same", f"symlink to {_clip(str(te), 80)}", info)
    return Check("output", name, "different",
                 f"symlink to {_clip(repr(te), 60)} vs {_clip(repr(ta), 60)}", info)


def _listing(listings: Mapping[str, Mapping[str, tuple[str, int]]], entry: FileEntry,
             path: str) -> Mapping[str, tuple[str, int]] | None:
    if entry.listing is not None and entry.listing in listings:
        return listings[entry.listing]
    return listings.get(path)


def _compare_dir(roots: _Roots, path: str, e: FileEntry, a: FileEntry,
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
    la, renamed, hydra_dirs, moved = _hydra_aligned(path, le, la, info)
    out += moved
    job_logs = hydra.job_logs(le, hydra_dirs, roots.hydra_jobs)
    changes = compare.diff_listing(le, la)
    for rel in changes["removed"]:
        name = _inside(path, rel)
        out.append(Check("output", name, "missing", "recorded file missing from the replay",
                         {"dir": path, "expected": _file_summary(le[rel]), "actual": None}))
    for rel in changes["added"]:
        name = _inside(path, renamed.get(rel, rel))
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
        actual_name = _inside(path, renamed.get(rel, rel))
        own = hydra.own(rel, hydra_dirs, job_logs)
        if own == hydra.JOB_LOG:  # a log, like TensorBoard's: never a result by itself
            out.append(Check("output", name, "within-tolerance",
                             _job_log_detail(roots, name, actual_name, he, ha), finfo))
            continue
        if own:
            out.append(Check("output", name, "within-tolerance", own, finfo))
            continue
        out.append(_examine_file(roots, name, name, he, ha, finfo, actual_name))
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


def _hydra_aligned(path: str, le: Mapping[str, tuple[str, int]],
                   la: Mapping[str, tuple[str, int]], info: Mapping[str, Any],
                   ) -> tuple[dict[str, tuple[str, int]], dict[str, str], set[str],
                              list[Check | _TensorJob]]:
    """The replay's listing with its Hydra run directory read as the recorded one's (see
    judge/hydra.py), recorded name -> replay's name, the Hydra directories, and one check
    that says so."""
    aligned = hydra.align(le, la)
    if aligned.moved is None:
        return aligned.listing, {}, aligned.dirs, []
    d_e, d_a = aligned.moved
    check = Check("output", path, "same",
                  f"Hydra's run directory {_inside(path, d_e)} is {_inside(path, d_a)} in the "
                  "replay (Hydra names it by the clock): its files are compared with the "
                  "recorded ones", info)
    return aligned.listing, aligned.renamed, aligned.dirs, [check]


JOB_LOG_MAX = 64 * 1024 * 1024  # bytes of a Hydra job log read to compare it line by line


def _job_log_detail(roots: _Roots, name: str, actual_name: str, he: str, ha: str) -> str:
    """What differs in Hydra's job log, its lines' clock times set aside: it is a log (times,
    durations, paths), so it is reported, never counted; what it logs that matters is judged
    as a metric (metric_patterns) or an output."""
    tail = "a log, not a result: record what it logs as metrics to have it judged"
    pe, pa = _available(roots.expected, name, he), _available(roots.actual, actual_name, ha)
    if pe is None or pa is None:
        return f"Hydra's job log differs (the recorded copy is not at hand); {tail}"
    try:
        with open(pe, "rb") as fe, open(pa, "rb") as fa:
            a, b = fe.read(JOB_LOG_MAX), fa.read(JOB_LOG_MAX)
    except OSError as e:
        return f"Hydra's job log differs (unreadable: {e.strerror}); {tail}"
    found = hydra.first_difference(a, b)
    if found is None:
        return "Hydra's job log: the same lines but for their clock times"
    line, x, y = found
    return f"Hydra's job log differs at line {line} (clock times aside): {x} vs {y}; {tail}"


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
                  info: Mapping[str, Any], rel_actual: str | None = None) -> Check | _TensorJob:
    pe = _available(roots.expected, rel, he)
    if pe is None:
        return Check("output", name, "different", _UNAVAILABLE, {**info, "compared": "hash"})
    pa = _available(roots.actual, rel_actual or rel, ha)
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
