"""Hyperparameters on a command line: the pure parser behind the manifest's `params` section.

`parse_argv` finds the script after its interpreter and launchers (capture/cmdline.py's
`script_start`, the one reading of a command line) and reads its options
(`--lr 0.01`, `--lr=0.01`, `-e 3`, flags, repeated options as lists, `key=value` and Hydra
overrides `+a.b=1`, `++x=2`, `~c`), typed where unambiguous (`type_value`). Where a reading is
ambiguous without the script's own parser (`-v 3 file.txt`: is 3 the value of -v, or a
positional?) the key is kept with its raw argv words under `ambiguous`, never as a value: a
wrong parameter is worse than none. `flatten` turns nested mappings into dotted keys.

Pure and cheap: it runs on `repro run`'s hot path (string tests, and regular expressions
compiled on first use; no I/O, no imports beyond the standard library). The files, Hydra's
resolved config and the script's own parameters are read by capture/paramfiles.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from repro.capture import cmdline

MAX_VALUE_CHARS = 2000  # a longer value (a list of 10,000 numbers) is kept as a summary
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")

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
    located = cmdline.script_start(argv)
    if located is None:
        return ArgvParams({}, {}, tuple(argv), (), (), False)
    words, start = located
    values, ambiguous, rest, files = _parse_args(words[start:])
    return ArgvParams(values, ambiguous, tuple(words[:start]), tuple(rest), tuple(files), True)


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
        values[key] = _bounded_value(seen[0] if len(seen) == 1 else seen)
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
