"""The Python API (repro.api, docs/api.md): cheap to import, the CLI's errors, the docs' example."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from repro import api, errors
from repro.cli.main import main
from repro.record import manifest
from tests.conftest import GIT_ENV, PYTHON, git

ROOT = Path(__file__).resolve().parent.parent
CLI_LIBRARIES = ("typer", "click", "rich")
HEAVY = (*CLI_LIBRARIES, "yaml", "git")


def fresh(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([PYTHON, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **GIT_ENV})
    assert done.returncode == 0, done.stderr
    return done


def loaded(names: tuple[str, ...]) -> str:
    return f"sorted({{m.split('.')[0] for m in sys.modules}} & {set(names)!r})"


def record(repo: Path, *argv: str) -> None:
    assert main(["run", "--seed", "3", "--", PYTHON, "-c", *argv]) == 0


def test_import_repro_loads_no_cli_yaml_or_git_library(repo: Path) -> None:
    record(repo, "print(1)")
    done = fresh(f"import sys, repro\nprint({loaded(HEAVY)})\n"
                 f"rows = repro.runs(); run = repro.load('latest')\n"
                 f"d = repro.diff(run, 'latest')\nprint({loaded(CLI_LIBRARIES)}, d.changed)\n",
                 repo)
    assert done.stdout.split("\n")[:2] == ["[]", "[] False"]


def test_repro_verify_is_the_api_function(repo: Path) -> None:
    # The verify command's flow lives in repro/commands/verify.py; `repro.verify` is the API's
    # function whichever module was imported first.
    for first in ("import repro.commands.verify", "from repro.cli import app", "import repro.api", "pass"):
        done = fresh(f"{first}\nimport repro\nfrom repro import api\n"
                     "print(repro.verify is api.verify, type(repro.verify).__name__)\n", repo)
        assert done.stdout.split() == ["True", "function"], first


def test_dir_lists_the_api_not_the_imports_behind_it() -> None:
    import repro

    public = [n for n in dir(repro) if not n.startswith("_")]
    assert public == ["Run", "SilentReporter", "diff", "load", "runs", "verify"]
    assert "__version__" in dir(repro)


def test_runs_are_the_rows_of_runs_json(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record(repo, "print(1)")
    record(repo, "print(2)")
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    assert api.runs() == json.loads(capsys.readouterr().out)["runs"]
    assert [r["command"][-1] for r in api.runs(limit=1)] == ["print(2)"]


def test_load_gives_the_sections_and_the_run_dir(repo: Path) -> None:
    record(repo, "print(1)")
    run = api.load("latest", root=repo / ".repro")
    path = run.run_dir / "manifest.yaml"
    assert run.run_id == path.parent.name and run.seed.value == 3
    assert run.to_dict() == manifest.to_dict(manifest.read(path))
    assert run.manifest == manifest.read(path)
    assert api.load(run) is run and api.load(str(path)) == run


def test_errors_are_the_clis(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(errors.RunNotFoundError) as e:
        api.load("latest")
    assert e.value.hint and "no runs yet" in e.value.message
    with pytest.raises(errors.NotAGitRepoError):
        api.runs(root=tmp_path_factory.mktemp("not-a-repo"))
    with pytest.raises(errors.UsageError):
        api.verify("latest", vary=["moon-phase"])


def test_verify_asks_for_yes_instead_of_prompting_and_prints_nothing(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (repo / ".gitignore").write_text(".repro/\nout.txt\n")
    git(repo, "commit", "-qam", "out.txt is an output")
    (repo / "baseline").mkdir()
    assert main(["run", "--output", "out.txt", "--", PYTHON, "-c",
                 "open('out.txt', 'w').write('x'); print('hi')"]) == 0
    capfd.readouterr()
    foreign = repo / "baseline" / "manifest.yaml"
    foreign.write_bytes(api.load("latest").run_dir.joinpath("manifest.yaml").read_bytes())
    git(repo, "add", "baseline")
    git(repo, "commit", "-qm", "baseline")
    with pytest.raises(errors.ReplayError) as e:
        api.verify(str(foreign))
    assert "--yes" in str(e.value.hint)
    reporter = api.SilentReporter()
    report = api.verify(str(foreign), yes=True, reporter=reporter)
    assert report.verdict == "bitwise" and report.reproduced and len(report.runs) == 1
    out, err = capfd.readouterr()
    assert out == "" and err == "hi\n"  # only the replayed command's own output, on stderr


def api_doc_code() -> str:
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", text, re.M | re.S)
    assert len(blocks) >= 5
    return "\n".join(blocks)


@pytest.mark.slow  # records two runs and replays one, each a real child process
def test_the_api_docs_example_runs(tmp_path: Path) -> None:
    # In a fresh interpreter, as a notebook would; the example makes its own scratch repo.
    done = subprocess.run([PYTHON, "-c", api_doc_code()], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, **GIT_ENV, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "there are only 2 runs" in done.stdout
    assert "exit_code True" in done.stdout and "metric" in done.stdout
    scratch = next(tmp_path.glob("*/project"))
    assert len(list((scratch / ".repro" / "runs").iterdir())) == 3  # two runs and a replay


def test_verify_under_another_python_says_why_in_the_report(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook whose PATH finds another `python` than the run's: the replay fails, and the
    report (not only a warning nobody sees) says which interpreter it ran."""
    import sys

    if sys.prefix == sys.base_prefix or not (Path(PYTHON).parent / "python").exists():
        pytest.skip("the tests do not run in a virtual environment")
    venv, bare = Path(PYTHON).parent, tmp_path / "bare-bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys._base_executable)  # type: ignore[attr-defined]
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{venv}{os.pathsep}{path}")
    # stands in for a script importing a package only the project's venv has
    (repo / ".gitignore").write_text(".repro/\nout.txt\n")
    git(repo, "commit", "-qam", "out.txt is an output")
    assert main(["run", "--output", "out.txt", "--", "python", "-c",
                 "import sys; open('out.txt', 'w').write('x'); "
                 "sys.exit(sys.prefix == sys.base_prefix)"]) == 0
    monkeypatch.setenv("PATH", f"{bare}{os.pathsep}{path}")
    report = api.verify("latest")
    assert report.verdict == "not-reproduced"
    exit_check = report.checks[0]
    assert f"the replay ran {bare / 'python'}, the run {venv / 'python'}" in exit_check.detail
    assert any("interpreter" in message for message, _ in report.warnings)


def test_a_run_recorded_on_another_machine_is_no_sign_of_a_wrong_interpreter(
        tmp_path: Path) -> None:
    # CI verifying a pulled run: its venv path does not exist here; the failing exit check
    # must not blame the environment ("activate the run's environment") for that alone.
    from repro.commands import verify

    here = sys.executable
    assert not verify._other_interpreter("/home/alice/proj/.venv/bin/python", here)
    assert verify._other_interpreter(here, str(tmp_path / "bin" / "python"))
    assert not verify._other_interpreter(here, here)


def test_a_reused_reporter_gives_each_verify_its_own_warnings(repo: Path) -> None:
    (repo / ".gitignore").write_text(".repro/\nout.txt\n")
    git(repo, "commit", "-qam", "out.txt is an output")
    assert main(["run", "--output", "out.txt", "--", PYTHON, "-c",
                 "open('out.txt', 'w').write('x')"]) == 0
    told = api.SilentReporter()
    told.warn("from an earlier call")
    report = api.verify("latest", reporter=told)
    assert report.verdict == "bitwise" and report.warnings == ()
    assert told.warnings[0] == ("from an earlier call", None)  # the caller's own list kept
