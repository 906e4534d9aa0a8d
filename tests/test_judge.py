"""judge: checks and verdicts over real files, with the tensor probe run as a real subprocess."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from repro import errors
from repro.capture import data
from repro.capture.listings import read_listing, to_section
from repro.judge import checks as judge
from repro.judge import compare, tensors
from repro.record import manifest

PY = sys.executable
NO_TOL = compare.Tolerance()
RTOL = compare.Tolerance(rtol=1e-5)


def compare_outputs(expected: Any, actual: Any, **kwargs: Any) -> list[judge.Check]:
    """judge takes typed `outputs` sections: the dict fixtures are read as a manifest's are."""
    return judge.compare_outputs(manifest.entries(expected, "outputs"),
                                 manifest.entries(actual, "outputs"), **kwargs)


# ---------------------------------------------------------------------------------------------
# Helpers: real output sections, as `repro run` records them.


class Run:
    """A run's root (where its outputs live) and its run directory (listings)."""

    def __init__(self, base: Path, name: str) -> None:
        self.root = base / name
        self.run_dir = base / f"{name}-run"
        self.root.mkdir(parents=True)
        self.run_dir.mkdir()

    def write(self, rel: str, content: bytes | str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            p.write_text(content, encoding="utf-8")
        else:
            p.write_bytes(content)
        return p

    def outputs(self, *paths: str) -> tuple[dict[str, Any], dict[str, dict[str, tuple[str, int]]]]:
        entries = data.hash_paths(list(paths), root=self.root, cache_dir=None)
        section = to_section(entries, self.run_dir, "outputs")
        listings = {e["listing"]: read_listing(self.run_dir / e["listing"])
                    for e in section.values() if "listing" in e}
        return section, listings


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Run, Run]:
    return Run(tmp_path, "expected"), Run(tmp_path, "actual")


def judge_outputs(exp: Run, act: Run, *paths: str, tol: compare.Tolerance = NO_TOL,
                  python: str = PY) -> list[judge.Check]:
    se, le = exp.outputs(*paths)
    sa, la = act.outputs(*paths)
    return compare_outputs(se, sa, expected_root=exp.root, actual_root=act.root,
                                 expected_listings=le, actual_listings=la, python=python, tol=tol)


def one(checks: Sequence[judge.Check]) -> judge.Check:
    assert len(checks) == 1, checks
    return checks[0]


def save_npy(run: Run, rel: str, arr: Any) -> None:
    p = run.root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    np.save(p, arr)


def write_safetensors(path: Path, tensors: Mapping[str, tuple[str, list[int], bytes]],
                      metadata: Mapping[str, str] | None = None) -> None:
    """The safetensors format by hand: u64 LE header length, JSON header, raw buffers."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))


def bf16(values: Sequence[float]) -> bytes:
    """bfloat16 bytes: the top half of each float32 (the values used are exact in bf16)."""
    f32 = np.asarray(values, dtype=np.float32)
    return (f32.view(np.uint32) >> 16).astype("<u2").tobytes()


# ---------------------------------------------------------------------------------------------
# verdict, Check, exit code.


@pytest.mark.parametrize(("statuses", "expected"), [
    (["same"], "bitwise"),
    (["same", "same", "same"], "bitwise"),
    (["same", "within-tolerance"], "within-tolerance"),
    (["within-tolerance"], "within-tolerance"),
    (["same", "different"], "not-reproduced"),
    (["within-tolerance", "missing"], "not-reproduced"),
    (["missing"], "not-reproduced"),
    (["same", "bogus"], "not-reproduced"),
    ([], "not-reproduced"),
])
def test_verdict_table(statuses: list[str], expected: str) -> None:
    checks = [judge.Check("output", f"f{i}", s, "") for i, s in enumerate(statuses)]
    assert judge.verdict(checks) == expected
    assert expected in judge.VERDICTS


def test_check_to_dict_merges_data_as_plain_json() -> None:
    c = judge.Check("metric", "loss", "different", "loss: nan vs 1.0",
                    {"expected": math.nan, "actual": 1.0, "status": "overridden?",
                     "shape": (2, 3)})
    d = c.to_dict()
    assert d == {"kind": "metric", "name": "loss", "status": "different",
                 "detail": "loss: nan vs 1.0", "expected": "nan", "actual": 1.0,
                 "shape": [2, 3]}
    json.dumps(d, allow_nan=False)


@pytest.mark.parametrize(("expected", "actual", "status", "detail"), [
    (0, 0, "same", "exit code 0"),
    (0, 1, "different", "exit code 0 vs 1"),
    (0, 137, "different", "exit code 0 vs 137 (SIGKILL)"),
    (None, 0, "missing", "no exit code for the recorded run (the other side exited 0)"),
    (0, None, "missing", "no exit code for the replay (the other side exited 0)"),
    (None, None, "missing", "no exit code for the recorded run"),
])
def test_compare_exit_table(expected: int | None, actual: int | None, status: str,
                            detail: str) -> None:
    c = judge.compare_exit(expected, actual)
    assert (c.kind, c.name, c.status, c.detail) == ("exit", "exit_code", status, detail)
    assert c.data == {"expected": expected, "actual": actual}


# ---------------------------------------------------------------------------------------------
# Metrics.


@pytest.mark.parametrize(("a", "b", "tol", "status"), [
    (0.51, 0.51, NO_TOL, "same"),
    (3, 3.0, NO_TOL, "same"),
    (1.0, 1.000001, compare.Tolerance(rtol=1e-5), "within-tolerance"),
    (1.0, 1.000001, NO_TOL, "different"),
    (0.0, 1e-9, compare.Tolerance(atol=1e-8), "within-tolerance"),
    (0.0, 1e-7, compare.Tolerance(atol=1e-8), "different"),
    (0.51, 0.52, compare.Tolerance(per_metric={"loss": 0.02}), "within-tolerance"),
    (0.51, 0.52, compare.Tolerance(rtol=1.0, per_metric={"loss": 0.001}), "different"),
    (math.nan, math.nan, NO_TOL, "same"),
    (math.nan, 0.5, compare.Tolerance(rtol=1.0, atol=1.0), "different"),
    ("adam", "adam", NO_TOL, "same"),
    ("adam", "sgd", NO_TOL, "different"),
    (0.5, None, NO_TOL, "missing"),
    (None, 0.5, NO_TOL, "missing"),
])
def test_compare_metrics_status(a: Any, b: Any, tol: compare.Tolerance, status: str) -> None:
    expected = {} if a is None else {"loss": a}
    actual = {} if b is None else {"loss": b}
    c = one(judge.compare_metrics(expected, actual, tol))
    assert (c.kind, c.name, c.status) == ("metric", "loss", status)


def test_compare_metrics_detail_names_values_delta_and_tolerance() -> None:
    c = one(judge.compare_metrics({"loss": 0.51}, {"loss": 0.52},
                                  compare.Tolerance(per_metric={"loss": 1e-4})))
    assert c.status == "different"
    assert c.detail == "loss: 0.51 vs 0.52 (delta +0.01, +1.96%; tolerance 0.0001)"
    assert c.data["expected"] == 0.51 and c.data["actual"] == 0.52
    assert c.data["delta"] == pytest.approx(0.01)
    assert c.data["rel_delta"] == pytest.approx(0.01 / 0.51)
    assert c.data["allowed"] == 1e-4


def test_compare_metrics_close_values_never_look_equal() -> None:
    c = one(judge.compare_metrics({"acc": 0.9}, {"acc": 0.9000001}, NO_TOL))
    assert c.detail.startswith("acc: 0.9 vs 0.9000001 (delta +1e-07")


def test_compare_metrics_missing_and_nan_details() -> None:
    checks = judge.compare_metrics({"loss": 0.5, "acc": math.nan, "val": {"loss": 1.0}},
                                   {"new": 2, "acc": 0.9, "val": {"loss": 1.0}}, NO_TOL)
    by = {c.name: c for c in checks}
    assert [c.name for c in checks] == ["acc", "loss", "new", "val.loss"]
    assert by["loss"].detail == "loss: recorded 0.5, missing from the replay"
    assert by["new"].detail == "new: not in the recorded run (replay has 2)"
    assert by["acc"].status == "different" and by["acc"].detail == "acc: nan vs 0.9"
    assert by["acc"].to_dict()["expected"] == "nan"
    assert by["val.loss"].status == "same" and by["val.loss"].detail == "val.loss: 1.0"


# ---------------------------------------------------------------------------------------------
# Outputs: hashes, files, text, binary, directories.


def test_outputs_equal_hash_is_same_without_opening_files(tmp_path: Path) -> None:
    entry = {"kind": "file", "hash": "blake3:" + "ab" * 32, "size": 10}
    d = {"kind": "dir", "hash": "blake3:" + "cd" * 32, "size": 5, "files": 3,
         "listing": "outputs/0.json"}
    gone = tmp_path / "does-not-exist"
    checks = compare_outputs(
        {"model.pt": entry, "ckpt": d}, {"model.pt": dict(entry), "ckpt": dict(d)},
        expected_root=gone, actual_root=gone, expected_listings={}, actual_listings={},
        python="/nonexistent/python", tol=NO_TOL)
    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("ckpt", "same", "identical (3 files)"), ("model.pt", "same", "identical")]
    assert judge.verdict(checks) == "bitwise"


def test_outputs_text_file_first_differing_line(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    exp.write("log.txt", "epoch 1\nepoch 2 loss=0.5\nepoch 3\n")
    act.write("log.txt", "epoch 1\nepoch 2 loss=0.6\nepoch 3\n")
    c = one(judge_outputs(exp, act, "log.txt"))
    assert c.status == "different"
    assert c.detail == "first difference at line 2: 'epoch 2 loss=0.5' vs 'epoch 2 loss=0.6'"
    assert c.data["line"] == 2 and c.data["compared"] == "text"


def test_outputs_text_file_extra_line_and_long_line(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    exp.write("a.txt", "x\ny\n")
    act.write("a.txt", "x\ny\nz\n")
    long_e = "k" * 200 + "A" + "k" * 200
    exp.write("b.csv", "h\n" + long_e + "\n")
    act.write("b.csv", "h\n" + long_e.replace("A", "B") + "\n")
    a, b = judge_outputs(exp, act, "a.txt", "b.csv")
    assert a.detail == "first difference at line 3: end of file vs 'z'"
    assert b.detail.startswith("first difference at line 2: …'kkkkkkkkkkkkA")
    assert "…'kkkkkkkkkkkkB" in b.detail and len(b.detail) < 160


def test_outputs_binary_file_first_differing_byte(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    exp.write("w.bin", bytes(range(10)))
    act.write("w.bin", bytes(range(5)) + b"\xff" + bytes(range(6, 10)))
    exp.write("short.bin", b"\0\1\2")
    act.write("short.bin", b"\0\1\2\3\4")
    w, short = judge_outputs(exp, act, "short.bin", "w.bin")[::-1]
    assert w.detail == "first difference at byte 5 (0x05 vs 0xff); both 10 bytes"
    assert w.data["offset"] == 5 and w.data["compared"] == "bytes"
    assert short.detail == "recorded file ends at byte 3; sizes 3 vs 5"


def test_outputs_large_binary_difference_past_first_chunk(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    blob = bytearray(os.urandom(3 * 1024 * 1024 + 17))
    exp.write("big.bin", bytes(blob))
    blob[2 * 1024 * 1024 + 5] ^= 0xFF
    act.write("big.bin", bytes(blob))
    c = one(judge_outputs(exp, act, "big.bin"))
    assert c.data["offset"] == 2 * 1024 * 1024 + 5
    assert c.detail.startswith(f"first difference at byte {2 * 1024 * 1024 + 5} (0x")


def test_outputs_recorded_file_not_available(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    exp.write("log.txt", "a\n")
    act.write("log.txt", "b\n")
    se, _ = exp.outputs("log.txt")
    sa, _ = act.outputs("log.txt")

    def check(root: Path | None) -> judge.Check:
        return one(compare_outputs(se, sa, expected_root=root, actual_root=act.root,
                                         expected_listings={}, actual_listings={}, python=PY,
                                         tol=NO_TOL))

    unavailable = "hash differs (recorded file not available for a closer look)"
    assert check(None).detail == unavailable  # a baseline manifest in a fresh clone
    (exp.root / "log.txt").write_text("edited since\n")  # changed since it was recorded
    assert check(exp.root).detail == unavailable
    (exp.root / "log.txt").unlink()  # gone
    c = check(exp.root)
    assert (c.status, c.detail, c.data["compared"]) == ("different", unavailable, "hash")


def test_outputs_missing_unexpected_kind_change_and_symlinks(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    exp.write("gone.txt", "x")
    act.write("new.txt", "y")
    exp.write("d/f", "1")
    act.write("d", "now a file")
    se, le = exp.outputs("gone.txt", "d")
    sa, la = act.outputs("new.txt", "d")
    # Named outputs are followed through symlinks when hashed, so link entries come from
    # manifests (older ones, or hand-written): they still compare by target.
    se = {**se, "link": {"kind": "symlink", "size": 0, "target": "target-a"},
          "link2": {"kind": "symlink", "size": 0, "target": "same"}}
    sa = {**sa, "link": {"kind": "symlink", "size": 0, "target": "target-b"},
          "link2": {"kind": "symlink", "size": 0, "target": "same"}}
    checks = compare_outputs(se, sa, expected_root=exp.root, actual_root=act.root,
                                   expected_listings=le, actual_listings=la, python=PY,
                                   tol=NO_TOL)
    got = {c.name: (c.status, c.detail) for c in checks}
    assert got == {
        "d": ("different", "was a directory, now a file"),
        "gone.txt": ("missing", "recorded file missing from the replay"),
        "link": ("different", "symlink to 'target-a' vs 'target-b'"),
        "link2": ("same", "symlink to same"),
        "new.txt": ("different", "not in the recorded run (the replay produced a file)"),
    }


def test_outputs_kind_missing_on_both_sides_is_same() -> None:
    missing = {"kind": "missing", "size": 0}
    c = one(compare_outputs({"out.txt": missing}, {"out.txt": missing}, expected_root=None,
                                  actual_root=Path("/nonexistent"), expected_listings={},
                                  actual_listings={}, python=PY, tol=NO_TOL))
    assert (c.status, c.detail) == ("same", "absent in both runs")


def test_outputs_directory_listing_added_removed_modified(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    exp.write("out/same.txt", "same\n")
    act.write("out/same.txt", "same\n")
    exp.write("out/sub/mod.txt", "a\nb\n")
    act.write("out/sub/mod.txt", "a\nc\n")
    exp.write("out/removed.txt", "r")
    act.write("out/added.txt", "n")
    checks = judge_outputs(exp, act, "out")
    got = [(c.name, c.status, c.detail) for c in checks]
    assert got == [
        ("out/added.txt", "different", "not in the recorded run (new file)"),
        ("out/removed.txt", "missing", "recorded file missing from the replay"),
        ("out/sub/mod.txt", "different", "first difference at line 2: 'b' vs 'c'"),
    ]
    assert checks[2].data["dir"] == "out"
    assert judge.verdict(checks) == "not-reproduced"


def test_tensorboard_event_files_are_logs_not_results(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    for run, stamp in ((exp, "1733040000.host.111.0"), (act, "1733040099.host.222.0")):
        run.write("tb/model.txt", "same weights\n")
        run.write(f"tb/version_0/events.out.tfevents.{stamp}", f"wall time {stamp}")
    checks = judge_outputs(exp, act, "tb")
    got = [(c.name, c.status) for c in checks]
    assert got == [("tb", "within-tolerance")], checks
    assert "1 TensorBoard event file not compared" in checks[0].detail
    assert judge.verdict(checks) == "within-tolerance"
    act.write("tb/model.txt", "other weights\n")  # a real result still counts
    assert judge.verdict(judge_outputs(exp, act, "tb")) == "not-reproduced"
    (act.root / "tb" / "version_0" / "events.out.tfevents.1733040099.host.222.0").unlink()
    act.write("tb/model.txt", "same weights\n")
    lost = judge_outputs(exp, act, "tb")
    assert [(c.status, c.detail) for c in lost] == [
        ("different", "TensorBoard event files: 1 recorded, 0 in the replay")]


def test_outputs_directory_without_listings_is_one_check(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    exp.write("out/a.txt", "1")
    act.write("out/a.txt", "2")
    se, _ = exp.outputs("out")
    sa, la = act.outputs("out")
    c = one(compare_outputs(se, sa, expected_root=exp.root, actual_root=act.root,
                                  expected_listings={}, actual_listings=la, python=PY,
                                  tol=NO_TOL))
    assert (c.name, c.status) == ("out", "different")
    assert c.detail == ("directory hash differs (no file listing for the recorded run to say "
                        "which files)")


def test_outputs_paths_escaping_the_root_are_refused() -> None:
    entry = {"kind": "file", "hash": "blake3:00", "size": 1}
    with pytest.raises(errors.ManifestError, match="escapes the worktree"):
        compare_outputs({"../secret": entry}, {}, expected_root=None,
                              actual_root=Path("/tmp"), expected_listings={},
                              actual_listings={}, python=PY, tol=NO_TOL)


# ---------------------------------------------------------------------------------------------
# Outputs: tensor files through the probe.


def test_outputs_npy_noise_within_tolerance_or_different(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    a = np.random.default_rng(0).random((8, 16)) + 1.0
    save_npy(exp, "pred.npy", a)
    save_npy(act, "pred.npy", a + 1e-7)
    within = one(judge_outputs(exp, act, "pred.npy", tol=RTOL))
    assert within.status == "within-tolerance"
    assert within.detail.startswith("max abs diff 1e-07 (rel ")
    assert within.data["compared"] == "tensors" and within.data["max_abs"] == pytest.approx(1e-7)
    different = one(judge_outputs(exp, act, "pred.npy"))
    assert different.status == "different"
    assert different.detail.startswith("max abs diff 1e-07 (rel ")
    assert different.detail.endswith("; 128 of 128 elements beyond tolerance")


def test_outputs_npy_equal_values_other_bits_and_nan_mismatch(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    save_npy(exp, "zero.npy", np.array([0.0, 1.0]))
    save_npy(act, "zero.npy", np.array([-0.0, 1.0]))
    save_npy(exp, "nan.npy", np.array([1.0, 2.0, 3.0]))
    save_npy(act, "nan.npy", np.array([1.0, math.nan, 3.5]))
    nan, zero = judge_outputs(exp, act, "zero.npy", "nan.npy", tol=compare.Tolerance(atol=1.0))
    assert zero.status == "within-tolerance"
    assert zero.detail == "values equal, bits differ (-0.0 vs 0.0 or NaN payloads)"
    assert nan.status == "different"
    assert nan.detail == "max abs diff nan (rel nan) at [1]; 1 of 3 elements beyond tolerance, " \
        "1 NaN vs a number"
    assert nan.to_dict()["max_abs"] == "nan"


def test_outputs_npz_with_different_keys_is_different(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    np.savez(exp.root / "arrays.npz", w=np.ones(3), b=np.zeros(2))
    np.savez(act.root / "arrays.npz", w=np.ones(3), c=np.zeros(2), s=np.ones((2, 2)))
    c = one(judge_outputs(exp, act, "arrays.npz"))
    assert c.status == "different"
    assert c.detail == ("tensors differ: only in the recorded file: b; "
                        "only in the replay's: c, s")


@pytest.mark.slow
def test_outputs_torch_state_dicts_saved_under_other_names(runs: tuple[Run, Run]) -> None:
    import torch

    exp, act = runs
    torch.manual_seed(0)
    state: dict[str, Any] = {"fc.weight": torch.randn(4, 3), "fc.bias": torch.randn(4),
             "steps": torch.tensor(7), "meta": {"epoch": 3, "name": "run"}}
    torch.save(state, exp.root / "model.pt")
    torch.save(state, act.root / "elsewhere.pt")  # torch.save writes the file name inside
    os.replace(act.root / "elsewhere.pt", act.root / "model.pt")
    noisy = {**state, "fc.weight": state["fc.weight"] + 1e-6}
    torch.save(noisy, exp.root / "noisy.pth")
    torch.save(state, act.root / "noisy.pth")

    same, noisy_check = judge_outputs(exp, act, "model.pt", "noisy.pth", tol=RTOL)
    assert (exp.root / "model.pt").read_bytes() != (act.root / "model.pt").read_bytes()
    assert same.status == "same"
    assert same.detail == "bytes differ, 5 tensors identical"
    assert noisy_check.status == "within-tolerance"
    assert " in fc.weight at [" in noisy_check.detail
    assert noisy_check.detail.endswith("(1 of 5 tensors differ)")
    assert noisy_check.data["worst_tensor"] == "fc.weight"


def test_outputs_safetensors_fallback_parser(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    w = np.arange(4, dtype="<f4").tobytes()
    # Same tensors, different metadata and tensor order: the bytes differ, the result does not.
    write_safetensors(exp.root / "m.safetensors",
                      {"w": ("F32", [2, 2], w), "h": ("BF16", [3], bf16([1.5, -2.0, 0.25]))},
                      {"created": "monday"})
    write_safetensors(act.root / "m.safetensors",
                      {"h": ("BF16", [3], bf16([1.5, -2.0, 0.25])), "w": ("F32", [2, 2], w)},
                      {"created": "tuesday"})
    write_safetensors(exp.root / "d.safetensors", {"h": ("BF16", [3], bf16([1.5, -2.0, 0.25]))})
    write_safetensors(act.root / "d.safetensors", {"h": ("BF16", [3], bf16([1.5, -2.5, 0.25]))})
    d, m = judge_outputs(exp, act, "m.safetensors", "d.safetensors", tol=RTOL)
    assert (m.status, m.detail) == ("same", "bytes differ, 2 tensors identical")
    assert d.status == "different"
    assert d.detail == ("max abs diff 0.5 (rel 0.2) in h at [1]; 1 of 3 elements beyond "
                        "tolerance")
    assert d.data["tensors"][0]["dtype_a"] == "bfloat16"


def test_outputs_corrupt_tensor_file_is_different_with_reason(runs: tuple[Run, Run]) -> None:
    exp, act = runs
    exp.write("x.npy", b"not an npy file at all")
    save_npy(act, "x.npy", np.ones(2))
    c = one(judge_outputs(exp, act, "x.npy"))
    assert c.status == "different"
    assert c.detail.startswith("hash differs; tensors could not be compared: cannot read x.npy")


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.parametrize(("body", "timeout", "reason"), [
    ("echo 'Segmentation fault' >&2; exit 139", 60.0,
     "the comparison crashed (exit 139): Segmentation fault"),
    ("exec sleep 30", 0.3, "the comparison timed out after 0.3 s"),
    ("echo 'not json'; exit 0", 60.0, "the comparison gave no result"),
])
def test_outputs_probe_crash_timeout_or_garbage(runs: tuple[Run, Run], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, body: str,
                                                timeout: float, reason: str) -> None:
    exp, act = runs
    save_npy(exp, "x.npy", np.zeros(2))
    save_npy(act, "x.npy", np.ones(2))
    monkeypatch.setattr(tensors, "TENSORCMP_TIMEOUT_S", timeout)
    c = one(judge_outputs(exp, act, "x.npy", python=_fake_python(tmp_path, body)))
    assert (c.status, c.detail) == ("different",
                                    f"hash differs; tensors could not be compared: {reason}")


def test_outputs_interpreter_not_found(runs: tuple[Run, Run], tmp_path: Path) -> None:
    exp, act = runs
    save_npy(exp, "x.npy", np.zeros(2))
    save_npy(act, "x.npy", np.ones(2))
    c = one(judge_outputs(exp, act, "x.npy", python=str(tmp_path / "no-python")))
    assert c.status == "different"
    assert "cannot run the run's interpreter" in c.detail


# ---------------------------------------------------------------------------------------------
# The probe on its own.


def probe(*args: str) -> dict[str, Any]:
    done = subprocess.run([PY, str(judge.TENSORCMP), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result


def test_probe_reports_per_tensor_numbers(tmp_path: Path) -> None:
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.array([[1.0, 2.0], [math.nan, 4.0]], dtype=np.float32))
    np.save(b, np.array([[1.0, 2.5], [math.nan, 4.0]], dtype=np.float32))
    result = probe(str(a), str(b), "--rtol", "0", "--atol", "0.1")
    assert result["status"] == "different"
    t = result["tensors"][0]
    assert {k: t[k] for k in ("max_abs", "max_rel", "differing", "beyond", "numel",
                              "shape_a", "dtype_b", "worst_index")} == {
        "max_abs": 0.5, "max_rel": 0.2, "differing": 1, "beyond": 1, "numel": 4,
        "shape_a": [2, 2], "dtype_b": "float32", "worst_index": [0, 1]}
    assert probe(str(a), str(b), "--atol", "0.5")["status"] == "within-tolerance"
    assert probe(str(a), str(a))["status"] == "same"  # NaN equals NaN in place


@pytest.mark.parametrize("args", [
    ["missing-a.npy", "missing-b.npy"],
    ["only-one.npy"],
    ["a.npy", "b.npy", "--rtol", "-1"],
    ["a.npy", "b.npy", "--bogus"],
    ["a.txt", "b.txt"],
])
def test_probe_never_crashes(tmp_path: Path, args: list[str]) -> None:
    result = probe(*[str(tmp_path / a) if not a.startswith("-") and a != "-1" else a
                     for a in args])
    assert result["status"] == "error"
    assert result["message"]


def test_probe_truncated_safetensors_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "t.safetensors"
    write_safetensors(p, {"w": ("F32", [4], np.ones(4, dtype="<f4").tobytes())})
    p.write_bytes(p.read_bytes()[:-3])
    result = probe(str(p), str(p))
    assert result["status"] == "error"
    assert "do not match its shape" in result["message"]


# ---------------------------------------------------------------------------------------------
# JUnit XML.


def test_junit_xml_one_testcase_per_check_with_failures() -> None:
    checks = [
        judge.Check("output", "model.pt", "same", "identical"),
        judge.Check("metric", "loss", "within-tolerance", "loss: 0.5 vs 0.5000001"),
        judge.Check("metric", "acc", "different", "acc: 0.9 vs 0.8 <&> \"quoted\""),
        judge.Check("output", "out/x.txt", "missing", "recorded file missing from the replay"),
        judge.Check("exit", "exit_code", "same", "exit code 0"),
    ]
    text = judge.junit_xml(run_id="20261123T142501.123456Z-3f2a", verdict="not-reproduced",
                           checks=checks, duration_s=12.5)
    root = ET.fromstring(text)
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "repro verify 20261123T142501.123456Z-3f2a"
    assert (suite.get("tests"), suite.get("failures"), suite.get("time")) == ("5", "2", "12.500")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["verdict"] == "not-reproduced"
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("repro.output", "model.pt"), ("repro.metric", "loss"), ("repro.metric", "acc"),
        ("repro.output", "out/x.txt"), ("repro.exit", "exit_code")]
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failed) == {"acc", "out/x.txt"}
    acc = failed["acc"]
    assert acc is not None and acc.get("message") == "acc: 0.9 vs 0.8 <&> \"quoted\""
    assert acc.get("type") == "different"
    out = cases[1].find("system-out")
    assert out is not None and out.text == "within tolerance: loss: 0.5 vs 0.5000001"


def test_junit_xml_control_characters_stay_valid() -> None:
    checks = [judge.Check("output", "log\x1b[0m.txt", "different",
                          "first difference at line 1: '\x07bell\x00' vs '\udcff'")]
    text = judge.junit_xml(run_id="r", verdict="not-reproduced", checks=checks,
                           duration_s=None)
    case = ET.fromstring(text.encode("utf-8")).find("testsuite/testcase")
    assert case is not None
    assert case.get("name") == "log\\x1b[0m.txt"
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == r"first difference at line 1: '\x07bell\x00' vs '\udcff'"


def test_junit_xml_no_checks_still_fails() -> None:
    root = ET.fromstring(judge.junit_xml(run_id="r", verdict=judge.verdict([]), checks=[],
                                         duration_s=None))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "1" and suite.get("time") is None
    case = suite.find("testcase")
    assert case is not None and case.get("classname") == "repro.verdict"
