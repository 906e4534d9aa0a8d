"""What repro's hook needs only at a process's exit: the parts of the probe it reads from the
interpreter (python, flags, threads, torch), the package listing, argv redaction and credential
stripping, and JSON text without the json package.

A private helper of sitecustomize.py in the same directory (the name cannot shadow a user's
module), imported only at exit, so a process's start-up does not pay for it. The same rules as
the hook: standard library only; no `re`, `json` or importlib.metadata unless the data needs
them (each costs milliseconds at the exit of every process: DDP ranks, DataLoader workers);
never raise into the program (the hook records a failing step in the probe).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is not imported at start-up: it costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython",
                   "jython": "Jython"}
# torch's message for an op without a deterministic implementation (torch >= 1.8):
# "<op> does not have a deterministic implementation, but you set
#  'torch.use_deterministic_algorithms(True)'. ..."
NONDETERMINISTIC_MARKERS = ("does not have a deterministic implementation",
                            "use_deterministic_algorithms")


def nondeterministic_message(exc: BaseException | None) -> str | None:
    """torch's message if `exc` (or an exception it was raised from) is its determinism error."""
    for _ in range(10):  # the program may have wrapped torch's error in its own
        if exc is None:
            return None
        text = str(exc)
        if all(marker in text for marker in NONDETERMINISTIC_MARKERS):
            return text.strip().splitlines()[0]
        exc = exc.__cause__ or exc.__context__
    return None


def python_info() -> dict[str, Any]:
    # As platform.python_version()/python_implementation() give them, without importing
    # platform (milliseconds, at every process's exit).
    v = sys.version_info
    suffix = {"alpha": "a", "beta": "b", "candidate": "rc"}.get(v.releaselevel)
    version = f"{v.major}.{v.minor}.{v.micro}" + (f"{suffix}{v.serial}" if suffix else "")
    name = sys.implementation.name
    return {"version": version,
            "implementation": IMPLEMENTATIONS.get(name, name),
            "executable": sys.executable}


def flags() -> dict[str, Any]:
    names = ("isolated", "ignore_environment", "no_site", "no_user_site", "safe_path",
             "optimize", "dont_write_bytecode", "hash_randomization", "dev_mode",
             "utf8_mode")
    return {name: getattr(sys.flags, name) for name in names if hasattr(sys.flags, name)}


def torch_info(error: Callable[[str, str], None]) -> dict[str, Any] | None:
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "version"):
        return None
    info: dict[str, Any] = {"version": str(torch.__version__),
                            "cuda": torch.version.cuda, "cudnn": None,
                            "cuda_initialized": bool(torch.cuda.is_initialized())}
    try:
        info["cudnn"] = torch.backends.cudnn.version()
    except Exception as e:
        error("torch cudnn version", _describe(e))
    if info["cuda_initialized"]:  # only when the program itself used CUDA
        info["devices"] = [
            {"index": i, "name": torch.cuda.get_device_name(i),
             "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
            for i in range(torch.cuda.device_count())]
    return info


def threads() -> dict[str, Any]:
    threads: dict[str, Any] = {
        key: os.environ[key]
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        if key in os.environ}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        threads["torch_intra_op"] = torch.get_num_threads()
    return threads


def packages(sys_path: list[str], error: Callable[[str, str], None]) -> dict[str, Any]:
    packages: dict[str, str] = {}
    sources: dict[str, dict[str, Any]] = {}
    for meta_dir, metadata_file in _distributions(sys_path):
        name, version = _name_version(os.path.join(meta_dir, metadata_file))
        if not name or not version:
            continue
        name = _normalized(name)  # PEP 503
        if name in packages:  # an earlier path entry shadows this one, as for imports
            continue
        packages[name] = version
        try:
            with open(os.path.join(meta_dir, "direct_url.json"), encoding="utf-8") as f:
                sources[name] = _source(_json_value(f.read()))
        except FileNotFoundError:
            pass
        except Exception as e:
            error("packages", f"{name}: direct_url.json: {_describe(e)}")
    return {"packages": dict(sorted(packages.items())),
            "package_sources": dict(sorted(sources.items()))}


def _describe(exc: BaseException) -> str:  # sitecustomize's own, which this file cannot import
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _distributions(paths: list[str]) -> list[tuple[str, str]]:
    """(metadata directory, metadata file name) of each installed distribution, in path order.

    The directories importlib.metadata's path finder reads (`*.dist-info`, `*.egg-info`,
    `*.egg/EGG-INFO`), found without importing it: importlib.metadata pulls in email, zipfile
    and csv, tens of milliseconds at the exit of every run's top-level process.
    """
    found: list[tuple[str, str]] = []
    for entry in paths:
        base = entry or "."
        if base.endswith(".egg") and os.path.isdir(os.path.join(base, "EGG-INFO")):
            found.append((os.path.join(base, "EGG-INFO"), "PKG-INFO"))
            continue
        try:
            names = sorted(os.listdir(base))
        except OSError:  # a zip file, a path hook's token, a directory that went away
            continue
        for name in names:
            lower = name.lower()
            path = os.path.join(base, name)
            if lower.endswith(".dist-info"):
                found.append((path, "METADATA"))
            elif lower.endswith(".egg-info"):
                if os.path.isdir(path):
                    found.append((path, "PKG-INFO"))
                else:  # an egg-info file is itself PKG-INFO
                    found.append((base, name))
    return found


def _name_version(path: str) -> tuple[str | None, str | None]:
    """Name and Version from a metadata file's headers (which end at the first blank line)."""
    name = version = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                if line.startswith("Name:"):
                    name = line[5:].strip()
                elif line.startswith("Version:"):
                    version = line[8:].strip()
                if name and version:
                    break
    except OSError:
        return None, None
    return name, version


# A copy of repro.capture.git's rule (this file cannot import repro): tests hold them equal.
_USERINFO_PATTERN = r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@"
_QUERY_PATTERN = r"([A-Za-z][A-Za-z0-9+.-]*://[^?#\s]*)[?#]\S*"
_SCP_PATTERN = r"(^|[\s=,;'\"(])([^\s:@/=,;'\"(]+):(?!//)[^\s]*@"


# A copy of repro.record.redact's rule for argv values named like secrets (`--token X`, `--api-key=X`,
# `PASSWORD=X`); tests/test_secrets.py holds the two equal. The hook records no hash of them.
_SECRET_WORDS = frozenset({
    "token", "secret", "password", "passwd", "passphrase", "pass", "pwd", "apikey", "key",
    "credential", "credentials", "auth", "cookie", "signature", "pw",
})
_ARG_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_.-]*"
_ASSIGN_PATTERN = r"^([+~]{0,2})([A-Za-z_][A-Za-z0-9_.-]*)="


def is_secret_name(name: str) -> bool:
    import re

    words = [w for w in re.split(r"[-_.]+", name.lower()) if w]
    return bool(words) and words[-1] in _SECRET_WORDS


def secret_spans(argv: Any) -> list[tuple[int, str, str]]:
    import re

    spans: list[tuple[int, str, str]] = []
    i = 1
    while i < len(argv):
        word = argv[i]
        if word.startswith("-") and word != "-" and word != "--":
            name, sep, _value = word.lstrip("-").partition("=")
            if re.fullmatch(_ARG_NAME_PATTERN, name) and is_secret_name(name):
                if sep:
                    spans.append((i, word[:word.index("=") + 1], name))
                elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                    spans.append((i + 1, "", name))
                    i += 1
        else:
            m = re.match(_ASSIGN_PATTERN, word)
            if m and is_secret_name(m.group(2)):
                spans.append((i, word[:m.end()], m.group(2)))
        i += 1
    return spans


_URL_PASSWORD_PATTERN = r"([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:\s]*:)([^/?#@\s]+)@"


def _maybe_secret(word: str) -> bool:
    """Whether `word` could be redacted by redact_argv: True for every word that can (a name
    ending in a secret word, a URL with a password), so the others skip `re`, whose import
    (~4 ms with enum and functools) would otherwise be paid at every process's exit."""
    if "://" in word and "@" in word:
        return True
    name = word.lstrip("-").partition("=")[0] if word.startswith("-") else \
        word.partition("=")[0] if "=" in word else ""
    low = name.lower()
    return any(w in low for w in _SECRET_WORDS)


def redact_argv(argv: Any) -> list[str]:
    out = [str(a) for a in argv]
    if not any(_maybe_secret(w) for w in out[1:]):
        return out
    import re

    for i, prefix, _name in secret_spans(out):
        out[i] = prefix + "<secret>"
    for i, word in enumerate(out):
        if i and "://" in word and "@" in word:
            out[i] = re.sub(_URL_PASSWORD_PATTERN, r"\1<secret>@", word)
    return out


def _normalized(name: str) -> str:
    """PEP 503: runs of `-`, `_` and `.` as one `-`, lower case (re.sub(r"[-_.]+", "-", name)
    without importing re at exit)."""
    out: list[str] = []
    run = False  # inside a run of separators
    for ch in name:
        if ch in "-_.":
            run = True
            continue
        if run:
            out.append("-")
            run = False
        out.append(ch)
    if run:
        out.append("-")
    return "".join(out).lower()


def json_text(value: Any) -> str:
    """json.dumps(value, default=repr, sort_keys=True), through the C encoder where there is
    one: the json package imports re (~5 ms with what re needs), at every process's exit."""
    try:
        from _json import encode_basestring_ascii, make_encoder
    except ImportError:
        import json

        return json.dumps(value, default=repr, sort_keys=True)
    encode = make_encoder({}, repr, encode_basestring_ascii, None, ": ", ", ", True, False, True)
    return "".join(encode(value, 0))


class _JsonContext:
    """What json's C scanner reads from a JSONDecoder: json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


def _json_value(text: str) -> Any:
    """json.loads(text), through the C scanner json.loads itself uses (the json package
    imports re: ~5 ms at exit for each package installed from a directory or a URL); any
    error is json.loads' own."""
    try:
        from _json import make_scanner

        start = len(text) - len(text.lstrip(" \t\n\r"))
        # The C scanner reads only these attributes of a decoder: a duck type is enough.
        value, end = make_scanner(_JsonContext())(text, start)  # type: ignore[arg-type]
        if not text[end:].strip(" \t\n\r"):
            return value
    except Exception:
        pass
    import json

    return json.loads(text)


def strip_credentials(value: str) -> str:
    """Drop credentials and query strings from every URL in `value`, and the password of
    scp-style `user:password@host:path`."""
    if "@" not in value and "?" not in value and "#" not in value:
        return value  # no pattern below can match (a plain file:// URL): no `re` import
    import re

    if "://" in value:
        value = re.sub(_QUERY_PATTERN, r"\1", re.sub(_USERINFO_PATTERN, r"\1", value))
    if "@" in value:
        value = re.sub(_SCP_PATTERN, r"\1\2@", value)
    return value


def _source(direct_url: dict[str, Any]) -> dict[str, Any]:
    """A PEP 610 direct_url.json as the manifest's package_sources entry, credentials removed."""

    url = direct_url.get("url")
    if isinstance(url, str):
        url = strip_credentials(url)
    source: dict[str, Any] = {"url": url, "editable": False}
    dir_info = direct_url.get("dir_info")
    if isinstance(dir_info, dict):
        source["editable"] = bool(dir_info.get("editable", False))
    vcs_info = direct_url.get("vcs_info")
    if isinstance(vcs_info, dict):
        source["vcs"] = vcs_info.get("vcs")
        source["commit"] = vcs_info.get("commit_id")
        if vcs_info.get("requested_revision"):
            source["requested_revision"] = vcs_info["requested_revision"]
    if isinstance(direct_url.get("archive_info"), dict):
        source["archive"] = True
    return source

