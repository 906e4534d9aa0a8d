"""The conda environment a run used: its prefix, name, and every package in `conda-meta/`.

Owns finding the prefix (the command's interpreter's, else `CONDA_PREFIX`), the package list
and the manifest's `environment.conda` mapping, and the platform names conda-lock uses.
Must not: print, raise (an unreadable record is a package without a channel), run `conda`,
import PyYAML, or write a channel's credentials (`/t/<token>/`, `user:pass@`) anywhere.

Cost. Name, version and build come from the record file names (`<name>-<version>-<build>.json`:
neither a version nor a build string may contain `-`), one `listdir`, so the lock check before
the run costs well under a millisecond. The channel is inside each record, which can be
megabytes (conda lists every file with its hash): `read_channels` reads only the first 8 KiB
of each (conda writes its keys sorted, and `channel` is the third), falling back to a full,
bounded parse for a writer that orders them otherwise. `repro run` does that while the
command runs.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from typing import Any, NamedTuple

from repro.record import bounded

META = "conda-meta"
RECORD_MAX = 64 * 1024 * 1024  # one conda-meta record (cudatoolkit's lists ~30k files)
_HEAD = 8192
_CHANNEL_PATTERN = rb'"channel"\s*:\s*"((?:[^"\\]|\\.)*)"'  # compiled where used: off the hot path
_SUBDIRS = ("linux-64", "linux-aarch64", "linux-ppc64le", "linux-s390x", "linux-32",
            "linux-armv7l", "osx-64", "osx-arm64", "win-64", "win-32", "win-arm64", "noarch")
_HOSTED = ("https://conda.anaconda.org/", "http://conda.anaconda.org/",
           "https://repo.anaconda.com/", "http://repo.anaconda.com/")


class Prefix(NamedTuple):  # not a dataclass: creating one costs ~0.5 ms of every run's start
    path: str  # absolute
    name: str  # CONDA_DEFAULT_ENV when it is the active one, `base`, else the folder's name
    source: str  # "interpreter" | "CONDA_PREFIX"


Package = tuple[str, str]  # (version, build)


def find_prefix(executable: str | None, env: Mapping[str, str]) -> Prefix | None:
    """The conda environment of the interpreter `executable` (`<prefix>/bin/python`, or a venv
    made from one: its `pyvenv.cfg` names the conda `home`); with `executable` None (the
    command runs no Python repro can name), the active one (`CONDA_PREFIX`). None when there
    is none: an active conda environment says nothing about a venv's interpreter."""
    candidates: list[tuple[str, str]] = []
    if executable:
        bindir = os.path.dirname(os.path.abspath(executable))
        candidates.append((os.path.dirname(bindir), "interpreter"))
        home = _venv_home(os.path.dirname(bindir))
        if home:
            candidates.append((os.path.dirname(home.rstrip("/")), "interpreter"))
        real = os.path.dirname(os.path.dirname(os.path.realpath(executable)))
        candidates.append((real, "interpreter"))
    elif env.get("CONDA_PREFIX"):
        candidates.append((env["CONDA_PREFIX"], "CONDA_PREFIX"))
    for path, source in candidates:
        if os.path.isdir(os.path.join(path, META)):
            path = os.path.abspath(path)
            return Prefix(path=path, name=_name(path, env), source=source)
    return None


def _venv_home(prefix: str) -> str | None:
    head = bounded.read_head(os.path.join(prefix, "pyvenv.cfg"), _HEAD)
    if head is None:
        return None
    for line in head.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "home":
            return value.strip()
    return None


def _name(path: str, env: Mapping[str, str]) -> str:
    active = env.get("CONDA_PREFIX")
    if active and env.get("CONDA_DEFAULT_ENV") and _same(active, path):
        return os.path.basename(env["CONDA_DEFAULT_ENV"].rstrip("/")) or "base"
    if os.path.isdir(os.path.join(path, "condabin")):  # only the base installation has it
        return "base"
    return os.path.basename(path.rstrip("/")) or path


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def installed(prefix: str) -> dict[str, Package]:
    """name -> (version, build) of every package in `<prefix>/conda-meta`, from file names."""
    try:
        names = os.listdir(os.path.join(prefix, META))
    except OSError:
        return {}
    out: dict[str, Package] = {}
    for file_name in names:
        parsed = parse_record_name(file_name)
        if parsed is not None:
            out[parsed[0]] = (parsed[1], parsed[2])
    return dict(sorted(out.items()))


def parse_record_name(file_name: str) -> tuple[str, str, str] | None:
    """`libstdcxx-ng-13.2.0-hc0a3c3a_7.json` -> (libstdcxx-ng, 13.2.0, hc0a3c3a_7)."""
    if not file_name.endswith(".json"):
        return None
    stem = file_name[:-5]
    name, _, rest = stem.rpartition("-")
    name, _, version = name.rpartition("-")
    if not name or not version or not rest:
        return None
    return name, version, rest


def read_channels(prefix: str, packages: Mapping[str, Package]) -> dict[str, str | None]:
    """name -> channel (`conda-forge`, `pkgs/main`, or a URL without credentials) for each of
    `packages`; None where the record is unreadable or names none."""
    meta = os.path.join(prefix, META)
    return {name: _channel(os.path.join(meta, f"{name}-{version}-{build}.json"))
            for name, (version, build) in packages.items()}


def _channel(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > RECORD_MAX:
            return None
        head = os.read(fd, _HEAD)
        match = re.search(_CHANNEL_PATTERN, head)
        if match is None and len(head) == _HEAD:  # keys in another order: parse it whole
            chunks = [head]
            total = len(head)
            while total <= RECORD_MAX:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            return _channel_of(b"".join(chunks))
        if match is None:
            return _channel_of(head)
        try:
            value = json.loads(b'"' + match.group(1) + b'"')
        except ValueError:
            return None
        return clean_channel(value) if isinstance(value, str) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _channel_of(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    value = doc.get("channel") or doc.get("schannel")
    return clean_channel(value) if isinstance(value, str) and value else None


def clean_channel(value: str) -> str:
    """A channel as people name it: `https://conda.anaconda.org/conda-forge/linux-64` ->
    `conda-forge`, `https://repo.anaconda.com/pkgs/main/noarch` -> `pkgs/main`; another URL
    keeps its host, never a token (`/t/<token>/`) or a password."""
    from repro.capture.git import strip_credentials

    text = value.strip().rstrip("/")
    text = re.sub(r"/t/[^/]+", "", text)  # anaconda.org tokens
    for subdir in _SUBDIRS:
        if text.endswith("/" + subdir):
            text = text[: -len(subdir) - 1]
            break
    for hosted in _HOSTED:
        if text.startswith(hosted):
            return text[len(hosted):] or text
    return strip_credentials(text)


def section(prefix: Prefix, packages: Mapping[str, Package],
            channels: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """The manifest's `environment.conda` mapping: name, prefix, source, packages
    {name: {version, build, channel}} (channel only once read)."""
    listed: dict[str, dict[str, Any]] = {}
    for name, (version, build) in packages.items():
        entry: dict[str, Any] = {"version": version, "build": build}
        if channels is not None:
            entry["channel"] = channels.get(name)
        listed[name] = entry
    return {"name": prefix.name, "prefix": prefix.path, "source": prefix.source,
            "packages": listed}


def platform_subdir(system: str | None = None, machine: str | None = None) -> str:
    """conda's name for this platform (`linux-64`, `osx-arm64`), as conda-lock keys it."""
    if system is None or machine is None:
        u = os.uname()
        system, machine = system or u.sysname, machine or u.machine
    os_name = {"Linux": "linux", "Darwin": "osx", "Windows": "win"}.get(system, system.lower())
    arch = {"x86_64": "64", "AMD64": "64", "amd64": "64", "i686": "32", "i386": "32",
            "arm64": "arm64" if os_name != "linux" else "aarch64", "aarch64": "aarch64"
            }.get(machine, machine)
    return f"{os_name}-{arch}"


def build_from_url(url: str, name: str, version: str) -> str | None:
    """The build string in a package URL's file name (`…/mkl-2023.1.0-h213fc3f_46344.conda`)."""
    file_name = url.rsplit("/", 1)[-1]
    for ext in (".conda", ".tar.bz2"):
        if file_name.endswith(ext):
            stem = file_name[: -len(ext)]
            prefix = f"{name}-{version}-"
            if stem.startswith(prefix) and "-" not in stem[len(prefix):]:
                return stem[len(prefix):] or None
    return None
