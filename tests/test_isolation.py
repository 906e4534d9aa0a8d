"""Replay and verify never touch the user's checkout, on ordinary project layouts (issue 9).

Every test hashes the checkout (ignored files and inputs included, plus git's status, index
and worktrees) before and after each replay/verify with `snapshot_tree`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from repro.cli.main import main
from tests.conftest import PYTHON, git, snapshot_tree

IGNORE = ".repro/\nout/\nmetrics.json\ndata/\nmodel.pt\n"

# Reads its input, then misbehaves: appends to it, writes a file beside it, deletes a sibling.
APPENDS = """\
import pathlib, sys
src = pathlib.Path(sys.argv[sys.argv.index("--train") + 1])
text = src.read_text()
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
(out / "result.txt").write_text(str(len(text.splitlines())) + "\\n")
with src.open("a") as f:
    f.write("9,9\\n")
(src.parent / (src.name + ".cache")).write_text("cached")
scratch = src.parent / "scratch.txt"
if scratch.exists():
    scratch.unlink()
__import__("time").sleep(0.3)  # outputs older than the stat cache's racy margin get cached
"""


def commit(repo: Path, script: str, config: str | None = None) -> None:
    (repo / "train.py").write_text(script)
    (repo / ".gitignore").write_text(IGNORE)
    if config is not None:
        (repo / "repro.yaml").write_text(config)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "script")


def make_data(repo: Path) -> None:
    (repo / "data").mkdir(exist_ok=True)
    (repo / "data" / "train.csv").write_text("a,b\n1,2\n3,4\n")
    (repo / "data" / "scratch.txt").write_text("keep me\n")
    cache = repo / "data" / "train.csv.cache"
    if cache.exists():
        cache.unlink()


def verify_doc(args: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    """verify --json through main(), with fd-level capture: stdout must be one JSON document."""
    capfd.readouterr()
    code = main(["verify", "--json", *args])
    captured = capfd.readouterr()
    return code, json.loads(captured.out), captured.err


def show(ref: str, capfd: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    capfd.readouterr()
    assert main(["show", ref, "--json"]) == 0
    return json.loads(capfd.readouterr().out)  # type: ignore[no-any-return]


def repro_proc(repo: Path, *args: str, env: dict[str, str] | None = None,
               **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PYTHON, "-m", "repro", *args], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env,
                            **kw)  # type: ignore[call-overload]


# ---------------------------------------------------------------------------- 1: isolation


@pytest.mark.slow
def test_verify_of_a_script_writing_into_its_input_leaves_the_checkout_alone(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, APPENDS)
    make_data(repo)
    assert main(["run", "--output", "out", "--", PYTHON, "train.py", "--train",
                 "data/train.csv"]) == 0
    make_data(repo)  # the user puts their data back after the original run's edits
    before = snapshot_tree(repo)
    code, report, _ = verify_doc(["latest"], capfd)
    assert (code, report["verdict"]) == (0, "bitwise")
    assert snapshot_tree(repo) == before
    code, _, _ = verify_doc(["latest", "--vary", "cwd"], capfd)  # a worktree under another name
    assert code == 0
    assert main(["replay", "latest"]) == 0
    assert snapshot_tree(repo) == before


def test_replay_with_an_existing_save_path_does_not_overwrite_the_users_file(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`--save model.pt` when model.pt exists from an earlier run."""
    commit(repo, "import pathlib, sys\n"
                 "pathlib.Path(sys.argv[2]).write_bytes(b'weights')\n"
                 "pathlib.Path('metrics.json').write_text('{\"loss\": 0.5}')\n")
    run = ["run", "--metrics", "metrics.json", "--", PYTHON, "train.py", "--save", "model.pt"]
    assert main(run) == 0
    assert main(run) == 0  # model.pt exists now
    before = snapshot_tree(repo)
    code, report, _ = verify_doc(["latest"], capfd)
    assert (code, report["verdict"]) == (0, "bitwise")
    assert main(["replay", "latest"]) == 0
    assert snapshot_tree(repo) == before


def test_nested_directory_input_is_a_real_directory_in_the_replay(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`--data data` plus a file inside it: new files beside inputs stay in the worktree."""
    commit(repo, APPENDS)
    make_data(repo)
    (repo / "data" / "sub").mkdir()
    (repo / "data" / "sub" / "x.bin").write_bytes(b"\0" * 100)
    run = ["run", "--data", "data", "--output", "out", "--", PYTHON, "train.py", "--train",
           "data/train.csv"]
    assert main(run) == 0
    recorded = show("latest", capfd)
    assert set(recorded["data"]) == {"data", "data/train.csv"}
    make_data(repo)
    before = snapshot_tree(repo)
    shards = repo / ".repro" / "cache" / "stat-v1"
    cached = set(os.listdir(shards))
    code, report, err = verify_doc(["latest"], capfd)
    assert (code, report["verdict"]) == (0, "bitwise"), err
    assert "symlink" not in err and "edited" not in err
    assert snapshot_tree(repo) == before
    # The copies' stat cache went with the worktree; the checkout's own paths may be new.
    import blake3

    checkout = {blake3.blake3(os.fsencode(os.path.join(os.path.realpath(repo), p))).hexdigest()[:32]
                for p in ("data", "data/train.csv", "out")}
    assert set(os.listdir(shards)) - cached <= checkout


def test_config_directory_input_plus_argv_file_is_one_recipe(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`data: [data/]` in repro.yaml (what `repro init` writes) plus `--train data/train.csv`."""
    commit(repo, APPENDS, config="data: [data/]\noutputs: [out]\n")
    make_data(repo)
    assert main(["run", "--", PYTHON, "train.py", "--train", "data/train.csv"]) == 0
    make_data(repo)
    before = snapshot_tree(repo)
    code, report, err = verify_doc(["latest"], capfd)
    assert (code, report["verdict"]) == (0, "bitwise"), err
    assert "hostile" not in err and "edited" not in err
    assert main(["replay", "latest"]) == 0
    assert snapshot_tree(repo) == before


def test_an_input_over_the_copy_budget_is_linked_named_and_checked_afterwards(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, APPENDS, config="replay_copy_max_bytes: 4\n")
    make_data(repo)
    assert main(["run", "--output", "out", "--", PYTHON, "train.py", "--train",
                 "data/train.csv"]) == 0
    make_data(repo)
    capfd.readouterr()
    assert main(["verify", "latest"]) == 2
    err = capfd.readouterr().err
    warned = err.index("input data/train.csv is too large to copy")
    failed = err.index("error: the replay changed input data/train.csv")
    assert warned < failed
    assert "replay_copy_max_bytes" in err


def test_a_read_only_script_passes_with_a_linked_input(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, "import pathlib, sys\n"
                 "n = len(pathlib.Path(sys.argv[1]).read_text())\n"
                 "pathlib.Path('metrics.json').write_text('{\"n\": %d}' % n)\n",
           config="replay_copy_max_bytes: 4\n")
    make_data(repo)
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "train.py",
                 "data/train.csv"]) == 0
    before = snapshot_tree(repo)
    code, report, err = verify_doc(["latest"], capfd)
    assert (code, report["verdict"]) == (0, "bitwise")
    assert "data/train.csv is too large to copy" in err
    assert snapshot_tree(repo) == before


def test_a_partly_tracked_directory_input_over_the_budget_gets_what_the_commit_lacks(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, "import pathlib\n"
                 "n = len(pathlib.Path('data/train.csv').read_text())\n"
                 "n += len(pathlib.Path('data/README.md').read_text())\n"
                 "pathlib.Path('metrics.json').write_text('{\"n\": %d}' % n)\n",
           config="replay_copy_max_bytes: 4\n")
    make_data(repo)
    (repo / "data" / "README.md").write_text("tracked\n")
    git(repo, "add", "-f", "data/README.md")
    git(repo, "commit", "-qm", "data readme")
    assert main(["run", "--data", "data", "--metrics", "metrics.json", "--", PYTHON,
                 "train.py"]) == 0
    before = snapshot_tree(repo)
    code, report, err = verify_doc(["latest"], capfd)
    assert (code, report["verdict"]) == (0, "bitwise"), err
    assert "input data is too large to copy" in err
    assert snapshot_tree(repo) == before


def test_an_input_outside_the_repository_is_checked_after_the_replay(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "datasets"
    outside.mkdir()
    (outside / "train.csv").write_text("a,b\n1,2\n")
    commit(repo, APPENDS)
    assert main(["run", "--data", str(outside / "train.csv"), "--output", "out", "--", PYTHON,
                 "train.py", "--train", str(outside / "train.csv")]) == 0
    (outside / "train.csv").write_text("a,b\n1,2\n")
    (outside / "train.csv.cache").unlink()
    capfd.readouterr()
    assert main(["verify", "latest"]) == 2
    assert f"the replay changed input {outside / 'train.csv'}" in capfd.readouterr().err


def test_script_copies_inputs_instead_of_linking_them(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, APPENDS, config="data: [data/]\noutputs: [out]\n")
    make_data(repo)
    assert main(["run", "--", PYTHON, "train.py", "--train", "data/train.csv"]) == 0
    make_data(repo)
    capfd.readouterr()
    assert main(["replay", "latest", "--script"]) == 0
    script = capfd.readouterr().out
    assert "ln -s" not in script
    before = snapshot_tree(repo)
    done = subprocess.run(["bash", "-s", str(repo)], input=script, capture_output=True,
                          text=True, cwd=tmp_path, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("REPRO_")})
    assert done.returncode == 0, done.stderr
    tree = Path(done.stderr.strip().splitlines()[-1].removeprefix("outputs are in "))
    assert (tree / "out" / "result.txt").read_text() == "3\n"
    assert (tree / "data" / "train.csv.cache").exists()
    after = snapshot_tree(repo)
    # The script registers its worktree (it leaves the outputs there for the user).
    assert {k: v for k, v in after.items() if k != ":worktrees"} == \
        {k: v for k, v in before.items() if k != ":worktrees"}


# ---------------------------------------------------------------------------- 5: --json


@pytest.mark.slow
def test_verify_json_is_one_document_and_the_commands_output_goes_to_stderr(
        repo: Path) -> None:
    commit(repo, "import pathlib\nprint('hello from the script')\n"
                 "pathlib.Path('metrics.json').write_text('{\"x\": 1}')\n")
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "train.py"]) == 0
    before = snapshot_tree(repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    proc = repro_proc(repo, "verify", "latest", "--json", env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    doc = json.loads(out)  # the whole of stdout
    assert doc["verdict"] == "bitwise"
    assert b"hello from the script" in err
    replay_dir = repo / ".repro" / "runs" / doc["runs"][0]
    assert (replay_dir / "stdout.log").read_text() == "hello from the script\n"
    assert snapshot_tree(repo) == before
    proc = repro_proc(repo, "verify", "--runs", "2", "--metrics", "metrics.json", "--json",
                      "--", PYTHON, "train.py", env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["verdict"] == "bitwise"
    assert err.count(b"hello from the script") == 2


# ---------------------------------------------------------------------------- 6: environment


ENV_SCRIPT = """\
import json, os, pathlib
pathlib.Path("metrics.json").write_text(json.dumps({"mode": len(os.environ.get("TRAIN_MODE", ""))}))
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
(out / "mode.txt").write_text(os.environ.get("TRAIN_MODE", "unset"))
"""


def test_replay_restores_recorded_allow_listed_variables_and_warns_when_they_differ(
        repo: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, ENV_SCRIPT, config="env_allow: [TRAIN_MODE]\n")
    monkeypatch.setenv("TRAIN_MODE", "careful")
    assert main(["run", "--output", "out", "--metrics", "metrics.json", "--", PYTHON,
                 "train.py"]) == 0
    assert show("latest", capfd)["environment"]["env"]["TRAIN_MODE"] == "careful"
    monkeypatch.delenv("TRAIN_MODE")
    capfd.readouterr()
    assert main(["replay", "latest", "--dry-run"]) == 0
    assert json.loads(capfd.readouterr().out)["env"]["TRAIN_MODE"] == "careful"
    before = snapshot_tree(repo)
    code, report, err = verify_doc(["latest"], capfd)
    assert (code, report["verdict"]) == (0, "bitwise"), err
    assert "TRAIN_MODE" not in err  # not set here: restored silently
    monkeypatch.setenv("TRAIN_MODE", "reckless")
    code, report, err = verify_doc(["latest"], capfd)
    assert (code, report["verdict"]) == (0, "bitwise")
    assert "TRAIN_MODE" in err and "reckless" in err and "careful" in err
    assert snapshot_tree(repo) == before


def test_replay_never_restores_secret_or_unlisted_variables_from_a_manifest(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, ENV_SCRIPT, config="env_allow: [TRAIN_MODE, MY_API_TOKEN]\n")
    assert main(["run", "--output", "out", "--", PYTHON, "train.py"]) == 0
    run_dir = sorted((repo / ".repro" / "runs").iterdir())[-1]
    doc = yaml.safe_load((run_dir / "manifest.yaml").read_text())
    doc["environment"]["env"].update({"MY_API_TOKEN": "leaked", "LD_PRELOAD": "/tmp/evil.so",
                                      "TRAIN_MODE": "fast"})
    (run_dir / "manifest.yaml").write_text(yaml.safe_dump(doc))
    capfd.readouterr()
    assert main(["replay", "latest", "--dry-run"]) == 0
    env = json.loads(capfd.readouterr().out)["env"]
    assert env.get("TRAIN_MODE") == "fast"
    assert "MY_API_TOKEN" not in env and "LD_PRELOAD" not in env


# ---------------------------------------------------------------------------- 7: Ctrl-C


@pytest.mark.parametrize("command", ["verify", "replay"])
def test_ctrl_c_during_verify_exits_130_records_interrupted_and_cleans_up(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], command: str) -> None:
    commit(repo, "import os, pathlib, sys, time\n"
                 "pathlib.Path('metrics.json').write_text('{\"x\": 1}')\n"
                 "if 'repro-replay-' in os.getcwd():\n"
                 "    print('ready', file=sys.stderr, flush=True)\n"
                 "    time.sleep(60)\n")
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "train.py"]) == 0
    original = show("latest", capfd)["run"]["run_id"]
    before = snapshot_tree(repo)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("REPRO_")},
           "TMPDIR": str(tmp)}
    proc = repro_proc(repo, command, "latest", env=env, start_new_session=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, "verify ended before the replay started"
        if line == b"ready\n":
            break
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert out == b""  # no verdict
    capfd.readouterr()
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capfd.readouterr().out)["runs"]
    replay = next(r for r in rows if r["run_id"] != original)
    assert replay["status"] == "interrupted"
    assert replay["replay_of"] == original
    assert replay["started_by"] == ("verify" if command == "verify" else None)
    assert list(tmp.iterdir()) == []  # the worktree is gone
    assert snapshot_tree(repo) == before


# ---------------------------------------------------------------------------- 8: missing file


def test_a_replay_failing_on_an_unrecorded_file_names_it_and_hints_data(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, "import pathlib\n"
                 "vocab = pathlib.Path('data/vocab.txt').read_text()\n"
                 "pathlib.Path('metrics.json').write_text('{\"n\": %d}' % len(vocab))\n")
    (repo / "data").mkdir()
    (repo / "data" / "vocab.txt").write_text("a b c\n")
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "train.py"]) == 0
    before = snapshot_tree(repo)
    code, report, err = verify_doc(["latest"], capfd)
    assert (code, report["verdict"]) == (1, "not-reproduced")
    assert "data/vocab.txt" in err and "--data data/vocab.txt" in err
    exit_check = next(c for c in report["checks"] if c["kind"] == "exit")
    assert "data/vocab.txt" in exit_check["detail"] and "--data" in exit_check["detail"]
    capfd.readouterr()
    assert main(["replay", "latest"]) == 1
    assert "--data data/vocab.txt" in capfd.readouterr().err
    assert snapshot_tree(repo) == before


# ---------------------------------------------------------------------------- 9: latest


@pytest.mark.slow
def test_verify_replays_are_marked_and_never_become_latest(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, "import os, pathlib\n"
                 "pathlib.Path('metrics.json').write_text('{\"x\": 1}')\n")
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "train.py"]) == 0
    first = show("latest", capfd)["run"]["run_id"]
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "train.py"]) == 0
    second = show("latest", capfd)["run"]["run_id"]
    before = snapshot_tree(repo)
    code, report, _ = verify_doc(["latest", "--vary", "threads"], capfd)
    assert (code, report["run"]) == (0, second)
    code, again, _ = verify_doc(["latest"], capfd)
    assert (code, again["run"]) == (0, second)  # the same run, twice
    assert show("latest", capfd)["run"]["run_id"] == second
    assert show("latest~1", capfd)["run"]["run_id"] == first
    replay = show(report["runs"][0], capfd)["run"]
    assert (replay["replay_of"], replay["started_by"]) == (second, "verify")
    capfd.readouterr()
    assert main(["runs", "--json"]) == 0
    rows = json.loads(capfd.readouterr().out)["runs"]
    assert [r["started_by"] for r in rows].count("verify") == 3
    assert main(["runs"]) == 0
    table = capfd.readouterr().out
    assert table.count("verify") == 3
    assert main(["show", report["runs"][0]]) == 0
    assert "by verify" in capfd.readouterr().out
    assert main(["show", "latest~2"]) == 2
    assert "only 2 runs" in capfd.readouterr().err
    assert snapshot_tree(repo) == before
    assert main(["replay", "latest~1"]) == 0  # a replay the user starts is their run
    assert show("latest", capfd)["run"]["replay_of"] == first
