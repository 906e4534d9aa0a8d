"""Property-based fuzzing of everything repro parses (issue 10, "done when" 2).

The property, for manifests, RUN references, configuration, every lockfile format, metrics
files, series and metric patterns: the result is plain data or a `ReproError` (a clear
`error:` line with the documented exit code), never another exception, never a hang (each
example runs under a SIGALRM deadline) and never unbounded memory (the bomb cases run in a
memory-limited child process). `HYPOTHESIS_PROFILE=ci` runs more examples.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repro import errors
from repro.capture import lockfiles, metrics
from repro.record import config, manifest, store
from tests.conftest import PYTHON

settings.register_profile("default", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.register_profile("ci", max_examples=600, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

EXAMPLE_SECONDS = 5
EXAMPLE_MEMORY = 1024**3


@contextlib.contextmanager
def deadline(seconds: int = EXAMPLE_SECONDS, memory: int = EXAMPLE_MEMORY) -> Iterator[None]:
    """Fail (not hang, not eat the machine) when one example runs longer than `seconds` or
    takes more than `memory` bytes of address space: a hang is a TimeoutError, unbounded
    memory a MemoryError (reading /dev/zero is one read() that no signal interrupts)."""
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"example ran over {seconds} s: a hang")

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = used + memory if hard == resource.RLIM_INFINITY else min(used + memory, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def clear_or_value(fn: Callable[[], Any]) -> Any:
    """Run `fn`; a ReproError must be one clear line, anything else but a value fails."""
    with deadline():
        try:
            return fn()
        except errors.ReproError as e:
            assert e.message and "\n" not in e.message, e.message
            assert len(e.message) < 2000, e.message[:200]
            return e


REAL_MANIFEST = manifest.dumps({
    "schema": manifest.SCHEMA,
    "run": {"run_id": "20261123T142501.123456Z-3f2a", "status": "succeeded",
            "started_at": "2026-11-23T14:25:01.123456Z", "name": "first", "tags": {"t": "v"},
            "exit_code": 0, "duration_s": 1.5, "pid": 42},
    "command": {"argv": ["python", "train.py", "--lr", "0.01", "a && b"], "cwd": "."},
    "seed": {"value": 3, "source": "flag"},
    "determinism": {"level": "strict", "threads": 2, "env": {"PYTHONHASHSEED": "3"},
                    "hook": {"ran": True, "seeded": ["random"]}},
    "code": {"commit": "0" * 40, "branch": "main", "dirty": False, "patch": None,
             "untracked": []},
    "environment": {"packages": {"numpy": "2.4.6"}, "python": {"version": "3.11.7"}},
    "hardware": {"cpu": {"model": "x"}, "gpus": []},
    "data": {"d": {"kind": "file", "hash": "blake3:00", "size": 1}},
    "outputs": {}, "metrics": {"final": {"loss": 0.5, "acc.0": 1}},
    "fingerprint": "blake3:ff",
})

yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["~", "yes", "0x1F", "1e5", ".inf", "2026-01-01",
                                           "&a x", "*a", "!!set {a}", "<<: {a: 1}"]))
plain_data = st.recursive(
    yaml_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=30)
yaml_noise = st.sampled_from([
    "&a ", "*a", "[", "]", "{", "}", ": ", "- ", "\n", "  ", "!!python/object:os.system ",
    "!!binary ", "<<: ", "---\n", "...\n", '"\\udcff"', "'", "#", "%YAML 1.1\n", "\t", "?",
    "\x00", "\ufeff", "0x" + "f" * 40, "1" * 50])


@st.composite
def mutated_manifest(draw: st.DrawFn) -> str:
    """A real manifest with a few edits: noise inserted, characters deleted, lines swapped."""
    text = REAL_MANIFEST
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "dup-line"]))
        if action == "insert":
            text = text[:pos] + draw(st.one_of(yaml_noise, st.text(max_size=5))) + text[pos:]
        elif action == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 20)):]
        else:
            lines = text.splitlines(keepends=True)
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join([*lines[:i], lines[i], *lines[i:]])
    return text


def check_manifest_text(text: str) -> None:
    def load() -> Any:
        data = manifest.loads(text, "m.yaml")
        m = manifest.from_dict(data, "m.yaml")
        # What show/diff do with a loaded manifest must not fail either.
        manifest.dumps(manifest.to_dict(m))
        json.dumps(manifest.to_dict(m), default=str)
        return m

    clear_or_value(load)


@given(mutated_manifest())
def test_fuzz_mutated_manifest(text: str) -> None:
    check_manifest_text(text)


@given(plain_data)
def test_fuzz_random_yaml_structures(data: Any) -> None:
    check_manifest_text(manifest.dumps(data))
    check_manifest_text(manifest.dumps({**manifest.loads(REAL_MANIFEST, "m"), "hardware": data}))


@given(st.lists(yaml_noise, max_size=30).map("".join))
def test_fuzz_yaml_token_soup(text: str) -> None:
    check_manifest_text(text)


def test_real_manifest_round_trips() -> None:
    m = manifest.from_dict(manifest.loads(REAL_MANIFEST, "m"), "m")
    assert m.command.argv[-1] == "a && b"  # an `&` in a value is not an anchor


# Documents that need a memory limit: alias bombs, deep nesting, merge-key bombs.
BOMB_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3))
from repro import errors
from repro.record import manifest
text = sys.stdin.read()
try:
    manifest.loads(text, "bomb.yaml")
except errors.ReproError as e:
    print("ERROR", e.message)
else:
    print("OK")
"""


@given(kind=st.sampled_from(["alias", "merge", "deep-flow", "deep-block", "recursive"]),
       width=st.integers(2, 12), depth=st.integers(5, 40))
@settings(max_examples=12)
def test_fuzz_bombs_in_bounded_memory(kind: str, width: int, depth: int) -> None:
    if kind == "alias":
        lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]"
                                   for i in range(1, depth)]
        text = "\n".join(lines) + "\n"
    elif kind == "merge":
        lines = ["m0: &m0 {x: 1}"] + [
            f"m{i}: &m{i}\n  <<: [{', '.join([f'*m{i - 1}'] * width)}]\n  k{i}: 1"
            for i in range(1, depth)]
        text = "\n".join(lines) + "\n"
    elif kind == "deep-flow":
        text = "a: " + "[" * (depth * 2000) + "]" * (depth * 2000) + "\n"
    elif kind == "deep-block":
        text = "".join("  " * i + "k:\n" for i in range(depth * 40))
    else:
        text = "a: &a [*a]\n"
    done = subprocess.run([PYTHON, "-c", BOMB_SCRIPT], input=text, capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ERROR") or (kind == "deep-block" and depth * 40 <= 64), \
        done.stdout


ref_text = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["latest", "latest~", "latest~1", "latest~-1", ".", "..", "/", "/dev/zero",
                     "/dev/zero/x", "manifest.yaml", "x.yaml", "2026", "\x00", "a" * 300,
                     "latest~" + "9" * 5000, "d/" * 3000]),
    st.builds(lambda a, b: a + b, st.sampled_from(["latest~", "../", "./", "2026"]),
              st.text(max_size=10)))


@given(ref=ref_text)
def test_fuzz_run_references(repo: Path, ref: str) -> None:
    runs = store.open_here(repo)
    result = clear_or_value(lambda: runs.load(ref))
    assert isinstance(result, (errors.ReproError, manifest.Manifest))


config_values = st.one_of(plain_data, st.integers(-2**70, 2**70), st.text(max_size=30))


@given(table=st.dictionaries(
    st.one_of(st.sampled_from(sorted(config._KEYS)), st.text(max_size=10)), config_values,
    max_size=4))
def test_fuzz_config_yaml(tmp_path_factory: pytest.TempPathFactory, table: dict[str, Any]) -> None:
    root = tmp_path_factory.mktemp("cfg")
    (root / "repro.yaml").write_text(manifest.dumps(table))
    result = clear_or_value(lambda: config.load(root))
    if isinstance(result, config.Config):
        assert result.seed is None or 0 <= result.seed < 2**32
        assert result.threads is None or 1 <= result.threads <= config.MAX_THREADS


@given(text=st.one_of(mutated_manifest(), st.lists(yaml_noise, max_size=20).map("".join),
                      st.text(max_size=200)),
       suffix=st.sampled_from(["repro.yaml", "pyproject.toml"]))
def test_fuzz_config_text(tmp_path_factory: pytest.TempPathFactory, text: str,
                          suffix: str) -> None:
    root = tmp_path_factory.mktemp("cfg")
    body = f"[tool.repro]\n{text}" if suffix == "pyproject.toml" else text
    (root / suffix).write_text(body, encoding="utf-8", errors="surrogateescape")
    clear_or_value(lambda: config.load(root))


LOCK_SEEDS = {
    "uv.lock": 'version = 1\n[[package]]\nname = "numpy"\nversion = "2.4.6"\n',
    "poetry.lock": '[[package]]\nname = "rich"\nversion = "15.0.0"\n',
    "pdm.lock": '[[package]]\nname = "typer"\nversion = "0.29.2"\n',
    "Pipfile.lock": json.dumps({"default": {"blake3": {"version": "==1.0.11"}}}),
    "conda-lock.yml": "package:\n- {name: tqdm, version: 4.66.1, manager: pip}\n",
    "requirements.lock": "numpy==2.4.6\n",
}


@st.composite
def lockfile(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(LOCK_SEEDS)))
    how = draw(st.sampled_from(["mutate", "structure", "text"]))
    if how == "structure":
        data = draw(plain_data)
        if name == "Pipfile.lock":
            text = json.dumps(data)
        elif name in ("uv.lock", "poetry.lock", "pdm.lock"):
            text = f"package = {json.dumps(data)}\n" if not isinstance(data, dict) else \
                "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in data.items())
        else:
            text = manifest.dumps({"package": data} if draw(st.booleans()) else data)
        return name, text
    if how == "text":
        return name, draw(st.text(max_size=200))
    text = LOCK_SEEDS[name]
    pos = draw(st.integers(0, len(text)))
    return name, text[:pos] + draw(st.one_of(yaml_noise, st.text(max_size=5))) + \
        text[pos + draw(st.integers(0, 5)):]


@given(lock=lockfile())
def test_fuzz_every_lockfile_format(tmp_path_factory: pytest.TempPathFactory,
                                    lock: tuple[str, str]) -> None:
    name, text = lock
    root = tmp_path_factory.mktemp("lock")
    (root / name).write_text(text, encoding="utf-8", errors="surrogateescape")
    result = clear_or_value(lambda: lockfiles.read_lock(root, root / name))
    if isinstance(result, errors.ReproError):
        assert isinstance(result, errors.LockfileError)
    else:
        assert all(isinstance(v, str) for vs in result.pins.values() for v in vs)


@given(data=st.one_of(plain_data, st.text(max_size=100)),
       suffix=st.sampled_from([".json", ".yaml"]), raw=st.booleans())
def test_fuzz_metrics_files(tmp_path_factory: pytest.TempPathFactory, data: Any, suffix: str,
                            raw: bool) -> None:
    path = tmp_path_factory.mktemp("m") / f"metrics{suffix}"
    if raw and isinstance(data, str):
        text = data
    else:
        text = json.dumps(data) if suffix == ".json" else manifest.dumps(data)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    result = clear_or_value(lambda: metrics.read_metrics_file(path))
    if isinstance(result, errors.ReproError):
        assert isinstance(result, errors.DataError)
    else:
        json.dumps(result)  # what the manifest and --json will do with it


@given(lines=st.lists(st.one_of(st.builds(json.dumps, plain_data), st.text(max_size=40),
                                st.sampled_from(["[" * 5000, '{"a": ' + "1" * 5000 + "}"])),
                      max_size=10))
def test_fuzz_metric_series(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> None:
    path = tmp_path_factory.mktemp("s") / "metrics.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
    result = clear_or_value(lambda: metrics.read_series(path))
    assert not isinstance(result, errors.ReproError), result
    json.dumps(result[0])


@given(patterns=st.lists(st.one_of(st.text(max_size=20),
                                   st.sampled_from(["(?P<loss>[\\d.]+)", "(?P<a>", "(?P<x>\\d+)",
                                                    "(", "[", "(?P<v>.*)"])), max_size=3),
       log=st.text(max_size=200))
def test_fuzz_metric_patterns(tmp_path_factory: pytest.TempPathFactory, patterns: list[str],
                              log: str) -> None:
    path = tmp_path_factory.mktemp("l") / "stdout.log"
    path.write_text(log + "\nx=" + "1" * 5000 + "\n", encoding="utf-8", errors="surrogateescape")
    result = clear_or_value(lambda: metrics.scan_log(path, patterns))
    if isinstance(result, errors.ReproError):
        assert isinstance(result, errors.ConfigError)
    else:
        json.dumps(result)
        for value in result.values():
            str(value)  # a captured number can always be printed again


@pytest.mark.slow
@given(text=mutated_manifest())
@settings(max_examples=8)
def test_fuzz_manifest_through_the_cli(repo: Path, text: str) -> None:
    """As a process: exit 0 or the documented 2, one `error:` line, never 3."""
    path = repo / "m.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    done = subprocess.run([PYTHON, "-m", "repro", "show", str(path), "--json"], cwd=repo,
                          capture_output=True, text=True, timeout=60, errors="replace",
                          preexec_fn=lambda: resource.setrlimit(
                              resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3)))
    assert done.returncode in (0, 2), done.stderr
    if done.returncode == 2:
        assert sum(line.startswith("error:") for line in done.stderr.splitlines()) == 1
    else:
        assert json.loads(done.stdout)["schema"] == manifest.SCHEMA
