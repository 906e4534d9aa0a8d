"""The software environment: the command's interpreter, its packages, variables, platform.

Lockfiles are capture/lockfiles.py; which interpreter a command line runs is capture/cmdline.py.

Reads files and asks the command's interpreter for its `sys.path`; never imports the user's
packages, never prints, and never writes a secret anywhere.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------------------- interpreter


@dataclasses.dataclass(frozen=True)
class Interpreter:
    executable: str
    source: str  # "argv" | "shebang" | "beside" | "repro"
    version: str
    implementation: str
    sys_path: tuple[str, ...]

    def to_manifest(self) -> dict[str, Any]:
        return {"version": self.version, "implementation": self.implementation,
                "executable": self.executable}


_PROBE = ("import sys, json, platform; print(json.dumps({'version': platform.python_version(), "
          "'implementation': platform.python_implementation(), 'executable': sys.executable, "
          "'sys_path': sys.path}))")


def start_inspect(python: str, env: Mapping[str, str]) -> subprocess.Popen[bytes] | None:
    """Begin asking a foreign interpreter for its sys.path; None when it is repro's own."""
    if _same_file(python, sys.executable):
        return None
    clean = {k: v for k, v in env.items() if not k.startswith("REPRO_")}
    try:
        return subprocess.Popen([python, "-c", _PROBE], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=clean, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise errors.LockfileError(f"cannot start {python} to inspect its packages: {e.strerror}",
                                   hint="check that the interpreter in your command exists") from e


def finish_inspect(proc: subprocess.Popen[bytes] | None, python: str, source: str) -> Interpreter:
    if proc is None:
        # What platform.python_version()/python_implementation() say, without importing
        # `platform` (~2 ms) on the run's hot path.
        v = sys.version_info
        return Interpreter(executable=sys.executable, source=source,
                           version=f"{v.major}.{v.minor}.{v.micro}",
                           implementation=_IMPLEMENTATIONS.get(sys.implementation.name,
                                                               sys.implementation.name),
                           sys_path=tuple(sys.path))
    out, err = proc.communicate(timeout=60)
    try:
        info = json.loads(out)
    except ValueError:
        info = None
    if proc.returncode != 0 or not isinstance(info, dict):
        first = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise errors.LockfileError(f"cannot inspect the packages of {python}: {first}",
                                   hint="use --allow-unlocked to skip the environment check")
    return Interpreter(executable=str(info["executable"]), source=source,
                       version=str(info["version"]), implementation=str(info["implementation"]),
                       sys_path=tuple(str(p) for p in info["sys_path"]))


def _same_file(a: str, b: str) -> bool:
    """Same interpreter *and* same environment: venvs symlink one binary from many bin dirs."""
    try:
        return (os.path.samefile(a, b)
                and Path(a).absolute().parent.resolve() == Path(b).absolute().parent.resolve())
    except OSError:
        return False


# ---------------------------------------------------------------------------- packages


@dataclasses.dataclass(frozen=True)
class Packages:
    versions: Mapping[str, str]  # normalised name -> version
    sources: Mapping[str, Mapping[str, Any]]  # editable / VCS / local installs


_DIST_RE = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+?)(-py\d[\d.]*)?(-[^-]+)?\.(dist|egg)-info$")


def installed_packages(sys_path: Sequence[str]) -> Packages:
    """Distributions on `sys_path`, from metadata directory names; the first one found wins.

    Reading directory names costs a listdir per path entry, where importlib.metadata would
    parse every METADATA file: this runs before every run, so it must be cheap.
    """
    versions: dict[str, str] = {}
    sources: dict[str, dict[str, Any]] = {}
    for entry in sys_path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            m = _DIST_RE.match(n)
            if not m:
                continue
            name = normalize(m.group("name"))
            if name in versions:
                continue
            versions[name] = m.group("version")
            source = _direct_url(Path(entry or ".", n))
            if source:
                sources[name] = source
    return Packages(versions=dict(sorted(versions.items())), sources=dict(sorted(sources.items())))


def _direct_url(dist_info: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((dist_info / "direct_url.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    from repro.capture.git import strip_credentials

    out: dict[str, Any] = {"url": strip_credentials(str(data.get("url", "")))}
    if isinstance(data.get("dir_info"), dict) and data["dir_info"].get("editable"):
        out["editable"] = True
    vcs = data.get("vcs_info")
    if isinstance(vcs, dict):
        out["vcs"] = vcs.get("vcs")
        out["commit"] = vcs.get("commit_id")
    return out


# ---------------------------------------------------------------------------- variables

DEFAULT_ENV_ALLOW = (
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE", "TORCH_*", "TORCHINDUCTOR_*", "PYTORCH_*", "XLA_FLAGS",
    # TensorFlow's own variables by name: a bare `TF_*` also matches Terraform's TF_VAR_*
    # (input variables, often passwords) and TF_TOKEN_* (API tokens).
    "TF_CPP_*", "TF_DETERMINISTIC_OPS", "TF_CUDNN_*", "TF_ENABLE_*", "TF_GPU_*",
    "TF_FORCE_*", "TF_XLA_FLAGS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS",
    "TF_USE_*", "TF_DISABLE_*", "TF_INTRA_OP_PARALLELISM_THREADS",
    "TF_INTER_OP_PARALLELISM_THREADS",
    "JAX_*", "NCCL_*", "PL_*", "HF_*", "TRANSFORMERS_*", "WORLD_SIZE", "RANK", "LOCAL_RANK",
    "VIRTUAL_ENV", "CONDA_DEFAULT_ENV", "LANG", "LC_ALL", "LC_NUMERIC", "TZ",
)
_SECRET_RE = re.compile(
    r"TOKEN|KEY|SECRET|PASS|PWD|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|SIGNATURE|CERT", re.I)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_RE.search(name))


def allowed_env(env: Mapping[str, str], extra: Sequence[str] = ()) -> dict[str, str]:
    """Allow-listed variables with secret-looking names dropped and URL credentials stripped."""
    from repro.capture.git import strip_credentials

    matches = _glob_matcher((*DEFAULT_ENV_ALLOW, *extra))
    out = {}
    for key in sorted(env):
        if is_secret_name(key) or key.startswith("REPRO_"):
            continue
        if matches(key):
            out[key] = strip_credentials(env[key])
    return out


def _glob_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A test of fnmatch.fnmatchcase against any of `patterns`, without compiling a regex for
    a plain name or a `PREFIX*` (one set lookup and one startswith for those).

    Every run checks each variable against every pattern: fnmatch's ~30 regex compilations
    cost several milliseconds of `repro run`'s start-up.
    """
    exact: set[str] = set()
    prefixes: list[str] = []
    others: list[str] = []
    for p in patterns:
        if not any(c in p for c in "*?["):
            exact.add(p)
        elif p.endswith("*") and not any(c in p[:-1] for c in "*?["):
            prefixes.append(p[:-1])
        else:
            others.append(p)
    starts = tuple(prefixes)
    return lambda name: (name in exact or name.startswith(starts)
                         or any(fnmatch.fnmatchcase(name, p) for p in others))


_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalVM",
                    "ironpython": "IronPython", "jython": "Jython"}


def platform_info() -> dict[str, str]:
    u = os.uname()  # what platform.uname() reports on POSIX, without importing it
    return {"system": u.sysname, "release": u.release, "machine": u.machine}

