"""The statistical level on real runs: `run --repeat`, groups, `compare`, `verify --level
statistical`, with a small noisy training script in a real git repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from repro.cli.main import main
from repro.commands import group as groupflow
from tests.conftest import PYTHON, git

# A small "training": loss decays with the learning rate, plus seed noise; seeded from the
# seed repro injects (stdlib random), so a group's seed fixes every member's result.
NOISY = """\
import json, os, random, sys
lr = float(sys.argv[1])
rng = random.Random(int(os.environ["REPRO_SEED"]))
loss = 1.0
with open(os.environ["REPRO_METRICS_FILE"], "w") as series:
    for step in range(12):
        loss = loss * (1 - lr) + rng.gauss(0, 0.01)
        series.write(json.dumps({"step": step, "loss": loss}) + "\\n")
json.dump({"loss": loss + OFFSET, "accuracy": 1 - loss + rng.gauss(0, 0.01)},
          open("metrics.json", "w"))
"""
# Seeded from the clock (not reproducible bit for bit), small noise around a fixed result.
CLOCK = """\
import json, random, time
rng = random.Random(time.time_ns())
json.dump({"loss": 0.5 + rng.gauss(0, 0.001)}, open("metrics.json", "w"))
"""
# Diverges (loss nan) on its second run when OFFSET is not 0; seed noise otherwise.
DIVERGES_SECOND_TIME = """\
import json, os, pathlib, random
count = pathlib.Path("count.txt")
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
rng = random.Random(int(os.environ["REPRO_SEED"]))
loss = float("nan") if n == 2 and OFFSET else 0.5 + rng.gauss(0, 0.01)
with open(os.environ["REPRO_METRICS_FILE"], "w") as series:
    for step in range(4):
        value = loss if step > 1 else 1.0 / (step + 1) + rng.gauss(0, 0.01)
        series.write(json.dumps({"step": step, "loss": value}) + "\\n")
json.dump({"loss": loss, "steps": 4}, open("metrics.json", "w"))
"""
FAILS_SECOND_TIME = """\
import json, pathlib, sys
count = pathlib.Path("count.txt")
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
json.dump({"loss": 1.0}, open("metrics.json", "w"))
sys.exit(3 if n == 2 else 0)
"""


def commit(repo: Path, text: str, message: str = "script", offset: float = 0.0) -> None:
    (repo / "train.py").write_text(text.replace("OFFSET", repr(offset)))
    (repo / ".gitignore").write_text(".repro/\nmetrics.json\ncount.txt\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def group(*args: str, lr: float = 0.1, repeat: int = 5, expect: int = 0) -> None:
    code = main(["run", "--repeat", str(repeat), *args, "--metrics", "metrics.json", "--",
                 PYTHON, "train.py", str(lr)])
    assert code == expect


def json_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    capsys.readouterr()
    code = main(args)
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_repeat_records_a_group_with_derived_seeds(repo: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, NOISY)
    group("--seed", "7", "--name", "base", repeat=3)
    capsys.readouterr()
    _, listing = json_of(["runs", "--json"], capsys)
    members = [r for r in listing["runs"] if r["group"]]
    assert len(members) == 3
    gid = members[0]["group"]["id"]
    by_index = {r["group"]["index"]: r for r in members}
    for i in range(3):
        assert by_index[i]["group"] == {"id": gid, "index": i, "size": 3, "seed": 7,
                                        "name": "base"}
        assert by_index[i]["seed"] == groupflow.member_seed(7, i)
    _, shown = json_of(["show", by_index[1]["run_id"], "--json"], capsys)
    assert shown["group"]["index"] == 1 and shown["seed"]["source"] == "group"
    assert main(["show", by_index[1]["run_id"]]) == 0
    assert f"group:{gid} (base), member 2 of 3, group seed 7" in capsys.readouterr().out
    # one row for the group, unless expanded
    capsys.readouterr()
    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert f"group:{gid}" in table and "succeeded ×3" in table
    assert main(["runs", "--expand"]) == 0
    expanded = capsys.readouterr().out
    assert "group:" not in expanded and expanded.count("succeeded") == 3
    # K at once gives the same members: the seeds come from the group seed alone (the loss is
    # read from each run's own series file: a shared metrics file is refused with --jobs)
    assert main(["run", "--repeat", "3", "--jobs", "2", "--metrics", "metrics.json", "--",
                 PYTHON, "train.py", "0.1"]) == 125
    assert "overwrite each other's metrics.json" in capsys.readouterr().err
    for name, jobs in (("serial", "1"), ("parallel", "2")):
        assert main(["run", "--repeat", "3", "--jobs", jobs, "--seed", "7", "--name", name,
                     "--", PYTHON, "train.py", "0.1"]) == 0
    _, listing = json_of(["runs", "--json"], capsys)
    found = {name: sorted((r["group"]["index"], r["seed"], r["metrics"]["loss"])
                          for r in listing["runs"] if r["group"] and r["group"]["name"] == name)
             for name in ("serial", "parallel")}
    assert len(found["parallel"]) == 3 and found["parallel"] == found["serial"]


@pytest.mark.slow
def test_a_failed_member_fails_the_group(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, FAILS_SECOND_TIME)
    capsys.readouterr()
    group("--name", "flaky", repeat=4, expect=3)
    err = capsys.readouterr().err
    # members are counted from 1, as `repro show` counts them: the second of four failed
    assert "GROUP FAILED: member 2 of 4" in err and "(exit 3)" in err and "2 not run" in err
    assert main(["runs"]) == 0
    assert "failed 1/4" in capsys.readouterr().out
    # compare leaves the failed member out, and says so
    assert main(["compare", "flaky", "flaky"]) == 0
    err = capsys.readouterr().err
    assert "left out 1 run(s) that did not succeed" in err
    assert "one sample cannot tell seed noise" in err
    assert "flaky and flaky are the same 1 run(s): there is nothing to compare" in err
    # so does verify: the result it checks is that of the run that finished
    assert main(["verify", "flaky", "--level", "statistical", "--runs", "3"]) in (0, 1)
    assert "flaky: left out 1 recorded run(s) that did not succeed" in capsys.readouterr().err


@pytest.mark.slow
def test_a_group_where_one_run_is_expected_says_so(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, NOISY)
    group("--name", "base", repeat=2)
    _, listing = json_of(["runs", "--json"], capsys)
    gid = listing["runs"][0]["group"]["id"]
    first = min(r["run_id"] for r in listing["runs"])
    for args in (["show", "base"], ["show", f"group:{gid}"], ["diff", "base", "latest"],
                 ["verify", f"group:{gid}"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "is a group of 2 runs; this command takes one run, e.g. its first: " + first in err
        assert f"hint: compare groups with `repro compare group:{gid} B`" in err
    assert main(["show", "nothing"]) == 2
    assert "no run matches 'nothing'" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_during_parallel_members_ends_with_the_group_summary(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, "import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([PYTHON, "-m", "repro", "run", "--repeat", "4", "--jobs", "2",
                             "--", PYTHON, "train.py"], cwd=repo, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        # Both members are running. Their output shares one pipe, and their writes interleave:
        # `print` writes "ready" and "\n" apart when Python is unbuffered (PYTHONUNBUFFERED=1,
        # as on CI), so "readyready\n\n" is as good as two whole lines.
        seen = ""
        while seen.count("ready") < 2:
            line = proc.stdout.readline()
            assert line, f"the group ended before both members were ready: {seen!r}"
            seen += line
        assert seen.replace("\n", "") == "readyready"
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    # the group says what became of it, as it does when members run one at a time
    assert "GROUP FAILED: member 1 of 4" in err and "interrupted (exit 130), 2 not run" in err
    capsys.readouterr()
    assert main(["runs"]) == 0  # the group's row says it was stopped, not that it failed
    assert "interrupted 2/4" in capsys.readouterr().out


@pytest.mark.slow
def test_runs_limit_counts_rows_and_never_cuts_a_group(
        repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # piped: one line a row
    commit(repo, NOISY)
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "train.py", "0.1"]) == 0
    group("--name", "five", repeat=5)
    capsys.readouterr()
    # before: `-n 2` read two runs, and showed the group of five as "partial 2/5"
    assert main(["runs", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "succeeded ×5" in out and "partial" not in out
    assert len([line for line in out.splitlines() if line[:1].isdigit() or "group:" in line]) == 2
    assert main(["runs", "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "succeeded ×5" in out and "partial" not in out
    # the name it is called by (`repro compare five ...`) is shown
    assert out.splitlines()[0].split()[:3] == ["run", "name", "status"]
    assert out.splitlines()[1].split()[1] == "five"
    assert main(["runs", "-n", "2", "--expand"]) == 0  # members: -n counts runs
    assert capsys.readouterr().out.count("succeeded") == 2


@pytest.mark.slow
def test_compare_large_lr_difference_is_better_with_the_right_sign(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, NOISY)
    group("--seed", "1", "--name", "slow-lr", lr=0.1)
    group("--seed", "2", "--name", "fast-lr", lr=0.3)
    code, doc = json_of(["compare", "slow-lr", "fast-lr", "--metric", "loss:lower",
                         "--metric", "accuracy:higher", "--json"], capsys)
    assert code == 1 and doc["schema"] == "repro/compare/v1" and doc["verdict"] == "better"
    loss = next(m for m in doc["metrics"] if m["name"] == "loss")
    assert loss["verdict"] == "better" and loss["difference"] < 0
    assert loss["ci"][1] < 0 and loss["n_a"] == loss["n_b"] == 5
    assert loss["prob_b_greater"] == 0.0 and loss["p_adjusted"] < 0.05
    # no direction: `different`; a regression fails only with --fail-on worse
    code, doc = json_of(["compare", "group:slow-lr", "group:fast-lr", "--json"], capsys)
    assert (code, doc["verdict"]) == (1, "different")
    assert main(["compare", "slow-lr", "fast-lr", "--metric", "loss:lower",
                 "--fail-on", "worse"]) == 0
    capsys.readouterr()
    assert main(["compare", "fast-lr", "slow-lr", "--metric", "loss:lower",
                 "--fail-on", "worse"]) == 1
    out = capsys.readouterr().out
    assert "worse" in out and "┃" in out  # the verdict, and the box plot of both samples
    assert "mean curve" in out  # the loss series: mean curve per group with a band
    capsys.readouterr()
    assert main(["compare", "slow-lr", "fast-lr", "--markdown"]) == 1
    assert "| `loss` |" in capsys.readouterr().out
    # the direction, as the terminal table shows it
    assert main(["compare", "slow-lr", "fast-lr", "--metric", "loss:lower", "--markdown"]) == 1
    assert "| `loss` (lower) |" in capsys.readouterr().out


@pytest.mark.slow
def test_compare_same_recipe_is_no_detectable_difference(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, NOISY)
    group("--seed", "3", "--name", "a")
    group("--seed", "4", "--name", "b")
    code, doc = json_of(["compare", "a", "b", "--json"], capsys)
    assert (code, doc["verdict"]) == (0, "no-detectable-difference")
    for m in doc["metrics"]:
        assert m["verdict"] == "no-detectable-difference" and m["detectable_effect"] > 0
        assert m["ci"][0] < 0 < m["ci"][1]


@pytest.mark.slow
def test_compare_a_group_with_a_diverged_run_is_worse(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, DIVERGES_SECOND_TIME)
    group("--seed", "3", "--name", "a", repeat=4)
    (repo / "count.txt").unlink()
    commit(repo, DIVERGES_SECOND_TIME, "diverges", offset=1.0)
    group("--seed", "4", "--name", "b", repeat=4)
    code, doc = json_of(["compare", "a", "b", "--metric", "loss:lower", "--json"], capsys)
    (m,) = doc["metrics"]
    assert (code, doc["verdict"], m["verdict"]) == (1, "worse", "worse")
    assert m["n_b"] == 3 and "1 of 4 run(s) of B gave nan or inf" in m["note"]
    capsys.readouterr()
    assert main(["compare", "a", "b", "--metric", "loss:lower"]) == 1  # the curves drawn too
    out = capsys.readouterr().out
    assert "worse" in out and "mean curve per group" in out
    assert "1 of 4 run(s) of B gave nan or inf" in out
    # every run diverged: named, not "recorded no numeric metric"
    (repo / "count.txt").write_text("1")
    group("--seed", "5", "--name", "c", repeat=1)
    capsys.readouterr()
    assert main(["compare", "a", "c", "--metric", "loss:lower"]) != 0
    assert "every run of c gave nan or inf for 'loss'" in capsys.readouterr().err
    assert main(["compare", "c", "a"]) != 0  # not "no detectable difference" on what is left
    assert "every run of c gave nan or inf for 'loss'" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_single_runs_warn_and_usage_errors(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, NOISY)
    for seed in ("1", "2"):
        assert main(["run", "--seed", seed, "--metrics", "metrics.json", "--", PYTHON,
                     "train.py", "0.1"]) == 0
    capsys.readouterr()
    assert main(["compare", "latest~1", "latest"]) == 0
    captured = capsys.readouterr()
    assert "one sample cannot tell seed noise from a change" in captured.err
    assert main(["compare", "latest~1", "latest", "--metric", "nope"]) == 2
    assert "recorded no numeric metric 'nope'" in capsys.readouterr().err
    # contradictory directions: before, the last one silently won
    assert main(["compare", "latest~1", "latest", "--metric", "loss:lower",
                 "--metric", "loss:higher"]) == 2
    assert "--metric loss is given twice, as loss:lower and loss:higher" in \
        capsys.readouterr().err
    assert main(["compare", "group:missing", "latest"]) == 2
    assert "no group matches" in capsys.readouterr().err


# Training whose second run diverges (its loss comes out NaN: `second`) or writes a string
# (`word`), or every run does (`all`, `allword`); `lr` is a number on one side only,
# `optimizer` a string on both.
DIVERGES = """\
import json, os, pathlib, random, sys
count = pathlib.Path("count.txt")
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
rng = random.Random(int(os.environ["REPRO_SEED"]))
loss = 0.5 + rng.gauss(0, 0.01)
mode = sys.argv[1]
if mode == "all" or (mode == "second" and n == 2):
    loss = float("nan")
if mode == "allword" or (mode == "word" and n == 2):
    loss = "high"
m = {"loss": loss, "accuracy": 0.9 + rng.gauss(0, 0.01), "optimizer": "sgd"}
if mode == "lr":
    m["lr"] = 0.1
json.dump(m, open("metrics.json", "w"))
"""


@pytest.mark.slow
def test_compare_says_which_values_it_leaves_out(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, DIVERGES)
    for name in ("lr", "second", "word", "all", "allword"):
        (repo / "count.txt").unlink(missing_ok=True)
        assert main(["run", "--repeat", "3", "--name", name, "--metrics", "metrics.json", "--",
                     PYTHON, "train.py", name]) == 0
    # the group's summary and row say over how many runs a mean is taken
    assert re.search(r"\(word\): .*; loss \(2 of 3 runs\) [0-9.]+ ± ", capsys.readouterr().err)
    from repro.cli import statsview

    _, listing = json_of(["runs", "--json"], capsys)
    rows = {r["name"]: r for r in statsview.collapse_groups(listing["runs"])}  # `repro runs`
    assert re.fullmatch(r"[0-9.]+±[0-9.e-]+ \(2/3\)", rows["second"]["metrics"]["loss"])
    assert "(" not in rows["lr"]["metrics"]["loss"]
    # one of word's three losses is a string: left out of loss, and said so (stderr and --json)
    _, doc = json_of(["compare", "lr", "word", "--json"], capsys)
    loss = next(m for m in doc["metrics"] if m["name"] == "loss")
    assert (loss["n_a"], loss["n_b"]) == (3, 2)
    assert ("B (word): loss is not a number in 1 of 3 runs ('high' in 1 run); those runs are "
            "left out of loss") in doc["warnings"]
    assert "lr is not compared: B (word) has no such metric" in doc["warnings"]
    assert not any("optimizer" in w for w in doc["warnings"])  # a string on both sides
    # a NaN is no string: the run diverged, and the metric differs (the verdict says why)
    _, doc = json_of(["compare", "lr", "second", "--json"], capsys)
    loss = next(m for m in doc["metrics"] if m["name"] == "loss")
    assert loss["verdict"] == "different" and "1 of 3 run(s) of B gave nan or inf" in loss["note"]
    assert not any(w.startswith("B (second): loss") for w in doc["warnings"])
    assert main(["compare", "lr", "all"]) == 2
    assert "every run of all gave nan or inf for 'loss'" in capsys.readouterr().err
    # every loss of `allword` is a string: comparing every shared metric, left out, loudly
    assert main(["compare", "lr", "allword"]) in (0, 1)
    err = capsys.readouterr().err
    assert "loss is not compared: B (allword) has no numeric value ('high' in 3 runs)" in err
    # named, it cannot be compared at all: trouble, saying why
    assert main(["compare", "lr", "allword", "--metric", "loss:lower"]) == 2
    err = capsys.readouterr().err
    assert "allword recorded 'loss' in no run as a number ('high' in 3 runs)" in err
    assert "hint: its numeric metrics: accuracy" in err

@pytest.mark.slow
def test_a_fresh_run_that_diverges_is_not_reproduced(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The loss is always 0.5, except that the third execution of the script (counted in a
    # file outside the repository, as replays run in worktrees of their own) diverges to NaN.
    count = tmp_path / "count.txt"
    commit(repo, f"""\
import json, pathlib
count = pathlib.Path({str(count)!r})
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
json.dump({{"loss": float("nan") if n == 3 else 0.5}}, open("metrics.json", "w"))
""")
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "train.py"]) == 0
    capsys.readouterr()
    code = main(["verify", "latest", "--level", "statistical", "--runs", "4", "--json"])
    captured = capsys.readouterr()
    doc, err = json.loads(captured.out), captured.err
    # three fresh runs agree with the recorded 0.5; the one that diverged is no reproduction
    assert (code, doc["verdict"]) == (1, "not-reproduced")
    assert len(doc["diverged"]) == 1 and doc["diverged"][0] in doc["runs"]
    assert doc["failed"] == [] and doc["checks"][0]["n_new"] == 3
    assert "1 of 4 fresh run(s) recorded a metric that is not a finite number" in err
    assert "loss=nan" in err


# Seeds itself with a constant, as many published training scripts do (`--seed 1111`): every
# member of a group computes the same result, whatever seed repro injects.
SELF_SEEDED = """\
import json, random, sys
random.seed(1111)
lr = float(sys.argv[1])
json.dump({"loss": lr + random.gauss(0, 0.01)}, open("metrics.json", "w"))
"""


@pytest.mark.slow
def test_a_self_seeded_script_is_named_not_mistaken_for_noise_free(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, SELF_SEEDED)
    capsys.readouterr()
    group("--name", "a", lr=0.1, repeat=3)
    err = capsys.readouterr().err
    assert "all 3 runs seeded themselves with random.seed(1111)" in err
    assert "they measure no seed noise" in err and "REPRO_SEED" in err
    group("--name", "b", lr=0.1000001, repeat=3)
    capsys.readouterr()
    # two constants 1e-7 apart: "different", but the output says why the p-value is 0
    assert main(["compare", "a", "b"]) == 1
    captured = capsys.readouterr()
    assert "loss: no run-to-run variation on either side" in captured.out
    assert "A (a): all 3 runs seeded themselves with random.seed(1111)" in captured.err
    assert main(["compare", "a", "b", "--markdown"]) == 1
    md = capsys.readouterr().out
    assert "`loss`: no run-to-run variation on either side." in md
    assert "> warning: B (b): all 3 runs seeded themselves" in md
    _, doc = json_of(["compare", "a", "b", "--json"], capsys)
    assert any("seeded themselves" in w for w in doc["warnings"])
    # a group whose script takes repro's seed is not flagged
    commit(repo, NOISY, "noisy")
    group("--name", "c", repeat=3)
    assert "seeded themselves" not in capsys.readouterr().err
    # nor one that fixes a seed of its own (a data split's) and lets repro's seed the rest
    commit(repo, NOISY.replace("import json, os, random, sys\n",
                               "import json, os, random, sys\nrandom.seed(0)\n"), "split")
    group("--name", "d", repeat=3)
    assert "seeded themselves" not in capsys.readouterr().err


@pytest.mark.slow
def test_a_margin_for_a_metric_the_run_lacks_is_refused_before_running(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, NOISY)
    group("--name", "base", repeat=2)
    before = len(list((repo / ".repro" / "runs").iterdir()))
    capsys.readouterr()
    # a typo: before, five replays ran and the margin was silently not used
    assert main(["verify", "base", "--level", "statistical", "--metric", "los=0.1"]) == 2
    err = capsys.readouterr().err
    assert "error: --metric los: base recorded no numeric metric 'los'" in err
    assert "hint: its metrics: accuracy, loss" in err
    assert len(list((repo / ".repro" / "runs").iterdir())) == before  # nothing ran


@pytest.mark.slow
@pytest.mark.parametrize("level", ["bitwise", "statistical"])
def test_a_junit_path_that_cannot_be_written_is_refused_before_the_replays(
        repo: Path, tmp_path: Path, level: str, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, NOISY)
    assert main(["run", "--metrics", "metrics.json", "--", PYTHON, "train.py", "0.1"]) == 0
    before = len(list((repo / ".repro" / "runs").iterdir()))
    capsys.readouterr()
    # before: the replays ran, then writing the report was a traceback (exit 3)
    missing = tmp_path / "no" / "such" / "dir" / "verify.xml"
    assert main(["verify", "latest", "--level", level, "--runs", "3",
                 "--junit", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"error: --junit {missing}: no folder {missing.parent}" in err
    assert main(["verify", "latest", "--level", level, "--junit", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert len(list((repo / ".repro" / "runs").iterdir())) == before  # nothing ran
    assert not (repo / ".repro" / "bugs").exists()


@pytest.mark.slow
def test_clock_seeded_group_reproduces_statistically_not_bitwise(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "repro.yaml").write_text("tolerance:\n  metrics:\n    loss: 0.02\n")
    commit(repo, CLOCK)
    assert main(["run", "--repeat", "5", "--name", "baseline", "--metrics", "metrics.json",
                 "--", PYTHON, "train.py"]) == 0
    junit = tmp_path / "stat.xml"
    code, doc = json_of(["verify", "baseline", "--level", "statistical", "--runs", "5",
                         "--json", "--junit", str(junit)], capsys)
    assert (code, doc["verdict"]) == (0, "statistically-reproduced")
    (check,) = doc["checks"]
    assert check["method"] == "equivalence" and check["margin"] == 0.02
    assert check["margin_source"] == "tolerance" and len(doc["runs"]) == 5
    assert ET.parse(junit).getroot().find(".//failure") is None
    # bit for bit (no tolerance: the configured one would make it within-tolerance), the same
    # run does not reproduce
    code, doc = json_of(["verify", "--json", "latest", "--metric", "loss=0"], capsys)
    assert (code, doc["verdict"]) == (1, "not-reproduced")
    # verify's own runs are one group of their own, never `latest`
    _, listing = json_of(["runs", "--json"], capsys)
    fresh = [r for r in listing["runs"] if r["started_by"] == "verify" and r["group"]]
    assert len({r["group"]["id"] for r in fresh}) == 1 and len(fresh) == 5
    # and `repro runs` shows them as one row, marked, not five (before: five rows)
    from repro.cli import statsview

    rows = statsview.collapse_groups(listing["runs"])
    verify_rows = [r for r in rows if r.get("started_by") == "verify"]
    assert [(r["status"], r["run_id"]) for r in verify_rows if r.get("is_group")] == [
        ("succeeded ×5", f"group:{fresh[0]['group']['id']}")]
    assert len(verify_rows) == 2  # the group, and the bitwise verify's one replay


@pytest.mark.slow
def test_shifted_metric_is_not_reproduced_at_head(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, NOISY)
    group("--seed", "5", "--name", "baseline")
    assert main(["run", "--seed", "9", "--metrics", "metrics.json", "--", PYTHON, "train.py",
                 "0.1"]) == 0
    single = json_of(["runs", "--json"], capsys)[1]["runs"][0]["run_id"]
    commit(repo, NOISY, "a change that shifts the loss", offset=0.5)
    junit = tmp_path / "stat.xml"
    code, doc = json_of(["verify", "group:baseline", "--level", "statistical", "--at", "HEAD",
                         "--runs", "4", "--json", "--junit", str(junit)], capsys)
    assert (code, doc["verdict"]) == (1, "not-reproduced")
    loss = next(c for c in doc["checks"] if c["name"] == "loss")
    assert loss["verdict"] == "not-reproduced" and loss["margin_source"] == "baseline-spread"
    failures = ET.parse(junit).getroot().findall(".//failure")
    assert any(f.get("message") == "not-reproduced" for f in failures)
    # a margin on the command line: a shift of 0.5 within +-1 is the same result
    code, doc = json_of(["verify", "group:baseline", "--level", "statistical", "--at", "HEAD",
                         "--runs", "4", "--metric", "loss=1", "--metric", "accuracy=0.5",
                         "--json"], capsys)
    assert (code, doc["verdict"]) == (0, "statistically-reproduced")
    assert {c["margin"] for c in doc["checks"]} == {1.0, 0.5}
    # the same, from the group's manifests committed for CI (a directory of run directories)
    _, listing = json_of(["runs", "--json"], capsys)
    for r in listing["runs"]:
        if r["group"] and r["group"]["name"] == "baseline" and r["started_by"] is None:
            (repo / "baselines" / r["run_id"]).mkdir(parents=True)
            shutil.copy(repo / ".repro" / "runs" / r["run_id"] / "manifest.yaml",
                        repo / "baselines" / r["run_id"])
    assert len(list((repo / "baselines").iterdir())) == 5
    code, doc = json_of(["verify", "baselines/", "--level", "statistical", "--at", "HEAD",
                         "--runs", "3", "--yes", "--json"], capsys)
    assert (code, doc["verdict"]) == (1, "not-reproduced") and len(doc["baseline_runs"]) == 5
    # against one recorded run: outside the new runs' prediction interval
    code, doc = json_of(["verify", single, "--level", "statistical", "--at", "HEAD",
                         "--runs", "4", "--json"], capsys)
    assert (code, doc["verdict"]) == (1, "not-reproduced")
    loss = next(c for c in doc["checks"] if c["name"] == "loss")
    assert loss["method"] == "prediction-interval"
    assert not loss["interval"][0] <= loss["recorded_mean"] <= loss["interval"][1]


@pytest.mark.slow
def test_too_few_runs_are_inconclusive_naming_how_many(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commit(repo, NOISY)
    assert main(["run", "--seed", "9", "--metrics", "metrics.json", "--", PYTHON, "train.py",
                 "0.1"]) == 0
    code, doc = json_of(["verify", "latest", "--level", "statistical", "--runs", "2",
                         "--json"], capsys)
    assert (code, doc["verdict"]) == (1, "inconclusive")
    assert doc["runs_needed"] == 3
    capsys.readouterr()
    assert main(["verify", "latest", "--level", "statistical", "--runs", "1"]) == 2
    assert "N >= 2" in capsys.readouterr().err


@pytest.mark.slow
def test_a_member_refused_after_the_first_fails_the_group(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the first member leaves an untracked file: the next one finds the tree dirty
    commit(repo, "import pathlib; pathlib.Path('notes.txt').write_text('x')\n")
    capsys.readouterr()
    assert main(["run", "--repeat", "3", "--", PYTHON, "train.py"]) == 125
    err = capsys.readouterr().err
    assert "member 2 of 3 (group" in err and "notes.txt" in err
    assert "GROUP FAILED: member 2 of 3 failed before its run started (exit 125), 1 not run" \
        in err


def test_curves_are_drawn_for_series_not_for_one_value_per_run() -> None:
    # A metrics file written once per run is a "series" of one step: the final value, which
    # the strip plot already shows; a flat band across the terminal would suggest a curve.
    from repro.cli import statsview

    assert statsview.band_plot([[0.9], [0.91]], [[0.7], [0.72]]) == []
    drawn = statsview.band_plot([[1.0, 0.8, 0.6], [1.1, 0.85, 0.62]],
                                [[1.0, 0.7, 0.5], [0.95, 0.72, 0.52]])
    assert drawn and "mean curve" in drawn[0]


def test_jobs_with_a_declared_output_says_why_and_what_to_do(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # nanoGPT with `outputs: [out-shakespeare-char/]` in repro.yaml: the hint spoke of metrics
    # files and $REPRO_METRICS_FILE, which had nothing to do with the refusal.
    (repo / "repro.yaml").write_text("outputs: [ckpt/]\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "outputs")
    assert main(["run", "--repeat", "2", "--jobs", "2", "--", PYTHON, "-c", "pass"]) == 125
    err = capsys.readouterr().err
    assert "write the same declared output ckpt/" in err, err
    assert "--jobs 1" in err and "REPRO_METRICS_FILE" not in err, err
    (repo / "repro.yaml").write_text("metrics: m.json\n")
    git(repo, "commit", "-qam", "a metrics file")
    assert main(["run", "--repeat", "2", "--jobs", "2", "--", PYTHON, "-c", "pass"]) == 125
    assert "overwrite each other's m.json" in (err := capsys.readouterr().err), err
    assert "REPRO_METRICS_FILE" in err


def test_a_groups_time_is_its_wall_time_not_the_sum_of_its_members() -> None:
    # Two members side by side (--jobs 2), 8 s each from 12:00:00, then one from 12:00:08:
    # the group took 16 s (before: 24 s, the sum of the durations).
    from repro.cli import statsview

    def member(index: int, started: str) -> dict[str, object]:
        return {"run_id": f"r{index}", "status": "succeeded", "started_at": started,
                "duration_s": 8.0, "command": ["python", "t.py"],
                "group": {"id": "g1", "index": index, "size": 3, "seed": 1}}

    rows = [member(2, "2026-12-01T12:00:08.000000Z"), member(1, "2026-12-01T12:00:00.500000Z"),
            member(0, "2026-12-01T12:00:00.000000Z")]
    (row,) = statsview.collapse_groups(rows)
    assert row["status"] == "succeeded ×3" and row["duration_s"] == 16.0
    rows[0]["started_at"] = None  # a member without its start: the sum, as before
    assert statsview.collapse_groups(rows)[0]["duration_s"] == 24.0
