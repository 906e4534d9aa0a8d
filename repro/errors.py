"""Error types and exit codes: the only exceptions the core raises. Nothing here prints."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    DIFFERENT = 1  # diff: runs differ; verify: not reproduced; doctor: hazards found
    TROUBLE = 2  # read-only commands: bad reference, unreadable manifest, usage error
    BUG = 3  # an unexpected exception inside repro (traceback saved under .repro/)
    REFUSED = 125  # run/replay: repro refused or failed before/around the child
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127
    INTERRUPTED = 130


class ReproError(Exception):
    """An expected failure: printed as `error: <message>` and `hint: <hint>`, no traceback."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(ReproError):
    """The command line itself is wrong."""


class NotAGitRepoError(ReproError):
    """repro needs a git repository with at least one commit."""


class GitError(ReproError):
    """A git command failed."""


class DirtyTreeError(ReproError):
    """Uncommitted or untracked files would make the run irreproducible."""


class LockfileError(ReproError):
    """No lockfile, an unpinned or modified one, or installed packages that do not match it."""


class ConfigError(ReproError):
    """repro.yaml or [tool.repro] is malformed: names the key and the file."""


class ManifestError(ReproError):
    """A manifest is unreadable, truncated, of an unknown schema, or not plain data."""


class RunNotFoundError(ReproError):
    """A RUN reference matches no run, or more than one."""


class DataError(ReproError):
    """An input or output could not be hashed (unreadable, a symlink loop, vanished)."""


class ChildStartError(ReproError):
    """The command could not be started (not found, not executable)."""

    def __init__(self, message: str, hint: str | None, exit_code: ExitCode) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


class ReplayError(ReproError):
    """A run could not be rebuilt (paths escaping the worktree, changed inputs, refused)."""


class HookError(ReproError):
    """The in-process hook reported a failure that repro must surface."""


class StoreError(ReproError):
    """The run record cannot be written (disk full, quota, read-only file system)."""


class ExportError(ReproError):
    """Runs could not be exported (client missing, server unreachable, credentials refused)."""


class RemoteError(ReproError):
    """A remote run store cannot be used: unreachable, refused credentials, no such bucket,
    a missing extra (boto3), or a downloaded file whose hash does not match."""
