"""The machinery behind the manifest's typed sections: one validating reader per field kind,
and a `Record` base that reads a mapping into a frozen dataclass and writes it back unchanged.

Every section (repro.record.schema) declares each field once, `name: type = field(KIND)`;
`from_dict` validates and converts them, so a hand-edited manifest is one clear error at load
and never a crash later. Keys a section does not interpret stay in `extra` as plain data.
`to_dict` writes the keys in the order they were read (or, for a record built in code, in
declaration order, leaving out unset ones), so a manifest read and written again is the same
text byte for byte.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, TypeVar

from repro import errors

# Plain YAML data (str, int, float, bool, None, lists and string-keyed mappings of these): the
# type of the leaves that are free-form by nature (metric values, a package's source, extras).
Plain: TypeAlias = Any

R = TypeVar("R", bound="Record")
T = TypeVar("T")


class Kind:
    """How one field is read (`parse`: validate, convert) and written (`plain`)."""

    def __init__(self, name: str, parse: Callable[[Any, str, str], Any],
                 plain: Callable[[Any], Any] = lambda v: v, empty: Any = None) -> None:
        self.name = name
        self.parse = parse
        self.plain = plain
        self.empty = empty  # the value of an absent or null field


def _bad(where: str, source: str, what: str, value: Any) -> errors.ManifestError:
    return errors.ManifestError(f"{source}: {where} must be {what}, got {value!r:.60}")


def _scalar(what: str, types: tuple[type, ...]) -> Kind:
    def parse(value: Any, where: str, source: str) -> Any:
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise _bad(where, source, what, value)
        return value
    return Kind(what, parse)


STR = _scalar("a string", (str,))
INT = _scalar("an integer", (int,))
BOOL = _scalar("a boolean", (bool,))


def _any(value: Any, where: str, source: str) -> Any:
    return value


ANY = Kind("plain data", _any)


def _map(value: Any, where: str, source: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(where, source, "a mapping", value)
    return value


def _list(value: Any, where: str, source: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise _bad(where, source, "a list", value)
    return tuple(value)


MAP = Kind("a mapping", _map, lambda v: dict(v), {})
LIST = Kind("a list", _list, lambda v: list(v), ())


def _str_map(value: Any, where: str, source: str) -> Mapping[str, str]:
    for k, v in _map(value, where, source).items():
        if not isinstance(v, str):
            raise _bad(f"{where}[{str(k)!r}]", source, "a string", v)
    return {str(k): v for k, v in value.items()}


STR_MAP = Kind("a mapping", _str_map, lambda v: dict(v), {})


def record(cls: type[Record]) -> Kind:
    """A nested record (None when absent or null)."""
    def parse(value: Any, where: str, source: str) -> Any:
        return cls.from_dict(value, where, source)
    return Kind("a mapping", parse, lambda v: v.to_dict())


def records(cls: type[Record]) -> Kind:
    """A list of nested records: `gpus[0]`, `untracked[2]`."""
    def parse(value: Any, where: str, source: str) -> Any:
        return tuple(cls.from_dict(v, f"{where}[{i}]", source)
                     for i, v in enumerate(_list(value, where, source)))
    return Kind("a list", parse, lambda v: [r.to_dict() for r in v], ())


def record_map(cls: type[Record]) -> Kind:
    """A mapping of names to records: data/outputs entries keyed by path."""
    def parse(value: Any, where: str, source: str) -> Any:
        return {str(k): cls.from_dict(v, f"{where}[{str(k)!r}]", source)
                for k, v in _map(value, where, source).items()}
    return Kind("a mapping", parse, lambda v: {k: r.to_dict() for k, r in v.items()}, {})


def field(kind: Kind) -> Any:
    """A typed field of a record: absent/null reads as the kind's empty value."""
    if isinstance(kind.empty, dict):
        return dataclasses.field(default_factory=dict, metadata={"kind": kind})
    return dataclasses.field(default=kind.empty, metadata={"kind": kind})


_FIELDS: dict[type, Mapping[str, Kind]] = {}


def _fields_of(cls: type) -> Mapping[str, Kind]:
    if cls not in _FIELDS:
        _FIELDS[cls] = {f.name: f.metadata["kind"] for f in dataclasses.fields(cls)
                        if "kind" in f.metadata}
    return _FIELDS[cls]


def plain_methods(cls: type[T]) -> type[T]:
    """`__repr__`, `__eq__` and `__hash__` for a dataclass declared `repr=False, eq=False`,
    shared by every record instead of generated per class: the same meaning (fields with
    `compare`/`repr`, same class only), without the ~0.4 ms of `exec` each generated method
    costs at import, which `repro run` pays on its start-up (23 classes)."""
    cls.__repr__ = _repr  # type: ignore[method-assign]
    cls.__eq__ = _eq  # type: ignore[method-assign]
    cls.__hash__ = _hash  # type: ignore[method-assign]
    return cls


_COMPARED: dict[type, tuple[str, ...]] = {}
_SHOWN: dict[type, tuple[str, ...]] = {}


def _compared(cls: type) -> tuple[str, ...]:
    names = _COMPARED.get(cls)
    if names is None:
        names = _COMPARED[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.compare)
    return names


def _repr(self: Any) -> str:
    cls = type(self)
    names = _SHOWN.get(cls)
    if names is None:
        names = _SHOWN[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.repr)
    return f"{cls.__qualname__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")"


def _eq(self: Any, other: object) -> Any:  # bool, or NotImplemented
    if type(other) is not type(self):
        return NotImplemented
    return all(bool(getattr(self, n) == getattr(other, n)) for n in _compared(type(self)))


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, n) for n in _compared(type(self))))


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of every typed manifest section and sub-record.

    Subclasses are frozen dataclasses whose typed fields are declared with `field(KIND)` and
    named as their YAML keys; `extra`, `keys` and `nulls` are keyword-only.
    """

    # Keys the record does not interpret, as read (plain data).
    extra: Mapping[str, Plain] = dataclasses.field(default_factory=dict, kw_only=True)
    # The keys as read, in order, and those that were null: to write the same text back.
    keys: tuple[str, ...] = dataclasses.field(default=(), kw_only=True, compare=False,
                                              repr=False)
    nulls: frozenset[str] = dataclasses.field(default=frozenset(), kw_only=True,
                                              compare=False, repr=False)

    @classmethod
    def from_dict(cls: type[R], d: Any, where: str, source: str = "manifest") -> R:
        if not isinstance(d, Mapping):
            raise _bad(where, source, "a mapping", d)
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        nulls: set[str] = set()
        for key, value in d.items():
            kind = _fields_of(cls).get(key) if isinstance(key, str) else None
            if value is None:
                nulls.add(str(key))
            if kind is None:
                extra[key] = value
            elif value is not None:
                values[key] = kind.parse(value, f"{where}.{key}" if where else key, source)
        return cls(**values, extra=extra, keys=tuple(str(k) for k in d),
                   nulls=frozenset(nulls))

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the keys read, in their order, then fields set in code."""
        fields = _fields_of(type(self))
        out: dict[str, Any] = {}
        for key in self.keys:
            if key in fields:
                value = getattr(self, key)
                kind = fields[key]
                empty = value is None or (kind.empty is not None and not value)
                out[key] = None if empty and key in self.nulls else \
                    (None if value is None else kind.plain(value))
            elif key in self.extra:
                out[key] = self.extra[key]
            else:  # a non-string key, kept as read
                for k in self.extra:
                    if str(k) == key:
                        out[key] = self.extra[k]
        for key, kind in fields.items():
            value = getattr(self, key)
            if key not in out and value is not None and (kind.empty is None or value):
                out[key] = kind.plain(value)
        for k, v in self.extra.items():
            out.setdefault(str(k), v)
        return out

