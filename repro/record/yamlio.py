"""YAML for repro: our own block-style emitter (`dumps`), a strict safe loader (`loads`,
`read_yaml_file`) and atomic text writes.

The only PyYAML user (ruff's banned-api holds this). Never executes anything found in a file.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repro import errors
from repro.record import bounded

CORRUPT_HINT = "the file is damaged or was edited by hand; restore it or remove the run directory"
_CORRUPT_HINT = CORRUPT_HINT


def dumps(data: Any) -> str:
    """Plain data (mappings, lists, str, int, float, bool, None) as block-style YAML.

    Our own emitter rather than PyYAML's: `repro run` writes the manifest twice, and importing
    PyYAML costs ~30 ms of the 150 ms overhead budget. Any string that is not obviously plain
    is double-quoted with escapes, so PyYAML's safe loader reads back exactly what was written
    (tests hold this with property-based round trips), including lone surrogates from
    undecodable bytes in argv, which PyYAML's own dumper cannot write.
    """
    out: list[str] = []
    _emit(data, 0, out)
    return "".join(out)


def _emit(value: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            out.append(f"{pad}{{}}\n")
            return
        for k, v in value.items():
            key = _scalar(str(k))
            if _is_block(v):
                out.append(f"{pad}{key}:\n")
                _emit(v, indent + 2, out)
            else:
                out.append(f"{pad}{key}: {_inline(v)}\n")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append(f"{pad}[]\n")
            return
        for v in value:
            if _is_block(v):
                lines: list[str] = []
                _emit(v, indent + 2, lines)
                first = lines[0]
                lines[0] = f"{pad}- {first[indent + 2:]}"
                out.extend(lines)
            else:
                out.append(f"{pad}- {_inline(v)}\n")
    else:
        out.append(f"{pad}{_inline(value)}\n")


def _is_block(v: Any) -> bool:
    return isinstance(v, (Mapping, list, tuple)) and len(v) > 0


def _inline(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return ".nan"
        if v in (float("inf"), float("-inf")):
            return ".inf" if v > 0 else "-.inf"
        text = repr(v)
        # YAML 1.1 (PyYAML) reads `1e-05` as a string: it wants a dot and a signed exponent.
        if "e" in text and "." not in text.split("e")[0]:
            mant, exp = text.split("e")
            text = f"{mant}.0e{exp}"
        if "e" in text and text.split("e")[1][0] not in "+-":
            mant, exp = text.split("e")
            text = f"{mant}e+{exp}"
        return text
    if isinstance(v, Mapping):
        return "{}"
    if isinstance(v, (list, tuple)):
        return "[]"
    return _scalar(str(v))


_PLAIN_RE = None
_RESERVED = frozenset({"null", "~", "true", "false", "yes", "no", "on", "off", "y", "n"})


def _scalar(text: str) -> str:
    """A plain scalar when unambiguous, else a double-quoted one with escapes."""
    global _PLAIN_RE
    if _PLAIN_RE is None:
        import re

        _PLAIN_RE = re.compile(r"[A-Za-z_/][A-Za-z0-9_./+@-]*")
    if _PLAIN_RE.fullmatch(text) and text.lower() not in _RESERVED \
            and not text.lower().startswith(("0x", "0o", ".inf", ".nan")):
        return text
    return _quote(text)


def _quote(text: str) -> str:
    parts = ['"']
    for ch in text:
        o = ord(ch)
        if ch == '"':
            parts.append('\\"')
        elif ch == "\\":
            parts.append("\\\\")
        elif ch == "\n":
            parts.append("\\n")
        elif ch == "\t":
            parts.append("\\t")
        elif o < 0x20 or 0x7F <= o <= 0x9F:
            parts.append(f"\\x{o:02x}")
        elif 0xD800 <= o <= 0xDFFF or o in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF):
            parts.append(f"\\u{o:04x}")
        else:
            parts.append(ch)
    parts.append('"')
    return "".join(parts)


def loads(text: str, source: str) -> Any:
    """Parse YAML as plain data only: `!!python/...` tags are refused, never constructed;
    aliases and duplicate keys are refused; depth and numbers are bounded (bounded.check_tree).

    Aliases are refused before anything is constructed: a manifest never needs one (the
    emitter above never writes one), and a few lines of them expand to gigabytes.
    """
    import yaml

    loader = _loader()
    error = errors.ManifestError
    try:
        try:
            _refuse_aliases(text, loader, source)
            data = yaml.load(text, Loader=loader)
        except yaml.YAMLError as e:
            if loader is _py_loader() or getattr(e, "problem", None) != _C_ESCAPE_PROBLEM:
                raise
            # libyaml refuses escaped lone surrogates ("\udcff", from undecodable bytes in
            # argv or file names) that the pure-Python safe loader reads exactly.
            loader = _py_loader()
            _refuse_aliases(text, loader, source)
            data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as e:
        raise error(f"{source} is not valid YAML: {_yaml_reason(e)}", hint=_CORRUPT_HINT) from e
    except RecursionError as e:  # the pure-Python composer recurses once per level
        raise error(f"{source} is nested too deeply to read", hint=_CORRUPT_HINT) from e
    except ValueError as e:  # int() refuses more than 4,300 decimal digits
        raise error(f"{source} holds a number with more than 4,300 digits",
                    hint=_CORRUPT_HINT) from e
    bounded.check_tree(data, source, error)
    return data


def _yaml_reason(e: Exception) -> str:
    """What PyYAML found and where, on one line ("exceeded maximum nesting depth at line 3")."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if isinstance(problem, str) and problem:
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{problem}{where}"[:300]
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


_DOUBLE_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_C_ESCAPE_PROBLEM = "found invalid Unicode character escape code"
_LOADERS: dict[str, Any] = {}


def _loader() -> Any:
    """libyaml's safe loader when available (several times faster), made stricter."""
    if "c" not in _LOADERS:
        import yaml

        base = getattr(yaml, "CSafeLoader", None)
        _LOADERS["c"] = _strict(base) if base is not None else _py_loader()
    return _LOADERS["c"]


def _py_loader() -> Any:
    if "py" not in _LOADERS:
        import yaml

        _LOADERS["py"] = _strict(yaml.SafeLoader)
    return _LOADERS["py"]


def _strict(base: Any) -> Any:
    """`base` (a safe loader) that refuses duplicate keys and merge keys, reads timestamps as
    the strings they are written as, and refuses !!binary, !!set, !!omap, !!pairs: a manifest,
    a configuration or a metrics file holds plain data only."""
    import yaml
    from yaml.constructor import ConstructorError, SafeConstructor

    class Strict(base):  # type: ignore[misc]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            mapping = super().construct_mapping(node, deep=deep)
            if len(mapping) != len(node.value):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    if key in seen:
                        raise ConstructorError(None, None, f"found duplicate key {key!r:.80}",
                                               key_node.start_mark)
                    seen.add(key)
            return mapping

        def flatten_mapping(self, node: Any) -> None:
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConstructorError(None, None, "found a merge key (<<), which repro "
                                           "does not expand", key_node.start_mark)

        def refuse(self, node: Any) -> Any:
            raise ConstructorError(None, None, f"found a {node.tag} value, which is not "
                                   "plain data", node.start_mark)

    Strict.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)
    for tag in ("binary", "set", "omap", "pairs"):
        Strict.add_constructor(f"tag:yaml.org,2002:{tag}", Strict.refuse)
    Strict.__name__ = f"Strict{base.__name__}"
    del yaml
    return Strict


def _refuse_aliases(text: str, loader: Any, source: str) -> None:
    """An alias (`*name`) needs an anchor (`&name`): without an `&` outside double-quoted
    strings (where the emitter puts every `&` it writes, e.g. `bash -c "a && b"`) there is
    none, and the common case costs a scan of the text. Otherwise the events are read, not
    composed. Should this guess ever be fooled, bounded.check_tree still refuses what an
    alias shares, and the loader refuses merge keys: nothing is ever expanded."""
    if "&" not in text or "*" not in text:
        return
    import re

    if "&" not in re.sub(_DOUBLE_QUOTED, "", text):
        return
    import yaml

    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            mark = event.start_mark
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise errors.ManifestError(
                f"{source} uses a YAML alias (*{event.anchor}){where}",
                hint="repro reads plain YAML without aliases (a few lines of them expand to "
                     "gigabytes); write the value out")


def read_yaml_file(path: Path, limit: int = bounded.MANIFEST_MAX) -> Any:
    """Plain data from a YAML (or JSON) file: config, metrics, DVC files, conda-lock.

    A regular file of at most `limit` bytes (never a FIFO or a device), refused otherwise.
    """
    text = bounded.read_text(path, limit, errors.ManifestError)
    return loads(text, bounded.show_path(path))


def sync(path: Path) -> None:
    """fsync a file written with `durable=False` (its rename is already done)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str, durable: bool = True) -> None:
    """Temp file in the same directory, flush, fsync, rename: readers see old or new, never half."""
    fd, tmp = _mkstemp(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp)
        raise


def _mkstemp(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """tempfile.mkstemp's file (new, mode 0600, not inherited) without importing tempfile
    and random on `repro run`'s hot path (~1 ms)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no usable temporary file name found", str(folder))


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, *_: object) -> bool:
        return et is not None and issubclass(et, OSError)


def _reason(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


