"""Tensor files and checkpoints compared numerically and structurally by the probe
(repro/child/tensorcmp.py), run in the run's own interpreter: repro never imports torch or numpy.
Part of judge/checks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repro.judge import compare
from repro.judge.filediff import _compare_bytes
from repro.judge.verdict import Check, _clip, _count, _g, _names

TENSORCMP = Path(__file__).resolve().parent.parent / "child" / "tensorcmp.py"
# Per pair of tensor files; the probe gets this times the number of pairs. Loading two
# multi-GB checkpoints and comparing them in float64 takes minutes on a slow disk, not hours.
TENSORCMP_TIMEOUT_S = 300.0
_MAX_TENSORS_IN_DATA = 20  # differing tensors listed in a check's data


@dataclasses.dataclass(frozen=True)
class _TensorJob:
    """A pair of tensor files waiting for the probe; becomes a Check afterwards."""

    name: str
    expected: Path
    actual: Path
    info: Mapping[str, Any]
    bytes_fallback: bool = False  # a probe error means "not tensors": compare bytes instead


@dataclasses.dataclass(frozen=True)
class Structural:
    """How the probe compares checkpoints: which checkout roots name the same place (strings
    embedding one are compared with it replaced), and whether files weights_only cannot load
    may be unpickled in full (only when this clone produced both runs: unpickling runs code
    named by the file)."""

    roots: tuple[Path, ...] = ()
    unpickle: bool = False

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




def _shape(shape: Any) -> str:
    if isinstance(shape, list):
        return "[" + ", ".join(str(d) for d in shape) + "]"
    return str(shape)

