"""capture/datastats.py: statistics of real CSV, JSON-lines, Parquet files and class folders."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro.capture import datastats

CSV = ("id,label,score,flag,note\n"
       "1,cat,0.5,true,hello\n"
       "2,dog,,false,\n"
       "3,cat,1e-3,TRUE,\"a, quoted\nnewline\"\n"
       "4,NA,7,false,x\n")


def _stats(path: Path, seconds: float = 30.0) -> dict[str, object]:
    fmt = datastats.table_format(str(path))
    assert fmt is not None
    return datastats.table_stats(str(path), fmt, datastats.Budget(seconds))


def test_csv_rows_columns_types_nulls(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(CSV)
    assert _stats(path) == {
        "format": "csv", "rows": 4,
        "columns": {"id": {"type": "int", "nulls": 0}, "label": {"type": "string", "nulls": 1},
                    "score": {"type": "float", "nulls": 1}, "flag": {"type": "bool", "nulls": 0},
                    "note": {"type": "string", "nulls": 1}}}


def test_types_widen_across_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datastats, "BATCH_ROWS", 2)
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\tc\n1\t1\t\n2\t2\t\n3\tx\t\n4.5\t3\t\n")
    stats = _stats(path)
    assert stats["columns"] == {"a": {"type": "float", "nulls": 0},
                                "b": {"type": "string", "nulls": 0},
                                "c": {"type": "empty", "nulls": 4}}
    assert stats["format"] == "tsv" and stats["rows"] == 4


def test_semicolon_csv_gzip_and_ragged_rows(tmp_path: Path) -> None:
    path = tmp_path / "eu.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("x;y\n1;2\n3\n4;5;6\n")
    stats = _stats(path)
    assert stats["rows"] == 3 and stats["ragged_rows"] == 2
    assert stats["columns"] == {"x": {"type": "int", "nulls": 0}, "y": {"type": "int", "nulls": 1}}


def test_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join([json.dumps({"text": "a", "label": 1, "w": 1}),
                               json.dumps({"text": "b", "label": None, "w": 0.5}),
                               json.dumps({"text": "c", "label": 2, "extra": [1]}),
                               "not json", "[1, 2]", ""]) + "\n")
    assert _stats(path) == {
        "format": "jsonl", "rows": 5, "invalid_rows": 2,
        "columns": {"text": {"type": "string", "nulls": 0}, "label": {"type": "int", "nulls": 1},
                    "w": {"type": "float", "nulls": 1}, "extra": {"type": "list", "nulls": 2}}}


def test_out_of_time_is_partial(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("a\n" + "1\n" * 50_000)
    stats = _stats(path, seconds=0.0)
    assert stats["partial"] is True and stats["rows"] == 0
    assert isinstance(stats["read_bytes"], int)


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    path = tmp_path / "pipe.csv"
    os.mkfifo(path)
    assert _stats(path) == {"format": "csv", "error": "not a regular file"}


def test_dir_stats_count_files_per_class() -> None:
    listing = {"cat/1.png": ("h", 1), "cat/2.png": ("h", 1), "dog/sub/3.png": ("h", 1),
               "README": ("h", 1)}
    assert datastats.dir_stats(listing) == {"format": "dir", "files": 4, "top_files": 1,
                                            "subdirs": {"cat": 2, "dog": 1}}


def test_parquet_through_the_runs_interpreter(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    made = subprocess.run(
        [sys.executable, "-c",
         "import sys, pyarrow as pa, pyarrow.parquet as pq\n"
         "pq.write_table(pa.table({'x': [1, 2, None], 'y': ['a', None, None]}), sys.argv[1])",
         str(path)], capture_output=True, text=True, timeout=120)
    if made.returncode != 0 and "No module named 'pyarrow'" in made.stderr:
        pytest.skip("pyarrow is not installed in the test interpreter")
    assert made.returncode == 0, made.stderr
    assert "pyarrow" not in sys.modules  # repro's process never imports it
    found = datastats.collect({"t.parquet": {"kind": "file", "hash": None}}, tmp_path,
                              python=sys.executable)
    assert found == {"t.parquet": {"format": "parquet", "rows": 3, "row_groups": 1,
                                   "columns": {"x": {"type": "int64", "nulls": 1},
                                               "y": {"type": "string", "nulls": 2}}}}
    assert "pyarrow" not in sys.modules


def test_parquet_without_pyarrow_says_so(tmp_path: Path) -> None:
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    # -S -I: an interpreter that cannot see site-packages, so no pyarrow
    script = tmp_path / "py"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    script.chmod(0o755)
    found = datastats.collect({"t.parquet": {"kind": "file", "hash": None}}, tmp_path,
                              python=str(script))
    assert found["t.parquet"]["error"].startswith("pyarrow is not importable")


def test_collect_caches_by_content_hash(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    entries = {"a.csv": {"kind": "file", "hash": "blake3:" + "ab" * 32},
               "img": {"kind": "dir", "hash": "blake3:" + "cd" * 32},
               "model.bin": {"kind": "file", "hash": "blake3:" + "ef" * 32}}
    cache = tmp_path / "cache"
    first = datastats.collect(entries, tmp_path, listings={"img": {"a/1": ("h", 1)}},
                              cache_dir=cache)
    assert set(first) == {"a.csv", "img"} and first["a.csv"]["rows"] == 4
    (tmp_path / "a.csv").write_text("other\n1\n")  # same recorded hash: the cache answers
    again = datastats.collect(entries, tmp_path, cache_dir=cache)
    assert again["a.csv"] == first["a.csv"]
    entries["a.csv"] = {"kind": "file", "hash": "blake3:" + "00" * 32}
    assert datastats.collect(entries, tmp_path, cache_dir=cache)["a.csv"]["rows"] == 1


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.csv", "csv"), ("A.TSV", "tsv"), ("x.tab", "tsv"), ("r.jsonl", "jsonl"),
    ("r.ndjson.gz", "jsonl"), ("d.csv.gz", "csv"), ("t.parquet", "parquet"), ("t.pq", "parquet"),
    ("t.parquet.gz", None), ("img.png", None), ("data", None),
])
def test_table_format(name: str, fmt: str | None) -> None:
    assert datastats.table_format(name) == fmt


def _reference(text: str) -> dict[str, object]:
    """The same statistics the slow, obvious way: csv module, row by row."""
    import csv as csvmod
    import io as iomod

    rows = [r for r in csvmod.reader(iomod.StringIO(text, newline="")) if r]
    header, body = rows[0], rows[1:]
    nulls = dict.fromkeys(header, 0)
    values: dict[str, list[str]] = {h: [] for h in header}
    ragged = 0
    for r in body:
        if len(r) != len(header):
            ragged += 1
        r = (r + [""] * len(header))[:len(header)]
        for h, v in zip(header, r, strict=True):
            if v in datastats.NULLS:
                nulls[h] += 1
            else:
                values[h].append(v)

    def kind(vs: list[str]) -> str:
        if not vs:
            return "empty"
        for name, parse in (("int", int), ("float", float)):
            try:
                [parse(v) for v in vs]
                return name
            except ValueError:
                pass
        return "bool" if all(v.lower() in ("true", "false") for v in vs) else "string"

    out: dict[str, object] = {
        "format": "csv", "rows": len(body),
        "columns": {h: {"type": kind(values[h]), "nulls": nulls[h]} for h in header}}
    if ragged:
        out["ragged_rows"] = ragged
    return out


@pytest.mark.parametrize("block", [7, 64, 1 << 20])
@pytest.mark.parametrize("seed", range(6))
def test_fast_path_agrees_with_the_csv_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             block: int, seed: int) -> None:
    import random

    monkeypatch.setattr(datastats, "BATCH_ROWS", 5)
    monkeypatch.setattr(datastats, "BLOCK_CHARS", block)
    rng = random.Random(seed)
    cells = ["1", "-2", "3.5", "", "NA", "true", "x", "nan", "1e3", "False"]
    lines = ["a,b,c"]
    for i in range(rng.randrange(1, 80)):
        row = [rng.choice(cells) for _ in range(3)]
        if rng.random() < 0.05:
            row = row[:2]  # ragged
        if rng.random() < 0.03:
            row = []  # a blank line
        if seed % 3 == 0 and i == 40:
            row[0:1] = ['"quoted, with\nnewline"'] if row else []
        lines.append(",".join(row))
    newline = "\r\n" if seed % 2 else "\n"
    text = newline.join(lines) + (newline if seed % 4 else "")
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode())
    assert _stats(path) == _reference(text)


def test_tables_inside_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data" / "splits").mkdir(parents=True)
    (tmp_path / "data" / "splits" / "train.csv").write_text(CSV)
    (tmp_path / "data" / "rows.jsonl").write_text('{"a": 1}\n{"a": null}\n')
    (tmp_path / "data" / "img.png").write_bytes(b"x")
    (tmp_path / "data" / "more.csv").write_text("z\n1\n")
    listing = {"splits/train.csv": ("blake3:" + "1" * 64, len(CSV)),
               "rows.jsonl": ("blake3:" + "2" * 64, 20), "img.png": ("blake3:" + "3" * 64, 1),
               "more.csv": ("blake3:" + "4" * 64, 4), "link.csv": ("symlink:more.csv", 0)}
    monkeypatch.setattr(datastats, "MAX_TABLES", 2)
    found = datastats.collect({"data": {"kind": "dir", "hash": "blake3:" + "9" * 64}}, tmp_path,
                              listings={"data": listing})["data"]
    assert found["subdirs"] == {"splits": 1} and found["top_files"] == 4
    assert list(found["tables"]) == ["more.csv", "rows.jsonl"]  # path order, first MAX_TABLES
    assert found["tables_omitted"] == 1  # splits/train.csv (the symlink is never read)
    assert found["tables"]["rows.jsonl"]["columns"] == {"a": {"type": "int", "nulls": 1}}


def test_a_damaged_gzip_has_an_error_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv.gz"
    good = gzip.compress(b"a,b\n" + b"1,2\n" * 1000)
    path.write_bytes(good[:20] + b"\x00" * 50 + good[70:])
    stats = _stats(path)
    assert stats["format"] == "csv" and stats["error"]
