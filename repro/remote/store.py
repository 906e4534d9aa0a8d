"""A remote store: where it is (URL, named remotes), what it can do, and the `file://` backend.

A backend stores opaque objects under keys (`runs/<id>/manifest.yaml`, `blobs/blake3/..`), and
every write is create-only: `put_*` returns False, and changes nothing, when the key exists.
Backends translate their own failures into `errors.RemoteError` (one message, one hint) and
count their requests and bytes (`Stats`) so that a push can say what it moved and tests and
the benchmark can check that a `diff` fetched only one run. Never prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from repro import errors
from repro.record import bounded, config

NAME_RE = config.REMOTE_NAME_RE
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
CHUNK = 1024 * 1024


@dataclasses.dataclass
class Stats:
    """What a backend did: requests by kind and bytes each way (thread-safe counters)."""

    requests: dict[str, int] = dataclasses.field(default_factory=dict)
    bytes_up: int = 0
    bytes_down: int = 0
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def count(self, kind: str, up: int = 0, down: int = 0) -> None:
        with self._lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
            self.bytes_up += up
            self.bytes_down += down

    def to_dict(self) -> dict[str, object]:
        with self._lock:
            return {"requests": dict(self.requests), "total_requests": sum(self.requests.values()),
                    "bytes_up": self.bytes_up, "bytes_down": self.bytes_down}


class Backend(Protocol):
    """The operations a remote store offers; keys are relative to the remote's root."""

    url: str  # as the user wrote it (never holds credentials: they are refused in URLs)
    stats: Stats

    def check(self) -> None:
        """One cheap request that fails with a clear RemoteError if the store cannot be used."""

    def list(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix` (which ends with '/'), in no particular order."""

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes; None if it does not exist."""

    def delete(self, key: str) -> None:
        """Remove the object (push replaces a damaged blob with it: a blob's key is its hash,
        so the new content is the one the key always meant)."""

    def put_bytes(self, key: str, data: bytes) -> bool:
        """Create `key` with `data`; False (and nothing written) if it already exists."""

    def put_file(self, key: str, path: Path) -> bool:
        """Create `key` with the file's content, streamed; False if it already exists."""

    def get_bytes(self, key: str, limit: int) -> bytes:
        """The object's content (at most `limit` bytes, else RemoteError); RemoteNotFound."""

    def get_file(self, key: str, dest: Path, limit: int) -> int:
        """Stream the object into the new file `dest`; its size. RemoteNotFound if absent;
        RemoteError (having written at most `limit` + 1 bytes) if it is over `limit` bytes."""


class RemoteNotFound(errors.RemoteError):
    """The key does not exist at the remote."""


@dataclasses.dataclass(frozen=True)
class Location:
    """A parsed remote: its name (`origin`, a configured name, or None for a bare URL)."""

    url: str
    scheme: str  # "s3" or "file"
    bucket: str = ""  # s3
    prefix: str = ""  # s3: key prefix without slashes at either end
    path: Path | None = None  # file
    name: str | None = None
    endpoint: str | None = None
    region: str | None = None

    @property
    def label(self) -> str:
        """How messages and the cache name it: `teammate (s3://b/p)` or the URL."""
        return f"{self.name} ({self.url})" if self.name else self.url


def parse_url(url: str, name: str | None = None, endpoint: str | None = None,
              region: str | None = None) -> Location:
    """`s3://bucket/prefix` or `file:///absolute/path`; credentials in a URL are refused."""
    hint = "give s3://BUCKET/PREFIX or file:///ABSOLUTE/PATH"
    if not url or "\0" in url or len(url) > 2048:
        raise errors.UsageError(f"{bounded.show_path(url, 120)!r} is not a remote URL", hint=hint)
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise errors.UsageError(
            "a remote URL must not hold credentials",
            hint="remove them from the URL: repro reads credentials only from the standard AWS "
                 "chain (environment, profile, instance role) and never writes them")
    if parts.query or parts.fragment:
        raise errors.UsageError(f"{url!r}: a remote URL takes no query or fragment", hint=hint)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET_RE.match(bucket):
            raise errors.UsageError(f"{url!r}: {bucket!r} is not an S3 bucket name",
                                    hint="bucket names are 3-63 lowercase letters, digits, "
                                         "dots and hyphens")
        prefix = parts.path.strip("/")
        if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
            raise errors.UsageError(f"{url!r}: empty, '.' or '..' part in the key prefix",
                                    hint=hint)
        return Location(url=url, scheme="s3", bucket=bucket, prefix=prefix, name=name,
                        endpoint=endpoint, region=region)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise errors.UsageError(f"{url!r}: file URLs name a path on this machine",
                                    hint="mount the shared filesystem and give file:///PATH")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise errors.UsageError(f"{url!r}: the path must be absolute", hint=hint)
        return Location(url=url, scheme="file", path=Path(path), name=name)
    raise errors.UsageError(f"{bounded.show_path(url, 120)!r} is not a remote URL "
                            "(s3:// or file://)", hint=hint)


def locate(spec: str | None, cfg: config.Config) -> Location:
    """The remote `--remote` names (a configured name or a URL), or the configured default."""
    remotes = {r.name: r for r in cfg.remotes}
    where = cfg.source or "repro.yaml"
    if spec is None or spec == "":
        if not remotes:
            raise errors.UsageError(
                "no remote configured",
                hint="give --remote s3://BUCKET/PREFIX (or file:///PATH), or set `remote` in "
                     "repro.yaml / [tool.repro]")
        if len(remotes) == 1:
            only = next(iter(remotes.values()))
        elif config.DEFAULT_REMOTE in remotes:
            only = remotes[config.DEFAULT_REMOTE]
        else:
            raise errors.UsageError(
                f"{where} names {len(remotes)} remotes and none is `{config.DEFAULT_REMOTE}`",
                hint="pick one with --remote NAME (" + ", ".join(sorted(remotes)) + ")")
        return parse_url(only.url, only.name, only.endpoint, only.region)
    if "://" in spec:
        return parse_url(spec)
    if spec in remotes:
        r = remotes[spec]
        return parse_url(r.url, r.name, r.endpoint, r.region)
    known = ", ".join(sorted(remotes)) or "none configured"
    raise errors.UsageError(f"no remote named {bounded.show_path(spec, 80)!r} ({known})",
                            hint="give a URL (s3://BUCKET/PREFIX, file:///PATH) or a name "
                                 "from `remote` in repro.yaml / [tool.repro]")


def open_backend(where: Location) -> Backend:
    """The backend for a location; s3 imports boto3 (lazily, only now)."""
    if where.scheme == "s3":
        from repro.remote import s3

        return s3.S3Backend(where)
    assert where.path is not None
    return FileBackend(where.url, where.path)


@contextlib.contextmanager
def workers(n: int) -> Iterator[ThreadPoolExecutor]:
    """A thread pool whose queued work is dropped when the block ends early (an error, a
    Ctrl-C): only the requests already in flight are waited for (bounded by the timeouts)."""
    pool = ThreadPoolExecutor(n)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def blob_key(digest: str) -> str:
    """`blake3:<hex>` -> `blobs/blake3/<hh>/<hex>`."""
    algo, _, hexdigest = digest.partition(":")
    if algo != "blake3" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise errors.RemoteError(f"{digest!r} is not a BLAKE3 hash",
                                 hint="the remote's run index is damaged")
    return f"blobs/blake3/{hexdigest[:2]}/{hexdigest}"


class FileBackend:
    """A store on a (shared) filesystem: NFS, Lustre, a mounted bucket.

    A write goes to a private temp file (O_EXCL) in the destination's directory, is fsynced,
    then linked into place: link(2) fails if the name exists, so a create is all-or-nothing and
    never replaces anything, on one machine or across NFS clients.
    """

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root
        self.stats = Stats()

    def _path(self, key: str) -> Path:
        return self.root / key

    def check(self) -> None:
        self.stats.count("check")
        try:
            ok = self.root.is_dir()
        except OSError as e:
            raise errors.RemoteError(f"cannot use {self.url}: {bounded.reason(e)}",
                                     hint="is the shared filesystem mounted?") from e
        if not ok:
            raise errors.RemoteError(f"{self.url}: {self.root} is not a directory",
                                     hint=f"create it (mkdir -p {self.root}) or mount the share")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise errors.RemoteError(f"{self.url}: no permission to read {self.root}",
                                     hint="ask its owner for access")

    def list(self, prefix: str) -> Iterator[str]:
        self.stats.count("list")
        base = self._path(prefix)
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, self.root)
            for name in files:
                if not name.startswith(".tmp-"):
                    yield f"{rel}/{name}" if rel != "." else name

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        self.stats.count("head")
        try:
            st = os.stat(self._path(key))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._error(key, e) from e
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def delete(self, key: str) -> None:
        self.stats.count("delete")
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._error(key, e) from e

    def put_bytes(self, key: str, data: bytes) -> bool:
        return self._put(key, lambda fd: _write_all(fd, data), len(data))

    def put_file(self, key: str, path: Path) -> bool:
        size = path.stat().st_size
        return self._put(key, lambda fd: _copy_into(fd, path), size)

    def _put(self, key: str, fill: object, size: int) -> bool:
        dest = self._path(key)
        self.stats.count("put", up=size)
        try:
            if dest.exists():
                return False
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.parent / f".tmp-{dest.name}.{os.getpid()}.{os.urandom(4).hex()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                try:
                    fill(fd)  # type: ignore[operator]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    os.link(tmp, dest)  # never replaces: EEXIST if someone was first
                except FileExistsError:
                    return False
                return True
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        except OSError as e:
            raise self._error(key, e) from e

    def get_bytes(self, key: str, limit: int) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise RemoteNotFound(f"{self.url}: {key} does not exist")
        data = bounded.read_bytes(path, limit, errors.RemoteError)
        self.stats.count("get", down=len(data))
        return data

    def get_file(self, key: str, dest: Path, limit: int) -> int:
        path = self._path(key)
        try:
            # O_NONBLOCK: a FIFO planted in the share must not block the open (refused below).
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except FileNotFoundError as e:
            raise RemoteNotFound(f"{self.url}: {key} does not exist") from e
        except OSError as e:
            raise self._error(key, e) from e
        total = 0
        with open(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # /dev/zero, a FIFO: never a blob
                raise errors.RemoteError(f"{self.url}: {key} is not a regular file",
                                         hint="the remote's copy is damaged")
            with open(dest, "xb") as out:
                while chunk := src.read(min(CHUNK, limit + 1 - total)):
                    out.write(chunk)
                    total += len(chunk)
                    if total > limit:
                        raise too_big(self.url, key, limit)
        self.stats.count("get", down=total)
        return total

    def _error(self, key: str, e: OSError) -> errors.RemoteError:
        hint = {errno.EACCES: "ask the share's owner for write access",
                errno.EROFS: "the share is mounted read-only",
                errno.ENOSPC: "the share is full",
                errno.EDQUOT: "your quota on the share is used up"}.get(
            e.errno or 0, "is the shared filesystem mounted and writable?")
        return errors.RemoteError(f"{self.url}: cannot write {key}: {bounded.reason(e)}",
                                  hint=hint)


def too_big(url: str, key: str, limit: int) -> errors.RemoteError:
    return errors.RemoteError(f"{url}: {key} is over the {limit} bytes its run index gives",
                              hint="the remote's copy is damaged")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_into(fd: int, path: Path) -> None:
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK):
            _write_all(fd, chunk)
