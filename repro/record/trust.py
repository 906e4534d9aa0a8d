"""What "produced in this clone" means: a per-clone key and a keyed hash of each manifest.

A run directory can be committed into a repository (`git add -f .repro/runs/<id>`) and so
arrive in another clone looking like one of its own runs; replay and verify run the argv of a
manifest, so they must tell the two apart by something a commit cannot carry. The key is 32
random bytes in the clone's common git directory (shared by its worktrees, never committed,
created on first use with mode 0600); every manifest repro writes gets a tag beside it
(`manifest.yaml.tag`): keyed BLAKE3 over the manifest's bytes. Without the key a tag cannot be
made, so a committed or edited manifest is foreign.

The same key salts the hashes of secret argv values (see repro.record.redact). Reads only regular
files, bounded (a FIFO never blocks); never prints.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

KEY_FILE = "repro-key"  # in the common git directory
TAG_SUFFIX = ".tag"
_keys: dict[Path, bytes] = {}  # common git dir -> key: read once per process


def common_git_dir(root: Path) -> Path | None:
    """The git directory a clone's worktrees share, found without running git.

    `.git` is a directory in a plain clone; in a linked worktree (or submodule) it is a file
    `gitdir: X`, and X/commondir (when present) points at the shared directory.
    """
    dot_git = root / ".git"
    if dot_git.is_dir():
        return dot_git.resolve()
    try:
        text = dot_git.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir:"):
        return None
    gitdir = (root / text[len("gitdir:"):].strip()).resolve()
    try:
        common = (gitdir / "commondir").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return gitdir
    return (gitdir / common).resolve()


def key(root: Path, create: bool = True) -> bytes | None:
    """This clone's key (created on first use when `create`); None when there is none."""
    gitdir = common_git_dir(root)
    if gitdir is None:
        return None
    cached = _keys.get(gitdir)
    if cached is not None:
        return cached
    path = gitdir / KEY_FILE
    value = _read_key(path)
    if value is None and create:
        value = _create_key(path)
    if value is not None:
        _keys[gitdir] = value
    return value


def _read_key(path: Path) -> bytes | None:
    value = _read_small(path, 65)
    if value is None or len(value) != 32:
        return None
    with contextlib.suppress(OSError):
        if os.stat(path).st_mode & 0o077:  # readable by others: they could forge tags
            os.chmod(path, 0o600)
    return value


def _read_small(path: Path, limit: int) -> bytes | None:
    """The first `limit` bytes of the regular file `path`; None for anything else (a FIFO
    must not block the open, a device must not be read)."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, total = [], 0
        while total < limit:
            chunk = os.read(fd, limit - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _create_key(path: Path) -> bytes | None:
    """Write a fresh key to a private temp file and link it into place: whoever links first
    wins, and every other process reads the winner's key (never a half-written one)."""
    value = os.urandom(32)
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, value)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_key(path)
        return value
    except OSError:
        return None  # a read-only git directory: runs are recorded, but not marked as ours
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def tag_path(manifest_path: Path) -> Path:
    return manifest_path.with_name(manifest_path.name + TAG_SUFFIX)


def tag(secret: bytes, text: bytes) -> str:
    from repro.capture import hashing  # blake3 is loaded on every run anyway: no import cost

    return hashing.keyed_hash(secret, text)


def tag_text(secret: bytes, text: bytes, manifest_path: Path) -> str:
    """The tag file's new content: the tag of `text`, then the one of the manifest now there.

    The tag is written before the manifest; keeping the previous tag means a crash between
    the two renames leaves a manifest that still verifies.
    """
    lines = [tag(secret, text)]
    try:
        previous = (_read_small(tag_path(manifest_path), 1024) or b"").decode()
        previous = previous.partition("\n")[0].strip()
    except UnicodeDecodeError:
        previous = ""
    if previous and previous != lines[0]:
        lines.append(previous)
    return "\n".join(lines) + "\n"


def produced_here(manifest_path: Path, root: Path) -> bool:
    """Did repro write this manifest, byte for byte, in this clone (or one of its worktrees)?"""
    import hmac

    secret = key(root, create=False)
    if secret is None:
        return False
    from repro import errors
    from repro.record import bounded

    try:
        text = bounded.read_bytes(manifest_path, bounded.MANIFEST_MAX, errors.ManifestError)
        tags = (_read_small(tag_path(manifest_path), 1024) or b"").decode().split()
    except (errors.ManifestError, UnicodeDecodeError):
        return False
    expected = tag(secret, text)
    return any(hmac.compare_digest(expected.encode(), t.encode()) for t in tags)


def derived(root: Path, purpose: str) -> bytes | None:
    """A per-clone value for `purpose` (e.g. the salt of secret argv hashes), from the key."""
    secret = key(root)
    if secret is None:
        return None
    return bytes.fromhex(tag(secret, purpose.encode()).partition(":")[2])[:16]
