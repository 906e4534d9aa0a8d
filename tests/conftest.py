"""Shared fixtures: every test runs isolated from the real home, git identity and REPRO_* vars."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temp HOME, pinned git identity, no colour, fixed width, no stray REPRO_* variables."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "80")
    for key in list(os.environ):
        if key.startswith("REPRO_") or key in ("PYTHONHASHSEED", "PYTHONPATH", "OMP_NUM_THREADS",
                                              "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "SOURCE_DATE_EPOCH"):
            monkeypatch.delenv(key, raising=False)


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout; fail the test on error."""
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **GIT_ENV})
    assert done.returncode == 0, f"git {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def pinned_lock() -> str:
    """A requirements lock pinning what is installed in this interpreter for a few packages."""
    from importlib import metadata

    names = ["pyyaml", "blake3"]
    return "".join(f"{n}=={metadata.version(n)}\n" for n in names)


@pytest.fixture(scope="session")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed git repo with a pinned lockfile, built once per session."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    repo.mkdir()
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    (repo / ".gitignore").write_text(".repro/\n")
    (repo / "requirements.lock").write_text(pinned_lock())
    (repo / "train.py").write_text("print('hello')\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "initial"], cwd=repo, check=True, env=env)
    return repo


@pytest.fixture
def repo(template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh copy of the template repo; the test's working directory."""
    dest = tmp_path / "repo"
    shutil.copytree(template_repo, dest, symlinks=True)
    monkeypatch.chdir(dest)
    yield dest


PYTHON = sys.executable


def snapshot_tree(path: Path, *, skip: tuple[str, ...] = (".git", ".repro")) -> dict[str, object]:
    """Everything a user could notice changed under `path`: for reuse in before/after checks.

    Every file and link (git-ignored ones included; `skip` names top-level entries left out,
    by default git's and repro's own stores) by content hash, size, mode and mtime; every
    directory; and, when `path` is a git checkout, `git status --porcelain --ignored`, HEAD,
    the index file's bytes and the registered worktrees (a replay's must be gone). Compare two
    snapshots with `==`; a failing assert shows which paths differ.
    """
    import hashlib
    import stat

    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        rel_dir = os.path.relpath(dirpath, path)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip]
            filenames = [f for f in filenames if f not in skip]
        dirnames.sort()
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                with open(full, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ("file", digest, st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    if (path / ".git").exists():
        excluded = [f":(exclude){name}" for name in skip if name != ".git"]
        out[":status"] = git(path, "status", "--porcelain", "--ignored", "--untracked-files=all",
                             "--", ".", *excluded)
        out[":head"] = git(path, "rev-parse", "HEAD")
        out[":worktrees"] = git(path, "worktree", "list", "--porcelain")
        index = path / ".git" / "index"
        out[":index"] = hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else None
    return out


def pytest_configure(config: pytest.Config) -> None:
    """A test named by its node id (`pytest tests/test_x.py::test_y`) runs even when marked
    slow: pyproject's addopts leave slow tests out of a plain `pytest` only."""
    if config.option.markexpr == "not slow" and any("::" in arg for arg in config.args):
        config.option.markexpr = ""
