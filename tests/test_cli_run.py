"""`repro run`, `runs`, `show` end to end: real repos, real children, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from repro.cli.main import main
from repro.commands import runsnapshot
from repro.record import manifest
from tests.conftest import PYTHON, git


def only_run(repo: Path) -> Path:
    runs = sorted((repo / ".repro" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def load(run_dir: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((run_dir / "manifest.yaml").read_text())


def finish(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Wait for a repro process and close its pipes (no unraisable-exception warnings)."""
    proc.communicate(timeout=timeout)
    return proc.returncode


def commit_slow_script(repo: Path) -> None:
    """A committed script that says `ready` and then sleeps: for signal tests."""
    (repo / "slow.py").write_text("import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    git(repo, "add", "slow.py")
    git(repo, "commit", "-qm", "slow")


def repro_proc(repo: Path, *args: str, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([PYTHON, "-m", "repro", *args], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def test_run_records_a_complete_manifest(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--seed", "3", "--name", "first", "--tag", "team=vision", "--",
                 PYTHON, "train.py"]) == 0
    assert capfd.readouterr().out == "hello\n"
    run_dir = only_run(repo)
    m = load(run_dir)
    assert m["schema"] == "repro/run/v1"
    assert m["run"]["status"] == "succeeded" and m["run"]["exit_code"] == 0
    assert m["run"]["name"] == "first" and m["run"]["tags"] == {"team": "vision"}
    assert m["command"] == {"argv": [PYTHON, "train.py"], "cwd": "."}
    assert m["seed"] == {"value": 3, "source": "flag"}
    assert m["code"]["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert m["code"]["dirty"] is False and m["code"]["branch"] == "main"
    assert m["environment"]["lockfile"]["path"] == "requirements.lock"
    assert m["environment"]["lockfile"]["matches"] is True
    assert "pyyaml" in m["environment"]["packages"]
    assert m["fingerprint"].startswith("blake3:")
    assert (run_dir / "stdout.log").read_text() == "hello\n"
    manifest.read(run_dir / "manifest.yaml")  # valid under the schema


def test_child_flags_pass_through_untouched(repo: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    (repo / "t.py").write_text("import sys; print(sys.argv[1:])\n")
    git(repo, "add", "t.py")
    git(repo, "commit", "-qm", "t")
    assert main(["run", "--seed", "3", PYTHON, "t.py", "--seed", "9", "--help", "--",
                 "x"]) == 0
    assert capfd.readouterr().out == "['--seed', '9', '--help', '--', 'x']\n"
    assert load(only_run(repo))["seed"]["value"] == 3


def test_dirty_tree_is_refused_naming_files(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (repo / "train.py").write_text("print('edited')\n")
    (repo / "scratch.py").write_text("x = 1\n")
    assert main(["run", "--", PYTHON, "train.py"]) == 125
    err = capfd.readouterr().err
    assert "error: the work tree has uncommitted or untracked files:" in err
    assert "train.py (modified)" in err and "scratch.py (untracked)" in err
    assert "hint:" in err and "--allow-dirty" in err
    assert "declare them with --output PATH" in err  # an untracked file may be a run's result
    assert not (repo / ".repro" / "runs").exists()


def test_dirty_refusal_lists_ten_then_counts(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    for i in range(15):
        (repo / f"f{i:02d}.txt").write_text("x")
    assert main(["run", "--", PYTHON, "train.py"]) == 125
    assert "and 5 more" in capfd.readouterr().err


def test_allow_dirty_snapshot_rebuilds_the_tree(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text("print('edited')\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "helper.py").write_text("VALUE = 42\n")
    (repo / "big.bin").write_bytes(b"\0" * 2048)
    (repo / "repro.yaml").write_text("untracked_max_bytes: 1024\n")
    assert main(["run", "--allow-dirty", "--", PYTHON, "train.py"]) == 0
    run_dir = only_run(repo)
    m = load(run_dir)
    assert m["code"]["dirty"] is True
    assert m["code"]["patch"]["file"] == "code.patch"
    untracked = {u["path"]: u for u in m["code"]["untracked"]}
    assert untracked["sub/helper.py"]["copied"] is True
    assert untracked["big.bin"]["copied"] is False and untracked["big.bin"]["size"] == 2048
    # Rebuild: the commit + the patch + the copies give back the tree that ran.
    rebuilt = tmp_path / "rebuilt"
    git(repo, "worktree", "add", "-q", "--detach", str(rebuilt), m["code"]["commit"])
    git(rebuilt, "apply", str(run_dir / "code.patch"))
    for rel, u in untracked.items():
        if u["copied"]:
            (rebuilt / rel).parent.mkdir(parents=True, exist_ok=True)
            (rebuilt / rel).write_bytes((run_dir / "untracked" / rel).read_bytes())
    assert (rebuilt / "train.py").read_text() == "print('edited')\n"
    assert (rebuilt / "sub" / "helper.py").read_text() == "VALUE = 42\n"


def test_missing_lockfile_is_refused(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    git(repo, "rm", "-q", "requirements.lock")
    git(repo, "commit", "-qm", "no lock")
    assert main(["run", "--", PYTHON, "train.py"]) == 125
    err = capfd.readouterr().err
    assert "error: no lockfile found" in err and "--allow-unlocked" in err
    assert main(["run", "--allow-unlocked", "--", PYTHON, "train.py"]) == 0
    assert "warning: recording an unlocked run" in capfd.readouterr().err
    assert load(only_run(repo))["environment"]["lockfile"] is None


def test_mismatched_pin_is_refused_naming_the_package(repo: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    (repo / "requirements.lock").write_text("pyyaml==0.0.1\n")
    git(repo, "commit", "-qam", "bad pin")
    assert main(["run", "--", PYTHON, "train.py"]) == 125
    err = capfd.readouterr().err
    assert "pyyaml (locked 0.0.1, installed " in err
    assert main(["run", "--allow-unlocked", "--", PYTHON, "train.py"]) == 0
    lock = load(only_run(repo))["environment"]["lockfile"]
    assert lock["matches"] is False
    assert lock["mismatches"][0]["name"] == "pyyaml"


def test_packages_come_from_the_commands_interpreter(repo: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv2"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "onlyhere-1.0.dist-info").mkdir()
    (repo / "requirements.lock").write_text("onlyhere==1.0\n")
    git(repo, "commit", "-qam", "lock for venv2")
    assert main(["run", "--", str(venv / "bin" / "python"), "train.py"]) == 0
    env = load(only_run(repo))["environment"]
    assert env["packages"] == {"onlyhere": "1.0"}
    assert env["python"]["executable"].startswith(str(venv))
    assert env["interpreter_source"] == "argv"


@pytest.mark.parametrize(("argv", "code"), [
    ([PYTHON, "-c", "import sys; sys.exit(3)"], 3),
    (["no-such-command-xyz"], 127),
    (["./train.py"], 126),
])
def test_exit_codes(repo: Path, argv: list[str], code: int,
                    capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--", *argv]) == code
    m = load(only_run(repo))
    assert m["run"]["status"] == "failed" and m["run"]["exit_code"] == code
    if code in (126, 127):
        assert "error:" in capfd.readouterr().err


def test_not_a_git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--", PYTHON, "-c", "pass"]) == 125
    assert "is not inside a git repository" in capfd.readouterr().err


def test_sigterm_is_forwarded_and_143_returned(repo: Path) -> None:
    commit_slow_script(repo)
    proc = repro_proc(repo, "run", "--", PYTHON, "slow.py")
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 143
    m = load(only_run(repo))
    assert (m["run"]["status"], m["run"]["signal"], m["run"]["exit_code"]) == (
        "interrupted", "SIGTERM", 143)


def test_ctrl_c_to_the_process_group_records_interrupted(repo: Path) -> None:
    commit_slow_script(repo)
    proc = repro_proc(repo, "run", "--", PYTHON, "slow.py", start_new_session=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert finish(proc) == 130
    m = load(only_run(repo))
    assert m["run"]["status"] == "interrupted" and m["run"]["exit_code"] == 130


def test_sigkill_of_the_group_leaves_an_abandoned_run(repo: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    commit_slow_script(repo)
    proc = repro_proc(repo, "run", "--", PYTHON, "slow.py", start_new_session=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc)
    assert load(only_run(repo))["run"]["status"] == "running"  # what was on disk
    assert main(["runs", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["status"] for r in runs] == ["abandoned"]


@pytest.mark.slow
def test_concurrent_runs_get_distinct_valid_manifests(repo: Path) -> None:
    procs = [repro_proc(repo, "run", "--seed", str(i), "--", PYTHON, "train.py")
             for i in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    run_dirs = sorted((repo / ".repro" / "runs").iterdir())
    assert len(run_dirs) == 8
    seeds = {manifest.read(d / "manifest.yaml").seed.value for d in run_dirs}
    assert seeds == set(range(8))


def test_secrets_never_reach_the_store(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "canary-env-1")
    monkeypatch.setenv("MY_API_KEY", "canary-env-2")
    monkeypatch.setenv("DB_PASSWORD", "canary-env-3")
    monkeypatch.setenv("HF_ENDPOINT", "https://me:canary-env-4@hf.example.com")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    git(repo, "remote", "add", "origin", "https://bob:canary-remote@example.com/o/r.git")
    assert main(["run", "--", PYTHON, "-c", "print('ok')"]) == 0
    m = load(only_run(repo))
    assert m["code"]["remote"] == "https://example.com/o/r.git"
    for path in (repo / ".repro").rglob("*"):
        if path.is_file():
            assert b"canary" not in path.read_bytes(), path


@pytest.mark.parametrize("text", [
    "schema: repro/run/v1\nrun: {run_id: x, status: succeeded, started_at",
    "\x00\xff\xfe garbage",
    "schema: repro/run/v7\nrun: {}\n",
    "schema: repro/run/v1\nrun: !!python/object/apply:os.system ['touch PWNED']\n",
    "!!python/object/apply:subprocess.call [['touch', 'PWNED']]\n",
])
def test_bad_manifests_exit_2_with_one_line(repo: Path, text: str,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    run_dir = repo / ".repro" / "runs" / "20261123T142501.123456Z-abcd"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.yaml").write_bytes(text.encode("utf-8", "surrogateescape")
                                            if "\x00" not in text else b"\x00\xff\xfe garbage")
    assert main(["show", "latest"]) == 2
    err = capfd.readouterr().err
    assert err.startswith("error: ") and err.count("error:") == 1
    assert "Traceback" not in err
    assert not (repo / "PWNED").exists()


def test_ambiguous_prefix_lists_candidates(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    for run_id in ("20261123T142501.000001Z-aaaa", "20261123T142501.000002Z-bbbb"):
        d = repo / ".repro" / "runs" / run_id
        d.mkdir(parents=True)
        (d / "manifest.yaml").write_text("schema: repro/run/v1\n")
    assert main(["show", "20261123T1425"]) == 2
    err = capfd.readouterr().err
    assert "is ambiguous" in err and "000001Z-aaaa" in err and "000002Z-bbbb" in err


def test_runs_and_show(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--seed", "5", "--", PYTHON, "train.py"]) == 0
    assert main(["run", "--seed", "6", "--", PYTHON, "-c", "import sys; sys.exit(1)"]) == 1
    capfd.readouterr()
    assert main(["runs", "--json"]) == 0
    doc = json.loads(capfd.readouterr().out)
    assert doc["schema"] == "repro/runs/v1"
    assert [(r["seed"], r["status"]) for r in doc["runs"]] == [(6, "failed"), (5, "succeeded")]
    for key in ("run_id", "status", "started_at", "command", "seed", "commit", "dirty", "metrics"):
        assert key in doc["runs"][0]
    assert main(["ls", "--limit", "1"]) == 0
    table = capfd.readouterr().out
    assert "failed" in table and "succeeded" not in table
    assert main(["show", "latest~1"]) == 0
    text = capfd.readouterr().out
    assert "5 (flag)" in text and "succeeded" in text
    assert main(["show", "latest", "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["seed"]["value"] == 6


def test_runs_in_a_repo_without_runs(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["runs"]) == 0
    assert "no runs yet" in capfd.readouterr().err


def test_usage_errors_exit_2(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # run's own usage errors exit 125 (as env(1)'s do): 2 is the child's to return.
    assert main(["run", "--determinism", "max", "--", PYTHON, "train.py"]) == 125
    assert "unknown determinism level 'max'" in capfd.readouterr().err
    assert main(["run", "--tag", "novalue", "--", PYTHON, "train.py"]) == 125
    assert "--tag 'novalue' is not K=V" in capfd.readouterr().err
    assert main(["show"]) == 2
    assert main(["frobnicate"]) == 2
    assert not (repo / ".repro" / "runs").exists()  # nothing was recorded for a usage error


def test_bug_exits_3_and_saves_traceback(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    from repro.record import store

    def boom(self: object, limit: int | None = None) -> None:
        raise ZeroDivisionError("synthetic")

    monkeypatch.setattr(store.Store, "iter_manifests", boom)
    assert main(["runs"]) == 3
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "internal error in repro: ZeroDivisionError: synthetic" in err
    saved = list((repo / ".repro" / "bugs").iterdir())
    assert len(saved) == 1 and "ZeroDivisionError" in saved[0].read_text()


@pytest.mark.slow
def test_run_never_imports_heavy_modules_in_repros_process(repo: Path) -> None:
    """torch/numpy must never load in repro; GitPython would cost ~110 ms on the hot path."""
    probe = ("import sys\nfrom repro.cli.main import main\ncode = main(['run', '--', sys.executable, "
             "'-c', 'import torch'])\nheavy = sorted({m.split('.')[0] for m in sys.modules} & "
             "{'torch', 'numpy', 'git', 'pynvml'})\nprint('HEAVY', heavy, code, file=sys.stderr)\n")
    done = subprocess.run([PYTHON, "-c", probe], cwd=repo, capture_output=True, text=True,
                          timeout=120)
    assert "HEAVY [] 0" in done.stderr, done.stderr


def test_run_hot_path_leaves_out_modules_it_does_not_need(repo: Path) -> None:
    """tempfile (with random) and queue cost ~1.5 ms of every run's start-up: the manifest's
    temporary file and the large-file hashing pipeline do without them on this path."""
    probe = ("import sys\nfrom repro.cli.main import main\ncode = main(['run', '--quiet', '--', "
             "sys.executable, '-c', 'pass'])\nextra = sorted({m.split('.')[0] for m in "
             "sys.modules} & {'tempfile', 'random', 'queue'})\n"
             "print('EXTRA', extra, code, file=sys.stderr)\n")
    done = subprocess.run([PYTHON, "-c", probe], cwd=repo, capture_output=True, text=True,
                          timeout=120)
    assert "EXTRA [] 0" in done.stderr, done.stderr


def test_python_isolated_mode_is_reported(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--", PYTHON, "-I", "-c", "print('isolated')"]) == 0
    err = capfd.readouterr().err
    assert "warning: the seed could not be applied" in err
    hook = load(only_run(repo))["determinism"]["hook"]
    assert hook["ran"] is False and "-I" in hook["reason"]
    assert "run Python without -I, -E or -S" in err


def test_a_command_without_python_is_not_told_to_fix_its_python(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--quiet", "--", "sh", "-c", "echo plain"]) == 0
    err = capfd.readouterr().err
    assert "warning: the seed could not be applied" in err  # said, since a script may hide one
    assert "hint: a command that runs no Python has nothing to seed" in err


@pytest.mark.slow
def test_script_seeds_and_determinism_off_land_in_the_manifest(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (repo / "t.py").write_text(
        "import random, torch\nrandom.seed(7)\ntorch.manual_seed(42)\n"
        "torch.use_deterministic_algorithms(False)\nprint(torch.rand(1).item())\n")
    git(repo, "add", "t.py")
    git(repo, "commit", "-qm", "t")
    assert main(["run", "--seed", "1", "--", PYTHON, "t.py"]) == 0
    assert "turned deterministic algorithms off" in capfd.readouterr().err
    m = load(only_run(repo))
    hook = m["determinism"]["hook"]
    seeds = {(s["call"], s["value"]) for s in hook["script_seeds"]}
    assert ("random.seed", 7) in seeds and ("torch.manual_seed", 42) in seeds
    assert hook["deterministic_algorithms"] is False
    assert m["hardware"]["torch"]["version"].startswith("2.")
    capfd.readouterr()
    assert main(["show", "latest"]) == 0
    shown = capfd.readouterr().out
    assert "torch.manual_seed(42)" in shown and "overrides repro's seed" in shown


@pytest.mark.slow
def test_unseeded_torch_script_reproduces_through_repro_run(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (repo / "t.py").write_text("import torch\nprint(torch.randn(3).tolist())\n")
    git(repo, "add", "t.py")
    git(repo, "commit", "-qm", "t")
    outs = []
    for seed in ("5", "5", "6"):
        assert main(["run", "--seed", seed, "--", PYTHON, "t.py"]) == 0
        outs.append(capfd.readouterr().out)
    assert outs[0] == outs[1] != outs[2]


def test_data_outside_the_repo_and_symlinked_data_are_hashed(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "datasets" / "imagenet-mini"
    outside.mkdir(parents=True)
    (outside / "a.jpg").write_bytes(b"\xff\xd8 pixels")
    (repo / ".gitignore").write_text(".repro/\ndata\n")
    git(repo, "commit", "-qam", "ignore data")
    (repo / "data").symlink_to(outside)
    assert main(["run", "--data", str(outside), "--", PYTHON, "-c", "pass", "data"]) == 0
    section = load(only_run(repo))["data"]
    assert section[str(outside)]["kind"] == "dir" and section[str(outside)]["files"] == 1
    assert section["data"]["kind"] == "dir"  # the symlink named in argv, followed
    assert section["data"]["hash"] == section[str(outside)]["hash"]


def test_secrets_in_multi_url_values_and_signed_package_urls_never_reach_the_store(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    dist = site / "fakepkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
    (dist / "direct_url.json").write_text(json.dumps(
        {"url": "https://u:canary-pw@bucket.example/fakepkg-1.0.whl?X-Amz-Signature=canary-sig",
         "archive_info": {}}))
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("HF_ENDPOINT", "https://a:canary-1@x https://b:canary-2@y")
    monkeypatch.setenv("TF_X", " https://u:canary-3@h")
    assert main(["run", "--", PYTHON, "-c", "pass"]) == 0
    m = load(only_run(repo))
    assert m["environment"]["package_sources"]["fakepkg"]["url"] == \
        "https://bucket.example/fakepkg-1.0.whl"
    for path in (repo / ".repro").rglob("*"):
        if path.is_file():
            assert b"canary" not in path.read_bytes(), path


def test_remote_with_an_unparsable_port_is_stripped_not_a_crash(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://user:canary@github.com:notaport/x.git")
    assert main(["run", "--", PYTHON, "-c", "pass"]) == 0
    assert load(only_run(repo))["code"]["remote"] == "https://github.com:notaport/x.git"


def test_undecodable_bytes_in_argv_keep_the_manifest_readable(repo: Path) -> None:
    argv = [PYTHON.encode(), b"-m", b"repro", b"run", b"--", PYTHON.encode(), b"-c", b"pass",
            b"\xff\xfe"]
    assert subprocess.run(argv, cwd=repo, timeout=120).returncode == 0
    done = subprocess.run([PYTHON, "-m", "repro", "show", "latest", "--json"], cwd=repo,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["command"]["argv"][-1] == "\udcff\udcfe"


def test_values_the_user_set_are_part_of_the_fingerprint(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prints = []
    for value in ("1", "2"):
        monkeypatch.setenv("PYTHONHASHSEED", value)
        assert main(["run", "--seed", "5", "--", PYTHON, "-c", "pass"]) == 0
        prints.append(manifest.read(sorted((repo / ".repro" / "runs").iterdir())[-1]
                                    / "manifest.yaml").fingerprint)
    assert prints[0] != prints[1]


def test_interrupted_before_the_child_starts_is_recorded_as_interrupted(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands in for Ctrl-C while hashing a large input

    monkeypatch.setattr(runsnapshot, "hash_inputs", interrupted)
    assert main(["run", "--data", "train.py", "--", PYTHON, "-c", "pass"]) == 130
    m = load(only_run(repo))
    assert (m["run"]["status"], m["run"]["exit_code"]) == ("interrupted", 130)


def test_a_crash_before_the_child_leaves_a_readable_manifest(
        repo: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("synthetic")

    monkeypatch.setattr(runsnapshot, "hash_inputs", boom)
    assert main(["run", "--data", "train.py", "--", PYTHON, "-c", "pass"]) == 3
    m = load(only_run(repo))
    assert m["run"]["status"] == "failed"
    assert "RuntimeError: synthetic" in m["run"]["note"]
    assert main(["show", "latest"]) == 0


def test_ctrl_c_while_hashing_outputs_keeps_the_childs_result(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from repro.capture import data as data_mod

    real = data_mod.hash_paths

    def slow_outputs(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGINT)  # the user gives up on a long output hash
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(data_mod, "hash_paths", slow_outputs)
    assert main(["run", "--output", "train.py", "--", PYTHON, "-c", "pass"]) == 130
    m = load(only_run(repo))
    assert (m["run"]["status"], m["run"]["exit_code"]) == ("interrupted", 0)
    assert m["outputs"] == {}


@pytest.mark.parametrize("flag", ["--output", "--metrics"])
def test_results_outside_the_repository_are_refused_before_the_run(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], flag: str) -> None:
    assert main(["run", flag, str(tmp_path / "elsewhere"), "--", PYTHON, "-c", "pass"]) == 125
    assert "is outside the repository" in capfd.readouterr().err
    assert not (repo / ".repro" / "runs").exists()


def test_run_ends_with_one_summary_line_unless_quiet(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--seed", "7", "--", PYTHON, "-c", "import sys; sys.exit(4)"]) == 4
    err = capfd.readouterr().err
    run_id = only_run(repo).name
    assert err.splitlines() == [
        f"repro: run {run_id} failed (exit 4) in {err.split(' in ')[1].split(',')[0]}, "
        f"seed 7; details: repro show {run_id}"]
    assert err.split(" in ")[1].split(",")[0].endswith("s")  # the duration, e.g. 0.3s
    assert main(["run", "--quiet", "--seed", "7", "--", PYTHON, "train.py"]) == 0
    assert capfd.readouterr() == ("hello\n", "")
    # The typer command (for anything the fast parser leaves to it) prints it and takes --quiet.
    from repro.cli import app as cli

    assert cli.dispatch(["run", "--seed", "7", "--", PYTHON, "train.py"]) == 0
    assert capfd.readouterr().err.startswith("repro: run ")
    assert cli.dispatch(["run", "--quiet", "--", PYTHON, "train.py"]) == 0
    assert capfd.readouterr() == ("hello\n", "")


def test_listings_piped_keep_each_row_on_one_line(
        repo: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("COLUMNS")  # piped, as `repro runs | grep`: no terminal width to fit
    long_arg = "loss=0.00160008 " + "x" * 100
    assert main(["run", "--quiet", "--", PYTHON, "-c", "pass", long_arg]) == 0
    capfd.readouterr()
    assert main(["runs"]) == 0
    out = capfd.readouterr().out.splitlines()
    assert len(out) == 2 and long_arg in out[1], out
    assert main(["show", "latest"]) == 0
    shown = capfd.readouterr().out.splitlines()
    assert any(long_arg in line for line in shown)
    assert [line for line in [*out, *shown] if line.endswith(" ")] == []  # no table padding


def test_a_run_refused_before_it_starts_is_not_listed(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--data", "missing/", "--", PYTHON, "train.py"]) == 125
    err = capfd.readouterr().err
    assert "error: input missing does not exist" in err and "repro: run" not in err
    assert main(["runs"]) == 0
    assert "no runs yet" in capfd.readouterr().err


def test_show_draws_a_curve_of_the_metric_series(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (repo / "log.py").write_text(
        "import json, os, sys\n"
        "with open(os.environ['REPRO_METRICS_FILE'], 'a') as f:\n"
        "    for step in range(8):\n"
        "        f.write(json.dumps({'step': step, 'loss': float(sys.argv[1]) / (step + 1)})"
        " + '\\n')\n")
    git(repo, "add", "log.py")
    git(repo, "commit", "-qm", "log")
    assert main(["run", "--quiet", "--", PYTHON, "log.py", "1"]) == 0
    capfd.readouterr()
    assert main(["show", "latest"]) == 0
    curve = [line.rstrip() for line in capfd.readouterr().out.splitlines()
             if line.startswith("curve")]
    assert curve == ["curve        loss  █▄▃▂▂▁▁▁  1 → 0.125"], curve
    # Two runs: both curves on one scale, under the metrics that differ.
    assert main(["run", "--quiet", "--", PYTHON, "log.py", "0.5"]) == 0
    capfd.readouterr()
    assert main(["diff", "latest~1", "latest"]) == 1
    out = [line.rstrip() for line in capfd.readouterr().out.splitlines()]
    at = out.index("curves  a over b, one scale per metric")
    assert out[at + 1:at + 3] == ["loss  a █▄▃▂▂▂▂▁", "      b ▄▂▂▁▁▁▁▁"], out


def test_a_refused_run_leaves_no_stale_status_for_the_next(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`repro run` starts `git status` before its imports: a run refused before its pre-flight
    must not hand that status to a later run in the same process."""
    assert main(["run", "--determinism", "bogus", "--", PYTHON, "-c", "pass"]) == 125
    (repo / "train.py").write_text("print('changed')\n")
    assert main(["run", "--", PYTHON, "-c", "pass"]) == 125
    assert "uncommitted" in capfd.readouterr().err.lower()


def test_the_store_ignores_itself_without_repro_init(repo: Path) -> None:
    (repo / ".gitignore").unlink()  # no `repro init`, no `.repro/` line anywhere
    git(repo, "commit", "-qam", "no .gitignore")
    assert main(["run", "--quiet", "--", PYTHON, "-c", "pass"]) == 0
    assert git(repo, "status", "--porcelain") == ""  # the first run's record is not dirt
    assert main(["run", "--quiet", "--", PYTHON, "-c", "pass"]) == 0  # so no refusal


def test_a_store_that_already_has_runs_is_not_made_to_ignore_itself(repo: Path) -> None:
    (repo / ".repro" / "runs").mkdir(parents=True)  # an existing store, perhaps tracked
    assert main(["run", "--quiet", "--", PYTHON, "-c", "pass"]) == 0
    assert not (repo / ".repro" / ".gitignore").exists()
