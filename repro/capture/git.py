"""Git: the state of the work tree, patches, commit diffs and worktrees.

The only GitPython user. The `repro run` hot path (status, patch, remote) calls the git binary
directly: importing GitPython costs ~110 ms, most of repro's whole overhead budget, and it would
shell out to the same binary anyway. GitPython serves the off-hot-path work (commit diffs for
`diff`, worktrees for `replay`). What can be read from the repository's files without a
process (remotes, HEAD's commit time, the index) is capture/gitfiles.py. Never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors
from repro.capture import gitfiles


@dataclasses.dataclass(frozen=True)
class Dirt:
    path: str
    state: str  # "modified", "staged", "untracked", "deleted", "renamed", "conflict"


@dataclasses.dataclass(frozen=True)
class TreeState:
    commit: str
    branch: str | None
    dirt: tuple[Dirt, ...]
    # Submodules git status reports as changed: path -> its "S<c><m><u>" field.
    submodule_flags: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def dirty(self) -> bool:
        return bool(self.dirt)

    @property
    def untracked(self) -> list[str]:
        return [d.path for d in self.dirt if d.state == "untracked"]


def _git(root: Path, *args: str, check: bool = True, text: bool = True) -> Any:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=text,
                              env=env, timeout=120)
    except FileNotFoundError as e:
        raise errors.GitError("git is not installed or not on PATH",
                              hint="install git; repro records the commit of every run") from e
    if check and done.returncode != 0:
        err = done.stderr if text else done.stderr.decode(errors="replace")
        first = (err.strip().splitlines() or ["(no message)"])[-1]
        raise errors.GitError(f"git {args[0]} failed in {root}: {first}")
    return done


# `git status` started by repro.cli.main before the run's imports (see prestart_status).
_EARLY: dict[Path, subprocess.Popen[bytes]] = {}


def prestart_status() -> None:
    """Start `git status` for the work tree around the current directory now: `repro run` then imports its
    modules (~40 ms on one core) while git works on the other. The run's start_status takes
    it over; discard_early drops one no run took. Never raises (start_status reports)."""
    with contextlib.suppress(OSError, errors.GitError):
        here = Path.cwd().resolve()
        root = next((c for c in (here, *here.parents) if (c / ".git").exists()), None)
        if root is not None and root not in _EARLY:
            _EARLY[root] = start_status(root)


def discard_early() -> None:
    """Drop a pre-started `git status` no run took (a run refused before its pre-flight): a
    later run in this process must see the tree as it is then."""
    while _EARLY:
        _, proc = _EARLY.popitem()
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            proc.kill()
            proc.communicate(timeout=10)


def start_status(root: Path) -> subprocess.Popen[bytes]:
    """Begin `git status` in the background so other pre-flight work can overlap with it."""
    early = _EARLY.pop(root, None)
    if early is not None:
        return early
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        return subprocess.Popen(
            ["git", "status", "--porcelain=v2", "-z", "--branch", "--untracked-files=all"],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    except FileNotFoundError as e:
        raise errors.GitError("git is not installed or not on PATH",
                              hint="install git; repro records the commit of every run") from e


def finish_status(proc: subprocess.Popen[bytes], root: Path) -> TreeState:
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        first = (err.decode(errors="replace").strip().splitlines() or ["(no message)"])[-1]
        raise errors.GitError(f"git status failed in {root}: {first}")
    return parse_status(out)


def status(root: Path) -> TreeState:
    return finish_status(start_status(root), root)


_STATES = {"M": "modified", "T": "modified", "A": "added", "D": "deleted", "R": "renamed",
           "C": "copied"}


def parse_status(raw: bytes) -> TreeState:
    """Parse `git status --porcelain=v2 -z --branch` output."""
    commit, branch = "", None
    dirt: list[Dirt] = []
    subs: dict[str, str] = {}
    records = raw.decode("utf-8", errors="surrogateescape").split("\0")
    i = 0
    while i < len(records):
        rec = records[i]
        i += 1
        if not rec:
            continue
        if rec.startswith("# branch.oid "):
            commit = rec.split(" ", 2)[2]
        elif rec.startswith("# branch.head "):
            head = rec.split(" ", 2)[2]
            branch = None if head == "(detached)" else head
        elif rec.startswith("1 "):
            parts = rec.split(" ", 8)
            dirt.append(Dirt(parts[8], _xy_state(parts[1])))
            if parts[2].startswith("S"):
                subs[parts[8]] = parts[2]
        elif rec.startswith("2 "):
            parts = rec.split(" ", 9)
            dirt.append(Dirt(parts[9], "renamed"))
            i += 1  # the original path follows as its own record
        elif rec.startswith("u "):
            dirt.append(Dirt(rec.split(" ", 10)[10], "conflict"))
        elif rec.startswith("? "):
            dirt.append(Dirt(rec[2:], "untracked"))
    if commit in ("", "(initial)"):
        raise errors.NotAGitRepoError(
            "the git repository has no commits yet",
            hint="commit your code first: repro records the commit every run came from",
        )
    return TreeState(commit=commit, branch=branch, dirt=tuple(dirt), submodule_flags=subs)


def _xy_state(xy: str) -> str:
    staged, unstaged = xy[0], xy[1]
    if unstaged != ".":
        return "deleted" if unstaged == "D" else "modified"
    return "staged" if staged in "MTARC" else _STATES.get(staged, "modified")


class _Read:
    """A value read from the repository's files, where a git process would have said the same."""

    def __init__(self, value: Any) -> None:
        self.value = value


def start_remote(root: Path) -> subprocess.Popen[str] | _Read:
    """Begin reading the remote URLs in the background (see finish_remote).

    Read from the config files when they are plain (no process: each one costs a fork and
    an exec on `repro run`'s critical path), else from `git config`.
    """
    urls = gitfiles.read_remotes(root)
    if urls is not None:
        return _Read(urls)
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    return subprocess.Popen(["git", "config", "--get-regexp", r"^remote\..*\.url$"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)


def finish_remote(proc: subprocess.Popen[str] | _Read) -> str | None:
    """The URL of `origin` (else the first remote), credentials stripped; None without one."""
    if isinstance(proc, _Read):
        pairs: list[tuple[str, str]] = proc.value
    else:
        out, _ = proc.communicate(timeout=60)
        pairs = [(key, url) for key, _, url in (line.partition(" ") for line in out.splitlines())]
    urls: dict[str, str] = {}
    for key, url in pairs:
        urls[key[len("remote."):-len(".url")]] = url.strip()
    if not urls:
        return None
    return strip_credentials(urls.get("origin") or next(iter(urls.values())))


def start_commit_time(root: Path) -> subprocess.Popen[str] | _Read | None:
    """Begin reading HEAD's committer timestamp in the background (see finish_commit_time).

    Read from HEAD's loose commit object when it is one (no process), else one more process
    overlapped with `git status`, not a GitPython call: `repro run` start-up is performance
    critical. None when git cannot start (finish_status reports that).
    """
    known = gitfiles.read_commit_time(root)
    if known is not None:
        return _Read(known)
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        return subprocess.Popen(["git", "show", "-s", "--no-show-signature", "--format=%ct",
                                 "HEAD", "--"], cwd=root, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env=env)
    except OSError:
        return None


def finish_commit_time(proc: subprocess.Popen[str] | _Read | None) -> int | None:
    """HEAD's commit time in seconds since the epoch (`git show -s --format=%ct`); None when
    unknown (no commit yet, git failed). Never raises: the time is a convenience."""
    if proc is None:
        return None
    if isinstance(proc, _Read):
        value: int = proc.value
        return value
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    text = out.strip()
    return int(text) if proc.returncode == 0 and text.isdigit() else None


# Every `scheme://` URL anywhere in a value (PIP_EXTRA_INDEX_URL holds several, separated by
# spaces): its `user:password@` and its query string and fragment (signed URLs carry tokens
# there) are dropped. The hook (repro/child/hook/_repro_hook_probe.py, standard library only)
# carries a copy of these two patterns; tests/test_git.py holds the two to the same results.
_USERINFO_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")
_QUERY_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^?#\s]*)[?#]\S*")
# Scheme-less `user:password@host[:path]` (scp-style, DSNs): the password goes, the user stays.
_SCP_RE = re.compile(r"(^|[\s=,;'\"(])([^\s:@/=,;'\"(]+):(?!//)[^\s]*@")


def strip_credentials(value: str) -> str:
    """Drop credentials and query strings from every URL in `value`; never raises.

    scp-like `git@host:org/repo.git` keeps its user: it names an ssh account, not a secret;
    `user:password@host:/path` keeps the user and loses the password.
    """
    if "://" in value:
        value = _QUERY_RE.sub(r"\1", _USERINFO_RE.sub(r"\1", value))
    if "@" in value:
        value = _SCP_RE.sub(r"\1\2@", value)
    return value


def patch(root: Path) -> bytes:
    """Staged + unstaged changes against HEAD, binary-safe: `git apply` rebuilds the tree."""
    # Submodules are recorded on their own (commit, patch): a `Subproject commit …-dirty`
    # line here would say they changed without saying how.
    return bytes(_git(root, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff",
                      "--ignore-submodules=all", text=False).stdout)


def tracked(root: Path, paths: Sequence[str]) -> set[str]:
    """Those of `paths` (relative to root) that git tracks, or that contain tracked files."""
    if not paths:
        return set()
    out = _git(root, "ls-files", "-z", "--", *paths).stdout
    files = [f for f in out.split("\0") if f]
    hit = set()
    for p in paths:
        prefix = p.rstrip("/") + "/"
        if any(f == p or f.startswith(prefix) for f in files):
            hit.add(p)
    return hit


def is_tracked(root: Path, path: str) -> bool:
    if gitfiles.in_index(root, path):  # the common case, without starting git (before every run)
        return True
    return bool(_git(root, "ls-files", "--error-unmatch", "--", path, check=False).returncode == 0)


def changed_files(root: Path, a: str, b: str) -> list[tuple[str, str]]:
    """(status letter, path) for each file that differs between commits a and b.

    The git binary with NUL-separated names, not GitPython: a tracked file name that is not
    UTF-8 made GitPython fail in a reader thread and list nothing. Such a name is listed
    with its undecodable bytes escaped (`caf\\xe9.txt`), as are control characters.
    """
    if a == b:
        return []
    if a.startswith("-") or b.startswith("-"):  # from a manifest: never an option to git
        raise errors.GitError(f"cannot compare commits {a[:12]!r} and {b[:12]!r}: not commit ids")
    done = _git(root, "diff-tree", "-r", "-z", "--name-status", "-M", a, b, "--",
                check=False, text=False)
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines() or ["(no message)"]
        raise errors.GitError(f"cannot compare commits {a[:12]} and {b[:12]}: {err[-1]}",
                              hint="the commit may be missing from this clone: `git fetch`")
    fields = done.stdout.split(b"\0")
    out = []
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i].decode("ascii", "replace")
        # Renames and copies (R100, C75) name the old and the new path; the new one is shown.
        width = 2 if status[:1] in ("R", "C") else 1
        names = fields[i + 1:i + 1 + width]
        i += 1 + width
        if not names:
            break
        out.append((status[:1] or "M", _display_name(names[-1])))
    return sorted(out, key=lambda x: x[1])


def _display_name(raw: bytes) -> str:
    from repro.record import bounded

    return bounded.escape(raw.decode("utf-8", "surrogateescape"))


def has_commit(root: Path, sha: str) -> bool:
    return bool(_git(root, "cat-file", "-e", f"{sha}^{{commit}}", check=False).returncode == 0)


def resolve_rev(root: Path, rev: str) -> str:
    done = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if done.returncode != 0:
        raise errors.GitError(f"{rev!r} is not a commit in {root}",
                              hint="give a branch, tag or commit id that exists here")
    return str(done.stdout.strip())


def add_worktree(root: Path, dest: Path, commit: str) -> None:
    """A detached worktree of `commit` at `dest`; the user's tree and index are untouched."""
    repo = _repo(root)
    import git

    try:
        repo.git.worktree("add", "--detach", "--force", str(dest), commit)
    except git.GitCommandError as e:
        raise errors.GitError(f"cannot create a worktree of {commit[:12]}: {_last_line(e)}",
                              hint="the commit may be missing from this clone: `git fetch`") from e


def remove_worktree(root: Path, dest: Path) -> None:
    repo = _repo(root)
    import git

    try:
        repo.git.worktree("remove", "--force", str(dest))
    except git.GitCommandError:
        import shutil

        shutil.rmtree(dest, ignore_errors=True)  # then git forgets it
        repo.git.worktree("prune")


def apply_patch(worktree: Path, patch_file: Path) -> None:
    done = _git(worktree, "apply", "--whitespace=nowarn", "--binary", str(patch_file), check=False)
    if done.returncode != 0:
        raise errors.ReplayError(f"the recorded patch does not apply: {done.stderr.strip()}",
                                 hint="the patch file may be damaged")


def _repo(root: Path) -> Any:
    import git

    try:
        return git.Repo(root)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
        raise errors.NotAGitRepoError(f"{root} is not a git repository") from e


def _last_line(e: BaseException) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(e).__name__


# ---------------------------------------------------------------------------- submodules

@dataclasses.dataclass(frozen=True)
class Submodule:
    path: str  # relative to the superproject's root
    commit: str  # the commit checked out in it (the gitlink's when not checked out)
    state: str  # "clean", "modified" (new commits or changed files), "uninitialized"
    new_commit: bool = False  # its checked-out commit differs from the superproject's gitlink
    modified: bool = False  # tracked files changed
    untracked: bool = False  # untracked files


def submodules(root: Path, state: TreeState) -> tuple[Submodule, ...]:
    """Every submodule of the work tree with its commit and state; () without .gitmodules."""
    if not (root / ".gitmodules").is_file():
        return ()
    out = _git(root, "submodule", "status").stdout
    found = []
    for line in out.splitlines():
        if len(line) < 42:
            continue
        flag, sha, rest = line[0], line[1:41], line[42:]
        path = rest.rsplit(" (", 1)[0] if rest.endswith(")") else rest
        flags = state.submodule_flags.get(path, "")
        new_commit = flag == "+" or "C" in flags
        modified, untracked = "M" in flags, "U" in flags
        if flag == "-":
            kind = "uninitialized"
        elif new_commit or modified or untracked:
            kind = "modified"
        else:
            kind = "clean"
        found.append(Submodule(path, sha, kind, new_commit, modified, untracked))
    return tuple(found)


def submodule_patch(root: Path, path: str) -> bytes:
    """Changes to tracked files inside a submodule, against its checked-out commit."""
    return patch(root / path)


def submodule_untracked(root: Path, path: str) -> list[str]:
    """Untracked, non-ignored files inside a submodule, relative to the superproject."""
    out = _git(root / path, "ls-files", "--others", "--exclude-standard", "-z").stdout
    return [f"{path}/{f}" for f in out.split("\0") if f]


def populate_submodules(root: Path, worktree: Path,
                        recorded: Sequence[tuple[str, str | None, Path | None]]) -> list[str]:
    """Check out the submodules of a replay worktree from this clone's own copies (no network).

    `recorded` is (path, commit, patch file) per submodule the run recorded; a submodule of
    the worktree's commit that the run did not record is checked out at its gitlink. Each is a
    `--shared` clone of the superproject's copy of the submodule (objects borrowed, nothing
    written to the user's repository), detached at the commit, with the recorded patch applied.
    Returns the paths populated.
    """
    if not (worktree / ".gitmodules").is_file():
        return []
    want: dict[str, tuple[str | None, Path | None]] = {}
    for line in _git(worktree, "submodule", "status").stdout.splitlines():
        if len(line) >= 42:
            rest = line[42:]
            want[rest.rsplit(" (", 1)[0] if rest.endswith(")") else rest] = (line[1:41], None)
    for path, commit, patch_file in recorded:
        if path in want:
            want[path] = (commit or want[path][0], patch_file)
    names = _submodule_names(worktree)
    done = []
    for path, (commit, patch_file) in want.items():
        source = _submodule_git_dir(root, path, names.get(path, path))
        if source is None:
            raise errors.ReplayError(
                f"submodule {path} is not checked out in this clone, so the replay cannot "
                "rebuild it without the network",
                hint=f"run `git submodule update --init {path}` and try again")
        dest = worktree / path
        dest.mkdir(parents=True, exist_ok=True)
        _git(worktree, "clone", "--shared", "--no-checkout", "--quiet", str(source), str(dest))
        if commit:
            done_co = _git(dest, "checkout", "--quiet", "--detach", commit, check=False)
            if done_co.returncode != 0:
                raise errors.ReplayError(
                    f"commit {commit[:12]} of submodule {path} is not in this clone",
                    hint=f"fetch it: `git -C {path} fetch`")
        if patch_file is not None:
            applied = _git(dest, "apply", "--whitespace=nowarn", "--binary", str(patch_file),
                           check=False)
            if applied.returncode != 0:
                raise errors.ReplayError(
                    f"the recorded patch of submodule {path} does not apply: "
                    f"{applied.stderr.strip()}", hint="the patch file may be damaged")
        done.append(path)
        # Its own submodules, at their gitlinks, from the checkout's nested copies.
        done += [f"{path}/{p}" for p in populate_submodules(root / path, dest, [])]
    return done


def _submodule_names(root: Path) -> dict[str, str]:
    """path -> name, from .gitmodules."""
    done = _git(root, "config", "-f", ".gitmodules", "-z", "--get-regexp", r"^submodule\..*\.path$",
                check=False)
    names = {}
    for entry in done.stdout.split("\0"):
        key, _, value = entry.partition("\n")
        if key.startswith("submodule.") and key.endswith(".path"):
            names[value] = key[len("submodule."):-len(".path")]
    return names


def _submodule_git_dir(root: Path, path: str, name: str) -> Path | None:
    """Where this clone keeps the submodule's repository (absorbed or in its directory)."""
    if (root / path / ".git").exists():
        done = _git(root / path, "rev-parse", "--absolute-git-dir", check=False)
        if done.returncode == 0:
            return Path(done.stdout.strip())
    common = _git(root, "rev-parse", "--path-format=absolute", "--git-common-dir", check=False)
    if common.returncode == 0:
        candidate = Path(common.stdout.strip()) / "modules" / name
        if (candidate / "HEAD").is_file():
            return candidate
    return None


def prune_worktrees(root: Path) -> None:
    """Forget worktrees whose directories are gone (a replay killed before its cleanup)."""
    _git(root, "worktree", "prune", check=False)
