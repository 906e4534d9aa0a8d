"""A run's outputs are what the run wrote: stale files, metrics not rewritten, argv paths it
wrote, and results that are never dirt. Real repositories, real child processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from repro.cli.main import main
from repro.commands import runresults
from tests.conftest import PYTHON, git, snapshot_tree


def commit(repo: Path, files: dict[str, str], ignore: str = "") -> None:
    for name, text in files.items():
        (repo / name).write_text(text)
    (repo / ".gitignore").write_text(".repro/\n" + ignore)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "scripts")


def runs_of(repo: Path) -> list[Path]:
    return sorted((repo / ".repro" / "runs").iterdir())


def manifest_of(run_dir: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((run_dir / "manifest.yaml").read_text())  # type: ignore[no-any-return]


A = "import pathlib; p = pathlib.Path('outputs'); p.mkdir(exist_ok=True)\n" \
    "(p / 'value.txt').write_text('from a\\n')\n"
B = "import pathlib, random; p = pathlib.Path('outputs'); p.mkdir(exist_ok=True)\n" \
    "(p / 'b.txt').write_text(f'{random.random()!r}\\n')\n"


def test_verify_runs_ignores_files_an_earlier_command_left_in_the_output_dir(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"a.py": A, "b.py": B}, "outputs/\n")
    subprocess.run([PYTHON, "a.py"], cwd=repo, check=True, timeout=30)  # an earlier command
    capsys.readouterr()
    code = main(["verify", "--json", "--runs", "2", "--output", "outputs", "--", PYTHON, "b.py"])
    report = json.loads(capsys.readouterr().out)
    assert (code, report["verdict"]) == (0, "bitwise"), report
    assert [c["name"] for c in report["checks"] if c["kind"] == "output"] == ["outputs"]

    first = runs_of(repo)[0]
    entry = manifest_of(first)["outputs"]["outputs"]
    assert (entry["files"], entry["stale"]) == (1, 1)  # b.txt is the run's; value.txt is not
    listing = json.loads((first / entry["listing"]).read_text())
    assert list(listing["files"]) == ["b.txt"] and listing["stale"] == ["value.txt"]
    assert not (first / "kept" / "outputs" / "value.txt").exists()  # never compared, not kept
    capsys.readouterr()  # diff: the checkout's run (1 stale file) and the replay's (none) agree
    main(["diff", "--json", str(first), str(runs_of(repo)[1])])
    assert json.loads(capsys.readouterr().out)["sections"]["outputs"]["changed"] is False


def test_a_file_output_the_run_did_not_write_is_stale_and_not_compared(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"t.py": "print('loss=0.5')\n",
                  "repro.yaml": "metric_patterns: ['loss=(?P<loss>[0-9.]+)']\n"}, "result.txt\n")
    (repo / "result.txt").write_text("left by an earlier run\n")
    assert main(["run", "--output", "result.txt", "--", PYTHON, "t.py"]) == 0
    entry = manifest_of(runs_of(repo)[0])["outputs"]["result.txt"]
    assert entry["kind"] == "file" and entry["stale"] is True
    capsys.readouterr()
    assert main(["show", "latest"]) == 0
    assert "result.txt  stale: not written by this run" in capsys.readouterr().out
    (repo / "result.txt").write_text("changed since\n")  # stale: what it holds does not matter
    capsys.readouterr()
    before = snapshot_tree(repo)
    code = main(["verify", "--json", "latest"])
    assert snapshot_tree(repo) == before  # verify never changes the user's checkout
    report = json.loads(capsys.readouterr().out)
    assert (code, report["verdict"]) == (0, "bitwise"), report


def test_a_metrics_file_the_run_did_not_rewrite_is_not_credited(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"t.py": "print('no metrics today')\n"}, "metrics.json\n")
    (repo / "metrics.json").write_text('{"loss": 0.25}\n')  # an earlier run's
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "t.py"]) == 0
    metrics = manifest_of(runs_of(repo)[0])["metrics"]
    assert metrics["final"] == {} and metrics["source"] == "metrics.json"
    assert "metrics file metrics.json was not rewritten by the command" in capfd.readouterr().err


def test_an_interrupted_run_is_not_listed_with_the_previous_runs_metrics(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"t.py": "import json, pathlib, sys, time\n"
                          "if sys.argv[1] == 'slow':\n"
                          "    print('ready', flush=True); time.sleep(60)\n"
                          "pathlib.Path('metrics.json').write_text(json.dumps({'loss': 0.5}))\n"},
           "metrics.json\n")
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "t.py", "fast"]) == 0
    proc = subprocess.Popen([PYTHON, "-m", "repro", "run", "--metrics", "metrics.json", "--",
                             PYTHON, "t.py", "slow"], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C before the script writes its metrics
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["status"], r["metrics"]) for r in listed] == [("interrupted", {}),
                                                             ("succeeded", {"loss": 0.5})]


SAVE = """\
import argparse, pathlib
p = argparse.ArgumentParser(); p.add_argument("--save"); args = p.parse_args()
pathlib.Path(args.save).write_text("weights\\n")
print("loss=0.5")
"""


def test_a_path_in_argv_the_run_wrote_is_an_output_not_an_input(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"save.py": SAVE, "repro.yaml": "seed: 7\nmetric_patterns: "
                  "['loss=(?P<loss>[0-9.]+)']\n"}, "model.pt\n")
    argv = ["run", "--", PYTHON, "save.py", "--save", "model.pt"]
    assert main(argv) == 0  # model.pt does not exist yet: created, so an output
    assert main(argv) == 0  # model.pt exists from the first run: rewritten, still an output
    first, second = (manifest_of(r) for r in runs_of(repo))
    for m in (first, second):
        assert m["data"] == {}
        assert m["outputs"]["model.pt"]["kind"] == "file"
        assert "stale" not in m["outputs"]["model.pt"]
    assert first["fingerprint"] == second["fingerprint"]  # the old model is not in the recipe
    (repo / "model.pt").write_text("the user's own file\n")
    capsys.readouterr()
    before = snapshot_tree(repo)
    code = main(["verify", "--json", "latest"])
    assert snapshot_tree(repo) == before  # verify never changes the user's checkout
    report = json.loads(capsys.readouterr().out)
    assert (code, report["verdict"]) == (0, "bitwise"), report
    assert "model.pt" in [c["name"] for c in report["checks"]]
    assert (repo / "model.pt").read_text() == "the user's own file\n"


USE = """\
import pathlib, sys
how, path = sys.argv[1], pathlib.Path(sys.argv[2])
if how == "read":
    path.read_text()
elif how == "append":  # extends its own input
    with path.open("a") as f: f.write("2\\n")
elif how == "beside":  # a cache next to the data it read
    (path / "cache.bin").write_bytes(b"c")
elif how == "rewrite-dir":  # a results directory reused
    (path / "model.pt").write_text("new\\n")
"""


@pytest.mark.parametrize(("how", "name", "output"), [
    ("read", "data.csv", False), ("append", "data.csv", False), ("beside", "data", False),
    ("rewrite-dir", "ckpt", True)])
def test_a_path_in_argv_is_an_output_only_when_the_run_replaced_its_content(
        repo: Path, how: str, name: str, output: bool) -> None:
    commit(repo, {"use.py": USE}, "data.csv\ndata/\nckpt/\n")
    (repo / "data.csv").write_text("x\n1\n")
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("x\n1\n")
    (repo / "ckpt").mkdir()
    (repo / "ckpt" / "model.pt").write_text("old\n")
    (repo / "ckpt" / "notes.txt").write_text("kept\n")
    assert main(["run", "--", PYTHON, "use.py", how, name]) == 0
    m = manifest_of(runs_of(repo)[0])
    assert (list(m["outputs"]), list(m["data"])) == (([name], []) if output else ([], [name]))
    if output:  # only the rewritten checkpoint is the run's; the notes are stale
        assert (m["outputs"][name]["files"], m["outputs"][name]["stale"]) == (1, 1)


def test_a_large_directory_named_in_argv_stays_an_input_and_is_not_watched(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(runresults, "WATCH_MAX_FILES", 1)  # ckpt/ holds 2 files: "a dataset"
    commit(repo, {"use.py": USE}, "ckpt/\n")
    (repo / "ckpt").mkdir()
    (repo / "ckpt" / "model.pt").write_text("old\n")
    (repo / "ckpt" / "notes.txt").write_text("kept\n")
    assert main(["run", "--", PYTHON, "use.py", "rewrite-dir", "ckpt"]) == 0
    m = manifest_of(runs_of(repo)[0])
    assert (list(m["outputs"]), list(m["data"])) == ([], ["ckpt"])


TRAIN = """\
import json, pathlib, sys
lr = float(sys.argv[sys.argv.index("--lr") + 1])
pathlib.Path("checkpoints").mkdir(exist_ok=True)
pathlib.Path("checkpoints/model.pt").write_text(f"weights for {lr}\\n")
pathlib.Path("metrics.json").write_text(json.dumps({"loss": lr * 10}))
"""


@pytest.mark.parametrize("declared", ["flags", "config"])
def test_declared_outputs_and_the_metrics_file_are_never_dirt(repo: Path, declared: str) -> None:
    files = {"train.py": TRAIN}
    flags = ["--output", "checkpoints/", "--metrics", "metrics.json"]
    if declared == "config":
        files["repro.yaml"] = "outputs: [checkpoints/]\nmetrics: metrics.json\n"
        flags = []
    commit(repo, files)  # checkpoints/ and metrics.json are not ignored: untracked after a run
    assert main(["run", *flags, "--", PYTHON, "train.py", "--lr", "0.01"]) == 0
    assert main(["run", *flags, "--", PYTHON, "train.py", "--lr", "0.02"]) == 0
    second = manifest_of(runs_of(repo)[-1])
    assert second["code"]["dirty"] is False and second["code"]["untracked"] == []
    assert second["metrics"]["final"] == {"loss": 0.2}
    (repo / "notes.txt").write_text("other untracked files still are dirt\n")
    assert main(["run", *flags, "--", PYTHON, "train.py", "--lr", "0.03"]) == 125


def test_quickstart_second_run_succeeds(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (repo / ".gitignore").unlink()
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "project")
    assert main(["init"]) == 0
    assert "added .repro/, checkpoints/, metrics.json to .gitignore" in capfd.readouterr().err
    git(repo, "add", "repro.yaml", ".gitignore")
    git(repo, "commit", "-qm", "Configure repro")
    assert main(["run", "--output", "checkpoints/", "--metrics", "metrics.json", "--",
                 PYTHON, "train.py", "--lr", "0.01"]) == 0
    assert main(["run", "--", PYTHON, "train.py", "--lr", "0.02"]) == 0
    capfd.readouterr()
    assert main(["diff", "latest~1", "latest"]) == 1
    assert "different params" in capfd.readouterr().out  # only --lr differs


def test_verify_refuses_a_run_whose_only_outputs_are_stale(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"t.py": "print('nothing written')\n"}, "result.txt\n")
    (repo / "result.txt").write_text("left by an earlier run\n")
    assert main(["run", "--output", "result.txt", "--", PYTHON, "t.py"]) == 0
    capsys.readouterr()
    assert main(["verify", "--yes", "latest"]) == 2  # the exit code alone would prove nothing
    assert "only outputs an earlier run left (stale)" in capsys.readouterr().err


def test_files_the_run_wrote_but_nobody_records_are_named(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"w.py": "import pathlib\n"
                          "pathlib.Path('mnist_cnn.pt').write_text('weights')\n"
                          "pathlib.Path('out').mkdir(exist_ok=True)\n"
                          "pathlib.Path('out/declared.txt').write_text('x')\n"
                          "pathlib.Path('logs').mkdir(exist_ok=True)\n"
                          "pathlib.Path('logs/ignored.txt').write_text('x')\n"}, "logs/\n")
    assert main(["run", "--output", "out", "--", PYTHON, "w.py"]) == 0
    err = capfd.readouterr().err
    assert "the run wrote files that are not recorded as outputs: mnist_cnn.pt" in err
    assert "declared.txt" not in err and "ignored.txt" not in err and "--output PATH" in err
    (repo / "mnist_cnn.pt").unlink()
    capfd.readouterr()
    assert main(["run", "--output", "out", "--output", "mnist_cnn.pt", "--", PYTHON, "w.py"]) == 0
    assert "not recorded as outputs" not in capfd.readouterr().err


def test_a_declared_output_the_run_never_wrote_is_named_at_the_end_of_the_run(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # pytorch/examples' time_sequence_prediction saves predict0.pdf, predict1.pdf...: a user
    # declares `--output 'predict*.pdf'`, which repro takes as a literal path. The run said
    # nothing, the outputs were silently `missing`, and the warning about unrecorded files
    # told the user to do what they had done: declare them with --output.
    commit(repo, {"t.py": "import pathlib\n"
                          "for i in range(2): pathlib.Path(f'predict{i}.pdf').write_text('x')\n"
                          "pathlib.Path('ckpt').mkdir(exist_ok=True)\n"},
           "predict*.pdf\nckpt/\nresult.txt\n")
    (repo / "result.txt").write_text("left by an earlier run\n")
    assert main(["run", "--output", "predict*.pdf", "--output", "checkpoints/", "--output",
                 "ckpt", "--output", "result.txt", "--", PYTHON, "t.py"]) == 0
    err = capfd.readouterr().err
    assert "declared outputs the run did not write: predict*.pdf (missing), checkpoints " \
           "(missing), ckpt (no files), result.txt (an earlier run's file)" in err, err
    assert "repro does not expand wildcards: predict*.pdf matches predict0.pdf, " \
           "predict1.pdf" in err, err
    outputs = manifest_of(runs_of(repo)[0])["outputs"]
    assert outputs["predict*.pdf"]["kind"] == "missing"  # the record itself is unchanged
    capfd.readouterr()
    assert main(["run", "--output", "predict0.pdf", "--output", "predict1.pdf", "--",
                 PYTHON, "t.py"]) == 0
    assert "did not write" not in capfd.readouterr().err
    capfd.readouterr()  # a failed run is explained by its failure: no word on its outputs
    assert main(["run", "--output", "checkpoints/", "--", PYTHON, "-c", "raise SystemExit(3)"]) == 3
    assert "did not write" not in capfd.readouterr().err


def test_the_projects_outputs_another_script_writes_are_not_warned_about(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # repro.yaml lists what the project's scripts write: train.py the checkpoints, sample.py
    # the samples. A training run that wrote its checkpoints was told "declared outputs the run
    # did not write: samples.txt ... drop it from `outputs:`", which would break sample.py.
    commit(repo, {"train.py": "import pathlib\npathlib.Path('out').mkdir(exist_ok=True)\n"
                              "pathlib.Path('out/ckpt.pt').write_text('w')\n",
                  "repro.yaml": "outputs: [out/, samples.txt]\n"}, "out/\nsamples.txt\n")
    assert main(["run", "--", PYTHON, "train.py"]) == 0
    assert "did not write" not in capfd.readouterr().err
    # ... but a run that wrote none of them is told, and so is one that missed its own --output
    assert main(["run", "--", PYTHON, "-c", "pass"]) == 0
    err = capfd.readouterr().err
    assert "declared outputs the run did not write: out (only an earlier run's files), " \
           "samples.txt (missing)" in err, err
    assert "nothing to do if this script writes none of the project's `outputs:`" in err, err
    assert main(["run", "--output", "typo.pt", "--", PYTHON, "train.py"]) == 0
    err = capfd.readouterr().err
    assert "declared outputs the run did not write: typo.pt (missing)" in err, err
    assert "check the path" in err and "nothing to do" not in err, err  # its own --output


def test_an_output_dir_holding_only_an_earlier_runs_files_is_not_missing_from_the_replay(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A Hydra sweep declares `outputs: [outputs/, multirun/]` and writes only multirun/;
    # outputs/ holds the earlier single runs' files. verify said "outputs: recorded directory
    # missing from the replay", not-reproduced, for a directory the run never wrote into.
    commit(repo, {"t.py": "import pathlib\np = pathlib.Path('results'); p.mkdir(exist_ok=True)\n"
                          "(p / 'r.txt').write_text('1')\n"}, "old/\nresults/\n")
    (repo / "old").mkdir()
    (repo / "old" / "earlier.txt").write_text("an earlier run's\n")
    assert main(["run", "--output", "old/", "--output", "results/", "--", PYTHON, "t.py"]) == 0
    entry = manifest_of(runs_of(repo)[0])["outputs"]["old"]
    assert (entry["kind"], entry["files"], entry["stale"]) == ("dir", 0, 1)
    capsys.readouterr()
    code = main(["verify", "--json", "latest"])
    report = json.loads(capsys.readouterr().out)
    assert (code, report["verdict"]) == (0, "bitwise"), report
    (old,) = [c for c in report["checks"] if c["name"] == "old"]
    assert old["status"] == "same", old


@pytest.mark.parametrize("declared", ["flags", "config"])
def test_declared_untracked_inputs_are_never_dirt(
        repo: Path, declared: str, capsys: pytest.CaptureFixture[str]) -> None:
    # pytorch/examples' time_sequence_prediction: `repro run --output traindata.pt -- python
    # generate_sine_wave.py`, then `repro run --data traindata.pt -- python train.py` was
    # refused: "the work tree has uncommitted or untracked files: traindata.pt (untracked)",
    # for the file the user had just named as the run's input (hashed and copied to replays).
    files = {"gen.py": "import pathlib\npathlib.Path('traindata.txt').write_text('1 2 3')\n",
             "train.py": "import pathlib\nx = pathlib.Path('traindata.txt').read_text()\n"
                         "pathlib.Path('out.txt').write_text(str(sum(map(int, x.split()))))\n"}
    flags = ["--data", "traindata.txt"]
    if declared == "config":
        files["repro.yaml"] = "data: [traindata.txt]\n"
        flags = []
    commit(repo, files, "out.txt\n")
    if declared == "flags":
        assert main(["run", "--output", "traindata.txt", "--", PYTHON, "gen.py"]) == 0
    else:  # the configuration's input must exist for every run: made without repro
        subprocess.run([PYTHON, "gen.py"], cwd=repo, check=True, timeout=30)
    assert main(["run", *flags, "--output", "out.txt", "--", PYTHON, "train.py"]) == 0
    m = manifest_of(runs_of(repo)[-1])
    assert m["code"]["dirty"] is False and m["code"]["untracked"] == []
    assert m["data"]["traindata.txt"]["kind"] == "file"
    capsys.readouterr()
    assert main(["verify", "--json", "latest"]) == 0, capsys.readouterr().out
    (repo / "notes.txt").write_text("other untracked files still are dirt\n")
    assert main(["run", *flags, "--", PYTHON, "train.py"]) == 125


def test_a_declared_output_named_in_argv_that_the_run_only_read_is_its_input(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # nanoGPT: `outputs: [out/]` for train.py, then `repro run -- python sample.py
    # --out_dir=out` samples from out/ckpt.pt. The checkpoint the samples come from was
    # recorded nowhere (argv paths under a declared output were results, never inputs), so
    # another checkpoint later gave other samples with nothing in `diff` to say why.
    commit(repo, {"train.py": "import pathlib, sys\np = pathlib.Path(sys.argv[1]); "
                              "p.mkdir(exist_ok=True)\n(p / 'ckpt.pt').write_text(sys.argv[2])\n",
                  "sample.py": "import pathlib, sys\n"
                               "print('sample from', (pathlib.Path(sys.argv[1]) / 'ckpt.pt')"
                               ".read_text())\n",
                  "repro.yaml": "seed: 1\noutputs: [out/]\n"}, "out/\n")
    assert main(["run", "--", PYTHON, "train.py", "out", "weights-1"]) == 0
    first = manifest_of(runs_of(repo)[-1])
    assert "out" not in first["data"] and first["outputs"]["out"]["files"] == 1  # written
    assert main(["run", "--", PYTHON, "sample.py", "out"]) == 0
    sample = manifest_of(runs_of(repo)[-1])
    assert sample["data"]["out"]["hash"] == first["outputs"]["out"]["hash"], sample["data"]
    assert "did not write" not in capfd.readouterr().err  # it is an input: nothing to warn
    capfd.readouterr()
    assert main(["run", "--", PYTHON, "train.py", "out", "weights-2"]) == 0
    assert main(["run", "--", PYTHON, "sample.py", "out"]) == 0
    capfd.readouterr()
    assert main(["diff", "--json", runs_of(repo)[1].name, runs_of(repo)[3].name]) == 1
    doc = json.loads(capfd.readouterr().out)
    assert [c["key"] for c in doc["sections"]["data"]["changes"]] == ["out"], doc["sections"]
    sampled = runs_of(repo)[3].name
    (repo / "out" / "ckpt.pt").write_text("weights-3")  # the checkout moved on
    assert main(["replay", sampled]) == 125
    assert "inputs differ from the recorded run: out (modified ckpt.pt)" in \
        capfd.readouterr().err
    (repo / "out" / "ckpt.pt").write_text("weights-2")
    assert main(["replay", sampled]) == 0  # the input as recorded: the replay reads its copy
    assert "sample from weights-2" in capfd.readouterr().out


def test_a_recursive_wildcard_is_named_without_walking_the_tree(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # `--output '**/x*.pt'` matching nothing walked the whole tree (.git, datasets) after
    # every run to look for matches: a `**` pattern is named, not expanded.
    commit(repo, {"t.py": "print(1)\n"}, "sub/\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "x1.pt").write_text("an earlier run's")
    assert main(["run", "--output", "**/x*.pt", "--", PYTHON, "t.py"]) == 0
    err = capfd.readouterr().err
    assert "did not write: **/x*.pt (missing)" in err
    assert "repro does not expand wildcards; name each file" in err, err
    assert "x1.pt" not in err  # not looked for: `**` is not expanded
    # one level of wildcard is, reading a bounded number of directory entries
    assert main(["run", "--output", "s*/x*.pt", "--", PYTHON, "t.py"]) == 0
    assert "s*/x*.pt matches sub/x1.pt" in capfd.readouterr().err


def test_a_wildcard_hint_reads_a_bounded_number_of_entries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from repro.commands import runresults

    for d in ("a", "b", ".hidden"):
        (tmp_path / d).mkdir()
        for i in range(3):
            (tmp_path / d / f"x{i}.pt").write_text("")
    assert runresults.bounded_glob(tmp_path, "*/x1.pt") == ["a/x1.pt", "b/x1.pt"]
    assert runresults.bounded_glob(tmp_path, ".*/x?.pt") == [
        ".hidden/x0.pt", ".hidden/x1.pt", ".hidden/x2.pt"]
    monkeypatch.setattr(runresults, "GLOB_MAX_ENTRIES", 5)  # 3 folders + 3 files > 5
    assert runresults.bounded_glob(tmp_path, "*/x*.pt") == []
