"""judge/paramdiff.py: the params section of `repro diff`, on literal sections."""

from __future__ import annotations

from typing import Any

from repro.judge import paramdiff


def section(values: dict[str, Any], sources: dict[str, str] | None = None,
            ambiguous: dict[str, list[str]] | None = None, args: list[str] | None = None,
            program: list[str] | None = None) -> dict[str, Any]:
    return {"values": values, "sources": sources or {k: "argv" for k in values},
            "ambiguous": ambiguous or {}, "program": program or ["python", "t.py"],
            "args": args or [], "files": []}


def test_changed_added_removed() -> None:
    changes, info = paramdiff.diff(section({"lr": 0.01, "bs": 8, "old": 1}),
                                   section({"lr": 0.02, "bs": 8, "new": None}))
    assert [(c.key, c.a, c.b, c.kind) for c in changes] == [
        ("lr", 0.01, 0.02, "changed"), ("new", None, None, "added"),
        ("old", 1, None, "removed")]
    assert info == []


def test_a_moved_source_is_info_only() -> None:
    changes, info = paramdiff.diff(section({"lr": 0.1}),
                                   section({"lr": 0.1}, {"lr": "file:c.yaml"}))
    assert changes == [] and [(c.key, c.noise) for c in info] == [("lr (source)", True)]


def test_ambiguous_keys_compare_by_raw_words() -> None:
    a = section({}, ambiguous={"v": ["-v", "3", "x.txt"]})
    b = section({"v": 3})
    [c] = paramdiff.diff(a, b)[0]
    assert c.a == {"ambiguous": ["-v", "3", "x.txt"]} and c.b == 3
    assert paramdiff.is_ambiguous(c.a) and not paramdiff.is_ambiguous(c.b)
    assert paramdiff.diff(a, a) == ([], [])


def test_explains_command() -> None:
    a, b = section({"lr": 1}), section({"lr": 2})
    assert paramdiff.explains_command(a, b)
    assert not paramdiff.explains_command(a, section({"lr": 2}, args=["data/"]))
    assert not paramdiff.explains_command(a, section({"lr": 2}, program=["python", "u.py"]))
    assert not paramdiff.explains_command(a, {**b, "parsed": False})
    assert not paramdiff.explains_command(a, {})


def test_a_run_without_the_section_is_not_compared() -> None:
    changes, info = paramdiff.diff({}, section({"lr": 1}))
    assert changes == [] and [(c.key, c.noise) for c in info] == [("recorded", True)]
    assert paramdiff.diff({}, {}) == ([], [])


def test_rendering() -> None:
    import io

    from rich.console import Console

    from repro.cli import diffview
    from repro.judge import compare

    changes, info = paramdiff.diff(
        section({"lr": 0.01, "old": 1, "x": 1}, ambiguous={"v": ["-v", "3", "f"]}),
        section({"lr": 0.02, "new": "a b", "x": 1}, {"lr": "argv", "new": "argv", "x": "hydra"},
                ambiguous={"v": ["-v", "4", "f"]}))
    s = compare.Section("params", tuple(changes), tuple(info))
    out = io.StringIO()
    diffview._render_section(s, Console(file=out, width=100, no_color=True))
    assert out.getvalue().splitlines() == [
        "params  changed",
        "  lr: 0.01 → 0.02",
        "  + new: a b",
        "  - old: 1",
        "  v: -v 3 f (ambiguous) → -v 4 f (ambiguous)",
        "  x (source) (not counted): argv → hydra",
    ]
    md = diffview._md_section(s)
    assert md[2:5] == ["- lr: `0.01 → 0.02`", "- new: `a b` _(added)_", "- old: `1` _(removed)_"]
    old_run = compare.Section("params", (), tuple(paramdiff.diff({}, section({}))[1]))
    out = io.StringIO()
    diffview._render_section(old_run, Console(file=out, width=100, no_color=True))
    assert "run a has no params section" in out.getvalue()
