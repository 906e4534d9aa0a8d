"""judge/query.py: `repro runs --where/--columns` over parameters and final metrics."""

from __future__ import annotations

from typing import Any

import pytest

from repro import errors
from repro.judge import query

ROWS: list[dict[str, Any]] = [
    {"run_id": "a", "params": {"lr": 0.01, "batch_size": 32, "model": "resnet", "amp": True,
                               "scale": "1e-3"},
     "metrics": {"loss": 0.05, "val": {"acc": 0.9}}},
    {"run_id": "b", "params": {"lr": 0.02, "batch_size": 64, "model": "vit", "amp": False},
     "metrics": {"loss": 0.2}},
    {"run_id": "c", "params": {}, "metrics": {}},
    {"run_id": "d", "status": "unreadable"},
]


@pytest.mark.parametrize(("exprs", "ids"), [
    (["lr=0.01"], ["a"]),
    (["lr==1e-2"], ["a"]),
    (["lr!=0.01"], ["b"]),  # a run without lr matches neither = nor !=
    (["loss<0.1"], ["a"]),
    (["loss<=0.2"], ["a", "b"]),
    (["loss>0.05"], ["b"]),
    (["loss>=0.05", "batch_size=64"], ["b"]),
    (["model=vit"], ["b"]),
    (["amp=true"], ["a"]),
    (["amp=1"], []),  # a bool is not the number 1
    (["val.acc>0.5"], ["a"]),
    (["metrics.val.acc>0.5"], ["a"]),
    (["params.batch_size<40"], ["a"]),
    (["scale=0.001"], ["a"]),  # the string "1e-3" YAML 1.1 reads is compared as a number
    (["batch_size=32.0"], ["a"]),
    (["missing=1"], []),
    ([" lr = 0.02 "], ["b"]),
])
def test_where(exprs: list[str], ids: list[str]) -> None:
    wheres = [query.parse_where(e) for e in exprs]
    assert [r["run_id"] for r in query.select(ROWS, wheres)] == ids


@pytest.mark.parametrize(("expr", "message"), [
    ("lr", "has no comparison"),
    ("=3", "names no parameter"),
    ("lr<", "has no value"),
    ("lr=>3", "'=>' is not an operator"),
    ("lr<<3", "'<<' is not an operator"),
    ("lr!3", "'!3' is not an operator"),
    ("model<abc", "compares numbers"),
])
def test_bad_where(expr: str, message: str) -> None:
    with pytest.raises(errors.UsageError) as e:
        query.parse_where(expr)
    assert message in e.value.message and e.value.hint


def test_columns() -> None:
    assert query.parse_columns(["lr,batch_size", "loss", "lr"]) == ["lr", "batch_size", "loss"]
    with pytest.raises(errors.UsageError):
        query.parse_columns(["lr,,loss"])
    assert [query.value_of(ROWS[0], n) for n in ("lr", "loss", "val.acc", "nope")] == \
        [0.01, 0.05, 0.9, None]


def test_select_limit() -> None:
    assert len(query.select(ROWS, [], limit=2)) == 2
