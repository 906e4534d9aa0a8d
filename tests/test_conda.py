"""capture/conda.py and conda-lock's conda entries: a conda prefix written as conda writes it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from repro.capture import conda
from repro.capture import lockfiles as envmod
from tests import condaenv


def test_find_prefix_of_the_interpreter(tmp_path: Path) -> None:
    exe = condaenv.make_prefix(tmp_path / "envs" / "ml")
    found = conda.find_prefix(str(exe), {})
    assert found == conda.Prefix(path=str(tmp_path / "envs" / "ml"), name="ml",
                                 source="interpreter")


def test_find_prefix_names_base_and_the_active_env(tmp_path: Path) -> None:
    base = tmp_path / "miniforge3"
    exe = condaenv.make_prefix(base)
    (base / "condabin").mkdir()
    assert conda.find_prefix(str(exe), {}).name == "base"  # type: ignore[union-attr]
    env = {"CONDA_PREFIX": str(base), "CONDA_DEFAULT_ENV": "base"}
    assert conda.find_prefix(str(exe), env).name == "base"  # type: ignore[union-attr]


def test_find_prefix_through_a_venv_made_from_conda(tmp_path: Path) -> None:
    condaenv.make_prefix(tmp_path / "envs" / "ml")
    venv = tmp_path / "proj" / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {tmp_path / 'envs' / 'ml' / 'bin'}\n")
    (venv / "bin" / "python").symlink_to(tmp_path / "envs" / "ml" / "bin" / "python")
    found = conda.find_prefix(str(venv / "bin" / "python"), {})
    assert found is not None and found.path == str(tmp_path / "envs" / "ml")


def test_active_env_only_for_a_command_without_python(tmp_path: Path) -> None:
    condaenv.make_prefix(tmp_path / "envs" / "ml")
    env = {"CONDA_PREFIX": str(tmp_path / "envs" / "ml"), "CONDA_DEFAULT_ENV": "ml"}
    other = tmp_path / "venv" / "bin" / "python"
    other.parent.mkdir(parents=True)
    other.write_text("")
    assert conda.find_prefix(str(other), env) is None  # a venv's python is not conda's
    found = conda.find_prefix(None, env)
    assert found == conda.Prefix(str(tmp_path / "envs" / "ml"), "ml", "CONDA_PREFIX")


def test_installed_and_channels(tmp_path: Path) -> None:
    condaenv.make_prefix(tmp_path)
    packages = conda.installed(str(tmp_path))
    assert packages == {
        "cuda-cudart": ("12.1.105", "0"), "libstdcxx-ng": ("13.2.0", "hc0a3c3a_7"),
        "mkl": ("2023.1.0", "h213fc3f_46344"), "python": ("3.11.9", "hb806964_0_cpython"),
        "pytorch": ("2.3.0", "py3.11_cuda12.1_cudnn8.9.2_0")}
    channels = conda.read_channels(str(tmp_path), packages)
    assert channels == {"cuda-cudart": "nvidia", "libstdcxx-ng": "conda-forge",
                        "mkl": "pkgs/main", "python": "conda-forge", "pytorch": "pytorch"}
    section = conda.section(conda.Prefix(str(tmp_path), "ml", "interpreter"), packages, channels)
    assert section["packages"]["mkl"] == {"version": "2023.1.0", "build": "h213fc3f_46344",
                                          "channel": "pkgs/main"}
    assert "SECRET" not in json.dumps(section)


def test_channel_of_a_record_in_another_key_order(tmp_path: Path) -> None:
    meta = tmp_path / "conda-meta"
    meta.mkdir()
    rec = condaenv.record("zlib", "1.3", "h0", "https://conda.anaconda.org/conda-forge/linux-64",
                          files=2000)
    channel = rec.pop("channel")
    text = json.dumps({**rec, "channel": channel})  # channel last, after ~100 KiB of files
    assert text.index('"channel"') > 8192
    (meta / "zlib-1.3-h0.json").write_text(text)
    (meta / "broken-1-h0.json").write_text("{not json")
    packages = conda.installed(str(tmp_path))
    assert conda.read_channels(str(tmp_path), packages) == {"zlib": "conda-forge",
                                                            "broken": None}


@pytest.mark.parametrize(("url", "expected"), [
    ("https://conda.anaconda.org/conda-forge/noarch", "conda-forge"),
    ("https://repo.anaconda.com/pkgs/main/linux-64", "pkgs/main"),
    ("conda-forge", "conda-forge"),
    ("https://conda.anaconda.org/t/tk-123/private/linux-64", "private"),
    ("https://user:pw@conda.example.com/chan/linux-64", "https://conda.example.com/chan"),
])
def test_clean_channel(url: str, expected: str) -> None:
    assert conda.clean_channel(url) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("libstdcxx-ng-13.2.0-hc0a3c3a_7.json", ("libstdcxx-ng", "13.2.0", "hc0a3c3a_7")),
    ("_libgcc_mutex-0.1-conda_forge.json", ("_libgcc_mutex", "0.1", "conda_forge")),
    ("history", None), ("x-1.json", None),
])
def test_parse_record_name(name: str, expected: tuple[str, str, str] | None) -> None:
    assert conda.parse_record_name(name) == expected


@pytest.mark.parametrize(("system", "machine", "subdir"), [
    ("Linux", "x86_64", "linux-64"), ("Linux", "aarch64", "linux-aarch64"),
    ("Darwin", "arm64", "osx-arm64"), ("Darwin", "x86_64", "osx-64"),
])
def test_platform_subdir(system: str, machine: str, subdir: str) -> None:
    assert conda.platform_subdir(system, machine) == subdir


def test_conda_lock_conda_entries_checked_against_conda_meta(tmp_path: Path) -> None:
    here = conda.platform_subdir()
    (tmp_path / "conda-lock.yml").write_text(condaenv.lock_text(platform=here))
    lock = envmod.read_lock(tmp_path, tmp_path / "conda-lock.yml")
    assert set(lock.conda) == {p[0] for p in condaenv.PACKAGES}  # this platform's only
    assert lock.conda["mkl"] == envmod.CondaPin("2023.1.0", "h213fc3f_46344", True)
    condaenv.make_prefix(tmp_path / "env")
    have = conda.installed(str(tmp_path / "env"))
    result = envmod.check_lock(lock, {"tqdm": "4.66.1"}, have)
    assert result["matches"] is True and result["conda_unlocked"] == []

    # Another build of the same version, a missing package, another version:
    changed = dict(have)
    changed["mkl"] = ("2023.1.0", "h84fe81f_50496")
    del changed["libstdcxx-ng"]
    changed["python"] = ("3.11.8", "hb806964_0_cpython")
    changed["extra"] = ("1.0", "0")
    result = envmod.check_lock(lock, {"tqdm": "4.66.1"}, changed)
    assert result["matches"] is False
    assert result["mismatches"] == [
        {"name": "libstdcxx-ng", "manager": "conda", "locked": "13.2.0 hc0a3c3a_7",
         "installed": None},
        {"name": "mkl", "manager": "conda", "locked": "2023.1.0 h213fc3f_46344",
         "installed": "2023.1.0 h84fe81f_50496"},
        {"name": "python", "manager": "conda", "locked": "3.11.9 hb806964_0_cpython",
         "installed": "3.11.8 hb806964_0_cpython"}]
    assert result["conda_unlocked"] == ["extra"]


def test_conda_lock_outside_a_conda_environment_does_not_match(tmp_path: Path) -> None:
    (tmp_path / "conda-lock.yml").write_text(condaenv.lock_text(platform=conda.platform_subdir()))
    lock = envmod.read_lock(tmp_path, tmp_path / "conda-lock.yml")
    result = envmod.check_lock(lock, {"tqdm": "4.66.1"}, None)
    assert result["matches"] is False
    assert result["mismatches"] == [{"name": "conda environment", "manager": "conda",
                                     "locked": "5 conda packages", "installed": None}]


def test_reading_the_package_list_is_cheap(tmp_path: Path) -> None:
    """300 packages: the file-name listing the lock check uses before the run, well under the
    few milliseconds allowed on the hot path (the channels are read while the command runs)."""
    many = [(f"pkg{i}", "1.0", f"h{i}_0", "https://conda.anaconda.org/conda-forge/linux-64")
            for i in range(300)]
    condaenv.make_prefix(tmp_path, many, python=False)
    best = min(_timed(lambda: conda.installed(str(tmp_path))) for _ in range(5))
    assert len(conda.installed(str(tmp_path))) == 300
    assert best < 0.005, best


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def test_a_fifo_in_place_of_a_file_is_never_waited_on(tmp_path: Path) -> None:
    import os

    condaenv.make_prefix(tmp_path / "env")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    os.mkfifo(venv / "pyvenv.cfg")
    (venv / "bin" / "python").write_text("")
    assert conda.find_prefix(str(venv / "bin" / "python"), {}) is None
    meta = tmp_path / "env" / "conda-meta"
    (meta / "mkl-2023.1.0-h213fc3f_46344.json").unlink()
    os.mkfifo(meta / "mkl-2023.1.0-h213fc3f_46344.json")
    packages = conda.installed(str(tmp_path / "env"))
    assert conda.read_channels(str(tmp_path / "env"), packages)["mkl"] is None
