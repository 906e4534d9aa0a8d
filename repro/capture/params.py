"""Hyperparameters of a run, captured without code changes.

Four sources, later ones overriding earlier ones key by key:

1. configuration files: those in repro's config (`params_files`), then those named by an option
   of the command line (`--config configs/base.yaml`, `--cfg x.json`, `--hyp h.yaml`); YAML,
   JSON or TOML, nested keys flattened with dots (`model.depth`), source `file:<path>`;
2. the script's command line (`--lr 0.01`, `--lr=0.01`, `-e 3`, flags, repeated options as
   lists, `key=value` and Hydra overrides `+a.b=1`, `++x=2`, `~c`), source `argv`;
3. Hydra's resolved `.hydra/config.yaml` when the run wrote one, source `hydra`;
4. what the script logged itself as a JSON mapping at `$REPRO_PARAMS_FILE`, source `script`.

The argv parser (`parse_argv`) is pure and cheap (it runs on `repro run`'s hot path: regular
expressions and string tests, no imports beyond the standard library's `re`). Where a reading is
ambiguous without the script's own parser (`-v 3 file.txt`: is 3 the value of -v, or a
positional?) the key is recorded with its raw argv words under `ambiguous`, never as a value:
a wrong parameter is worse than none. The readers below it read files through
record/bounded.py and YAML through record/manifest.py's strict loader; they never raise for a
bad file (a finished run must still be recorded): they return a warning instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from repro.capture import cmdline

SOURCE_ARGV = "argv"
SOURCE_HYDRA = "hydra"
SOURCE_SCRIPT = "script"
FILE_PREFIX = "file:"
PARAMS_FILE = "params.json"  # in the run directory; REPRO_PARAMS_FILE names it
ENV_VAR = "REPRO_PARAMS_FILE"

MAX_KEYS = 2000  # parameters kept per source: a vocabulary passed as --config is not params
MAX_VALUE_CHARS = 2000  # a longer value (a list of 10,000 numbers) is kept as a summary
FILE_MAX = 4 * 1024 * 1024  # bytes read of one configuration file (bounded.CONFIG_MAX)
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")

# Launchers that run a script with their own options first: `torchrun --nproc-per-node 2 t.py`.
# Their options that take no value (the others take one, or are written --opt=value).
_LAUNCHER_FLAGS: Mapping[str, frozenset[str]] = {
    "torchrun": frozenset({"standalone", "m", "module", "no-python", "no_python", "run-path",
                           "run_path", "use-env", "use_env", "h", "help"}),
    "accelerate": frozenset({"cpu", "multi_gpu", "tpu", "ipex", "use_deepspeed", "use_fsdp",
                             "use_megatron_lm", "use_xpu", "m", "module", "no_python", "q",
                             "quiet", "debug", "downcast_bf16", "same_network",
                             "tpu_use_cluster", "tpu_use_sudo", "enable_cpu_affinity", "h",
                             "help"}),
    "deepspeed": frozenset({"no_python", "no_local_rank", "force_multi", "save_pid",
                            "bind_cores_to_rank", "no_ssh_check", "no_ssh", "elastic_training",
                            "module", "enable_each_rank_log_flag", "h", "help"}),
}
_LAUNCHER_MODULES = {"torch.distributed.run": "torchrun", "torch.distributed.launch": "torchrun",
                     "accelerate.commands.launch": "accelerate",
                     "deepspeed.launcher.runner": "deepspeed"}
_SHELLS = frozenset({"sh", "bash", "zsh", "dash"})

# Hydra's own command-line options (`python app.py -m db=a,b`): not parameters of the job.
_HYDRA_FLAGS = frozenset({"m", "multirun", "r", "run", "info", "resolve", "h", "help",
                          "hydra-help", "version", "sc", "shell-completion"})
_HYDRA_VALUED = frozenset({"cfg", "c", "package", "p", "config-name", "cn", "config-path", "cp",
                           "config-dir", "cd", "experimental-rerun"})

# Option names that are usually flags (store_true): a word after one may be a positional.
# (`--train data.csv`, `--eval ckpt.pt` usually take a value: not listed.)
_FLAG_WORDS = frozenset({
    "verbose", "debug", "quiet", "silent", "help", "version", "v", "q", "vv", "fp16", "bf16",
    "tf32", "amp", "cpu", "cuda", "gpu", "deterministic", "benchmark", "resume", "dry_run",
    "dryrun", "overwrite_output_dir", "overwrite", "force", "profile", "compile", "multirun",
    "push_to_hub", "gradient_checkpointing", "half", "fast_dev_run", "sync_bn",
})
_FLAG_PREFIXES = ("do_", "no_", "use_", "enable_", "disable_", "with_", "without_", "is_",
                  "skip_", "allow_")


class _Lazy:
    """A regular expression compiled on first use: `repro run -- python -c pass` needs none
    of them, and compiling all costs ~5 ms."""

    __slots__ = ("_args", "_rx")

    def __init__(self, *args: Any) -> None:
        self._args = args
        self._rx: re.Pattern[str] | None = None

    def _get(self) -> re.Pattern[str]:
        if self._rx is None:
            self._rx = re.compile(*self._args)
        return self._rx

    def match(self, text: str) -> re.Match[str] | None:
        return self._get().match(text)

    def search(self, text: str) -> re.Match[str] | None:
        return self._get().search(text)


_NAME = _Lazy(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
# key=value words: Hydra overrides (+a.b=1, ++x=2, ~c, ~c=1, db=mysql, model/enc=resnet,
# db@backup=mysql) and make/fire-style assignments.
_ASSIGN = _Lazy(r"(\+{1,2}|~)?([A-Za-z_][A-Za-z0-9_.\-/@]*)=(.*)\Z", re.DOTALL)
_DELETE = _Lazy(r"~([A-Za-z_][A-Za-z0-9_.\-/@]*)\Z")
_INT = _Lazy(r"[-+]?(0|[1-9][0-9]{0,99})\Z")
_FLOAT = _Lazy(r"[-+]?((0|[1-9][0-9]{0,99})\.[0-9]{0,100}|\.[0-9]{1,100}|0|[1-9][0-9]{0,99})"
               r"([eE][-+]?[0-9]{1,3})?\Z")
_NEGATIVE = _Lazy(r"-([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\Z")
_SHORT_CLUSTER = _Lazy(r"([A-Za-z])(\1+|[0-9]+)\Z")  # -vvv, -e3, -j8: count or attached value
_CONFIG_NAME = _Lazy(r"(^|[_\-.])(config|cfg|conf|configs|hyp|hparams|hyperparams|params|"
                     r"deepspeed)([_\-.]|$)|^c$|_config$|_cfg$", re.IGNORECASE)


class ArgvParams(NamedTuple):  # a NamedTuple, not a dataclass: it is built on the hot path
    """What the command line says about parameters (see parse_argv)."""

    values: dict[str, Any]  # key -> typed value
    ambiguous: dict[str, list[str]]  # key -> the raw argv words it was read from
    program: tuple[str, ...]  # the words that start the script: launcher, interpreter, script
    args: tuple[str, ...]  # the script's words that are no parameter (positionals, Hydra's own)
    files: tuple[str, ...]  # configuration files named by an option, as written
    parsed: bool  # False: no script found (`sh -c 'x | y'`): nothing read, rather than a guess


# ---------------------------------------------------------------------------------------------
# Values.


def type_value(text: str) -> Any:
    """A command-line word as the value it unambiguously is: int, float, bool, null, a list
    (`[1,2,3]`, Hydra's syntax); anything else stays the string it is.

    `true`/`false` (any case) are bools, `null`/`None` null; `007`, `0x10`, `1,2`, `inf`,
    `yes` stay strings (their meaning depends on the script).
    """
    if not text or len(text) > 400:
        return text
    first = text[0]
    if first.isdigit() or first in "+-.":
        if _INT.match(text):
            return int(text)
        if _FLOAT.match(text):
            number = float(text)
            return number if number - number == 0 else text  # 1e999 is inf: not what it says
        return text
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if text in ("null", "None"):
        return None
    if first == "[" and text[-1] == "]":
        return _list(text)
    return text


def _list(text: str) -> Any:
    body = text[1:-1].strip()
    if not body:
        return []
    if any(c in body for c in "[]{}()'\"\\"):
        return text  # nested or quoted: the script's own parser decides
    return [type_value(part.strip()) for part in body.split(",")]


def is_bool_word(text: str) -> bool:
    return text.lower() in ("true", "false")


def flag_like(name: str) -> bool:
    """`--verbose`, `--do_train`, `--no-cuda`, `-v`: names of options that usually take no value."""
    key = name.replace("-", "_").lower()
    return key in _FLAG_WORDS or key.startswith(_FLAG_PREFIXES)


def key_of(option: str) -> str:
    """`--batch-size` -> `batch_size`, as argparse and click name it; `-e` -> `e`."""
    return option.lstrip("-").replace("-", "_")


# ---------------------------------------------------------------------------------------------
# The command line.


def parse_argv(argv: Sequence[str]) -> ArgvParams:
    """The parameters on a command line: the script's options and assignments, typed.

    The script is found after its interpreter and launchers (`python -u t.py`, `python -m
    pkg.train`, `torchrun --nproc-per-node 2 t.py`, `accelerate launch t.py`, `deepspeed t.py`,
    `uv run t.py`, `sh -c "python t.py"`); only the words after it are read. Pass the argv as
    recorded (secret values already replaced by their placeholders).
    """
    located = _locate(list(argv))
    if located is None:
        return ArgvParams({}, {}, tuple(argv), (), (), False)
    words, start = located
    values, ambiguous, rest, files = _parse_args(words[start:])
    return ArgvParams(values, ambiguous, tuple(words[:start]), tuple(rest), tuple(files), True)


def _locate(words: list[str]) -> tuple[list[str], int] | None:
    """(words, index of the script's first argument), or None when no script can be told."""
    if not words:
        return None
    base = os.path.basename(words[0])
    if base in _LAUNCHER_FLAGS:
        if base == "accelerate":
            if len(words) < 2 or words[1] != "launch":
                return None
            return _after_launcher(words, 2, base)
        return _after_launcher(words, 1, base)
    index = cmdline.python_index(words)
    if index is not None:
        after = words[index + 1:]
        py = cmdline.python_args(after)
        start = len(words) - len(py.args)
        if py.module is not None and py.module in _LAUNCHER_MODULES:
            return _after_launcher(words, start, _LAUNCHER_MODULES[py.module])
        if py.script is None and py.module is None and py.code is None:
            return None  # `python` alone, `python -V`
        return words, start
    if base in _SHELLS and len(words) >= 3 and words[1] == "-c":  # sh -c "python t.py --lr 1"
        import shlex  # only for such commands

        try:
            inner = shlex.split(words[2])
        except ValueError:
            return None
        if any(w in ("|", "&&", "||", ";") or w.endswith(";") for w in inner) or \
                cmdline.python_index(inner) is None:
            return None  # a pipeline, or no Python: which words are whose is a guess
        return _locate(inner)
    for i, word in enumerate(words):
        if word.endswith(".py") and not word.startswith("-"):
            return words, i + 1  # `uv run t.py`, `./t.py`, `pipenv run t.py`
    if base in _SHELLS:
        if len(words) > 1 and not words[1].startswith("-"):
            return words, 2  # `bash train.sh --lr 1`
        return None
    return words, 1  # a program of its own: `./train --lr 1`


def _after_launcher(words: list[str], i: int, launcher: str) -> tuple[list[str], int] | None:
    """Skip a launcher's options; the script (or module, or program) is the next word."""
    flags = _LAUNCHER_FLAGS[launcher]
    while i < len(words):
        word = words[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        name = word.lstrip("-")
        if "=" in name or name in flags:
            i += 1
            continue
        # An option with a value, unless the next word is plainly the script.
        nxt = words[i + 1] if i + 1 < len(words) else ""
        i += 1 if nxt.endswith(".py") else 2
    if i >= len(words):
        return None
    nxt = words[i]
    if cmdline.is_python(nxt):  # `torchrun --no-python python t.py`: locate from there
        inner = _locate(words[i:])
        return None if inner is None else (words, i + inner[1])
    return words, i + 1


def _is_option(word: str) -> bool:
    return len(word) > 1 and word[0] == "-" and word != "--" and not _NEGATIVE.match(word)


def _parse_args(args: Sequence[str]
                ) -> tuple[dict[str, Any], dict[str, list[str]], list[str], list[str]]:
    """The script's words -> (values, ambiguous, words that are no parameter, config files)."""
    found: dict[str, list[Any]] = {}  # key -> each occurrence's value, in order
    ambiguous: dict[str, list[str]] = {}
    rest: list[str] = []
    files: list[str] = []
    hydra = _hydra_style(args)
    n = len(args)
    i = 0
    while i < n:
        word = args[i]
        if word == "--":
            rest.extend(args[i:])
            break
        if not _is_option(word):
            i += 1
            assign = _ASSIGN.match(word)
            if assign is not None:
                prefix, name, raw = assign.groups()
                if name == "hydra" or name.startswith(("hydra.", "hydra/")):
                    rest.append(word)  # Hydra's own settings (hydra.run.dir=...), not the job's
                    continue
                key = "~" + name if prefix == "~" else name
                found.setdefault(key, []).append(type_value(raw))
                continue
            delete = _DELETE.match(word)
            if delete is not None:
                found.setdefault(word, []).append(True)
                continue
            rest.append(word)  # a positional (a sub-command of click or fire, a path)
            continue
        dashes = 2 if word.startswith("--") else 1
        body = word[dashes:]
        name, eq, inline = body.partition("=")
        if hydra and (name in _HYDRA_FLAGS or name in _HYDRA_VALUED) and not eq:
            take = 2 if name in _HYDRA_VALUED and i + 1 < n else 1
            rest.extend(args[i:i + take])
            i += take
            continue
        if not _NAME.match(name):
            _ambiguous(ambiguous, name or word, [word])
            i += 1
            continue
        if dashes == 1 and not eq and _SHORT_CLUSTER.match(name):
            _ambiguous(ambiguous, name[0], [word])  # -vvv (a count?), -e3 (-e 3? an option?)
            i += 1
            continue
        key = key_of(name)
        if eq:
            found.setdefault(key, []).append(type_value(inline))
            _config_file(name, inline, files)
            i += 1
            continue
        j = i + 1
        while j < n and not _is_option(args[j]) and args[j] != "--" and \
                not (hydra and _is_override(args[j])):
            j += 1
        run = list(args[i + 1:j])
        middle = j < n  # another option (or `--`) follows the words
        if not run:
            found.setdefault(key, []).append(True)  # a flag
        elif flag_like(name) and not (len(run) == 1 and is_bool_word(run[0])):
            _ambiguous(ambiguous, key, [word, *run])  # --verbose data.csv: flag + positional?
        elif len(run) == 1:
            found.setdefault(key, []).append(type_value(run[0]))
            _config_file(name, run[0], files)
        elif middle and all(_is_number(type_value(w)) for w in run):
            found.setdefault(key, []).append([type_value(w) for w in run])  # nargs="+"
        else:
            # -v 3 file.txt, --epochs 3 data/, --ckpt m.pt data.csv --lr 1: a value and
            # positionals, or a list of values?
            _ambiguous(ambiguous, key, [word, *run])
        i = j
    values: dict[str, Any] = {}
    for key, seen in found.items():
        if key in ambiguous:
            continue  # read two ways: the raw words only
        values[key] = seen[0] if len(seen) == 1 else seen
    return values, ambiguous, rest, files


def _is_override(word: str) -> bool:
    return bool(_ASSIGN.match(word) or _DELETE.match(word))


def _hydra_style(args: Sequence[str]) -> bool:
    """Overrides standing on their own (`db=mysql lr=0.1`, `-m db=a,b`), not an option's value
    (`--tag team=vision`): the command line of a Hydra app (or of make, fire's `--a=b` aside)."""
    for i, word in enumerate(args):
        if _is_override(word):
            before = args[i - 1] if i else ""
            if not _is_option(before) or before.lstrip("-") in _HYDRA_FLAGS or \
                    _is_override(before):
                return True
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ambiguous(ambiguous: dict[str, list[str]], key: str, words: list[str]) -> None:
    ambiguous.setdefault(key, []).extend(words)


def _config_file(option: str, value: str, files: list[str]) -> None:
    if value.lower().endswith(CONFIG_SUFFIXES) and _CONFIG_NAME.search(option):
        files.append(value)


# ---------------------------------------------------------------------------------------------
# Nested mappings.


def flatten(value: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """`{"model": {"depth": 12}, "lr": 0.1}` -> `{"model.depth": 12, "lr": 0.1}`; lists stay
    values (`layers: [64, 64]`), an empty mapping is a value `{}`."""
    if out is None:
        out = {}
    if isinstance(value, Mapping) and (value or not prefix):
        for k, v in value.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif prefix:
        out[prefix] = _bounded_value(value)
    return out


def _bounded_value(value: Any) -> Any:
    """A value as recorded: a very long list or string becomes a summary with a hash."""
    if isinstance(value, (list, tuple, Mapping, str)):
        text = repr(value)
        if len(text) > MAX_VALUE_CHARS:
            import hashlib

            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            kind = "string" if isinstance(value, str) else type(value).__name__
            return f"<{kind} of {len(value)} items, sha256:{digest}>" if kind != "string" \
                else f"<string of {len(value)} characters, sha256:{digest}>"
        if isinstance(value, tuple):
            return list(value)
    return value


# ---------------------------------------------------------------------------------------------
# The section: sources merged, files read.


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

    def add_file(self, path: Path, shown: str, source: str) -> None:
        try:
            data = read_file(path)
        except _Unreadable as e:
            self.warnings.append(f"parameters not read from {shown}: {e}")
            return
        self.add(_redacted(flatten(data), self.redact), source)
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
            b.add_file(found, _shown(found, root), SOURCE_HYDRA)
    if script_file is not None and script_file.exists():
        try:
            b.add(_redacted(flatten(read_script_params(script_file)), b.redact), SOURCE_SCRIPT)
        except _Unreadable as e:
            b.warnings.append(f"parameters the script logged (${ENV_VAR}) not read: {e}")
    return Collected(b.section(), list(b.warnings))


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
            for day in days:
                for entry in os.scandir(outputs / day):
                    if entry.is_dir(follow_symlinks=False):
                        candidates.append(Path(entry.path) / ".hydra" / "config.yaml")
        except OSError:
            pass
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
