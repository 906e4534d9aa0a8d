"""Remote run stores against a real SeaweedFS S3 endpoint and a real `file://` directory:
push, pull in a second clone, show/diff/verify there, create-only writes, killed and concurrent
pushes, bad remotes, and a credential canary."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from repro.capture import hashing
from repro.cli.main import main
from repro.record import config
from repro.remote import store as remote
from tests.conftest import PYTHON, git
from tests.remote_fixtures import SeaweedS3, seaweed  # noqa: F401  (the session fixture)

TRAIN = """\
import json, pathlib, random, sys
out = pathlib.Path("out"); out.mkdir(exist_ok=True)
value = random.random()
(out / "result.txt").write_text(f"{value!r}\\n")
pathlib.Path("metrics.json").write_text(json.dumps({"score": value}))
print("trained", value)
"""
RUN = ["run", "--output", "out", "--metrics", "metrics.json", "--", PYTHON, "train.py"]


@pytest.fixture
def project(repo: Path) -> Path:
    (repo / "train.py").write_text(TRAIN)
    (repo / ".gitignore").write_text(".repro/\nout/\nmetrics.json\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "train")
    return repo


@pytest.fixture
def s3(seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    """A fresh bucket at the SeaweedFS endpoint, its URL; the AWS variables point at it."""
    for key, value in seaweed.env().items():
        monkeypatch.setenv(key, value)
    return f"s3://{seaweed.new_bucket()}/team"


def record(n: int = 1) -> list[str]:
    for _ in range(n):
        assert main(RUN) == 0
    return sorted(os.listdir(".repro/runs"))[-n:]


def clone(src: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    subprocess.run(["git", "clone", "-q", str(src), str(dest)], check=True, timeout=60)
    monkeypatch.chdir(dest)
    return dest


def json_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def repro_proc(args: list[str], cwd: Path, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([PYTHON, "-m", "repro", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]


def test_push_pull_show_diff_in_a_second_clone_and_push_again_uploads_nothing(
        project: Path, s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ids = record(2)
    code, pushed = json_of(["push", "--remote", s3], capsys)
    assert code == 0 and pushed["pushed"] == ids and pushed["uploaded_files"]
    code, again = json_of(["push", "--remote", s3], capsys)
    assert code == 0 and again["pushed"] == [] and again["uploaded_files"] == 0
    assert again["stats"]["bytes_up"] == 0  # type: ignore[index]
    assert set(again["stats"]["requests"]) == {"list"}  # type: ignore[index]
    code, named = json_of(["push", "--remote", s3, ids[0]], capsys)
    assert code == 0 and named["already"] == [ids[0]] and named["uploaded_files"] == 0

    second = clone(project, tmp_path / "second", monkeypatch)
    code, listed = json_of(["runs", "--remote", s3], capsys)
    assert [r["run_id"] for r in listed["runs"]] == ids[::-1]  # type: ignore[attr-defined]
    assert not (second / ".repro" / "runs").exists()  # listing downloads no run
    code, pulled = json_of(["pull", "--remote", s3, "--all"], capsys)
    assert code == 0 and sorted(pulled["pulled"]) == ids  # type: ignore[arg-type]
    for run_id in ids:  # bitwise the same files
        mine, theirs = project / ".repro/runs" / run_id, second / ".repro/runs" / run_id
        for f in mine.rglob("*"):
            if f.is_file() and f.name != "manifest.yaml.tag":
                assert (theirs / f.relative_to(mine)).read_bytes() == f.read_bytes(), f
    capsys.readouterr()
    assert main(["show", ids[1]]) == 0
    assert ids[1] in capsys.readouterr().out
    code, diff = json_of(["diff", ids[0], ids[1]], capsys)
    assert code == 1 and diff["sections"]["seed"]["changed"]  # type: ignore[index]
    code, again = json_of(["pull", "--remote", s3, "--all"], capsys)
    assert code == 0 and again["pulled"] == [] and sorted(again["already"]) == ids  # type: ignore[arg-type]
    # Pulled runs are listed but never `latest`: that counts the runs you started.
    assert main(["show", "latest"]) == 2


@pytest.mark.slow
def test_verify_a_teammates_run_by_remote_reference(
        project: Path, s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ids = record(2)
    assert main(["push", "--remote", s3]) == 0
    second = clone(project, tmp_path / "second", monkeypatch)
    mine = record(1)[0]
    (second / "repro.yaml").write_text(f"remote:\n  teammate: {s3}\n")
    capsys.readouterr()
    code, diff = json_of(["diff", mine, "teammate:latest"], capsys)
    assert code == 1 and diff["b"] == ids[1]
    cache = second / ".repro" / "remotes"
    fetched = [p.name for p in cache.glob("*/runs/*") if (p / ".remote-index.json").exists()]
    assert fetched == [ids[1]]  # only that run was fetched, not the other one
    code, verdict = json_of(["verify", f"teammate:{ids[0][:20]}", "--yes"], capsys)
    assert (code, verdict["verdict"]) == (0, "bitwise")
    code, shown = json_of(["show", f"teammate:{ids[0]}"], capsys)
    assert code == 0 and shown["run"]["run_id"] == ids[0]  # type: ignore[index]
    # Pulled into .repro/runs/, the run verifies there too (bitwise), by its plain id.
    assert main(["pull", "--remote", "teammate", ids[1]]) == 0
    code, verdict = json_of(["verify", ids[1], "--yes"], capsys)
    assert (code, verdict["verdict"]) == (0, "bitwise")
    # The cache is checked by hash: a damaged cached file is fetched again, not trusted.
    log = next(cache.glob(f"*/runs/{ids[0]}")) / "stdout.log"
    log.write_text("tampered\n")
    code, _ = json_of(["diff", f"teammate:{ids[0]}", "teammate:latest"], capsys)
    assert code == 1 and "trained" in log.read_text()


def test_the_store_refuses_to_overwrite_a_manifest(s3: str, tmp_path: Path) -> None:
    backend = remote.open_backend(remote.parse_url(s3))
    key = "runs/20260101T000000.000000Z-abcd/manifest.yaml"
    assert backend.put_bytes(key, b"first") is True
    assert backend.put_bytes(key, b"second") is False
    assert backend.get_bytes(key, 100) == b"first"
    f = tmp_path / "other"
    f.write_bytes(b"third")
    assert backend.put_file(key, f) is False
    assert backend.get_bytes(key, 100) == b"first"
    local = remote.open_backend(remote.parse_url((tmp_path / "share").as_uri()))
    (tmp_path / "share").mkdir()
    assert local.put_bytes(key, b"first") is True
    assert local.put_bytes(key, b"second") is False
    assert local.put_file(key, f) is False
    assert local.get_bytes(key, 100) == b"first"


def test_push_refuses_a_changed_run_and_keeps_the_remote_copy(
        project: Path, s3: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = record(1)[0]
    assert main(["push", "--remote", s3]) == 0
    manifest = project / ".repro/runs" / run_id / "manifest.yaml"
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b"status: succeeded", b"status: failed"))
    capsys.readouterr()
    assert main(["push", "--remote", s3, run_id]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "write-once" in err and "Traceback" not in err
    backend = remote.open_backend(remote.parse_url(s3))
    assert backend.get_bytes(f"runs/{run_id}/manifest.yaml", 1 << 20) == original


def test_a_shared_filesystem_remote(project: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    share = tmp_path / "share"
    share.mkdir()
    ids = record(2)
    (project / "repro.yaml").write_text(f"remote: {share.as_uri()}\n")
    code, planned = json_of(["push", "--dry-run"], capsys)
    assert code == 0 and planned["pushed"] == ids and planned["planned_bytes"]
    assert list(share.iterdir()) == []  # a dry run writes nothing
    assert main(["push"]) == 0
    assert (share / "runs" / ids[0] / "manifest.yaml").is_file()
    blobs = list((share / "blobs" / "blake3").glob("*/*"))
    assert blobs and all(hashing.hash_file(b) == "blake3:" + b.name for b in blobs)
    assert not list(share.rglob(".tmp-*"))
    code, again = json_of(["push"], capsys)
    assert code == 0 and again["uploaded_files"] == 0
    assert main(["push"]) == 0  # said as such, not "pushed 0 runs ...; 0 already there"
    assert capsys.readouterr().out == f"nothing to push: every run here is already at " \
        f"origin ({share.as_uri()})\n"
    second = clone(project, tmp_path / "second", monkeypatch)
    (second / "repro.yaml").write_text(f"remote:\n  team: {share.as_uri()}\n")
    code, diff = json_of(["diff", "team:latest~1", "team:latest"], capsys)
    assert code == 1 and (diff["a"], diff["b"]) == (ids[0], ids[1])
    code, pulled = json_of(["pull", ids[1][:22]], capsys)
    assert code == 0 and pulled["pulled"] == [ids[1]]
    # whose run is it? `runs` marks it, `show` names where it came from
    code, listing = json_of(["runs"], capsys)
    assert [(r["run_id"], r["pulled"]) for r in listing["runs"]] == [(ids[1], True)]  # type: ignore[attr-defined]
    assert main(["runs"]) == 0
    assert "(pulled)" in capsys.readouterr().out
    assert main(["show", ids[1]]) == 0
    shown = "".join(capsys.readouterr().out.split())  # long paths wrap at 80 columns
    assert f"pulledfrom{share.as_uri()}(by`repropull`:never`latest`)" in shown
    import repro

    assert repro.load("team:latest~1").run.run_id == ids[0]  # the Python API takes them too


@pytest.mark.slow
def test_compare_and_statistical_verify_take_a_remote_run(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    share = tmp_path / "share"
    share.mkdir()
    assert main(["run", "--repeat", "3", "--name", "theirs", *RUN[1:]]) == 0
    assert main(["push", "--remote", share.as_uri()]) == 0
    theirs = sorted(os.listdir(".repro/runs"))
    _, listing = json_of(["runs"], capsys)
    gid = listing["runs"][0]["group"]["id"]  # type: ignore[index]
    second = clone(project, tmp_path / "second", monkeypatch)
    capsys.readouterr()
    assert main(["runs", "--remote", share.as_uri(), "-n", "1"]) == 0  # the group whole
    assert "succeeded ×3" in capsys.readouterr().out
    (second / "repro.yaml").write_text(f"remote:\n  team: {share.as_uri()}\n")
    git(second, "add", "repro.yaml")
    git(second, "commit", "-qm", "team remote")
    assert main(["run", "--repeat", "3", "--name", "mine", *RUN[1:]]) == 0
    # one run of the team's against my group: fetched, and named as given
    code, doc = json_of(["compare", "team:latest", "mine"], capsys)
    assert code in (0, 1) and doc["a"] == {"ref": "team:latest", "group": None,
                                           "runs": [theirs[-1]], "left_out": []}
    assert len(doc["b"]["runs"]) == 3  # type: ignore[index]
    assert main(["compare", "team:latest", "mine", "--metric", "nope"]) == 2
    assert "error: team:latest recorded no numeric metric 'nope'" in capsys.readouterr().err
    assert main(["run", "--", PYTHON, "-c", "pass"]) == 0  # no metrics at all
    assert main(["compare", "team:latest", "latest"]) == 2
    assert "error: team:latest and latest share no numeric metric" in capsys.readouterr().err
    code, doc = json_of(["verify", "team:latest", "--level", "statistical", "--runs", "3",
                         "--yes"], capsys)
    assert code in (0, 1) and doc["baseline_runs"] == [theirs[-1]]
    _, listing = json_of(["runs"], capsys)  # the fresh runs' group is named as given
    assert {r["group"]["name"] for r in listing["runs"]  # type: ignore[attr-defined]
            if r["started_by"] == "verify"} == {"verify team:latest"}
    assert main(["verify", "team:latest", "--level", "statistical", "--metric", "nope=1"]) == 2
    assert "--metric nope: team:latest recorded no numeric metric" in capsys.readouterr().err
    # a group at the remote, or a URL for a remote's name: what to do instead
    assert main(["compare", f"team:group:{gid}", "mine"]) == 2
    err = capsys.readouterr().err
    assert "a group at a remote is not read in place" in err
    assert f"hint: pull it first (repro pull --remote team group:{gid})" in err
    # which pulls the whole group, by id or by name; then it is a group here
    code, pulled = json_of(["pull", "--remote", "team", "group:theirs"], capsys)
    assert code == 0 and sorted(pulled["pulled"]) == theirs  # type: ignore[arg-type]
    code, doc = json_of(["compare", f"group:{gid}", "mine"], capsys)
    assert code in (0, 1) and sorted(doc["a"]["runs"]) == theirs  # type: ignore[index]
    code, again = json_of(["pull", "--remote", "team", f"group:{gid}"], capsys)
    assert code == 0 and sorted(again["already"]) == theirs  # type: ignore[arg-type]
    assert main(["pull", "--remote", "team", "group:nope"]) == 2
    assert "no group at file://" in capsys.readouterr().err
    assert main(["diff", "latest", f"{share.as_uri()}:latest"]) == 2
    err = capsys.readouterr().err
    assert "with the remote's name, not its URL" in err and "remote: {team: file://" in err


def test_a_missing_shared_directory_is_an_error_not_an_empty_remote(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = (tmp_path / "no-such-share").as_uri()
    (project / "repro.yaml").write_text(f"remote:\n  team: {missing}\n")
    for args in (["runs", "--remote", missing], ["show", "team:latest"],
                 ["pull", "--remote", missing, "--all"]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert "no-such-share is not a directory" in err and "hint: create it" in err, args
    (tmp_path / "empty").mkdir()  # an existing, empty one is a remote with no runs yet
    assert main(["runs", "--remote", (tmp_path / "empty").as_uri()]) == 0
    assert "no runs at" in capsys.readouterr().err


def test_a_canary_secret_appears_nowhere_repro_wrote(
        project: Path, s3: str, seaweed: SeaweedS3, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    canary = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert canary.startswith("canary-")
    record(1)
    assert main(["push", "--remote", s3]) == 0
    second = clone(project, tmp_path / "second", monkeypatch)
    (second / "repro.yaml").write_text(f"remote:\n  teammate: {s3}\n")
    assert main(["pull", "--all", "--remote", "teammate"]) == 0
    assert main(["diff", "teammate:latest", "teammate:latest"]) == 0
    needle = canary.encode()
    for root in (project / ".repro", second / ".repro", project / ".git", second / ".git"):
        for f in root.rglob("*"):
            if f.is_file():
                assert needle not in f.read_bytes(), f
    client = seaweed.client()
    bucket = s3.split("/")[2]
    keys = seaweed.keys(bucket)
    assert any(k.endswith("manifest.yaml") for k in keys)
    for key in keys:
        assert needle not in client.get_object(Bucket=bucket, Key=key)["Body"].read(), key


def _trouble(args: list[str], capsys: pytest.CaptureFixture[str], within: float = 30.0) -> str:
    capsys.readouterr()
    started = time.monotonic()
    assert main(args) == 2
    assert time.monotonic() - started < within
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "hint:" in err and "Traceback" not in err, err
    return err


@pytest.mark.slow
def test_bad_remotes_are_one_error_and_a_hint(
        project: Path, s3: str, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    run_id = record(1)[0]
    assert main(["push", "--remote", s3]) == 0
    bucket = s3.split("/")[2]
    err = _trouble(["pull", "--all", "--remote", f"s3://nobucket-{bucket}/x"], capsys)
    assert "does not exist" in err
    with monkeypatch.context() as m:
        m.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        err = _trouble(["push", "--remote", s3], capsys)
        assert "refused the AWS credentials" in err and "wrong" not in err
    with monkeypatch.context() as m:
        m.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nothing listens
        err = _trouble(["runs", "--remote", s3], capsys, within=15)
        assert "cannot reach" in err
    with socket.socket() as hung, monkeypatch.context() as m:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)  # connections are made, but nothing ever answers
        m.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{hung.getsockname()[1]}")
        err = _trouble(["pull", "--all", "--remote", s3], capsys, within=30)
        assert "cannot reach" in err and "timeout" in err.lower()
    with monkeypatch.context() as m:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            m.delenv(key)
        err = _trouble(["push", "--remote", s3], capsys)
        assert "no AWS credentials" in err
    # A blob whose content no longer matches its hash: the pull fails, nothing half-pulled.
    client = seaweed.client()
    log_hash = hashing.hash_file(project / ".repro/runs" / run_id / "stdout.log")
    key = f"team/{remote.blob_key(log_hash)}"
    client.delete_object(Bucket=bucket, Key=key)
    client.put_object(Bucket=bucket, Key=key, Body=b"not what was pushed\n")
    (project / ".repro").rename(project.parent / "old-repro")
    err = _trouble(["pull", "--all", "--remote", s3], capsys)
    assert "corrupted" in err and run_id in err
    assert not any((project / ".repro" / "runs").iterdir())
    # ... or more bytes than the run index gives: refused before they are all downloaded
    client.delete_object(Bucket=bucket, Key=key)
    client.put_object(Bucket=bucket, Key=key, Body=b"x" * 1_000_000)
    err = _trouble(["pull", "--all", "--remote", s3], capsys)
    assert "is over the" in err and "bytes its run index gives" in err
    assert not any((project / ".repro" / "runs").iterdir())


def test_a_missing_boto3_names_the_extra(project: Path) -> None:
    code = ("import sys; sys.modules['boto3'] = None; from repro.cli.main import main; "
            "sys.exit(main(['runs', '--remote', 's3://some-bucket/p']))")
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "error: s3:// remotes need boto3" in done.stderr
    assert "hint: pip install 'repro[s3]'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("value, message", [
    ("s3://key:secret@bucket/p", "credentials"),
    ({"t": {"url": "s3://b-b-b/p", "token": "x"}}, "must be"),
    ({"group": "s3://bucket/p"}, "not a remote name"),
])
def test_remote_config_is_checked(value: object, message: str) -> None:
    with pytest.raises(Exception, match=message):
        config.parse({"remote": value}, "repro.yaml")


def test_remote_urls() -> None:
    where = remote.parse_url("s3://team-runs/a/b/")
    assert (where.bucket, where.prefix) == ("team-runs", "a/b")
    assert remote.parse_url("file:///mnt/share/runs").path == Path("/mnt/share/runs")
    for bad in ("s3://AK:SK@bucket/p", "http://x/y", "file://otherhost/p", "s3://B/p",
                "s3://bucket/a/../b"):
        with pytest.raises(Exception):  # noqa: B017
            remote.parse_url(bad)
    cfg = config.parse({"remote": {"origin": "s3://aa-bb/p", "mine": "file:///tmp/x"}}, "r")
    assert remote.locate(None, cfg).name == "origin"
    assert remote.locate("mine", cfg).scheme == "file"
    with pytest.raises(Exception, match="no remote configured"):
        remote.locate(None, config.Config())
    with pytest.raises(Exception, match="no remote named 'theirs'"):
        remote.locate("theirs", cfg)


# `python -c CUT_AFTER_BYTES N ARGS...`: `repro ARGS...` SIGKILLed by itself once it has sent N
# bytes over its sockets, half-way through the send that crosses N.
CUT_AFTER_BYTES = """\
import os, signal, socket, sys, threading
limit, sent, lock, plain = int(sys.argv[1]), 0, threading.Lock(), socket.socket.sendall
def sendall(self, data, *args):
    global sent
    with lock:
        sent += len(data)
        over = sent >= limit
    if over:
        plain(self, bytes(data)[:len(data) // 2], *args)
        os.kill(os.getpid(), signal.SIGKILL)
    return plain(self, data, *args)
socket.socket.sendall = sendall
from repro.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_killed_push_leaves_no_visible_half_run_and_the_next_push_completes_it(
        project: Path, s3: str, seaweed: SeaweedS3, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Six runs, each with its own 8 MB output: a push takes long enough to be cut.
    (project / "train.py").write_text(
        "import os, pathlib\npathlib.Path('out').mkdir(exist_ok=True)\n"
        "pathlib.Path('out/weights.bin').write_bytes(os.urandom(8 << 20))\n")
    git(project, "commit", "-qam", "big outputs")
    for _ in range(6):
        assert main(["run", "--output", "out", "--", PYTHON, "train.py"]) == 0
    ids = sorted(os.listdir(".repro/runs"))
    bucket, prefix = s3.split("/")[2], "team/"
    # The push kills itself once 30 of its ~48 MiB have gone out, in the middle of a blob's
    # body: cut part-way every time. (Watching the remote from outside for the moment to kill
    # it missed that moment on a loaded machine: the push had ended before it was seen.)
    cut = subprocess.run([PYTHON, "-c", CUT_AFTER_BYTES, str(30 << 20), "push", "--remote", s3],
                         cwd=project, capture_output=True, text=True, timeout=120)
    assert cut.returncode == -signal.SIGKILL, cut.stderr

    def visible() -> set[str]:
        return {k.split("/")[2] for k in seaweed.keys(bucket, prefix)
                if k.endswith("/manifest.yaml")}

    visible_ids = visible()
    assert len(visible_ids) < len(ids)
    # Every run the remote shows is whole: a fresh clone can pull and diff it. A manifest
    # whose upload the killed push had sent in full but not yet seen answered is still stored
    # by the server after the kill (SeaweedFS does so, a moment later on a loaded machine):
    # that run is whole too (its manifest goes last), so the pull may show it as well.
    second = clone(project, tmp_path / "second", monkeypatch)
    code, pulled = json_of(["pull", "--all", "--remote", s3], capsys)
    shown = set(pulled["pulled"])  # type: ignore[arg-type]
    assert code == 0 and visible_ids <= shown and shown <= set(ids), (visible_ids, pulled)
    monkeypatch.chdir(project)
    code, done = json_of(["push", "--remote", s3], capsys)
    assert code == 0 and set(done["pushed"]) <= set(ids) - shown  # type: ignore[arg-type]
    assert not done["conflicts"]
    assert done["reused_files"] or len(visible_ids) == 0  # the killed push's blobs were kept
    assert visible() == set(ids)  # the next push completed what the killed one left
    monkeypatch.chdir(second)
    code, pulled = json_of(["pull", "--all", "--remote", s3], capsys)
    assert code == 0, (pulled, capsys.readouterr().err)
    assert set(pulled["pulled"]) == set(ids) - shown  # type: ignore[arg-type]


def test_a_truncated_blob_left_by_a_cut_upload_is_replaced_by_the_next_push(
        project: Path, s3: str, seaweed: SeaweedS3, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # What a push killed mid-upload left at a server that keeps part of a cut body (seen
    # with SeaweedFS under load): the blob's key with a prefix of its content. Create-only
    # writes must not make that permanent (every upload now also carries Content-MD5, so a
    # server that checks it refuses such a body in the first place).
    (run_id,) = record(1)
    log = project / ".repro/runs" / run_id / "stdout.log"
    key = f"team/{remote.blob_key(hashing.hash_file(log))}"
    bucket = s3.split("/")[2]
    client = seaweed.client()
    client.put_object(Bucket=bucket, Key=key, Body=log.read_bytes()[:5])
    code, pushed = json_of(["push", "--remote", s3], capsys)
    assert code == 0 and pushed["pushed"] == [run_id]
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == log.read_bytes()
    clone(project, tmp_path / "second", monkeypatch)
    code, pulled = json_of(["pull", "--all", "--remote", s3], capsys)
    assert code == 0 and pulled["pulled"] == [run_id]


@pytest.mark.slow
def test_two_clones_pushing_at_once_lose_nothing(
        project: Path, s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    second = tmp_path / "second"
    subprocess.run(["git", "clone", "-q", str(project), str(second)], check=True, timeout=60)
    ids = record(4)
    monkeypatch.chdir(second)
    ids += record(4)
    monkeypatch.chdir(project)
    procs = [repro_proc(["push", "--remote", s3, "--json"], where) for where in (project, second)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    pushed = [set(json.loads(out)["pushed"]) for out, _ in outs]
    assert pushed == [set(ids[:4]), set(ids[4:])]
    third = clone(project, tmp_path / "third", monkeypatch)
    code, pulled = json_of(["pull", "--all", "--remote", s3], capsys)
    assert code == 0 and sorted(pulled["pulled"]) == sorted(ids)  # type: ignore[arg-type]
    assert sorted(os.listdir(third / ".repro" / "runs")) == sorted(ids)


def test_repro_run_never_loads_the_remote_code(project: Path) -> None:
    (project / "repro.yaml").write_text("remote: s3://team-runs/repro\n")
    git(project, "add", "repro.yaml")
    git(project, "commit", "-qm", "remote")
    code = ("import sys; from repro.cli.main import main; "
            f"code = main(['run', '--', {PYTHON!r}, '-c', 'pass']); "
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore') "
            "or m.startswith('repro.remote') or m in ('repro.commands.push', "
            "'repro.commands.pull')]; print(loaded); sys.exit(code)")
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=project)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


H = "blake3:" + "ab" * 32


@pytest.mark.parametrize("doc", [
    {"files": {"../escape": {"hash": H, "size": 1}}},
    {"files": {"/etc/passwd": {"hash": H, "size": 1}}},
    {"files": {"manifest.yaml.tag": {"hash": H, "size": 1}}},
    {"files": {"ok.log": {"hash": "md5:00", "size": 1}}},
    {"files": {"ok.log": {"hash": H, "size": -1}}},
    {"run_id": "20260101T000000.000000Z-ffff"},
    {"schema": "something/else"},
])
def test_a_hostile_run_index_is_refused(doc: dict[str, object]) -> None:
    from repro import errors
    from repro.remote import layout

    run_id = "20260101T000000.000000Z-abcd"
    base = {"schema": layout.SCHEMA, "run_id": run_id, "manifest": {"hash": H, "size": 3},
            "files": {}}
    raw = json.dumps({**base, **doc}).encode()
    with pytest.raises(errors.RemoteError):
        layout.parse_index(raw, run_id, "files.json")
    assert layout.parse_index(json.dumps(base).encode(), run_id, "x").manifest_size == 3
    with pytest.raises(errors.RemoteError, match="BLAKE3"):
        remote.blob_key("blake3:../../x")


@pytest.mark.slow
def test_a_blob_bigger_than_its_index_says_or_not_a_file_is_refused_in_bounded_time(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile or damaged share: a blob replaced by a FIFO (would block forever) or by more
    bytes than the run index gives (/dev/zero would fill the disk) is an error, nothing pulled."""
    share = tmp_path / "share"
    share.mkdir()
    (run_id,) = record(1)
    assert main(["push", "--remote", share.as_uri()]) == 0
    blob = share / remote.blob_key(
        hashing.hash_file(project / ".repro/runs" / run_id / "stdout.log"))
    second = clone(project, tmp_path / "second", monkeypatch)
    for plant, message in ((os.mkfifo, "is not a regular file"),
                           (lambda p: p.write_bytes(b"x" * 10_000_000), "is over the")):
        blob.unlink()
        plant(blob)
        done = subprocess.run([PYTHON, "-m", "repro", "pull", "--all", "--remote",
                               share.as_uri()], cwd=second, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode != 0 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        assert not any((second / ".repro" / "runs").iterdir())


def test_an_endpoint_holding_credentials_is_refused_without_echoing_them(
        project: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://canary:S3CRETCANARY@127.0.0.1:9/")
    assert main(["push", "--remote", "s3://bucket-x/team"]) != 0
    err = capsys.readouterr().err
    assert "holds credentials" in err and "S3CRETCANARY" not in err


@pytest.mark.slow
def test_pull_takes_the_remote_ref_diff_and_verify_take(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`repro diff latest team:latest` works, so a teammate types `repro pull team:latest`."""
    share = tmp_path / "share"
    share.mkdir()
    ids = record(1)
    (project / "repro.yaml").write_text(f"remote:\n  team: {share.as_uri()}\n")
    assert main(["push", "--remote", "team"]) == 0
    second = clone(project, tmp_path / "second", monkeypatch)
    (second / "repro.yaml").write_text(f"remote:\n  team: {share.as_uri()}\n  other: "
                                       f"{(tmp_path / 'elsewhere').as_uri()}\n")
    code, pulled = json_of(["pull", "team:latest"], capsys)  # no --remote: the ref names it
    assert code == 0 and pulled["pulled"] == ids
    capsys.readouterr()
    assert main(["pull", "--remote", "other", "team:latest"]) == 2
    err = capsys.readouterr().err
    assert "team:latest names remote 'team'" in err and "Traceback" not in err
    assert main(["pull", "team:latest", "other:latest"]) == 2
    assert "pull from one remote at a time" in capsys.readouterr().err
    # a misspelt name is named as such (before: "pull it with `repro pull tem:latest`", the
    # command just typed), and --remote with the URL of the remote a word names is that remote
    assert main(["pull", "--remote", "team", "tem:latest"]) == 2
    assert "tem:latest: no remote named 'tem' (configured: other, team)" in \
        capsys.readouterr().err
    code, again = json_of(["pull", "--remote", share.as_uri(), "team:latest"], capsys)
    assert code == 0 and again["already"] == ids


def test_a_run_edited_after_its_push_is_a_conflict_both_ways(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "share").mkdir()
    share = (tmp_path / "share").as_uri()
    ids = record(1)
    assert main(["push", "--remote", share]) == 0
    manifest_path = project / ".repro" / "runs" / ids[0] / "manifest.yaml"
    manifest_path.write_text(manifest_path.read_text().replace("note: null", "note: edited"))
    capsys.readouterr()
    assert main(["push", "--remote", share, ids[0]]) == 2  # named: checked against the remote
    err = capsys.readouterr().err
    assert f"error: 1 run(s) differ from the copy at the remote, which was kept: {ids[0]}" in err
    assert "hint: runs at a remote are write-once" in err
    code, doc = json_of(["pull", "--remote", share, ids[0]], capsys)
    assert code == 2 and doc["conflicts"] == ids
