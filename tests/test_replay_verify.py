"""`repro replay` and `repro verify` on real runs in real repositories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from repro.capture import data, hashing
from repro.cli.main import main
from tests.conftest import PYTHON, git

DETERMINISTIC = """\
import json, pathlib, random
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
value = random.random()  # unseeded: repro's hook seeds it
(out / "result.txt").write_text(f"{value!r}\\n")
pathlib.Path("metrics.json").write_text(json.dumps({"score": value}))
"""
CLOCK_SEEDED = DETERMINISTIC.replace("value = random.random()",
                                     "import time; random.seed(time.time_ns()); value = random.random()")
THREADS = """\
import json, os, pathlib
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
n = os.environ["OMP_NUM_THREADS"]  # stands in for a reduction whose order follows the threads
(out / "result.txt").write_text(f"sum over {n} threads\\n")
pathlib.Path("metrics.json").write_text(json.dumps({"threads": int(n)}))
"""
NOISY_NPY = """\
import pathlib, time
import numpy as np
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
noise = np.random.default_rng(time.time_ns()).normal(0, 1e-9, 100)
np.save(out / "arr.npy", np.linspace(1, 2, 100) + noise)
"""
RUN = ["--output", "out", "--metrics", "metrics.json", "--", PYTHON, "train.py"]


def commit_script(repo: Path, text: str, message: str = "script") -> None:
    (repo / "train.py").write_text(text)
    gitignore = repo / ".gitignore"
    if "out/" not in gitignore.read_text():
        gitignore.write_text(".repro/\nout/\nmetrics.json\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def commit_baseline(repo: Path) -> None:
    """Record a deterministic run and commit its manifest as baseline.yaml (what CI verifies)."""
    commit_script(repo, DETERMINISTIC)
    assert main(["run", *RUN]) == 0
    run_dir = sorted((repo / ".repro" / "runs").iterdir())[-1]
    shutil.copy(run_dir / "manifest.yaml", repo / "baseline.yaml")
    git(repo, "add", "baseline.yaml")
    git(repo, "commit", "-qm", "baseline")


def manifest_of(repo: Path, ref: str, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert main(["show", ref, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def verify_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    capsys.readouterr()
    code = main(["verify", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def snapshot(repo: Path) -> tuple[str, str, bytes]:
    return (git(repo, "status", "--porcelain", "--ignored"), git(repo, "rev-parse", "HEAD"),
            (repo / ".git" / "index").read_bytes())


# ---------------------------------------------------------------------------- replay


def test_replay_after_head_moved_reproduces_bitwise_and_touches_nothing(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC)
    assert main(["run", *RUN]) == 0
    recorded = manifest_of(repo, "latest", capsys)
    (repo / "README.md").write_text("moved on\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "HEAD moves")
    before = snapshot(repo)
    assert main(["replay", "latest"]) == 0
    assert snapshot(repo) == before
    replayed = manifest_of(repo, "latest", capsys)
    assert replayed["run"]["replay_of"] == recorded["run"]["run_id"]
    assert replayed["seed"] == {"value": recorded["seed"]["value"], "source": "replayed"}
    assert replayed["code"]["commit"] == recorded["code"]["commit"]
    assert replayed["outputs"]["out"]["hash"] == recorded["outputs"]["out"]["hash"]
    assert replayed["metrics"]["final"] == recorded["metrics"]["final"]
    assert replayed["fingerprint"] == recorded["fingerprint"]
    assert not [p for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("repro-replay-*")
                if (p / "worktree").exists() and str(p).endswith(recorded["run"]["run_id"])]


def test_replay_ends_with_the_new_runs_line(repo: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC)
    assert main(["run", "--quiet", *RUN]) == 0
    old = manifest_of(repo, "latest", capsys)["run"]["run_id"]
    assert main(["replay", "latest"]) == 0
    err = capsys.readouterr().err
    new = manifest_of(repo, "latest", capsys)["run"]["run_id"]
    assert f"repro: run {new} (replay of {old}) succeeded in " in err
    assert f"details: repro show {new}" in err


def test_replay_under_another_interpreter_names_it_first(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC)
    monkeypatch.setenv("PATH", str(Path(PYTHON).parent) + os.pathsep + os.environ["PATH"])
    assert main(["run", "--quiet", "--output", "out", "--", "python", "train.py"]) == 0
    bare = tmp_path / "bare"  # `python` now finds another venv, without the run's packages
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    monkeypatch.setenv("PATH", str(bare / "bin") + os.pathsep + os.environ["PATH"])
    capfd.readouterr()
    assert main(["replay", "latest"]) == 0
    err = capfd.readouterr().err
    assert (f"the environment differs from the recorded run: interpreter {Path(PYTHON).parent}"
            in err), err
    assert f"hint: the run used {Path(PYTHON).parent}" in err and "activate its environment" in err


def test_verify_says_a_repeated_warning_once(repo: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC)
    (repo / "repro.yaml").write_text("metric_patterns: ['never=(?P<never>[0-9]+)']\n")
    git(repo, "add", "repro.yaml")
    git(repo, "commit", "-qm", "a pattern that matches nothing")
    capfd.readouterr()
    assert main(["verify", "--runs", "3", "--output", "out", "--", PYTHON, "train.py"]) == 0
    err = capfd.readouterr().err
    assert err.count("matched nothing the command printed") == 1, err


def test_replay_of_a_dirty_run_restores_patch_and_untracked(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC)
    (repo / "train.py").write_text(DETERMINISTIC + "import helper\n")
    (repo / "helper.py").write_text("pathlib = __import__('pathlib')\n"
                                    "pathlib.Path('out/helper.txt').write_text('from helper')\n")
    assert main(["run", "--allow-dirty", *RUN]) == 0
    recorded = manifest_of(repo, "latest", capsys)
    git(repo, "stash", "-u")  # the user's tree goes back to the commit
    assert main(["replay", "latest"]) == 0
    replayed = manifest_of(repo, "latest", capsys)
    assert replayed["outputs"]["out"]["hash"] == recorded["outputs"]["out"]["hash"]
    assert replayed["outputs"]["out"]["files"] == 2  # result.txt and the helper's file
    assert replayed["code"]["patch"]["hash"] == recorded["code"]["patch"]["hash"]
    assert not (repo / "helper.py").exists()


def test_replay_refuses_a_changed_input_naming_it(repo: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, "import pathlib; print(len(pathlib.Path('data/train.csv').read_text()))\n")
    (repo / ".gitignore").write_text(".repro/\nout/\nmetrics.json\ndata/\n")
    git(repo, "commit", "-qam", "ignore data")
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("a,b\n1,2\n")
    assert main(["run", "--", PYTHON, "train.py", "--train", "data/train.csv"]) == 0
    (repo / "data" / "train.csv").write_text("a,b\n1,3\n")
    capfd.readouterr()
    assert main(["replay", "latest"]) == 125
    err = capfd.readouterr().err
    assert "inputs differ from the recorded run: data/train.csv" in err
    assert main(["replay", "latest", "--force"]) == 0
    assert "input differs from the recorded run: data/train.csv" in capfd.readouterr().err


def test_foreign_manifest_needs_yes_without_a_terminal(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC)
    assert main(["run", *RUN]) == 0
    run_dir = sorted((repo / ".repro" / "runs").iterdir())[-1]
    (repo / "baseline").mkdir()
    shutil.copy(run_dir / "manifest.yaml", repo / "baseline" / "manifest.yaml")
    capfd.readouterr()
    assert main(["replay", "baseline/manifest.yaml"]) == 125
    err = capfd.readouterr().err
    assert "was not recorded in this clone" in err and "train.py" in err and "--yes" in err
    git(repo, "add", "baseline")
    git(repo, "commit", "-qm", "baseline")
    assert main(["replay", "baseline/manifest.yaml", "--yes"]) == 0


@pytest.mark.parametrize(("section", "key", "evil"), [
    ("outputs", None, "../escaped"),
    ("command", "cwd", "../.."),
    ("code", "untracked", [{"path": "../../escaped.txt", "size": 1, "hash": "x", "copied": True}]),
    ("outputs", None, "/tmp/escaped-abs"),
])
def test_manifest_paths_escaping_the_worktree_are_refused(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], section: str,
        key: str | None, evil: object) -> None:
    commit_script(repo, DETERMINISTIC)
    assert main(["run", *RUN]) == 0
    run_dir = sorted((repo / ".repro" / "runs").iterdir())[-1]
    doc = yaml.safe_load((run_dir / "manifest.yaml").read_text())
    if key is None:
        doc[section][evil] = {"kind": "file", "hash": "blake3:00", "size": 1}
    else:
        doc[section][key] = evil
    (run_dir / "manifest.yaml").write_text(yaml.safe_dump(doc))
    before = sorted(p.name for p in tmp_path.iterdir())
    capfd.readouterr()
    assert main(["replay", "latest"]) == 125
    assert "escapes the worktree" in capfd.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("/tmp/escaped-abs").exists()


def test_script_reproduces_the_outputs_in_a_fresh_clone(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC)
    (repo / "train.py").write_text(DETERMINISTIC + "pathlib.Path('out/extra.txt').write_text('x')\n")
    (repo / "notes.txt").write_text("untracked\n")
    assert main(["run", "--allow-dirty", *RUN]) == 0
    recorded = manifest_of(repo, "latest", capsys)
    assert main(["replay", "latest", "--script"]) == 0
    script = capsys.readouterr().out
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(repo), str(fresh)], check=True, timeout=60)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    done = subprocess.run(["bash", "-s", str(fresh)], input=script, capture_output=True,
                          text=True, cwd=fresh, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    tree = Path(done.stderr.strip().splitlines()[-1].removeprefix("outputs are in "))
    entry = data.hash_paths(["out"], root=tree, cache_dir=None)[0]
    assert entry.hash == recorded["outputs"]["out"]["hash"]
    assert (tree / "notes.txt").read_text() == "untracked\n"
    # The script's copy of the hook ran to the end: its probe (written at exit) is there.
    assert list((tree.parent / "probe").glob("*.probe.json"))
    cleanup = done.stderr.strip().splitlines()[-2].removeprefix("when done: ")
    assert str(tree) in git(fresh, "worktree", "list")
    subprocess.run(["bash", "-c", cleanup], check=True, timeout=60)
    assert str(tree) not in git(fresh, "worktree", "list") and not tree.parent.exists()


# ---------------------------------------------------------------------------- verify


def test_verify_deterministic_is_bitwise(repo: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC)
    assert main(["run", *RUN]) == 0
    junit = tmp_path / "verify.xml"
    code, report = verify_json(["latest", "--junit", str(junit)], capsys)
    assert (code, report["verdict"]) == (0, "bitwise")
    assert report["schema"] == "repro/verify/v1"
    statuses = {(c["kind"], c["name"]): c["status"] for c in report["checks"]}
    assert statuses[("output", "out")] == "same"  # an unchanged directory: one check
    assert statuses[("metric", "score")] == "same"
    suite = ET.parse(junit).getroot()
    cases = suite.iter("testcase")
    assert len(list(cases)) == len(report["checks"])
    assert not list(suite.iter("failure"))


def test_verify_clock_seeded_is_not_reproduced_naming_file_and_metric(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, CLOCK_SEEDED)
    assert main(["run", *RUN]) == 0
    junit = tmp_path / "verify.xml"
    code, report = verify_json(["latest", "--junit", str(junit)], capsys)
    assert (code, report["verdict"]) == (1, "not-reproduced")
    failing = {c["name"]: c for c in report["checks"] if c["status"] == "different"}
    assert "out/result.txt" in failing and "score" in failing
    assert "first difference at line 1" in failing["out/result.txt"]["detail"]
    suite = ET.parse(junit).getroot()
    assert len(list(suite.iter("testcase"))) == len(report["checks"])
    assert len(list(suite.iter("failure"))) == len(failing)
    capsys.readouterr()
    assert main(["verify", "latest"]) == 1  # the human form names them too (same run)
    text = capsys.readouterr().out
    assert "not-reproduced" in text and "out/result.txt" in text and "score" in text


def test_verify_npy_float_noise_needs_a_tolerance(repo: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, NOISY_NPY)
    assert main(["run", "--output", "out", "--", PYTHON, "train.py"]) == 0
    code, report = verify_json(["latest"], capsys)
    assert (code, report["verdict"]) == (1, "not-reproduced")
    assert "max abs" in next(c["detail"] for c in report["checks"] if c["name"] == "out/arr.npy")
    code, report = verify_json(["latest", "--rtol", "1e-6"], capsys)
    assert (code, report["verdict"]) == (0, "within-tolerance")


def test_verify_at_head(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit_baseline(repo)
    (repo / "README.md").write_text("docs only\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "no-op for results")
    code, report = verify_json(["baseline.yaml", "--at", "HEAD", "--yes"], capsys)
    assert (code, report["verdict"]) == (0, "bitwise")
    commit_script(repo, DETERMINISTIC.replace("value = random.random()",
                                              "value = random.random() * 2"), "changes results")
    code, report = verify_json(["baseline.yaml", "--at", "HEAD", "--yes"], capsys)
    assert (code, report["verdict"]) == (1, "not-reproduced")


def test_verify_a_committed_manifest_in_a_fresh_clone(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    commit_baseline(repo)
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(repo), str(fresh)], check=True, timeout=60)
    monkeypatch.chdir(fresh)
    assert not (fresh / ".repro").exists()
    code, report = verify_json(["baseline.yaml", "--yes"], capsys)
    assert (code, report["verdict"]) == (0, "bitwise")


def test_verify_runs_catches_a_nondeterministic_command(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, CLOCK_SEEDED)
    code, report = verify_json(["--runs", "2", "--output", "out", "--metrics", "metrics.json",
                                "--", PYTHON, "train.py"], capsys)
    assert (code, report["verdict"]) == (1, "not-reproduced")
    assert len(report["runs"]) == 2
    commit_script(repo, DETERMINISTIC, "deterministic")
    code, report = verify_json(["--runs", "2", "--output", "out", "--", PYTHON, "train.py"],
                               capsys)
    assert (code, report["verdict"]) == (0, "bitwise")


def test_verify_vary_threads_names_the_condition(repo: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, THREADS)
    assert main(["run", "--threads", "2", *RUN]) == 0
    code, report = verify_json(["latest", "--vary", "threads,tz"], capsys)
    assert code == 1
    assert report["conditions"] == {"threads": "not-reproduced", "tz": "bitwise"}
    assert any(c["name"].startswith("vary threads: ") and c["status"] == "different"
               for c in report["checks"])


def test_verify_usage_errors(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["verify"]) == 2
    assert main(["verify", "--vary", "moon", "latest"]) == 2
    assert "unknown --vary condition 'moon'" in capfd.readouterr().err
    assert main(["verify", "nope"]) == 2
    assert "no run matches 'nope'" in capfd.readouterr().err


def test_replay_with_inputs_is_the_same_recipe_for_diff(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC + "print(pathlib.Path('data/train.csv').read_text())\n")
    (repo / ".gitignore").write_text(".repro/\nout/\nmetrics.json\ndata/\n")
    git(repo, "commit", "-qam", "ignore data")
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("a,b\n1,2\n")
    assert main(["run", *RUN[:-2], PYTHON, "train.py", "data/train.csv"]) == 0
    assert main(["replay", "latest"]) == 0
    a, b = manifest_of(repo, "latest~1", capsys), manifest_of(repo, "latest", capsys)
    assert b["data"] == a["data"]
    assert b["fingerprint"] == a["fingerprint"]
    capsys.readouterr()
    assert main(["diff", "latest~1", "latest"]) == 0
    assert "same recipe, same results" in capsys.readouterr().out


def test_replay_and_script_run_a_relative_venv_interpreter_from_the_checkout(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`.venv/bin/python train.py`: the venv is in the checkout (ignored), not in the commit."""
    commit_script(repo, DETERMINISTIC)
    (repo / ".gitignore").write_text(".repro/\nout/\nmetrics.json\n.venv/\n")
    git(repo, "commit", "-qam", "ignore venv")
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to(PYTHON)
    assert main(["run", "--allow-unlocked", "--output", "out", "--", ".venv/bin/python",
                 "train.py"]) == 0
    code, report = verify_json(["latest"], capsys)
    assert (code, report["verdict"]) == (0, "bitwise")
    recorded = manifest_of(repo, "latest", capsys)
    assert main(["replay", "latest", "--script"]) == 0
    script = capsys.readouterr().out
    assert '"$repo"/.venv/bin/python train.py' in script
    done = subprocess.run(["bash", "-s", str(repo)], input=script, capture_output=True,
                          text=True, cwd=repo, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("REPRO_")})
    assert done.returncode == 0, done.stderr
    tree = Path(done.stderr.strip().splitlines()[-1].removeprefix("outputs are in "))
    assert data.hash_paths(["out"], root=tree, cache_dir=None)[0].hash == \
        recorded["outputs"]["out"]["hash"]


def test_replay_never_writes_through_a_symlink_from_the_manifest(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A hostile manifest: `lnk -> outside`, then a copied file `lnk/pwned.txt`."""
    commit_script(repo, DETERMINISTIC)
    assert main(["run", *RUN]) == 0
    run_dir = sorted((repo / ".repro" / "runs").iterdir())[-1]
    outside = tmp_path / "outside"
    outside.mkdir()
    (run_dir / "untracked" / "lnk").mkdir(parents=True)
    (run_dir / "untracked" / "lnk" / "pwned.txt").write_text("pwned")
    doc = yaml.safe_load((run_dir / "manifest.yaml").read_text())
    doc["code"]["untracked"] = [
        {"path": "lnk", "size": 0, "hash": None, "target": str(outside), "copied": False},
        {"path": "lnk/pwned.txt", "size": 5, "copied": True,
         "hash": hashing.hash_file(run_dir / "untracked" / "lnk" / "pwned.txt")}]
    (run_dir / "manifest.yaml").write_text(yaml.safe_dump(doc))
    capfd.readouterr()
    assert main(["replay", "latest", "--yes"]) == 125  # an edited manifest is foreign
    assert "passes through a symlink" in capfd.readouterr().err
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(("key", "where"), [
    ("LD_PRELOAD", "user_set"),
    ("X=1; touch /tmp/repro-pwned; Y", "env"),
])
def test_manifest_cannot_choose_arbitrary_environment_variables(
        repo: Path, capfd: pytest.CaptureFixture[str], key: str, where: str) -> None:
    commit_script(repo, DETERMINISTIC)
    assert main(["run", *RUN]) == 0
    run_dir = sorted((repo / ".repro" / "runs").iterdir())[-1]
    doc = yaml.safe_load((run_dir / "manifest.yaml").read_text())
    doc["determinism"][where][key] = "/tmp/evil.so"
    (run_dir / "manifest.yaml").write_text(yaml.safe_dump(doc))
    capfd.readouterr()
    for args in (["replay", "latest"], ["replay", "latest", "--script"],
                 ["replay", "latest", "--dry-run"]):
        assert main(args) in (2, 125)
        captured = capfd.readouterr()
        assert "which repro does not manage" in captured.err
        assert "export" not in captured.out
    assert not Path("/tmp/repro-pwned").exists()


def test_verify_refuses_a_run_with_nothing_to_compare(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, CLOCK_SEEDED)
    assert main(["run", "--", PYTHON, "train.py"]) == 0  # no --output, no --metrics
    capfd.readouterr()
    assert main(["verify", "latest"]) == 2
    err = capfd.readouterr().err
    assert "recorded no outputs and no metrics" in err and "--output" in err


def test_verify_compares_against_kept_outputs_after_the_checkout_moved_on(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Train, train again (overwriting out/), then verify the first run within tolerance."""
    commit_script(repo, NOISY_NPY)
    assert main(["run", "--output", "out", "--", PYTHON, "train.py"]) == 0
    first = manifest_of(repo, "latest", capsys)["run"]["run_id"]
    assert main(["run", "--output", "out", "--", PYTHON, "train.py"]) == 0  # overwrites out/
    code, report = verify_json([first, "--rtol", "1e-6"], capsys)
    assert (code, report["verdict"]) == (0, "within-tolerance")
    detail = next(c["detail"] for c in report["checks"] if c["name"] == "out/arr.npy")
    assert "not available" not in detail


def test_large_outputs_are_not_kept(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC)
    (repo / "repro.yaml").write_text("keep_outputs_max_bytes: 10\n")
    git(repo, "add", "repro.yaml")
    git(repo, "commit", "-qm", "tiny cap")
    assert main(["run", *RUN]) == 0
    run_dir = sorted((repo / ".repro" / "runs").iterdir())[-1]
    assert not (run_dir / "kept").exists()


def test_verify_exits_2_when_the_replayed_command_cannot_start(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit_script(repo, DETERMINISTIC)
    (repo / ".gitignore").write_text(".repro/\nout/\nmetrics.json\ntools/\n")
    git(repo, "commit", "-qam", "ignore tools")
    (repo / "tools").mkdir()
    (repo / "tools" / "py").symlink_to(PYTHON)
    assert main(["run", "--allow-unlocked", *RUN[:-2], "tools/py", "train.py"]) == 0
    (repo / "tools" / "py").unlink()  # the interpreter is gone by the time CI verifies
    capfd.readouterr()
    assert main(["verify", "latest"]) == 2
    assert "command not found" in capfd.readouterr().err
    assert main(["replay", "latest"]) == 127  # replay behaves like a shell


@pytest.mark.parametrize("where", ["store", "committed copy"])
def test_replay_names_the_changed_file_inside_an_input_directory(
        repo: Path, capfd: pytest.CaptureFixture[str], where: str) -> None:
    commit_script(repo, DETERMINISTIC)
    (repo / ".gitignore").write_text(".repro/\nout/\nmetrics.json\ndata/\n")
    git(repo, "commit", "-qam", "ignore data")
    (repo / "data" / "train").mkdir(parents=True)
    (repo / "data" / "train" / "a.csv").write_text("1\n")
    (repo / "data" / "train" / "b.csv").write_text("2\n")
    assert main(["run", "--data", "data/train", *RUN]) == 0
    ref = "latest"
    if where == "committed copy":  # a baseline run directory kept in the repository
        run_dir = sorted((repo / ".repro" / "runs").iterdir())[-1]
        shutil.copytree(run_dir, repo / "baselines" / "run1")
        git(repo, "add", "baselines")
        git(repo, "commit", "-qm", "baseline")
        shutil.rmtree(run_dir)  # as in a fresh clone: only the committed copy has listings
        ref = "baselines/run1"
    (repo / "data" / "train" / "b.csv").write_text("3\n")
    capfd.readouterr()
    assert main(["replay", ref, "--yes"]) == 125
    assert "data/train (modified b.csv)" in capfd.readouterr().err


def test_verify_of_a_command_with_nothing_declared_refuses_before_running_it(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    marker = repo / "ran.txt"
    code = main(["verify", "--runs", "2", "--", PYTHON, "-c",
                 f"open({str(marker)!r}, 'w').write('ran')"])
    err = capfd.readouterr().err
    assert code == 2 and "nothing to compare" in err and "--output" in err
    assert not marker.exists() and not (repo / ".repro" / "runs").exists()


@pytest.mark.parametrize("command", [["verify", "nope", "--json"], ["show", "nope", "--json"],
                                     ["diff", "nope", "latest", "--json"]])
def test_json_commands_print_one_document_on_trouble_too(
        repo: Path, capfd: pytest.CaptureFixture[str], command: list[str]) -> None:
    assert main(command) == 2
    out, err = capfd.readouterr()
    doc = json.loads(out)
    assert doc["schema"] == "repro/error/v1" and doc["exit_code"] == 2
    assert doc["error"] in err and "error:" in err
    assert ("verdict" in doc) == (command[0] == "verify") and doc.get("verdict") is None


RESUMING = """
import pathlib, sys
ckpt = pathlib.Path(sys.argv[1])
step = int(ckpt.read_text()) if ckpt.exists() else 0  # resume from the last run's checkpoint
ckpt.parent.mkdir(parents=True, exist_ok=True)
ckpt.write_text(str(step + 1))
"""


@pytest.mark.parametrize("ckpt", ["state.txt", "ckpt/state.txt"])
def test_verify_names_an_output_the_run_resumed_from(
        repo: Path, ckpt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A training script that resumes from the checkpoint an earlier run left (the DDP
    tutorial's snapshot.pt) replays from scratch: verify says why the output differs."""
    commit_script(repo, RESUMING)
    (repo / ".gitignore").write_text(".repro/\nstate.txt\nckpt/\n")
    git(repo, "commit", "-qam", "ignore")
    declared = ckpt.split("/")[0]
    args = ["run", "--output", declared, "--", PYTHON, "train.py", ckpt]
    assert main(args) == 0
    first = manifest_of(repo, "latest", capsys)["outputs"][declared]
    assert "replaced" not in first  # a fresh start: nothing was there
    code, report = verify_json(["latest"], capsys)
    assert (code, report["verdict"]) == (0, "bitwise")

    assert main(args) == 0  # resumes: writes 2
    second = manifest_of(repo, "latest", capsys)["outputs"][declared]
    assert second["replaced"] == (True if declared == ckpt else 1)
    capsys.readouterr()
    assert main(["show", "latest"]) == 0
    assert "there before the run, rewritten" in capsys.readouterr().out
    assert main(["diff", "latest~1", "latest", "--section", "outputs", "--json"]) == 1
    diff = json.loads(capsys.readouterr().out)
    assert "replaced" not in json.dumps(diff)  # a fact of the run, not a difference
    code, report = verify_json(["latest"], capsys)
    assert (code, report["verdict"]) == (1, "not-reproduced")
    detail = next(c["detail"] for c in report["checks"] if c["name"] == ckpt)
    assert "there before the recorded run" in detail or "from before the recorded run" in detail
    assert "resumed from it" in detail and "delete it" in detail


def test_verify_trouble_still_writes_the_junit_report(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CI uploads verify.xml `if: always()`: a verify that cannot judge (exit 2) says why in
    it, as --json does, instead of leaving no report (or the last job's) behind."""
    junit = tmp_path / "verify.xml"
    junit.write_text("<testsuites/>")  # an earlier step's report: replaced
    assert main(["verify", "latest", "--junit", str(junit)]) == 2
    err = capsys.readouterr().err
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1" and suite.get("failures") == "0"
    error = suite.find("testcase/error")
    assert error is not None and error.get("type") == "trouble"
    assert error.get("message") in err and "hint: " in (error.text or "")
    assert main(["verify", "--level", "statistical", "group:nope",
                 f"--junit={junit}"]) == 2
    error = ET.parse(junit).getroot().find("testsuite/testcase/error")
    assert error is not None and "nope" in str(error.get("message"))


def test_diff_whose_reader_left_exits_with_its_verdict(repo: Path) -> None:
    """`repro diff A B | head -1` under `set -o pipefail`: the reader leaving early is not a
    difference (rich and click turn EPIPE into exit 1), nor does it hide one."""
    commit_script(repo, DETERMINISTIC)
    assert main(["run", "--seed", "1", *RUN]) == 0
    assert main(["run", "--seed", "1", *RUN]) == 0
    assert main(["run", "--seed", "5", *RUN]) == 0

    def closed_reader(*args: str) -> tuple[int, str]:
        proc = subprocess.Popen([PYTHON, "-m", "repro", *args], cwd=repo, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.close()  # the reader is gone before repro writes a byte
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err

    assert closed_reader("diff", "latest~2", "latest~1") == (0, "")
    code, err = closed_reader("diff", "latest~1", "latest")
    assert code == 1 and "Traceback" not in err
    assert closed_reader("show", "latest") == (0, "")
