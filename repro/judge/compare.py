"""Two run manifests (`Manifest` objects) -> a structured, section-by-section report of what
differs.

Owns: the diff engine behind `repro diff` and which per-run facts are noise; the one-line
verdict is in judge/diffline.py. Metric tolerance (`Tolerance`, `within`, `metric_status`),
which `verify` reuses, lives in judge/tolerance.py and is re-exported here.
Must not: read files, run git, print, import rich or yaml. Callers load manifests, listings and
the list of files changed between commits, and pass them in.

Noise rules (shown as `info`, never counted as a difference):
- run-level facts: run id, name, tags, note, timestamps, duration, pid, replay_of,
  repro_version (repro itself is compared through `environment.packages`);
- `hardware.host` (from `run.host`), GPU UUIDs (which physical card of the same model);
- run-directory and install paths: listing file names of hashed directories, the patch file
  name, `untracked[].copied`, `metrics.series`/`metrics.source`, `environment.python.executable`,
  `environment.interpreter_source`, `environment.lockfile.path` (its hash is compared),
  `metrics.warnings`, and the
  hook directory repro prepends to an injected `PYTHONPATH`;
- labels that do not change the code: `code.branch`, `code.remote`, `seed.source`;
- injected variables that carry the seed (`REPRO_SEED`, `PYTHONHASHSEED`, ...): they follow
  `seed.value`, which is where a seed change is reported;
- `determinism.hook.processes`: how many Python processes ran the hook. It is an observation,
  not an input: torch.compile worker pools are sized by the CPU count and skipped on a warm
  cache. What *is* recipe (a DataLoader's `num_workers`) lives in the argv, code or config,
  which are compared.

Metric changes within tolerance are listed with `within_tolerance: true` and not counted.
What an earlier repro did not look for (`environment.container`, `.conda`, `.native`: absent
from its record, where a later one writes null for "looked, none") is info with
`not_recorded: a|b`, never counted: upgrading repro is not a change of environment.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from repro import errors
from repro.judge import breadth
from repro.judge.diffline import RESULT_FIELDS as _RESULT_FIELDS
from repro.judge.diffline import verdict as _verdict
from repro.judge.tolerance import Tolerance as Tolerance
from repro.judge.tolerance import is_number as is_number
from repro.judge.tolerance import metric_delta as metric_delta
from repro.judge.tolerance import metric_status as metric_status
from repro.judge.tolerance import parse_metric_tolerance as parse_metric_tolerance
from repro.judge.tolerance import same_value as _same
from repro.judge.tolerance import within as within
from repro.record.fields import Record
from repro.record.schema import Code, FileEntry, Manifest, Metrics, Patch, Untracked

if TYPE_CHECKING:
    from repro.judge.hydra import Aligned

SCHEMA = "repro/diff/v1"
RUN_SCHEMA = "repro/run/v1"
SECTIONS: tuple[str, ...] = (
    "params", "command", "seed", "determinism", "code", "environment", "hardware", "topology",
    "data", "outputs", "metrics",
)

ChangeKind = Literal["added", "removed", "changed"]
Listing = Mapping[str, Sequence[Any]]  # relpath -> (hash, size); JSON's lists are accepted

# Per section: keys (fnmatch patterns over the dotted key) that are per-run noise.
_NOISE: Mapping[str, tuple[str, ...]] = {
    "params": (),  # where a value came from is shown as info by judge/paramdiff.py
    "command": (),
    "seed": ("source",),
    "determinism": ("hook.processes",),
    "code": ("branch", "remote", "patch.file"),
    # conda's prefix and name, a container's instance id and how its image was found: where
    # and how, not what (the packages and the image are compared).
    "environment": ("python.executable", "interpreter_source", "lockfile.path", "conda.prefix",
                    "conda.name", "conda.source", "container.id", "container.name",
                    "container.source", "container.path", "container.engine"),
    "hardware": ("host", "gpus.*.uuid"),
    "topology": ("job", "members.*.host"),  # every job has its own id and hosts
    "data": (),
    "outputs": (),
    "metrics": ("source", "series", "warnings"),  # steps is counted: a different run length
}
_SEED_VARS = ("REPRO_SEED", "PYTHONHASHSEED", "PL_GLOBAL_SEED")
# Keys a later repro records that an earlier one did not look for. Each is written whenever it
# was looked for (null: looked, nothing found: no container, no conda environment, no numeric
# library loaded), so a key absent from one record means "not recorded" there: shown as info,
# never counted (an upgrade of repro is not a change of environment).
_LATER: Mapping[str, tuple[str, ...]] = {"environment": ("container", "conda", "native")}


# ---------------------------------------------------------------------------------------------
# The report.


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference: `key` (dotted, or a path / package / metric name), the a and b values.

    `a`/`b` are None where the key is absent on that side (`kind` says added/removed).
    `noise` marks per-run facts (listed in a section's `info`, never counted).
    `within_tolerance` is set for numeric metric changes only; a change within tolerance is
    not counted either. `detail` holds what helps explain it (files, deltas) and is merged into the
    change's JSON object.
    """

    key: str
    a: Any
    b: Any
    kind: ChangeKind = "changed"
    within_tolerance: bool | None = None
    detail: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    noise: bool = False

    @property
    def counted(self) -> bool:
        return not self.noise and self.within_tolerance is not True

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "kind": self.kind, "a": _jsonable(self.a),
                             "b": _jsonable(self.b), "counted": self.counted}
        if self.within_tolerance is not None:
            d["within_tolerance"] = self.within_tolerance
        d.update(_jsonable(dict(self.detail)))
        return d


@dataclasses.dataclass(frozen=True)
class Section:
    """One manifest section: its differences (`changes`) and per-run noise (`info`)."""

    name: str
    changes: tuple[Change, ...] = ()
    info: tuple[Change, ...] = ()

    @property
    def changed(self) -> bool:
        return any(c.counted for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "changes": [c.to_dict() for c in self.changes],
                "info": [c.to_dict() for c in self.info]}


@dataclasses.dataclass(frozen=True)
class DiffReport:
    """What differs between runs `a` and `b`, section by section, and a one-line verdict."""

    a: str | None
    b: str | None
    sections: Mapping[str, Section]
    verdict: str
    info: tuple[Change, ...] = ()  # run-level noise: ids, timestamps, durations, pids
    fingerprint_a: str | None = None
    fingerprint_b: str | None = None
    tolerance: Tolerance = dataclasses.field(default_factory=Tolerance)

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.sections.values())

    @property
    def same_fingerprint(self) -> bool | None:
        """Equal fingerprints: the same recipe. None when either run has none."""
        if self.fingerprint_a is None or self.fingerprint_b is None:
            return None
        return self.fingerprint_a == self.fingerprint_b

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "a": self.a,
            "b": self.b,
            "changed": self.changed,
            "verdict": self.verdict,
            "fingerprint": {"a": self.fingerprint_a, "b": self.fingerprint_b,
                            "same": self.same_fingerprint},
            "tolerance": self.tolerance.to_dict(),
            "info": [c.to_dict() for c in self.info],
            "sections": {name: s.to_dict() for name, s in self.sections.items()},
        }


def select_sections(names: Iterable[str]) -> tuple[str, ...]:
    """Validate `--section` names; no names means all, in display order."""
    wanted = [n.strip() for n in names if n.strip()]
    unknown = [n for n in wanted if n not in SECTIONS]
    if unknown:
        raise errors.UsageError(f"unknown section {unknown[0]!r}",
                                hint=f"sections are: {', '.join(SECTIONS)}")
    return tuple(s for s in SECTIONS if s in wanted) if wanted else SECTIONS


# ---------------------------------------------------------------------------------------------
# The engine.


def diff_runs(
    a: Manifest,
    b: Manifest,
    *,
    code_files: Sequence[tuple[str, str]] = (),
    listings_a: Mapping[str, Listing] = {},  # read-only, never mutated
    listings_b: Mapping[str, Listing] = {},
    tolerance: Tolerance = Tolerance(),  # frozen: safe as a default
) -> DiffReport:
    """Compare two manifests.

    `code_files`: (git status, path) pairs of the files that differ between a's and b's
    commits, e.g. `("M", "train.py")`; used only when the commits differ.
    `listings_a`/`listings_b`: per hashed directory, relpath -> (hash, size), keyed by the
    entry's listing file name (`data/0.json`, unambiguous) or by the directory path.
    """
    sections: dict[str, Section] = {}
    for name in SECTIONS:
        if name == "params":
            from repro.judge import paramdiff

            changes, info = paramdiff.diff(a.params.to_dict(), b.params.to_dict())
        elif name == "code":
            changes, info = _diff_code(a.code, b.code, code_files)
        elif name == "data":
            changes, info = _diff_paths(a.data, b.data, listings_a, listings_b)
        elif name == "outputs":
            from repro.judge import hydra

            changes, info = _diff_paths(a.outputs, b.outputs, listings_a, listings_b,
                                        hydra_jobs=hydra.job_names(b.command.argv)
                                        | hydra.job_names(a.command.argv))
        elif name == "metrics":
            changes, info = _diff_metrics(a.metrics, b.metrics, tolerance)
        elif name == "environment":  # conda packages one change each, as pip's are
            ea, eb = _plain_section(a, name), _plain_section(b, name)
            unrecorded = _not_recorded(ea, eb, _LATER["environment"])
            ea = {k: v for k, v in ea.items() if k not in unrecorded}
            eb = {k: v for k, v in eb.items() if k not in unrecorded}
            conda, pa, pb = breadth.split_conda(ea, eb)
            changes, info = _split(name, _walk_section(name, pa, pb))
            changes = [_change(k, x, y) for k, x, y in conda] + changes
            info += unrecorded.values()
        else:
            changes, info = _split(name, _walk_section(name, _plain_section(a, name),
                                                       _plain_section(b, name)))
            if name == "determinism":
                changes, info = _determinism_noise(changes, info, a.seed.value, b.seed.value)
            if name == "command":
                changes, info = _rendezvous_noise(changes, info, a.command.argv,
                                                  b.command.argv)
        sections[name] = Section(name, _sorted(changes), _sorted(info))

    run_a, run_b = dataclasses.asdict(a.run), dataclasses.asdict(b.run)
    run_info = [
        _change(k, run_a[k], run_b[k], noise=True)
        for k in sorted(run_a)
        if k not in (*_RESULT_FIELDS, "host") and not _same(run_a[k], run_b[k])
    ]
    fp_a, fp_b = a.fingerprint, b.fingerprint
    has_results = any(m.outputs or m.metrics.to_dict() for m in (a, b))
    return DiffReport(
        a=a.run_id,
        b=b.run_id,
        sections=sections,
        verdict=_verdict(sections, fp_a, fp_b, has_results,
                         params_explain_command=_params_explain(a, b, sections["params"])),
        info=tuple(run_info),
        fingerprint_a=fp_a,
        fingerprint_b=fp_b,
        tolerance=tolerance,
    )


def _params_explain(a: Manifest, b: Manifest, params: Section) -> bool:
    """The command lines differ in parameters alone (none of them read ambiguously)."""
    from repro.judge import paramdiff

    return paramdiff.explains_command(a.params.to_dict(), b.params.to_dict()) and not any(
        paramdiff.is_ambiguous(c.a) or paramdiff.is_ambiguous(c.b) for c in params.changes)


def _plain_section(m: Manifest, name: str) -> dict[str, Any]:
    """A section as plain data for the structural walk: command with how the run ended,
    hardware with the host."""
    if name == "command":
        return {"argv": list(m.command.argv), "cwd": m.command.cwd,
                **{k: getattr(m.run, k) for k in _RESULT_FIELDS}}
    if name == "seed":
        return {"value": m.seed.value, "source": m.seed.source}
    if name == "hardware":
        return {**m.hardware.to_dict(), "host": m.run.host}
    if name == "topology":  # the nodes and ranks a run spread over (judge/members.py)
        from repro.judge import members

        return members.topology(m.distributed)
    section: Record = getattr(m, name)
    return section.to_dict()




def _not_recorded(a: Mapping[str, Any], b: Mapping[str, Any],
                  keys: Sequence[str]) -> dict[str, Change]:
    """Keys one record has and the other never wrote, as info changes (`not_recorded` names
    the side that lacks it)."""
    out: dict[str, Change] = {}
    for key in keys:
        if (key in a) != (key in b):
            side = "b" if key in a else "a"
            # the side that lacks it is None; kind says which (its other side may be null)
            out[key] = Change(key=key, a=a.get(key), b=b.get(key),
                              kind="removed" if side == "b" else "added",
                              detail={"not_recorded": side}, noise=True)
    return out


def _kind(a: Any, b: Any) -> ChangeKind:
    if a is None:
        return "added"
    if b is None:
        return "removed"
    return "changed"


def _change(key: str, a: Any, b: Any, *, noise: bool = False, **detail: Any) -> Change:
    return Change(key=key, a=a, b=b, kind=_kind(a, b), detail=detail, noise=noise)


def _walk(a: Any, b: Any, prefix: str, out: list[tuple[str, Any, Any]]) -> None:
    """Leaves that differ, as dotted keys; a missing mapping on one side is an empty one."""
    if (isinstance(a, Mapping) or isinstance(b, Mapping)) and \
            (a is None or isinstance(a, Mapping)) and (b is None or isinstance(b, Mapping)):
        ma: Mapping[Any, Any] = a or {}
        mb: Mapping[Any, Any] = b or {}
        for k in ma.keys() | mb.keys():
            _walk(ma.get(k), mb.get(k), f"{prefix}.{k}" if prefix else str(k), out)
        return
    if not _same(a, b):
        out.append((prefix, a, b))


def _walk_section(name: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    if name == "hardware":  # GPUs by index: "gpus.0.name"; an added GPU is one change
        a, b = dict(a), dict(b)
        ga, gb = _seq(a.pop("gpus", None)), _seq(b.pop("gpus", None))
        extra = [_change(f"gpus.{i}", _get(ga, i), _get(gb, i))
                 for i in range(min(len(ga), len(gb)), max(len(ga), len(gb)))]
        a["gpus"] = dict(enumerate(ga[:len(gb)]))
        b["gpus"] = dict(enumerate(gb[:len(ga)]))
    else:
        extra = []
    out: list[tuple[str, Any, Any]] = []
    _walk(a, b, "", out)
    return [_change(k, x, y) for k, x, y in out] + extra


def _seq(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _get(seq: Sequence[Any], i: int) -> Any:
    return seq[i] if i < len(seq) else None


def _is_noise(section: str, key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pat) for pat in _NOISE[section])


def _split(section: str, changes: Iterable[Change]) -> tuple[list[Change], list[Change]]:
    counted: list[Change] = []
    info: list[Change] = []
    for c in changes:
        if _is_noise(section, c.key):
            info.append(dataclasses.replace(c, noise=True))
        else:
            counted.append(c)
    return counted, info


def _sorted(changes: Iterable[Change]) -> tuple[Change, ...]:
    # Sorted by key: the same order whichever run is `a`.
    return tuple(sorted(changes, key=lambda c: c.key))


def _determinism_noise(changes: list[Change], info: list[Change], seed_a: Any, seed_b: Any,
                       ) -> tuple[list[Change], list[Change]]:
    """Injected variables that follow the seed, and repro's hook directory, are not counted."""
    counted: list[Change] = []
    for c in changes:
        var = c.key.removeprefix("env.")
        if c.key.startswith("env.") and var in _SEED_VARS and seed_a is not None and \
                seed_b is not None and c.a == str(seed_a) and c.b == str(seed_b):
            info.append(dataclasses.replace(c, noise=True, detail={"follows": "seed.value"}))
        elif c.key == "env.PYTHONPATH" and isinstance(c.a, str) and isinstance(c.b, str) and \
                c.a.split(":")[1:] == c.b.split(":")[1:]:
            # repro prepends its hook directory, whose path depends on where repro is installed
            info.append(dataclasses.replace(c, noise=True, detail={"follows": "hook directory"}))
        else:
            counted.append(c)
    return counted, info


def _rendezvous_noise(changes: list[Change], info: list[Change], argv_a: Sequence[str],
                      argv_b: Sequence[str]) -> tuple[list[Change], list[Change]]:
    """Command lines that differ only in the launcher's rendezvous options (torchrun's
    `--rdzv-id`, `--master-port`, ...: each job has its own) ran the same command."""
    from repro.capture import cmdline

    if not any(c.key == "argv" for c in changes) or \
            cmdline.without_rendezvous(argv_a) != cmdline.without_rendezvous(argv_b):
        return changes, info
    moved = [dataclasses.replace(c, noise=True, detail={"follows": "launcher rendezvous"})
             for c in changes if c.key == "argv"]
    return [c for c in changes if c.key != "argv"], [*info, *moved]


def _diff_code(code_a: Code, code_b: Code,
               code_files: Sequence[tuple[str, str]]) -> tuple[list[Change], list[Change]]:
    special: list[Change] = []
    info: list[Change] = []
    if code_a.commit != code_b.commit:
        files = [{"status": str(s), "path": str(p)} for s, p in code_files]
        special.append(_change("commit", code_a.commit, code_b.commit, files=files))

    pa, pb = _patch(code_a.patch), _patch(code_b.patch)
    if not _same(pa, pb):
        special.append(_change("patch", pa, pb))

    ua, ub = _untracked(code_a.untracked), _untracked(code_b.untracked)
    if ua != ub:
        ka, kb = ua.keys(), ub.keys()
        groups = {"added": sorted(kb - ka), "removed": sorted(ka - kb),
                  "modified": sorted(k for k in ka & kb if ua[k] != ub[k])}
        special.append(Change("untracked", sorted(ka), sorted(kb), "changed",
                              detail={"files": groups}))

    rest_a = {"branch": code_a.branch, "remote": code_a.remote, "dirty": code_a.dirty,
              **({"submodules": [s.to_dict() for s in code_a.submodules]}
                 if code_a.submodules else {})}
    rest_b = {"branch": code_b.branch, "remote": code_b.remote, "dirty": code_b.dirty,
              **({"submodules": [s.to_dict() for s in code_b.submodules]}
                 if code_b.submodules else {})}
    counted, noise = _split("code", _walk_section("code", rest_a, rest_b))
    return special + counted, info + noise


def _patch(patch: Patch | None) -> dict[str, Any] | None:
    """A patch compares by hash; its file name is the same in every run directory."""
    if patch is None:
        return None
    return {k: v for k, v in patch.to_dict().items() if k != "file"}


def _untracked(untracked: Sequence[Untracked]) -> dict[str, tuple[Any, Any]]:
    # `copied` is where repro kept a copy: not a difference
    return {str(u.path): (u.hash, u.size) for u in untracked}


def _diff_paths(a: Mapping[str, FileEntry], b: Mapping[str, FileEntry],
                listings_a: Mapping[str, Listing], listings_b: Mapping[str, Listing],
                hydra_jobs: frozenset[str] | None = None) -> tuple[list[Change], list[Change]]:
    """data/outputs: one change per path, with the files that differ inside a directory.
    `hydra_jobs` (outputs only): the Hydra job names of the two command lines, for
    _hydra_only; None for inputs, which are compared as they are."""
    changes: list[Change] = []
    info: list[Change] = []
    for path in a.keys() | b.keys():
        ea, eb = a.get(path), b.get(path)
        ca, cb = _entry(ea), _entry(eb)
        if not _same(ca, cb):
            detail: dict[str, Any] = {}
            la, lb = _listing(listings_a, ea, path), _listing(listings_b, eb, path)
            if la is not None and lb is not None:
                why = None
                if hydra_jobs is None:
                    detail["files"] = diff_listing(la, lb)
                else:  # files by their place in Hydra's run directory
                    from repro.judge import hydra

                    aligned = hydra.align(la, lb)
                    detail["files"] = diff_listing(la, aligned.listing)
                    why = _hydra_only(la, aligned, detail["files"], hydra_jobs)
                if why is not None:  # the same results under Hydra's clock-named directory
                    info.append(_change(str(path), ca, cb, noise=True, files=detail["files"],
                                        hydra=why))
                    continue
            if ea is not None and eb is not None:
                moved = breadth.stats_change(ea.stats, eb.stats)
                if moved is not None:
                    detail["stats"] = moved
            changes.append(_change(str(path), ca, cb, **detail))
        listing_a = ea.listing if ea is not None else None
        listing_b = eb.listing if eb is not None else None
        if listing_a != listing_b and ea is not None and eb is not None:
            info.append(_change(f"{path}.listing", listing_a, listing_b, noise=True))
    return changes, info


def _hydra_only(a: Listing, aligned: Aligned, files: Mapping[str, list[str]],
                jobs: frozenset[str]) -> str | None:
    """What explains two listings that differ only by a Hydra run directory's name, Hydra's
    own record of the job in it and its job log (a log, as in verify: judge/hydra.py); None
    when anything else differs. `aligned`: hydra.align(a, b); `files`: a against it."""
    from repro.judge import hydra

    if not aligned.dirs or files["added"] or files["removed"]:
        return None
    logs = hydra.job_logs(a, aligned.dirs, jobs)
    if any(hydra.own(rel, aligned.dirs, logs) is None for rel in files["modified"]):
        return None
    parts = []
    if aligned.moved is not None:
        parts.append(f"Hydra's run directory {aligned.moved[0]} → {aligned.moved[1]} (named "
                     "by the clock)")
    records = [r for r in files["modified"] if r not in logs]
    if records:
        parts.append("Hydra's own record of the job differs (" + ", ".join(
            records[:3]) + (", …" if len(records) > 3 else "") + ")")
    if changed_logs := [r for r in files["modified"] if r in logs]:
        parts.append("Hydra's job log differs (" + ", ".join(changed_logs[:3]) + (
            ", …" if len(changed_logs) > 3 else "") + "): a log, not a result; verify "
            "shows where")
    return "; ".join(parts) + "; every other file in it is identical"


def _entry(entry: FileEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    if entry.stale is True:  # a file the run did not write: only that is compared
        return {"kind": entry.kind, "stale": True}
    # A directory's `stale` count says what an earlier run left there: not this run's.
    # Statistics follow the content (its hash): they explain a change, never make one.
    return {k: v for k, v in entry.to_dict().items() if k not in ("listing", "stale", "stats",
                                                                "replaced")}


def _listing(listings: Mapping[str, Listing], entry: FileEntry | None,
             path: str) -> Listing | None:
    if entry is None or entry.kind != "dir":
        return None
    if entry.listing is not None and entry.listing in listings:
        return listings[entry.listing]
    return listings.get(path)


def diff_listing(a: Listing, b: Listing) -> dict[str, list[str]]:
    """Files added, removed and modified (by hash) between two directory listings, sorted."""
    # One pass over a, and over b only when it holds names a lacks: 100k files in ~20 ms.
    removed: list[str] = []
    modified: list[str] = []
    for k, v in a.items():
        w = b.get(k)
        if w is None:
            removed.append(k)
        elif w[0] != v[0]:
            modified.append(k)
    added = [k for k in b if k not in a] if len(b) > len(a) - len(removed) else []
    return {"added": sorted(added), "removed": sorted(removed), "modified": sorted(modified)}


def flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    """Nested metric mappings -> dotted names (`{"val": {"loss": 1}}` -> `val.loss`)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif prefix:
        out[prefix] = value


def _diff_metrics(a: Metrics, b: Metrics, tol: Tolerance) -> tuple[list[Change], list[Change]]:
    """Final metrics by name (nested mappings flattened to `val.loss`), with deltas."""
    fa: dict[str, Any] = {}
    fb: dict[str, Any] = {}
    flatten(a.final, "", fa)
    flatten(b.final, "", fb)
    changes: list[Change] = []
    for name in fa.keys() | fb.keys():
        x, y = fa.get(name), fb.get(name)
        status = metric_status(x, y, tol, name)
        if status == "same":
            continue
        if status == "missing" or not (is_number(x) and is_number(y)):
            changes.append(_change(name, x, y))
            continue
        delta, rel = metric_delta(float(x), float(y))  # type: ignore[arg-type]
        changes.append(Change(name, x, y, "changed", within_tolerance=status == "within-tolerance",
                              detail={"delta": delta, "rel_delta": rel}))
    rest_a = {k: v for k, v in a.to_dict().items() if k != "final"}
    rest_b = {k: v for k, v in b.to_dict().items() if k != "final"}
    counted, info = _split("metrics", _walk_section("metrics", rest_a, rest_b))
    return changes + counted, info


def _jsonable(value: Any) -> Any:
    """JSON-safe plain data: non-finite floats as "nan"/"inf"/"-inf" (JSON has no NaN)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
