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
and judging them: structure first (same names, shapes, dtypes), then values.

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
import re
import sys
from collections.abc import Callable
from typing import Any

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
PICKLE_SUFFIXES = (".pkl", ".pickle")
TENSOR_SUFFIXES = (".npy", ".npz", *TORCH_SUFFIXES, *PICKLE_SUFFIXES, ".safetensors")
ROOT_PLACEHOLDER = "<checkout>"
_MAX_HEADER = 100 * 1024 * 1024  # a safetensors header larger than this is not one

# safetensors dtype -> (numpy dtype name, or None when numpy has no such type; item size)
_ST_DTYPES = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2),
    "BF16": (None, 2), "F8_E4M3": (None, 1), "F8_E5M2": (None, 1),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1),
    "BOOL": ("bool", 1), "C64": ("complex64", 8),
}
_ST_NAMES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


class ProbeError(Exception):
    """A file cannot be read as tensors: reported as status "error" with this message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit 2: report it as JSON instead
        raise ProbeError(f"bad arguments: {message}")


class Leaf:
    """One named value: an array or a plain object (`kind` "object", compared by equality).

    Arrays are read lazily, a slice of the flattened array at a time, so comparing two
    multi-GB checkpoints needs the loaded files plus a few chunks, not float64 copies of all.
    `bits()`: the exact bytes as a flat uint8 array; `values(start, stop)`: that slice of the
    flattened values as float64 ("float"), complex128 ("complex") or as stored ("exact").
    `raw`: the leaf's name and (for strings) value before embedded roots were replaced; two
    leaves that compare equal with different `raw` differ only in embedded paths.
    """

    def __init__(self, dtype: str, shape: tuple[int, ...], kind: str,
                 bits: Callable[[], Any] | None = None,
                 values: Callable[[int, int], Any] | None = None, obj: Any = None,
                 raw: str = "") -> None:
        self.dtype = dtype
        self.shape = shape
        self.kind = kind  # "float" | "complex" | "exact" | "object"
        self.bits = bits
        self.values = values
        self.obj = obj
        self.raw = raw


class Roots:
    """Checkout roots that name the same place; `norm` replaces them in a string.

    A root matches only as a whole path prefix: `/a/b` in `/a/b/c` and `/a/b` but not in
    `/a/bc`. Each root is also tried resolved (a temporary directory behind a symlink).
    """

    def __init__(self, roots: list[str]) -> None:
        forms = set()
        for r in roots:
            r = r.rstrip("/") or "/"
            if len(r) < 2:
                continue  # "/" would match every absolute path
            forms.add(r)
            forms.add(os.path.realpath(r))
        ordered = sorted(forms, key=len, reverse=True)  # the longest (innermost) root first
        # Not inside a longer path either: `/a/b` is no root of `/mnt/a/b` (`file://` is fine).
        self._pattern = re.compile(r"(?:(?<![\w.~/-])|(?<=://))(?:" + "|".join(
            re.escape(r) + r"(?![^/\\\s'\",;:|<>)\]}])" for r in ordered) + ")"
        ) if ordered else None

    def norm(self, text: str) -> str:
        if self._pattern is None or "/" not in text:
            return text
        return self._pattern.sub(ROOT_PLACEHOLDER, text)


_NO_ROOTS = Roots([])


# --- loading ----------------------------------------------------------------------------------


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as e:
        raise ProbeError(f"numpy is not installed in this interpreter ({sys.executable})") from e
    return numpy


def load(path: str, roots: Roots = _NO_ROOTS, unpickle: bool = False) -> dict[str, Leaf]:
    """Name -> Leaf for every tensor (and scalar) in `path`, chosen by the file's suffix."""
    lower = path.lower()
    if not os.path.isfile(path):
        raise ProbeError(f"{path} is not a readable file")
    if lower.endswith(".npy"):
        return _load_npy(path)
    if lower.endswith(".npz"):
        return _load_npz(path)
    if lower.endswith(TORCH_SUFFIXES + PICKLE_SUFFIXES):
        return _load_torch(path, roots, unpickle)
    if lower.endswith(".safetensors"):
        return _load_safetensors(path)
    raise ProbeError(f"{os.path.basename(path)}: not a tensor file (expected one of "
                     f"{', '.join(TENSOR_SUFFIXES)})")


def _array_leaf(np: Any, arr: Any, dtype: str | None = None) -> Leaf:
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)  # (never on 0-d arrays: it would make them 1-d)
    if arr.dtype.hasobject:
        raise ProbeError("object arrays cannot be compared (saved with pickle)")
    name = dtype or str(arr.dtype)
    flat = arr.reshape(-1)  # a view: arr is contiguous
    kind_char = arr.dtype.kind
    # strings, bytes, datetimes, structured arrays: "exact", like integers and bools
    kind = {"f": "float", "c": "complex"}.get(kind_char, "exact")
    target = {"float": np.float64, "complex": np.complex128}.get(kind)

    def values(start: int, stop: int) -> Any:
        part = flat[start:stop]
        return part if target is None else part.astype(target)

    return Leaf(name, tuple(arr.shape), kind, lambda: flat.view(np.uint8), values)


def _load_npy(path: str) -> dict[str, Leaf]:
    np = _numpy()
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ProbeError(f"cannot read {os.path.basename(path)} as .npy: {_reason(e)}") from e
    if not isinstance(arr, np.ndarray):
        raise ProbeError(f"{os.path.basename(path)} holds no array")
    return {"": _array_leaf(np, arr)}


def _load_npz(path: str) -> dict[str, Leaf]:
    np = _numpy()
    out: dict[str, Leaf] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                out[key] = _array_leaf(np, archive[key])
    except ProbeError:
        raise
    except Exception as e:
        raise ProbeError(f"cannot read {os.path.basename(path)} as .npz: {_reason(e)}") from e
    return out


def _load_torch(path: str, roots: Roots, unpickle: bool) -> dict[str, Leaf]:
    """A checkpoint or pickle, walked structurally.

    torch.load(weights_only=True) first: it unpickles only tensors, containers and plain
    values, so a file cannot run code. Only with `unpickle` (files this clone produced) does a
    file that needs more (a Lightning `AttributeDict`, an argparse Namespace, a plain pickle)
    get unpickled in full.
    """
    base = os.path.basename(path)
    plain_pickle = path.lower().endswith(PICKLE_SUFFIXES)
    torch: Any
    try:
        import torch
    except ImportError as e:
        if not plain_pickle:
            raise ProbeError(f"torch is not installed in this interpreter ({sys.executable})") \
                from e
        torch = None
    np = _numpy()
    obj: Any = None
    reason = "torch is not installed"
    loaded = False
    if torch is not None:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            loaded = True
        except Exception as e:
            reason = _reason(e)
    if not loaded and not unpickle:
        raise ProbeError(f"{base} cannot be loaded weights-only and was not unpickled in full "
                         f"(that could run code from the file): {reason}")
    if not loaded:
        obj = _unpickle(torch, path, base, reason)
    out: dict[str, Leaf] = {}
    _flatten(torch, np, roots, obj, "", "", out, [])
    return out


def _unpickle(torch: Any, path: str, base: str, reason: str) -> Any:
    """Full unpickling, for files this clone's own command wrote (see _load_torch)."""
    if torch is not None:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:
            reason = _reason(e)
    import pickle

    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as e:
        raise ProbeError(f"cannot read {base} as a checkpoint or pickle: {reason}; "
                         f"pickle: {_reason(e)}") from e


def _flatten(torch: Any, np: Any, roots: Roots, obj: Any, prefix: str, raw: str,
             out: dict[str, Leaf], stack: list[int]) -> None:
    """Leaves of a checkpoint by dotted name; `raw` is the name before roots were replaced."""
    if len(stack) > 100:
        raise ProbeError(f"{prefix or 'the checkpoint'} is nested too deeply")
    if torch is not None and isinstance(obj, torch.Tensor):
        out[prefix] = _torch_leaf(torch, np, obj, prefix)
        out[prefix].raw = raw
        return
    if isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
        out[prefix] = _array_leaf(np, obj)
        out[prefix].raw = raw
        return
    if isinstance(obj, np.generic):
        out[prefix] = _array_leaf(np, np.asarray(obj))
        out[prefix].raw = raw
        return
    if isinstance(obj, (bool, int, float, complex)):
        out[prefix] = _array_leaf(np, np.asarray(obj), type(obj).__name__)
        out[prefix].raw = raw
        return
    if isinstance(obj, str):
        out[prefix] = Leaf("str", (), "object", obj=roots.norm(obj), raw=raw + "=" + obj)
        return
    if id(obj) in stack:  # a cycle (only possible when unpickled in full)
        out[prefix] = Leaf("cycle", (), "object", obj="cycle", raw=raw)
        return
    stack.append(id(obj))
    try:
        if isinstance(obj, dict):
            for key in obj:
                text = str(key)
                _flatten(torch, np, roots, obj[key], _join(prefix, roots.norm(text)),
                         _join(raw, text), out, stack)
        elif isinstance(obj, (list, tuple)) and not (torch is not None
                                                     and isinstance(obj, torch.Size)):
            for i, item in enumerate(obj):
                _flatten(torch, np, roots, item, _join(prefix, str(i)), _join(raw, str(i)), out,
                         stack)
        elif _walkable(obj):
            # an object unpickled in full (an argparse Namespace, a Lightning AttributeDict's
            # contents, a dataclass): its type by name, then what it pickles, walked
            out[prefix] = Leaf("object", (), "object", obj=_type_name(obj), raw=raw)
            state = _state(obj)
            if state is not None:
                _flatten(torch, np, roots, state, _join(prefix, "__state__"),
                         _join(raw, "__state__"), out, stack)
        elif callable(obj) and hasattr(obj, "__qualname__"):  # a function or class: by name
            name = f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
            out[prefix] = Leaf(type(obj).__name__, (), "object", obj=name, raw=raw)
        else:  # None, bytes, torch.Size, dtypes, sets, ...: compared by equality
            out[prefix] = Leaf(type(obj).__name__, (), "object", obj=obj, raw=raw)
    finally:
        stack.pop()


def _walkable(obj: Any) -> bool:
    """An instance whose state says more than its `==` (or that has no `==` of its own)."""
    if obj is None or isinstance(obj, (type, bytes, bytearray, str)) or callable(obj):
        return False
    eq: Any = type(obj).__eq__
    return hasattr(obj, "__dict__") or eq is object.__eq__


def _type_name(obj: Any) -> str:
    t = type(obj)
    return f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', t.__name__)}"


def _state(obj: Any) -> Any:
    getstate = getattr(obj, "__getstate__", None)
    try:
        if getstate is not None:
            return getstate()
        return vars(obj)
    except Exception:
        return getattr(obj, "__dict__", None)


def _torch_leaf(torch: Any, np: Any, t: Any, name: str) -> Leaf:
    dtype = str(t.dtype)  # "torch.float32"
    try:
        t = t.detach()
        if t.is_sparse:
            t = t.to_dense()
        if t.is_quantized:
            t = t.dequantize()
        t = t.cpu().contiguous()
        flat = t.reshape(-1)
        if t.is_complex():
            kind, target = "complex", torch.complex128
        elif t.is_floating_point():
            kind, target = "float", torch.float64
        else:
            kind, target = "exact", None
        flat.view(torch.uint8)  # fails here, not later, for what cannot be viewed as bytes
    except Exception as e:
        raise ProbeError(f"tensor {name or '(top level)'} ({dtype}) cannot be read: "
                         f"{_reason(e)}") from e

    def values(start: int, stop: int) -> Any:
        part = flat[start:stop]
        return (part if target is None else part.to(target)).numpy()

    return Leaf(dtype, tuple(t.shape), kind, lambda: flat.view(torch.uint8).numpy(), values)


def _load_safetensors(path: str) -> dict[str, Leaf]:
    np = _numpy()
    try:
        from safetensors.numpy import load_file  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return _parse_safetensors(np, path)
    try:
        arrays = load_file(path)
    except Exception:
        # the package's numpy loader refuses what numpy lacks (bfloat16, float8): parse it
        return _parse_safetensors(np, path)
    return {str(k): _array_leaf(np, v) for k, v in arrays.items()}


def _parse_safetensors(np: Any, path: str) -> dict[str, Leaf]:
    base = os.path.basename(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ProbeError(f"{base} is not a safetensors file: shorter than 8 bytes")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _MAX_HEADER):
            raise ProbeError(f"{base} is not a safetensors file: header length {n} does not "
                             f"fit in {size} bytes")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ProbeError(f"{base} is not a safetensors file: bad JSON header ({e})") from e
        if not isinstance(header, dict):
            raise ProbeError(f"{base} is not a safetensors file: header is not an object")
        data_start = 8 + n
        data_len = size - data_start
        out: dict[str, Leaf] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            out[name] = _read_st_tensor(np, f, base, name, info, data_start, data_len)
    return out


def _read_st_tensor(np: Any, f: Any, base: str, name: str, info: Any, data_start: int,
                    data_len: int) -> Leaf:
    bad = f"{base}: tensor {name!r} has a bad header entry"
    if not isinstance(info, dict):
        raise ProbeError(bad)
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _ST_DTYPES:
        raise ProbeError(f"{base}: tensor {name!r} has unsupported dtype {dtype!r}")
    if (not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape)
            or not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_int(o) for o in offsets)):
        raise ProbeError(bad)
    np_name, item = _ST_DTYPES[dtype]
    numel = 1
    for d in shape:
        numel *= d
    begin, end = offsets
    if not 0 <= begin <= end <= data_len or end - begin != numel * item:
        raise ProbeError(f"{base}: tensor {name!r} data_offsets {offsets} do not match its "
                         f"shape {shape} and dtype {dtype} (buffer of {data_len} bytes)")
    f.seek(data_start + begin)
    raw = f.read(end - begin)
    if len(raw) != end - begin:
        raise ProbeError(f"{base}: tensor {name!r} is truncated")
    if np_name is not None:
        arr = np.frombuffer(raw, dtype=np.dtype(np_name).newbyteorder("<")).reshape(shape)
        return _array_leaf(np, arr.astype(np.dtype(np_name)), np_name)
    # numpy has no bfloat16/float8: decode their bits to float64, a slice at a time
    table = _e4m3_table(np) if dtype == "F8_E4M3" else None

    def values(start: int, stop: int) -> Any:
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2")[start:stop].astype(np.uint32) << 16
            return bits.view(np.float32).astype(np.float64)
        part = np.frombuffer(raw, dtype=np.uint8)[start:stop]
        if table is not None:
            return table[part]
        # float8_e5m2 is the top byte of a float16
        return (part.astype(np.uint16) << 8).view(np.float16).astype(np.float64)

    return Leaf(_ST_NAMES[dtype], tuple(shape), "float",
                lambda: np.frombuffer(raw, dtype=np.uint8), values)


def _e4m3_table(np: Any) -> Any:
    """float8_e4m3fn: bias 7, no infinities, S.1111.111 is NaN."""
    table = np.empty(256, dtype=np.float64)
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        exp, man = (b >> 3) & 0xF, b & 0x7
        if exp == 0xF and man == 0x7:
            table[b] = math.nan
        elif exp == 0:
            table[b] = sign * (man / 8.0) * 2.0 ** -6
        else:
            table[b] = sign * (1.0 + man / 8.0) * 2.0 ** (exp - 7)
    return table


# --- comparing --------------------------------------------------------------------------------


def compare_files(path_a: str, path_b: str, rtol: float, atol: float,
                  roots: Roots = _NO_ROOTS, unpickle: bool = False) -> dict[str, Any]:
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
        return {"status": "error", "tensors": [], "message": f"unexpected failure: {_reason(e)}"}


def compare_leaves(a: dict[str, Leaf], b: dict[str, Leaf], rtol: float,
                   atol: float) -> dict[str, Any]:
    np = _numpy()
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


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(e).__name__}: {first}"[:300] if first else type(e).__name__


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
        result = {"status": "error", "tensors": [], "message": f"unexpected failure: {_reason(e)}"}
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
        raise ProbeError(f"cannot read the list of pairs: {_reason(e)}") from e
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
