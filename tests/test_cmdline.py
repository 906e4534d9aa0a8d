"""capture/cmdline.py: the one reading of a command line, and its users agreeing with it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from repro.capture import cmdline

PYTHON_WORDS = ["python", "python3", "python3.11", "python3.11.4", "python3.13t", "pypy3",
                "pypy", "python3.8m", "python.exe", ".venv/bin/python", "/venv/bin/python3",
                "/opt/conda/envs/x/bin/python3.12"]
NOT_PYTHON = ["torchrun", "accelerate", "bash", "env", "python-config", "python3-config",
              "pythonista", "ipython", "mypython", "train.py", "python3.11.4.tar", ""]


@pytest.mark.parametrize("word", PYTHON_WORDS)
def test_python_words(word: str) -> None:
    assert cmdline.is_python(word)


@pytest.mark.parametrize("word", NOT_PYTHON)
def test_not_python_words(word: str) -> None:
    assert not cmdline.is_python(word)


# words after the interpreter -> (flags, module, code, script, args)
ARGS_TABLE = [
    (["t.py", "--lr", "1"], (set(), None, None, "t.py", ["--lr", "1"])),
    (["-u", "t.py", "-I"], ({"u"}, None, None, "t.py", ["-I"])),
    (["-uB", "t.py"], ({"u", "B"}, None, None, "t.py", [])),
    (["-I", "-E", "-S", "t.py"], ({"I", "E", "S"}, None, None, "t.py", [])),
    (["-IS", "t.py"], ({"I", "S"}, None, None, "t.py", [])),
    (["-m", "pkg.train", "--lr", "1"], (set(), "pkg.train", None, None, ["--lr", "1"])),
    (["-mpkg", "data.csv"], (set(), "pkg", None, None, ["data.csv"])),
    (["-u", "-m", "torch.distributed.run", "t.py"],
     ({"u"}, "torch.distributed.run", None, None, ["t.py"])),
    (["-c", "print(1)", "data"], (set(), None, "print(1)", None, ["data"])),
    (["-c", "-I"], (set(), None, "-I", None, [])),
    (["-Ic", "x=1", "a"], ({"I"}, None, "x=1", None, ["a"])),
    (["-W", "ignore", "-X", "dev", "-E", "t.py"], ({"E"}, None, None, "t.py", [])),
    (["-Wignore", "-Xdev", "t.py", "a"], (set(), None, None, "t.py", ["a"])),
    (["-uW", "ignore", "t.py"], ({"u"}, None, None, "t.py", [])),
    (["--check-hash-based-pycs", "always", "-E", "t.py"], ({"E"}, None, None, "t.py", [])),
    (["-bb", "t.py"], ({"b"}, None, None, "t.py", [])),
    (["--", "t.py", "-I"], (set(), None, None, "t.py", ["-I"])),
    (["-", "a"], (set(), None, None, "-", ["a"])),
    (["-X", "dev", "-S"], ({"S"}, None, None, None, [])),
    ([], (set(), None, None, None, [])),
]


@pytest.mark.parametrize(("words", "expected"), ARGS_TABLE)
def test_python_args(words: list[str], expected: tuple[object, ...]) -> None:
    got = cmdline.python_args(words)
    assert (set(got.flags), got.module, got.code, got.script, list(got.args)) == expected


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A venv-shaped bin/ holding real interpreters under every name, torchrun, accelerate."""
    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    for name in ("python", "python3", "python3.11", "python3.11.4", "python3.13t", "pypy3"):
        (bindir / name).symlink_to(sys.executable)
    for tool in ("torchrun", "accelerate"):
        executable(bindir / tool, "#!/bin/sh\nexit 0\n")
    return bindir


def env_for(bindir: Path) -> dict[str, str]:
    return {"PATH": f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin"}


# argv -> (how find_interpreter finds it, name of the interpreter in venv/bin, flags)
FIND_TABLE = [
    (["python", "-u", "t.py"], "argv", "python", {"u"}),
    (["python3", "t.py"], "argv", "python3", set()),
    (["python3.11", "-I", "t.py"], "argv", "python3.11", {"I"}),
    (["python3.11.4", "-E", "t.py"], "argv", "python3.11.4", {"E"}),
    (["python3.13t", "-X", "gil=0", "-S", "t.py"], "argv", "python3.13t", {"S"}),
    (["pypy3", "-uB", "t.py"], "argv", "pypy3", {"u", "B"}),
    (["venv/bin/python3.11.4", "-I", "t.py"], "argv", "python3.11.4", {"I"}),
    (["/usr/bin/env", "python3", "-E", "t.py"], "argv", "python3", {"E"}),
    (["env", "A=1", "pypy3", "-m", "pkg", "-I"], "argv", "pypy3", set()),
    (["env", "-S", "python3.13t -I", "t.py"], "argv", "python3.13t", {"I"}),
    (["sh", "-c", "python3.11.4 -S t.py"], "argv", "python3.11.4", {"S"}),
    (["torchrun", "--nproc-per-node", "2", "t.py"], "beside", "python", set()),
    (["accelerate", "launch", "t.py"], "beside", "python", set()),
    (["./shebang_venv.py", "a"], "shebang", "python3.11.4", {"u"}),
    (["./shebang_env.py", "a"], "shebang", "pypy3", set()),
    (["./shebang_env_s.py", "a"], "shebang", "python3.13t", {"I"}),
]


@pytest.mark.parametrize(("argv", "how", "name", "flags"), FIND_TABLE)
def test_interpreter_table(venv: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str],
                           how: str, name: str, flags: set[str]) -> None:
    root = venv.parent.parent
    executable(root / "shebang_venv.py", f"#!{venv / 'python3.11.4'} -u\n")
    executable(root / "shebang_env.py", "#!/usr/bin/env pypy3\n")
    executable(root / "shebang_env_s.py", "#!/usr/bin/env -S python3.13t -I\n")
    env = env_for(venv)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", env["PATH"])
    found = cmdline.find_interpreter(argv, root, env)
    assert found == (str(venv / name), how)
    assert cmdline.interpreter_flags(argv) == flags


def test_no_python_is_repro_own(venv: Path) -> None:
    assert cmdline.find_interpreter(["true"], venv, {"PATH": "/usr/bin:/bin"}) == (
        sys.executable, "repro")
    assert cmdline.python_words(["bash", "train.sh"]) is None
    assert cmdline.interpreter_flags(["make", "train"]) == frozenset()


@pytest.mark.parametrize("python", ["python3.11.4", "python3.13t", "pypy3", "venv/bin/pypy3"])
def test_argv_paths_skip_the_script_of_every_python(tmp_path: Path, python: str) -> None:
    for name in ("train.py", "data.csv"):
        (tmp_path / name).write_text("x")
    argv = [python, "-uW", "ignore", "train.py", "data.csv"]
    assert cmdline.argv_paths(argv, tmp_path, tmp_path) == ["data.csv"]
    assert cmdline.argv_paths([python, "-c", "print(1)", "data.csv"], tmp_path, tmp_path) == [
        "data.csv"]


def test_shebang_reads_first_line_only(tmp_path: Path) -> None:
    script = executable(tmp_path / "s", "#!/usr/bin/env -S python3 -I\n#!/bin/sh\n")
    assert cmdline.shebang(str(script)) == ["/usr/bin/env", "-S", "python3", "-I"]
    assert cmdline.shebang("s", cwd=tmp_path) == []  # no directory part: looked up on PATH
    assert cmdline.shebang("./s", cwd=tmp_path) == ["/usr/bin/env", "-S", "python3", "-I"]
    assert cmdline.shebang(str(executable(tmp_path / "b", "print(1)\n"))) == []
    assert cmdline.shebang(str(tmp_path / "missing")) == []
