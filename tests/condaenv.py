"""A conda environment on disk, shaped as conda writes it (for tests; no conda needed)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# (name, version, build, channel URL as conda >= 4.7 records it)
PACKAGES = [
    ("python", "3.11.9", "hb806964_0_cpython", "https://conda.anaconda.org/conda-forge/linux-64"),
    ("mkl", "2023.1.0", "h213fc3f_46344", "https://repo.anaconda.com/pkgs/main/linux-64"),
    ("libstdcxx-ng", "13.2.0", "hc0a3c3a_7", "https://conda.anaconda.org/conda-forge/linux-64"),
    ("cuda-cudart", "12.1.105", "0", "https://conda.anaconda.org/nvidia/linux-64"),
    ("pytorch", "2.3.0", "py3.11_cuda12.1_cudnn8.9.2_0",
     "https://conda.anaconda.org/t/tk-SECRET-123/pytorch/linux-64"),
]


def record(name: str, version: str, build: str, channel: str, files: int = 200) -> dict[str, object]:
    """One conda-meta record with the keys conda writes (files and paths_data make it large)."""
    subdir = channel.rstrip("/").rsplit("/", 1)[-1]
    fn = f"{name}-{version}-{build}.conda"
    paths = [f"lib/{name}/file{i:05d}.so" for i in range(files)]
    return {
        "build": build, "build_number": 0, "channel": channel, "constrains": [],
        "depends": ["libgcc-ng >=12"], "extracted_package_dir": f"/opt/conda/pkgs/{fn[:-6]}",
        "features": "", "files": paths, "fn": fn, "license": "BSD-3-Clause",
        "link": {"source": f"/opt/conda/pkgs/{fn[:-6]}", "type": 1},
        "md5": "0" * 32, "name": name,
        "package_tarball_full_path": f"/opt/conda/pkgs/{fn}",
        "paths_data": {"paths": [{"_path": p, "path_type": "hardlink", "sha256": "a" * 64,
                                  "size_in_bytes": 1000} for p in paths], "paths_version": 1},
        "requested_spec": "", "sha256": "b" * 64, "size": 12345, "subdir": subdir,
        "timestamp": 1700000000000, "track_features": "", "url": f"{channel}/{fn}",
        "version": version,
    }


def make_prefix(prefix: Path, packages: list[tuple[str, str, str, str]] | None = None,
                *, python: bool = True) -> Path:
    """`prefix` with conda-meta/ records (sorted keys, indent 2, as conda dumps them) and a
    bin/python that is this test interpreter. Returns the python path."""
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "history").write_text("==> 2024-05-01 10:00:00 <==\n# cmd: conda create -n ml\n")
    for name, version, build, channel in packages or PACKAGES:
        text = json.dumps(record(name, version, build, channel), indent=2, sort_keys=True)
        (meta / f"{name}-{version}-{build}.json").write_text(text + "\n")
    exe = prefix / "bin" / "python"
    if python:
        exe.parent.mkdir(parents=True, exist_ok=True)
        if not exe.exists():
            os.symlink(sys.executable, exe)
    return exe


def lock_text(packages: list[tuple[str, str, str, str]] | None = None,
              platform: str = "linux-64") -> str:
    """A conda-lock.yml (format version 1) pinning `packages` for `platform`."""
    lines = ["version: 1", "metadata:", "  platforms: [linux-64, osx-arm64]",
             "  sources: [environment.yml]", "package:"]
    for name, version, build, channel in packages or PACKAGES:
        url = f"{channel.replace('/t/tk-SECRET-123', '')}/{name}-{version}-{build}.conda"
        for plat in (platform, "osx-arm64"):
            lines += [f"- name: {name}", f"  version: {version}", "  manager: conda",
                      f"  platform: {plat}", "  dependencies: {}",
                      f"  url: {url.replace('linux-64', plat)}",
                      "  hash: {md5: " + "0" * 32 + "}", "  category: main",
                      "  optional: false"]
    lines += ["- name: tqdm", "  version: 4.66.1", "  manager: pip", f"  platform: {platform}",
              "  dependencies: {}", "  url: https://files.pythonhosted.org/tqdm.whl",
              "  hash: {sha256: " + "c" * 64 + "}", "  category: main", "  optional: false"]
    return "\n".join(lines) + "\n"
