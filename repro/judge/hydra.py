"""Hydra's run directories in output listings, for verify (judge/checks.py) and diff
(judge/compare.py).

Hydra names each job's run directory by the clock (`outputs/DATE/TIME/`, a sweep's
`multirun/DATE/TIME/` with one folder per job), so two runs of one recipe write the same files
under different names. Inside it, Hydra keeps its own record of the job, which differs by
nature: `.hydra/hydra.yaml` (a sweep's `multirun.yaml`) holds the run's directory and working
directory, the job log (`<job>.log`) clock times. Pure functions over listings
(relative path -> (hash, size)) and, for the job log, over the bytes verify reads.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

CONFIG = ".hydra/config.yaml"  # what makes a folder a Hydra job's run directory
SWEEP = "multirun.yaml"  # what makes a folder a Hydra sweep's (`-m`) directory


@dataclasses.dataclass(frozen=True)
class Aligned:
    listing: dict[str, Any]  # the second listing, its Hydra directory renamed to the first's
    renamed: dict[str, str]  # first's name -> second's name, for the files renamed
    dirs: set[str]  # the Hydra run and sweep directories both listings have (after renaming)
    moved: tuple[str, str] | None  # (first's directory, second's), when renamed


def dirs(listing: Mapping[str, Any]) -> set[str]:
    """The folders of a listing that are Hydra run or sweep directories ("" for the listed
    dir): a job's holds `.hydra/config.yaml`, a sweep's `multirun.yaml` and its jobs."""
    return {r[:-len(name)].rstrip("/") for r in listing for name in (CONFIG, SWEEP)
            if r == name or r.endswith("/" + name)}


def _outermost(found: set[str]) -> set[str]:
    """The folders of `found` not inside another one (a sweep's, not its jobs')."""
    return {d for d in found if not any(o != d and (o == "" or d.startswith(o + "/"))
                                        for o in found)}


def align(first: Mapping[str, Any], second: Mapping[str, Any]) -> Aligned:
    """When each listing has one outermost Hydra directory and their names differ, the
    second's files under it are renamed to the first's (a name both have is left alone)."""
    found_1, found_2 = dirs(first), dirs(second)
    top_1, top_2 = _outermost(found_1), _outermost(found_2)
    if len(top_1) != 1 or len(top_2) != 1 or top_1 == top_2 or "" in top_1 | top_2:
        return Aligned(dict(second), {}, found_1 & found_2, None)
    (d_1,), (d_2,) = top_1, top_2
    listing: dict[str, Any] = {}
    renamed: dict[str, str] = {}
    for rel, value in second.items():
        new = d_1 + rel[len(d_2):]
        if rel.startswith(d_2 + "/") and new not in second:
            renamed[new] = rel
            listing[new] = value
        else:
            listing[rel] = value
    return Aligned(listing, renamed, found_1 & dirs(listing), (d_1, d_2))


def job_names(argv: Sequence[str]) -> frozenset[str]:
    """The names Hydra gives a job of this command line: the script's file name without `.py`
    (Hydra's default), or a `hydra.job.name=NAME` override. Its job log is `<name>.log`."""
    names = set()
    for word in argv:
        if word.endswith(".py"):
            names.add(posixpath.basename(word)[:-3])
        elif word.startswith(("hydra.job.name=", "++hydra.job.name=", "+hydra.job.name=")):
            names.add(word.partition("=")[2])
    return frozenset(n for n in names if n)


def own(rel: str, hydra_dirs: set[str], jobs: Collection[str] = ()) -> str | None:
    """Why a differing file of a Hydra directory is Hydra's own record, not a result (None
    when it is not one of those): `.hydra/hydra.yaml`, a sweep's `multirun.yaml`, and
    (`jobs`: see job_names) the job log, for verify to compare without its clock times. Any
    other file, a `results.log` the script writes included, is a result."""
    for d in hydra_dirs:
        inside = rel[len(d) + 1:] if d and rel.startswith(d + "/") else rel if not d else None
        if inside in (".hydra/hydra.yaml", SWEEP):
            return (f"Hydra's record of the {'sweep' if inside == SWEEP else 'job'} (it "
                    "holds the run's directory and working directory): not compared byte for "
                    "byte")
        if inside is not None and inside.endswith(".log") and inside[:-4] in jobs:
            return JOB_LOG
    return None


JOB_LOG = "Hydra's job log"
# Hydra's default log format starts every line with the clock: `[2026-12-01 15:02:41,123]`.
_CLOCK = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]", re.MULTILINE)


def same_lines_but_clock(a: bytes, b: bytes) -> bool:
    """Two job logs that say the same, line for line, but for Hydra's clock prefix."""
    return _CLOCK.sub(b"[time]", a) == _CLOCK.sub(b"[time]", b)
