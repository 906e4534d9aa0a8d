"""Compare the tensors in two files numerically; run by path with the *run's* interpreter.

Usage:
    python tensorcmp.py A B --rtol X --atol Y      # prints one JSON object on stdout
    python tensorcmp.py --pairs - --rtol X --atol Y  # stdin: [[A, B], ...]; one JSON line each
    options: --root DIR (repeatable): checkout roots that name the same place (see below);
             --unpickle: files weights_only cannot load may be unpickled in full

Owns: loading `.npy`, `.npz` (numpy), checkpoints `.pt`/`.pth`/`.ckpt`/`.bin` (torch.load on
the CPU, weights_only=True first), pickles `.pkl`/`.pickle`, and `.safetensors` (the
`safetensors` package when importable, else a built-in parser of the format: 8-byte
little-endian header length, a JSON header of dtype/shape/data_offsets, then the raw buffers),
and judging them: structure first (same names, shapes, dtypes), then values. The readers live
in _tensorcmp_load.py beside this file, which it loads from its own directory (never through
`repro`, which the run's interpreter may not have).

Checkpoints are walked structurally: nested dicts, lists and tuples (and, when unpickled in
full, objects through their pickled state); tensors and arrays become numeric leaves, every
other value an "object" leaf compared by equality. Strings and dict keys that embed one of the
`--root` directories are compared with that directory replaced by one placeholder: a Lightning
checkpoint records ModelCheckpoint's absolute `dirpath`, which is the user's checkout in the
recorded run and a temporary worktree in its replay. A leaf equal only after that replacement
is `within-tolerance` with `"embedded_path": true` (its bytes differ; its meaning does not).

Unpickling runs code named by the file, so it happens only with `--unpickle`, which the judge
passes only for files this clone produced (the user's own command wrote both); otherwise a
checkpoint that weights_only cannot load is an error saying so.

A result: `{"status": "same" | "within-tolerance" | "different" | "error", "message": ...,
"tensors": [{"name", "status", "max_abs", "max_rel", "differing", "beyond", "numel",
"shape_a", "shape_b", "dtype_a", "dtype_b", "worst_index", "embedded_path"}, ...]}`; the top
level also carries `"embedded_paths"`, the names of leaves that differ only in embedded paths. In batch mode each line also
carries `"index"`, the position of its pair, and is flushed as soon as it is known, so a crash
loses only the pairs not yet compared. Non-finite numbers are written as "nan"/"inf"/"-inf"
(the output is strict JSON).

Rules:
- `same`: every tensor has the same dtype, shape and bytes (NaN payloads and -0.0 included).
- floating/complex values are within tolerance when `|a - b| <= atol + rtol * max(|a|, |b|)`
  elementwise (symmetric, as `repro.judge.compare.within`); NaN equals NaN at the same position, an
  infinity only the same infinity. Integer, bool and non-numeric leaves (strings, None in a
  checkpoint) compare exactly.
- a name present in one file only, or a dtype/shape mismatch, is `different`.
- `safetensors` `__metadata__` is not compared (it is free text, often a timestamp).
- a leaf that differs only in an embedded `--root` path is `within-tolerance`, flagged
  `embedded_path` (the file's status is at most `within-tolerance` then).

Must not: crash or exit non-zero (anything that goes wrong is `status: "error"` with a message),
write anything but the JSON on stdout (library chatter is sent to stderr), or need more than
the interpreter has: numpy for every format, torch only for `.pt`/`.pth`. It runs under whatever
Python the run used, so it sticks to Python 3.8 syntax and imports numpy/torch lazily.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

if __package__:  # imported as repro.child.tensorcmp (tests, type checking)
    from repro.child._tensorcmp_load import (
        NO_ROOTS,
        Leaf,
        ProbeError,
        Roots,
        describe,
        load,
        numpy_module,
    )
else:  # run by path: its sibling file, whatever sys.path holds (PYTHONSAFEPATH, -P)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        from _tensorcmp_load import NO_ROOTS, Leaf, ProbeError, Roots, describe, load, numpy_module  # type: ignore[import-not-found,no-redef]
    finally:
        del sys.path[0]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit 2: report it as JSON instead
        raise ProbeError(f"bad arguments: {message}")


# --- comparing --------------------------------------------------------------------------------


def compare_files(path_a: str, path_b: str, rtol: float, atol: float,
                  roots: Roots = NO_ROOTS, unpickle: bool = False) -> dict[str, Any]:
    """The result object for one pair of files (never raises for bad input)."""
    try:
        leaves_a = load(path_a, roots, unpickle)
        leaves_b = load(path_b, roots, unpickle)
        return compare_leaves(leaves_a, leaves_b, rtol, atol)
    except ProbeError as e:
        return {"status": "error", "tensors": [], "message": str(e)}
    except MemoryError:
        return {"status": "error", "tensors": [], "message": "out of memory comparing tensors"}
    except Exception as e:  # never crash: the judge reports whatever happened
        return {"status": "error", "tensors": [], "message": f"unexpected failure: {describe(e)}"}


def compare_leaves(a: dict[str, Leaf], b: dict[str, Leaf], rtol: float,
                   atol: float) -> dict[str, Any]:
    np = numpy_module()
    names = list(a) + [k for k in b if k not in a]
    tensors = [_compare_leaf_paths(np, name, a.get(name), b.get(name), rtol, atol)
               for name in names]
    only_a = [n for n in a if n not in b]
    only_b = [n for n in b if n not in a]
    statuses = {t["status"] for t in tensors}
    if "different" in statuses:
        status = "different"
    elif "within-tolerance" in statuses:
        status = "within-tolerance"
    else:
        status = "same"
    parts = []
    if only_a:
        parts.append(f"only in A: {_names(only_a)}")
    if only_b:
        parts.append(f"only in B: {_names(only_b)}")
    mismatched = [t["name"] for t in tensors if t["name"] in a and t["name"] in b
                  and (t["dtype_a"] != t["dtype_b"] or t["shape_a"] != t["shape_b"])]
    if mismatched:
        parts.append(f"dtype or shape differs: {_names(mismatched)}")
    beyond = sum(1 for t in tensors if t["status"] == "different") - len(only_a) - len(only_b) \
        - len(mismatched)
    if beyond:
        parts.append(f"{beyond} of {len(tensors)} tensors differ beyond tolerance")
    embedded = [t["name"] for t in tensors if t.get("embedded_path")]
    if not parts:
        numeric = [t for t in tensors if not t.get("embedded_path")]
        parts.append(f"{len(numeric)} tensors "
                     + ("within tolerance" if any(t["status"] == "within-tolerance"
                                                  for t in numeric) else "identical"))
    if embedded:
        parts.append(f"only embedded paths differ in {_names(embedded)}")
    return {"status": status, "tensors": tensors, "message": "; ".join(parts),
            "embedded_paths": embedded}


def _compare_leaf_paths(np: Any, name: str, a: Leaf | None, b: Leaf | None, rtol: float,
                        atol: float) -> dict[str, Any]:
    """_compare_leaf, then: equal only once the roots were replaced is an embedded path."""
    out = _compare_leaf(np, name, a, b, rtol, atol)
    if out["status"] == "same" and a is not None and b is not None and a.raw != b.raw:
        out.update(status="within-tolerance", embedded_path=True,
                   embedded_a=a.raw[:300], embedded_b=b.raw[:300])
    return out


def _compare_leaf(np: Any, name: str, a: Leaf | None, b: Leaf | None, rtol: float,
                  atol: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name, "status": "different", "max_abs": None, "max_rel": None,
        "differing": None, "beyond": None, "nan_mismatch": None, "numel": None,
        "worst_index": None,
        "shape_a": list(a.shape) if a else None, "shape_b": list(b.shape) if b else None,
        "dtype_a": a.dtype if a else None, "dtype_b": b.dtype if b else None,
    }
    if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape \
            or a.kind != b.kind:
        return out
    numel = 1
    for d in a.shape:
        numel *= d
    out["numel"] = numel
    if a.bits is None or b.bits is None or a.values is None or b.values is None:
        same = _equal(a.obj, b.obj)
        out.update(status="same" if same else "different", differing=0 if same else 1,
                   beyond=0 if same else 1, nan_mismatch=0)
        return out
    if _same_bits(np, a.bits(), b.bits()):
        out.update(status="same", max_abs=0.0, max_rel=0.0, differing=0, beyond=0,
                   nan_mismatch=0)
        return out
    stats = _Stats()
    for start in range(0, numel, _CHUNK_ELEMENTS):
        stop = min(numel, start + _CHUNK_ELEMENTS)
        _compare_chunk(np, a.kind, a.values(start, stop), b.values(start, stop), start, rtol,
                       atol, stats)
    out.update(differing=stats.differing, beyond=stats.beyond, nan_mismatch=stats.nan_mismatch,
               max_abs=_num(stats.max_abs), max_rel=_num(stats.max_rel))
    if stats.worst >= 0:
        out["worst_index"] = [int(i) for i in np.unravel_index(stats.worst, a.shape)] \
            if a.shape else []
    # bytes differ but every value is equal (-0.0 and 0.0, NaN payloads) or within tolerance
    out["status"] = "different" if stats.beyond else "within-tolerance"
    return out


def _equal(x: Any, y: Any) -> bool:
    if type(x) is not type(y):
        return False
    try:
        return bool(x == y)
    except Exception:  # an __eq__ that returns an array, or raises: compare the texts
        return repr(x) == repr(y)


_CHUNK_ELEMENTS = 1 << 22  # values compared at a time (a few float64 temporaries of 32 MB)
_CHUNK_BYTES = 1 << 26


def _same_bits(np: Any, x: Any, y: Any) -> bool:
    if x.shape != y.shape:
        return False
    for start in range(0, x.shape[0], _CHUNK_BYTES):
        if not np.array_equal(x[start:start + _CHUNK_BYTES], y[start:start + _CHUNK_BYTES]):
            return False
    return True


class _Stats:
    """Running totals over the chunks of one tensor."""

    def __init__(self) -> None:
        self.differing = 0
        self.beyond = 0
        self.nan_mismatch = 0
        self.max_abs = 0.0  # NaN once a NaN stands against a number
        self.max_rel = 0.0
        self.worst = -1  # flat index of the worst difference (a NaN mismatch is the worst)
        self.worst_key = -1.0


def _compare_chunk(np: Any, kind: str, va: Any, vb: Any, offset: int, rtol: float,
                   atol: float, stats: _Stats) -> None:
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if kind == "exact":
            unequal = va != vb
            if va.dtype.kind in "biu":
                fa, fb = va.astype(np.float64), vb.astype(np.float64)
                diff = np.abs(fa - fb)
                scale = np.maximum(np.abs(fa), np.abs(fb))
            else:  # strings and the like: no magnitude
                diff = np.where(unequal, math.inf, 0.0)
                scale = np.ones(diff.shape)
            ok = ~unequal
            nan_mismatch = np.zeros(diff.shape, dtype=bool)
        else:
            nan_a, nan_b = np.isnan(va), np.isnan(vb)
            nan_mismatch = nan_a != nan_b
            unequal = ~((va == vb) | (nan_a & nan_b))
            diff = np.where(unequal, np.abs(va - vb), 0.0)
            scale = np.maximum(np.abs(va), np.abs(vb))
            allowed = atol + rtol * scale
            ok = ~unequal | (np.isfinite(diff) & (diff <= allowed))
        stats.differing += int(np.count_nonzero(unequal))
        stats.beyond += int(np.count_nonzero(~ok))
        stats.nan_mismatch += int(np.count_nonzero(nan_mismatch))
        if not unequal.any():
            return
        key = np.where(nan_mismatch, math.inf, np.where(np.isnan(diff), 0.0, diff))
        key = np.where(unequal, key, -1.0)
        i = int(np.argmax(key))
        if float(key[i]) > stats.worst_key:
            stats.worst_key = float(key[i])
            stats.worst = offset + i
        if nan_mismatch.any():
            stats.max_abs = math.nan
            stats.max_rel = math.nan
            return
        if not math.isnan(stats.max_abs):
            stats.max_abs = max(stats.max_abs, float(np.max(diff)))
            rel = np.where(unequal, diff / np.where(scale == 0, 1.0, scale), 0.0)
            stats.max_rel = max(stats.max_rel, float(np.max(rel)))


# --- output -----------------------------------------------------------------------------------


def _num(x: float) -> float | str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(n or "(top level)" for n in names[:limit])
    return shown + (f" +{len(names) - limit} more" if len(names) > limit else "")


def _emit(out: Any, obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj, allow_nan=False, default=str) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    # Library chatter (torch warnings printed to stdout, numpy deprecations) must not mix into
    # the JSON: everything the comparison prints goes to stderr.
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        parser = _Parser(prog="tensorcmp", add_help=False)
        parser.add_argument("files", nargs="*")
        parser.add_argument("--rtol", type=float, default=0.0)
        parser.add_argument("--atol", type=float, default=0.0)
        parser.add_argument("--pairs")
        parser.add_argument("--root", action="append", default=[])
        parser.add_argument("--unpickle", action="store_true")
        args = parser.parse_args(argv)
        roots, unpickle = Roots(list(args.root)), bool(args.unpickle)
        rtol, atol = float(args.rtol), float(args.atol)
        if not (rtol >= 0 and atol >= 0):  # also refuses NaN
            raise ProbeError("--rtol and --atol must be numbers >= 0")
        if args.pairs is not None:
            if args.files:
                raise ProbeError("give either two files or --pairs, not both")
            _batch(out, args.pairs, rtol, atol, roots, unpickle)
            return 0
        if len(args.files) != 2:
            raise ProbeError("expected two files, A and B")
        result = compare_files(args.files[0], args.files[1], rtol, atol, roots, unpickle)
    except ProbeError as e:
        result = {"status": "error", "tensors": [], "message": str(e)}
    except BaseException as e:  # the contract is one JSON object, always
        result = {"status": "error", "tensors": [], "message": f"unexpected failure: {describe(e)}"}
    try:
        _emit(out, result)
    except (ValueError, TypeError):
        _emit(out, {"status": "error", "tensors": [], "message": "result is not serialisable"})
    return 0


def _batch(out: Any, source: str, rtol: float, atol: float, roots: Roots,
           unpickle: bool) -> None:
    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        pairs = json.loads(text)
    except (OSError, ValueError) as e:
        raise ProbeError(f"cannot read the list of pairs: {describe(e)}") from e
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in pairs):
        raise ProbeError("--pairs wants a JSON list of [A, B] paths")
    for index, (a, b) in enumerate(pairs):
        result = compare_files(a, b, rtol, atol, roots, unpickle)
        result["index"] = index
        try:
            _emit(out, result)
        except (ValueError, TypeError):
            _emit(out, {"status": "error", "tensors": [], "index": index,
                        "message": "result is not serialisable"})


if __name__ == "__main__":
    sys.exit(main())
