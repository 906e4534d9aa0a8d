"""The repository's own files, read without starting git: where the git directory is, the
remote URLs in the config files, HEAD's commit time, whether a path is in the index.

Each reader answers only what it fully understands and returns None (or False) otherwise, and
the caller in capture/git.py then asks the git binary: on `repro run`'s hot path every process
saved is a fork and an exec. Never prints, never raises, never imports GitPython.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

# GIT_* variables that change neither where the repository is nor what its config says: with
# any other one set (GIT_DIR, GIT_CONFIG_*, GIT_NAMESPACE, ...), git itself is asked.
_HARMLESS_GIT_ENV = frozenset({
    "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE", "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_DATE", "GIT_CONFIG_NOSYSTEM", "GIT_OPTIONAL_LOCKS",
    "GIT_TERMINAL_PROMPT", "GIT_ASKPASS", "GIT_EDITOR", "GIT_PAGER", "GIT_SSH",
    "GIT_SSH_COMMAND", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "GIT_SSL_NO_VERIFY"})


def git_dirs(root: Path) -> tuple[Path, Path] | None:
    """(git dir, common dir) of the work tree at `root`, read from `.git` without a process;
    None when git's own answer could differ (variables, an unusual layout)."""
    if any(k.startswith("GIT_") and k not in _HARMLESS_GIT_ENV for k in os.environ):
        return None
    dot = root / ".git"
    try:
        if dot.is_dir():
            gitdir = dot
        else:
            line = dot.read_text(encoding="utf-8").strip()
            if not line.startswith("gitdir: ") or "\n" in line:
                return None
            gitdir = root / line[len("gitdir: "):]
        common = gitdir
        if (gitdir / "commondir").exists():
            common = gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError):
        return None
    return gitdir, common


_SECTION_RE = re.compile(r'\[\s*([A-Za-z0-9.-]+)\s*(?:"([^"\\]*)")?\s*\]\s*(?:[#;].*)?')


def config_urls(text: str) -> list[tuple[str, str]] | None:
    """`remote.<name>.url` entries of one config file, as `git config --get-regexp` prints
    them; None for anything this small reader does not fully understand (includes, quoted
    or escaped values, continued lines): git is asked then."""
    found: list[tuple[str, str]] = []
    section = subsection = None
    # git skips a UTF-8 byte order mark and ends lines at \n only (\r\n as one).
    for raw in text.removeprefix("\ufeff").split("\n"):
        raw = raw.removesuffix("\r")
        if any(c.isspace() and c not in " \t" for c in raw):
            return None  # a lone CR, a form feed, a Unicode space: git's own reading
        line = raw.strip(" \t")
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            return None
        if line.startswith("["):
            m = _SECTION_RE.fullmatch(line)
            if m is None or "." in m.group(1):
                return None
            section, subsection = m.group(1).lower(), m.group(2)
            if section in ("include", "includeif"):
                return None
            continue
        if section != "remote":
            continue
        key, eq, value = line.partition("=")
        if key.strip().lower() != "url":
            continue
        if not eq or subsection is None or '"' in value or "\\" in value:
            return None
        # Inside a value git makes each tab one space.
        value = value.split("#", 1)[0].split(";", 1)[0].strip(" \t").replace("\t", " ")
        found.append((f"remote.{subsection}.url", value))
    return found


def read_remotes(root: Path) -> list[tuple[str, str]] | None:
    """Every `remote.*.url` in the files `git config` reads, in its order; None: ask git."""
    dirs = git_dirs(root)
    home = os.environ.get("HOME")
    git_bin = shutil.which("git")
    # git's system file is /etc/gitconfig for a git installed in /usr; another prefix has
    # its own, so ask that git.
    if dirs is None or not home or git_bin is None or os.path.dirname(git_bin) not in (
            "/usr/bin", "/bin"):
        return None
    gitdir, common = dirs
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files = [Path(xdg) / "git" / "config", Path(home) / ".gitconfig", common / "config"]
    if os.environ.get("GIT_CONFIG_NOSYSTEM", "").lower() in ("", "0", "false", "no", "off"):
        files.insert(0, Path("/etc/gitconfig"))
    if (gitdir / "config.worktree").exists():
        return None
    found: list[tuple[str, str]] = []
    for f in files:
        try:
            text = f.read_bytes().decode("utf-8")  # as written: no newline translation
        except FileNotFoundError:
            continue
        except (OSError, UnicodeError):
            return None
        urls = config_urls(text)
        if urls is None:
            return None
        found += urls
    return found


def read_commit_time(root: Path) -> int | None:
    """HEAD's committer time from its loose commit object; None: ask git (packed objects,
    packed or symbolic refs it cannot follow, replace refs, grafts, a reftable)."""
    import zlib

    dirs = git_dirs(root)
    if dirs is None:
        return None
    gitdir, common = dirs
    try:
        replace = common / "refs" / "replace"
        if ((replace.is_dir() and any(replace.iterdir())) or (common / "info" / "grafts").exists()
                or (common / "reftable").exists()):
            return None
        if (common / "packed-refs").exists() and \
                b"refs/replace/" in (common / "packed-refs").read_bytes():
            return None
        head = (gitdir / "HEAD").read_text(encoding="ascii").strip()
        if head.startswith("ref: "):
            ref = head[len("ref: "):]
            if not ref.startswith("refs/heads/") or ".." in ref:
                return None
            try:
                sha = (common / ref).read_text(encoding="ascii").strip()
            except FileNotFoundError:
                return None  # packed, or an unborn branch: git knows
        else:
            sha = head
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
            return None
        try:
            raw = (common / "objects" / sha[:2] / sha[2:]).read_bytes()
        except FileNotFoundError:
            return None  # packed
        body = zlib.decompress(raw)
    except (OSError, UnicodeError, zlib.error):
        return None
    header, _, body = body.partition(b"\0")
    if not header.startswith(b"commit "):
        return None
    for line in body.split(b"\n"):
        if not line:
            break
        if line.startswith(b"committer "):
            m = re.search(rb"> (\d+) [+-]\d{4}$", line)
            return int(m.group(1)) if m else None
    return None


INDEX_READ_MAX = 8 * 1024 * 1024  # a larger index is left to git


def in_index(root: Path, path: str) -> bool:
    """True when git's index (version 2 or 3) has a stage-0 entry named `path`.

    False means "not known here" (another index version, a split index, a worktree's
    `.git` file, a large index): the caller asks git. An entry is its flags (whose low 12
    bits hold the name's length; v3 may add 2 bytes of extended flags) then the name and a NUL.
    """
    index = root / ".git" / "index"
    try:
        if index.stat().st_size > INDEX_READ_MAX:
            return False
        data = index.read_bytes()
    except OSError:
        return False
    if data[:4] != b"DIRC" or int.from_bytes(data[4:8], "big") not in (2, 3):
        return False
    name = path.encode("utf-8", "surrogateescape") + b"\0"
    length = min(len(name) - 1, 0xFFF)
    at = data.find(name, 12)
    while at >= 0:
        for flags_at, extended in ((at - 2, False), (at - 4, True)):
            if flags_at < 12:
                continue
            flags = int.from_bytes(data[flags_at:flags_at + 2], "big")
            if (flags & 0xFFF == length and bool(flags & 0x4000) == extended
                    and flags & 0x3000 == 0):
                return True
        at = data.find(name, at + 1)
    return False
