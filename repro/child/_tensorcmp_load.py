"""tensorcmp's readers: files of tensors (npy, npz, torch checkpoints, pickles, safetensors)
as named leaves. A private helper of tensorcmp.py, loaded from the same directory; see its
docstring for the formats and the rules. Runs under the run's own interpreter: Python 3.8
syntax, standard library at import, numpy and torch imported lazily.

Must not: print, exit, or unpickle unless asked (`unpickle=True`).
"""

from __future__ import annotations

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


NO_ROOTS = Roots([])



def numpy_module() -> Any:
    try:
        import numpy
    except ImportError as e:
        raise ProbeError(f"numpy is not installed in this interpreter ({sys.executable})") from e
    return numpy


def load(path: str, roots: Roots = NO_ROOTS, unpickle: bool = False) -> dict[str, Leaf]:
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
    np = numpy_module()
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ProbeError(f"cannot read {os.path.basename(path)} as .npy: {describe(e)}") from e
    if not isinstance(arr, np.ndarray):
        raise ProbeError(f"{os.path.basename(path)} holds no array")
    return {"": _array_leaf(np, arr)}


def _load_npz(path: str) -> dict[str, Leaf]:
    np = numpy_module()
    out: dict[str, Leaf] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                out[key] = _array_leaf(np, archive[key])
    except ProbeError:
        raise
    except Exception as e:
        raise ProbeError(f"cannot read {os.path.basename(path)} as .npz: {describe(e)}") from e
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
    np = numpy_module()
    obj: Any = None
    reason = "torch is not installed"
    loaded = False
    if torch is not None:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            loaded = True
        except Exception as e:
            reason = describe(e)
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
            reason = describe(e)
    import pickle

    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as e:
        raise ProbeError(f"cannot read {base} as a checkpoint or pickle: {reason}; "
                         f"pickle: {describe(e)}") from e


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
                _flatten(torch, np, roots, obj[key], join(prefix, roots.norm(text)),
                         join(raw, text), out, stack)
        elif isinstance(obj, (list, tuple)) and not (torch is not None
                                                     and isinstance(obj, torch.Size)):
            for i, item in enumerate(obj):
                _flatten(torch, np, roots, item, join(prefix, str(i)), join(raw, str(i)), out,
                         stack)
        elif _walkable(obj):
            # an object unpickled in full (an argparse Namespace, a Lightning AttributeDict's
            # contents, a dataclass): its type by name, then what it pickles, walked
            out[prefix] = Leaf("object", (), "object", obj=_type_name(obj), raw=raw)
            state = _state(obj)
            if state is not None:
                _flatten(torch, np, roots, state, join(prefix, "__state__"),
                         join(raw, "__state__"), out, stack)
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
                         f"{describe(e)}") from e

    def values(start: int, stop: int) -> Any:
        part = flat[start:stop]
        return (part if target is None else part.to(target)).numpy()

    return Leaf(dtype, tuple(t.shape), kind, lambda: flat.view(torch.uint8).numpy(), values)


def _load_safetensors(path: str) -> dict[str, Leaf]:
    np = numpy_module()
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
    if (not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape)
            or not isinstance(offsets, list) or len(offsets) != 2
            or not all(is_int(o) for o in offsets)):
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


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(e).__name__}: {first}"[:300] if first else type(e).__name__
