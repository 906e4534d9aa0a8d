"""`repro export mlflow` against a real `mlflow server`, read back through MLflow's own client.

One server for the whole session (SQLite backend, local artifact root served through the
server's artifact proxy, 127.0.0.1, a free port). It takes 40-100 s to start on a loaded
machine, so these tests are marked `mlflow` and `slow` (CI runs them; a plain pytest does not)
and share one xdist group (`--dist loadgroup`: one worker, one server).
"""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from repro.cli.main import main
from repro.export import plan
from tests.conftest import PYTHON, git

pytestmark = [pytest.mark.mlflow, pytest.mark.slow, pytest.mark.xdist_group("mlflow")]

START_TIMEOUT_S = 240  # 40-100 s is usual on a loaded 2-core machine

TRAIN = """\
import json, os, pathlib
with open(os.environ["REPRO_METRICS_FILE"], "a") as f:
    for i in range(1200):  # 2,400 points: three log_batch calls of at most 1,000
        f.write(json.dumps({"step": 10 * i, "loss": 1.0 / (i + 1), "val": {"acc": i / 1200}}) + "\\n")
pathlib.Path("metrics.json").write_text(json.dumps({"loss": 1.0 / 1200, "accuracy": 0.93}))
print("trained")
"""


def _mlflow_command() -> list[str] | None:
    """The `mlflow` console script of this venv (CI's clean clone has one), else the same
    interpreter's module; None when the server is not installed at all."""
    beside = Path(sys.executable).parent / "mlflow"
    if beside.exists():
        return [str(beside)]
    if importlib.util.find_spec("mlflow") is not None and \
            importlib.util.find_spec("mlflow.server") is not None:
        return [sys.executable, "-m", "mlflow"]
    found = shutil.which("mlflow")
    return [found] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT_TAKEN = "address already in use"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tracking URI of one `mlflow server` for the session, stopped at the end.

    The port is free when chosen, but the server binds it only after its start-up (a minute on
    a loaded machine), and another process may take it meanwhile: the server then says so in
    its log and exits (with 0), and it is started again on another port."""
    command = _mlflow_command()
    if command is None:
        pytest.skip("the `mlflow` server is not installed (pip install -e '.[test]')")
    where = tmp_path_factory.mktemp("mlflow-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # Tracking only: no job runner (GenAI scoring, trace archival: a dozen huey workers).
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    deadline = time.monotonic() + START_TIMEOUT_S
    for attempt in range(3):
        port = _free_port()
        log_path = where / f"server-{attempt}.log"
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [*command, "server", "--backend-store-uri", f"sqlite:///{where / 'mlflow.db'}",
             "--artifacts-destination", str(where / "artifacts"), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=where, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        uri = f"http://127.0.0.1:{port}"
        try:
            while True:
                if proc.poll() is not None:
                    text = log_path.read_text(errors="replace")
                    if PORT_TAKEN in text and attempt < 2:
                        break  # taken meanwhile: another port
                    pytest.fail(f"mlflow server exited {proc.returncode}:\n" + text[-3000:])
                try:
                    with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"mlflow server not up after {START_TIMEOUT_S} s:\n"
                                + log_path.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
            if proc.poll() is None:
                yield uri
                return
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)  # uvicorn and its job runner can take long to stop
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


@pytest.fixture
def client(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key in list(os.environ):
        if key.startswith("MLFLOW_"):
            monkeypatch.delenv(key)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server)


def export(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    capsys.readouterr()
    code = main(["export", "mlflow", "--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def record_dirty_run(repo: Path) -> Path:
    """A run with a metric series, a final-metrics file, a dirty patch, a tag and a note."""
    git(repo, "remote", "add", "origin", "https://user:s3cret@example.com/org/proj.git")
    (repo / "train.py").write_text(TRAIN)
    (repo / ".gitignore").write_text(".repro/\nmetrics.json\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "train")
    (repo / "train.py").write_text(TRAIN + "# tuning\n")  # uncommitted: the patch
    assert main(["run", "--allow-dirty", "--metrics", "metrics.json", "--name", "baseline",
                 "--tag", "team=vision", "--note", "first try", "--", PYTHON, "train.py",
                 "--lr", "0.01", "--batch-size", "32"]) == 0
    return sorted((repo / ".repro" / "runs").iterdir())[-1]


def all_runs(client: Any, experiment: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment)
    return list(client.search_runs([exp.experiment_id], max_results=1000))


def files_of(client: Any, run_id: str, dest: Path) -> dict[str, bytes]:
    local = Path(client.download_artifacts(run_id, "repro", str(dest)))
    return {p.relative_to(local).as_posix(): p.read_bytes()
            for p in sorted(local.rglob("*")) if p.is_file()}


def test_a_run_reads_back_through_mlflow(repo: Path, client: Any, mlflow_server: str,
                                         capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    run_dir = record_dirty_run(repo)
    m = yaml.safe_load((run_dir / "manifest.yaml").read_text())
    code, doc, err = export(["latest", "--tracking-uri", mlflow_server, "--experiment", "one"],
                            capsys)
    assert code == 0, err
    [row] = doc["runs"]
    assert (row["run_id"], row["action"]) == (m["run"]["run_id"], "created")
    assert doc["url"].startswith(mlflow_server + "/#/experiments/")

    run = client.get_run(row["mlflow_run_id"])
    tags = run.data.tags
    assert {k: tags[k] for k in (
        "mlflow.runName", "mlflow.source.git.commit", "mlflow.source.git.branch",
        "mlflow.source.git.repoURL", "mlflow.source.name", "mlflow.note.content",
        "repro.run_id", "repro.fingerprint", "repro.seed", "repro.determinism", "repro.dirty",
        "repro.lockfile_matches", "team")} == {
        "mlflow.runName": "baseline", "mlflow.source.git.commit": m["code"]["commit"],
        "mlflow.source.git.branch": "main",
        "mlflow.source.git.repoURL": "https://example.com/org/proj.git",
        "mlflow.source.name": "train.py", "mlflow.note.content": "first try",
        "repro.run_id": m["run"]["run_id"], "repro.fingerprint": m["fingerprint"],
        "repro.seed": str(m["seed"]["value"]), "repro.determinism": "strict",
        "repro.dirty": "true", "repro.lockfile_matches": "true", "team": "vision"}
    assert tags["mlflow.user"] and run.info.user_id == tags["mlflow.user"]
    assert not any("s3cret" in v for v in tags.values())
    assert m["params"]["values"] == {"lr": 0.01, "batch_size": 32}  # parsed from argv
    assert run.data.params == {"lr": "0.01", "batch_size": "32", "seed": str(m["seed"]["value"])}
    # status and times are the run's own, not the export's
    assert run.info.status == "FINISHED"
    assert run.info.start_time == plan.ms(m["run"]["started_at"])
    assert run.info.end_time == plan.ms(m["run"]["finished_at"])
    # every step of the series, and the final values
    loss = client.get_metric_history(run.info.run_id, "loss")
    acc = client.get_metric_history(run.info.run_id, "val.acc")
    assert [(x.step, x.value) for x in sorted(loss, key=lambda x: x.step)] == [
        (10 * i, 1.0 / (i + 1)) for i in range(1200)]
    assert [(x.step, x.value) for x in sorted(acc, key=lambda x: x.step)] == [
        (10 * i, i / 1200) for i in range(1200)]
    assert run.data.metrics == {"loss": 1.0 / 1200, "val.acc": 1199 / 1200, "accuracy": 0.93}
    # the files, byte for byte
    files = files_of(client, run.info.run_id, tmp_path / "dl")
    assert set(files) == {"manifest.yaml", "stdout.log", "stderr.log", "code.patch",
                          "metrics.jsonl"}
    for name, content in files.items():
        assert content == (run_dir / name).read_bytes(), name
    assert b"# tuning" in files["code.patch"]

    # again: the same MLflow run is found and nothing is added
    code, again, err = export(["latest", "--tracking-uri", mlflow_server, "--experiment", "one"],
                              capsys)
    assert code == 0, err
    assert [(r["mlflow_run_id"], r["action"]) for r in again["runs"]] == [
        (row["mlflow_run_id"], "unchanged")]
    assert len(all_runs(client, "one")) == 1
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 1200


def test_an_export_cut_short_is_completed(repo: Path, client: Any, mlflow_server: str,
                                          capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    run_dir = record_dirty_run(repo)
    m = yaml.safe_load((run_dir / "manifest.yaml").read_text())
    from mlflow.entities import Metric

    # What an export killed half-way leaves: the run, some tags, 10 points, no files.
    exp = client.create_experiment("partial")
    first = client.create_run(exp, start_time=plan.ms(m["run"]["started_at"]),
                              tags={"repro.run_id": m["run"]["run_id"], "repro.kind": "run"})
    end = plan.ms(m["run"]["finished_at"])
    client.log_batch(first.info.run_id, metrics=[
        Metric("loss", 1.0 / (i + 1), end, 10 * i) for i in range(10)])
    code, doc, err = export(["latest", "--tracking-uri", mlflow_server,
                             "--experiment", "partial"], capsys)
    assert code == 0, err
    assert [(r["mlflow_run_id"], r["action"]) for r in doc["runs"]] == [
        (first.info.run_id, "completed")]
    run = client.get_run(first.info.run_id)
    assert run.data.tags["repro.export.complete"] == "true"
    assert run.data.tags["repro.dirty"] == "true"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(x.step for x in history) == [10 * i for i in range(1200)]  # no duplicates
    assert set(files_of(client, run.info.run_id, tmp_path / "dl")) >= {"manifest.yaml",
                                                                        "code.patch"}
    assert len(all_runs(client, "partial")) == 1


def test_a_group_becomes_a_parent_run_with_children(repo: Path, client: Any,
                                                    mlflow_server: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "train.py").write_text("import os\nprint(os.environ['REPRO_SEED'])\n")
    git(repo, "commit", "-qam", "seeded")
    assert main(["run", "--repeat", "3", "--seed", "11", "--name", "sweep", "--",
                 PYTHON, "train.py"]) == 0
    from repro.record import store

    rows = sorted(store.run_rows(store.open_here()), key=lambda r: r["group"]["index"])
    ids = [r["run_id"] for r in rows]
    gid = rows[0]["group"]["id"]
    # One member alone already goes under the group's parent run...
    code, doc, err = export([ids[1], "--tracking-uri", mlflow_server, "--experiment", "groups"],
                            capsys)
    assert code == 0, err
    [group] = doc["groups"]
    assert (group["id"], group["action"], group["runs"], group["size"]) == (
        gid, "created", [ids[1]], 3)
    # ... and the whole group finds that parent and adds the other two.
    code, doc, err = export([f"group:{gid}", "--tracking-uri", mlflow_server,
                             "--experiment", "groups"], capsys)
    assert code == 0, err
    [again] = doc["groups"]
    assert (again["mlflow_run_id"], again["action"], again["runs"]) == (
        group["mlflow_run_id"], "unchanged", ids)
    assert [(r["run_id"], r["action"]) for r in doc["runs"]] == [
        (ids[0], "created"), (ids[1], "unchanged"), (ids[2], "created")]
    parent = client.get_run(group["mlflow_run_id"])
    assert parent.data.tags["repro.kind"] == "group"
    assert parent.data.tags["mlflow.runName"] == "sweep"
    assert parent.data.params == {"seed": "11"}
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(c.data.tags["repro.run_id"] for c in children) == sorted(ids)
    assert sorted(c.data.tags["repro.group.index"] for c in children) == ["0", "1", "2"]
    # each member's own seed, derived from the group's
    assert {c.data.tags["repro.run_id"]: c.data.params["seed"] for c in children} == {
        r["run_id"]: str(r["seed"]) for r in rows}
    assert {r["parent_run_id"] for r in doc["runs"]} == {parent.info.run_id}

    code, again_doc, err = export([f"group:{gid}", "--tracking-uri", mlflow_server,
                                   "--experiment", "groups"], capsys)
    assert code == 0, err
    assert [g["action"] for g in again_doc["groups"]] == ["unchanged"]
    assert [r["action"] for r in again_doc["runs"]] == ["unchanged"] * 3
    assert len(all_runs(client, "groups")) == 4
    capsys.readouterr()  # in words: one member of the three (before: "parent of 1 run")
    assert main(["export", "mlflow", ids[1], "--tracking-uri", mlflow_server,
                 "--experiment", "groups"]) == 0
    assert f"group:{gid} -> {parent.info.run_id} (parent of 1 run of 3)" in \
        capsys.readouterr().out


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_a_deleted_experiment_is_one_error(repo: Path, client: Any, mlflow_server: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--", PYTHON, "train.py"]) == 0
    client.delete_experiment(client.create_experiment("gone"))
    code, doc, err = export(["latest", "--tracking-uri", mlflow_server, "--experiment", "gone"],
                            capsys)
    assert code == 2
    assert "experiment 'gone' is deleted" in one_error(err)
    assert "restore" in doc["hint"]


class AuthProxy(http.server.BaseHTTPRequestHandler):
    """A reverse proxy that lets through only `Authorization: Bearer right-token`, as teams
    put in front of a tracking server; everything else gets 401."""

    upstream = ""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = b""  # requests streams an empty file chunked
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            out += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        return out

    def _relay(self) -> None:
        body = self._body()
        if self.headers.get("Authorization") != "Bearer right-token":
            self.send_response(401)
            self.send_header("WWW-Authenticate", "Bearer")
            self.send_header("Content-Length", "12")
            self.end_headers()
            self.wfile.write(b"Unauthorized")
            return
        host, port = self.upstream.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "transfer-encoding", "content-length")}
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

    def log_message(self, *args: Any) -> None:
        pass


def test_a_wrong_token_is_one_error(repo: Path, client: Any, mlflow_server: str,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["run", "--", PYTHON, "train.py"]) == 0
    handler = type("Proxy", (AuthProxy,), {"upstream": mlflow_server.removeprefix("http://")})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "wrong-token")
        started = time.monotonic()
        code, doc, err = export(["latest", "--tracking-uri", uri, "--experiment", "auth"],
                                capsys)
        assert code == 2
        assert "refused the credentials" in one_error(err)
        assert "MLFLOW_TRACKING_TOKEN" in doc["hint"]
        assert "wrong-token" not in err
        assert time.monotonic() - started < 30
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "right-token")
        code, doc, err = export(["latest", "--tracking-uri", uri, "--experiment", "auth"],
                                capsys)
        assert code == 0, err
        assert [r["action"] for r in doc["runs"]] == ["created"]
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_an_unreachable_server_fails_in_seconds(repo: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MLFLOW_"):
            monkeypatch.delenv(key)
    assert main(["run", "--", PYTHON, "train.py"]) == 0
    with socket.socket() as held:  # bound, never listening: refused, and no one else's port
        held.bind(("127.0.0.1", 0))
        uri = f"http://user:pa55word@127.0.0.1:{held.getsockname()[1]}"
        started = time.monotonic()
        code, doc, err = export(["latest", "--tracking-uri", uri], capsys)
    assert code == 2
    line = one_error(err)
    assert "cannot reach the MLflow server at http://127.0.0.1:" in line
    assert "pa55word" not in err and "pa55word" not in json.dumps(doc)
    assert time.monotonic() - started < 20
    # the client's settings were the export's own: the environment is as it was
    assert not any(k.startswith("MLFLOW_") for k in os.environ)


def test_a_server_that_is_not_mlflow_is_one_error(repo: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("MLFLOW_"):
            monkeypatch.delenv(key)
    assert main(["run", "--", PYTHON, "train.py"]) == 0

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)  # a plain web server
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        code, doc, err = export(["latest", "--tracking-uri",
                                 f"http://127.0.0.1:{web.server_address[1]}"], capsys)
    finally:
        web.shutdown()
        web.server_close()
    assert code == 2
    assert "does not answer as an MLflow tracking server (HTTP 404" in one_error(err)
    assert "base URL" in doc["hint"]


def test_a_run_still_running_is_skipped(repo: Path, client: Any, mlflow_server: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from repro.record import manifest, store

    assert main(["run", "--", PYTHON, "train.py"]) == 0
    path = sorted((repo / ".repro" / "runs").iterdir())[-1] / "manifest.yaml"
    m = manifest.read(path)
    # as `repro run` leaves it while the command runs: this test's process is the live repro
    live = m.with_run(status="running", finished_at=None, pid=os.getpid(),
                      pid_start=store.process_start_ticks(os.getpid()), host=os.uname().nodename)
    manifest.write(path, live)
    code, doc, err = export(["latest", "--tracking-uri", mlflow_server, "--experiment", "live"],
                            capsys)
    assert code == 0, err
    assert [(r["action"], r["reason"]) for r in doc["runs"]] == [("skipped", "still running")]
    assert "is still running: not exported" in err
    assert all_runs(client, "live") == []
