"""Spawn the child, tee its output to the terminal and the run logs, forward signals, map codes.

Owns the child process and the signal handlers around it; never prints anything of its own
(the bytes it writes to stdout/stderr are the child's).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import select
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from repro import errors

CHUNK = 64 * 1024
# After the child exits, a grandchild may still write to its output (a background job it
# started): keep copying until every writer is gone (EOF), but at most this long, so that a
# daemon holding the pipe open never keeps repro (and the run) from finishing.
DRAIN_MAX_S = 2.0
# After SIGTERM/SIGINT/SIGHUP reached repro, a child still alive this much later is killed
# (SIGKILL), as `timeout -k` does; `--kill-after` overrides it, 0 never escalates.
KILL_AFTER_S = 30.0
FORCE_AFTER_SIGNALS = 3  # this many SIGINT/SIGTERM/SIGHUP: SIGKILL without waiting
FORWARDED = (signal.SIGTERM, signal.SIGHUP)


@dataclasses.dataclass(frozen=True)
class ChildResult:
    exit_code: int  # what repro exits with: the child's code, or 128+N for signal N
    signal: str | None  # the signal that killed the child, by name
    interrupted: bool  # Ctrl-C, SIGTERM or SIGHUP reached repro while the child ran
    pid: int
    lost: tuple[str, ...] = ()  # what could not be kept (a log the disk refused), in words
    killed: bool = False  # repro escalated to SIGKILL after the grace period


class SignalGuard:
    """While active, SIGINT/SIGTERM/SIGHUP never kill repro: they are noted and forwarded.

    Ctrl-C at a terminal reaches the whole foreground process group, child included, so SIGINT
    is not forwarded again (a second KeyboardInterrupt would land in the child's cleanup).
    SIGTERM and SIGHUP are usually aimed at repro alone, so they are passed on to the child.
    A child still running `kill_after` seconds after the first signal is killed (SIGKILL),
    or at once at the third signal (unless `kill_after` is 0: never).
    """

    def __init__(self, kill_after: float | None = None) -> None:
        self.kill_after = KILL_AFTER_S if kill_after is None else kill_after
        self.received: list[int] = []
        self.first_at: float | None = None  # when the first signal arrived (monotonic)
        self.escalated = False
        self.child: subprocess.Popen[bytes] | None = None
        # Once the child is done, a signal stops repro's own remaining work instead (hashing
        # a 100 GB output must stay interruptible); the caller still writes the manifest.
        self.armed = False
        self._old: dict[int, object] = {}
        self._unsent: list[int] = []  # SIGTERM/SIGHUP that came before the child was attached

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.armed and self.child is None:
            raise KeyboardInterrupt
        if self.first_at is None:
            self.first_at = time.monotonic()
        if len(self.received) >= FORCE_AFTER_SIGNALS:
            self.first_at = -math.inf  # the user insists (Ctrl-C three times): kill it now
        child = self.child
        if signum not in FORWARDED:
            return
        if child is None:
            self._unsent.append(signum)  # the child may be starting: `attach` passes it on
        elif child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    def attach(self, child: subprocess.Popen[bytes]) -> None:
        """The child has started: from now on signals are forwarded to it, and a SIGTERM or
        SIGHUP that reached repro while it was being started is passed on now."""
        self.child = child
        while self._unsent:  # a signal arriving meanwhile is forwarded by _handle itself
            signum = self._unsent.pop(0)
            if child.poll() is None:
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

    def escalate(self) -> None:
        """SIGKILL the child once the grace period after the first signal has passed."""
        child = self.child
        if (child is None or self.escalated or self.first_at is None or self.kill_after <= 0
                or time.monotonic() - self.first_at < self.kill_after):
            return
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            self.escalated = True


def run_child(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], stdout_log: Path,
              stderr_log: Path, guard: SignalGuard, stdout_to_stderr: bool = False) -> ChildResult:
    """Run argv to completion. stdin is inherited; stdout/stderr are teed to the logs.

    When repro's own stdout/stderr is a terminal the child gets a pseudo-terminal there, so
    progress bars, colours and line buffering behave exactly as without repro. Nothing here
    abandons the child: a log the disk refuses stops (the output still passes through), and
    the child is always waited for.
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
    guard.attach(proc)
    dog = _Watchdog(proc.pid)
    logs = [_Log(stdout_log), _Log(stderr_log)]
    try:
        with _resize_forwarding([(r, echo) for r, _, echo in pipes]):
            _copy(proc, [(pipes[0][0], pipes[0][2], logs[0]), (pipes[1][0], pipes[1][2], logs[1])],
                  guard)
        rc = _wait(proc, guard)
    finally:
        for log in logs:
            log.close()
        dog.release()
    guard.child = None
    lost = tuple(log.error for log in logs if log.error)
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return ChildResult(128 - rc, name, guard.interrupted or rc == -signal.SIGINT, proc.pid,
                           lost, guard.escalated)
    return ChildResult(rc, None, guard.interrupted, proc.pid, lost, guard.escalated)


def _spawn(argv: Sequence[str], cwd: Path, env: Mapping[str, str], *, stdout: int,
           stderr: int) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=stdout, stderr=stderr,
                                close_fds=True)
    except FileNotFoundError as e:
        if not os.path.isdir(cwd):
            raise errors.ChildStartError(
                f"the working directory {cwd} does not exist",
                hint="the command must start in an existing directory",
                exit_code=errors.ExitCode.REFUSED) from e
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


class _Watchdog:
    """Ties the child's life to repro's: if repro dies (even by SIGKILL), the child is killed
    instead of running on orphaned with its exit code lost.

    A `sh` waiting on a pipe whose only write end repro holds: end of file without the
    "done" line means repro is gone, and it kills the child (that pid only, never a group).
    Not PR_SET_PDEATHSIG: setting it needs a pre-exec hook, which turns the spawn's vfork
    into a full fork and costs ~7 ms per run; this costs one small process off that path.
    """

    def __init__(self, pid: int) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.fd: int | None = None
        _reap_released()
        r, w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", f"trap '' INT; read _ || kill -KILL {pid} 2>/dev/null"],
                stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
            self.fd = w
        except OSError:
            os.close(w)
        finally:
            os.close(r)

    def release(self) -> None:
        """The child has been reaped: tell the watchdog to leave quietly.

        Not waited for (that would add its exit's scheduling latency to every run): it is
        reaped by the next watchdog's start, or by init once repro exits.
        """
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.fd, b"done\n")
            os.close(self.fd)
            self.fd = None
        if self.proc is not None:
            _RELEASED.append(self.proc)
            self.proc = None


_RELEASED: list[subprocess.Popen[bytes]] = []  # watchdogs told to leave, not yet reaped


def _reap_released() -> None:
    _RELEASED[:] = [p for p in _RELEASED if p.poll() is None]


def _wait(proc: subprocess.Popen[bytes], guard: SignalGuard) -> int:
    """Wait for the child (its pipes are closed, or a daemon holds them), escalating signals.

    A pidfd wakes the wait the moment the child exits; polling with sleeps would add its
    latency to every run.
    """
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            rc = proc.poll()
            if rc is not None:
                return rc
            if pidfd is not None:
                select.select([pidfd], [], [], 0.1)
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.1)
            guard.escalate()
    finally:
        if pidfd is not None:
            os.close(pidfd)


class _Log:
    """A run log written with plain writes; when the disk refuses (full, quota, file size
    limit, read-only) it stops and says so, and the run goes on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self.error: str | None = None
        self.fd: int | None
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as e:
            self.fd = None
            self.error = f"{path.name} could not be created ({e.strerror})"

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self.fd is not None:
            try:
                n = os.write(self.fd, view)
            except OSError as e:
                self.error = f"{self.path.name} stops after {self.written} bytes ({e.strerror})"
                self.close()
                return
            self.written += n
            view = view[n:]

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def _copy(proc: subprocess.Popen[bytes], channels: list[tuple[int, int | None, _Log]],
          guard: SignalGuard) -> None:
    """Copy each read end to its echo fd and log, in bounded chunks, until EOF.

    When repro's own output is gone (the reader of a pipe left, as `| head` does), that
    channel is closed, so the child gets SIGPIPE/EPIPE exactly as it would without repro.
    After the child exits, reading goes on until EOF, for at most DRAIN_MAX_S.
    """
    sel = selectors.DefaultSelector()
    for fd, echo, log in channels:
        sel.register(fd, selectors.EVENT_READ, [echo, log])
    exited_at: float | None = None
    try:
        while sel.get_map():
            events = sel.select(timeout=0.1)
            for key, _ in events:
                state = key.data
                echo, log = state
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
                failed = _write_all(echo, data) if echo is not None else None
                if failed is not None:
                    state[0] = None  # stop echoing; the log still gets every byte
                    if failed == errno.EPIPE:
                        # Nobody reads repro's output any more: let the child find out.
                        sel.unregister(key.fd)
                        os.close(key.fd)
            guard.escalate()
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            if exited_at is not None and time.monotonic() - exited_at > DRAIN_MAX_S:
                break
    finally:
        for key in list(sel.get_map().values()):
            sel.unregister(key.fd)
            os.close(key.fd)
        sel.close()


def _write_all(fd: int, data: bytes) -> int | None:
    """Write everything; the errno once that fails (EPIPE: the reader is gone), else None."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        except OSError as e:
            return e.errno or errno.EIO
        view = view[n:]
    return None


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
