"""Spawn the child, tee its output to the terminal and the run logs, forward signals, map codes.

Owns the child process and the signal handlers around it; never prints anything of its own
(the bytes it writes to stdout/stderr are the child's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import BinaryIO

from repro import errors

CHUNK = 64 * 1024
# After the child exits, a grandchild may still hold its output open (a daemon it started):
# keep copying while data flows, but stop once it has been quiet this long.
DRAIN_IDLE_S = 0.5
FORWARDED = (signal.SIGTERM, signal.SIGHUP)


@dataclasses.dataclass(frozen=True)
class ChildResult:
    exit_code: int  # what repro exits with: the child's code, or 128+N for signal N
    signal: str | None  # the signal that killed the child, by name
    interrupted: bool  # Ctrl-C, SIGTERM or SIGHUP reached repro while the child ran
    pid: int


class SignalGuard:
    """While active, SIGINT/SIGTERM/SIGHUP never kill repro: they are noted and forwarded.

    Ctrl-C at a terminal reaches the whole foreground process group, child included, so SIGINT
    is not forwarded again (a second KeyboardInterrupt would land in the child's cleanup).
    SIGTERM and SIGHUP are usually aimed at repro alone, so they are passed on to the child.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.child: subprocess.Popen[bytes] | None = None
        # Once the child is done, a signal stops repro's own remaining work instead (hashing
        # a 100 GB output must stay interruptible); the caller still writes the manifest.
        self.armed = False
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.armed and self.child is None:
            raise KeyboardInterrupt
        child = self.child
        if child is not None and signum in FORWARDED and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    def __enter__(self) -> SignalGuard:
        for sig in (signal.SIGINT, *FORWARDED):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]

    @property
    def interrupted(self) -> bool:
        return bool(self.received)


def run_child(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], stdout_log: Path,
              stderr_log: Path, guard: SignalGuard, stdout_to_stderr: bool = False) -> ChildResult:
    """Run argv to completion. stdin is inherited; stdout/stderr are teed to the logs.

    When repro's own stdout/stderr is a terminal the child gets a pseudo-terminal there, so
    progress bars, colours and line buffering behave exactly as without repro.
    `stdout_to_stderr`: echo the child's stdout on repro's stderr (stdout.log still gets it).
    """
    streams = [(sys.stderr if stdout_to_stderr else sys.stdout, stdout_log),
               (sys.stderr, stderr_log)]
    pipes: list[tuple[int, int, int | None]] = []  # (read end, child's write end, echo fd)
    for stream, _log in streams:
        echo = _fileno(stream)
        if echo is not None and os.isatty(echo):
            master, slave = os.openpty()
            _mirror_terminal(echo, slave)
        else:
            master, slave = os.pipe()
        pipes.append((master, slave, echo))
    try:
        proc = _spawn(argv, cwd, env, stdout=pipes[0][1], stderr=pipes[1][1])
    except BaseException:
        for r, w, _ in pipes:
            os.close(r)
            os.close(w)
        raise
    for _, w, _ in pipes:
        os.close(w)
    guard.child = proc
    with (_resize_forwarding([(r, echo) for r, _, echo in pipes]),
          stdout_log.open("wb") as out_log, stderr_log.open("wb") as err_log):
        _copy(proc, [(pipes[0][0], pipes[0][2], out_log), (pipes[1][0], pipes[1][2], err_log)])
    rc = proc.wait()
    guard.child = None
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return ChildResult(128 - rc, name, guard.interrupted or rc == -signal.SIGINT, proc.pid)
    return ChildResult(rc, None, guard.interrupted, proc.pid)


def _spawn(argv: Sequence[str], cwd: Path, env: Mapping[str, str], *, stdout: int,
           stderr: int) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=stdout, stderr=stderr,
                                close_fds=True)
    except FileNotFoundError as e:
        raise errors.ChildStartError(
            f"command not found: {argv[0]}",
            hint="check the spelling, or that it is installed and on PATH",
            exit_code=errors.ExitCode.NOT_FOUND) from e
    except PermissionError as e:
        raise errors.ChildStartError(
            f"permission denied: {argv[0]} is not executable",
            hint=f"chmod +x {argv[0]}, or run it through its interpreter",
            exit_code=errors.ExitCode.NOT_EXECUTABLE) from e
    except OSError as e:
        if e.errno == errno.ENOEXEC:
            raise errors.ChildStartError(
                f"cannot execute {argv[0]}: not a program or script with a #! line",
                hint="run it through its interpreter, e.g. `python script.py`",
                exit_code=errors.ExitCode.NOT_EXECUTABLE) from e
        raise errors.ChildStartError(f"cannot start {argv[0]}: {e.strerror}", hint=None,
                                     exit_code=errors.ExitCode.NOT_EXECUTABLE) from e


def _copy(proc: subprocess.Popen[bytes], channels: list[tuple[int, int | None, BinaryIO]]) -> None:
    """Copy each read end to its echo fd and log file, in bounded chunks, until EOF."""
    sel = selectors.DefaultSelector()
    for fd, echo, log in channels:
        sel.register(fd, selectors.EVENT_READ, (echo, log))
    live = {"echo": True}
    exited_at: float | None = None
    try:
        while sel.get_map():
            events = sel.select(timeout=0.1)
            for key, _ in events:
                echo, log = key.data
                try:
                    data = os.read(key.fd, CHUNK)
                except OSError as e:
                    if e.errno != errno.EIO:  # EIO: every pty slave closed, i.e. EOF
                        raise
                    data = b""
                if not data:
                    sel.unregister(key.fd)
                    os.close(key.fd)
                    continue
                log.write(data)
                if echo is not None and live["echo"]:
                    live["echo"] = _write_all(echo, data)
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            if exited_at is not None:
                if events:
                    exited_at = time.monotonic()
                elif time.monotonic() - exited_at > DRAIN_IDLE_S:
                    break
            if events:
                for _, _, log in channels:
                    log.flush()
    finally:
        for key in list(sel.get_map().values()):
            sel.unregister(key.fd)
            os.close(key.fd)
        sel.close()


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything; False once the reader is gone (the log still gets every byte)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        except (BrokenPipeError, OSError):
            return False
        view = view[n:]
    return True


def _fileno(stream: object) -> int | None:
    try:
        return int(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None


def _mirror_terminal(real: int, slave: int) -> None:
    """Give the pty the real terminal's size, and pass bytes through untranslated."""
    import fcntl
    import termios

    with contextlib.suppress(OSError):
        size = fcntl.ioctl(real, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
    with contextlib.suppress(termios.error):
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.ONLCR  # no \n -> \r\n: the logs get the child's exact bytes
        termios.tcsetattr(slave, termios.TCSANOW, attrs)


@contextlib.contextmanager
def _resize_forwarding(pairs: list[tuple[int, int | None]]) -> Iterator[None]:
    """Pass terminal resizes (SIGWINCH) on to the child's pseudo-terminals."""
    ptys = [(fd, echo) for fd, echo in pairs if echo is not None and os.isatty(echo)]
    if not ptys:
        yield
        return
    import fcntl
    import termios

    def resize(_signum: int, _frame: FrameType | None) -> None:
        for fd, echo in ptys:
            with contextlib.suppress(OSError):
                size = fcntl.ioctl(echo, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(fd, termios.TIOCSWINSZ, size)

    old = signal.signal(signal.SIGWINCH, resize)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, old)
