"""store: run ids, RUN references, abandoned runs."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from repro import errors
from repro.record import manifest, store
from tests.test_manifest import sample


def make_store(tmp_path: Path, ids: list[str]) -> store.Store:
    s = store.Store(root=tmp_path, home=tmp_path / ".repro")
    for run_id in ids:
        d = s.runs_dir / run_id
        d.mkdir(parents=True)
        manifest.write(d / "manifest.yaml", sample(run_id=run_id))
    return s


IDS = ["20261123T142501.000001Z-aaaa", "20261123T142501.000002Z-bbbb",
       "20261123T150000.000000Z-cccc"]


def test_run_ids_sort_by_time_and_never_collide() -> None:
    now = dt.datetime(2026, 11, 23, 14, 25, 1, 5, tzinfo=dt.UTC)
    ids = {store.new_run_id(now) for _ in range(200)}
    assert len(ids) > 190  # 16 random bits per id; create_run_dir retries the rest
    assert all(store.RUN_ID_RE.match(i) for i in ids)
    later = store.new_run_id(now + dt.timedelta(microseconds=1))
    assert all(later > i for i in ids)


def test_create_run_dir_makes_distinct_directories_at_one_instant(tmp_path: Path) -> None:
    s = store.Store(root=tmp_path, home=tmp_path / ".repro")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    made = {s.create_run_dir(now)[0] for _ in range(50)}
    assert len(made) == 50


def test_create_run_dir_retries_on_collision(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The first id drawn is one another run already holds: a real mkdir collision, so the
    # retry branch runs; the other run's directory is left exactly as it was.
    s = store.Store(root=tmp_path, home=tmp_path / ".repro")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    taken = store.new_run_id(now)
    (s.runs_dir / taken).mkdir(parents=True)
    (s.runs_dir / taken / "manifest.yaml").write_text("theirs\n")
    draws: list[dt.datetime | None] = []
    real_new_run_id = store.new_run_id

    def first_draw_collides(when: dt.datetime | None = None) -> str:
        draws.append(when)
        return taken if len(draws) == 1 else real_new_run_id(when)

    monkeypatch.setattr(store, "new_run_id", first_draw_collides)
    run_id, path = s.create_run_dir(now)
    assert len(draws) == 2 and draws[0] == now  # drew again after the collision
    assert run_id != taken and store.RUN_ID_RE.match(run_id)
    assert path == s.runs_dir / run_id and path.is_dir() and not any(path.iterdir())
    assert [p.name for p in (s.runs_dir / taken).iterdir()] == ["manifest.yaml"]
    assert (s.runs_dir / taken / "manifest.yaml").read_text() == "theirs\n"


@pytest.mark.parametrize(("ref", "expected"), [
    ("latest", IDS[2]),
    ("latest~0", IDS[2]),
    ("latest~2", IDS[0]),
    ("20261123T150000", IDS[2]),
    (IDS[1], IDS[1]),
    ("20261123T142501.000001", IDS[0]),
])
def test_resolve_references(tmp_path: Path, ref: str, expected: str) -> None:
    s = make_store(tmp_path, IDS)
    assert s.resolve(ref) == s.runs_dir / expected / "manifest.yaml"


def test_resolve_paths(tmp_path: Path) -> None:
    s = make_store(tmp_path, IDS)
    run_dir = s.runs_dir / IDS[0]
    assert s.resolve(str(run_dir)) == run_dir / "manifest.yaml"
    assert s.resolve(str(run_dir / "manifest.yaml")) == run_dir / "manifest.yaml"


@pytest.mark.parametrize(("ref", "fragment"), [
    ("20261123T1425", "is ambiguous: it matches 20261123T142501.000002Z-bbbb, "
                      "20261123T142501.000001Z-aaaa"),
    ("latest~3", "there are only 3 runs"),
    ("nope", "no run matches 'nope'"),
    ("missing/manifest.yaml", "no such file"),
])
def test_resolve_errors(tmp_path: Path, ref: str, fragment: str) -> None:
    s = make_store(tmp_path, IDS)
    with pytest.raises(errors.RunNotFoundError) as e:
        s.resolve(ref)
    assert fragment in e.value.message


def test_running_run_with_dead_pid_reads_as_abandoned(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    path = tmp_path / "manifest.yaml"
    manifest.write(path, sample(status="running", pid=dead.pid, host=os.uname().nodename))
    assert store.load_manifest(path).run.status == "abandoned"
    live = sample(status="running", pid=os.getpid(), host=os.uname().nodename,
                  pid_start=store.process_start_ticks(os.getpid()))
    manifest.write(path, live)
    assert store.load_manifest(path).run.status == "running"
    reused = sample(status="running", pid=os.getpid(), host=os.uname().nodename, pid_start=1)
    manifest.write(path, reused)
    assert store.load_manifest(path).run.status == "abandoned"


def test_a_run_that_finishes_while_it_is_read_is_not_abandoned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race CI met on a multi-node run: a member's repro wrote its final record and
    exited between node 0's read (`running`) and its check of the pid (gone)."""
    path = tmp_path / "manifest.yaml"
    manifest.write(path, sample(status="running", pid=os.getpid(), host=os.uname().nodename))

    def finishes_meanwhile(m: manifest.Manifest) -> bool:
        manifest.write(path, sample(status="succeeded"))  # its last write, then it exits
        return False

    monkeypatch.setattr(store, "_still_running", finishes_meanwhile)
    assert store.load_manifest(path).run.status == "succeeded"


def test_a_run_directory_being_created_is_not_a_run_yet(tmp_path: Path) -> None:
    # `repro run` makes the directory, then writes its first manifest: in between, `latest`
    # pointed at it ("no manifest.yaml") and `repro runs` showed it as an unreadable row.
    s = make_store(tmp_path, IDS)
    _, young = s.create_run_dir()
    assert s.resolve("latest") == s.runs_dir / IDS[2] / "manifest.yaml"
    assert [run_id for run_id, _ in s.iter_manifests()] == IDS[::-1]
    # Left without a manifest (repro killed in that moment): a run that cannot be read.
    old = time.time() - 60
    os.utime(young, (old, old))
    assert s.resolve("latest") == young / "manifest.yaml"
    assert next(type(m).__name__ for _, m in s.iter_manifests()) == "RunNotFoundError"


def test_find_root_outside_git_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(errors.NotAGitRepoError, match="not inside a git repository"):
        store.find_root(tmp_path)
