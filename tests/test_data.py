"""Tests for repro.capture.data and the modules it uses (hashing, statcache, listings, dvc, and
cmdline.argv_paths): hashing real files and trees, the stat cache, DVC, argv paths."""

from __future__ import annotations

import itertools
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repro import errors
from repro.capture import cmdline, data, dvc, hashing, listings, statcache

# Published BLAKE3 test vectors: an oracle independent of the code under test.
BLAKE3_EMPTY = "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
BLAKE3_ABC = "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
MIB = 1024 * 1024


def write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def age() -> None:
    """Let freshly written files get older than the racy-timestamp margin, so they may be cached."""
    time.sleep(statcache._RACY_MARGIN_NS / 1e9 + 0.02)


def one(paths: list[str], root: Path, cache: Path | None = None) -> data.Entry:
    [entry] = data.hash_paths(paths, root=root, cache_dir=cache)
    return entry


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every read of file contents goes through hashing._readinto: count them."""
    calls: list[int] = []
    real = hashing._readinto

    def counting(fd: int, view: memoryview) -> int:
        calls.append(fd)
        return real(fd, view)

    monkeypatch.setattr(hashing, "_readinto", counting)
    return calls


# --- hashing primitives ---------------------------------------------------------------------


@pytest.mark.parametrize(("content", "expected"), [(b"", BLAKE3_EMPTY), (b"abc", BLAKE3_ABC)])
def test_hash_bytes_known_vectors(content: bytes, expected: str) -> None:
    assert hashing.hash_bytes(content) == expected


@pytest.mark.parametrize("size", [
    0, 1, 4096, hashing._SMALL_MAX - 1, hashing._SMALL_MAX, hashing._CHUNK, hashing._CHUNK + 1,
    3 * hashing._CHUNK, hashing._PIPELINE_MIN + 12345,  # the last one takes the reader-thread path
])
def test_hash_file_and_hash_paths_agree_with_hash_bytes(tmp_path: Path, size: int) -> None:
    content = os.urandom(size)
    f = write(tmp_path / "f.bin", content)
    expected = hashing.hash_bytes(content)
    assert hashing.hash_file(f) == expected
    entry = one(["f.bin"], tmp_path)
    assert (entry.kind, entry.hash, entry.size) == ("file", expected, size)


def test_hash_file_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(errors.DataError, match="it is a directory") as e:
        hashing.hash_file(tmp_path)
    assert e.value.hint


# --- directories ----------------------------------------------------------------------------


def make_tree(root: Path, order: list[str], files: dict[str, bytes]) -> None:
    for name in order:
        write(root / name, files[name])


TREE = {"b.txt": b"bee", "a.txt": b"ay", "sub/c.bin": b"\x00\x01", "sub/deeper/d": b"dee"}


def test_dir_hash_follows_the_documented_encoding(tmp_path: Path) -> None:
    make_tree(tmp_path / "d", list(TREE), TREE)
    entry = one(["d"], tmp_path)
    # Sorted by path bytes: relpath NUL hash NUL for every file.
    encoded = b"".join(f"{p}\0{hashing.hash_bytes(TREE[p])}\0".encode() for p in sorted(TREE))
    assert entry.hash == hashing.hash_bytes(encoded)
    assert entry.kind == "dir"
    assert entry.files == 4
    assert entry.size == sum(len(v) for v in TREE.values())
    assert entry.listing == {p: (hashing.hash_bytes(TREE[p]), len(TREE[p])) for p in sorted(TREE)}
    assert list(entry.listing) == sorted(TREE)
    assert hashing.hash_listing(entry.listing) == entry.hash


def test_dir_hash_ignores_creation_order_mtimes_and_permissions(tmp_path: Path) -> None:
    make_tree(tmp_path / "x", list(TREE), TREE)
    make_tree(tmp_path / "y", list(reversed(TREE)), TREE)
    os.utime(tmp_path / "y" / "a.txt", ns=(1, 1_000_000_000))
    os.chmod(tmp_path / "y" / "b.txt", 0o600)
    os.chmod(tmp_path / "y" / "sub" / "c.bin", 0o755)
    x, y = data.hash_paths(["x", "y"], root=tmp_path, cache_dir=None)
    assert x.hash == y.hash
    assert x.listing == y.listing


def test_dir_hash_one_changed_byte_changes_hash_and_listing_names_the_file(
        tmp_path: Path) -> None:
    make_tree(tmp_path / "d", list(TREE), TREE)
    before = one(["d"], tmp_path, tmp_path / "cache")
    write(tmp_path / "d" / "sub" / "c.bin", b"\x00\x02")  # same size, one byte different
    after = one(["d"], tmp_path, tmp_path / "cache")
    assert before.hash != after.hash
    assert before.listing is not None and after.listing is not None
    changed = [p for p in before.listing if before.listing[p] != after.listing[p]]
    assert changed == ["sub/c.bin"]


_SEGMENT = st.text(alphabet="ab._-é\u4e2d", min_size=1, max_size=4).filter(
    lambda s: s not in (".", ".."))


@st.composite
def trees(draw: st.DrawFn) -> dict[str, bytes]:
    paths = draw(st.lists(st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join),
                          min_size=0, max_size=12, unique=True))
    # A path cannot be both a file and a directory holding other files.
    files = [p for p in paths if not any(q.startswith(p + "/") for q in paths)]
    return {p: draw(st.binary(max_size=3000)) for p in files}


@settings(max_examples=40, deadline=None)
@given(tree=trees())
def test_dir_hash_matches_the_encoding_for_any_tree(tmp_path_factory: pytest.TempPathFactory,
                                                    tree: dict[str, bytes]) -> None:
    root = tmp_path_factory.mktemp("tree")
    (root / "d").mkdir()
    make_tree(root / "d", list(tree), tree)
    order = sorted(tree, key=lambda p: p.encode())
    expected = hashing.hash_bytes(b"".join(
        p.encode() + b"\0" + hashing.hash_bytes(tree[p]).encode() + b"\0" for p in order))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(statcache, "_RACY_MARGIN_NS", -10**12)  # trust fresh files: exercise the cache
        uncached = one(["d"], root)
        first = one(["d"], root, root / ".repro" / "cache")
        second = one(["d"], root, root / ".repro" / "cache")
    assert uncached.hash == first.hash == second.hash == expected
    assert second.listing == {p: (hashing.hash_bytes(tree[p]), len(tree[p])) for p in order}
    assert list(second.listing) == order


def test_empty_directory_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write(tmp_path / "withempty" / "e", b"")
    e1, e2 = data.hash_paths(["empty", "withempty"], root=tmp_path, cache_dir=None)
    assert (e1.kind, e1.hash, e1.size, e1.files, e1.listing) == (
        "dir", BLAKE3_EMPTY, 0, 0, {})
    assert e2.listing == {"e": (BLAKE3_EMPTY, 0)}


def test_undecodable_names_sort_by_bytes_and_round_trip(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    for raw in (b"a\xff", b"a\xc3\xa9", b"a~", b"b"):  # \xff is not UTF-8: surrogate-escaped
        (Path(os.fsdecode(os.fsencode(d) + b"/" + raw))).write_bytes(raw)
    entry = one(["d"], tmp_path)
    assert entry.listing is not None
    assert [os.fsencode(k) for k in entry.listing] == [b"a~", b"a\xc3\xa9", b"a\xff", b"b"]
    section = listings.to_section([entry], tmp_path / "run", "data")
    listing = listings.read_listing(tmp_path / "run" / section["d"]["listing"])
    assert listing == entry.listing
    assert hashing.hash_listing(listing) == entry.hash


def test_root_itself_skips_git_and_repro(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "a")
    write(tmp_path / ".git" / "HEAD", "ref")
    write(tmp_path / ".repro" / "runs" / "x", "x")
    entry = one(["."], tmp_path, tmp_path / ".repro" / "cache")
    assert entry.path == "."
    assert entry.listing == {"a.txt": (hashing.hash_bytes(b"a"), 1)}


@pytest.mark.parametrize(("requested", "recorded"), [
    ("d/./f.txt", "d/f.txt"), ("d//f.txt", "d/f.txt"), ("./d", "d"), ("d/../d/f.txt", "d/f.txt"),
])
def test_paths_are_recorded_normalised(tmp_path: Path, requested: str, recorded: str) -> None:
    write(tmp_path / "d" / "f.txt", "x")
    assert one([requested], tmp_path).path == recorded


def test_absolute_path_inside_root_is_recorded_relative(tmp_path: Path) -> None:
    write(tmp_path / "d" / "f.txt", "x")
    assert one([str(tmp_path / "d" / "f.txt")], tmp_path).path == "d/f.txt"


@pytest.mark.parametrize("requested", ["../outside/set", "{outside}/set", "d/../../outside/set"])
def test_named_paths_outside_root_are_hashed_and_recorded_absolute(tmp_path: Path,
                                                                   requested: str) -> None:
    """Datasets usually live outside the repository: hashed read-only where they are."""
    write(tmp_path / "outside" / "set" / "a.csv", "1,2")
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    entry = one([requested.format(outside=tmp_path / "outside")], root)
    inside = one(["set"], tmp_path / "outside")
    assert entry.path == str(tmp_path / "outside" / "set")
    assert (entry.kind, entry.hash, entry.files) == ("dir", inside.hash, 1)


def test_named_symlinks_are_followed_to_their_content(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere" / "big.csv", "1,2")
    root = tmp_path / "root"
    root.mkdir()
    (root / "data").symlink_to(tmp_path / "elsewhere")
    (root / "one.csv").symlink_to(tmp_path / "elsewhere" / "big.csv")
    linked = one(["data"], root)
    direct = one(["elsewhere"], tmp_path)
    assert (linked.path, linked.kind, linked.hash) == ("data", "dir", direct.hash)
    assert one(["data/big.csv"], root).hash == one(["elsewhere/big.csv"], tmp_path).hash
    assert one(["one.csv"], root).kind == "file"


@pytest.mark.parametrize("requested", ["nope", "nope/deeper", "f.txt/child"])
def test_missing_paths_are_entries_of_kind_missing(tmp_path: Path, requested: str) -> None:
    write(tmp_path / "f.txt", "x")
    entry = one([requested], tmp_path)
    assert (entry.kind, entry.hash, entry.size) == ("missing", None, 0)


def test_hash_paths_keeps_request_order_and_duplicates(tmp_path: Path) -> None:
    write(tmp_path / "d" / "f", "f")
    write(tmp_path / "g", "g")
    entries = data.hash_paths(["g", "d", "d/f", "g"], root=tmp_path, cache_dir=None)
    assert [e.path for e in entries] == ["g", "d", "d/f", "g"]
    assert entries[2].hash == entries[1].listing["f"][0]  # type: ignore[index]


def test_progress_reports_bytes_up_to_the_total(tmp_path: Path) -> None:
    for i in range(300):
        write(tmp_path / "d" / f"{i}.bin", os.urandom(1000 + i))
    write(tmp_path / "d" / "big.bin", os.urandom(2 * MIB))
    calls: list[tuple[int, int]] = []
    started = time.monotonic()
    entry = data.hash_paths(["d"], root=tmp_path, cache_dir=None,
                            progress=lambda done, total: calls.append((done, total)))[0]
    elapsed = time.monotonic() - started
    assert calls[-1] == (entry.size, entry.size)
    assert calls[0][1] == entry.size
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    # Throttled, not per file (301 of them): one call a progress interval, plus the first and
    # the last. Counted against the time it took, which a loaded machine stretches.
    assert len(calls) <= 4 + elapsed / hashing._PROGRESS_INTERVAL_S


# --- symlinks and unreadable things ---------------------------------------------------------


def test_symlinks_inside_a_directory_are_recorded_as_links_and_never_followed(
        tmp_path: Path) -> None:
    d = tmp_path / "d"
    write(d / "f.txt", "content")
    (d / "to_file").symlink_to("f.txt")
    (d / "self_dir").symlink_to(".")  # a directory loop if it were followed
    (d / "parent").symlink_to("..")
    (d / "dangling").symlink_to("does/not/exist")
    entry = one(["d"], tmp_path)
    assert entry.listing == {
        "dangling": ("symlink:does/not/exist", 0),
        "f.txt": (hashing.hash_bytes(b"content"), 7),
        "parent": ("symlink:..", 0),
        "self_dir": ("symlink:.", 0),
        "to_file": ("symlink:f.txt", 0),
    }
    # Named on its own, a link is followed: the caller asked for that data.
    link = one(["d/to_file"], tmp_path)
    assert (link.kind, link.hash, link.size) == ("file", hashing.hash_bytes(b"content"), 7)
    dangling = one(["d/dangling"], tmp_path)
    assert (dangling.kind, dangling.hash) == ("missing", None)


@pytest.mark.parametrize(("links", "request_path"), [
    ({"d/loop": "loop"}, "d"),  # points at itself, inside a walked directory
    ({"d/a": "b", "d/b": "a"}, "d"),  # two links pointing at each other
    ({"top": "top"}, "top"),  # the requested path itself
])
def test_symlink_loop_is_a_clear_data_error(tmp_path: Path, links: dict[str, str],
                                            request_path: str) -> None:
    (tmp_path / "d").mkdir()
    for name, target in links.items():
        (tmp_path / name).symlink_to(target)
    with pytest.raises(errors.DataError, match=r"symlink loop at (d/|top)") as e:
        data.hash_paths([request_path], root=tmp_path, cache_dir=None)
    assert e.value.hint and "link" in e.value.hint


def test_path_through_a_symlink_loop_is_a_clear_data_error(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(errors.DataError, match="symlink loop in its path") as e:
        data.hash_paths(["loop/x"], root=tmp_path, cache_dir=None)
    assert "loop/x" in e.value.message


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    write(tmp_path / "d" / "ok.txt", "ok")
    os.mkfifo(tmp_path / "d" / "pipe")
    with pytest.raises(errors.DataError, match="d/pipe: it is a FIFO") as e:
        data.hash_paths(["d"], root=tmp_path, cache_dir=None)
    assert e.value.hint


def test_unreadable_file_is_a_data_error_naming_it() -> None:
    # /proc/self/mem is a regular file that opens but fails to read at offset 0 (EIO), for root
    # too: a real read error, where chmod 000 would not stop root.
    root = Path("/proc/self")
    if not (root / "mem").exists():
        pytest.skip("needs /proc/self/mem (Linux)")
    with pytest.raises(errors.DataError, match=r"cannot read mem: ") as e:
        data.hash_paths(["mem"], root=root, cache_dir=None)
    assert e.value.hint and "permissions" in e.value.hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_is_a_data_error_naming_it(tmp_path: Path) -> None:
    f = write(tmp_path / "d" / "secret.bin", "x")
    f.chmod(0)
    with pytest.raises(errors.DataError, match=r"cannot read d/secret\.bin: Permission denied"):
        data.hash_paths(["d"], root=tmp_path, cache_dir=None)


# --- changed while hashing ------------------------------------------------------------------


def appending_reads(monkeypatch: pytest.MonkeyPatch, target: Path,
                    times: int) -> list[int]:
    """Make the first `times` reads of `target` append a byte to it: a real change mid-hash."""
    real = hashing._readinto
    appended: list[int] = []
    target_ino = target.stat().st_ino

    def reading(fd: int, view: memoryview) -> int:
        got = real(fd, view)
        if os.fstat(fd).st_ino == target_ino and len(appended) < times:
            with open(target, "ab") as f:
                f.write(b"!")
            appended.append(got)
        return got

    monkeypatch.setattr(hashing, "_readinto", reading)
    return appended


@pytest.mark.parametrize("size", [100, 3 * hashing._CHUNK, hashing._PIPELINE_MIN + 1])
def test_file_changed_once_while_hashing_is_hashed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    f = write(tmp_path / "d" / "growing.bin", os.urandom(size))
    write(tmp_path / "d" / "other.bin", b"other")
    appended = appending_reads(monkeypatch, f, times=1)
    entry = one(["d"], tmp_path)
    assert appended
    assert entry.listing is not None
    assert entry.listing["growing.bin"] == (hashing.hash_bytes(f.read_bytes()), size + 1)


@pytest.mark.parametrize("size", [100, 3 * hashing._CHUNK])
def test_file_changing_on_every_read_is_a_data_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    f = write(tmp_path / "d" / "log.txt", os.urandom(size))
    appending_reads(monkeypatch, f, times=1_000_000)
    with pytest.raises(errors.DataError, match=r"d/log\.txt changed while hashing") as e:
        data.hash_paths(["d"], root=tmp_path, cache_dir=None)
    assert e.value.hint


# --- the stat cache -------------------------------------------------------------------------


def test_cache_hit_reads_no_file_contents(tmp_path: Path, count_reads: list[int]) -> None:
    make_tree(tmp_path / "d", list(TREE), TREE)
    write(tmp_path / "single.txt", "s")
    age()
    cache = tmp_path / "cache"
    first = data.hash_paths(["d", "single.txt"], root=tmp_path, cache_dir=cache)
    assert len(count_reads) == 5
    count_reads.clear()
    second = data.hash_paths(["d", "single.txt"], root=tmp_path, cache_dir=cache)
    assert count_reads == []
    assert second == first
    # A changed file is read again, and only that file.
    write(tmp_path / "d" / "a.txt", "AY")
    age()
    third = data.hash_paths(["d", "single.txt"], root=tmp_path, cache_dir=cache)
    assert len(count_reads) == 1
    assert third[0].listing["a.txt"] == (hashing.hash_bytes(b"AY"), 2)  # type: ignore[index]
    assert third[0].hash != first[0].hash


def test_touched_but_unchanged_file_keeps_its_hash(tmp_path: Path,
                                                   count_reads: list[int]) -> None:
    f = write(tmp_path / "d" / "f.bin", "same")
    age()
    cache = tmp_path / "cache"
    before = one(["d"], tmp_path, cache)
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    count_reads.clear()
    after = one(["d"], tmp_path, cache)
    assert len(count_reads) == 1  # the signature changed, so it was read again...
    assert after.hash == before.hash  # ...and its content hash is the same


def test_racy_fresh_file_is_not_trusted(tmp_path: Path, count_reads: list[int]) -> None:
    # Hashed within the timestamp margin of its last change: a further change in the same tick
    # would leave size, mtime and ctime as they are, so the cache must not vouch for it.
    write(tmp_path / "d" / "fresh.bin", "v1")
    cache = tmp_path / "cache"
    one(["d"], tmp_path, cache)
    count_reads.clear()
    one(["d"], tmp_path, cache)
    assert len(count_reads) == 1  # unchanged, but too fresh to have been cached
    write(tmp_path / "d" / "fresh.bin", "v2")  # same size, possibly the same tick
    entry = one(["d"], tmp_path, cache)
    assert entry.listing == {"fresh.bin": (hashing.hash_bytes(b"v2"), 2)}
    age()
    one(["d"], tmp_path, cache)  # now old enough to be stored
    count_reads.clear()
    one(["d"], tmp_path, cache)
    assert count_reads == []


START = 1_700_000_000_123_456_789


@pytest.mark.parametrize(("ctime", "trusted"), [
    (START - 1_000_000_007, True),  # fine-grained timestamp, a second old
    (START - 50_000_003, False),  # fine-grained, within the tick margin
    (START + 5_000_000_001, False),  # in the future (clock skew)
    (START - START % 10**9 - 10**9, False),  # whole-second timestamp, 1-2 s old: coarse fs
    (START - START % 10**9 - 3 * 10**9, True),  # whole-second timestamp, over 2 s old
])
def test_racy_rule(ctime: int, trusted: bool) -> None:
    assert statcache.trusted(ctime, START) is trusted


def test_cache_drops_entries_of_deleted_files_and_ignores_damaged_snapshots(
        tmp_path: Path, count_reads: list[int]) -> None:
    make_tree(tmp_path / "d", list(TREE), TREE)
    age()
    cache = tmp_path / "cache"
    first = one(["d"], tmp_path, cache)
    [shard] = (cache / "stat-v1").iterdir()
    [snap] = shard.glob("*.snap")
    (tmp_path / "d" / "b.txt").unlink()
    one(["d"], tmp_path, cache)
    [snap2] = shard.glob("*.snap")
    assert snap2 != snap
    loaded = statcache.StatCache(cache, os.path.realpath(tmp_path / "d"))
    loaded.load()
    assert sorted(loaded.rels) == ["a.txt", "sub/c.bin", "sub/deeper/d"]
    # Damage it: the cache is ignored (and rebuilt), results stay right.
    snap2.write_bytes(snap2.read_bytes()[:-1] + b"x")
    write(tmp_path / "d" / "b.txt", "bee")
    os.utime(tmp_path / "d" / "b.txt", ns=(1, 1))
    count_reads.clear()
    again = one(["d"], tmp_path, cache)
    assert len(count_reads) == 4
    assert again.hash == first.hash


def test_cache_merges_several_snapshots_into_one(tmp_path: Path,
                                                 count_reads: list[int]) -> None:
    make_tree(tmp_path / "d", list(TREE), TREE)
    age()
    cache = tmp_path / "cache"
    first = one(["d"], tmp_path, cache)
    [shard] = (cache / "stat-v1").iterdir()
    [snap] = shard.glob("*.snap")
    # As if two runs had written at once: two snapshots, each with half of the entries.
    full = statcache.StatCache(cache, os.path.realpath(tmp_path / "d"))
    full.load()
    halves = []
    for part in (slice(0, 2), slice(2, None)):
        new = statcache.Snapshot()
        for rel, sig, h, size in list(zip(full.rels, full.sigs, full.hashes, full.sizes,
                                          strict=True))[part]:
            new.add(rel, sig, (h, size))
        halves.append(statcache._format_snapshot(new, digest=False))
    snap.unlink()
    (shard / "1-a.snap").write_bytes(halves[0])
    (shard / "2-b.snap").write_bytes(halves[1])
    count_reads.clear()
    assert one(["d"], tmp_path, cache) == first
    assert count_reads == []
    assert len(list(shard.glob("*.snap"))) == 1


CONCURRENT_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from repro import errors
    from repro.capture import data
    root, cache, me, paths = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
    out = []
    for i in range(6):
        # Replace this process's own file by one with the same bytes (atomically, so others
        # never see it half-written): its signature changes, so every round has something new
        # for the cache, and snapshots are written and merged concurrently.
        p = root / "data" / "shared" / ("own-" + me)
        tmp = root / ("tmp-" + me)
        tmp.write_bytes(b"same bytes")
        tmp.replace(p)
        while True:
            try:
                entries = data.hash_paths(paths, root=root, cache_dir=cache)
                break
            except errors.DataError as e:
                # Another worker replaced its own file while this one read it, and again
                # while it read it a second time (a loaded machine stops a reader that long):
                # refused, rightly (the replaced file's ctime changes). Only those files,
                # which really change, may be refused; this worker's own is still at rest.
                changing = e.message.split(" changed while hashing")[0]
                assert changing.startswith("data/shared/own-"), e.message
                assert changing != "data/shared/own-" + me, e.message
        out.append({e.path: e.hash for e in entries})
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_concurrent_runs_share_the_cache_safely(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for i in range(150):
        write(root / "data" / "shared" / f"{i:03d}.bin", os.urandom(500 + i))
        write(root / "data" / "other" / f"{i:03d}.bin", os.urandom(300 + i))
    for me in range(8):
        write(root / "data" / "shared" / f"own-{me}", b"same bytes")
    age()
    expected = {e.path: e.hash for e in data.hash_paths(
        ["data", "data/shared", "data/other"], root=root, cache_dir=None)}
    cache = root / ".repro" / "cache"
    script = tmp_path / "worker.py"
    script.write_text(CONCURRENT_SCRIPT)
    requests = [["data"], ["data/shared"], ["data", "data/other"], ["data/shared", "data"]]
    procs = [subprocess.Popen([sys.executable, str(script), str(root), str(cache), str(me),
                               *requests[me % len(requests)]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me in range(8)]
    for me, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        for result in json.loads(out):
            assert result == {p: expected[p] for p in requests[me % len(requests)]}
    # Whatever is left in the cache is consistent: every entry whose signature matches the
    # file now names that file's true hash; no temporary files are left behind.
    shards = list((cache / "stat-v1").iterdir())
    assert len(shards) == 3
    checked = 0
    for shard in shards:
        assert not list(shard.glob(".tmp-*"))
        for snap in shard.glob("*.snap"):
            parsed = statcache._parse_snapshot(snap.read_bytes())
            assert parsed is not None, snap
            rels, sigs, hashes, sizes, _, _ = parsed
            for rel, sig, h, size in zip(rels, sigs, hashes, sizes, strict=True):
                for top in ("data", "data/shared", "data/other"):
                    f = root / top / rel
                    if f.is_file():
                        st = f.stat()
                        if sig == statcache.SIG.pack(*hashing.signature(st)):
                            assert (h, size) == (hashing.hash_file(f), st.st_size)
                            checked += 1
    assert checked > 300
    final = data.hash_paths(["data", "data/shared", "data/other"], root=root, cache_dir=cache)
    assert {e.path: e.hash for e in final} == expected


# --- manifest sections and listing files ----------------------------------------------------


def test_to_section_and_read_listing_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    make_tree(root / "d", list(TREE), TREE)
    write(root / "f.csv", "1,2\n")
    (root / "link").symlink_to("f.csv")
    write(root / "e" / "x", "x")
    entries = data.hash_paths(["d", "f.csv", "link", "gone", "e"], root=root, cache_dir=None)
    run_dir = tmp_path / "run"
    section = listings.to_section(entries, run_dir, "outputs")
    assert section == {
        "d": {"kind": "dir", "hash": entries[0].hash, "size": entries[0].size, "files": 4,
              "listing": "outputs/0.json"},
        "f.csv": {"kind": "file", "hash": hashing.hash_bytes(b"1,2\n"), "size": 4},
        "link": {"kind": "file", "hash": hashing.hash_bytes(b"1,2\n"), "size": 4},
        "gone": {"kind": "missing", "size": 0},
        "e": {"kind": "dir", "hash": entries[4].hash, "size": 1, "files": 1,
              "listing": "outputs/1.json"},
    }
    doc = json.loads((run_dir / "outputs" / "0.json").read_text())
    assert doc["schema"] == "repro/listing/v1"
    assert doc["path"] == "d"
    assert doc["files"]["sub/c.bin"] == [hashing.hash_bytes(b"\x00\x01"), 2]
    listing = listings.read_listing(run_dir / "outputs" / "0.json")
    assert listing == entries[0].listing
    assert hashing.hash_listing(listing) == entries[0].hash


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "not valid JSON"),
    ('{"schema": "repro/listing/v9", "files": {}}', "unknown schema 'repro/listing/v9'"),
    ("[1, 2]", "unknown schema None"),
    ('{"schema": "repro/listing/v1", "files": []}', "'files' must be a mapping"),
    ('{"schema": "repro/listing/v1", "files": {"a": ["blake3:x"]}}', "must be \\[hash, size\\]"),
    ('{"schema": "repro/listing/v1", "files": {"a": ["blake3:x", true]}}', "must be"),
])
def test_read_listing_rejects_bad_files(tmp_path: Path, text: str, message: str) -> None:
    f = write(tmp_path / "0.json", text)
    with pytest.raises(errors.DataError, match=message) as e:
        listings.read_listing(f)
    assert str(f) in e.value.message
    assert e.value.hint


def test_read_listing_missing_file(tmp_path: Path) -> None:
    with pytest.raises(errors.DataError, match="cannot read listing"):
        listings.read_listing(tmp_path / "nope.json")


# --- DVC ------------------------------------------------------------------------------------


DVC_FILE = """\
outs:
- md5: 5d41402abc4b2a76b9719d911017c592
  size: 5
  hash: md5
  path: raw.bin
"""

DVC_LOCK = """\
schema: '2.0'
stages:
  prepare:
    cmd: python prepare.py
    deps:
    - path: data/raw.bin
      hash: md5
      md5: 5d41402abc4b2a76b9719d911017c592
    outs:
    - path: data/prepared
      hash: md5
      md5: 0123456789abcdef0123456789abcdef.dir
      size: 10
      nfiles: 2
  train@0:
    cmd: python train.py
    outs:
    - path: model.pt
      md5: fedcba9876543210fedcba9876543210
"""


@pytest.mark.parametrize(("path", "expected"), [
    ("data/raw.bin", "5d41402abc4b2a76b9719d911017c592"),  # sibling .dvc file
    ("data/prepared", "0123456789abcdef0123456789abcdef.dir"),  # dvc.lock outs
    ("model.pt", "fedcba9876543210fedcba9876543210"),  # dvc.lock, foreach-style stage name
    ("data/other.bin", None),
])
def test_dvc_md5(tmp_path: Path, path: str, expected: str | None) -> None:
    write(tmp_path / "data" / "raw.bin.dvc", DVC_FILE)
    write(tmp_path / "dvc.lock", DVC_LOCK)
    assert dvc.dvc_md5(Path(path), tmp_path) == expected
    assert dvc.dvc_md5(tmp_path / path, tmp_path) == expected


def test_hash_paths_fills_dvc_md5_even_for_missing_data(tmp_path: Path) -> None:
    write(tmp_path / "data" / "raw.bin.dvc", DVC_FILE)
    write(tmp_path / "data" / "raw.bin", "hello")
    write(tmp_path / "dvc.lock", DVC_LOCK)
    raw, prepared = data.hash_paths(["data/raw.bin", "data/prepared"], root=tmp_path,
                                    cache_dir=None)
    assert (raw.kind, raw.dvc_md5) == ("file", "5d41402abc4b2a76b9719d911017c592")
    assert (prepared.kind, prepared.dvc_md5) == ("missing",
                                                 "0123456789abcdef0123456789abcdef.dir")
    section = listings.to_section([raw], tmp_path / "run", "data")
    assert section["data/raw.bin"]["dvc_md5"] == "5d41402abc4b2a76b9719d911017c592"


def test_dvc_file_that_is_not_yaml_is_a_data_error(tmp_path: Path) -> None:
    write(tmp_path / "dvc.lock", "stages: [unclosed\n")
    with pytest.raises(errors.DataError, match=r"cannot read DVC file .*dvc\.lock") as e:
        dvc.dvc_md5(Path("x"), tmp_path)
    assert e.value.hint


def test_no_dvc_files_means_no_md5(tmp_path: Path) -> None:
    write(tmp_path / "x", "x")
    assert one(["x"], tmp_path).dvc_md5 is None


# --- argv_paths -----------------------------------------------------------------------------


ARGV_FILES = ["train.py", "data/train.csv", "data/val.csv", "outputs/", "cfg.yaml",
              ".repro/runs/", ".git/config", "sub/script.py"]


@pytest.mark.parametrize(("argv", "cwd", "expected"), [
    (["python", "train.py", "data/train.csv", "--lr", "0.1"], ".", ["data/train.csv"]),
    (["python3.11", "-u", "-W", "ignore", "train.py", "--out=outputs", "cfg.yaml"], ".",
     ["outputs", "cfg.yaml"]),
    (["/usr/bin/python3", "-m", "pkg.train", "data/val.csv"], ".", ["data/val.csv"]),
    (["python", "-c", "print(1)", "data"], ".", ["data"]),
    (["./run.sh", "data", "./data/", "data//", "data/../data"], ".", ["data"]),
    (["torchrun", "train.py", "--config", "cfg.yaml"], ".", ["train.py", "cfg.yaml"]),
    ([".venv/bin/python", "train.py", "dataset.path=data/train.csv", "lr=0.1"], ".",
     ["data/train.csv"]),
    (["python", "train.py", ".repro/runs", ".git/config", ".", "/etc/hostname",
      "../outside", "missing.csv", ""], ".", []),
    (["python", "script.py", "../data/val.csv", "../cfg.yaml"], "sub",
     ["data/val.csv", "cfg.yaml"]),
    (["python"], ".", []),
    ([], ".", []),
])
def test_argv_paths(tmp_path: Path, argv: list[str], cwd: str, expected: list[str]) -> None:
    root = tmp_path / "repo"
    for name in ARGV_FILES:
        if name.endswith("/"):
            (root / name).mkdir(parents=True, exist_ok=True)
        else:
            write(root / name, "x")
    write(tmp_path / "outside", "x")
    assert cmdline.argv_paths(argv, root / cwd, root) == expected


def test_argv_paths_excludes_paths_leaving_root_through_a_symlink(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere" / "d.csv", "x")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "ext").symlink_to(tmp_path / "elsewhere")
    write(root / "in.csv", "x")
    assert cmdline.argv_paths(["python", "t.py", "ext/d.csv", "ext", "in.csv"], root, root) == [
        "ext", "in.csv"]


@pytest.mark.parametrize("module", [data, hashing, statcache, listings, dvc],
                         ids=lambda m: m.__name__)
def test_module_keeps_layering(module: Any) -> None:
    # The module docstring states what it owns and must not do; no printing anywhere.
    source = Path(module.__file__).read_text()
    assert module.__doc__ and "Must not" in module.__doc__
    assert "print(" not in source
    assert "import yaml" not in source


def test_mode_bits_do_not_matter_for_a_file(tmp_path: Path) -> None:
    f = write(tmp_path / "f", "same")
    h1 = one(["f"], tmp_path).hash
    f.chmod(stat.S_IRUSR)
    assert one(["f"], tmp_path).hash == h1
