"""The entry point: the typer-free `run` parser agrees with the typer `run` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from repro.cli import app as cli
from repro.cli import main


def typer_run_params() -> dict[str, Any]:
    return {p.name: p for p in typer.main.get_command(cli.app).commands["run"].params}


def typer_parse(args: list[str]) -> dict[str, Any]:
    command = typer.main.get_command(cli.app).commands["run"]
    with command.make_context("run", list(args[1:])) as ctx:
        # click gives repeatable options as tuples; the fast parser gives lists
        return {k: list(v) if isinstance(v, tuple) else v for k, v in ctx.params.items()}


def test_fast_parser_knows_exactly_the_typer_options() -> None:
    params = typer_run_params()
    declared = {opt: p.name for p in params.values() if p.name != "cmd" for opt in p.opts}
    assert declared == {flag: name for flag, (name, _) in main.RUN_OPTIONS.items()}


@pytest.mark.parametrize("args", [
    ["run", "python", "t.py"],
    ["run", "--", "python", "t.py", "--seed", "9"],
    ["run", "--seed", "3", "python", "t.py", "--seed", "9", "--help"],
    ["run", "--seed=3", "--determinism", "warn", "--threads", "2", "--", "python", "-c", "x"],
    ["run", "--allow-dirty", "--allow-unlocked", "--data", "a", "--data=b", "--output", "o",
     "--metrics", "m.json", "--name", "n", "--tag", "a=1", "--tag", "b=2", "--note", "hi",
     "./train.sh"],
    ["run", "--seed", "4294967295", "x"],
    ["run", "--quiet", "--", "python", "t.py"],
    ["run", "--kill-after", "2.5", "--", "python", "t.py"],
    ["run", "--kill-after=0.5", "x"],
])
def test_fast_parser_matches_typer(args: list[str]) -> None:
    fast = main.parse_run(args)
    assert fast is not None
    expected = {k: v for k, v in typer_parse(args).items() if v not in (None, False, [])}
    assert fast == expected


@pytest.mark.parametrize("args", [
    ["run", "--help"],
    ["run", "-h", "python"],
    ["run", "--sed", "3", "python"],
    ["run", "--seed"],
    ["run", "--seed", "three", "python"],
    ["run", "--seed", "-1", "python"],
    ["run", "--repeat", "3", "python"],  # a group: the typer app's
    ["run", "--seed", "1", "--jobs", "2", "--repeat", "3", "python"],
    ["run", "--seed", "4294967296", "python"],
    ["run", "--threads", "0", "python"],
    ["run", "--kill-after", "-1", "python"],
    ["run", "--kill-after", "soon", "python"],
    ["run", "--allow-dirty=yes", "python"],
    ["run"],
    ["run", "--"],
    ["runs"],
    ["show", "latest"],
])
def test_anything_unusual_goes_to_typer(args: list[str]) -> None:
    assert main.parse_run(args) is None


@pytest.mark.parametrize("args", [
    ["run", "--name", "--", "python", "t.py"],
    ["run", "--seed", "3", "--metrics", "--", "python", "t.py"],
    ["run", "--repeat", "3", "--name", "--", "python", "t.py"],  # a group: still checked
    ["run", "--repeat", "--", "python", "t.py"],
])
def test_an_option_value_forgotten_before_the_separator_is_an_error(
        args: list[str], capfd: pytest.CaptureFixture[str]) -> None:
    # before: `--name --` named the run "--" (and `--metrics --` read a file named "--")
    assert main.main(args) == 125
    flag = args[args.index("--") - 1]
    assert f"error: {flag} needs a value before `--`" in capfd.readouterr().err


def test_typer_reports_what_the_fast_parser_declines(capfd: pytest.CaptureFixture[str]) -> None:
    assert main.main(["run", "--seed", "three", "python"]) == 125  # run's usage errors: 125
    assert "error: invalid value for '--seed'" in capfd.readouterr().err
    assert main.main(["run", "--help"]) == 0
    out = capfd.readouterr().out
    assert "Example:" in out and "--allow-dirty" in out


@pytest.mark.parametrize(("args", "code", "error", "hint"), [
    (["run", "--repeat", "0", "--", "true"], 125,
     "error: invalid value for '--repeat': Input should be greater than or equal to 1",
     "hint: `repro run --help` shows the usage and options, with examples"),
    (["diff", "--nosuch", "a", "b"], 2, "error: no such option: --nosuch",
     "hint: `repro diff --help`"),
    (["nosuchcmd"], 2, "error: no such command 'nosuchcmd'",
     "hint: `repro --help` shows the commands, with examples"),
    (["show"], 2, "error: missing argument 'RUN'", "hint: `repro show --help`"),
])
def test_usage_errors_are_error_and_hint_lines(args: list[str], code: int, error: str,
                                               hint: str,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    # before: click's own "Usage: ...\nTry ...\n\nError: Invalid value ..." block
    assert main.main(args) == code
    err = capfd.readouterr().err.splitlines()
    assert err[0] == error and err[1].startswith(hint) and len(err) == 2, err


def test_a_usage_error_with_json_is_still_one_json_document(
        capfd: pytest.CaptureFixture[str]) -> None:
    assert main.main(["runs", "--json", "--limit", "many"]) == 2
    doc = json.loads(capfd.readouterr().out)
    assert doc["schema"] == "repro/error/v1" and "'--limit'" in doc["error"]
    assert doc["exit_code"] == 2


@pytest.mark.parametrize("command", ["run", "runs", "show", "diff", "replay", "verify", "init",
                                     "doctor", "compare"])
def test_every_command_has_help_with_an_example(command: str,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    assert main.main([command, "--help"]) == 0
    out = capfd.readouterr().out
    assert "Example" in out, out
    # Options name their value (N, TOL, TEXT), not typer's type placeholder (<int range>).
    options = [line for line in out.splitlines() if line.lstrip().startswith("-")]
    assert not [line for line in options if "<" in line.strip().split("  ")[0]], out


def test_run_help_example_gives_repro_its_own_options(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main.main(["run", "--help"]) == 0
    examples = [line.strip() for line in capsys.readouterr().out.splitlines()
                if line.strip().startswith("repro run ")]
    assert examples
    parsed_all = []
    for example in examples:
        parsed = main.parse_run(example.split()[1:])
        if parsed is None:  # a group (--repeat): the typer app's, which must take it
            words = example.split()
            assert {w for w, (_, kind) in main.RUN_OPTIONS.items() if kind == "typer"} \
                & set(words), example
            assert typer_parse(words[1:])["repeat"] is not None
            continue
        # Options repro declares are repro's, not the script's: none of them after the command.
        assert not set(parsed["cmd"]) & set(main.RUN_OPTIONS), example
        parsed_all.append(parsed)
    assert any(p.get("output") == ["checkpoints/"] for p in parsed_all), examples


def _probe(repo: Path, before: str) -> subprocess.CompletedProcess[str]:
    script = (f"import sys\n{before}\n"
              "sys.argv = ['repro', 'run', '--', sys.executable, '-c', "
              "'import sys; sys.stdout.write(\"y\" * 100000); sys.exit(3)']\n"
              "from repro.cli.main import main\ncode = main()\n"
              "print('returned', code, file=sys.stderr)\n")
    return subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True,
                          text=True, timeout=120)


def test_run_ends_without_the_interpreters_teardown(repo: Path) -> None:
    """The program's `repro run` exits at once with the child's code (~7 ms less per run),
    its output and summary line complete, and no teardown code runs."""
    done = _probe(repo, "class Loud:\n    def __del__(self):\n"
                        "        print('teardown', file=sys.stderr)\nkeep = Loud()")
    assert done.returncode == 3
    assert done.stdout == "y" * 100000
    assert "failed (exit 3)" in done.stderr
    assert "returned" not in done.stderr and "teardown" not in done.stderr


def test_run_keeps_the_usual_exit_when_atexit_has_work(repo: Path) -> None:
    done = _probe(repo, "import atexit\natexit.register(print, 'atexit ran', file=sys.stderr)")
    assert done.returncode == 0  # main returned 3; the probe script itself then ends normally
    assert "returned 3" in done.stderr and "atexit ran" in done.stderr
    assert done.stdout == "y" * 100000
