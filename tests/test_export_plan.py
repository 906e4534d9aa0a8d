"""What a run becomes in MLflow (repro/export/plan.py), and the export command's own checks,
without a tracking server: names, metric points, files, tags, settings, the missing extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro import errors
from repro.cli.main import main
from repro.commands import export as export_mod
from repro.export import plan
from repro.record import manifest, store
from tests.conftest import PYTHON


@pytest.mark.parametrize(("name", "expected"), [
    ("loss", "loss"),
    ("val/loss", "val/loss"),
    ("train.loss", "train.loss"),
    ("epoch time: s", "epoch time: s"),
    ("acc@1", "acc_1"),
    ("loss[0]", "loss_0_"),
    ("val//loss", "val/loss"),
    ("../x", None),
    ("/abs", None),
    (".", None),
    ("", None),
    ("x" * 251, None),
])
def test_names_mlflow_accepts(name: str, expected: str | None) -> None:
    names = plan.NameMap()
    assert names.get(name) == expected
    assert (name in names.dropped) == (expected is None)


def test_two_names_that_become_one_keep_the_first() -> None:
    names = plan.NameMap()
    assert names.get("acc@1") == "acc_1"
    assert names.get("acc#1") is None
    assert names.get("acc@1") == "acc_1"
    assert names.notes("metric") == ["metric 'acc@1' as 'acc_1'", "metric 'acc#1' left out"]


@pytest.mark.parametrize(("argv", "cwd", "expected"), [
    (["python", "train.py", "--lr", "1"], ".", "train.py"),
    (["python3", "-u", "src/train.py"], ".", "src/train.py"),
    (["python", "train.py"], "sub", "sub/train.py"),
    (["python", "-m", "pkg.train"], ".", "-m pkg.train"),
    (["uv", "run", "python", "t.py"], ".", "t.py"),
    (["./run.sh", "x"], "sub", "sub/run.sh"),
    (["bash", "run.sh"], "sub", "bash"),
])
def test_source_name(argv: list[str], cwd: str, expected: str) -> None:
    assert plan.source_name(argv, cwd) == expected


def _manifest(run_dir: Path, **metrics_section: object) -> manifest.Manifest:
    return manifest.from_dict({
        "schema": manifest.SCHEMA,
        "run": {"run_id": "20261201T100000.000000Z-abcd", "status": "succeeded",
                "started_at": "2026-12-01T10:00:00.000000Z",
                "finished_at": "2026-12-01T10:00:05.500000Z", "name": "base",
                "tags": {"team": "vision", "mlflow.runName": "posing", "bad@key": "x"},
                "note": "first try"},
        "command": {"argv": ["python", "train.py", "--lr", "0.1"], "cwd": "."},
        "seed": {"value": 7, "source": "flag"},
        "code": {"commit": "a" * 40, "branch": "main",
                 "remote": "https://user:s3cret@example.com/org/p.git", "dirty": True,
                 "patch": {"file": "code.patch", "hash": "blake3:00", "size": 3}},
        "determinism": {"level": "strict"},
        "environment": {"lockfile": {"path": "requirements.lock", "matches": True}},
        "data": {"d": {"kind": "dir", "listing": "data/0.json"},
                 "evil": {"kind": "dir", "listing": "../../etc/passwd"}},
        "metrics": metrics_section,
        "fingerprint": "blake3:ff",
    })


def test_points_series_then_finals_it_does_not_end_with(tmp_path: Path) -> None:
    lines = [{"step": 10, "loss": 1.0, "val": {"acc": 0.5}}, {"loss": 0.5, "note": "text"},
             "not json", {"step": True, "loss": 0.25, "flag": True}]
    (tmp_path / "metrics.jsonl").write_text(
        "".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    m = _manifest(tmp_path, final={"loss": 0.25, "val.acc": 0.75, "accuracy": 0.9,
                                   "name": "resnet"}, series="metrics.jsonl")
    p = plan.run_plan(m, tmp_path, user="alice")
    end = plan.ms("2026-12-01T10:00:05.500000Z")
    points = [(x.key, x.value, x.step, x.timestamp) for x in p.points(plan.NameMap())]
    assert points == [
        ("loss", 1.0, 10, end), ("val.acc", 0.5, 10, end),
        ("loss", 0.5, 1, end),  # no step: its index among the records
        ("loss", 0.25, 2, end),  # a bool step is no step
        # finals: loss ends the series (not again); val.acc is the metrics file's, after it
        ("val.acc", 0.75, 10, end + 1), ("accuracy", 0.9, 0, end),
    ]


def test_tags_params_and_files(tmp_path: Path) -> None:
    (tmp_path / "code.patch").write_text("+x\n")
    (tmp_path / "stdout.log").write_text("out\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "0.json").write_text("{}")
    (tmp_path / "stderr.log").symlink_to("/etc/hostname")  # a symlink is never uploaded
    (tmp_path / "manifest.yaml").write_text("x")
    m = _manifest(tmp_path, final={})
    m = m.replace(params=manifest.Params(
        values={"lr": 0.1, "model.depth": 3, "amp": True, "seed": 1},
        sources={"lr": "argv"}, program=("python", "train.py")))
    p = plan.run_plan(m, tmp_path, user="alice")
    assert p.tags["mlflow.runName"] == "base"
    assert p.tags["mlflow.user"] == "alice"
    assert p.tags["mlflow.source.name"] == "train.py"
    assert p.tags["mlflow.source.git.repoURL"] == "https://example.com/org/p.git"
    assert p.tags["mlflow.note.content"] == "first try"
    assert p.tags["team"] == "vision"
    assert p.tags["repro.tag.mlflow.runName"] == "posing"  # cannot pose as MLflow's own
    assert p.tags["bad_key"] == "x"
    assert {k: p.tags[k] for k in ("repro.run_id", "repro.seed", "repro.determinism",
                                   "repro.dirty", "repro.lockfile_matches",
                                   "repro.fingerprint")} == {
        "repro.run_id": "20261201T100000.000000Z-abcd", "repro.seed": "7",
        "repro.determinism": "strict", "repro.dirty": "true", "repro.lockfile_matches": "true",
        "repro.fingerprint": "blake3:ff"}
    assert not any("s3cret" in v for v in p.tags.values())
    # the user's own `seed` param keeps its name; repro's seed goes beside it
    assert p.params == {"lr": "0.1", "model.depth": "3", "amp": "true", "seed": "1",
                        "repro.seed": "7"}
    assert [a for a, _ in p.artifacts] == ["repro/manifest.yaml", "repro/stdout.log",
                                           "repro/code.patch", "repro/data/0.json"]
    assert (p.start_ms, p.end_ms, p.mlflow_status) == (
        plan.ms("2026-12-01T10:00:00Z"), plan.ms("2026-12-01T10:00:05.5Z"), "FINISHED")


def test_long_values_are_clipped_to_mlflow_limits(tmp_path: Path) -> None:
    m = _manifest(tmp_path, final={})
    m = m.with_run(note="n" * 10_000)
    p = plan.run_plan(m.replace(params=manifest.Params(values={"text": "p" * 7000})), tmp_path)
    assert len(p.tags["mlflow.note.content"]) == plan.MAX_TAG_VALUE
    assert len(p.params["text"]) == plan.MAX_PARAM_VALUE


def test_a_run_id_with_a_quote_is_refused(tmp_path: Path) -> None:
    m = _manifest(tmp_path, final={}).with_run(run_id="x' OR '1'='1")
    with pytest.raises(errors.ManifestError, match="not one repro writes"):
        plan.run_plan(m, tmp_path)


def test_group_parent_spans_its_members(tmp_path: Path) -> None:
    m = _manifest(tmp_path, final={})
    members = []
    for i, status in enumerate(["succeeded", "failed", "succeeded"]):
        mi = m.with_run(run_id=f"20261201T10000{i}.000000Z-abc{i}", status=status,
                        started_at=f"2026-12-01T10:00:0{i}Z", finished_at=f"2026-12-01T10:01:0{i}Z")
        mi = mi.replace(group=manifest.Group(id="g1", index=i, size=3, seed=5, name="sweep"))
        members.append(plan.run_plan(mi, tmp_path))
    assert members[1].tags["repro.group.id"] == "g1"
    assert members[1].tags["repro.group.index"] == "1"
    assert members[1].group is not None
    g = plan.group_plan(members[1].group, members, user="alice")
    assert (g.name, g.mlflow_status) == ("sweep", "FAILED")
    assert (g.start_ms, g.end_ms) == (plan.ms("2026-12-01T10:00:00Z"),
                                      plan.ms("2026-12-01T10:01:02Z"))
    assert g.tags["repro.kind"] == "group" and g.params == {"seed": "5"}


# -- the command's own checks, before any server ------------------------------------------

def _record(repo: Path) -> None:
    assert main(["run", "--", PYTHON, "train.py"]) == 0


@pytest.fixture
def no_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MLFLOW_"):
            monkeypatch.delenv(key)


def test_no_tracking_uri_is_a_usage_error(repo: Path, no_mlflow_env: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _record(repo)
    capsys.readouterr()
    assert main(["export", "mlflow", "latest"]) == 2
    err = capsys.readouterr().err
    assert "error: no MLflow tracking server given" in err and "MLFLOW_TRACKING_URI" in err


def test_target_precedence(repo: Path, no_mlflow_env: None) -> None:
    (repo / "repro.yaml").write_text("mlflow_tracking_uri: http://cfg:5000\n"
                                     "mlflow_experiment: from-config\n")
    env = {"MLFLOW_TRACKING_URI": "http://env:5000"}
    assert export_mod.target(repo, None, None, {}) == export_mod.Target(
        "http://cfg:5000", "from-config")
    assert export_mod.target(repo, None, None, env).tracking_uri == "http://env:5000"
    assert export_mod.target(repo, "http://flag:1", "x", env) == export_mod.Target(
        "http://flag:1", "x")
    (repo / "repro.yaml").unlink()
    assert export_mod.target(repo, "http://flag:1", None, {}).experiment == repo.name


def test_credentials_in_the_configured_uri_are_refused(repo: Path, no_mlflow_env: None) -> None:
    (repo / "repro.yaml").write_text("mlflow_tracking_uri: https://me:pw@mlflow.example.com\n")
    with pytest.raises(errors.ConfigError, match="carries credentials"):
        export_mod.target(repo, None, None, {})


def test_without_the_client_one_error_names_the_extra(
        repo: Path, no_mlflow_env: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _record(repo)
    for name in ("mlflow", "mlflow.entities", "mlflow.tracking"):
        monkeypatch.setitem(sys.modules, name, None)  # as if mlflow-skinny were not installed
    capsys.readouterr()
    code = main(["export", "mlflow", "latest", "--tracking-uri", "http://127.0.0.1:9",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "error: the MLflow client is not installed" in err
    assert "hint: pip install 'repro[mlflow]'" in err
    assert json.loads(out)["hint"] == "pip install 'repro[mlflow]'"


def test_group_reference_selects_its_runs_in_order(repo: Path) -> None:
    assert main(["run", "--repeat", "3", "--name", "sweep", "--", PYTHON, "train.py"]) == 0
    runs = store.open_here()
    rows = sorted(store.run_rows(runs), key=lambda r: r["group"]["index"])  # type: ignore[index]
    ids = [str(r["run_id"]) for r in rows]
    gid = rows[0]["group"]["id"]  # type: ignore[index]
    assert [s.manifest.run_id for s in export_mod.select(runs, [f"group:{gid}"])] == ids
    # a run named twice (alone and in its group) is exported once
    both = export_mod.select(runs, [ids[2], "group:sweep"])
    assert [s.manifest.run_id for s in both] == [ids[2], ids[0], ids[1]]
    with pytest.raises(errors.RunNotFoundError, match="no group matches"):
        export_mod.select(runs, ["group:nope"])


def test_http_settings_are_the_exports_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from repro.export import mlflow as mlflowmod

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "99")  # the user's: kept
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    with mlflowmod.http_settings() as probe:
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
        probe(True)
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
        probe(False)
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"


def test_mlflow_is_imported_only_when_an_export_talks_to_a_server() -> None:
    code = ("import sys, repro.cli.app, repro.commands.export, repro.export.mlflow; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))")
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("uri", ["127.0.0.1:5000", "localhost:5000", "mlflow.example.com:443/x"])
def test_a_host_and_port_without_a_scheme_names_the_fix(repo: Path, no_mlflow_env: None,
                                                        uri: str) -> None:
    """MLflow would read `localhost:5000` as a local folder and answer with its file store's
    deprecation notice; the user meant a server."""
    with pytest.raises(errors.UsageError, match="no scheme") as caught:
        export_mod.target(repo, uri, None, {})
    assert f"http://{uri}" in (caught.value.hint or "")
    for fine in ("http://localhost:5000", "databricks", "sqlite:///m.db", "./mlruns"):
        assert export_mod.target(repo, fine, None, {}).tracking_uri == fine


def test_an_incomplete_multi_node_run_says_so_in_its_tags(tmp_path: Path) -> None:
    # MLflow's status is the run's (node 0 succeeded); the tags carry what it cannot say.
    m = _manifest(tmp_path, final={})
    m = m.replace(distributed=manifest.Distributed.from_dict({
        "job": "slurm:1234.0", "launcher": "srun", "nnodes": 2, "world_size": 2,
        "complete": False, "members": [{"node_rank": 0, "status": "succeeded"},
                                       {"node_rank": 1, "status": "missing"}]},
        "distributed"))
    tags = plan.run_plan(m, tmp_path, user="alice").tags
    assert tags["repro.distributed.job"] == "slurm:1234.0"
    assert tags["repro.distributed.complete"] == "false"
    assert tags["repro.distributed.missing_nodes"] == "1"
    assert tags["repro.distributed.nnodes"] == "2"
    assert "repro.distributed.job" not in plan.run_plan(_manifest(tmp_path, final={}),
                                                        tmp_path, user="a").tags
