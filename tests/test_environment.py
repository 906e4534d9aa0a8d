"""capture.environment: interpreters, packages, lockfiles of every kind, allow-listed variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro import errors
from repro.capture import cmdline, lockfiles
from repro.capture import environment as envmod


@pytest.mark.parametrize(("name", "text", "pins", "must"), [
    ("requirements.lock", "numpy==2.4.6\nTorch==2.13.0 ; python_version >= '3.9'\n",
     {"numpy": {"2.4.6"}, "torch": {"2.13.0"}}, {"numpy"}),
    ("requirements.txt", "# comment\n--index-url https://x\nPy_YAML[extra]==6.0 \\\n"
     "    --hash=sha256:abc\n", {"py-yaml": {"6.0"}}, {"py-yaml"}),
    ("uv.lock", '[[package]]\nname = "numpy"\nversion = "2.4.6"\n\n[[package]]\nname = "proj"\n'
     'version = "0.1"\nsource = { editable = "." }\n\n[[package]]\nname = "numpy"\n'
     'version = "1.26.0"\n', {"numpy": {"2.4.6", "1.26.0"}}, set()),
    ("poetry.lock", '[[package]]\nname = "Rich"\nversion = "15.0.0"\n', {"rich": {"15.0.0"}},
     set()),
    ("pdm.lock", '[[package]]\nname = "typer"\nversion = "0.29.2"\n', {"typer": {"0.29.2"}},
     set()),
    ("Pipfile.lock", json.dumps({"default": {"blake3": {"version": "==1.0.11"}},
                                 "develop": {"pytest": {"version": "==9.2.0"}}}),
     {"blake3": {"1.0.11"}, "pytest": {"9.2.0"}}, set()),
    ("conda-lock.yml", "package:\n- {name: pytorch, version: '2.1', manager: conda}\n"
     "- {name: tqdm, version: 4.66.1, manager: pip}\n", {"tqdm": {"4.66.1"}}, set()),
])
def test_read_lock_every_kind(tmp_path: Path, name: str, text: str, pins: dict[str, set[str]],
                              must: set[str]) -> None:
    (tmp_path / name).write_text(text)
    assert lockfiles.find_lockfile(tmp_path, None) == tmp_path / name
    lock = lockfiles.read_lock(tmp_path, tmp_path / name)
    assert {k: set(v) for k, v in lock.pins.items()} == pins
    assert set(lock.exhaustive) == must


def test_unpinned_requirements_txt_is_not_a_lockfile(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("numpy>=1.0\ntorch==2.13.0\n")
    assert lockfiles.find_lockfile(tmp_path, None) is None


@pytest.mark.parametrize(("installed", "matches", "mismatches"), [
    ({"numpy": "2.4.6", "torch": "2.13.0+cpu", "repro": "0.1"}, True, []),
    ({"numpy": "2.4.5", "torch": "2.13.0"}, False,
     [{"name": "numpy", "locked": "2.4.6", "installed": "2.4.5"}]),
    ({"torch": "2.13.0"}, False, [{"name": "numpy", "locked": "2.4.6", "installed": None}]),
])
def test_check_lock(tmp_path: Path, installed: dict[str, str], matches: bool,
                    mismatches: list[dict[str, str | None]]) -> None:
    (tmp_path / "requirements.lock").write_text("numpy==2.4.6\ntorch==2.13.0\n")
    lock = lockfiles.read_lock(tmp_path, tmp_path / "requirements.lock")
    result = lockfiles.check_lock(lock, installed)
    assert result["matches"] is matches
    assert result["mismatches"] == mismatches
    if matches:
        assert result["unlocked"] == ["repro"]


def test_installed_packages_reads_dist_info_and_direct_url(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "Foo_Bar-1.2.3.dist-info").mkdir(parents=True)
    (site / "mypkg-0.1.dev0.dist-info").mkdir()
    (site / "mypkg-0.1.dev0.dist-info" / "direct_url.json").write_text(json.dumps(
        {"url": "file:///src/mypkg", "dir_info": {"editable": True}}))
    (site / "vcspkg-2.0.dist-info").mkdir()
    (site / "vcspkg-2.0.dist-info" / "direct_url.json").write_text(json.dumps(
        {"url": "https://user:hunter2@github.com/o/vcspkg.git",
         "vcs_info": {"vcs": "git", "commit_id": "abc"}}))
    (site / "old-0.9-py3.11.egg-info").mkdir()
    shadow = tmp_path / "shadow"
    (shadow / "foo_bar-9.9.dist-info").mkdir(parents=True)
    pkgs = envmod.installed_packages([str(site), str(shadow)])
    assert pkgs.versions == {"foo-bar": "1.2.3", "mypkg": "0.1.dev0", "old": "0.9", "vcspkg": "2.0"}
    assert pkgs.sources["mypkg"] == {"url": "file:///src/mypkg", "editable": True}
    assert pkgs.sources["vcspkg"]["url"] == "https://github.com/o/vcspkg.git"
    assert "hunter2" not in json.dumps(pkgs.sources)


def test_installed_packages_agrees_with_importlib_metadata() -> None:
    from importlib import metadata

    pkgs = envmod.installed_packages(sys.path)
    for name in ("pyyaml", "blake3", "typer", "rich"):
        assert pkgs.versions[name] == metadata.version(name)


def test_find_interpreter(tmp_path: Path) -> None:
    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    py = bindir / "python"
    py.symlink_to(sys.executable)
    tool = bindir / "torchrun"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    script = tmp_path / "run.py"
    script.write_text(f"#!{py}\n")
    script.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    assert cmdline.find_interpreter(["python", "t.py"], tmp_path, env) == (str(py), "argv")
    assert cmdline.find_interpreter(["env", "A=1", "python", "t.py"], tmp_path, env) == (
        str(py), "argv")
    assert cmdline.find_interpreter(["torchrun", "t.py"], tmp_path, env) == (str(py), "beside")
    assert cmdline.find_interpreter(["./run.py"], tmp_path, env) == (str(py), "shebang")
    assert cmdline.find_interpreter(["true"], tmp_path, {"PATH": "/usr/bin:/bin"}) == (
        sys.executable, "repro")


def test_inspect_foreign_interpreter_reports_its_own_sys_path(tmp_path: Path) -> None:
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = str(venv / "bin" / "python")
    interp = envmod.finish_inspect(envmod.start_inspect(python, dict(os.environ)), python, "argv")
    assert any(p.startswith(str(venv)) for p in interp.sys_path)
    assert interp.executable.startswith(str(venv))


def test_inspect_broken_interpreter_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho boom >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(errors.LockfileError, match=r"cannot inspect the packages of .*: boom"):
        envmod.finish_inspect(envmod.start_inspect(str(fake), dict(os.environ)), str(fake), "argv")


def test_allowed_env_drops_secrets_and_unlisted() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "0", "HF_TOKEN": "canary1", "WANDB_API_KEY": "canary2",
           "HOME": "/root", "TORCH_HOME": "/x", "HF_ENDPOINT": "https://u:canary3@hf.co/x",
           "MY_SESSION": "canary4", "TF_AUTH": "canary5", "MYVAR": "1"}
    out = envmod.allowed_env(env, extra=["MY*"])
    assert out == {"CUDA_VISIBLE_DEVICES": "0", "TORCH_HOME": "/x",
                   "HF_ENDPOINT": "https://hf.co/x", "MYVAR": "1"}


@pytest.mark.parametrize("pattern", ["TORCH_*", "RANK", "MY*VAR", "A?C", "[AB]C", "X*", "*"])
@pytest.mark.parametrize("name", ["TORCH_HOME", "RANK", "LOCAL_RANK", "MY_VAR", "ABC", "BC",
                                  "X", "torch_home", "TORCH_"])
def test_glob_match_is_fnmatchcase(pattern: str, name: str) -> None:
    import fnmatch

    assert envmod._glob_matcher([pattern])(name) == fnmatch.fnmatchcase(name, pattern)
    patterns = ["RANK", "TORCH_*", "A?C", pattern]
    assert envmod._glob_matcher(patterns)(name) == any(
        fnmatch.fnmatchcase(name, p) for p in patterns)
