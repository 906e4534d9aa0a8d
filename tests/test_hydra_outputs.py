"""A Hydra app's outputs under verify: Hydra names each run's directory by the clock
(`outputs/DATE/TIME/`), so a replay writes the same files under another name, and its own
record of the job (`.hydra/hydra.yaml`: the run's directory and cwd) and job log (timestamps)
differ by nature. A real hydra-core app, real runs, real replays."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from repro.cli.main import main
from tests.conftest import PYTHON, git

APP = """\
import logging, pathlib, random
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

log = logging.getLogger(__name__)

@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    value = VALUE
    log.info("final loss=%r", value)
    out = pathlib.Path(HydraConfig.get().runtime.output_dir)
    (out / "model.txt").write_text(f"{cfg.optim.lr} {value!r}\\n")

main()
"""
SEEDED = APP.replace("VALUE", "random.random()")  # repro's hook seeds it
CLOCK = APP.replace("VALUE", "random.Random(__import__('time').time_ns()).random()")


def commit(repo: Path, app: str) -> None:
    (repo / "app.py").write_text(app)
    (repo / "conf").mkdir(exist_ok=True)
    (repo / "conf" / "config.yaml").write_text("optim:\n  lr: 0.1\n")
    (repo / "repro.yaml").write_text("seed: 1\noutputs: [outputs/]\n")
    (repo / ".gitignore").write_text(".repro/\noutputs/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "hydra app")


def verify(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    time.sleep(1.1)  # Hydra's directory is named to the second: the replay's gets another name
    capsys.readouterr()
    code = main(["verify", "--json", "latest"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_a_hydra_apps_replay_is_compared_inside_its_own_run_directory(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("hydra", reason="hydra-core is in the test extra; install it")
    commit(repo, SEEDED)
    assert main(["run", "--", PYTHON, "app.py", "optim.lr=0.5"]) == 0
    code, report = verify(capsys)
    checks = {c["name"]: c for c in report["checks"] if c["kind"] == "output"}
    # Before: every file `missing` from the replay and again `not in the recorded run`.
    assert (code, report["verdict"]) == (0, "within-tolerance"), report
    assert "run directory" in checks["outputs"]["detail"], checks["outputs"]
    run_dir = checks["outputs"]["detail"].split()[3]  # the recorded one's name
    assert not [c for c in checks.values() if c["status"] in ("different", "missing")], checks
    assert set(checks) == {"outputs", f"{run_dir}/.hydra/hydra.yaml", f"{run_dir}/app.log"}
    assert checks[f"{run_dir}/.hydra/hydra.yaml"]["status"] == "within-tolerance"
    assert "Hydra" in checks[f"{run_dir}/.hydra/hydra.yaml"]["detail"]
    assert checks[f"{run_dir}/app.log"]["status"] == "within-tolerance"


@pytest.mark.slow
def test_a_hydra_app_that_does_not_reproduce_is_still_caught(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("hydra", reason="hydra-core is in the test extra; install it")
    commit(repo, CLOCK)
    assert main(["run", "--", PYTHON, "app.py"]) == 0
    code, report = verify(capsys)
    assert (code, report["verdict"]) == (1, "not-reproduced"), report
    bad = [c["name"] for c in report["checks"] if c["status"] in ("different", "missing")]
    assert len(bad) == 1 and bad[0].endswith("/model.txt"), report["checks"]
    # The job log logs another loss: a log, not a result (metrics judge what it logs), but
    # verify says where it differs, its clock times set aside.
    (log,) = [c for c in report["checks"] if c["name"].endswith("/app.log")]
    assert log["status"] == "within-tolerance", log
    assert log["detail"].startswith("Hydra's job log differs at line 1 (clock times aside):")
    assert "final loss=" in log["detail"], log


@pytest.mark.slow
def test_a_hydra_sweeps_replay_is_compared_inside_its_own_sweep_directory(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("hydra", reason="hydra-core is in the test extra; install it")
    commit(repo, SEEDED)
    (repo / "repro.yaml").write_text("seed: 1\noutputs: [multirun/]\n")
    (repo / ".gitignore").write_text(".repro/\noutputs/\nmultirun/\n")
    git(repo, "commit", "-qam", "sweeps")
    assert main(["run", "--", PYTHON, "app.py", "-m", "optim.lr=0.1,0.2"]) == 0
    code, report = verify(capsys)
    checks = {c["name"]: c for c in report["checks"] if c["kind"] == "output"}
    assert (code, report["verdict"]) == (0, "within-tolerance"), checks
    sweep = checks["multirun"]["detail"].split()[3]
    assert set(checks) == {"multirun", f"{sweep}/multirun.yaml",
                           *(f"{sweep}/{job}/{name}" for job in "01"
                             for name in (".hydra/hydra.yaml", "app.log"))}, checks
    assert {c["status"] for n, c in checks.items() if n != "multirun"} == {"within-tolerance"}


@pytest.mark.slow
def test_diff_of_two_runs_of_a_hydra_app_does_not_count_its_run_directorys_name(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("hydra", reason="hydra-core is in the test extra; install it")
    commit(repo, SEEDED)
    assert main(["run", "--", PYTHON, "app.py"]) == 0
    time.sleep(1.1)
    assert main(["run", "--", PYTHON, "app.py"]) == 0
    capsys.readouterr()
    code = main(["diff", "--json", "latest~1", "latest"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    outputs = doc["sections"]["outputs"]
    # Before: "same recipe, different outputs", 5 files added and 5 removed.
    assert outputs["changed"] is False, outputs
    assert not doc["verdict"].endswith("different outputs"), doc["verdict"]
    (note,) = outputs["info"]
    assert "Hydra" in json.dumps(note), note
    assert main(["diff", "--all", "latest~1", "latest"]) == 0
    shown = capsys.readouterr().out
    assert "Hydra's run directory" in shown and "every other file in it is identical" in shown
    assert main(["diff", "--markdown", "latest~1", "latest", "--section", "outputs"]) == 0
    assert "every other file in it is identical" in capsys.readouterr().out  # the reason too
    capsys.readouterr()
    commit(repo, CLOCK)  # a real difference in the results is still one
    assert main(["run", "--", PYTHON, "app.py"]) == 0
    capsys.readouterr()
    assert main(["diff", "--json", "latest~1", "latest"]) == 1
    assert json.loads(capsys.readouterr().out)["sections"]["outputs"]["changed"] is True


@pytest.mark.parametrize(("rel", "listing", "jobs", "own"), [
    ("d/.hydra/hydra.yaml", [], (), True),
    ("d/app.log", ["d/app.log"], ("app",), True),  # the job log of app.py
    ("d/app.log", ["d/app.log"], (), False),  # not named: may be the script's own results
    ("d/app.log", ["d/app.log", "d/results.log"], (), False),
    ("d/results.log", ["d/app.log", "d/results.log"], ("app",), False),  # the script's result
    ("d/sub/app.log", ["d/sub/app.log"], ("app",), False),
    ("d/model.txt", ["d/model.txt"], ("app",), False),
])
def test_only_hydras_own_record_and_log_of_the_job_are_exempt(
        rel: str, listing: list[str], jobs: tuple[str, ...], own: bool) -> None:
    from repro.judge import hydra

    logs = hydra.job_logs(dict.fromkeys(listing, ("h", 1)), {"d"}, jobs)
    assert (hydra.own(rel, {"d"}, logs) is not None) is own


def test_a_job_logs_difference_is_found_past_its_clock_times() -> None:
    from repro.judge import hydra

    assert hydra.job_names(["python", "src/train.py", "hydra.job.name=exp"]) == {"train", "exp"}
    assert hydra.job_names(["python", "-m", "pkg.app", "lr=1"]) == {"app"}
    a = b"[2026-12-01 15:02:41,123][__main__][INFO] - start\n[2026-12-01 15:02:42,001]" \
        b"[__main__][INFO] - final loss=0.5\n"
    b = a.replace(b"15:02:4", b"16:12:0")
    assert hydra.first_difference(a, b) is None
    assert hydra.first_difference(a, b.replace(b"0.5", b"0.1")) == (
        2, "'[__main__][INFO] - final loss=0.5'", "'[__main__][INFO] - final loss=0.1'")
    plain = b"2026-12-01 15:02:41,123 INFO loss=1\n"  # a format without the brackets
    assert hydra.first_difference(plain, plain.replace(b"15:02", b"17:40")) is None
