"""Review of issue 9: attacks on replay isolation and honest outputs that the first tests missed."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro.cli.main import main
from tests.conftest import PYTHON, git, snapshot_tree

# Appends a line to the file named by --train (through whatever links lead to it).
APPENDS = """\
import pathlib, sys
src = pathlib.Path(sys.argv[sys.argv.index("--train") + 1])
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
(out / "result.txt").write_text(str(len(src.read_text().splitlines())) + "\\n")
with src.open("a") as f:
    f.write("9,9\\n")
"""


def commit(repo: Path, script: str, ignore: str) -> None:
    (repo / "train.py").write_text(script)
    (repo / ".gitignore").write_text(ignore)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "script")


def run_with_a_linked_input(repo: Path) -> None:
    """A run of APPENDS whose input `data/train.csv` links to `raw/train.csv` in the checkout;
    the user then restores the line the run appended."""
    commit(repo, APPENDS, ".repro/\nout/\ndata/\nraw/\n")
    (repo / "raw").mkdir()
    (repo / "data").mkdir()
    (repo / "raw" / "train.csv").write_text("a,b\n1,2\n")
    (repo / "data" / "train.csv").symlink_to(repo / "raw" / "train.csv")
    assert main(["run", "--data", "data", "--output", "out", "--", PYTHON, "train.py",
                 "--train", "data/train.csv"]) == 0
    (repo / "raw" / "train.csv").write_text("a,b\n1,2\n")


@pytest.mark.slow
def test_a_link_inside_a_copied_input_directory_never_leads_the_replay_into_the_checkout(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`data/train.csv -> <checkout>/raw/train.csv` inside the input directory `data`: the copy
    of `data` keeps the link as the input's hash records it, so a script appending to its
    input would append to the user's raw/train.csv. Such a link cannot be copied without
    changing the recipe, so like an input over the copy budget it is named before the replay
    and checked after it: never `bitwise` over a changed user file."""
    run_with_a_linked_input(repo)  # the user restores their data
    before = snapshot_tree(repo)
    capsys.readouterr()
    code = main(["verify", "latest"])
    captured = capsys.readouterr()
    assert code == 2, (code, captured.out, captured.err)
    assert "bitwise" not in captured.out
    assert "links out of the replay" in captured.err  # said before the replay
    assert "the replay changed" in captured.err and "data/train.csv" in captured.err
    assert str(repo / "raw" / "train.csv") in captured.err
    assert snapshot_tree(repo) != before  # (what the check is for)
    # A script that only reads through such a link replays as before.
    (repo / "train.py").write_text(APPENDS.split("with src")[0])
    git(repo, "commit", "-qam", "read only")
    (repo / "raw" / "train.csv").write_text("a,b\n1,2\n")
    assert main(["run", "--data", "data", "--output", "out", "--", PYTHON, "train.py",
                 "--train", "data/train.csv"]) == 0
    before = snapshot_tree(repo)
    assert main(["verify", "latest"]) == 0
    assert snapshot_tree(repo) == before


# Parses its data on the first run and caches the result beside it (data/train.csv.cache).
CACHES = """\
import json, os, pathlib, sys
src = sys.argv[sys.argv.index("--train") + 1]
parsed = not os.path.exists(src + ".cache")
if parsed:
    pathlib.Path(src + ".cache").write_text(open(src).read())
text = open(src + ".cache").read()
pathlib.Path("m.json").write_text(json.dumps({"rows": len(text.splitlines()), "parsed": parsed}))
"""


@pytest.mark.slow
def test_files_the_run_wrote_into_a_directory_input_do_not_block_its_verify(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`data: [data/]` (what `repro init` writes) and a script that caches beside its data on
    its first run: the input as recorded is the directory before the run. The files the
    recorded run itself added are no reason to refuse `verify latest`; the replay starts from
    the directory as it was recorded (without them), so it takes the same path."""
    commit(repo, CACHES, ".repro/\ndata/\nm.json\n")
    (repo / "repro.yaml").write_text("data: [data/]\nmetrics: m.json\n")
    git(repo, "add", "repro.yaml")
    git(repo, "commit", "-qm", "config")
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("a,b\n1,2\n")
    assert main(["run", "--", PYTHON, "train.py", "--train", "data/train.csv"]) == 0
    assert (repo / "data" / "train.csv.cache").exists()
    before = snapshot_tree(repo)
    capsys.readouterr()
    code = main(["verify", "latest"])
    captured = capsys.readouterr()
    assert code == 0, (captured.out, captured.err)
    assert captured.out.startswith("bitwise"), captured.out  # `parsed` as recorded
    assert "train.csv.cache" in captured.err  # said, not silently dropped
    assert snapshot_tree(repo) == before
    # A file added after the run is the user's change: still refused.
    (repo / "data" / "extra.csv").write_text("x\n")
    assert main(["verify", "latest"]) == 2
    assert "extra.csv" in capsys.readouterr().err


LOGS = """\
import json, pathlib, sys
log = pathlib.Path(sys.argv[sys.argv.index("--log") + 1])
lines = len(log.read_text().splitlines())
with log.open("a") as f:
    f.write("run\\n")
pathlib.Path("m.json").write_text(json.dumps({"lines_before": lines}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("named", ["runs.log", "link.log"])
def test_a_file_named_in_argv_that_the_run_appended_to_does_not_block_its_verify(
        repo: Path, capsys: pytest.CaptureFixture[str], named: str) -> None:
    """`--log runs.log` that the script reads and appends to: an input (appending keeps one),
    recorded as it was before the run. `verify latest` replays from those bytes (the script
    sees the same line count) instead of refusing because of the line the run added. Also
    when the named path is a link to the log (followed, as it was hashed)."""
    commit(repo, LOGS, ".repro/\nruns.log\nlink.log\nm.json\n")
    (repo / "runs.log").write_text("old\n")
    (repo / "link.log").symlink_to("runs.log")
    assert main(["run", "--metrics", "m.json", "--", PYTHON, "train.py", "--log",
                 named]) == 0
    assert (repo / "runs.log").read_text() == "old\nrun\n"
    before = snapshot_tree(repo)
    capsys.readouterr()
    code = main(["verify", "latest"])
    captured = capsys.readouterr()
    assert (code, captured.out.split()[:1]) == (0, ["bitwise"]), (captured.out, captured.err)
    assert f"appended to input {named}" in captured.err
    assert snapshot_tree(repo) == before
    (repo / "runs.log").write_text("old\nrun\nmine\n")  # the user's own line: refused
    assert main(["verify", "latest"]) == 2


def test_a_checkout_root_is_not_recognised_inside_a_longer_path() -> None:
    """`/home/me/proj` is the checkout, `/mnt/backup/home/me/proj` is not: two different
    backup paths must not both read as `<checkout>` (that would call them one embedded path)."""
    from repro.child import tensorcmp

    roots = tensorcmp.Roots(["/home/me/proj", "/tmp/r/worktree"])
    assert roots.norm("/mnt/backup/home/me/proj/x") != roots.norm("/mnt/backup/tmp/r/worktree/x")
    assert roots.norm("/mnt/backup/home/me/proj/x") == "/mnt/backup/home/me/proj/x"
    assert roots.norm("dirpath=/home/me/proj/ckpt") == "dirpath=<checkout>/ckpt"
    assert roots.norm("file:///home/me/proj/a") == "file://<checkout>/a"
    assert roots.norm("PosixPath('/tmp/r/worktree')") == "PosixPath('<checkout>')"


EMBEDS = """\
import os, torch
os.makedirs("ck", exist_ok=True)
torch.save({"w": torch.arange(4.0), "dirpath": os.path.abspath("ck")}, "ck/m.pt")
"""


@pytest.mark.slow
def test_verify_of_a_replay_knows_where_the_replay_ran(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`repro replay latest`, then `repro verify latest`: the baseline is the replay, whose
    checkpoint embeds its (removed) worktree. That path is the checkout, as for a run recorded
    in the checkout: within tolerance, not `not-reproduced`."""
    from importlib import metadata

    commit(repo, EMBEDS, ".repro/\nck/\n")
    with (repo / "requirements.lock").open("a") as f:
        f.write(f"torch=={metadata.version('torch')}\n")
    git(repo, "commit", "-qam", "lock torch")
    assert main(["run", "--output", "ck", "--", PYTHON, "train.py"]) == 0
    assert main(["replay", "latest"]) == 0
    capsys.readouterr()
    code = main(["verify", "latest"])
    out = capsys.readouterr().out
    assert (code, out.split()[:1]) == (0, ["within-tolerance"]), out
    assert "embedded" in out or "path" in out, out


@pytest.mark.slow
def test_script_replaces_links_out_of_a_copied_input_by_copies(
        repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """`replay --script` copies inputs too; a link inside a copied directory that leads to the
    user's file becomes a copy of it there, so the command cannot append to the user's file."""
    import os
    import subprocess

    run_with_a_linked_input(repo)
    capfd.readouterr()
    assert main(["replay", "latest", "--script"]) == 0
    script = capfd.readouterr().out
    before = snapshot_tree(repo)
    done = subprocess.run(["bash", "-s", str(repo)], input=script, capture_output=True,
                          text=True, cwd=tmp_path, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("REPRO_")})
    assert done.returncode == 0, done.stderr
    after = snapshot_tree(repo)
    assert {k: v for k, v in after.items() if k != ":worktrees"} == \
        {k: v for k, v in before.items() if k != ":worktrees"}
