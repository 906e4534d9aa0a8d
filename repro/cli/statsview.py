"""Rendering of the statistical level: `repro compare`, `verify --level statistical`, groups.

Box-and-strip plots of each metric's two samples and mean curves with a band, drawn with rich
on the terminal (no plotting library); markdown for pull-request comments.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from repro.cli.ui import escape, out_console

PLOT_WIDTH = 48
CURVE_HEIGHT = 8
_VERDICT_STYLE = {"better": "bold green", "worse": "bold red", "different": "bold yellow",
                  "no-detectable-difference": "bold", "statistically-reproduced": "bold green",
                  "not-reproduced": "bold red", "inconclusive": "bold yellow"}
_SIDE_STYLE = ("cyan", "magenta")
_CURVE_CHARS = (("━", "░"), ("─", "▒"))  # (mean, band) per side: readable without colour too


def num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"


def pvalue(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


# --- groups in `repro runs` -------------------------------------------------------------------

def collapse_groups(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per group (where its newest member was), summarising its members."""
    out: list[dict[str, Any]] = []
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        g = r.get("group")
        if isinstance(g, Mapping):  # verify's fresh runs too: one row, marked (verify)
            gid = str(g.get("id"))
            if gid not in groups:
                groups[gid] = []
                out.append({"__group__": gid})
            groups[gid].append(r)
        else:
            out.append(dict(r))
    return [group_row(groups[r["__group__"]]) if "__group__" in r else r for r in out]


def group_row(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    first = members[0]
    g = first["group"]
    size = int(g.get("size") or len(members))
    ok = sum(1 for m in members if m.get("status") == "succeeded")
    bad = [m for m in members if m.get("status") in ("failed", "interrupted", "abandoned")]
    running = any(m.get("status") == "running" for m in members)
    if bad:
        stopped = all(m.get("status") == "interrupted" for m in bad)
        status = f"{'interrupted' if stopped else 'failed'} {len(bad)}/{size}"
    elif running:
        status = f"running {ok}/{size}"
    elif ok < size:
        status = f"partial {ok}/{size}"
    else:
        status = f"succeeded ×{size}"
    values: dict[str, list[float]] = {}
    for m in members:
        if m.get("status") != "succeeded":
            continue
        for k, v in (m.get("metrics") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                values.setdefault(str(k), []).append(float(v))
    # over fewer runs than succeeded (a NaN loss in one): say over how many
    metrics = {k: _mean_sd(v) + (f" ({len(v)}/{ok})" if len(v) < ok else "")
               for k, v in values.items()}
    return {"run_id": f"group:{g.get('id')}", "status": status,
            "duration_s": _span(members),
            "command": first.get("command") or [], "seed": f"g{g.get('seed')}",
            "commit": first.get("commit"), "dirty": first.get("dirty"), "metrics": metrics,
            "params": dict(first.get("params") or {}),  # one recipe: the members' parameters
            "name": g.get("name"), "is_group": True, "started_by": first.get("started_by"),
            "pulled": all(m.get("pulled") for m in members)}


def _span(members: Sequence[Mapping[str, Any]]) -> float:
    """The group's wall time: from its first member's start to its last member's end (members
    run side by side with --jobs); the sum of the durations where a start time is missing."""
    import datetime as dt

    spans = []
    for m in members:
        try:
            start = dt.datetime.fromisoformat(str(m.get("started_at")).replace("Z", "+00:00"))
        except ValueError:
            return sum(float(x.get("duration_s") or 0) for x in members)
        spans.append((start, start + dt.timedelta(seconds=float(m.get("duration_s") or 0))))
    if not spans:
        return 0.0
    return (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()


def _mean_sd(xs: Sequence[float]) -> str:
    from repro.judge import stats

    if len(xs) == 1:
        return num(xs[0])
    return f"{num(stats.mean(xs))}±{num(stats.sd(xs), 2)}"


# --- compare ----------------------------------------------------------------------------------

def metric_notes(m: Any) -> list[tuple[str, str]]:
    """(metric, note): what a metric's row cannot say, whatever the verdict: the effect these
    runs could have detected, why the test is what it is (no run-to-run variation, one run on
    a side), why it differs where that is not the test (a run that diverged)."""
    out = []
    if m.verdict == "no-detectable-difference" and m.detectable_effect:
        out.append((m.name, f"{m.n_a} vs {m.n_b} runs could detect a difference of about "
                            f"{num(m.detectable_effect, 3)} (80% power)"))
    if m.note:
        out.append((m.name, m.note))
    return out


def compare_report(rep: Any, console: Console | None = None) -> None:
    """The verdict per metric, the numbers, and a picture of each metric's two samples."""
    c = console or out_console()
    result = rep.result
    style = _VERDICT_STYLE.get(result.verdict, "bold")
    c.print(f"[{style}]{escape(result.verdict)}[/]  "
            f"A = {escape(_side_name(rep.a))}  B = {escape(_side_name(rep.b))}")
    t = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("metric", "A mean ± sd", "B mean ± sd", "B − A (95% CI)", "P(B>A)", "p (Holm)",
                "verdict"):
        t.add_column(col, overflow="fold")
    for m in result.metrics:
        ci = f" [{num(m.ci_low, 3)}, {num(m.ci_high, 3)}]" if m.ci_low is not None else ""
        vs = _VERDICT_STYLE.get(m.verdict, "")
        t.add_row(escape(m.name + (f" ({m.direction})" if m.direction else "")),
                  f"{num(m.mean_a)} ± {num(m.sd_a, 2)} (n={m.n_a})",
                  f"{num(m.mean_b)} ± {num(m.sd_b, 2)} (n={m.n_b})",
                  f"{num(m.difference)}{ci}",
                  f"{m.prob_b_greater:.2f}" + (f" [{m.prob_ci_low:.2f}, {m.prob_ci_high:.2f}]"
                                               if m.prob_ci_low is not None
                                               and m.prob_ci_high is not None else ""),
                  pvalue(m.p_adjusted),
                  f"[{vs}]{escape(m.verdict)}[/]" if vs else escape(m.verdict))
    c.print(t)
    for m in result.metrics:
        for name, text in metric_notes(m):
            c.print(f"[dim]{escape(name)}: {escape(text)}[/]")
    c.print()
    for m in result.metrics:
        c.print(f"[bold]{escape(m.name)}[/]")
        for line in strip_plot(rep.a.values[m.name], rep.b.values[m.name]):
            c.print(line)
        curves_a, curves_b = rep.a.series.get(m.name), rep.b.series.get(m.name)
        if curves_a and curves_b:
            for line in band_plot(curves_a, curves_b):
                c.print(line)
    for w in result.warnings:
        from repro.cli.ui import warn

        warn(w)


def _side_name(side: Any) -> str:
    n = len(side.run_ids)
    what = f"group:{side.group}" if side.group else side.ref
    if what != side.ref:
        what = f"{side.ref} ({what})"
    return f"{what}, {n} run{'s' if n != 1 else ''}"


def _quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    from repro.judge import stats

    return stats.percentile(xs, 25), stats.percentile(xs, 50), stats.percentile(xs, 75)


def strip_plot(a: Sequence[float], b: Sequence[float], width: int = PLOT_WIDTH) -> list[str]:
    """Per side: a box (quartiles, median ┃, whiskers to min and max) with each run a dot
    under it, on one shared axis."""
    lo, hi = min(*a, *b), max(*a, *b)
    span = hi - lo or 1.0

    def col(x: float) -> int:
        return min(width - 1, max(0, round((x - lo) / span * (width - 1))))

    lines = []
    for label, xs, style in (("A", a, _SIDE_STYLE[0]), ("B", b, _SIDE_STYLE[1])):
        box = [" "] * width
        q1, med, q3 = _quartiles(xs)
        for i in range(col(min(xs)), col(max(xs)) + 1):
            box[i] = "─"
        for i in range(col(q1), col(q3) + 1):
            box[i] = "█"
        box[col(med)] = "┃"
        dots = [" "] * width
        for x in xs:
            i = col(x)
            dots[i] = "●" if dots[i] == " " else "◉"
        lines.append(f"  [{style}]{label} {''.join(box)}[/]")
        lines.append(f"  [{style}]  {''.join(dots)}[/]")
    left, right = num(lo), num(hi)
    lines.append("  [dim]  " + left + " " * max(1, width - len(left) - len(right)) + right + "[/]")
    return lines


def band_plot(curves_a: Sequence[Sequence[float]], curves_b: Sequence[Sequence[float]],
              width: int = PLOT_WIDTH, height: int = CURVE_HEIGHT) -> list[str]:
    """Mean curve per side (A ─ cyan, B ─ magenta) with a band of ± one sd across runs."""
    sides = []
    for curves in (curves_a, curves_b):
        # A run whose loss went to nan or inf (it diverged) is drawn up to that step.
        curves = [list(itertools.takewhile(math.isfinite, c)) for c in curves]
        steps = min(len(c) for c in curves)
        if steps < 2:  # one logged value per run is the final value: the plot above has it
            return []
        mean, low, high = [], [], []
        for i in range(steps):
            col = [c[i] for c in curves]
            mu = sum(col) / len(col)
            sd = math.sqrt(sum((x - mu) ** 2 for x in col) / (len(col) - 1)) if len(col) > 1 else 0
            mean.append(mu)
            low.append(mu - sd)
            high.append(mu + sd)
        sides.append((_resample(mean, width), _resample(low, width), _resample(high, width)))
    lo = min(min(s[1]) for s in sides)
    hi = max(max(s[2]) for s in sides)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # overflowed: nothing to draw
        return []
    span = hi - lo or 1.0

    def row(y: float) -> int:
        return min(height - 1, max(0, round((hi - y) / span * (height - 1))))

    grid = [[(" ", "")] * width for _ in range(height)]
    for (_, low, high), style, (_, band) in zip(sides, _SIDE_STYLE, _CURVE_CHARS, strict=True):
        for x in range(width):
            for r in range(row(high[x]), row(low[x]) + 1):
                if grid[r][x][0] == " ":
                    grid[r][x] = (band, style)
    for (mean, _, _), style, (line, _) in zip(sides, _SIDE_STYLE, _CURVE_CHARS, strict=True):
        for x in range(width):
            grid[row(mean[x])][x] = (line, style)
    lines = ["  [dim]mean curve per group, band ± 1 sd over its runs: A ━ ░ (cyan), "
             "B ─ ▒ (magenta)[/]"]
    for r, cells in enumerate(grid):
        label = num(hi) if r == 0 else num(lo) if r == height - 1 else ""
        text = "".join(f"[{st}]{ch}[/]" if st else ch for ch, st in cells)
        lines.append(f"  {label:>9} {text}")
    return lines


def _resample(values: Sequence[float], width: int) -> list[float]:
    if len(values) == 1:
        return [values[0]] * width
    return [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]


def compare_markdown(rep: Any) -> str:
    result = rep.result
    lines = [f"**repro compare**: **{result.verdict}** — A = `{_side_name(rep.a)}`, "
             f"B = `{_side_name(rep.b)}`", "",
             "| metric | A mean ± sd | B mean ± sd | B − A (95% CI) | P(B>A) | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|"]
    for m in result.metrics:
        ci = f" [{num(m.ci_low, 3)}, {num(m.ci_high, 3)}]" if m.ci_low is not None else ""
        way = f" ({m.direction})" if m.direction else ""
        lines.append(f"| `{m.name}`{way} | {num(m.mean_a)} ± {num(m.sd_a, 2)} (n={m.n_a}) | "
                     f"{num(m.mean_b)} ± {num(m.sd_b, 2)} (n={m.n_b}) | {num(m.difference)}{ci} | "
                     f"{m.prob_b_greater:.2f} | {pvalue(m.p_adjusted)} | {m.verdict} |")
    for m in result.metrics:
        for name, text in metric_notes(m):
            lines.append(f"\n`{name}`: {text}.")
    for w in (*getattr(rep, "warnings", ()), *result.warnings):
        lines.append(f"\n> warning: {w}")
    return "\n".join(lines) + "\n"


# --- verify --level statistical ---------------------------------------------------------------

def verify_report(rep: Any) -> None:
    from repro.commands import statverify

    c = out_console()
    style = _VERDICT_STYLE.get(rep.verdict, "bold")
    c.print(f"[{style}]{escape(rep.verdict)}[/]  {escape(rep.run)}  "
            f"({len(rep.runs)} fresh-seed runs, group:{escape(rep.group)})")
    t = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("verdict", "metric", "detail"):
        t.add_column(col, overflow="fold")
    for check in rep.checks:
        st = _VERDICT_STYLE.get(check.verdict, "")
        t.add_row(f"[{st}]{escape(check.verdict)}[/]", escape(check.name),
                  escape(statverify.detail(check)))
    c.print(t)
    if rep.verdict == "inconclusive" and rep.verification.runs_needed:
        c.print(f"about {rep.verification.runs_needed} fresh runs would decide: "
                f"repro verify {escape(rep.run)} --level statistical "
                f"--runs {rep.verification.runs_needed}")
