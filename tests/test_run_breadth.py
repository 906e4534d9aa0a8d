"""`repro run` in a (simulated) container and a conda environment, with data statistics, then
`repro diff`: real processes, a conda prefix written as conda writes it, real files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from repro.cli.main import main
from tests import condaenv
from tests.conftest import git

TRAIN = "import numpy\nprint(numpy.ones(3).sum())\n"
DIGEST = "sha256:" + "5" * 64


def repro(repo: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    """`repro` as its own process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "repro", *args], cwd=repo, text=True,
                          capture_output=True, timeout=120, env={**os.environ, **(env or {})})


def conda_python(prefix: Path) -> Path:
    """A conda prefix whose bin/python runs this test interpreter (with its packages)."""
    condaenv.make_prefix(prefix, python=False)
    exe = prefix / "bin" / "python"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    exe.chmod(0o755)
    return exe


def podman_root(root: Path, image: str) -> Path:
    (root / "run").mkdir(parents=True, exist_ok=True)
    (root / "run" / ".containerenv").write_text(
        f'engine="podman-4.9.3"\nname="job-{image[-1]}"\nid="{"ab" * 32}"\nimage="{image}"\n'
        f'imageid="{"cd" * 32}"\n')
    return root


def write_csv(path: Path, rows: int, *, label: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", *(["label"] if label else [])])
        for i in range(rows):
            w.writerow([i, "" if i % 4 == 0 else i / 2, *(["cat"] if label else [])])


def image_folder(root: Path, classes: dict[str, int]) -> None:
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / name / f"{i}.png").write_bytes(f"{name}{i}".encode())


def show(ref: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["show", ref, "--json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


@pytest.mark.slow
def test_conda_container_and_data_statistics_recorded_and_diffed(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / ".gitignore").write_text(".repro/\ndata/\n")
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "numpy script")
    python = conda_python(tmp_path / "envs" / "ml")
    write_csv(repo / "data" / "train.csv", 10)
    image_folder(repo / "data" / "images", {"cat": 3, "dog": 2})
    sysroot = podman_root(tmp_path / "sysroot", "docker.io/org/train:1")
    args = ["run", "--seed", "1", "--data-stats", "--data", "data/train.csv", "--data", "data/images", "--",
            str(python), "train.py"]
    first = repro(repo, *args, env={"REPRO_SYSTEM_ROOT": str(sysroot)})
    assert first.returncode == 0, first.stderr

    m = show("latest", capsys)
    env = m["environment"]
    assert env["container"] == {
        "runtime": "podman", "image": "docker.io/org/train:1", "digest": None,
        "image_id": "cd" * 32, "id": "ab" * 32, "name": "job-1", "engine": "podman-4.9.3",
        "source": "/run/.containerenv"}
    assert env["conda"]["name"] == "ml" and env["conda"]["source"] == "interpreter"
    assert env["conda"]["packages"]["mkl"] == {"version": "2023.1.0", "build": "h213fc3f_46344",
                                               "channel": "pkgs/main"}
    assert env["conda"]["packages"]["pytorch"]["channel"] == "pytorch"  # token stripped
    assert any("blas" in name.lower() for name in env["native"]["libraries"])
    stats = m["data"]["data/train.csv"]["stats"]
    assert stats["rows"] == 10 and stats["columns"]["y"] == {"type": "float", "nulls": 3}
    assert m["data"]["data/images"]["stats"]["subdirs"] == {"cat": 3, "dog": 2}
    manifest_text = next((repo / ".repro" / "runs").iterdir()).joinpath("manifest.yaml")
    assert "SECRET" not in manifest_text.read_text()
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["show", "latest"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "container podman: docker.io/org/train:1" in shown
    assert f"conda ml ({tmp_path / 'envs' / 'ml'}), 5 packages" in shown
    assert "csv: 10 rows; 2 columns (1 with nulls)" in shown
    assert "2 sub-directories: cat 3, dog 2" in shown

    # The world moves: a conda package, the image, a dataset's rows and columns, a class.
    meta = tmp_path / "envs" / "ml" / "conda-meta"
    (meta / "mkl-2023.1.0-h213fc3f_46344.json").unlink()
    rec = condaenv.record("mkl", "2023.2.0", "h84fe81f_50496",
                          "https://conda.anaconda.org/conda-forge/linux-64")
    (meta / "mkl-2023.2.0-h84fe81f_50496.json").write_text(json.dumps(rec, indent=2,
                                                                      sort_keys=True))
    podman_root(sysroot, "docker.io/org/train:2")
    write_csv(repo / "data" / "train.csv", 9, label=True)
    image_folder(repo / "data" / "images", {"bird": 4})
    second = repro(repo, *args, env={"REPRO_SYSTEM_ROOT": str(sysroot)})
    assert second.returncode == 0, second.stderr

    capsys.readouterr()
    assert main(["diff", "latest~1", "latest", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    environment = {c["key"]: c for c in doc["sections"]["environment"]["changes"]
                   if c["counted"]}
    assert set(environment) == {"conda.packages.mkl", "container.image"}
    assert environment["conda.packages.mkl"]["b"] == {
        "version": "2023.2.0", "build": "h84fe81f_50496", "channel": "conda-forge"}
    data = {c["key"]: c for c in doc["sections"]["data"]["changes"]}
    assert data["data/train.csv"]["stats"] == {"rows": [10, 9], "columns_added": ["label"]}
    assert data["data/images"]["stats"]["subdirs_added"] == {"bird": 4}
    assert doc["verdict"] == "different data, container, conda packages (1), same results"

    assert main(["diff", "latest~1", "latest"]) == 1
    text = " ".join(capsys.readouterr().out.split())
    assert "data/train.csv: 10 → 9 rows; column `label` added" in text
    assert "data/images: 5 → 9 files; class `bird` added (4 files)" in text
    assert "mkl 2023.1.0 h213fc3f_46344 (pkgs/main) 2023.2.0 h84fe81f_50496 (conda-forge)" in text


def test_conda_lock_conda_entries_refuse_a_different_environment(
        repo: Path, tmp_path: Path) -> None:
    from importlib import metadata

    from repro.capture import conda

    python = conda_python(tmp_path / "envs" / "ml")
    lock = condaenv.lock_text(platform=conda.platform_subdir()).replace(
        "- name: tqdm\n  version: 4.66.1",
        f"- name: pyyaml\n  version: {metadata.version('pyyaml')}")
    (repo / "conda-lock.yml").write_text(lock)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "conda lock")
    ok = repro(repo, "run", "--", str(python), "train.py")
    assert ok.returncode == 0, ok.stderr
    meta = tmp_path / "envs" / "ml" / "conda-meta"
    os.rename(meta / "mkl-2023.1.0-h213fc3f_46344.json", meta / "mkl-2023.1.0-h0_1.json")
    refused = repro(repo, "run", "--", str(python), "train.py")
    assert refused.returncode == 125
    assert ("error: installed packages do not match conda-lock.yml: conda:mkl (locked 2023.1.0 "
            "h213fc3f_46344, installed 2023.1.0 h0_1)") in refused.stderr
    assert "conda-lock install" in refused.stderr
    # The same lock, a command outside any conda environment: the lock is not this one's.
    outside = repro(repo, "run", "--", sys.executable, "train.py")
    assert outside.returncode == 125
    assert "conda environment (locked 5 conda packages, installed none)" in outside.stderr


def test_image_option_is_recorded_and_a_bad_digest_refused(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "no-markers"
    empty.mkdir()
    bad = repro(repo, "run", "--image", "org/train@latest", "--", sys.executable, "train.py",
                env={"REPRO_SYSTEM_ROOT": str(empty)})
    assert bad.returncode == 125 and "error: --image 'org/train@latest'" in bad.stderr
    assert not (repo / ".repro" / "runs").exists() or not any((repo / ".repro" / "runs").iterdir())
    good = repro(repo, "run", "--image", f"org/train:3@{DIGEST}", "--", sys.executable,
                 "train.py", env={"REPRO_SYSTEM_ROOT": str(empty)})
    assert good.returncode == 0, good.stderr
    assert show("latest", capsys)["environment"]["container"] == {
        "runtime": None, "image": "org/train:3", "digest": DIGEST, "source": "--image"}


def test_data_stats_from_the_configuration_stop_at_their_budget(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / ".gitignore").write_text(".repro/\ndata/\n")
    (repo / "repro.yaml").write_text("data_stats: true\ndata_stats_seconds: 0.000001\n"
                                     "data: [data/]\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "stats config")
    write_csv(repo / "data" / "big.csv", 50_000)
    (repo / "data" / "notes.jsonl").write_text('{"a": 1}\n')
    assert main(["run", "--quiet", "--data", "data/big.csv", "--", sys.executable,
                 "train.py"]) == 0
    m = show("latest", capsys)
    stats = m["data"]["data/big.csv"]["stats"]
    assert stats["partial"] is True and stats["rows"] == 0 and "read_bytes" in stats
    assert m["data"]["data"]["stats"]["subdirs"] == {}  # the directory: from its listing
    assert m["data"]["data"]["stats"]["top_files"] == 2


def test_a_table_inside_a_directory_input_is_diffed_by_its_statistics(
        repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / ".gitignore").write_text(".repro/\ndata/\n")
    (repo / "repro.yaml").write_text("data_stats: true\ndata: [data/]\nseed: 3\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "stats config")
    write_csv(repo / "data" / "train.csv", 10)
    assert main(["run", "--quiet", "--", sys.executable, "train.py"]) == 0
    write_csv(repo / "data" / "train.csv", 9, label=True)
    assert main(["run", "--quiet", "--", sys.executable, "train.py"]) == 0
    monkeypatch.setenv("COLUMNS", "160")
    capsys.readouterr()
    assert main(["diff", "latest~1", "latest"]) == 1
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("different data (data), ")
    assert "data/train.csv: 10 → 9 rows; column `label` added" in text


def test_group_members_started_with_jobs_keep_data_stats_and_image(tmp_path: Path) -> None:
    from repro.commands import group
    from repro.commands import run as runflow
    from repro.record import manifest

    request = runflow.RunRequest(argv=("python", "train.py"), cwd=tmp_path, data_stats=True,
                                 image=f"org/train:1@{DIGEST}")
    membership = manifest.Group(id="g1", index=0, size=2, seed=7, name=None)
    argv = group.member_command(request, 11, membership)
    options = argv[:argv.index("--")]
    assert "--data-stats" in options
    assert options[options.index("--image") + 1] == f"org/train:1@{DIGEST}"


def test_a_flat_directory_statistics_line_names_no_empty_class_list() -> None:
    from repro.cli import ui

    flat = {"format": "dir", "files": 7, "top_files": 7, "subdirs": {},
            "tables": {"a.csv": {"format": "csv", "rows": 1, "columns": {}}}}
    assert ui._stats_text(flat) == "7 files, no sub-directories; 1 table inside"
    classes = {"format": "dir", "files": 5, "top_files": 0, "subdirs": {"cat": 3, "dog": 2}}
    assert ui._stats_text(classes) == "2 sub-directories: cat 3, dog 2"


def test_what_was_looked_for_and_not_found_is_null_not_absent(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Absent means "this repro did not look" (a record of an earlier release), so `repro diff`
    # does not count it; null means "looked: no container, no conda, no numeric library".
    (repo / "plain.py").write_text("print(sum(range(3)))\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "plain script")
    empty = tmp_path / "bare-root"
    empty.mkdir()
    done = repro(repo, "run", "--", sys.executable, "plain.py",
                 env={"REPRO_SYSTEM_ROOT": str(empty), "CONDA_PREFIX": ""})
    assert done.returncode == 0, done.stderr
    text = next((repo / ".repro" / "runs").glob("*/manifest.yaml")).read_text()
    for key in ("container", "conda", "native"):
        assert f"\n  {key}: null\n" in text, key
    env = show("latest", capsys)["environment"]
    assert (env["container"], env["conda"], env["native"]) == (None, None, None)
