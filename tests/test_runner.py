"""runner: real children: exit codes, output teeing, terminals, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from repro import errors
from repro.commands import runner

PY = sys.executable


def run(argv: list[str], tmp_path: Path) -> runner.ChildResult:
    with runner.SignalGuard() as guard:
        return runner.run_child(argv, cwd=tmp_path, env=dict(os.environ),
                                stdout_log=tmp_path / "out.log", stderr_log=tmp_path / "err.log",
                                guard=guard)


@pytest.mark.parametrize("code", [0, 1, 3, 42])
def test_exit_codes_pass_through(tmp_path: Path, code: int) -> None:
    result = run([PY, "-c", f"import sys; sys.exit({code})"], tmp_path)
    assert (result.exit_code, result.signal, result.interrupted) == (code, None, False)


def test_output_is_teed_exactly(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    script = ("import sys; sys.stdout.write('out\\r\\nline2\\n'); sys.stdout.flush(); "
              "sys.stderr.write('err\\n')")
    run([PY, "-c", script], tmp_path)
    captured = capfd.readouterr()
    assert captured.out == "out\r\nline2\n"
    assert captured.err == "err\n"
    assert (tmp_path / "out.log").read_bytes() == b"out\r\nline2\n"
    assert (tmp_path / "err.log").read_bytes() == b"err\n"


TEE_IN_A_FRESH_PROCESS = """\
import os, sys
from pathlib import Path
from repro.commands import runner

def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

folder = Path(sys.argv[1])
writer = "import sys\\nb = b'x' * 1048575 + b'\\\\n'\\nfor _ in range(64): sys.stdout.buffer.write(b)"
resident_before = status_kib("VmRSS")
with runner.SignalGuard() as guard:
    runner.run_child([sys.executable, "-c", writer], cwd=folder, env=dict(os.environ),
                     stdout_log=folder / "out.log", stderr_log=folder / "err.log", guard=guard)
print(resident_before, status_kib("VmHWM"), file=sys.stderr)
"""


def test_large_output_streams_with_bounded_memory(tmp_path: Path) -> None:
    # 64 MiB through the tee: the log and the echo get every byte; repro never holds it all.
    # Measured in a fresh interpreter, as its peak resident size (VmHWM) over what it held
    # before the run. Not in pytest's process, where an earlier test's peak (torch, hypothesis)
    # hides any growth; not with ru_maxrss, which counts the forked image of pytest the fresh
    # interpreter was exec'd from.
    with open(tmp_path / "echo.out", "wb") as echo:
        done = subprocess.run([PY, "-c", TEE_IN_A_FRESH_PROCESS, str(tmp_path)], stdout=echo,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resident_before_kib, peak_kib = map(int, done.stderr.split())
    assert (tmp_path / "out.log").stat().st_size == 64 * 1024 * 1024
    assert (tmp_path / "echo.out").stat().st_size == 64 * 1024 * 1024
    assert peak_kib - resident_before_kib < 32 * 1024


@pytest.mark.parametrize(("argv", "code", "fragment"), [
    (["definitely-not-a-command-xyz"], 127, "command not found"),
    (["./not-exec.sh"], 126, "not executable"),
])
def test_start_failures(tmp_path: Path, argv: list[str], code: int, fragment: str) -> None:
    (tmp_path / "not-exec.sh").write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(errors.ChildStartError) as e:
        run(argv, tmp_path)
    assert e.value.exit_code == code and fragment in e.value.message


def test_killed_child_maps_to_128_plus_signal(tmp_path: Path) -> None:
    result = run([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], tmp_path)
    assert (result.exit_code, result.signal) == (137, "SIGKILL")


def test_sigterm_to_repro_is_forwarded(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(30)"

    def kill_when_ready() -> None:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill_when_ready, daemon=True).start()
    started = time.monotonic()
    result = run([PY, "-c", script], tmp_path)
    assert (result.exit_code, result.signal, result.interrupted) == (143, "SIGTERM", True)
    assert time.monotonic() - started < 15


def test_sigterm_arriving_while_the_child_starts_is_forwarded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM that reaches repro after the child was spawned but before the guard knew it
    (a loaded machine can deschedule repro there while the child starts) still reaches the
    child: not left running until the grace period's SIGKILL."""
    spawn = runner._spawn

    def spawn_then_sigterm(*args: object, **kw: object) -> subprocess.Popen[bytes]:
        proc = spawn(*args, **kw)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGTERM)  # the moment of the race, made certain
        return proc

    monkeypatch.setattr(runner, "_spawn", spawn_then_sigterm)
    started = time.monotonic()
    with runner.SignalGuard(kill_after=0) as guard:  # no escalation: only forwarding ends it
        result = runner.run_child([PY, "-c", "import time; time.sleep(30)"], cwd=tmp_path,
                                  env=dict(os.environ), stdout_log=tmp_path / "out.log",
                                  stderr_log=tmp_path / "err.log", guard=guard)
    assert (result.exit_code, result.signal, result.interrupted) == (143, "SIGTERM", True)
    assert time.monotonic() - started < 15


def test_child_sees_a_terminal_when_repro_has_one(tmp_path: Path) -> None:
    """Run the runner under a real pty (as a user's shell would) and ask the child."""
    import pty

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys, shutil\n"
        "print('tty', sys.stdout.isatty(), sys.stderr.isatty(), os.get_terminal_size(1).columns)\n"
        "sys.stderr.write('progress\\r')\n")
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import os, sys, fcntl, termios, struct\n"
        "fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 123, 0, 0))\n"
        "from pathlib import Path\nfrom repro.commands import runner\n"
        "with runner.SignalGuard() as g:\n"
        f"    r = runner.run_child([sys.executable, {str(probe)!r}], cwd=Path('.'), env=dict(os.environ),"
        f" stdout_log=Path({str(tmp_path / 'o.log')!r}), stderr_log=Path({str(tmp_path / 'e.log')!r}),"
        " guard=g)\n"
        "sys.exit(r.exit_code)\n")
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - child
        os.execv(PY, [PY, str(driver)])
    chunks = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks += data
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, chunks
    assert (tmp_path / "o.log").read_bytes() == b"tty True True 123\n"
    assert (tmp_path / "e.log").read_bytes() == b"progress\r"
