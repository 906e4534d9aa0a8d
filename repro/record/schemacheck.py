"""The plain-data checks behind repro.record.schema's `from_dict`: required and optional keys
of a kind, choices, sections and commit ids, each refusing with one ManifestError that names
the file and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from repro import errors
from repro.record.yamlio import CORRUPT_HINT


def plain(value: Any) -> Any:
    """Mappings -> dict, tuples -> list, recursively: what the emitter writes."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def section(d: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = d.get(key)
    if not isinstance(value, Mapping):
        raise errors.ManifestError(f"{source}: section {key!r} is missing or not a mapping",
                                   hint=CORRUPT_HINT)
    return value


def commit(value: str, source: str) -> str:
    """A commit id goes to git as an argument: hex only, so a manifest cannot pass an option."""
    if not re.fullmatch(r"[0-9a-f]{1,64}", value):
        raise errors.ManifestError(f"{source}: 'commit' must be a hexadecimal commit id, "
                                   f"got {value[:80]!r}")
    return value


def req(d: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    value = d.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise errors.ManifestError(f"{source}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def opt(d: Mapping[str, Any], key: str, kind: type, source: str) -> Any:
    return None if d.get(key) is None else req(d, key, kind, source)


def opt_float(d: Mapping[str, Any], key: str, source: str) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise errors.ManifestError(f"{source}: {key!r} must be a number, got {value!r}")
    return float(value)


def opt_map(d: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise errors.ManifestError(f"{source}: {key!r} must be a mapping")
    return value


def choice(d: Mapping[str, Any], key: str, choices: tuple[str, ...], source: str) -> str:
    value = d.get(key)
    if value not in choices:
        raise errors.ManifestError(f"{source}: {key!r} is {value!r}, not one of {', '.join(choices)}")
    return str(value)
