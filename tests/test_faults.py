"""Fault injection: full disks, read-only stores, SIGKILL, SIGPIPE, stubborn children,
submodules and untracked working directories. repro runs as a real process; every process a
test starts is reaped (timeouts everywhere), and each test checks that nothing that could be
kept was lost, that no child outlives repro, and the exit code."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import PYTHON, git

REPRO = [sys.executable, "-m", "repro"]


def repro(*args: str, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REPRO, *args], capture_output=True, text=True, timeout=timeout,
                          **kw)  # type: ignore[call-overload, no-any-return]


def manifests(home: Path) -> list[dict]:  # type: ignore[type-arg]
    return [yaml.safe_load((d / "manifest.yaml").read_text())
            for d in sorted((home / "runs").iterdir()) if (d / "manifest.yaml").exists()]


def gone(pid: int, within: float = 15.0) -> bool:
    """The process no longer exists (or is a zombie nobody will reap but init)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def wait_for(path: Path, within: float = 30.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    path.mkdir()
    opts = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, timeout=30)
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


NOISY = """
import os, pathlib, sys
pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))
for i in range(3000):
    sys.stdout.write(f"line {i} " + "x" * 1000 + "\\n")
sys.exit(7)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["tmpfs", "file-size-limit"])
def test_disk_full_during_a_run_keeps_the_child_and_its_result(
        repo: Path, tmp_path: Path, how: str) -> None:
    """3 MB of output into a 2 MB store: the output still passes through whole, the child is
    waited for, the manifest is finished with its exit code, one warning says what was lost."""
    (repo / "noisy.py").write_text(NOISY)
    git(repo, "add", "noisy.py")
    git(repo, "commit", "-qm", "noisy")
    pid_file = tmp_path / "pid"
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        if how == "tmpfs":
            home = stack.enter_context(tmpfs(tmp_path / "small", "2m"))
            limit = None
        else:
            home = tmp_path / "home"
            limit = 2 * 1024 * 1024

        def cap() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        env["REPRO_HOME"] = str(home)
        done = subprocess.run([*REPRO, "run", "--", PYTHON, "noisy.py", str(pid_file)],
                              capture_output=True, text=True, env=env, timeout=120,
                              preexec_fn=cap)
        assert done.returncode == 7, done.stderr
        assert gone(int(pid_file.read_text()))
        # Nothing the user sees is lost: every line passed through.
        assert done.stdout.count("\n") == 3000
        [m] = manifests(home)
        assert (m["run"]["status"], m["run"]["exit_code"]) == ("failed", 7)
        assert "stdout.log stops after" in m["run"]["note"]
        assert done.stderr.count("warning:") == 1 + done.stderr.count("seed could not")
        assert "record is incomplete" in done.stderr and "internal error" not in done.stderr
        assert not (home / "bugs").exists()
        assert not list((home / "runs").glob("*/.reserve"))


@pytest.mark.slow
def test_a_store_with_less_room_than_the_reserve_still_gets_the_final_manifest(
        repo: Path, tmp_path: Path) -> None:
    """~100 KiB free (less than the 256 KiB reserve, more than a manifest): the log fills
    the disk, yet the manifest is finished with the child's exit code, not left `running`."""
    (repo / "noisy.py").write_text(NOISY)
    git(repo, "add", "noisy.py")
    git(repo, "commit", "-qm", "noisy")
    pid_file = tmp_path / "pid"
    with tmpfs(tmp_path / "small", "2m") as home:
        st = os.statvfs(home)
        (home / "fill").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 100 * 1024))
        done = repro("run", "--", PYTHON, "noisy.py", str(pid_file),
                     env={**os.environ, "REPRO_HOME": str(home)})
        assert done.returncode == 7, done.stderr
        assert gone(int(pid_file.read_text()))
        [m] = manifests(home)
        assert (m["run"]["status"], m["run"]["exit_code"]) == ("failed", 7), done.stderr
        assert "stdout.log stops after" in m["run"]["note"]
        assert "final manifest" not in done.stderr


def test_a_full_store_is_refused_before_the_child_starts(repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with tmpfs(tmp_path / "small", "1m") as home:
        with contextlib.suppress(OSError), (home / "fill").open("wb") as fill:
            for _ in range(1024):
                fill.write(b"\0" * 1024)
                fill.flush()
        done = repro("run", "--", PYTHON, "-c", f"open({str(marker)!r}, 'w')",
                     env={**os.environ, "REPRO_HOME": str(home)})
        assert done.returncode == 125, done.stderr
        assert "error: cannot write the run record" in done.stderr
        assert "No space left on device" in done.stderr and "hint:" in done.stderr
        assert not marker.exists()
        assert not (home / "bugs").exists() and not list((home / "runs").iterdir())


def test_a_read_only_store_is_refused_before_the_child_starts(repo: Path,
                                                              tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with contextlib.ExitStack() as stack:
        if os.geteuid() == 0:  # root writes through permissions: a read-only mount it is
            home = stack.enter_context(tmpfs(tmp_path / "ro", "1m", read_only=True))
        else:
            home = tmp_path / "ro"
            home.mkdir()
            home.chmod(0o555)
            stack.callback(home.chmod, 0o755)
        done = repro("run", "--", PYTHON, "-c", f"open({str(marker)!r}, 'w')",
                     env={**os.environ, "REPRO_HOME": str(home)})
    assert done.returncode == 125, done.stderr
    assert "error: cannot write the run record" in done.stderr and "hint:" in done.stderr
    assert "internal error" not in done.stderr
    assert not marker.exists()


def test_a_bug_report_is_never_an_empty_file(repo: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from repro.cli import main

    with tmpfs(tmp_path / "small", "64k") as home:
        (home / "fill").write_bytes(b"\0" * (64 * 1024))
        monkeypatch.setenv("REPRO_HOME", str(home))
        (tmp_path / "tmp").mkdir()
        monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
        import tempfile

        monkeypatch.setattr(tempfile, "tempdir", None)
        try:
            raise RuntimeError("boom " + "x" * 10000)
        except RuntimeError:
            saved = main._save_traceback()
        assert not [p for p in home.rglob("*") if p.is_file() and p.stat().st_size == 0]
    assert saved is not None and "RuntimeError: boom" in Path(saved).read_text()
    assert Path(saved).is_relative_to(tmp_path / "tmp")


@pytest.mark.slow
def test_sigkill_of_repro_takes_the_child_with_it(repo: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    proc = subprocess.Popen([*REPRO, "run", "--", PYTHON, "-c",
                             "import os, pathlib, sys, time\n"
                             f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
                             "time.sleep(120)"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        child = int(wait_for(pid_file))
        proc.kill()
        proc.wait(timeout=30)
        assert gone(child), "the child outlived repro"
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if pid_file.exists():
            kill_quietly(int(pid_file.read_text()))
    [m] = manifests(repo / ".repro")
    assert m["run"]["status"] == "running"  # evidence left; `repro runs` reads it as abandoned


@pytest.mark.slow
def test_a_closed_stdout_ends_the_child_as_without_repro(repo: Path) -> None:
    """`repro run -- yes | head -2` ends at once, like `yes | head -2`."""
    cmd = " ".join([*REPRO, "run", "--", "yes"]) + " | head -2"
    started = time.monotonic()
    shell = subprocess.Popen(["bash", "-c", cmd + "; echo ${PIPESTATUS[0]} >&2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        out, err = shell.communicate(timeout=60)
    finally:  # without the fix, repro and `yes` would run on: end the whole group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(timeout=30)
    assert out == "y\ny\n"
    assert time.monotonic() - started < 30
    assert err.strip().splitlines()[-1] == "141"
    [m] = manifests(repo / ".repro")
    assert (m["run"]["exit_code"], m["run"]["signal"]) == (141, "SIGPIPE")
    [run_dir] = (repo / ".repro" / "runs").iterdir()
    assert (run_dir / "stdout.log").stat().st_size < 16 * 1024 * 1024


def ignores_sigterm(pid_file: Path) -> str:
    """`python -c` code that ignores SIGTERM, writes its pid to `pid_file` and sleeps."""
    return ("import os, pathlib, signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
            "time.sleep(120)")


def signal_repro(argv: list[str], pid_file: Path, times: int = 1) -> tuple[int, str, int, float]:
    """Start repro with argv, wait for its child to write its pid, send repro SIGTERM `times`
    times; -> (repro's exit code, its stderr, the child's pid, seconds from the first signal
    to repro's exit). Every process is reaped whatever happens."""
    proc = subprocess.Popen([*REPRO, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        child = int(wait_for(pid_file))
        started = time.monotonic()
        for _ in range(times):
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err, child, time.monotonic() - started
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if pid_file.exists():
            kill_quietly(int(pid_file.read_text()))


@pytest.mark.slow
def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(
        repo: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = ignores_sigterm(pid_file)
    code, err, child, _ = signal_repro(["run", "--kill-after", "1", "--", PYTHON, "-c", script],
                                       pid_file)
    assert code == 137, err
    assert gone(child)
    assert "repro killed it (SIGKILL)" in err
    [m] = manifests(repo / ".repro")
    assert (m["run"]["status"], m["run"]["exit_code"], m["run"]["signal"]) == (
        "interrupted", 137, "SIGKILL")


@pytest.mark.slow
def test_output_a_grandchild_writes_after_the_child_exits_is_kept(repo: Path) -> None:
    done = repro("run", "--", "sh", "-c", "(sleep 0.5; echo late) & echo early")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "early\nlate\n"
    [run_dir] = (repo / ".repro" / "runs").iterdir()
    assert (run_dir / "stdout.log").read_text() == "early\nlate\n"


@pytest.mark.slow
def test_a_daemon_holding_the_output_does_not_hang_repro(repo: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon"
    started = time.monotonic()
    try:
        done = repro("run", "--", "sh", "-c", f"sleep 60 & echo $! > {pid_file}; echo started")
    finally:
        if pid_file.exists():
            kill_quietly(int(pid_file.read_text()))
    assert done.returncode == 0 and done.stdout == "started\n"
    assert time.monotonic() - started < 30


def _worktrees(repo: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in git(repo, "worktree", "list", "--porcelain")
            .splitlines() if line.startswith("worktree ")]


@pytest.mark.slow
def test_sigkill_of_a_replay_is_cleaned_up_by_the_next(repo: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    flag = tmp_path / "slow"
    pid_file = tmp_path / "pid"
    (repo / "job.py").write_text(
        "import os, pathlib, sys, time\n"
        f"if pathlib.Path({str(flag)!r}).exists():\n"
        f"    pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\n"
        "    time.sleep(120)\n")
    git(repo, "add", "job.py")
    git(repo, "commit", "-qm", "job")
    assert repro("run", "--", PYTHON, "job.py", env=env).returncode == 0
    flag.touch()
    proc = subprocess.Popen([*REPRO, "replay", "latest"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        child = int(wait_for(pid_file))
        proc.kill()
        proc.wait(timeout=30)
        assert gone(child)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if pid_file.exists():
            kill_quietly(int(pid_file.read_text()))
    [stale] = [w for w in _worktrees(repo) if w != str(repo)]
    assert Path(stale).is_relative_to(tmp)
    flag.unlink()
    done = repro("replay", "latest~1", env=env)
    assert done.returncode == 0, done.stderr
    assert _worktrees(repo) == [str(repo)]
    assert not list(tmp.iterdir())


@pytest.mark.slow
def test_replay_of_a_run_started_in_an_untracked_directory(repo: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "experiments" / "a").mkdir(parents=True)  # empty: git does not know it
    monkeypatch.chdir(repo / "experiments" / "a")
    assert repro("run", "--", PYTHON, "-c", "print(42)").returncode == 0
    done = repro("replay", "latest")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "42\n"


SUB_SCRIPT = """
import pathlib
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/result.txt").write_text(pathlib.Path("sub/data.txt").read_text())
"""


def _with_submodule(repo: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    (lib / "data.txt").write_text("v1\n")
    git(lib, "add", "data.txt")
    git(lib, "commit", "-qm", "lib")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "sub")
    (repo / "train.py").write_text(SUB_SCRIPT)
    (repo / ".gitignore").write_text(".repro/\nout/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "with a submodule")


@pytest.mark.slow
def test_submodules_are_recorded_and_populated_in_replays(repo: Path, tmp_path: Path) -> None:
    _with_submodule(repo, tmp_path)
    assert repro("run", "--output", "out", "--", PYTHON, "train.py").returncode == 0
    [m] = manifests(repo / ".repro")
    lib_head = git(repo / "sub", "rev-parse", "HEAD").strip()
    assert m["code"]["submodules"] == [{"path": "sub", "commit": lib_head, "state": "clean"}]
    done = repro("verify", "latest")
    assert done.returncode == 0 and "bitwise" in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_a_dirty_submodule_is_refused_or_recorded_with_its_patch(repo: Path,
                                                                 tmp_path: Path) -> None:
    _with_submodule(repo, tmp_path)
    (repo / "sub" / "data.txt").write_text("v2, uncommitted\n")
    refused = repro("run", "--output", "out", "--", PYTHON, "train.py")
    assert refused.returncode == 125 and "sub" in refused.stderr
    assert repro("run", "--allow-dirty", "--output", "out", "--",
                 PYTHON, "train.py").returncode == 0
    [m] = manifests(repo / ".repro")
    [sub] = m["code"]["submodules"]
    assert sub["state"] == "modified" and sub["patch"]["file"]
    git(repo / "sub", "checkout", "data.txt")  # the user's tree moves on
    (repo / "out" / "result.txt").unlink()
    done = repro("verify", "latest")
    assert done.returncode == 0 and "bitwise" in done.stdout, done.stdout + done.stderr
    assert (repo / "sub" / "data.txt").read_text() == "v1\n"  # the user's tree untouched
    replayed = manifests(repo / ".repro")[-1]
    assert replayed["code"]["submodules"][0]["patch"]["hash"] == sub["patch"]["hash"]
    # The script rebuilds the same tree without repro.
    script = repro("replay", "--script", m["run"]["run_id"]).stdout
    done = subprocess.run(["bash", "-c", script.replace('echo "outputs are in $work/tree" >&2',
                                                        'cat "$work/tree/out/result.txt"')],
                          capture_output=True, text=True, timeout=120, cwd=repo)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "v2, uncommitted\n"


def test_stale_cleanup_spares_live_kept_and_foreign_replays(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from repro.commands import replay
    from repro.record import store

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    host = os.uname().nodename
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=30)
    owners = {
        "live": f"{os.getppid()} {store.process_start_ticks(os.getppid())} {host}",
        "dead": f"{dead.pid} 1 {host}",
        "reused": f"{os.getppid()} 1 {host}",  # the pid lives on, but started at another time
        "elsewhere": f"{dead.pid} 1 another-host",
        "kept": None,  # --keep removes the owner file
    }
    for name, owner in owners.items():
        (tmp_path / f"repro-replay-{name}" / "worktree").mkdir(parents=True)
        if owner:
            (tmp_path / f"repro-replay-{name}" / "owner").write_text(owner + "\n")
    replay.clean_stale(repo)
    left = sorted(p.name[len("repro-replay-"):] for p in tmp_path.glob("repro-replay-*"))
    assert left == ["elsewhere", "kept", "live"]


@pytest.mark.slow
def test_nested_submodules_are_populated_in_replays(repo: Path, tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    git(inner, "init", "-q", "-b", "main")
    (inner / "data.txt").write_text("deep\n")
    git(inner, "add", "data.txt")
    git(inner, "commit", "-qm", "inner")
    lib = tmp_path / "lib"
    lib.mkdir()
    git(lib, "init", "-q", "-b", "main")
    git(lib, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(inner), "inner")
    git(lib, "commit", "-qm", "lib")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "sub")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "update", "--init", "--recursive")
    (repo / "train.py").write_text(SUB_SCRIPT.replace("sub/data.txt", "sub/inner/data.txt"))
    (repo / ".gitignore").write_text(".repro/\nout/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "with nested submodules")
    assert repro("run", "--output", "out", "--", PYTHON, "train.py").returncode == 0
    done = repro("verify", "latest")
    assert done.returncode == 0 and "bitwise" in done.stdout, done.stdout + done.stderr


def test_a_replay_whose_command_ignores_sigterm_exits_137_like_run(
        repo: Path, tmp_path: Path) -> None:
    flag, pid_file = tmp_path / "hang", tmp_path / "pid"
    (repo / "t.py").write_text(
        "import os, pathlib, signal, sys, time\n"
        "if pathlib.Path(sys.argv[1]).exists():\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    pathlib.Path(sys.argv[2]).write_text(str(os.getpid()))\n"
        "    time.sleep(120)\n")
    git(repo, "add", "t.py")
    git(repo, "commit", "-qm", "t")
    assert repro("run", "--", PYTHON, "t.py", str(flag), str(pid_file)).returncode == 0
    flag.write_text("now hang")
    code, err, child, _ = signal_repro(["replay", "latest", "--kill-after", "1"], pid_file)
    assert code == 137, err  # not 130: nobody pressed Ctrl-C
    assert gone(child)


def test_a_third_signal_kills_a_child_that_ignores_them_without_waiting(
        repo: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = ignores_sigterm(pid_file)
    code, err, child, waited = signal_repro(["run", "--", PYTHON, "-c", script],  # grace: 30 s
                                            pid_file, times=3)
    assert code == 137, err
    assert waited < 15, waited  # not the 30 s grace period
    assert gone(child)
