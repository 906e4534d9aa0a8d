"""What a command line runs: the Python interpreter word, its options, the script and its arguments.

The one place that decides whether a word names a Python interpreter (`python`, `python3`,
`python3.11`, `python3.11.4`, `python3.13t`, `pypy3`, `/venv/bin/python`, `python.exe`), reads a
script's `#!` line, and walks the interpreter's own options (`-u`, `-uB`, `-W arg`, `-X opt`,
`-I/-E/-S`, `-c code`, `-m module`), and picks out the paths the words name (``argv_paths``:
candidate data inputs, and outputs a run will create). Used by the pre-run interpreter lookup
(find_interpreter), data capture (argv_paths), the probe reader and doctor (interpreter_flags)
and replay. Standard library only at import; reads at most a script's first line and the
metadata of the paths the words name, never runs anything.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

# python, python3, python3.11, python3.11.4, python3.13t (free-threaded), python3.8m, pypy3,
# pythonw, python.exe: the name of the file, whatever directory it is in.
_PYTHON_NAME = re.compile(r"^(python|pypy)(\d+(\.\d+)*)?[a-z]?(\.exe)?$")
# Short options of the python command line whose value is the next word (or the rest of the
# word: `-Wignore`), and long ones whose value is the next word.
_VALUE_OPTIONS = "QWX"
_LONG_VALUE_OPTIONS = frozenset({"--check-hash-based-pycs"})
_SHEBANG_BYTES = 512


def is_python(word: str) -> bool:
    """`python`, `python3.11.4`, `pypy3`, `/venv/bin/python3`: a word naming a Python interpreter."""
    return bool(_PYTHON_NAME.match(os.path.basename(word)))


def python_index(words: Sequence[str]) -> int | None:
    """Index of the first word naming a Python interpreter (after `env A=1`, `uv run`...)."""
    for i, word in enumerate(words):
        if is_python(word):
            return i
    return None


class PythonArgs(NamedTuple):  # a NamedTuple: a frozen dataclass costs `repro run` ~0.5 ms
    """The words after a Python interpreter, split as the interpreter splits them."""

    flags: frozenset[str] = frozenset()  # single-letter options: -I, -E, -S, -u, -B, -b...
    module: str | None = None  # -m MODULE
    code: str | None = None  # -c CODE
    script: str | None = None  # the script path ("-" for stdin)
    args: tuple[str, ...] = ()  # what the program receives after the module, code or script


def python_args(words: Sequence[str]) -> PythonArgs:
    """Split the words that follow a Python interpreter word (`-uB -W ignore t.py --lr 1`)."""
    flags: set[str] = set()
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":  # end of options: the next word is the script
            rest = words[i + 1:]
            return PythonArgs(frozenset(flags), script=rest[0] if rest else None,
                              args=tuple(rest[1:]))
        if word == "-" or not word.startswith("-"):
            return PythonArgs(frozenset(flags), script=word, args=tuple(words[i + 1:]))
        if word.startswith("--"):
            i += 2 if word in _LONG_VALUE_OPTIONS else 1
            continue
        body = word[1:]
        for position, char in enumerate(body):
            if char in "cm":  # -c CODE / -m MODULE (or -cCODE): the rest goes to the program
                inline = body[position + 1:]
                value = inline or (words[i + 1] if i + 1 < len(words) else None)
                args = tuple(words[i + 1:] if inline else words[i + 2:])
                if char == "c":
                    return PythonArgs(frozenset(flags), code=value, args=args)
                return PythonArgs(frozenset(flags), module=value, args=args)
            if char in _VALUE_OPTIONS:
                if position == len(body) - 1:
                    i += 1  # `-W ignore`: the value is the next word
                break
            flags.add(char)
        i += 1
    return PythonArgs(frozenset(flags))


def shebang(program: str, cwd: Path | None = None, path: str | None = None) -> list[str]:
    """The words of the `#!` line of the file `program` names (found on `path` when it has no
    directory part, else relative to `cwd`); [] when it has none or cannot be read."""
    if os.sep in program:
        file: str | None = program if cwd is None else str(cwd / program)
    else:
        file = shutil.which(program, path=path)
    if not file:
        return []
    try:
        with open(file, "rb") as f:
            head = f.readline(_SHEBANG_BYTES)
    except OSError:
        return []
    if not head.startswith(b"#!"):
        return []
    return head[2:].decode("utf-8", "replace").split()


def python_words(argv: Sequence[str], cwd: Path | None = None, path: str | None = None
                 ) -> tuple[list[str], int, str] | None:
    """(words, index of the interpreter in them, where found) for the Python `argv` runs.

    Found in argv itself ("argv": `python t.py`, `env A=1 python3 t.py`, `uv run python t.py`),
    inside a word that is itself a command line ("shell": `sh -c "python -I t.py"`,
    `env -S "python3 -u" t.py`), or in the `#!` line of the program argv[0] names ("shebang":
    `#!/usr/bin/env -S python3 -I`). None when no word names a Python interpreter.
    """
    words = list(argv)
    index = python_index(words)
    if index is not None:
        return words, index, "argv"
    for word in words:
        if any(c.isspace() for c in word):
            import shlex  # only for commands with no python word of their own

            try:
                inner = shlex.split(word)
            except ValueError:
                continue
            index = python_index(inner)
            if index is not None:
                return inner, index, "shell"
    if words:
        line = shebang(words[0], cwd, path)
        index = python_index(line)
        if index is not None:
            return line + words[1:], index, "shebang"
    return None


def interpreter_flags(argv: Sequence[str], cwd: Path | None = None) -> frozenset[str]:
    """The single-letter options given to the Python interpreter the command runs, if any.

    Finds `python...` in argv (after wrappers such as `env`, `uv run` or `sh -c '...'`), or in
    the shebang line of the script argv[0] names.
    """
    located = python_words(argv, cwd)
    if located is None:
        return frozenset()
    words, index, _ = located
    return python_args(words[index + 1:]).flags


def find_interpreter(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> tuple[str, str]:
    """(path, how) of the Python the command will run.

    A Python word in argv, or in a word that is a command line (`sh -c "python t.py"`),
    resolved on PATH ("argv"); else the script's `#!` line ("shebang");
    else the python beside the resolved executable when that lives in a virtual or conda
    environment (`torchrun`, `accelerate` in a venv's bin: "beside"); else repro's own ("repro").
    """
    path = env.get("PATH", os.defpath)
    for word in argv:
        if is_python(word):
            found = _resolve(word, cwd, path)
            if found and os.access(found, os.X_OK):
                return str(Path(found).absolute()), "argv"
    if any(c.isspace() for word in argv for c in word):  # `sh -c "python t.py"`, `env -S`
        located = python_words(argv, cwd, path)
        if located is not None and located[2] == "shell":
            found = _resolve(located[0][located[1]], cwd, path)
            if found and os.access(found, os.X_OK):
                return str(Path(found).absolute()), "argv"
    if argv:
        exe = _resolve(argv[0], cwd, path)
        if exe and os.path.isfile(exe):
            interpreter = _shebang_python(shebang(exe), path)
            if interpreter:
                return interpreter, "shebang"
            bindir = Path(exe).parent
            # Only inside a virtual or conda environment: /usr/bin has a python beside `true`.
            if (bindir.parent / "pyvenv.cfg").is_file() or (bindir.parent / "conda-meta").is_dir():
                for name in ("python", "python3"):
                    beside = bindir / name
                    if beside.is_file() and os.access(beside, os.X_OK):
                        return str(beside), "beside"
    return sys.executable, "repro"


def _resolve(word: str, cwd: Path, path: str) -> str | None:
    return shutil.which(word, path=path) if os.sep not in word else str(cwd / word)


def _shebang_python(line: Sequence[str], path: str) -> str | None:
    """The interpreter file a `#!` line runs, when it is a Python: `#!/venv/bin/python`, or
    `#!/usr/bin/env [-S] [A=1] python3` resolved on `path`."""
    index = python_index(line)
    if index is None:
        return None
    if index == 0:
        candidate: str | None = line[0]
    elif os.path.basename(line[0]) == "env":
        word = line[index]
        candidate = word if os.sep in word else shutil.which(word, path=path)
    else:
        return None
    return candidate if candidate and os.path.isfile(candidate) else None


# --- the paths a command line names --------------------------------------------------------


def argv_paths(argv: Sequence[str], cwd: Path, root: Path, *, missing: bool = False
               ) -> list[str]:
    """Existing paths inside `root` named in `argv`, relative to `root`, deduplicated in order.

    Words are plain arguments, ``--flag=path`` values and ``key=path`` values (Hydra-style
    overrides). argv[0] is skipped, and so is the script when argv[0] is a Python interpreter;
    so are the root itself and anything under ``.repro/`` or ``.git/``. `missing`: instead,
    the words that would name a path inside `root` that does not exist (yet): a run that
    creates one wrote an output (``--save model.pt``).
    """
    words = list(argv[1:])
    if argv and is_python(argv[0]):
        words = list(python_args(words).args)
    root_real = os.path.realpath(root)
    base = os.path.abspath(cwd)
    seen: set[str] = set()
    out: list[str] = []
    for word in words:
        for candidate in _candidates(word):
            rel = _inside(candidate, base, root_real, missing)
            if rel is not None and rel not in seen:
                seen.add(rel)
                out.append(rel)
                break
    return out


def _candidates(word: str) -> list[str]:
    if not word or "\0" in word:
        return []
    if word.startswith("-"):
        return [word.split("=", 1)[1]] if "=" in word else []
    if "=" in word:
        return [word, word.split("=", 1)[1]]
    return [word]


def _inside(candidate: str, cwd: str, root_real: str, missing: bool = False) -> str | None:
    if not candidate:
        return None
    try:
        abs_path = os.path.normpath(os.path.join(cwd, candidate))
        if os.path.lexists(abs_path) == missing:
            return None
        real_parent = os.path.realpath(os.path.dirname(abs_path))
        real = os.path.join(real_parent, os.path.basename(abs_path))
    except (OSError, ValueError):
        return None
    rel = os.path.relpath(real, root_real)
    if rel == "." or rel == ".." or rel.startswith("../") or os.path.isabs(rel):
        return None
    rel = rel.replace(os.sep, "/")
    from repro.capture.data import SKIP_AT_ROOT  # loaded already wherever data is captured

    if rel.split("/", 1)[0] in SKIP_AT_ROOT:
        return None
    return rel
