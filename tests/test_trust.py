""""Produced in this clone" cannot be forged by a commit; future-dated runs never pin `latest`."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from repro.cli.main import main
from repro.record import store, trust
from tests.conftest import PYTHON, git

# Leaves a marker when it runs: the proof that a foreign manifest's argv was (not) executed.
SCRIPT = """\
import pathlib, sys
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
(out / "result.txt").write_text("ran\\n")
pathlib.Path(sys.argv[1]).write_text("executed") if len(sys.argv) > 1 else None
"""
RUN = ["run", "--output", "out", "--", PYTHON, "train.py"]


def setup(repo: Path) -> None:
    (repo / "train.py").write_text(SCRIPT)
    (repo / ".gitignore").write_text(".repro/\nout/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "script")


def repro(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """repro as a real process with stdin not a terminal (as in CI, or `</dev/null`)."""
    return subprocess.run([PYTHON, "-m", "repro", *args], cwd=cwd, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120,
                          env={**os.environ, **(env or {})})


def run_dirs(repo: Path) -> list[Path]:
    return sorted((repo / ".repro" / "runs").iterdir())


@pytest.mark.slow
def test_a_run_directory_committed_into_the_repository_is_foreign_in_a_fresh_clone(
        repo: Path, tmp_path: Path) -> None:
    setup(repo)
    marker = tmp_path / "pwned"
    assert main([*RUN, str(marker)]) == 0
    marker.unlink()
    run_dir = run_dirs(repo)[-1]
    assert trust.tag_path(run_dir / "manifest.yaml").is_file()
    git(repo, "add", "-f", str(run_dir.relative_to(repo)))  # the tag travels too: no help
    git(repo, "commit", "-qm", "a run directory, committed")
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(repo), str(fresh))
    assert (fresh / ".repro" / "runs" / run_dir.name / "manifest.yaml").is_file()

    for args in (["replay", "latest"], ["verify", "latest"]):
        done = repro(fresh, *args)
        assert done.returncode in (2, 125), done.stderr
        assert "was not recorded in this clone" in done.stderr and "--yes" in done.stderr
        assert not marker.exists(), f"{args} ran a foreign manifest's command"
    assert not (fresh / ".git" / trust.KEY_FILE).exists()  # reading never creates the key
    done = repro(fresh, "replay", "latest", "--yes")
    assert done.returncode == 0, done.stderr
    assert marker.exists()
    # In the clone that recorded it, the same run is its own: replayed without asking.
    marker.unlink()
    assert repro(repo, "replay", run_dir.name).returncode == 0
    assert marker.exists()


@pytest.mark.parametrize("forgery", ["edited", "untagged", "tag copied from another run"])
def test_an_edited_or_untagged_manifest_in_the_store_is_foreign(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], forgery: str) -> None:
    setup(repo)
    assert main(RUN) == 0
    assert main(RUN) == 0
    first, second = run_dirs(repo)
    path = second / "manifest.yaml"
    marker = tmp_path / "pwned"
    if forgery == "edited":
        doc = yaml.safe_load(path.read_text())
        doc["command"]["argv"] = [PYTHON, "train.py", str(marker)]
        path.write_text(yaml.safe_dump(doc))
    elif forgery == "untagged":
        trust.tag_path(path).unlink()
    else:
        shutil.copy(trust.tag_path(first / "manifest.yaml"), trust.tag_path(path))
    capfd.readouterr()
    assert main(["replay", "latest"]) == 125
    assert "was not recorded in this clone (or was changed since)" in capfd.readouterr().err
    assert not marker.exists()
    assert main(["replay", first.name]) == 0  # the untouched run is still ours


def test_the_key_is_private_shared_by_worktrees_and_never_committed(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(repo)
    assert main(RUN) == 0
    key_file = repo / ".git" / trust.KEY_FILE
    assert key_file.is_file() and len(key_file.read_bytes()) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert git(repo, "status", "--porcelain") == ""
    # A linked worktree of the clone: its runs are this clone's runs, with the same key.
    other = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "--detach", str(other), "HEAD")
    assert trust.common_git_dir(other) == (repo / ".git").resolve()
    monkeypatch.chdir(other)
    assert main(RUN) == 0
    assert main(["replay", "latest"]) == 0  # no terminal, no --yes: produced here
    assert list((repo / ".git").glob(trust.KEY_FILE + "*")) == [key_file]
    assert not list((repo / ".git" / "worktrees").rglob(trust.KEY_FILE))


def test_runs_in_a_store_outside_the_repository_and_verify_replays_are_produced_here(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup(repo)
    home = tmp_path / "store"
    monkeypatch.setenv("REPRO_HOME", str(home))
    assert main(RUN) == 0
    assert main(["verify", "latest"]) == 0  # no --yes needed: our own run
    runs = store.open_here()
    ids = runs.run_ids()
    assert len(ids) == 2
    for run_id in ids:  # the recorded run and verify's replay both carry a valid tag
        assert trust.produced_here(home / "runs" / run_id / "manifest.yaml", repo)
    assert (repo / ".git" / trust.KEY_FILE).is_file()
    assert not (repo / ".repro").exists()


def test_concurrent_first_use_creates_one_key(repo: Path) -> None:
    procs = [subprocess.Popen([PYTHON, "-c", "import sys; from pathlib import Path; "
                               "from repro.record import trust; "
                               "sys.stdout.write(trust.key(Path('.')).hex())"],
                              cwd=repo, stdout=subprocess.PIPE, text=True) for _ in range(6)]
    keys = {p.communicate(timeout=60)[0] for p in procs}
    assert len(keys) == 1 and len(next(iter(keys))) == 64
    assert bytes.fromhex(next(iter(keys))) == (repo / ".git" / trust.KEY_FILE).read_bytes()
    assert [p.name for p in (repo / ".git").iterdir() if trust.KEY_FILE in p.name] == \
        [trust.KEY_FILE]


def test_a_future_dated_run_never_becomes_latest(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    setup(repo)
    assert main(RUN) == 0
    assert main(RUN) == 0
    older, newer = run_dirs(repo)
    future = newer.parent / store.new_run_id(dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
    shutil.copytree(older, future)
    runs = store.open_here()
    assert runs.run_ids()[0] == future.name  # listed (newest first), but ...
    assert runs.resolve("latest").parent == newer  # ... `latest` is the newest real one
    assert runs.resolve("latest~1").parent == older
    capfd.readouterr()
    assert main(["show", "latest", "--json"]) == 0
    captured = capfd.readouterr()
    assert newer.name in captured.out and future.name not in captured.out
    assert "skips 1 run(s) dated in the future" in captured.err
    assert runs.resolve(future.name).parent == future  # still reachable by its id
    # Within the clock-skew allowance a run still counts (another host's clock a bit ahead).
    soon = newer.parent / store.new_run_id(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2))
    shutil.copytree(older, soon)
    assert store.open_here().resolve("latest").parent == soon


def test_a_replaced_untracked_copy_beside_a_genuine_manifest_is_refused(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`git pull` silently replaces ignored files: a tracked `.repro/runs/<id>/untracked/x.py`
    can overwrite the copy beside one of this clone's own (signed) manifests."""
    setup(repo)
    (repo / "train.py").write_text(SCRIPT + "import helper\n")
    (repo / "helper.py").write_text("x = 1\n")
    assert main(["run", "--allow-dirty", *RUN[1:]]) == 0
    copy = run_dirs(repo)[-1] / "untracked" / "helper.py"
    marker = tmp_path / "pwned"
    copy.write_text(f"open({str(marker)!r}, 'w').write('executed')\n")
    capfd.readouterr()
    for args in (["replay", "latest"], ["replay", "latest", "--script"]):
        assert main(args) == 125
        assert "copy of untracked file helper.py does not match its recorded hash" in \
            capfd.readouterr().err
    assert not marker.exists()


def test_a_damaged_key_is_reported_and_its_runs_are_foreign(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    setup(repo)
    (repo / ".git" / trust.KEY_FILE).write_bytes(b"short")
    capfd.readouterr()
    assert main(RUN) == 0
    assert "cannot read or create this clone's key" in capfd.readouterr().err
    assert main(["replay", "latest"]) == 125


@pytest.mark.slow
def test_a_tag_or_key_that_is_a_fifo_never_blocks(repo: Path) -> None:
    setup(repo)
    assert main(RUN) == 0
    tag = trust.tag_path(run_dirs(repo)[-1] / "manifest.yaml")
    tag.unlink()
    os.mkfifo(tag)  # no writer ever comes: an open without O_NONBLOCK waits for good
    done = subprocess.run([PYTHON, "-m", "repro", "replay", "latest"], cwd=repo, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 125 and "was not recorded in this clone" in done.stderr
    key = repo / ".git" / trust.KEY_FILE
    key.unlink()
    os.mkfifo(key)
    done = subprocess.run([PYTHON, "-m", "repro", *RUN], cwd=repo, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 0 and "cannot read or create this clone's key" in done.stderr


def test_a_foreign_argv_cannot_redraw_the_terminal_to_hide_itself(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    setup(repo)
    assert main(RUN) == 0
    path = run_dirs(repo)[-1] / "manifest.yaml"
    doc = yaml.safe_load(path.read_text())
    marker = tmp_path / "pwned"
    # Erase the line and move up: on a terminal only "python train.py" would be seen.
    doc["command"]["argv"] = ["sh", "-c", f"touch {marker}\x1b[2K\x1b[1G\x1b[1Apython train.py"]
    path.write_text(yaml.safe_dump(doc))
    capfd.readouterr()
    assert main(["replay", "latest"]) == 125
    err = capfd.readouterr().err
    assert "\x1b" not in err and f"touch {marker}\\x1b[2K" in err
    assert not marker.exists()


def test_a_key_readable_by_others_is_made_private_again(repo: Path) -> None:
    setup(repo)
    assert main(RUN) == 0
    key_file = repo / ".git" / trust.KEY_FILE
    key_file.chmod(0o644)  # e.g. a careless copy of the clone
    trust._keys.clear()  # a fresh process: nothing cached
    assert trust.key(repo) == key_file.read_bytes()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
