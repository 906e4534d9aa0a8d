"""The manifest's `params` section: its sources read and merged (the parser is capture/params.py).

Four sources, later ones overriding earlier ones key by key:

1. configuration files: those in repro's config (`params_files`), then those named by an option
   of the command line (`--config configs/base.yaml`, `--cfg x.json`, `--hyp h.yaml`); YAML,
   JSON or TOML, nested keys flattened with dots (`model.depth`), source `file:<path>`;
2. the script's command line (capture/params.parse_argv), source `argv`;
3. Hydra's resolved `.hydra/config.yaml` when the run wrote one, source `hydra`;
4. what the script logged itself as a JSON mapping at `$REPRO_PARAMS_FILE`, source `script`.

Files are read through record/bounded.py (regular files only, size and depth bounded) and YAML
through record/yamlio's strict loader. A file that cannot be read never fails a run (it has
happened): it is a warning. Values of secret-named keys are recorded as salted hashes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from repro.capture.params import ArgvParams, flatten, parse_argv

SOURCE_ARGV = "argv"
SOURCE_HYDRA = "hydra"
SOURCE_SCRIPT = "script"
FILE_PREFIX = "file:"
PARAMS_FILE = "params.json"  # in the run directory; REPRO_PARAMS_FILE names it
ENV_VAR = "REPRO_PARAMS_FILE"
MAX_KEYS = 2000  # parameters kept per source: a vocabulary passed as --config is not params
FILE_MAX = 4 * 1024 * 1024  # bytes read of one configuration file (bounded.CONFIG_MAX)


class Collected(NamedTuple):
    section: dict[str, Any]
    warnings: list[str]


class Builder:
    """Parameters from several sources, each overriding the earlier ones key by key."""

    def __init__(self, parsed: ArgvParams,
                 redact: Callable[[str, Any], Any] | None = None) -> None:
        self.parsed = parsed
        self.redact = redact
        self.warnings: list[str] = []
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.ambiguous: dict[str, list[str]] = {}
        self.files: list[str] = []
        self.truncated: dict[str, int] = {}

    def add(self, values: Mapping[str, Any], source: str) -> None:
        items = list(values.items())
        if len(items) > MAX_KEYS:
            self.truncated[source] = len(items)
            items = items[:MAX_KEYS]
        for key, value in items:
            self.values[key] = value
            self.sources[key] = source
            self.ambiguous.pop(key, None)  # a file or the script says what it is

    def add_file(self, path: Path, shown: str, source: str, interpolate: bool = False) -> None:
        try:
            data = read_file(path)
        except _Unreadable as e:
            self.warnings.append(f"parameters not read from {shown}: {e}")
            return
        flat = flatten(data)
        self.add(_redacted(resolve_references(flat) if interpolate else flat, self.redact),
                 source)
        if source.startswith(FILE_PREFIX):
            self.files.append(shown)

    def add_argv(self) -> None:
        self.add(self.parsed.values, SOURCE_ARGV)
        for key, words in self.parsed.ambiguous.items():
            self.values.pop(key, None)
            self.sources.pop(key, None)
            self.ambiguous[key] = list(words)

    def section(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "values": dict(sorted(self.values.items())),
            "sources": dict(sorted(self.sources.items())),
            "ambiguous": dict(sorted(self.ambiguous.items())),
            "program": list(self.parsed.program),
            "args": list(self.parsed.args),
            "files": list(self.files),
        }
        if not self.parsed.parsed:
            out["parsed"] = False
        if self.truncated:
            out["truncated"] = dict(self.truncated)
        return out


def argv_section(recorded_argv: Sequence[str]) -> dict[str, Any]:
    """The section from the command line alone (what the `running` manifest holds)."""
    b = Builder(parse_argv(recorded_argv))
    b.add_argv()
    return b.section()


def collect(recorded_argv: Sequence[str], *, cwd: Path, root: Path,
            config_files: Sequence[str] = (), script_file: Path | None = None,
            hydra_since: float | None = None,
            redact: Callable[[str, Any], Any] | None = None) -> Collected:
    """The whole section, after the command ran: `finish(start(...))`."""
    b = start(recorded_argv, cwd=cwd, root=root, config_files=config_files, redact=redact)
    return finish(b, cwd=cwd, root=root, script_file=script_file, hydra_since=hydra_since)


def start(recorded_argv: Sequence[str], *, cwd: Path, root: Path,
          config_files: Sequence[str] = (),
          redact: Callable[[str, Any], Any] | None = None) -> Builder:
    """Configuration files, then the command line: what is known before the command ends.

    `config_files`: repro's `params_files` (relative to `root`); files named by argv options
    are relative to `cwd`. `redact(key, value)`: the recorded form of a value whose key names
    a secret (`api_key: ...` in a file).
    """
    b = Builder(parse_argv(recorded_argv), redact)
    for rel in config_files:
        b.add_file(root / rel, rel, FILE_PREFIX + rel)
    for name in b.parsed.files:
        path = cwd / name if not os.path.isabs(name) else Path(name)
        if not path.exists():
            continue  # an option value that names no file (yet): nothing to read
        shown = _shown(path, root)
        b.add_file(path, shown, FILE_PREFIX + shown)
    b.add_argv()
    return b


def finish(b: Builder, *, cwd: Path, root: Path, script_file: Path | None = None,
           hydra_since: float | None = None) -> Collected:
    """What the run wrote: Hydra's resolved config (`hydra_since`: the run's start, epoch
    seconds; a `.hydra/config.yaml` written since then is read), then what the script wrote
    at $REPRO_PARAMS_FILE (`script_file`)."""
    if hydra_since is not None and b.parsed.parsed:
        found = hydra_config(cwd, b.parsed.args, hydra_since)
        if found is not None:
            b.add_file(found, _shown(found, root), SOURCE_HYDRA, interpolate=True)
    if script_file is not None and script_file.exists():
        try:
            b.add(_redacted(flatten(read_script_params(script_file)), b.redact), SOURCE_SCRIPT)
        except _Unreadable as e:
            b.warnings.append(f"parameters the script logged (${ENV_VAR}) not read: {e}")
    return Collected(b.section(), list(b.warnings))


_REFERENCE = "${"


def resolve_references(values: dict[str, Any], depth: int = 10) -> dict[str, Any]:
    """Hydra saves `.hydra/config.yaml` with its interpolations as written: a value that is
    exactly a reference to another key (`lr: ${optim.base_lr}`) takes that key's value.
    Anything else (`${now:%H}`, `${a}/x`, a reference to no key) stays the text it is."""
    out = dict(values)
    for key, value in values.items():
        seen = 0
        while isinstance(value, str) and value.startswith(_REFERENCE) and \
                value.endswith("}") and seen < depth:
            target = value[2:-1]
            if target not in out or any(c in target for c in ":${} "):
                break
            value, seen = out[target], seen + 1
        if seen and not (isinstance(value, str) and value.startswith(_REFERENCE)):
            out[key] = value
    return out


def secret_redactor(salt: Callable[[], bytes]) -> Callable[[str, Any], str]:
    """`redact` for collect: a secret-named key's value as `<secret:pbkdf2-sha256:SALT:HASH>`
    (the per-clone salt of argv's secrets: equal secrets record equal placeholders, so diff
    tells "same" from "changed" without the value). `salt` is asked only when one is found."""
    from repro.record import redact

    cache: list[bytes] = []

    def redactor(key: str, value: Any) -> str:
        if not cache:
            cache.append(salt())
        text = value if isinstance(value, str) else repr(value)
        if redact.placeholder_re().fullmatch(text):
            return text
        return f"<secret:pbkdf2-sha256:{cache[0].hex()}:{redact.digest(text, cache[0])}>"
    return redactor


def _redacted(values: dict[str, Any], redact: Callable[[str, Any], Any] | None
              ) -> dict[str, Any]:
    if redact is None:
        return values
    from repro.record import redact as rules

    return {k: redact(k, v) if v is not None and rules.is_secret_name(k) else v
            for k, v in values.items()}


def _shown(path: Path, root: Path) -> str:
    rel = os.path.relpath(os.path.abspath(path), root)
    return path.as_posix() if rel.startswith("..") else Path(rel).as_posix()


class _Unreadable(Exception):
    """A parameters file that cannot be read: the message says why, on one line."""


def read_file(path: Path) -> Any:
    """A YAML, JSON or TOML file as plain data (bounded: size, depth, no aliases); a mapping
    is required. Raises _Unreadable with the reason."""
    from repro import errors
    from repro.record import bounded

    shown = bounded.show_path(path)
    suffix = path.suffix.lower()
    try:
        text = bounded.read_text(path, FILE_MAX, errors.ConfigError)
        if suffix == ".json":
            data = bounded.loads_json(text, shown, errors.ConfigError)
        elif suffix == ".toml":
            data = _toml(text, shown)
        else:
            from repro.record import manifest

            data = manifest.loads(text, shown)
    except errors.ReproError as e:
        raise _Unreadable(e.message) from e
    except FileNotFoundError as e:
        raise _Unreadable(f"{shown} does not exist") from e
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise _Unreadable(f"{shown} holds a {type(data).__name__}, not a mapping of parameters")
    return data


def _toml(text: str, shown: str) -> Any:
    import tomllib

    from repro import errors
    from repro.record import bounded

    if bounded.toml_too_deep(text):
        raise errors.ConfigError(f"{shown} is nested too deeply to read")
    try:
        data = tomllib.loads(text)
    except (ValueError, RecursionError) as e:
        raise errors.ConfigError(f"{shown} is not valid TOML: {bounded.reason(e)}") from e
    bounded.check_tree(data, shown, errors.ConfigError)
    return data


def read_script_params(path: Path) -> dict[str, Any]:
    """What the script wrote at $REPRO_PARAMS_FILE: a JSON mapping, or JSON lines of mappings
    merged in order (a script may append as it goes)."""
    from repro import errors
    from repro.record import bounded

    shown = f"${ENV_VAR} ({path.name})"
    try:
        text = bounded.read_text(path, FILE_MAX, errors.ConfigError)
    except errors.ReproError as e:
        raise _Unreadable(e.message) from e
    if not text.strip():
        return {}
    try:
        data = bounded.loads_json(text, shown, errors.ConfigError)
        chunks: Iterable[Any] = [data]
    except errors.ConfigError as whole:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise _Unreadable(whole.message) from whole
        try:
            chunks = [bounded.loads_json(line, shown, errors.ConfigError) for line in lines]
        except errors.ConfigError as e:
            raise _Unreadable(e.message) from e
    merged: dict[str, Any] = {}
    for chunk in chunks:
        if not isinstance(chunk, Mapping):
            raise _Unreadable(f"{shown} holds a {type(chunk).__name__}, not a JSON mapping")
        merged.update(chunk)
    return merged


# ---------------------------------------------------------------------------------------------
# Hydra.

_HYDRA_OUTPUTS = "outputs"  # hydra.run.dir's default: outputs/${now:%Y-%m-%d}/${now:%H-%M-%S}


def hydra_config(cwd: Path, args: Sequence[str], since: float) -> Path | None:
    """The `.hydra/config.yaml` this run's Hydra job wrote (modified at or after `since`):
    under `hydra.run.dir=DIR` when argv sets it, else the newest under `outputs/DATE/TIME/`,
    else in `cwd` itself. Multirun sweeps (`multirun/`) hold one config per job: not read."""
    candidates: list[Path] = []
    for word in args:
        if word.startswith("hydra.run.dir="):
            candidates.append(cwd / word.split("=", 1)[1] / ".hydra" / "config.yaml")
    outputs = cwd / _HYDRA_OUTPUTS
    if not candidates and outputs.is_dir():
        try:
            days = sorted((d for d in os.listdir(outputs) if not d.startswith(".")),
                          reverse=True)[:2]  # today, and yesterday for a run over midnight
        except OSError:
            days = []
        for day in days:
            try:
                with os.scandir(outputs / day) as entries:
                    candidates += [Path(e.path) / ".hydra" / "config.yaml" for e in entries
                                   if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
    candidates.append(cwd / ".hydra" / "config.yaml")
    best: tuple[float, Path] | None = None
    for path in candidates:
        try:
            mtime = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        if mtime >= since - 1.0 and (best is None or mtime > best[0]):
            best = (mtime, path)
    return None if best is None else best[1]
