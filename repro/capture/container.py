"""The container a run ran in: Docker, Podman, Kubernetes, Apptainer/Singularity, and its image.

Owns detection from the standard markers and the manifest's `environment.container` mapping.
Cheap by design (it runs on `repro run`'s hot path): a few `stat` calls and at most three
small reads (`/run/.containerenv`, `/proc/self/cgroup`, the service account's namespace).
Must not: print, raise (a marker that cannot be read is a marker that is not there), read a
service account token or any other secret, or run a container tool.

The markers are looked up under a root directory, `/` unless the caller passes another; `repro
run` takes it from `REPRO_SYSTEM_ROOT` when that is set (for tests: a tree of simulated
markers), and from nowhere else. Only these markers move with it; `/proc/self/cgroup` is read
under the same root, so a simulated tree simulates that too.

What each runtime exposes (none exposes everything; the image's digest is rarely visible from
inside, hence `repro run --image NAME@DIGEST` and `REPRO_IMAGE`):
- Docker: `/.dockerenv`; the container id in `/proc/self/cgroup` (`/docker/<id>`,
  `docker-<id>.scope`). No image name.
- Podman: `/run/.containerenv`, which holds `engine`, `name`, `id`, `image` and `imageid`
  (the latter four when the container was not started with `--privileged` hiding them).
- Kubernetes: `KUBERNETES_SERVICE_HOST` or `/var/run/secrets/kubernetes.io/serviceaccount`
  (its `namespace` file is read; its token never).
- Apptainer/Singularity: `APPTAINER_CONTAINER`/`SINGULARITY_CONTAINER` (the image file),
  `APPTAINER_NAME`/`SINGULARITY_NAME` (its name), `/.singularity.d`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from repro.record import bounded

ROOT_VARIABLE = "REPRO_SYSTEM_ROOT"  # where the markers are looked up (tests); default "/"
IMAGE_VARIABLE = "REPRO_IMAGE"  # NAME[:TAG][@DIGEST] of the image, set by whoever starts it
RUNTIMES = ("kubernetes", "podman", "docker", "apptainer", "singularity")
_SMALL = 64 * 1024  # the marker files are a few hundred bytes; never read more than this
_SERVICE_ACCOUNT = "var/run/secrets/kubernetes.io/serviceaccount"
# Patterns compiled where used (re caches them): compiling them all at import would cost
# every run's start-up a fraction of a millisecond for files most runs never read.
_DIGEST_PATTERN = r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}$"
_CONTAINERENV_PATTERN = r'^([A-Za-z_]+)="?(.*?)"?$'
_HEX = frozenset("0123456789abcdef")


def system_root(env: Mapping[str, str]) -> str:
    """Where to look for the markers: REPRO_SYSTEM_ROOT when set, else `/`."""
    return env.get(ROOT_VARIABLE) or "/"


def detect(env: Mapping[str, str], root: str = "/", image: str | None = None
           ) -> dict[str, Any] | None:
    """The `environment.container` mapping, or None outside any container with no image given.

    Keys: runtime (kubernetes | podman | docker | apptainer | singularity | null when only an
    image was given), image (name with tag), digest (`sha256:…`), image_id (Podman's local
    image id), id (the container's, per instance: never counted by diff), name, engine
    (Podman's version), namespace (Kubernetes), source (where image came from: --image,
    REPRO_IMAGE, /run/.containerenv, APPTAINER_CONTAINER...).
    `image`: `repro run --image NAME@DIGEST`, which wins over everything the runtime says.
    """
    found: dict[str, Any] = {}
    runtime: str | None = None
    containerenv = _read_small(_join(root, "run/.containerenv"))
    if containerenv is not None:
        runtime = "podman"
        fields = _containerenv(containerenv)
        found.update({"engine": fields.get("engine"), "name": fields.get("name"),
                      "id": fields.get("id"), "image_id": fields.get("imageid")})
        if fields.get("image"):
            found.update(_split_image(fields["image"]), source="/run/.containerenv")
    elif _exists(_join(root, ".dockerenv")):
        runtime = "docker"
    for prefix in ("APPTAINER", "SINGULARITY"):
        container = env.get(f"{prefix}_CONTAINER")
        if container:
            runtime = prefix.lower()
            name = env.get(f"{prefix}_NAME") or os.path.basename(container)
            found.update(image=name, digest=None, source=f"{prefix}_CONTAINER",
                         path=container)
            break
    else:
        if runtime is None and _exists(_join(root, ".singularity.d")):
            runtime = "apptainer"
    service_account = _join(root, _SERVICE_ACCOUNT)
    if env.get("KUBERNETES_SERVICE_HOST") or _exists(service_account):
        runtime = "kubernetes"
        namespace = _read_small(os.path.join(service_account, "namespace"))
        if namespace:
            found["namespace"] = namespace.strip()
    if runtime in ("docker", "kubernetes") or (runtime is None and containerenv is None):
        cgroup = _read_small(_join(root, "proc/self/cgroup"))
        if cgroup:
            container_id = _cgroup_id(cgroup)
            if container_id:
                found["id"] = container_id
                if runtime is None:  # containerd or CRI-O without the files docker leaves
                    runtime = "docker" if "docker" in cgroup else "containerd"
    given, source = image, "--image"
    if not given and env.get(IMAGE_VARIABLE):
        given, source = env[IMAGE_VARIABLE], IMAGE_VARIABLE
    if given:
        found.pop("path", None)
        found.update(_split_image(given), source=source)
    if runtime is None and not given:
        return None
    out: dict[str, Any] = {"runtime": runtime, "image": found.get("image"),
                           "digest": found.get("digest")}
    for key in ("image_id", "id", "name", "engine", "namespace", "path", "source"):
        if found.get(key):
            out[key] = found[key]
    return out


def parse_image(text: str) -> dict[str, str | None]:
    """`NAME[:TAG][@DIGEST]` -> {image, digest}; ValueError for a digest that is not
    `algorithm:hex` (a typo in `--image` must not be recorded as a digest)."""
    name, at, digest = text.strip().partition("@")
    if not name and not digest:
        raise ValueError("empty image reference")
    if at and not re.match(_DIGEST_PATTERN, digest):
        raise ValueError(f"{digest!r} is not a digest (expected e.g. sha256:<64 hex digits>)")
    return {"image": name or None, "digest": digest or None}


def _split_image(text: str) -> dict[str, str | None]:
    try:
        return parse_image(text)
    except ValueError:
        return {"image": text.strip() or None, "digest": None}


def _containerenv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(_CONTAINERENV_PATTERN, line.strip())
        if match:
            out[match.group(1)] = match.group(2)
    return out


def _cgroup_id(cgroup: str) -> str | None:
    """The 64-hex container id in a cgroup path (`/docker/<id>`, `docker-<id>.scope`,
    `cri-containerd-<id>.scope`, `crio-<id>`), without a regular expression."""
    for line in cgroup.splitlines():
        last = line.rsplit("/", 1)[-1].removesuffix(".scope")
        candidate = last.rsplit("-", 1)[-1].rsplit(":", 1)[-1]
        if len(candidate) == 64 and _HEX.issuperset(candidate):
            return candidate
    return None


def _join(root: str, rel: str) -> str:
    return os.path.join(root, rel)


def _exists(path: str) -> bool:
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def _read_small(path: str) -> str | None:
    """A marker file's text, or None when it is absent, not a regular file, or unreadable."""
    head = bounded.read_head(path, _SMALL)
    return None if head is None else head.decode("utf-8", "replace")
