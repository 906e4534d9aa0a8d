"""The software environment: the command's interpreter, its packages, lockfiles, variables.

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
from repro.capture import cmdline
from repro.record import bounded, manifest


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


def is_python_word(word: str) -> bool:
    """`python`, `python3.11.4`, `pypy3`, `/venv/bin/python3`: a word that names a Python
    interpreter (the rule lives in capture/cmdline.py)."""
    return cmdline.is_python(word)


def find_interpreter(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> tuple[str, str]:
    """(path, how) of the Python the command will run: see cmdline.find_interpreter."""
    return cmdline.find_interpreter(argv, cwd, env)


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


# ---------------------------------------------------------------------------- lockfiles

LOCK_NAMES = ("uv.lock", "poetry.lock", "pdm.lock", "Pipfile.lock", "conda-lock.yml")


@dataclasses.dataclass(frozen=True)
class Lock:
    path: str  # relative to the git root
    kind: str  # uv | poetry | pdm | pipenv | conda-lock | requirements
    pins: Mapping[str, frozenset[str]]  # name -> allowed versions (several with platform markers)
    # Locks that cover several platforms or optional groups pin packages this environment
    # may legitimately lack; only requirement files list exactly one environment.
    exhaustive: frozenset[str]  # names that must be installed
    # conda-lock's conda-managed entries for this platform: conda name -> pin, checked
    # against the environment's conda-meta (conda names differ from pip's: pytorch, torch).
    conda: Mapping[str, CondaPin] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CondaPin:
    version: str
    build: str | None  # from the package URL's file name; None: any build
    required: bool  # category main and not optional: the environment must have it


def find_lockfile(root: Path, configured: str | None) -> Path | None:
    """The configured lockfile, else the first one found at the git root."""
    if configured:
        path = (root / configured)
        if not path.is_file():
            raise errors.LockfileError(f"the configured lockfile {configured} does not exist",
                                       hint="fix `lockfile` in the repro configuration")
        return path
    for name in LOCK_NAMES:
        if (root / name).is_file():
            return root / name
    candidates = sorted(root.glob("requirements*.lock")) + sorted(root.glob("requirements*.txt"))
    for path in candidates:
        if path.suffix == ".lock" or _all_pinned(path):
            return path
    return None


def _all_pinned(path: Path) -> bool:
    try:
        reqs = list(_requirement_lines(
            bounded.read_text(path, bounded.LOCK_MAX, errors.LockfileError)))
    except errors.LockfileError:
        return False
    return bool(reqs) and all(_pin_of(r) is not None for r in reqs)


def read_lock(root: Path, path: Path) -> Lock:
    """The pins of a lockfile; LockfileError naming it when it is unreadable, malformed, of an
    unknown version, or pins nothing (bounded: bounded.LOCK_MAX bytes, MAX_DEPTH levels)."""
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError as e:
        raise errors.LockfileError(f"the lockfile {bounded.show_path(path)} is outside the "
                                   f"repository", hint="lock files must be committed") from e
    name = path.name
    text = bounded.read_text(path, bounded.LOCK_MAX, errors.LockfileError, "lockfile")
    try:
        if name in ("uv.lock", "poetry.lock", "pdm.lock"):
            lock = _toml_lock(text, rel, name.split(".")[0])
        elif name == "Pipfile.lock":
            lock = _pipfile_lock(text, rel)
        elif name == "conda-lock.yml":
            lock = _conda_lock(text, rel)
        else:
            lock = _requirements_lock(text, rel)
    except _Malformed as e:
        raise errors.LockfileError(f"cannot read lockfile {rel}: {e}",
                                   hint="regenerate it with your package manager") from e
    return lock


class _Malformed(Exception):
    """A lockfile that parses but does not have the shape of its kind."""


# Lock format versions this reader understands; a newer one may move the pins elsewhere.
# (poetry and pdm keep theirs under [metadata] and have changed it compatibly so far)
_TOML_VERSIONS: dict[str, tuple[str, set[int] | None]] = {
    "uv": ("version", {1}), "poetry": ("lock-version", None), "pdm": ("lock_version", None)}


def _toml_lock(text: str, rel: str, kind: str) -> Lock:
    import tomllib

    if bounded.toml_too_deep(text):
        raise _Malformed("nested too deeply")
    try:
        doc = tomllib.loads(text)
    except RecursionError as e:
        raise _Malformed("nested too deeply") from e
    except ValueError as e:  # TOMLDecodeError, or an integer of more than 4,300 digits
        raise _Malformed(bounded.reason(e)) from e
    _check_shape(doc, rel)
    key, known = _TOML_VERSIONS[kind]
    version = doc.get(key)
    if known is not None and version is not None and version not in known:
        raise _Malformed(f"{key} = {version!r:.40} is not a version repro understands "
                         f"(known: {', '.join(map(str, sorted(known)))})")
    packages = doc.get("package", [])
    if not isinstance(packages, list):
        raise _Malformed(f"'package' must be an array of tables, got {_kind(packages)}")
    pins: dict[str, set[str]] = {}
    for i, pkg in enumerate(packages):
        if not isinstance(pkg, dict):
            raise _Malformed(f"package {i + 1} must be a table, got {_kind(pkg)}")
        source = pkg.get("source", {})
        if isinstance(source, dict) and ({"editable", "virtual"} & set(source)):
            continue  # the project itself
        if "version" in pkg:
            pname, version = pkg.get("name"), pkg["version"]
            if not isinstance(pname, str) or not isinstance(version, str):
                raise _Malformed(f"package {i + 1} needs a string name and version")
            pins.setdefault(normalize(pname), set()).add(version)
    if not packages:
        raise _Malformed("it lists no packages")
    return Lock(rel, kind, {k: frozenset(v) for k, v in pins.items()}, frozenset())


def _pipfile_lock(text: str, rel: str) -> Lock:
    try:
        doc = bounded.loads_json(text, rel, errors.LockfileError)
    except errors.LockfileError as e:
        raise _Malformed(_after(rel, e.message)) from e
    if not isinstance(doc, dict):
        raise _Malformed(f"the top level must be an object, got {_kind(doc)}")
    pins: dict[str, frozenset[str]] = {}
    entries = 0
    for group in ("default", "develop"):
        section = doc.get(group, {})
        if not isinstance(section, dict):
            raise _Malformed(f"{group!r} must be an object of packages, got {_kind(section)}")
        for pname, spec in section.items():
            if not isinstance(spec, dict):
                raise _Malformed(f"{group}.{pname} must be an object, got {_kind(spec)}")
            entries += 1
            version = spec.get("version", "")
            if isinstance(version, str) and version.startswith("=="):
                pins[normalize(pname)] = frozenset([version[2:]])
    if not entries:
        raise _Malformed("it lists no packages")
    return Lock(rel, "pipenv", pins, frozenset())


def _conda_lock(text: str, rel: str, subdir: str | None = None) -> Lock:
    try:
        doc = manifest.loads(text, rel)
    except errors.ManifestError as e:
        raise _Malformed(_after(rel, e.message)) from e
    if not isinstance(doc, dict):
        raise _Malformed(f"the top level must be a mapping, got {_kind(doc)}")
    packages = doc.get("package")
    if not isinstance(packages, list):
        raise _Malformed(f"'package' must be a list, got {_kind(packages)}")
    if not packages:
        raise _Malformed("it lists no packages")
    from repro.capture import conda

    here = subdir or conda.platform_subdir()
    pins: dict[str, set[str]] = {}
    conda_pins: dict[str, CondaPin] = {}
    for i, pkg in enumerate(packages):
        if not isinstance(pkg, dict):
            raise _Malformed(f"package {i + 1} must be a mapping, got {_kind(pkg)}")
        pname, version = pkg.get("name"), pkg.get("version")
        if not isinstance(pname, str) or isinstance(version, (dict, list)) or version is None:
            raise _Malformed(f"package {i + 1} needs a name and a version")
        # conda package names differ from Python distribution names (pytorch vs torch):
        # pip-managed entries are held to the interpreter's packages, conda-managed ones (of
        # this platform) to the conda environment's conda-meta.
        if pkg.get("manager") == "pip":
            pins.setdefault(normalize(pname), set()).add(str(version))
        elif pkg.get("manager", "conda") == "conda" and pkg.get("platform", here) == here:
            url = pkg.get("url")
            build = conda.build_from_url(url, pname, str(version)) if isinstance(url, str) \
                else None
            required = pkg.get("category", "main") == "main" and not pkg.get("optional")
            conda_pins[pname] = CondaPin(str(version), build, bool(required))
    return Lock(rel, "conda-lock", {k: frozenset(v) for k, v in pins.items()}, frozenset(),
                conda_pins)


def _requirements_lock(text: str, rel: str) -> Lock:
    pins: dict[str, frozenset[str]] = {}
    must: set[str] = set()
    for req in _requirement_lines(text):
        pin = _pin_of(req)
        if pin is None:
            raise errors.LockfileError(
                f"{rel} is not a lockfile: {req!r:.200} is not pinned with ==",
                hint="pin every requirement (pip-compile, `uv pip compile`, `pip freeze`)",
            )
        pname, version, has_marker = pin
        pins[pname] = frozenset([version])
        if not has_marker:
            must.add(pname)  # a marker may exclude this platform: then absence is fine
    if not pins:
        raise errors.LockfileError(
            f"the lockfile {rel} pins no packages",
            hint="write your pinned requirements into it (e.g. `pip freeze > requirements.lock`)"
                 ", or remove it and pass --allow-unlocked")
    return Lock(rel, "requirements", pins, frozenset(must))


def _check_shape(doc: Any, rel: str) -> None:
    try:
        bounded.check_tree(doc, rel, errors.LockfileError)
    except errors.LockfileError as e:
        raise _Malformed(_after(rel, e.message)) from e


def _after(rel: str, message: str) -> str:
    """`Pipfile.lock is nested too deeply` -> `nested too deeply` (the caller names the file)."""
    return message.removeprefix(f"{rel} ").removeprefix("is ")


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", int: "a number",
             float: "a number", bool: "a boolean", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def _requirement_lines(text: str) -> Any:
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith("-"):
            continue
        yield line


_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*===?\s*([^\s;,]+)\s*(;.*)?$")


def _pin_of(req: str) -> tuple[str, str, bool] | None:
    req = re.sub(r"\s--hash[= ]\S+", "", req).strip()
    m = _PIN_RE.match(req)
    if not m:
        return None
    return normalize(m.group(1)), m.group(3), bool(m.group(4))


def check_lock(lock: Lock, installed: Mapping[str, str],
               conda_installed: Mapping[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """Match installed packages against the lock's pins, for the manifest.

    `conda_installed`: name -> (version, build) from the conda environment's conda-meta, None
    when the command's interpreter is in no conda environment. A lock with conda entries for
    this platform then does not match: it describes a conda environment this run lacks.
    """
    mismatches: list[dict[str, Any]] = []
    for pname, allowed in sorted(lock.pins.items()):
        have = installed.get(pname)
        if have is None:
            if pname in lock.exhaustive:
                mismatches.append({"name": pname, "locked": _one(allowed), "installed": None})
        elif not _version_in(have, allowed):
            mismatches.append({"name": pname, "locked": _one(allowed), "installed": have})
    unlocked = sorted(set(installed) - set(lock.pins))
    result: dict[str, Any] = {"matches": not mismatches, "mismatches": mismatches,
                              "unlocked": unlocked}
    if lock.conda:
        conda_mismatches = _check_conda(lock.conda, conda_installed)
        mismatches += conda_mismatches
        result["matches"] = not mismatches
        if conda_installed is not None:
            result["conda_unlocked"] = sorted(set(conda_installed) - set(lock.conda))
    return result


def _check_conda(pins: Mapping[str, CondaPin],
                 have: Mapping[str, tuple[str, str]] | None) -> list[dict[str, Any]]:
    if have is None:
        required = sum(1 for p in pins.values() if p.required)
        return [{"name": "conda environment", "manager": "conda",
                 "locked": f"{required} conda packages", "installed": None}] if required else []
    out: list[dict[str, Any]] = []
    for pname, pin in sorted(pins.items()):
        found = have.get(pname)
        locked = f"{pin.version} {pin.build}" if pin.build else pin.version
        if found is None:
            if pin.required:
                out.append({"name": pname, "manager": "conda", "locked": locked,
                            "installed": None})
        elif found[0] != pin.version or (pin.build is not None and found[1] != pin.build):
            out.append({"name": pname, "manager": "conda", "locked": locked,
                        "installed": f"{found[0]} {found[1]}"})
    return out


def _one(versions: frozenset[str]) -> str:
    return " | ".join(sorted(versions))


def _version_in(have: str, allowed: frozenset[str]) -> bool:
    # Local version labels (+cpu, +cu121) identify a build of the same release.
    return have in allowed or have.split("+")[0] in {v.split("+")[0] for v in allowed}


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

