"""What a command line runs: the Python interpreter word, its options, the script and its arguments.

The one place that decides whether a word names a Python interpreter (`python`, `python3`,
`python3.11`, `python3.11.4`, `python3.13t`, `pypy3`, `/venv/bin/python`, `python.exe`), reads a
script's `#!` line, and walks the interpreter's own options (`-u`, `-uB`, `-W arg`, `-X opt`,
`-I/-E/-S`, `-c code`, `-m module`), finds where a script's own words start after launchers
(``script_start``: `torchrun`, `accelerate launch`, `deepspeed`), and picks out the paths the
words name (``argv_paths``:
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


# -- distributed launchers -------------------------------------------------------------------
# `torchrun ...`, `python -m torch.distributed.run ...`, `accelerate launch ...`, `deepspeed ...`:
# the launcher's own options come before the training script and say how many nodes the job
# has, which node this is and (torchrun) the rendezvous id every node shares.
_LAUNCHER_MODULES: Mapping[str, str] = {
    "torch.distributed.run": "torchrun",
    "torch.distributed.launch": "torchrun",
    "accelerate.commands.launch": "accelerate",
    "accelerate.commands.accelerate_cli": "accelerate",
    "deepspeed.launcher.runner": "deepspeed",
}
# Launcher options that take no value (names normalised: no leading dashes, `-` -> `_`).
_LAUNCHER_FLAG_NAMES = frozenset({
    "standalone", "no_python", "run_path", "module", "m", "use_env", "no_ssh", "no_ssh_check",
    "multi_gpu", "cpu", "tpu", "use_deepspeed", "use_fsdp", "use_megatron_lm", "debug", "quiet",
    "q", "autotune", "force_multi", "enable_each_rank_log", "bind_cores_to_rank", "no_local_rank",
    "save_pid", "elastic_training", "h", "help", "same_network", "dynamo_use_fullgraph",
    "dynamo_use_dynamic", "enable_cpu_affinity", "mixed_precision_fp8", "no_python_path",
})
# Options that name this node's rank: their value differs between the nodes of one job.
NODE_RANK_OPTIONS = frozenset({"node_rank", "machine_rank"})
# Options that say where and under which id one job's nodes meet, not what they compute: every
# job of the same recipe gets its own (`--rdzv-id $SLURM_JOB_ID`, a free `--master-port`).
RENDEZVOUS_OPTIONS = frozenset({
    *NODE_RANK_OPTIONS, "rdzv_id", "rdzv_endpoint", "master_addr", "master_port",
    "main_process_ip", "main_process_port", "master_address",
})


class Launcher(NamedTuple):
    """A distributed launcher found in a command line and its own options (before the script)."""

    name: str  # torchrun, accelerate, deepspeed
    options: dict[str, str]  # normalised name -> value ("" for a flag); the last one given wins


def launcher_hint(argv: Sequence[str]) -> bool:
    """Cheap test for `repro run`'s hot path: could `argv` start a distributed launcher?"""
    for word in argv:
        base = os.path.basename(word)
        if base in ("torchrun", "accelerate", "deepspeed") or word in _LAUNCHER_MODULES:
            return True
    return False


def find_launcher(argv: Sequence[str]) -> Launcher | None:
    """The launcher `argv` runs (after wrappers such as `env A=1` or `uv run`), if any."""
    span = _launcher_span(argv)
    if span is None:
        return None
    name, start = span
    return Launcher(name, _launcher_options(list(argv)[start:]))


def _launcher_span(argv: Sequence[str]) -> tuple[str, int] | None:
    """(launcher name, index of its first option word) in `argv`, or None."""
    words = list(argv)
    for i, word in enumerate(words):
        base = os.path.basename(word)
        if base in ("torchrun", "deepspeed"):
            return base, i + 1
        if base == "accelerate":
            return ("accelerate", i + 2) if words[i + 1:i + 2] == ["launch"] else None
        if is_python(word):
            args = python_args(words[i + 1:])
            name = _LAUNCHER_MODULES.get(args.module or "")
            if name is None:
                return None
            start = len(words) - len(args.args)
            if args.module == "accelerate.commands.accelerate_cli":
                return ("accelerate", start + 1) if args.args[:1] == ("launch",) else None
            return name, start
    return None


def rewrite_launcher(argv: Sequence[str], drop: frozenset[str],
                     add: Sequence[str]) -> list[str] | None:
    """`argv` with the launcher's options named in `drop` removed and `add` put first among
    its options (`verify --single-node` turns a two-node torchrun into a one-node one); None
    when `argv` runs no launcher."""
    span = _launcher_span(argv)
    if span is None:
        return None
    _, start = span
    words = list(argv)
    kept: list[str] = []
    i = start
    while i < len(words):
        word = words[i]
        name = launcher_option_name(word)
        if name is None:
            break
        takes_value = "=" not in word and not (
            name in _LAUNCHER_FLAG_NAMES or i + 1 >= len(words) or words[i + 1].startswith("-"))
        group = words[i:i + 2] if takes_value else [word]
        if name not in drop:
            kept.extend(group)
        i += len(group)
    return [*words[:start], *add, *kept, *words[i:]]


def launcher_option_name(word: str) -> str | None:
    """`--node-rank`, `--node_rank=1`, `-m` -> `node_rank`, `node_rank`, `m`; None: not one."""
    if not word.startswith("-") or word in ("-", "--"):
        return None
    return word.lstrip("-").partition("=")[0].replace("-", "_")


def _launcher_options(words: Sequence[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        name = launcher_option_name(word)
        if name is None:  # the training script (or `--` before it): the launcher's part ends
            break
        if "=" in word:
            options[name] = word.partition("=")[2]
            i += 1
        elif name in _LAUNCHER_FLAG_NAMES or i + 1 >= len(words) or words[i + 1].startswith("-"):
            options[name] = ""
            i += 1
        else:
            options[name] = words[i + 1]
            i += 2
    return options


def without_node_rank(argv: Sequence[str]) -> list[str]:
    """`argv` with the value of a launcher's node-rank option replaced by `{node_rank}`: what
    every node of one job runs alike (`torchrun --node-rank 1 ...` on node 1)."""
    return _blank_options(argv, NODE_RANK_OPTIONS, "{node_rank}")


def without_rendezvous(argv: Sequence[str]) -> list[str]:
    """`argv` with the values of the launcher's rendezvous options (job id, address, port,
    node rank) replaced by `{rendezvous}`: what two jobs of one recipe run alike.
    Only the launcher's own options, before its script: the script's `--master-port 2` (a
    flag of its own by the same name) is recipe, and stays."""
    span = _launcher_span(argv)
    if span is None:
        return list(argv)
    return _blank_options(argv, RENDEZVOUS_OPTIONS, "{rendezvous}", start=span[1],
                          launcher_only=True)


def _blank_options(argv: Sequence[str], names: frozenset[str], blank: str, start: int = 0,
                   launcher_only: bool = False) -> list[str]:
    out = list(argv)
    i = start
    while i < len(out):
        name = launcher_option_name(out[i])
        if launcher_only and name is None:
            break  # the script: the launcher's options end (as in _launcher_options)
        if name in names:
            if "=" in out[i]:
                out[i] = out[i].partition("=")[0] + "=" + blank
            elif i + 1 < len(out):
                out[i + 1] = blank
                i += 1
        elif (launcher_only and "=" not in out[i] and name not in _LAUNCHER_FLAG_NAMES
              and i + 1 < len(out) and not out[i + 1].startswith("-")):
            i += 1  # the option's value
        i += 1
    return out


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
_SHELLS = frozenset({"sh", "bash", "zsh", "dash"})


def script_start(argv: Sequence[str]) -> tuple[list[str], int] | None:
    """(words, index of the script's first argument in them), or None when no script can be
    told: the words a script receives, after its interpreter and launchers.

    `python -u t.py`, `python -m pkg.train`, `env A=1 python3 t.py`, `mpirun -np 4 python t.py`;
    the launchers `torchrun`, `accelerate launch`, `deepspeed` and `python -m
    torch.distributed.run` (their own options skipped); `uv run t.py`, `./t.py`; `bash t.sh`;
    `sh -c "python t.py --lr 1"` (the inner command line's words, unless it is a pipeline or
    a list of commands); any other program's words after it. Pure: nothing is read.
    """
    words = list(argv)
    if not words:
        return None
    base = os.path.basename(words[0])
    if base in _LAUNCHER_FLAGS:
        if base == "accelerate":
            if len(words) < 2 or words[1] != "launch":
                return None
            return _after_launcher(words, 2, base)
        return _after_launcher(words, 1, base)
    index = python_index(words)
    if index is not None:
        after = words[index + 1:]
        py = python_args(after)
        start = len(words) - len(py.args)
        if py.module is not None and py.module in _LAUNCHER_MODULES:
            if py.module == "accelerate.commands.accelerate_cli":  # `python -m ... launch`
                if py.args[:1] != ("launch",):
                    return None
                start += 1
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
                python_index(inner) is None:
            return None  # a pipeline, or no Python: which words are whose is a guess
        return script_start(inner)
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
    if is_python(nxt):  # `torchrun --no-python python t.py`: locate from there
        inner = script_start(words[i:])
        return None if inner is None else (words, i + inner[1])
    return words, i + 1
