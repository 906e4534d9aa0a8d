"""compare: what differs between two manifests, what is noise, tolerance, verdict, symmetry."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repro import errors
from repro.judge import compare
from repro.record import manifest

COMMIT_A = "9fceb02d0ae598e95dc970b74767f19372d61af8"
COMMIT_B = "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d"
DELETE = object()  # in a fragment: remove this key

# A complete manifest in the docs/manifest.md form (validated by manifest.from_dict below).
BASE: dict[str, Any] = {
    "schema": "repro/run/v1",
    "run": {
        "run_id": "20261123T142501.123456Z-3f2a", "name": None, "tags": {}, "note": None,
        "status": "succeeded", "exit_code": 0, "signal": None,
        "started_at": "2026-11-23T14:25:01.123456Z", "finished_at": "2026-11-23T14:25:09.531002Z",
        "duration_s": 8.407546, "replay_of": None, "repro_version": "0.1.0",
        "host": "gpu-box-3", "pid": 41233,
    },
    "command": {"argv": ["python", "train.py", "--lr", "0.01"], "cwd": "."},
    "seed": {"value": 2916384573, "source": "generated"},
    "determinism": {
        "level": "strict", "threads": 2,
        "env": {"REPRO_SEED": "2916384573", "PYTHONHASHSEED": "2916384573",
                "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONPATH": "/venv/lib/repro/hook"},
        "user_set": {},
        "hook": {"ran": True, "reason": None, "processes": 3,
                 "seeded": ["random", "numpy", "torch"], "deterministic_algorithms": True,
                 "script_seeds": [], "errors": []},
    },
    "code": {"commit": COMMIT_A, "branch": "main", "remote": "https://github.com/org/proj.git",
             "dirty": False, "patch": None, "untracked": []},
    "environment": {
        "python": {"version": "3.11.7", "implementation": "CPython",
                   "executable": "/venv/bin/python"},
        "interpreter_source": "argv",
        "packages": {"numpy": "2.4.6", "torch": "2.13.0", "repro": "0.1.0"},
        "package_sources": {},
        "lockfile": {"path": "requirements.lock", "kind": "requirements", "hash": "blake3:11",
                     "matches": True, "mismatches": [], "unlocked": ["repro"]},
        "platform": {"system": "Linux", "release": "6.1.0", "machine": "x86_64"},
        "env": {"CUDA_VISIBLE_DEVICES": "0"},
    },
    "hardware": {
        "cpu": {"model": "AMD EPYC 7B13", "logical_cores": 2, "physical_cores": 1},
        "memory_bytes": 25769803776,
        "os": {"system": "Linux", "release": "6.1.0", "version": "#1 SMP"},
        "gpus": [{"index": 0, "name": "NVIDIA H100", "uuid": "GPU-aaaa", "memory_bytes": 80,
                  "driver": "550.54", "cuda_driver": "12.4", "compute_capability": "9.0"}],
        "torch": {"version": "2.13.0", "cuda": "12.4", "cudnn": "90100"},
        "threads": {"torch_intra_op": 2, "OMP_NUM_THREADS": "2"},
    },
    "data": {
        "data/train.csv": {"kind": "file", "hash": "blake3:aa", "size": 1048576},
        "data/images": {"kind": "dir", "hash": "blake3:d1", "size": 300, "files": 3,
                        "listing": "data/0.json"},
    },
    "outputs": {
        "checkpoints": {"kind": "dir", "hash": "blake3:c1", "size": 20, "files": 2,
                        "listing": "outputs/0.json"},
    },
    "metrics": {"final": {"loss": 0.0123, "accuracy": 0.98}, "source": "metrics.json",
                "series": "metrics.jsonl"},
    "fingerprint": "blake3:f00d",
}

LISTING = {"cat/1.png": ("blake3:01", 100), "cat/2.png": ("blake3:02", 100),
           "dog/1.png": ("blake3:03", 100)}


def merge(base: Mapping[str, Any], fragment: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge a literal fragment into a copy of base (DELETE removes a key)."""
    out = copy.deepcopy(dict(base))
    for key, value in fragment.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def run(**fragment: Any) -> dict[str, Any]:
    return merge(BASE, fragment)


def as_manifest(m: Mapping[str, Any] | manifest.Manifest) -> manifest.Manifest:
    return m if isinstance(m, manifest.Manifest) else manifest.from_dict(m)


def diff_runs(a: Mapping[str, Any] | manifest.Manifest, b: Mapping[str, Any] | manifest.Manifest,
              **kwargs: Any) -> compare.DiffReport:
    """compare takes Manifest objects: the dict fixtures are read as a manifest file is."""
    return compare.diff_runs(as_manifest(a), as_manifest(b), **kwargs)


def keys(section: compare.Section) -> list[str]:
    return [c.key for c in section.changes if c.counted]


def info_keys(section: compare.Section) -> list[str]:
    return [c.key for c in section.info]


def test_base_is_a_valid_manifest() -> None:
    m = manifest.from_dict(BASE)
    report = diff_runs(manifest.to_dict(m), BASE)
    assert not report.changed
    assert report.verdict == "same recipe, same results"


# ------------------------------------------------------------------------ section by section

SECTION_CASES = [
    # (a fragment, b fragment, section, counted keys, info keys)
    pytest.param({}, {"command": {"argv": ["python", "train.py", "--lr", "0.02"]}},
                 "command", ["argv"], [], id="command-argv"),
    pytest.param({}, {"command": {"cwd": "src"}}, "command", ["cwd"], [], id="command-cwd"),
    pytest.param({}, {"run": {"status": "failed", "exit_code": 1}}, "command",
                 ["exit_code", "status"], [], id="command-exit-status"),
    pytest.param({}, {"run": {"status": "interrupted", "exit_code": 130, "signal": "SIGINT"}},
                 "command", ["exit_code", "signal", "status"], [], id="command-signal"),
    pytest.param({}, {"seed": {"value": 7, "source": "flag"},
                      "determinism": {"env": {"REPRO_SEED": "7", "PYTHONHASHSEED": "7"}}},
                 "seed", ["value"], ["source"], id="seed-value"),
    pytest.param({}, {"seed": {"source": "replayed"}}, "seed", [], ["source"],
                 id="seed-source-is-noise"),
    pytest.param({}, {"determinism": {"level": "warn"}}, "determinism", ["level"], [],
                 id="determinism-level"),
    pytest.param({}, {"determinism": {"threads": 8}}, "determinism", ["threads"], [],
                 id="determinism-threads"),
    pytest.param({}, {"determinism": {"env": {"NVIDIA_TF32_OVERRIDE": "0"}}}, "determinism",
                 ["env.NVIDIA_TF32_OVERRIDE"], [], id="determinism-injected-env-added"),
    pytest.param({}, {"determinism": {"env": {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}}},
                 "determinism", ["env.CUBLAS_WORKSPACE_CONFIG"], [],
                 id="determinism-injected-env-changed"),
    pytest.param({}, {"determinism": {"user_set": {"OMP_NUM_THREADS": "8"}}}, "determinism",
                 ["user_set.OMP_NUM_THREADS"], [], id="determinism-user-set"),
    pytest.param({}, {"determinism": {"hook": {"ran": False, "reason": "python -I"}}},
                 "determinism", ["hook.ran", "hook.reason"], [], id="determinism-hook-ran"),
    pytest.param({}, {"determinism": {"hook": {"deterministic_algorithms": False}}},
                 "determinism", ["hook.deterministic_algorithms"], [],
                 id="determinism-hook-deterministic-algorithms"),
    pytest.param({}, {"determinism": {"hook": {"seeded": ["random"]}}}, "determinism",
                 ["hook.seeded"], [], id="determinism-hook-seeded"),
    pytest.param({}, {"determinism": {"hook": {"script_seeds": [
                     {"call": "torch.manual_seed", "value": 42}]}}},
                 "determinism", ["hook.script_seeds"], [], id="determinism-script-seeds"),
    pytest.param({}, {"determinism": {"hook": {"processes": 9}}}, "determinism", [],
                 ["hook.processes"], id="determinism-processes-is-noise"),
    pytest.param({}, {"determinism": {"env": {"PYTHONPATH": "/home/bob/venv/repro/hook"}}},
                 "determinism", [], ["env.PYTHONPATH"], id="determinism-hook-dir-is-noise"),
    pytest.param({}, {"determinism": {"env": {"PYTHONPATH": "/venv/lib/repro/hook:/src"}}},
                 "determinism", ["env.PYTHONPATH"], [], id="determinism-user-pythonpath"),
    pytest.param({}, {"determinism": {"env": {"PYTHONHASHSEED": "0"}}}, "determinism",
                 ["env.PYTHONHASHSEED"], [], id="determinism-seed-var-not-following-seed"),
    pytest.param({}, {"code": {"dirty": True, "patch": {"file": "code.patch",
                                                        "hash": "blake3:p1", "size": 10}}},
                 "code", ["dirty", "patch"], [], id="code-dirty-patch"),
    pytest.param({"code": {"dirty": True, "patch": {"file": "code.patch", "hash": "blake3:p1",
                                                    "size": 10}}},
                 {"code": {"dirty": True, "patch": {"file": "code.patch", "hash": "blake3:p2",
                                                    "size": 12}}},
                 "code", ["patch"], [], id="code-patch-hash"),
    pytest.param({}, {"code": {"untracked": [{"path": "notes.py", "size": 3,
                                              "hash": "blake3:u1", "copied": True}]}},
                 "code", ["untracked"], [], id="code-untracked"),
    pytest.param({}, {"code": {"branch": "feature", "remote": "git@github.com:me/fork.git"}},
                 "code", [], ["branch", "remote"], id="code-branch-remote-are-noise"),
    pytest.param({}, {"environment": {"python": {"version": "3.12.1"}}}, "environment",
                 ["python.version"], [], id="environment-python-version"),
    pytest.param({}, {"environment": {"python": {"executable": "/home/bob/.venv/bin/python"},
                                      "interpreter_source": "beside"}},
                 "environment", [], ["interpreter_source", "python.executable"],
                 id="environment-executable-is-noise"),
    pytest.param({}, {"environment": {"lockfile": {"hash": "blake3:22"}}}, "environment",
                 ["lockfile.hash"], [], id="environment-lockfile-hash"),
    pytest.param({}, {"environment": {"lockfile": {"path": "locks/req.lock"}}}, "environment",
                 [], ["lockfile.path"], id="environment-lockfile-path-is-noise"),
    pytest.param({}, {"environment": {"lockfile": {
                     "matches": False, "mismatches": [{"name": "numpy", "locked": "2.4.6",
                                                       "installed": "2.4.7"}]}}},
                 "environment", ["lockfile.matches", "lockfile.mismatches"], [],
                 id="environment-lockfile-mismatch"),
    pytest.param({}, {"environment": {"packages": {"numpy": "2.4.7", "scipy": "1.16.0",
                                                   "torch": DELETE}}},
                 "environment", ["packages.numpy", "packages.scipy", "packages.torch"], [],
                 id="environment-packages"),
    pytest.param({}, {"environment": {"platform": {"machine": "aarch64"}}}, "environment",
                 ["platform.machine"], [], id="environment-platform"),
    pytest.param({}, {"environment": {"env": {"CUDA_VISIBLE_DEVICES": "1"}}}, "environment",
                 ["env.CUDA_VISIBLE_DEVICES"], [], id="environment-allow-listed-env"),
    pytest.param({}, {"hardware": {"gpus": [{"index": 0, "name": "NVIDIA A100", "uuid": "GPU-b",
                                             "memory_bytes": 80, "driver": "550.54",
                                             "cuda_driver": "12.4",
                                             "compute_capability": "8.0"}]}},
                 "hardware", ["gpus.0.compute_capability", "gpus.0.name"], ["gpus.0.uuid"],
                 id="hardware-gpu-model"),
    pytest.param({}, {"hardware": {"gpus": [*BASE["hardware"]["gpus"],
                                            {"index": 1, "name": "NVIDIA H100"}]}},
                 "hardware", ["gpus.1"], [], id="hardware-gpu-added"),
    pytest.param({}, {"hardware": {"cpu": {"model": "Intel Xeon", "logical_cores": 64}}},
                 "hardware", ["cpu.logical_cores", "cpu.model"], [], id="hardware-cpu"),
    pytest.param({}, {"run": {"host": "gpu-box-4"}}, "hardware", [], ["host"],
                 id="hardware-host-is-noise"),
    pytest.param({}, {"hardware": {"torch": {"cudnn": "90200"}}}, "hardware", ["torch.cudnn"],
                 [], id="hardware-cudnn"),
    pytest.param({}, {"data": {"data/train.csv": {"hash": "blake3:ab"}}}, "data",
                 ["data/train.csv"], [], id="data-file-hash"),
    pytest.param({}, {"data": {"data/extra.csv": {"kind": "file", "hash": "blake3:e",
                                                  "size": 1}}},
                 "data", ["data/extra.csv"], [], id="data-input-added"),
    pytest.param({}, {"data": {"data/train.csv": {"kind": "missing", "hash": DELETE,
                                                  "size": DELETE}}},
                 "data", ["data/train.csv"], [], id="data-went-missing"),
    pytest.param({}, {"data": {"data/images": {"listing": "data/7.json"}}}, "data", [],
                 ["data/images.listing"], id="data-listing-name-is-noise"),
    pytest.param({}, {"outputs": {"checkpoints": {"hash": "blake3:c2", "files": 3}}},
                 "outputs", ["checkpoints"], [], id="outputs-dir-hash"),
    pytest.param({}, {"outputs": {"model.pt": {"kind": "symlink", "target": "ckpt/last.pt"}}},
                 "outputs", ["model.pt"], [], id="outputs-symlink-added"),
    pytest.param({}, {"metrics": {"final": {"loss": 0.0124}}}, "metrics", ["loss"], [],
                 id="metrics-value"),
    pytest.param({}, {"metrics": {"final": {"f1": 0.5}}}, "metrics", ["f1"], [],
                 id="metrics-added"),
    pytest.param({}, {"metrics": {"series": "other.jsonl", "source": "out/metrics.json"}},
                 "metrics", [], ["series", "source"], id="metrics-files-are-noise"),
]


@pytest.mark.parametrize(("frag_a", "frag_b", "section", "counted", "info"), SECTION_CASES)
def test_diff_runs_reports_section_keys(frag_a: dict[str, Any], frag_b: dict[str, Any],
                                        section: str, counted: list[str],
                                        info: list[str]) -> None:
    report = diff_runs(run(**frag_a), run(**frag_b))
    s = report.sections[section]
    assert keys(s) == counted
    assert info_keys(s) == info
    assert s.changed is bool(counted)
    assert report.changed is bool(counted)
    others = [n for n, other in report.sections.items() if other.changed and n != section]
    assert others == []


def test_diff_runs_commit_change_lists_files_between_commits() -> None:
    files = [("M", "train.py"), ("A", "model.py")]
    report = diff_runs(run(), run(code={"commit": COMMIT_B}), code_files=files)
    (change,) = report.sections["code"].changes
    assert (change.key, change.a, change.b) == ("commit", COMMIT_A, COMMIT_B)
    assert change.to_dict()["files"] == [{"status": "M", "path": "train.py"},
                                         {"status": "A", "path": "model.py"}]
    assert report.verdict == "different code (2 files), same results"


def test_diff_runs_untracked_files_added_removed_modified() -> None:
    def u(path: str, h: str) -> dict[str, Any]:
        return {"path": path, "size": 1, "hash": h, "copied": True}

    a = run(code={"dirty": True, "untracked": [u("a.py", "h1"), u("b.py", "h2")]})
    b = run(code={"dirty": True, "untracked": [{**u("b.py", "h3"), "copied": False},
                                               u("c.py", "h4")]})
    (change,) = diff_runs(a, b).sections["code"].changes
    assert change.detail["files"] == {"added": ["c.py"], "removed": ["a.py"],
                                      "modified": ["b.py"]}
    same = diff_runs(a, run(code={"dirty": True, "untracked": [
        {**u("a.py", "h1"), "copied": False}, u("b.py", "h2")]}))
    assert not same.changed  # where repro kept a copy is not a difference


def test_diff_runs_package_changes_have_kinds() -> None:
    b = run(environment={"packages": {"numpy": "2.4.7", "scipy": "1.16.0", "torch": DELETE}})
    changes = {c.key: (c.kind, c.a, c.b) for c in
               diff_runs(run(), b).sections["environment"].changes}
    assert changes == {"packages.numpy": ("changed", "2.4.6", "2.4.7"),
                       "packages.scipy": ("added", None, "1.16.0"),
                       "packages.torch": ("removed", "2.13.0", None)}


NATIVE = {"mkl": "2024.2", "blas": "mkl", "libraries": {"libgomp.so.1": None}}
DOCKER = {"runtime": "docker", "image": None, "digest": None}


def test_what_an_earlier_repro_did_not_record_is_not_a_difference() -> None:
    # BASE has no container, conda or native keys: a record of the first release. A run
    # recorded since, in docker with MKL loaded, differs from it in nothing but what repro
    # now looks for (before: "container, native libraries" differed).
    later = run(environment={"container": DOCKER, "conda": None, "native": NATIVE})
    for a, b, side in ((run(), later, "a"), (later, run(), "b")):
        env = diff_runs(a, b).sections["environment"]
        assert keys(env) == [] and not env.changed
        assert {c.key: c.detail["not_recorded"] for c in env.info} == {
            "conda": side, "container": side, "native": side}
        # conda is null on the side that looked: the kind still says which side lacks it
        assert {c.kind for c in env.info} == {"added" if side == "a" else "removed"}
        assert diff_runs(a, b).verdict == "same recipe, same results"
    # Recorded on both sides, they count: null (looked, none) against a value.
    none = run(environment={"container": None, "conda": None, "native": None})
    env = diff_runs(none, later).sections["environment"]
    assert keys(env) == ["container.runtime", "native.blas", "native.mkl"]
    assert diff_runs(none, later).verdict == ("different container, native libraries, "
                                              "same results")


@pytest.mark.parametrize("key_by", ["listing-file", "dir-path"])
def test_diff_runs_directory_listing_names_files(key_by: str) -> None:
    listing_b = {"cat/1.png": ["blake3:01", 100],  # JSON's lists are accepted as they are
                 "cat/2.png": ["blake3:99", 120], "bird/1.png": ["blake3:04", 50]}
    b = run(data={"data/images": {"hash": "blake3:d2", "listing": "data/1.json"}})
    la = {"data/0.json" if key_by == "listing-file" else "data/images": LISTING}
    lb = {"data/1.json" if key_by == "listing-file" else "data/images": listing_b}
    report = diff_runs(run(), b, listings_a=la, listings_b=lb)
    (change,) = report.sections["data"].changes
    assert change.key == "data/images"
    assert change.detail["files"] == {"added": ["bird/1.png"], "removed": ["dog/1.png"],
                                      "modified": ["cat/2.png"]}
    assert change.a == {"kind": "dir", "hash": "blake3:d1", "size": 300, "files": 3}
    assert info_keys(report.sections["data"]) == ["data/images.listing"]
    assert report.verdict == "different data (data/images), same results"


def test_diff_runs_directory_without_listings_has_no_file_detail() -> None:
    b = run(outputs={"checkpoints": {"hash": "blake3:c2"}})
    (change,) = diff_runs(run(), b, listings_a={"outputs/0.json": LISTING}
                                  ).sections["outputs"].changes
    assert "files" not in change.detail


def test_diff_listing_large_listing() -> None:
    a = {f"f{i}": (f"h{i}", 1) for i in range(1000)}
    b = {**{k: v for k, v in a.items() if k != "f0"}, "f1": ("x", 1), "new": ("h", 1)}
    assert compare.diff_listing(a, b) == {"added": ["new"], "removed": ["f0"],
                                          "modified": ["f1"]}
    assert compare.diff_listing(b, a) == {"added": ["f0"], "removed": ["new"],
                                          "modified": ["f1"]}


# ---------------------------------------------------------------------------------- metrics

METRIC_CASES = [
    # (a, b, tolerance, counted, within_tolerance)
    pytest.param(0.5, 0.5, compare.Tolerance(), False, None, id="equal"),
    pytest.param(math.nan, math.nan, compare.Tolerance(), False, None, id="nan-equals-nan"),
    pytest.param(math.inf, math.inf, compare.Tolerance(), False, None, id="inf-equals-inf"),
    pytest.param(0.5, math.nan, compare.Tolerance(atol=1.0), True, False, id="nan-vs-number"),
    pytest.param(1.0, 1.001, compare.Tolerance(), True, False, id="no-tolerance"),
    pytest.param(1.0, 1.001, compare.Tolerance(rtol=1e-2), False, True, id="within-rtol"),
    pytest.param(1.0, 1.1, compare.Tolerance(rtol=1e-2), True, False, id="beyond-rtol"),
    pytest.param(0.0, 1e-9, compare.Tolerance(atol=1e-8), False, True, id="within-atol"),
    pytest.param(0.0, 1e-7, compare.Tolerance(atol=1e-8), True, False, id="beyond-atol"),
    pytest.param(1.0, 1.05, compare.Tolerance(rtol=1.0, per_metric={"m": 0.01}), True, False,
                 id="per-metric-overrides-rtol"),
    pytest.param(1.0, 1.005, compare.Tolerance(per_metric={"m": 0.01}), False, True,
                 id="per-metric-absolute"),
    pytest.param(1.0, 1.005, compare.Tolerance(per_metric={"other": 0.01}), True, False,
                 id="per-metric-for-another-name"),
    pytest.param(3, 3.0, compare.Tolerance(), False, None, id="int-equals-float"),
    pytest.param("ok", "ok", compare.Tolerance(), False, None, id="string-equal"),
    pytest.param("ok", "bad", compare.Tolerance(atol=10), True, None, id="string-differs"),
    pytest.param(True, 1, compare.Tolerance(atol=10), True, None, id="bool-is-not-a-number"),
    pytest.param([1, 2], [1, 2], compare.Tolerance(), False, None, id="list-equal"),
]


@pytest.mark.parametrize(("va", "vb", "tol", "counted", "within"), METRIC_CASES)
def test_diff_runs_metric_tolerance(va: Any, vb: Any, tol: compare.Tolerance, counted: bool,
                                    within: bool | None) -> None:
    report = diff_runs(run(metrics={"final": {"m": va}}),
                               run(metrics={"final": {"m": vb}}), tolerance=tol)
    s = report.sections["metrics"]
    assert s.changed is counted
    if counted or within:
        (change,) = s.changes
        assert change.within_tolerance is within
        assert change.counted is counted
    else:
        assert s.changes == ()


def test_diff_runs_metric_delta_and_relative_delta() -> None:
    report = diff_runs(run(metrics={"final": {"loss": 0.5, "acc": 0.0}}),
                               run(metrics={"final": {"loss": 0.25, "acc": 0.5}}))
    changes = {c.key: c for c in report.sections["metrics"].changes}
    assert changes["loss"].detail == {"delta": -0.25, "rel_delta": -0.5}
    assert changes["acc"].detail == {"delta": 0.5, "rel_delta": None}  # relative to 0: none
    assert report.verdict == "same recipe, different metrics"


def test_diff_runs_within_tolerance_is_listed_not_counted() -> None:
    report = diff_runs(run(), run(metrics={"final": {"loss": 0.01231}}),
                               tolerance=compare.Tolerance(rtol=1e-2))
    assert not report.changed
    (change,) = report.sections["metrics"].changes
    assert change.to_dict()["within_tolerance"] is True
    assert change.to_dict()["counted"] is False
    assert report.verdict == "same recipe, metrics within tolerance"


def test_diff_runs_nested_metrics_are_flattened() -> None:
    report = diff_runs(run(metrics={"final": {"val": {"loss": 1.0}}}),
                               run(metrics={"final": {"val": {"loss": 2.0}}}),
                               tolerance=compare.Tolerance(per_metric={"val.loss": 0.5}))
    assert keys(report.sections["metrics"]) == ["val.loss"]


@pytest.mark.parametrize(("a", "b", "tol", "expected"), [
    (1.0, 1.0, compare.Tolerance(), True),
    (math.nan, math.nan, compare.Tolerance(), True),
    (math.nan, 1.0, compare.Tolerance(atol=math.inf), False),
    (100.0, 101.0, compare.Tolerance(rtol=0.01), True),  # relative to the larger magnitude
    (101.0, 100.0, compare.Tolerance(rtol=0.01), True),
    (1.0, 1.5, compare.Tolerance(atol=0.5), True),
    (1.0, 1.5, compare.Tolerance(atol=0.5, per_metric={"x": 0.1}), False),
    (math.inf, -math.inf, compare.Tolerance(atol=1e300), False),
])
def test_within(a: float, b: float, tol: compare.Tolerance, expected: bool) -> None:
    assert compare.within(a, b, tol, "x") is expected
    assert compare.within(b, a, tol, "x") is expected


@pytest.mark.parametrize(("a", "b", "expected"), [
    (1.0, 1.0, "same"), (1.0, 1.0000001, "within-tolerance"), (1.0, 2.0, "different"),
    (None, 1.0, "missing"), (1.0, None, "missing"), ("x", "x", "same"), ("x", "y", "different"),
])
def test_metric_status(a: Any, b: Any, expected: str) -> None:
    assert compare.metric_status(a, b, compare.Tolerance(rtol=1e-3), "m") == expected


@pytest.mark.parametrize(("spec", "expected"), [
    ("loss=1e-4", ("loss", 1e-4)),
    ("val/acc = 0.01", ("val/acc", 0.01)),
    ("a=b=0.5", ("a=b", 0.5)),  # the number never holds "=", so the last one splits
    ("loss=0", ("loss", 0.0)),
    ("loss=inf", ("loss", math.inf)),
])
def test_parse_metric_tolerance(spec: str, expected: tuple[str, float]) -> None:
    assert compare.parse_metric_tolerance(spec) == expected


@pytest.mark.parametrize("spec", ["loss", "=1e-4", "loss=", "loss=abc", "loss=-1", "loss=nan"])
def test_parse_metric_tolerance_rejects(spec: str) -> None:
    with pytest.raises(errors.UsageError) as e:
        compare.parse_metric_tolerance(spec)
    assert spec in e.value.message
    assert e.value.hint and "NAME=TOLERANCE" in e.value.hint


@pytest.mark.parametrize("kwargs", [{"rtol": -1.0}, {"atol": math.nan},
                                    {"per_metric": {"loss": -0.1}}])
def test_tolerance_rejects_negative_or_nan(kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.UsageError):
        compare.Tolerance(**kwargs)


# ---------------------------------------------------------------------------------- noise


def test_diff_runs_noise_only_is_not_a_difference() -> None:
    b = run(
        run={"run_id": "20261124T090000.000001Z-9c1d", "started_at": "2026-11-24T09:00:00Z",
             "finished_at": "2026-11-24T09:00:10Z", "duration_s": 10.0, "pid": 7,
             "host": "gpu-box-9", "name": "again", "tags": {"try": "2"}, "note": "rerun",
             "replay_of": "20261123T142501.123456Z-3f2a", "repro_version": "0.2.0"},
        seed={"source": "replayed"},
        determinism={"hook": {"processes": 5},
                     "env": {"PYTHONPATH": "/home/bob/venv/lib/repro/hook"}},
        code={"branch": "other", "remote": "https://github.com/me/fork.git"},
        environment={"python": {"executable": "/opt/py/bin/python"},
                     "interpreter_source": "beside", "lockfile": {"path": "req.lock"}},
        hardware={"gpus": [{**BASE["hardware"]["gpus"][0], "uuid": "GPU-bbbb"}]},
        data={"data/images": {"listing": "data/5.json"}},
        outputs={"checkpoints": {"listing": "outputs/3.json"}},
        metrics={"series": "x.jsonl", "source": "out.json"},
    )
    report = diff_runs(run(), b, listings_a={"data/0.json": LISTING},
                               listings_b={"data/5.json": LISTING})
    assert report.changed is False
    assert report.verdict == "same recipe, same results"
    assert [c.key for c in report.info] == [
        "duration_s", "finished_at", "name", "note", "pid", "replay_of", "repro_version",
        "run_id", "started_at", "tags"]
    assert all(not c.counted for c in report.info)
    for section in report.sections.values():
        assert all(not c.counted for c in section.info)
    assert info_keys(report.sections["hardware"]) == ["gpus.0.uuid", "host"]


def test_diff_runs_seed_variables_follow_the_seed() -> None:
    b = run(seed={"value": 7},
            determinism={"env": {"REPRO_SEED": "7", "PYTHONHASHSEED": "7"}})
    report = diff_runs(run(), b)
    assert [n for n, s in report.sections.items() if s.changed] == ["seed"]
    det = report.sections["determinism"]
    assert info_keys(det) == ["env.PYTHONHASHSEED", "env.REPRO_SEED"]
    assert det.info[0].detail == {"follows": "seed.value"}
    assert report.verdict == "different seed, same results"


# -------------------------------------------------------------------------------- verdicts

VERDICT_CASES = [
    pytest.param({}, "same recipe, same results", id="same"),
    pytest.param({"outputs": {"checkpoints": {"hash": "blake3:c2"}}},
                 "same recipe, different outputs", id="outputs"),
    pytest.param({"outputs": {"checkpoints": {"hash": "blake3:c2"}},
                  "metrics": {"final": {"loss": 1.0}}},
                 "same recipe, different outputs and metrics", id="outputs-and-metrics"),
    pytest.param({"run": {"status": "failed", "exit_code": 1}},
                 "same recipe, different exit status", id="exit-status"),
    pytest.param({"code": {"commit": COMMIT_B}, "metrics": {"final": {"loss": 1.0}}},
                 "different code (2 files), different metrics", id="code-metrics"),
    pytest.param({"seed": {"value": 1}}, "different seed, same results", id="seed"),
    pytest.param({"hardware": {"gpus": []}, "metrics": {"final": {"loss": 1.0}}},
                 "same recipe, different GPU, different metrics", id="gpu"),
    pytest.param({"hardware": {"cpu": {"model": "Intel"}}}, "same recipe, different CPU, same results",
                 id="cpu"),
    pytest.param({"hardware": {"memory_bytes": 1}}, "same recipe, different hardware, same results",
                 id="hardware"),
    pytest.param({"environment": {"platform": {"release": "6.2"}}},
                 "same recipe, different platform, same results", id="platform"),
    pytest.param({"environment": {"packages": {"numpy": "1.0", "scipy": "1"}}},
                 "different packages (2), same results", id="packages"),
    pytest.param({"environment": {"python": {"version": "3.12.0"}, "packages": {"numpy": "1"}}},
                 "different python, packages (1), same results", id="python"),
    pytest.param({"environment": {"lockfile": {"hash": "blake3:99"}}},
                 "different environment, same results", id="environment"),
    pytest.param({"determinism": {"level": "off"}},
                 "different determinism settings, same results", id="determinism"),
    pytest.param({"command": {"cwd": "src"}}, "different command, same results", id="command"),
    pytest.param({"code": {"dirty": True}}, "different uncommitted changes, same results",
                 id="dirty"),
    pytest.param({"data": {"data/train.csv": {"hash": "blake3:x"},
                           "data/images": {"hash": "blake3:y"}}},
                 "different data, same results", id="data-two-inputs"),
    pytest.param({"code": {"commit": COMMIT_B}, "command": {"cwd": "src"},
                  "seed": {"value": 1}, "data": {"data/train.csv": {"hash": "blake3:x"}},
                  "hardware": {"gpus": []}, "outputs": {"checkpoints": {"hash": "blake3:c9"}}},
                 "different code (2 files), command, data +2 more, different outputs",
                 id="many-causes-capped"),
    pytest.param({"fingerprint": "blake3:beef"},
                 "same settings but different fingerprints, same results", id="fingerprint"),
]


@pytest.mark.parametrize(("frag_b", "verdict"), VERDICT_CASES)
def test_diff_runs_verdict(frag_b: dict[str, Any], verdict: str) -> None:
    files = [("M", "train.py"), ("A", "model.py")]
    assert diff_runs(run(), run(**frag_b), code_files=files).verdict == verdict


def test_diff_runs_verdict_without_results() -> None:
    a = run(outputs=DELETE, metrics=DELETE)
    assert diff_runs(a, a).verdict == "same recipe, no outputs or metrics to compare"
    assert diff_runs(a, merge(a, {"seed": {"value": 1}})).verdict == "different seed"


# ----------------------------------------------------------------------------- JSON shape


def test_report_to_dict_shape() -> None:
    b = run(run={"run_id": "B"}, seed={"value": 1},
            metrics={"final": {"loss": math.nan, "accuracy": math.inf}})
    doc = diff_runs(run(), b).to_dict()
    text = json.dumps(doc, allow_nan=False)  # no NaN/Infinity tokens: valid JSON for jq
    assert json.loads(text) == doc
    assert doc["schema"] == "repro/diff/v1"
    assert (doc["a"], doc["b"], doc["changed"]) == ("20261123T142501.123456Z-3f2a", "B", True)
    assert doc["verdict"] == "different seed, different metrics"
    assert list(doc["sections"]) == list(compare.SECTIONS)
    assert doc["sections"]["seed"] == {
        "changed": True, "info": [],
        "changes": [{"key": "value", "kind": "changed", "a": 2916384573, "b": 1,
                     "counted": True}]}
    loss = next(c for c in doc["sections"]["metrics"]["changes"] if c["key"] == "loss")
    assert (loss["a"], loss["b"], loss["delta"], loss["rel_delta"]) == (0.0123, "nan", "nan",
                                                                        "nan")
    assert doc["fingerprint"] == {"a": "blake3:f00d", "b": "blake3:f00d", "same": True}
    assert doc["tolerance"] == {"rtol": 0.0, "atol": 0.0, "per_metric": {}}
    assert {c["key"] for c in doc["info"]} == {"run_id"}


def test_diff_runs_rejects_unknown_schema() -> None:
    with pytest.raises(errors.ManifestError, match="repro/run/v9"):
        diff_runs(run(), run(schema="repro/run/v9"))


def test_diff_runs_rejects_section_that_is_not_a_mapping() -> None:
    with pytest.raises(errors.ManifestError, match="'data'"):
        diff_runs(run(), run(data=["x"]))


@pytest.mark.parametrize(("names", "expected"), [
    ((), compare.SECTIONS),
    (("metrics", "code"), ("code", "metrics")),  # display order, whatever the order asked
])
def test_select_sections(names: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert compare.select_sections(names) == expected


def test_select_sections_unknown_name() -> None:
    with pytest.raises(errors.UsageError) as e:
        compare.select_sections(["metric"])
    assert e.value.hint and "metrics" in e.value.hint


def test_compare_imports_nothing_heavy() -> None:
    code = ("import sys, repro.judge.compare; "
            "bad = [m for m in ('rich', 'yaml', 'git', 'typer') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------------------- symmetry

names = st.sampled_from(["a", "b", "c"])
small = st.one_of(st.none(), st.integers(0, 2), st.sampled_from(["x", "y"]))
counts = st.one_of(st.none(), st.integers(0, 2))  # where the schema wants an integer
labels = st.one_of(st.none(), st.sampled_from(["x", "y"]))  # where it wants a string
hashes = st.sampled_from(["blake3:01", "blake3:02"])


@st.composite
def listings(draw: st.DrawFn) -> dict[str, tuple[str, int]]:
    return draw(st.dictionaries(st.sampled_from(["f1", "f2", "d/f3"]),
                                st.tuples(hashes, st.integers(0, 2)), max_size=3))


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["file", "dir", "symlink", "missing"]))
    if kind == "symlink":
        return {"kind": kind, "target": draw(names)}
    if kind == "missing":
        return {"kind": kind}
    e = {"kind": kind, "hash": draw(hashes), "size": draw(st.integers(0, 2))}
    if kind == "dir":
        e["listing"] = draw(st.sampled_from(["data/0.json", "data/1.json"]))
    return e


metric_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=16),
                          st.integers(-2, 2), st.sampled_from(["ok", "bad"]), st.booleans())


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    seed = draw(st.integers(0, 2))
    env = draw(st.dictionaries(st.sampled_from(["PYTHONPATH", "TF_DETERMINISTIC_OPS"]),
                               st.sampled_from(["/h1", "/h2:/u", "/h1:/u", "1"])))
    if draw(st.booleans()):
        env["REPRO_SEED"] = str(seed)
    return {
        "schema": "repro/run/v1",
        "run": {"run_id": draw(names), "status": draw(st.sampled_from(["succeeded", "failed"])),
                "exit_code": draw(st.integers(0, 1)), "host": draw(names),
                "pid": draw(st.integers(1, 3)), "started_at": draw(names)},
        "command": {"argv": draw(st.lists(names, min_size=1, max_size=2)), "cwd": "."},
        "seed": {"value": seed, "source": draw(st.sampled_from(["flag", "generated"]))},
        "determinism": {"level": draw(st.sampled_from(["strict", "off"])), "env": env,
                        "hook": {"ran": draw(st.booleans()), "processes": draw(counts)}},
        "code": {"commit": draw(st.sampled_from([COMMIT_A, COMMIT_B])), "branch": draw(labels),
                 "dirty": draw(st.booleans()),
                 "patch": draw(st.one_of(st.none(), st.fixed_dictionaries(
                     {"file": st.just("code.patch"), "hash": hashes}))),
                 "untracked": draw(st.lists(st.fixed_dictionaries(
                     {"path": names, "hash": hashes, "copied": st.booleans()}), max_size=2))},
        "environment": {"python": {"version": draw(st.sampled_from(["3.11", "3.12"])),
                                   "executable": draw(names)},
                        "packages": draw(st.dictionaries(names, st.sampled_from(["1", "2"]))),
                        "platform": {"release": draw(small)}},
        "hardware": {"cpu": {"model": draw(small)},
                     "gpus": draw(st.lists(st.fixed_dictionaries(
                         {"name": st.sampled_from(["H100", "A100"]), "uuid": names}),
                         max_size=2))},
        "data": draw(st.dictionaries(st.sampled_from(["data/x", "data/y"]), entries(),
                                     max_size=2)),
        "outputs": draw(st.dictionaries(st.sampled_from(["out"]), entries(), max_size=1)),
        "metrics": {"final": draw(st.dictionaries(st.sampled_from(["loss", "acc"]),
                                                  metric_values)),
                    "series": draw(small)},
        "fingerprint": draw(st.sampled_from([None, "blake3:f1", "blake3:f2"])),
    }


def summary(report: compare.DiffReport) -> dict[str, Any]:
    return {
        name: (s.changed, sorted((c.key, c.counted, c.within_tolerance) for c in s.changes),
               sorted(c.key for c in s.info))
        for name, s in report.sections.items()
    }


MIRROR = {"added": "removed", "removed": "added", "changed": "changed"}


@settings(max_examples=150, deadline=None)
@given(a=manifests(), b=manifests(), la=listings(), lb=listings(),
       tol=st.builds(compare.Tolerance, rtol=st.sampled_from([0.0, 0.1]),
                     atol=st.sampled_from([0.0, 0.5]),
                     per_metric=st.dictionaries(st.just("acc"), st.sampled_from([0.0, 1.0]))),
       code_files=st.lists(st.tuples(st.sampled_from(["M", "A"]), names), max_size=2))
def test_diff_runs_is_symmetric(a: dict[str, Any], b: dict[str, Any], la: Any, lb: Any,
                                tol: compare.Tolerance, code_files: list[tuple[str, str]],
                                ) -> None:
    ab = diff_runs(a, b, code_files=code_files, listings_a={"data/0.json": la},
                           listings_b={"data/x": lb}, tolerance=tol)
    ba = diff_runs(b, a, code_files=code_files, listings_a={"data/x": lb},
                           listings_b={"data/0.json": la}, tolerance=tol)
    assert ab.changed == ba.changed
    assert summary(ab) == summary(ba)
    assert ab.verdict == ba.verdict
    for name, s in ab.sections.items():
        for x, y in zip(s.changes, ba.sections[name].changes, strict=True):
            assert (x.key, MIRROR[x.kind]) == (y.key, y.kind)
            files = x.detail.get("files")
            if isinstance(files, dict):
                assert files["added"] == y.detail["files"]["removed"]
    json.dumps(ab.to_dict(), allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(a=manifests())
def test_diff_runs_of_a_run_with_itself_is_same(a: dict[str, Any]) -> None:
    report = diff_runs(a, copy.deepcopy(a))
    assert not report.changed
    assert report.verdict.startswith("same recipe")
    assert all(not s.changes and not s.info for s in report.sections.values())


def _two_nodes(host1: str, ranks1: list[int]) -> dict[str, Any]:
    return run(distributed={
        "job": "slurm:7.0", "source": "slurm", "launcher": "srun", "nnodes": 2, "world_size": 2,
        "node_rank": 0, "complete": True,
        "members": [{"node_rank": 0, "status": "succeeded", "host": "n0", "ranks": [0]},
                    {"node_rank": 1, "status": "succeeded", "host": host1, "ranks": ranks1}]})


def test_diff_runs_topology_compares_members_field_by_field() -> None:
    """Another host for a node is noise (every job lands on other hosts), and a change names
    the member and its field, not the whole list of members."""
    same = diff_runs(_two_nodes("n1", [1]), _two_nodes("n7", [1]))
    assert keys(same.sections["topology"]) == []
    assert info_keys(same.sections["topology"]) == ["members.1.host"]
    assert same.verdict == "same recipe, same results"
    moved = diff_runs(_two_nodes("n1", [1]), _two_nodes("n1", []))
    assert keys(moved.sections["topology"]) == ["members.1.ranks"]
