"""Artefacts compared as what they are: checkpoints structurally (embedded checkout paths),
SOURCE_DATE_EPOCH injected and restored, and the causes named where known formats differ."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from repro.capture import data, hashing, listings
from repro.child import seeding
from repro.cli.main import main
from repro.judge import checks as judge
from repro.record import manifest
from tests.conftest import PYTHON, git, snapshot_tree

# A checkpoint laid out the way Lightning's ModelCheckpoint writes one (Lightning itself is not
# installed): the state dict, optimizer states, loops, and the callback's state, which holds
# the absolute directory the checkpoints go to. HPARAMS decides what `hyper_parameters` is.
LIGHTNING = """\
import argparse, os, pathlib
import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(32, 4), torch.randn(32, 1)
for _ in range(5):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
dirpath = os.path.abspath("checkpoints")
os.makedirs(dirpath, exist_ok=True)
best = os.path.join(dirpath, "epoch=4-step=5.ckpt")
key = ("ModelCheckpoint{'monitor': 'train_loss', 'mode': 'min', 'every_n_train_steps': 0, "
       "'every_n_epochs': 1, 'train_time_interval': None}")
checkpoint = {
    "epoch": 4, "global_step": 5, "pytorch-lightning_version": "2.4.0",
    "state_dict": model.state_dict(),
    "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 5}}}},
    "callbacks": {key: {
        "monitor": "train_loss", "best_model_score": loss.detach(), "best_model_path": best,
        "current_score": loss.detach(), "dirpath": dirpath,
        "best_k_models": {best: loss.detach()}, "kth_best_model_path": best,
        "kth_value": loss.detach(), "last_model_path": "",
    }},
    "optimizer_states": [opt.state_dict()], "lr_schedulers": [],
    "hparams_name": "kwargs", "hyper_parameters": HPARAMS,
}
torch.save(checkpoint, best)
pathlib.Path("model.ckpt").write_bytes(pathlib.Path(best).read_bytes())
"""
PLAIN_HPARAMS = '{"lr": 0.1, "data_dir": os.path.abspath("data")}'
# argparse.Namespace: torch.load(weights_only=True) refuses it; only full unpickling reads it
NAMESPACE_HPARAMS = 'argparse.Namespace(lr=0.1, data_dir=os.path.abspath("data"))'

FIGURE = """\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pathlib
pathlib.Path("figures").mkdir(exist_ok=True)
fig, ax = plt.subplots()
ax.plot([1, 2, 3], [1, 4, 9])
ax.set_title("loss")
fig.savefig("figures/loss.pdf")
fig.savefig("figures/loss.png")
"""


def compare_outputs(expected: Any, actual: Any, **kwargs: Any) -> list[judge.Check]:
    """judge takes typed `outputs` sections: the dict fixtures are read as a manifest's are."""
    return judge.compare_outputs(manifest.entries(expected, "outputs"),
                                 manifest.entries(actual, "outputs"), **kwargs)


def commit(repo: Path, files: dict[str, str], ignore: str, message: str = "script") -> None:
    for name, text in files.items():
        (repo / name).write_text(text)
    (repo / ".gitignore").write_text(".repro/\n" + ignore)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def verify_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    capsys.readouterr()
    before = snapshot_tree(Path.cwd())
    code = main(["verify", "--json", *args])
    assert snapshot_tree(Path.cwd()) == before  # verify never changes the user's checkout
    return code, json.loads(capsys.readouterr().out)  # exactly one document


def show(ref: str, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert main(["show", ref, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def no_caller_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


# ---------------------------------------------------------------------------- checkpoints


@pytest.mark.slow
@pytest.mark.parametrize("hparams", [PLAIN_HPARAMS, NAMESPACE_HPARAMS])
def test_lightning_checkpoint_embedding_its_checkout_is_within_tolerance(
        repo: Path, capsys: pytest.CaptureFixture[str], hparams: str) -> None:
    commit(repo, {"train.py": LIGHTNING.replace("HPARAMS", hparams)}, "checkpoints/\nmodel.ckpt\n")
    assert main(["run", "--output", "model.ckpt", "--", PYTHON, "train.py"]) == 0
    code, report = verify_json(["latest"], capsys)
    assert (code, report["verdict"]) == (0, "within-tolerance")
    check = next(c for c in report["checks"] if c["name"] == "model.ckpt")
    assert check["status"] == "within-tolerance"
    assert check["detail"].startswith("only embedded paths differ (")
    assert str(repo) in check["detail"] and "repro-replay-" in check["detail"]
    assert any(name.endswith(".dirpath") for name in check["embedded_paths"])


@pytest.mark.slow
def test_checkpoint_whose_weights_changed_is_still_not_reproduced(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = LIGHTNING.replace("HPARAMS", PLAIN_HPARAMS).replace(
        "torch.manual_seed(0)", "import time; torch.manual_seed(time.time_ns())")
    commit(repo, {"train.py": script}, "checkpoints/\nmodel.ckpt\n")
    assert main(["run", "--output", "model.ckpt", "--", PYTHON, "train.py"]) == 0
    code, report = verify_json(["latest"], capsys)
    assert (code, report["verdict"]) == (1, "not-reproduced")
    check = next(c for c in report["checks"] if c["name"] == "model.ckpt")
    assert "max abs diff" in check["detail"] and "embedded paths differ" in check["detail"]


EVIL = """\
import os, pickle, sys
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
with open(sys.argv[1], "wb") as f:
    pickle.dump({"state_dict": Evil()}, f, protocol=2)
"""


@pytest.mark.slow
def test_a_foreign_manifest_s_checkpoint_is_never_unpickled(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A kept checkpoint from another clone is data: full unpickling would run its code."""
    commit(repo, {"train.py": LIGHTNING.replace("HPARAMS", NAMESPACE_HPARAMS)},
           "checkpoints/\nmodel.ckpt\n")
    assert main(["run", "--output", "model.ckpt", "--", PYTHON, "train.py"]) == 0
    run_dir = sorted((repo / ".repro" / "runs").iterdir())[-1]
    foreign = repo / "baseline"
    shutil.copytree(run_dir, foreign)
    marker = tmp_path / "pwned"
    evil = foreign / "kept" / "model.ckpt"
    subprocess.run([PYTHON, "-c", EVIL, str(evil), str(marker)], check=True, timeout=60)
    doc = yaml.safe_load((foreign / "manifest.yaml").read_text())
    doc["outputs"]["model.ckpt"].update(hash=hashing.hash_file(evil), size=evil.stat().st_size)
    (foreign / "manifest.yaml").write_text(yaml.safe_dump(doc))
    git(repo, "add", "baseline")
    git(repo, "commit", "-qm", "a manifest from elsewhere")
    code, report = verify_json(["baseline/manifest.yaml", "--yes"], capsys)
    assert not marker.exists()
    assert (code, report["verdict"]) == (1, "not-reproduced")
    check = next(c for c in report["checks"] if c["name"] == "model.ckpt")
    assert "not compared structurally" in check["detail"]
    assert "cannot be loaded weights-only" in check["detail"]


def test_probe_normalises_roots_only_as_whole_path_prefixes() -> None:
    from repro.child import tensorcmp

    roots = tensorcmp.Roots(["/home/me/proj", "/tmp/r/worktree/"])
    assert roots.norm("/home/me/proj/checkpoints") == "<checkout>/checkpoints"
    assert roots.norm("/tmp/r/worktree") == "<checkout>"
    assert roots.norm("'/home/me/proj', x") == "'<checkout>', x"
    assert roots.norm("/home/me/project/x") == "/home/me/project/x"
    assert roots.norm("/tmp/r/worktree2/x") == "/tmp/r/worktree2/x"
    assert tensorcmp.Roots(["/"]).norm("/etc/passwd") == "/etc/passwd"


@pytest.mark.parametrize("flags", [[], ["-I"], ["-P"]])
def test_probe_run_by_path_finds_its_helper_whatever_sys_path_holds(
        tmp_path: Path, flags: list[str]) -> None:
    # -I and -P (PYTHONSAFEPATH) leave the script's directory off sys.path; the probe loads
    # its sibling _tensorcmp_load.py all the same.
    import numpy as np

    np.save(tmp_path / "a.npy", np.arange(4.0))
    done = subprocess.run([PYTHON, *flags, str(judge.TENSORCMP), str(tmp_path / "a.npy"),
                           str(tmp_path / "a.npy")], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["status"] == "same", done.stdout + done.stderr


# ---------------------------------------------------------------------------- SOURCE_DATE_EPOCH


def test_plan_injects_source_date_epoch_from_seed_up_and_keeps_a_user_value() -> None:
    common = {"threads": 1, "hook_out": Path("/h"), "hook_dir": Path("/d")}
    plan = seeding.plan(1, "seed", {}, source_date_epoch=1700000000, **common)  # type: ignore[arg-type]
    assert plan.injected["SOURCE_DATE_EPOCH"] == "1700000000"
    assert plan.env["SOURCE_DATE_EPOCH"] == "1700000000"
    off = seeding.plan(1, "off", {}, source_date_epoch=1700000000, **common)  # type: ignore[arg-type]
    assert "SOURCE_DATE_EPOCH" not in off.env
    mine = seeding.plan(1, "strict", {"SOURCE_DATE_EPOCH": "42"}, source_date_epoch=1700000000,
                        **common)  # type: ignore[arg-type]
    assert mine.env["SOURCE_DATE_EPOCH"] == "42" and mine.user_set["SOURCE_DATE_EPOCH"] == "42"
    assert "SOURCE_DATE_EPOCH" not in mine.injected
    assert "SOURCE_DATE_EPOCH" in seeding.managed_variables()


ECHO_EPOCH = """\
import os, pathlib
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/epoch.txt").write_text(os.environ.get("SOURCE_DATE_EPOCH", "unset") + "\\n")
"""


def test_run_records_the_commit_time_and_replay_restores_it_also_with_at(
        repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GIT_COMMITTER_DATE", "@1700000000 +0000")
    commit(repo, {"train.py": ECHO_EPOCH}, "out/\n")
    assert git(repo, "show", "-s", "--format=%ct", "HEAD").strip() == "1700000000"
    assert main(["run", "--output", "out", "--", PYTHON, "train.py"]) == 0
    recorded = show("latest", capsys)
    assert recorded["determinism"]["env"]["SOURCE_DATE_EPOCH"] == "1700000000"
    assert (repo / "out" / "epoch.txt").read_text() == "1700000000\n"
    monkeypatch.setenv("GIT_COMMITTER_DATE", "@1800000000 +0000")
    (repo / "README.md").write_text("later\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "a later commit")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "5")  # the caller's shell: a build's date
    code, report = verify_json([recorded["run"]["run_id"], "--at", "HEAD"], capsys)
    assert (code, report["verdict"]) == (0, "bitwise")
    replayed = show("latest", capsys)
    assert replayed["determinism"]["env"]["SOURCE_DATE_EPOCH"] == "1700000000"
    assert "SOURCE_DATE_EPOCH" not in replayed["determinism"]["user_set"]


def test_a_user_set_source_date_epoch_is_kept_recorded_and_replayed(
        repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"train.py": ECHO_EPOCH}, "out/\n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234")
    assert main(["run", "--output", "out", "--", PYTHON, "train.py"]) == 0
    recorded = show("latest", capsys)
    assert recorded["determinism"]["user_set"]["SOURCE_DATE_EPOCH"] == "1234"
    assert "SOURCE_DATE_EPOCH" not in recorded["determinism"]["env"]
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    code, report = verify_json(["latest"], capsys)
    assert (code, report["verdict"]) == (0, "bitwise")


@pytest.mark.slow
def test_matplotlib_pdf_and_png_reproduce_bitwise(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"train.py": FIGURE}, "figures/\n")
    assert main(["run", "--output", "figures", "--", PYTHON, "train.py"]) == 0
    code, report = verify_json(["latest"], capsys)
    assert (code, report["verdict"]) == (0, "bitwise"), report["checks"]
    # at `off` nothing is injected: the PDF's date follows the clock, and the detail says so
    assert main(["run", "--determinism", "off", "--output", "figures", "--", PYTHON,
                 "train.py"]) == 0
    time.sleep(1.1)  # the PDF's date has a resolution of one second
    code, report = verify_json(["latest"], capsys)
    assert (code, report["verdict"]) == (1, "not-reproduced")
    check = next(c for c in report["checks"] if c["name"] == "figures/loss.pdf")
    assert check["detail"].startswith("differs only in the PDF's /CreationDate")
    assert check["cause"] == check["detail"].split(" (first difference")[0]


# ---------------------------------------------------------------------------- format causes


def _figure(path: Path, epoch: str | None, script: str = FIGURE) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = epoch
    path.mkdir(parents=True)
    subprocess.run([PYTHON, "-c", script], cwd=path, env=env, check=True, timeout=120)


@pytest.mark.slow
def test_format_cause_pdf_dates(tmp_path: Path) -> None:
    _figure(tmp_path / "a", "1700000000")
    _figure(tmp_path / "b", "1700000000")
    _figure(tmp_path / "c", "1800000000")
    a, b, c = (tmp_path / n / "figures" / "loss.pdf" for n in "abc")
    assert a.read_bytes() == b.read_bytes()
    cause = judge.format_cause(a, c)
    assert cause is not None and cause.startswith("differs only in the PDF's /CreationDate")
    assert "SOURCE_DATE_EPOCH" in cause
    # another figure is not "only dates"
    _figure(tmp_path / "d", "1800000000", FIGURE.replace("[1, 4, 9]", "[1, 4, 8]"))
    other = tmp_path / "d" / "figures" / "loss.pdf"
    assert judge.format_cause(a, other) == "the PDF's content differs, not only its /CreationDate"


def _png(path: Path, pixels: bytes, *, time: tuple[int, ...] | None = None,
         text: dict[str, str] | None = None) -> Path:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 0, 0, 0, 0))
    for key, value in (text or {}).items():
        out += chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    if time is not None:
        out += chunk(b"tIME", struct.pack(">HBBBBB", *time))
    out += chunk(b"IDAT", zlib.compress(b"\0" + pixels)) + chunk(b"IEND", b"")
    path.write_bytes(out)
    return path


def test_format_cause_png_time_and_text_chunks(tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png", b"\x10\x20", time=(2026, 1, 1, 0, 0, 0),
             text={"Software": "x 1.0", "Creation Time": "2026-01-01"})
    b = _png(tmp_path / "b.png", b"\x10\x20", time=(2026, 12, 1, 9, 0, 0),
             text={"Software": "x 1.0", "Creation Time": "2026-12-01"})
    assert (judge.format_cause(a, b) or "").startswith(
        "differs only in the PNG's tIME chunk, text chunk 'Creation Time' (SOURCE_DATE_EPOCH")
    c = _png(tmp_path / "c.png", b"\x10\x21", time=(2026, 1, 1, 0, 0, 0),
             text={"Software": "x 1.0", "Creation Time": "2026-01-01"})
    assert judge.format_cause(a, c) == "the PNG's image data differs (IDAT)"


def test_format_cause_zip_member_times_and_gzip_mtime(tmp_path: Path) -> None:
    def make_zip(path: Path, when: tuple[int, int, int, int, int, int], body: bytes) -> Path:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr(zipfile.ZipInfo("a.txt", when), body)
            z.writestr(zipfile.ZipInfo("b.txt", (1980, 1, 1, 0, 0, 0)), b"same")
        return path

    a = make_zip(tmp_path / "a.zip", (2026, 1, 1, 0, 0, 0), b"x")
    b = make_zip(tmp_path / "b.zip", (2026, 12, 1, 0, 0, 0), b"x")
    c = make_zip(tmp_path / "c.zip", (2026, 1, 1, 0, 0, 0), b"y")
    assert (judge.format_cause(a, b) or "").startswith(
        "differs only in zip member times (1 member of 2: a.txt;")
    assert judge.format_cause(a, c) == "zip members differ: a.txt"
    ga, gb, gc = (tmp_path / d / "log.gz" for d in "abc")  # the header names the file
    for path, mtime, body in ((ga, 1, b"data"), (gb, 2, b"data"), (gc, 2, b"other")):
        path.parent.mkdir()
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=mtime) as g:
            g.write(body)
    assert (judge.format_cause(ga, gb) or "").startswith("differs only in the gzip header's mtime")
    assert judge.format_cause(ga, gc) is None  # the content differs: the first byte says more
    assert judge.format_cause(ga, a) is None  # two formats: nothing to say


def test_verify_detail_names_the_png_cause(tmp_path: Path) -> None:
    """Through compare_outputs: the check's detail and data carry the cause."""
    exp, act = tmp_path / "e", tmp_path / "a"
    for root, year in ((exp, 2025), (act, 2026)):
        root.mkdir()
        _png(root / "fig.png", b"\x01\x02", time=(year, 1, 1, 0, 0, 0))
    se = listings.to_section(data.hash_paths(["fig.png"], root=exp, cache_dir=None), tmp_path, "o")
    sa = listings.to_section(data.hash_paths(["fig.png"], root=act, cache_dir=None), tmp_path, "o")
    [check] = compare_outputs(se, sa, expected_root=exp, actual_root=act,
                                    expected_listings={}, actual_listings={}, python=PYTHON,
                                    tol=judge.compare.Tolerance())
    assert check.status == "different"
    assert check.detail.startswith("differs only in the PNG's tIME chunk")
    assert "first difference at byte" in check.detail
    assert check.data["cause"].startswith("differs only in the PNG's tIME chunk")
