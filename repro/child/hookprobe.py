"""Reads what the hook wrote into a run's probe directory: the manifest's `determinism.hook`.

Owns the reading side of the hook's files (marker and probe JSON; the format is described in
repro/child/hook/sitecustomize.py) and the explanation when no process ran the hook. Pure reading of
files: it must not print, spawn processes, import the hook, or raise for a damaged probe (a
probe that cannot be read is reported in `errors`, so the manifest can still be written).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from repro.capture import cmdline

MARKER_SUFFIX = ".marker.json"
PROBE_SUFFIX = ".probe.json"
SEEDED_ORDER = ("random", "numpy", "torch", "tensorflow")
# The interpreter flags that keep sitecustomize from loading, strongest first.
DEFEATING_FLAGS = {
    "I": "python -I in the command: isolated mode ignores PYTHONPATH, so the hook never loaded",
    "E": "python -E in the command: it ignores PYTHON* variables, so PYTHONPATH never "
    "loaded the hook",
    "S": "python -S in the command: without the site module no sitecustomize runs, so the "
    "hook never loaded",
}
NO_PYTHON = (
    "no Python process ran the hook: the command started no Python interpreter, one that "
    "ignored PYTHONPATH, or one that could not write to the probe directory"
)


@dataclasses.dataclass(frozen=True)
class _Process:
    stem: str
    marker: dict[str, Any] | None
    probe: dict[str, Any] | None

    def field(self, key: str) -> Any:
        for source in (self.probe, self.marker):
            if source is not None and key in source:
                return source[key]
        return None

    def order(self) -> tuple[int, float, int]:
        depth, started, pid = self.field("depth"), self.field("started_at"), self.field("pid")
        return (
            depth if isinstance(depth, int) else 1_000_000,
            float(started) if isinstance(started, (int, float)) else float("inf"),
            pid if isinstance(pid, int) else 0,
        )


def summarize(hook_out: Path, argv: Sequence[str]) -> dict[str, Any]:
    """The manifest's `determinism.hook` mapping for a run whose hook wrote into `hook_out`.

    Keys: ran, reason (why not, when ran is false), processes (Python processes that ran the
    hook), finished (those that wrote their probe at exit), seeded, deterministic_algorithms
    (torch's setting at exit of the top-level process; null when torch was never imported),
    overridden (determinism settings the program switched back), script_seeds, rank_seeds,
    nondeterministic_error, errors, warnings. Nothing in it varies between identical runs
    (no pids, no times), so two runs' summaries can be compared directly.
    """
    processes, read_errors = _load(hook_out)
    flags = cmdline.interpreter_flags(argv)
    defeated = [DEFEATING_FLAGS[f] for f in DEFEATING_FLAGS if f in flags]
    finished = [p.probe for p in processes if p.probe is not None]
    warnings: list[str] = []
    if processes and defeated:
        warnings.append(f"{defeated[0]} for the command's own interpreter; only "
                        f"{len(processes)} process(es) it started ran the hook")
    unfinished = len(processes) - len(finished)
    if unfinished:
        warnings.append(f"{unfinished} of {len(processes)} hook process(es) ended without "
                        "writing their probe (killed by a signal, or os._exit)")
    top = _top(processes)
    return {
        "ran": bool(processes),
        "reason": None if processes else (defeated[0] if defeated else NO_PYTHON),
        "processes": len(processes),
        "finished": len(finished),
        "seeded": _ordered_union(p.get("seeded") for p in finished),
        "deterministic_algorithms": _deterministic(top, finished),
        "overridden": _ordered_union(p.get("overridden") for p in finished),
        "script_seeds": _unique(
            {key: seed.get(key) for key in ("call", "value", "caller")}
            for p in finished for seed in _dicts(p.get("script_seeds"))
        ),
        "rank_seeds": {
            str(p["rank"]): p.get("effective_seed")
            for p in sorted(finished, key=lambda p: _int(p.get("rank")))
            if isinstance(p.get("rank"), int)
        },
        "nondeterministic_error": next(
            (p["nondeterministic_error"] for p in finished if p.get("nondeterministic_error")),
            None,
        ),
        "errors": _unique(
            [*({"stage": e.get("stage"), "error": e.get("error")}
               for p in finished for e in _dicts(p.get("errors"))), *read_errors]
        ),
        "warnings": warnings,
    }


def top_probe(hook_out: Path) -> dict[str, Any] | None:
    """The probe of the top-level (depth 0) process: python, packages, package_sources, torch,
    threads. The earliest started one when the command ran several (a shell script), None when
    none finished (no hook, or the process was killed before exit)."""
    processes, _ = _load(hook_out)
    return _top(processes)


def _load(hook_out: Path) -> tuple[list[_Process], list[dict[str, Any]]]:
    markers: dict[str, dict[str, Any] | None] = {}
    probes: dict[str, dict[str, Any] | None] = {}
    errors: list[dict[str, Any]] = []
    try:
        names = sorted(entry.name for entry in os.scandir(hook_out))
    except FileNotFoundError:
        return [], []
    except OSError as e:
        return [], [{"stage": "read", "error": f"{hook_out}: {e.strerror or e}"}]
    for name in names:
        for suffix, found in ((MARKER_SUFFIX, markers), (PROBE_SUFFIX, probes)):
            if name.endswith(suffix):
                found[name[: -len(suffix)]] = _read_json(hook_out / name, errors)
    processes = [
        _Process(stem, markers.get(stem), probes.get(stem))
        for stem in sorted(markers.keys() | probes.keys())
    ]
    return sorted(processes, key=_Process.order), errors


PROBE_DEPTH = 16  # a probe is ~3 deep; what it holds is copied into the manifest


def _read_json(path: Path, errors: list[dict[str, Any]]) -> dict[str, Any] | None:
    # Written by the run's own processes: bounded like any file repro parses (a FIFO, a huge
    # or absurdly deep file is reported, never waited on or recursed into).
    from repro import errors as errors_mod
    from repro.record import bounded

    try:
        text = bounded.read_text(path, bounded.PROBE_MAX, errors_mod.DataError)
        data = json.loads(text)
        bounded.check_tree(data, path.name, errors_mod.DataError, max_depth=PROBE_DEPTH)
    except errors_mod.DataError as e:
        errors.append({"stage": "read", "error": f"{path.name}: unreadable ({e.message})"})
        return None
    except (ValueError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else bounded.reason(e)
        errors.append({"stage": "read", "error": f"{path.name}: unreadable ({why})"})
        return None
    if not isinstance(data, dict):
        errors.append({"stage": "read", "error": f"{path.name}: not a JSON object"})
        return None
    return data


def _top(processes: Sequence[_Process]) -> dict[str, Any] | None:
    for process in processes:  # sorted by depth, then start time
        if process.probe is not None and process.field("depth") == 0:
            return process.probe
    return None


def _deterministic(top: dict[str, Any] | None, finished: Sequence[dict[str, Any]]) -> bool | None:
    if top is not None and isinstance(top.get("deterministic_algorithms"), bool):
        return bool(top["deterministic_algorithms"])
    # The top-level process never imported torch (a launcher): judge by those that did.
    values = [p["deterministic_algorithms"] for p in finished
              if isinstance(p.get("deterministic_algorithms"), bool)]
    return all(values) if values else None


def _ordered_union(lists: Iterable[Any]) -> list[str]:
    seen: set[str] = set()
    for items in lists:
        if isinstance(items, list):
            seen.update(item for item in items if isinstance(item, str))
    known = [name for name in SEEDED_ORDER if name in seen]
    return known + sorted(seen - set(known))


def _unique(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for item in items:
        if item not in result:
            result.append(item)
    return result


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0
