"""Tests for repro.capture.metrics: metrics files, JSON-lines series, stdout patterns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from repro import errors
from repro.capture import metrics


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# --- metrics files --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("m.json", '{"loss": 0.5, "acc": 1, "ok": true, "tag": "best"}',
     {"loss": 0.5, "acc": 1, "ok": True, "tag": "best"}),
    ("m.yaml", "loss: 0.5\nacc: 1\nok: true\ntag: best\n",
     {"loss": 0.5, "acc": 1, "ok": True, "tag": "best"}),
    ("m.yml", "val:\n  loss: 0.25\n  top: {k1: 0.9}\n", {"val.loss": 0.25, "val.top.k1": 0.9}),
    ("m.json", '{"val": {"loss": 1}, "train": {"loss": 2}}', {"val.loss": 1, "train.loss": 2}),
    ("m.json", '{"per_class": [0.9, 0.8], "pairs": [{"f1": 0.5}]}',
     {"per_class.0": 0.9, "per_class.1": 0.8, "pairs.0.f1": 0.5}),
    ("m.json", '{"preds": [' + ",".join(["0"] * (metrics.MAX_LIST + 1)) + '], "loss": 1}',
     {"loss": 1}),  # a list too long to be metrics is skipped
    ("m.json", '{"skipped": null, "empty": {}, "loss": 2}', {"loss": 2}),
    ("m.yaml", "1: one\n2.5: two\n", {"1": "one", "2.5": "two"}),  # keys become strings
    ("m.json", '{"val.loss": 1, "val": {"loss": 2}}', {"val.loss": 2}),  # later one wins
    ("metrics.txt", '{"loss": 3}', {"loss": 3}),  # other suffixes: YAML, which reads JSON
])
def test_read_metrics_file(tmp_path: Path, name: str, text: str,
                           expected: dict[str, object]) -> None:
    assert metrics.read_metrics_file(write(tmp_path / name, text)) == expected


def test_read_metrics_file_nan_and_infinity(tmp_path: Path) -> None:
    got = metrics.read_metrics_file(write(tmp_path / "m.json", '{"a": NaN, "b": Infinity}'))
    assert math.isnan(got["a"])  # type: ignore[arg-type]
    assert got["b"] == math.inf


@pytest.mark.parametrize(("name", "text", "message"), [
    ("m.json", "{not json", "m.json is not valid JSON"),
    ("m.yaml", "a: [unclosed\n", "m.yaml is not valid YAML"),
    ("m.json", "[1, 2]", "m.json holds a list, not a mapping"),
    ("m.yaml", "just a string\n", "m.yaml holds a str, not a mapping"),
    ("m.json", b"\xff\xfe{}", "cannot read metrics file .*m.json"),
])
def test_read_metrics_file_errors_name_the_file(tmp_path: Path, name: str, text: str | bytes,
                                                message: str) -> None:
    with pytest.raises(errors.DataError, match=message) as e:
        metrics.read_metrics_file(write(tmp_path / name, text))
    assert e.value.hint


def test_read_metrics_file_missing(tmp_path: Path) -> None:
    with pytest.raises(errors.DataError, match=r"metrics file .*nope\.json was not written"):
        metrics.read_metrics_file(tmp_path / "nope.json")


# --- series ---------------------------------------------------------------------------------


def test_read_series_last_value_per_key_and_step_count(tmp_path: Path) -> None:
    lines = [{"step": i, "loss": 1.0 / (i + 1), "lr": 0.1} for i in range(5)]
    lines.append({"step": 5, "val": {"acc": 0.9}})
    f = write(tmp_path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    assert metrics.read_series(f) == ({"loss": 0.2, "lr": 0.1, "val.acc": 0.9}, 6)


@pytest.mark.parametrize("tail", [
    '{"step": 3, "loss": 0.0',  # killed mid-write: cut inside the object
    '{"step": 3, "lo',
    "{",
])
def test_read_series_ignores_a_truncated_last_line(tmp_path: Path, tail: str) -> None:
    f = write(tmp_path / "metrics.jsonl",
              '{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.25}\n' + tail)
    assert metrics.read_series(f) == ({"loss": 0.25}, 2)


def test_read_series_accepts_a_complete_last_line_without_newline(tmp_path: Path) -> None:
    f = write(tmp_path / "metrics.jsonl", '{"loss": 0.5}\n{"loss": 0.25}')
    assert metrics.read_series(f) == ({"loss": 0.25}, 2)


def test_read_series_skips_bad_lines_and_blank_lines(tmp_path: Path) -> None:
    f = write(tmp_path / "metrics.jsonl", '{"loss": 1}\n\nnot json\n[1]\n{"loss": 2}\n')
    assert metrics.read_series(f) == ({"loss": 2}, 2)


def test_read_series_over_long_line_is_skipped_not_held(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "MAX_LINE", 64)
    long = '{"loss": 9, "junk": "' + "x" * 500 + '"}\n'
    f = write(tmp_path / "metrics.jsonl", '{"loss": 1}\n' + long + '{"acc": 0.5}\n')
    assert metrics.read_series(f) == ({"loss": 1, "acc": 0.5}, 2)


def test_read_series_empty_file(tmp_path: Path) -> None:
    assert metrics.read_series(write(tmp_path / "metrics.jsonl", "")) == ({}, 0)


def test_read_series_unreadable(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").mkdir()
    with pytest.raises(errors.DataError, match="cannot read metrics series") as e:
        metrics.read_series(tmp_path / "metrics.jsonl")
    assert e.value.hint


# --- stdout patterns ------------------------------------------------------------------------


LOG = """\
epoch 1 loss=0.90 acc=0.50
epoch 2 loss=0.45 acc=0.75
some unrelated line
epoch 3 loss=1e-3 acc=0.875 best=yes
\rstep 9 loss=0.0005\rstep 10 loss=0.0004
"""


@pytest.mark.parametrize(("patterns", "expected"), [
    ([r"loss=(?P<loss>\S+)"], {"loss": 0.0004}),  # last match wins, even within a line
    ([r"acc=(?P<acc>[\d.]+)", r"epoch (?P<epoch>\d+)"], {"acc": 0.875, "epoch": 3}),
    ([r"best=(?P<best>\w+)"], {"best": "yes"}),  # not a number: kept as text
    ([r"epoch (?P<e>\d+) loss=(?P<l>[\d.e-]+)"], {"e": 3, "l": 0.001}),
    ([r"(?P<never>zzz)?epoch 1"], {}),  # a group that did not take part is not a value
    ([], {}),
])
def test_scan_log(tmp_path: Path, patterns: list[str], expected: dict[str, object]) -> None:
    assert metrics.scan_log(write(tmp_path / "stdout.log", LOG), patterns) == expected


@pytest.mark.parametrize(("text", "value"), [
    ("3", 3), ("-12", -12), ("+7", 7), ("0.5", 0.5), (".5", 0.5), ("1e-3", 0.001),
    ("2.5E+2", 250.0), ("1_000", "1_000"), ("0x10", "0x10"), ("yes", "yes"), ("", ""),
    ("1.2.3", "1.2.3"),
])
def test_to_scalar(text: str, value: object) -> None:
    got = metrics.to_scalar(text)
    assert got == value and type(got) is type(value)


def test_to_scalar_nan() -> None:
    assert math.isnan(metrics.to_scalar("nan"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("pattern", "message"), [
    ("loss=(?P<loss>[", "metric pattern 'loss=\\(\\?P<loss>\\[' is not a valid regular"),
    ("loss=([0-9.]+)", "has no named group"),
])
def test_bad_pattern_is_config_error_naming_it(tmp_path: Path, pattern: str,
                                               message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message) as e:
        metrics.scan_log(write(tmp_path / "stdout.log", LOG), [pattern])
    assert e.value.hint


def test_scan_log_missing_log_yields_nothing(tmp_path: Path) -> None:
    assert metrics.scan_log(tmp_path / "nope.log", [r"(?P<x>\d)"]) == {}


# --- collect --------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    write(root / "out" / "metrics.json", '{"loss": 0.1, "val": {"acc": 0.99}}')
    write(root / ".repro" / "runs" / "r1" / "metrics.jsonl",
          '{"step": 1, "loss": 0.5, "lr": 0.01}\n{"step": 2, "loss": 0.3, "lr": 0.001}\n')
    write(root / ".repro" / "runs" / "r1" / "stdout.log",
          "loss=0.9 lr=0.5 throughput=120\n")
    return root


def test_collect_precedence_file_over_series_over_stdout(run: Path) -> None:
    run_dir = run / ".repro" / "runs" / "r1"
    section = metrics.collect(metrics_file=Path("out/metrics.json"),
                              series_file=run_dir / "metrics.jsonl",
                              log_file=run_dir / "stdout.log",
                              patterns=[r"loss=(?P<loss>\S+)", r"lr=(?P<lr>\S+)",
                                        r"throughput=(?P<throughput>\d+)"],
                              root=run)
    assert section == {
        "final": {"loss": 0.1, "lr": 0.001, "throughput": 120, "val.acc": 0.99},
        "source": "out/metrics.json",
        "series": "metrics.jsonl",
        "steps": 2,
    }


def test_collect_missing_metrics_file_is_a_warning_not_a_failure(run: Path) -> None:
    run_dir = run / ".repro" / "runs" / "r1"
    section = metrics.collect(metrics_file=run / "out" / "never.json",
                              series_file=run_dir / "metrics.jsonl", log_file=None,
                              patterns=[], root=run)
    assert section["final"] == {"loss": 0.3, "lr": 0.001}
    assert section["source"] == "out/never.json"
    assert section["warnings"] == ["metrics file out/never.json was not written"]


def test_collect_bad_metrics_file_keeps_other_sources(run: Path) -> None:
    write(run / "out" / "metrics.json", "{broken")
    section = metrics.collect(metrics_file=Path("out/metrics.json"), series_file=None,
                              log_file=run / ".repro" / "runs" / "r1" / "stdout.log",
                              patterns=[r"loss=(?P<loss>\S+)"], root=run)
    assert section["final"] == {"loss": 0.9}
    [warning] = section["warnings"]
    assert "metrics.json is not valid JSON" in warning


def test_collect_warns_about_corrupt_series_lines(run: Path) -> None:
    series = write(run / "s" / "metrics.jsonl", '{"a": 1}\ngarbage\n{"a": 2}\n{"a": 3')
    section = metrics.collect(metrics_file=None, series_file=series, log_file=None,
                              patterns=[], root=run)
    assert section["final"] == {"a": 2}
    assert section["steps"] == 2
    assert section["warnings"] == [
        "metrics.jsonl: skipped 1 line(s) that are not JSON objects (line 2)"]


def test_collect_nothing(run: Path) -> None:
    assert metrics.collect(metrics_file=None, series_file=None, log_file=None, patterns=[],
                           root=run) == {"final": {}, "source": None, "series": None, "steps": 0}


def test_collect_empty_series_is_no_series(run: Path) -> None:
    series = write(run / "s" / "metrics.jsonl", "")
    section = metrics.collect(metrics_file=None, series_file=series, log_file=None,
                              patterns=[], root=run)
    assert (section["series"], section["steps"]) == (None, 0)


def test_collect_bad_pattern_raises(run: Path) -> None:
    with pytest.raises(errors.ConfigError, match="not a valid regular expression"):
        metrics.collect(metrics_file=None, series_file=None, log_file=None,
                        patterns=["(?P<x>"], root=run)


def test_collect_metrics_file_outside_root_is_named_absolutely(run: Path,
                                                               tmp_path: Path) -> None:
    outside = write(tmp_path / "elsewhere.yaml", "score: 3\n")
    section = metrics.collect(metrics_file=outside, series_file=None, log_file=None,
                              patterns=[], root=run)
    assert section["source"] == str(outside)
    assert section["final"] == {"score": 3}


def test_collect_warns_about_a_pattern_that_never_matched(run: Path) -> None:
    section = metrics.collect(metrics_file=None, series_file=None,
                              log_file=run / ".repro" / "runs" / "r1" / "stdout.log",
                              patterns=[r"loss=(?P<loss>\S+)", r"acuracy=(?P<acc>\S+)"],
                              root=run)
    assert section["final"] == {"loss": 0.9}
    assert section["warnings"] == [
        "metric pattern 'acuracy=(?P<acc>\\\\S+)' matched nothing the command printed"]


def test_series_values_thins_long_series_keeping_both_ends(tmp_path: Path) -> None:
    lines = "".join(f'{{"step": {i}, "loss": {i}, "tag": "x"}}\n' for i in range(1000))
    series = metrics.series_values(write(tmp_path / "m.jsonl", lines + "garbage\n"), points=50)
    assert list(series) == ["loss"]  # numbers only; the step is the x axis
    values = series["loss"]
    assert len(values) == 50 and values[0] == 0.0 and values[-1] >= 990
    assert values == sorted(values)
    assert metrics.series_values(tmp_path / "missing.jsonl") == {}


def test_sparkline() -> None:
    from repro.cli import ui

    assert ui.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert ui.sparkline([2.0, 2.0]) == "▁▁"
    assert ui.sparkline([1.0, float("nan"), 3.0]) == "▁·█"
