"""capture/container.py: container detection from markers in a test-controlled root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from repro.capture import container

DOCKER_ID = "4f" * 32
PODMAN_ENV = ('engine="podman-4.9.3"\nname="trainer"\nid="' + "ab" * 32 + '"\n'
              'image="docker.io/pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime"\n'
              'imageid="' + "cd" * 32 + '"\nrootless=1\n')


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(("files", "env", "image", "expected"), [
    ({}, {}, None, None),
    ({"proc/self/cgroup": "0::/\n"}, {}, None, None),
    ({".dockerenv": "", "proc/self/cgroup": f"0::/system.slice/docker-{DOCKER_ID}.scope\n"}, {},
     None, {"runtime": "docker", "image": None, "digest": None, "id": DOCKER_ID}),
    ({".dockerenv": "", "proc/self/cgroup": f"12:memory:/docker/{DOCKER_ID}\n"}, {},
     "pytorch/pytorch:2.3.0@sha256:" + "e" * 64,
     {"runtime": "docker", "image": "pytorch/pytorch:2.3.0", "digest": "sha256:" + "e" * 64,
      "id": DOCKER_ID, "source": "--image"}),
    ({"run/.containerenv": PODMAN_ENV}, {}, None,
     {"runtime": "podman", "image": "docker.io/pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime",
      "digest": None, "image_id": "cd" * 32, "id": "ab" * 32, "name": "trainer",
      "engine": "podman-4.9.3", "source": "/run/.containerenv"}),
    ({"run/.containerenv": ""}, {}, None, {"runtime": "podman", "image": None, "digest": None}),
    ({".dockerenv": "", "var/run/secrets/kubernetes.io/serviceaccount/namespace": "ml-team\n",
      "var/run/secrets/kubernetes.io/serviceaccount/token": "SECRET-TOKEN"},
     {"REPRO_IMAGE": "ghcr.io/org/train@sha256:" + "1" * 64}, None,
     {"runtime": "kubernetes", "image": "ghcr.io/org/train", "digest": "sha256:" + "1" * 64,
      "namespace": "ml-team", "source": "REPRO_IMAGE"}),
    ({}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, None,
     {"runtime": "kubernetes", "image": None, "digest": None}),
    ({}, {"APPTAINER_CONTAINER": "/scratch/images/train.sif", "APPTAINER_NAME": "train.sif"},
     None, {"runtime": "apptainer", "image": "train.sif", "digest": None,
            "path": "/scratch/images/train.sif", "source": "APPTAINER_CONTAINER"}),
    ({}, {"SINGULARITY_CONTAINER": "/images/old.simg"}, None,
     {"runtime": "singularity", "image": "old.simg", "digest": None, "path": "/images/old.simg",
      "source": "SINGULARITY_CONTAINER"}),
    ({".singularity.d/": ""}, {}, None, {"runtime": "apptainer", "image": None, "digest": None}),
    ({}, {}, "mycorp/base:1", {"runtime": None, "image": "mycorp/base:1", "digest": None,
                               "source": "--image"}),
])
def test_detect_markers(tmp_path: Path, files: dict[str, str], env: dict[str, str],
                        image: str | None, expected: dict[str, Any] | None) -> None:
    _tree(tmp_path, files)
    found = container.detect(env, str(tmp_path), image)
    assert found == expected
    assert "SECRET-TOKEN" not in repr(found)  # the service account token is never read


def test_detect_ignores_a_fifo_marker(tmp_path: Path) -> None:
    import os

    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / ".containerenv")  # must not block
    assert container.detect({}, str(tmp_path)) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("python:3.11", {"image": "python:3.11", "digest": None}),
    ("python@sha256:" + "a" * 64, {"image": "python", "digest": "sha256:" + "a" * 64}),
    ("reg:5000/x/y:tag@sha256:" + "b" * 64, {"image": "reg:5000/x/y:tag",
                                              "digest": "sha256:" + "b" * 64}),
])
def test_parse_image(text: str, expected: dict[str, str | None]) -> None:
    assert container.parse_image(text) == expected


@pytest.mark.parametrize("text", ["python@latest", "python@sha256:xyz", ""])
def test_parse_image_refuses_a_bad_digest(text: str) -> None:
    with pytest.raises(ValueError):
        container.parse_image(text)


def test_system_root_from_the_variable() -> None:
    assert container.system_root({}) == "/"
    assert container.system_root({"REPRO_SYSTEM_ROOT": "/tmp/x"}) == "/tmp/x"
