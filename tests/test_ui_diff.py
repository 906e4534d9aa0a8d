"""ui.diff: the terminal rendering and the markdown of a DiffReport."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
from rich.console import Console

from repro import errors
from repro.cli import diffview as ui_diff
from repro.judge import compare
from tests.test_compare import COMMIT_B, LISTING, diff_runs, run


def rendered(report: compare.DiffReport, **kwargs: Any) -> str:
    out = io.StringIO()
    console = Console(file=out, width=100, no_color=True)
    ui_diff.render(report, console, **kwargs)
    return out.getvalue()


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def row(text: str, *cells: str) -> bool:
    """Some line holds these cells, in this order."""
    for line in text.splitlines():
        rest = line
        for cell in cells:
            i = rest.find(cell)
            if i < 0:
                break
            rest = rest[i + len(cell):]
        else:
            return True
    return False


SAME = diff_runs(run(), run(run={"run_id": "20261124T090000.000001Z-9c1d",
                                          "host": "gpu-box-4"}))


def busy_report() -> compare.DiffReport:
    listing_b = {**{k: v for k, v in LISTING.items() if k != "dog/1.png"},
                 "cat/2.png": ("blake3:99", 1),
                 **{f"new/{i:02d}.png": ("blake3:n", 1) for i in range(15)}}
    b = run(
        run={"run_id": "B-run", "duration_s": 12.5},
        command={"argv": ["python", "train.py", "--lr", "0.02", "--tag", "[bold]x[/bold]"]},
        code={"commit": COMMIT_B},
        environment={"packages": {"numpy": "2.4.7", "scipy": "1.16.0", "torch": None}},
        data={"data/images": {"hash": "blake3:" + "d" * 64, "listing": "data/1.json"}},
        metrics={"final": {"loss": 0.01231, "accuracy": 0.5, "note": "diverged"}},
    )
    return diff_runs(run(), b, code_files=[("M", "train.py"), ("A", "model.py")],
                             listings_a={"data/0.json": LISTING},
                             listings_b={"data/1.json": listing_b},
                             tolerance=compare.Tolerance(rtol=1e-2))


def test_render_same_runs_verdict_only() -> None:
    text = rendered(SAME)
    assert lines(text)[0] == "same recipe, same results"
    assert row(text, "id", "20261123T142501.123456Z-3f2a", "20261124T090000.000001Z-9c1d")
    # Per-run noise (times, host, pid) only with --all: every two runs differ there.
    assert len(lines(text)) == 4 and "host" not in text and "pid" not in text
    assert row(rendered(SAME, show_all=True), "host", "gpu-box-3", "gpu-box-4")
    assert "host" not in ui_diff.markdown(SAME)
    assert "host" in ui_diff.markdown(SAME, show_all=True)
    for name in compare.SECTIONS:
        assert f"{name}  " not in text


def test_render_show_all_lists_every_section() -> None:
    text = rendered(SAME, show_all=True)
    for name in compare.SECTIONS:
        assert any(line.startswith(f"{name}  same") for line in lines(text)), name
    assert row(text, "host (not counted)", "gpu-box-3", "gpu-box-4")


def test_render_shows_only_changed_sections() -> None:
    text = rendered(busy_report())
    shown = [n for n in compare.SECTIONS if any(line.startswith(f"{n}  ") for line in lines(text))]
    assert shown == ["command", "code", "environment", "data", "metrics"]


def test_render_verdict_line_is_the_reports() -> None:
    report = busy_report()
    assert report.verdict == "different code (2 files), command, data +1 more, different metrics"
    assert lines(rendered(report))[0] == report.verdict


def test_render_code_lists_files_between_commits() -> None:
    text = rendered(busy_report())
    assert row(text, "commit", "9fceb02d0ae5", "1a2b3c4d5e6f")
    assert "commit: 2 files changed between commits" in text
    assert "    M train.py" in lines(text)
    assert "    A model.py" in lines(text)


def test_render_packages_table() -> None:
    text = rendered(busy_report())
    assert row(text, "package", "a", "b")
    assert row(text, "numpy", "2.4.6", "2.4.7")
    assert row(text, "scipy", "—", "1.16.0")
    assert row(text, "torch", "2.13.0", "—")


def test_render_directory_files_with_and_n_more() -> None:
    text = rendered(busy_report())
    assert "data/images: 15 added, 1 removed, 1 modified" in text
    assert "    + new/00.png" in lines(text)
    assert "    - dog/1.png" in lines(text)
    assert "    ~ cat/2.png" in lines(text)
    assert "    … and 12 more added" in lines(text)  # 3 groups: 3 paths each
    assert "new/03.png" not in text
    assert row(text, "data/images", "dir  blake3:d1", "dir  blake3:dddddddddddd…")
    assert row(text, "data/images.listing (not counted)", "data/0.json", "data/1.json")


def test_render_metrics_delta_and_tolerance() -> None:
    text = rendered(busy_report())
    assert row(text, "metric", "a", "b", "delta", "rel delta")
    assert row(text, "loss", "0.0123", "0.01231", "+1e-05", "+0.081%", "≈ within tolerance")
    assert row(text, "accuracy", "0.98", "0.5", "-0.48", "-48.980%")
    assert row(text, "note", "—", "diverged", "—", "—")
    assert not row(text, "accuracy", "within tolerance")


def test_render_escapes_markup_in_values() -> None:
    text = rendered(busy_report())
    assert "'[bold]x[/bold]'" in text


def test_render_sections_filter() -> None:
    text = rendered(busy_report(), sections=["metrics"])
    assert any(line.startswith("metrics  changed") for line in lines(text))
    assert not any(line.startswith("code  ") for line in lines(text))
    with pytest.raises(errors.UsageError):
        rendered(busy_report(), sections=["metric"])
    # A section asked for by name is shown when it is the same too (before: nothing at all).
    text = rendered(busy_report(), sections=["seed", "metrics"])
    assert any(line.startswith("seed  same") for line in lines(text))
    assert "#### seed: same" in ui_diff.markdown(busy_report(), sections=["seed"])


def test_render_long_values_keep_the_difference_visible() -> None:
    long_a = ["python", "train.py", *[f"--opt{i}=v" for i in range(30)], "--lr", "0.01"]
    long_b = [*long_a[:-1], "0.02"]
    text = rendered(diff_runs(run(command={"argv": long_a}),
                                      run(command={"argv": long_b})))
    assert "…" in text
    assert "--lr 0.01" in text and "--lr 0.02" in text
    assert "--opt0=v" not in text


def test_render_no_colour_when_console_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    def colour_codes(console: Console) -> bool:
        ui_diff.render(busy_report(), console)
        out = console.file.getvalue()  # type: ignore[attr-defined]
        return any(code in out for code in ("\x1b[31m", "\x1b[32m", "\x1b[1;31m", "\x1b[1;32m"))

    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_codes(Console(file=io.StringIO(), width=100, force_terminal=True))
    monkeypatch.delenv("NO_COLOR")
    assert colour_codes(Console(file=io.StringIO(), width=100, force_terminal=True,
                                color_system="standard"))


def test_render_many_packages_are_capped() -> None:
    b = run(environment={"packages": {f"pkg-{i:03d}": "1" for i in range(60)}})
    text = rendered(diff_runs(run(), b))
    assert f"… and {60 - ui_diff.PACKAGE_LIMIT} more packages" in text
    assert "pkg-039" in text and "pkg-040" not in text


@pytest.mark.parametrize(("value", "expected"), [
    (None, "—"),
    (True, "true"),
    (0.1 + 0.2, "0.30000000000000004"),  # every digit: 0.3 and this must not print alike
    (math.nan, "nan"),
    ("blake3:" + "ab" * 32, "blake3:abababababab…"),
    ("9fceb02d0ae598e95dc970b74767f19372d61af8", "9fceb02d0ae5"),
    ({"kind": "file", "hash": "blake3:aa", "size": 2048}, "blake3:aa  2.0 KiB"),
    ({"kind": "dir", "hash": "blake3:aa", "size": 10, "files": 1200},
     "dir  blake3:aa  1,200 files  10 B"),
    ({"kind": "dir", "hash": "blake3:aa", "size": 10, "files": 1}, "dir  blake3:aa  1 file  10 B"),
    ({"kind": "symlink", "target": "../x"}, "symlink → ../x"),
    ({"kind": "missing"}, "missing"),
    ([], "(none)"),
    (["random", "torch"], "random, torch"),
])
def test_format_value(value: Any, expected: str) -> None:
    assert ui_diff.format_value(value) == expected


def test_format_value_quotes_argv() -> None:
    assert ui_diff.format_value(["python", "a b.py"], "argv") == "python 'a b.py'"


# --------------------------------------------------------------------------------- markdown


def test_markdown_same() -> None:
    md = ui_diff.markdown(SAME)
    assert md.startswith("**repro diff**: same recipe, same results\n")
    assert "| run | a | b |" in md
    assert "| host _(not counted)_ | `gpu-box-3` | `gpu-box-4` |" in ui_diff.markdown(
        SAME, show_all=True)
    assert "####" not in md


def test_markdown_sections() -> None:
    md = ui_diff.markdown(busy_report())
    assert "#### code: changed" in md
    assert "| commit | `9fceb02d0ae5` | `1a2b3c4d5e6f` |" in md
    assert "<details><summary>commit: 2 files changed between commits</summary>" in md
    assert "- `M train.py`" in md
    assert "| package | a | b |" in md
    assert "| scipy | — | `1.16.0` |" in md
    assert "<details><summary>data/images: 15 added, 1 removed, 1 modified</summary>" in md
    assert "- … and 12 more added" in md
    assert "| loss | `0.0123` | `0.01231` | +1e-05 | +0.081% | ≈ within tolerance |" in md
    assert "#### seed" not in md


def test_markdown_show_all_and_filter() -> None:
    md = ui_diff.markdown(busy_report(), show_all=True, sections=["seed", "metrics"])
    assert "#### seed: same" in md
    assert "#### metrics: changed" in md
    assert "#### code" not in md


def test_markdown_escapes_table_breakers() -> None:
    b = run(command={"argv": ["python", "-c", "print('a|b')", "`x`"]},
            metrics={"final": {"val|loss*": 1.0}})
    md = ui_diff.markdown(diff_runs(run(metrics={"final": {"val|loss*": 2.0}}), b))
    argv_row = next(line for line in md.splitlines() if line.startswith("| argv |"))
    assert "a\\|b" in argv_row
    assert argv_row.count(" | ") == 2  # three cells, no stray column
    assert "``" in argv_row  # a longer fence around a value holding backticks
    assert "| val\\|loss\\* |" in md


def test_markdown_every_table_row_has_its_header_width() -> None:
    md = ui_diff.markdown(busy_report(), show_all=True)
    width = 0
    for line in md.splitlines():
        if not line.startswith("|"):
            width = 0
            continue
        cells = line.replace("\\|", "").count("|") - 1
        width = width or cells
        assert cells == width, line



def test_counts_take_the_right_number() -> None:
    from repro.cli import ui

    assert [ui.plural(n, "new run") for n in (0, 1, 2)] == ["0 new runs", "1 new run",
                                                             "2 new runs"]
    from repro.record import manifest

    entry = manifest.FileEntry(kind="dir", hash="blake3:aa", files=1, size=3)
    assert ui._entry_text(entry) == (
        "blake3:aa (1 file, 3 B)")


def test_relative_change_from_near_zero_is_not_a_percentage() -> None:
    a = run(metrics={"final": {"grad_norm": 1e-9, "loss": 0.5}})
    b = run(run={"run_id": "B-run"}, metrics={"final": {"grad_norm": 0.6119, "loss": 0.25}})
    report = diff_runs(a, b)
    text = rendered(report)
    assert row(text, "grad_norm", "1e-09", "0.6119", "+0.6119", "n/a")
    assert row(text, "loss", "0.5", "0.25", "-0.25", "-50.000%")
    assert "61189999" not in text and "n/a" in ui_diff.markdown(report)


def test_argv_cut_shows_the_difference_past_a_new_rendezvous() -> None:
    """Two torchrun jobs differ in --rdzv-id and port (each job has its own) and in the
    script's epochs: the cut argv cell shows the epochs, not only the job id."""
    from repro.cli.diffview import pair_text

    def job(rdzv: str, port: str, epochs: str) -> list[str]:
        return ["python", "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", "0",
                "--nproc-per-node", "2", "--rdzv-id", rdzv, "--master-addr", "127.0.0.1",
                "--master-port", port, "multinode.py", epochs, "1"]

    ta, tb = pair_text(job("job5", "29625", "2"), job("job6", "29626", "20"), "argv")
    assert ta.endswith("multinode.py 2 1") and tb.endswith("multinode.py 20 1")
    # only the rendezvous differs: the usual window at the first difference
    ta, tb = pair_text(job("job5", "29625", "2"), job("job6", "29626", "2"), "argv")
    assert "job5" in ta and "job6" in tb


def test_runs_marks_share_one_parenthesis(capsys: pytest.CaptureFixture[str]) -> None:
    # before: "succeeded (pulled) (2 nodes)"
    from repro.cli import runsview

    row = {"run_id": "20261201T120000.000000Z-aaaa", "status": "succeeded", "duration_s": 1.0,
           "commit": "9fceb02d0ae5", "seed": 1, "command": ["python", "t.py"], "pulled": True,
           "distributed": {"job": "j", "nnodes": 2, "present": 2, "complete": True}}
    runsview.runs_table([row])
    assert "succeeded (pulled, 2 nodes)" in capsys.readouterr().out
    runsview.runs_table([{**row, "pulled": False}])
    assert "succeeded (2 nodes)" in capsys.readouterr().out


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (812, "812 B"), (3481, "3.4 KiB"),
                                         (48 << 20, "48.0 MiB"), (5 << 40, "5.0 TiB")])
def test_sizes_read_alike_in_every_view(n: int, text: str) -> None:
    # one formatter for diff, show and push/pull (push/pull said "50.3 MB", the others MiB)
    from repro.cli import ui

    assert ui.size_text(n) == text and ui_diff.size_text is ui.size_text
