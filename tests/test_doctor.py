"""repro doctor and repro init, in real repositories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from repro.cli.main import main
from tests.conftest import git

PINNED = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}


def hazards(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    code = main(["doctor", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "repro/doctor/v1"
    return code, {h["code"]: h["message"] for h in doc["hazards"]}


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in PINNED.items():
        monkeypatch.setenv(k, v)


def test_doctor_clean_project_exits_0(repo: Path, pinned: None,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert hazards(capsys) == (0, {})
    assert main(["doctor"]) == 0
    assert "no determinism hazards found" in capsys.readouterr().out


def test_doctor_unpinned_threads_are_a_note_not_a_failure(
        repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for key in PINNED:  # a fresh shell: `repro run` pins these itself
        monkeypatch.delenv(key, raising=False)
    assert main(["doctor", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(h["code"], h["severity"]) for h in doc["hazards"]] == [("threads-unpinned", "note")]
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("note (threads-unpinned) ")
    assert text.splitlines()[-1] == (
        "no determinism hazards found (1 note on what `repro run` takes care of)")


def test_doctor_reports_each_hazard(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (repo / "requirements.lock").write_text("pyyaml==0.0.1\n")
    git(repo, "commit", "-qam", "bad pin")
    (repo / "Makefile").write_text("train:\n\trepro run -- python -I train.py\n")
    (repo / ".gitignore").write_text("")
    (repo / ".repro" / "runs").mkdir(parents=True)  # a store from before stores ignored themselves
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "1")
    monkeypatch.setenv("PYTHONHASHSEED", "random")
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    monkeypatch.setenv("TF_DETERMINISTIC_OPS", "0")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("X = 1\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    code, found = hazards(capsys)
    assert code == 1
    assert set(found) == {"dirty-tree", "repro-not-ignored", "lockfile", "threads-unpinned",
                          "tf32-forced", "hashseed-random", "cublas-workspace", "user-override",
                          "sitecustomize", "isolated-python"}
    assert "pyyaml (locked 0.0.1" in found["lockfile"]
    assert "Makefile:2" in found["isolated-python"]
    assert "TF_DETERMINISTIC_OPS=0" in found["user-override"]
    assert str(site / "sitecustomize.py") in found["sitecustomize"]
    assert main(["doctor"]) == 1
    text = capsys.readouterr().out
    assert "hint:" in text and text.splitlines()[-1] == "9 hazards found, 1 note"


# A line of a Makefile -> the flags doctor names (read as capture/cmdline reads argv).
ISOLATED_LINES = [
    ("repro run -- python -I train.py", "-I"),
    ("repro run -- python3.13t -X gil=0 -S train.py", "-S"),
    ("repro run --seed 1 -- pypy3 -uI train.py", "-I"),
    ("repro run -- /opt/venv/bin/python3.11.4 -E -S train.py", "-ES"),
    ("repro run -- env A=1 python3 -I train.py", "-I"),
    ('repro run -- sh -c "python3.11.4 -E train.py"', "-E"),
    ("repro run -- python train.py -I", None),  # the script's own argument
    ('repro run -- python -c "import x" -S', None),  # the program's argument too
    ("repro run -- torchrun --nproc-per-node 2 train.py", None),
    ("python -I train.py", None),  # not under repro
]


@pytest.mark.parametrize(("line", "flags"), ISOLATED_LINES)
def test_doctor_reads_isolated_python_as_the_command_line_model_does(
        repo: Path, pinned: None, capsys: pytest.CaptureFixture[str], line: str,
        flags: str | None) -> None:
    (repo / "Makefile").write_text(f"train:\n\t{line}\n")
    git(repo, "add", "Makefile")
    git(repo, "commit", "-qm", "make")
    _, found = hazards(capsys)
    if flags is None:
        assert "isolated-python" not in found
    else:
        assert f"Makefile:2 runs `python {flags}` under repro" in found["isolated-python"]


def test_doctor_missing_lockfile(repo: Path, pinned: None,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    git(repo, "rm", "-q", "requirements.lock")
    git(repo, "commit", "-qm", "nolock")
    code, found = hazards(capsys)
    assert code == 1 and "no lockfile found" in found["lockfile"]


def test_doctor_outside_a_repo_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["doctor"]) == 2
    assert "error:" in capfd.readouterr().err


def test_doctor_in_a_repository_without_commits_still_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pinned: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    git(tmp_path, "init", "-q")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "1")  # a machine hazard it must still name
    code, found = hazards(capsys)
    assert code == 1 and "no commits yet" in found["no-commits"]
    assert any("TF32" in message for message in found.values())


def test_doctor_does_not_flag_a_store_that_ignores_itself(
        repo: Path, pinned: None, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / ".gitignore").unlink()
    git(repo, "commit", "-qam", "no .gitignore")
    assert "repro-not-ignored" not in hazards(capsys)[1]  # the first run will ignore it
    assert main(["run", "--quiet", "--", sys.executable, "-c", "pass"]) == 0
    code, found = hazards(capsys)
    assert code == 0
    assert "repro-not-ignored" not in found and "dirty-tree" not in found


def test_init_writes_config_from_what_it_finds(repo: Path,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    (repo / "data").mkdir()
    (repo / "checkpoints").mkdir()
    (repo / "metrics.json").write_text("{}")
    (repo / ".gitignore").write_text("*.pyc")
    assert main(["init"]) == 0
    out, err = capfd.readouterr()
    text = (repo / "repro.yaml").read_text()
    assert out == text
    assert "lockfile: requirements.lock\n" in text
    assert "data: [data/]\n" in text and "outputs: [checkpoints/]\n" in text
    assert "metrics: metrics.json\n" in text
    # results are never dirt, nor is a data directory git tracks nothing of
    ignored = "*.pyc\n.repro/\ncheckpoints/\nmetrics.json\ndata/\n"
    assert (repo / ".gitignore").read_text() == ignored
    assert "added .repro/, checkpoints/, metrics.json, data/ to .gitignore" in err
    from repro.record import config

    cfg = config.load(repo)  # the starter file is valid configuration
    assert cfg.data == ("data/",) and cfg.lockfile == "requirements.lock"
    header = " ".join(line.lstrip("# ") for line in text.split("Command-line")[0].splitlines())
    for key in config.key_names():  # the header names every key there is (remote too)
        assert f" {key}," in header or f" {key})" in header, key
    assert "# remote: s3://BUCKET/PREFIX" in text
    assert cfg.seed == 42  # a fixed seed: two plain runs are the same run
    assert main(["init"]) == 2
    assert "repro.yaml already exists" in capfd.readouterr().err
    assert main(["init", "--force"]) == 0
    assert (repo / ".gitignore").read_text() == ignored  # not added twice


def test_init_ignores_an_untracked_data_dir_so_the_first_run_is_not_refused(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("x,y\n1,2\n")
    (repo / "t.py").write_text("print(open('data/train.csv').read())\n")
    git(repo, "add", "t.py")
    git(repo, "commit", "-qm", "script")
    assert main(["init"]) == 0
    assert "data: [data/]\n" in (repo / "repro.yaml").read_text()
    assert "data/\n" in (repo / ".gitignore").read_text().splitlines(keepends=True)
    git(repo, "add", "repro.yaml", ".gitignore")
    git(repo, "commit", "-qm", "Configure repro")
    capfd.readouterr()
    assert main(["run", "--quiet", "--", sys.executable, "t.py"]) == 0  # not a dirty tree
    assert "x,y" in capfd.readouterr().out


def test_init_leaves_a_tracked_data_dir_tracked(repo: Path) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "small.csv").write_text("x\n1\n")
    git(repo, "add", "data")
    git(repo, "commit", "-qm", "data")
    assert main(["init"]) == 0
    assert "data: [data/]\n" in (repo / "repro.yaml").read_text()
    assert "data" not in [line.strip("/") for line in
                          (repo / ".gitignore").read_text().splitlines()]


def test_init_in_a_bare_project_comments_the_examples(repo: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    git(repo, "rm", "-q", "requirements.lock")
    assert main(["init"]) == 0
    text = (repo / "repro.yaml").read_text()
    assert "# lockfile:" in text and "# data: [data/]" in text
    from repro.record import config

    assert config.load(repo).data == ()


def test_init_in_a_hydra_project_declares_hydras_outputs_so_the_second_run_is_not_refused(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # A Hydra app writes outputs/DATE/TIME/ (multirun/ for sweeps) on its first run, after
    # `repro init`: the second run was refused for a dirty tree naming those files.
    pytest.importorskip("hydra", reason="hydra-core is in the test extra; install it")
    (repo / "conf").mkdir()
    (repo / "conf" / "config.yaml").write_text("lr: 0.1\n")
    (repo / "app.py").write_text(
        "import hydra\n\n@hydra.main(version_base='1.3', config_path='conf', "
        "config_name='config')\ndef main(cfg):\n    print(cfg.lr)\n\nmain()\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "app")
    assert main(["init"]) == 0
    text = (repo / "repro.yaml").read_text()
    assert "outputs: [outputs/, multirun/]\n" in text, text
    assert {"outputs/", "multirun/"} <= set((repo / ".gitignore").read_text().splitlines())
    git(repo, "add", "repro.yaml", ".gitignore")
    git(repo, "commit", "-qm", "Configure repro")
    for _ in range(2):
        assert main(["run", "--quiet", "--", sys.executable, "app.py", "lr=0.2"]) == 0
    assert "0.2" in capfd.readouterr().out
    # A sweep writes multirun/DATE/TIME/ only: recorded (before: nowhere, and the run was
    # told to drop outputs/ from `outputs:`, which the single runs need).
    assert main(["run", "--", sys.executable, "app.py", "-m", "lr=0.3,0.4"]) == 0
    assert "did not write" not in capfd.readouterr().err
    from repro import api

    assert (api.load("latest").outputs["multirun"].files or 0) >= 2


def test_init_without_hydra_suggests_no_outputs_dir(repo: Path) -> None:
    (repo / "t.py").write_text("print('hydra is a word here, not an import')\n")
    assert main(["init"]) == 0
    assert "# outputs: [checkpoints/]" in (repo / "repro.yaml").read_text()


def test_init_with_hydra_core_only_in_a_frozen_environment_declares_no_hydra_outputs(
        repo: Path) -> None:
    """`pip freeze > requirements.lock` of a shared environment lists hydra-core; a project
    that never imports hydra gets no `outputs/`/`multirun/` (listed missing in every run)."""
    lock = repo / "requirements.lock"
    lock.write_text(lock.read_text() + "hydra-core==1.3.2\n")
    (repo / "train.py").write_text("import torch.distributed as dist\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "train")
    assert main(["init"]) == 0
    assert "outputs: [outputs/, multirun/]" not in (repo / "repro.yaml").read_text()
    (repo / "src" / "app").mkdir(parents=True)  # a Hydra app two folders down, via its lock
    (repo / "src" / "app" / "main.py").write_text("from hydra import main\n\n@main()\n"
                                                  "def run(cfg):\n    pass\n")
    assert main(["init", "--force"]) == 0
    assert "outputs: [outputs/, multirun/]" in (repo / "repro.yaml").read_text()
