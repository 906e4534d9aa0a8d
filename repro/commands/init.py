"""`repro init`: a starter repro.yaml from what the project has; `.repro/`, the results
(outputs, metrics file) and the data directories git does not track in .gitignore.

Writes only those two files; never prints.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from repro import errors
from repro.capture import git, lockfiles
from repro.record import config, manifest, store

DATA_DIRS = ("data", "datasets")
OUTPUT_DIRS = ("outputs", "checkpoints", "models", "results")
METRIC_FILES = ("metrics.json", "metrics.yaml", "outputs/metrics.json", "results/metrics.json")


@dataclasses.dataclass(frozen=True)
class InitResult:
    config_path: Path
    config_text: str
    gitignore_updated: bool
    found: dict[str, object]
    ignored: tuple[str, ...] = ()  # the lines added to .gitignore


def init(cwd: Path, *, force: bool = False) -> InitResult:
    root = store.find_root(cwd)
    target = root / "repro.yaml"
    if target.exists() and not force:
        raise errors.ConfigError(f"{target.name} already exists",
                                 hint="edit it, or pass --force to overwrite it")
    found: dict[str, object] = {}
    lock = lockfiles.find_lockfile(root, None)
    data = [d + "/" for d in DATA_DIRS if (root / d).is_dir()]
    outputs = [d + "/" for d in OUTPUT_DIRS if (root / d).is_dir()]
    hydra = _uses_hydra(root, lock)
    if hydra:  # Hydra writes outputs/DATE/TIME/ on the first run, which init comes before
        found["hydra"] = True
        # ... and a sweep (`-m`) writes multirun/DATE/TIME/ instead: both are the results
        for d in ("multirun/", "outputs/"):
            if d not in outputs:
                outputs.insert(0, d)
    metrics = next((m for m in METRIC_FILES if (root / m).is_file()), None)
    lines = [*_key_comment(), "# Command-line flags override these settings.", ""]
    if lock is not None:
        found["lockfile"] = lock.relative_to(root).as_posix()
        lines.append(f"lockfile: {found['lockfile']}")
    else:
        lines.append("# lockfile: requirements.lock   # none found: `pip freeze > requirements.lock`")
    lines.append("determinism: strict   # off | seed | warn | strict")
    lines.append("seed: 42              # every run's seed, so runs repeat; --seed N varies it")
    for key, values in (("data", data), ("outputs", outputs)):
        if values:
            found[key] = values
            lines.append(f"{key}: [{', '.join(values)}]")
        else:
            example = "data/" if key == "data" else "checkpoints/"
            lines.append(f"# {key}: [{example}]")
    if metrics:
        found["metrics"] = metrics
        lines.append(f"metrics: {metrics}")
    else:
        lines.append("# metrics: metrics.json  # a JSON/YAML mapping of final metrics")
    lines += ["tolerance:             # what verify and diff accept as the same metric",
              "  rtol: 0.0", "  atol: 0.0",
              "# remote: s3://BUCKET/PREFIX  # where repro push/pull go (or file:///PATH)", ""]
    text = "\n".join(lines)
    manifest.loads(text, target.name)  # what we write must parse
    manifest.write_text_atomic(target, text)
    # Results are produced by runs, never committed: the outputs and metrics file found, or
    # the ones suggested above, so that a run's results are not the next run's dirt.
    results = [*(outputs or ["checkpoints/"]), metrics or "metrics.json"]
    # A data directory git tracks nothing of is hashed as an input on every run; left
    # untracked and not ignored, its files would make the first run refuse a dirty tree.
    untracked_data = [d for d in data if not git.is_tracked(root, d.rstrip("/"))]
    added = _ignore(root, [".repro/", *results, *untracked_data])
    return InitResult(target, text, bool(added), found, tuple(added))


HYDRA_SCAN_FILES = 200  # Python files read for Hydra (top level and two folders down)
HYDRA_SCAN_BYTES = 256 * 1024
_HYDRA_IMPORT = re.compile(rb"^\s*(?:import hydra\b|from hydra\b)", re.MULTILINE)


def _uses_hydra(root: Path, lock: Path | None) -> bool:
    """The project is a Hydra app: a `@hydra.main` in a Python file at the top or up to two
    folders down (bounded reads), or hydra-core in its lockfile and one of those files
    importing hydra. hydra-core in a `pip freeze` of a shared environment alone is not one:
    its `outputs/` and `multirun/` would be listed as missing outputs of every run."""
    locked = False
    if lock is not None:
        try:
            with lock.open("rb") as f:
                locked = b"hydra-core" in f.read(8 * 1024 * 1024).lower()
        except OSError:
            pass
    from repro.commands.runresults import bounded_glob

    # bounded walks (a data folder of a million files is not listed), hidden folders skipped
    scripts = [root / rel for pattern in ("*.py", "*/*.py", "*/*/*.py")
               for rel in bounded_glob(root, pattern)][:HYDRA_SCAN_FILES]
    for script in scripts:
        try:
            with script.open("rb") as f:
                head = f.read(HYDRA_SCAN_BYTES)
        except OSError:
            continue
        if b"@hydra.main" in head or (locked and _HYDRA_IMPORT.search(head)):
            return True
    return False


def _key_comment(width: int = 92) -> list[str]:
    """`# repro configuration (keys: ...)`, every key the configuration takes, wrapped."""
    import textwrap

    text = f"repro configuration (keys: {', '.join(config.key_names())})."
    return ["# " + line for line in textwrap.wrap(text, width - 2)]


def _ignore(root: Path, entries: list[str]) -> list[str]:
    """Add each entry to .gitignore unless a line already names it; the entries added."""
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    have = {line.strip().strip("/") for line in text.splitlines()}
    missing = [e for e in entries if e.strip("/") not in have]
    if not missing:
        return []
    sep = "" if not text or text.endswith("\n") else "\n"
    path.write_text(text + sep + "".join(f"{e}\n" for e in missing), encoding="utf-8")
    return missing
