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
    (Hydra's default; a module's last part with `python -m pkg.app`), or a `hydra.job.name=NAME`
    override. Its job log is `<name>.log`; job_logs also finds one named elsewhere."""
    names = set()
    for i, word in enumerate(argv):
        if word.endswith(".py"):
            names.add(posixpath.basename(word)[:-3])
        elif word == "-m" and i + 1 < len(argv):
            names.add(argv[i + 1].rsplit(".", 1)[-1])
        elif word.startswith(("hydra.job.name=", "++hydra.job.name=", "+hydra.job.name=")):
            names.add(word.partition("=")[2])
    return frozenset(n for n in names if n)


def job_logs(listing: Mapping[str, Any], hydra_dirs: set[str],
             jobs: Collection[str]) -> frozenset[str]:
    """The job logs in a listing: in each Hydra run directory, the `<job>.log` of a job name
    from the command line (job_names). Any other log, a `results.log` the script writes
    beside Hydra's, or a job named only in a config file, is compared as a result: better a
    difference shown than one hidden."""
    found: set[str] = set()
    for d in hydra_dirs:
        prefix = d + "/" if d else ""
        found.update(r for r in listing if r.startswith(prefix) and r.endswith(".log")
                     and "/" not in r[len(prefix):] and r[len(prefix):-4] in jobs)
    return frozenset(found)


def own(rel: str, hydra_dirs: set[str], logs: Collection[str] = ()) -> str | None:
    """Why a differing file of a Hydra directory is Hydra's own, not a result (None when it is
    not): `.hydra/hydra.yaml` and a sweep's `multirun.yaml` (the run's directories), and
    JOB_LOG for the job log (`logs`: see job_logs), which verify and diff treat as a log."""
    if rel in logs:
        return JOB_LOG
    for d in hydra_dirs:
        inside = rel[len(d) + 1:] if d and rel.startswith(d + "/") else rel if not d else None
        if inside in (".hydra/hydra.yaml", SWEEP):
            return (f"Hydra's record of the {'sweep' if inside == SWEEP else 'job'} (it "
                    "holds the run's directory and working directory): not compared byte for "
                    "byte")
    return None


JOB_LOG = "Hydra's job log"
# A log line's clock: Hydra's default `[2026-12-01 15:02:41,123]`, or a format's bare
# `2026-12-01 15:02:41,123` / ISO `2026-12-01T15:02:41.123`, at the start of a line.
_CLOCK = re.compile(rb"^\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[,.]\d+)?\]?", re.MULTILINE)


def first_difference(a: bytes, b: bytes) -> tuple[int, str, str] | None:
    """Where two logs first differ once their lines' clock times are set aside: (line number,
    a's line, b's line), or None when they say the same."""
    la = _CLOCK.sub(b"", a).splitlines()
    lb = _CLOCK.sub(b"", b).splitlines()
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else None
        y = lb[i] if i < len(lb) else None
        if x != y:
            def show(line: bytes | None) -> str:
                return "(no line)" if line is None else \
                    repr(line.decode("utf-8", "replace").strip()[:120])
            return i + 1, show(x), show(y)
    return None
