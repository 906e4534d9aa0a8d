"""Statistics over groups of runs: `repro compare` (is B a real change from A?).

Typer functions only; they register on `repro.cli.app.app`, which imports this module.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from repro.cli import ui
from repro.cli.app import JsonFlag, app, complete_run, local_ref, warn_future
from repro.errors import ExitCode


@app.command("compare")
def compare_cmd(
    left: Annotated[str, typer.Argument(
        metavar="A", help="group:<id>, a group's name, or a RUN.", autocompletion=complete_run)],
    right: Annotated[str, typer.Argument(
        metavar="B", help="group:<id>, a group's name, or a RUN.", autocompletion=complete_run)],
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", metavar="NAME[:higher|lower]",
        help="Compare this metric (repeatable; default: every metric both record); the "
             "direction that is better turns `different` into `better`/`worse`.")] = None,
    fail_on: Annotated[str, typer.Option(
        "--fail-on", metavar="WHAT",
        help="difference (default): exit 1 on any difference; worse: only on a regression.")
    ] = "difference",
    as_json: JsonFlag = False,
    as_markdown: Annotated[bool, typer.Option(
        "--markdown", help="GitHub-flavoured markdown, e.g. for a pull-request comment.")] = False,
) -> None:
    """Is B a real change from A, or seed noise? Exit 0 no detectable difference, 1 a
    difference (with --fail-on worse: a regression), 2 trouble.

    Per metric: mean ± sd of each side, B − A with a 95% confidence interval (Welch), P(B > A)
    with a bootstrap interval, a p-value (Welch and a permutation test must agree; Holm over
    metrics) and a verdict. A and B are groups from `repro run --repeat N`; a single run on a
    side cannot tell noise from change (a warning says so).

    Example:

        repro compare group:baseline group:new-lr --metric accuracy:higher --fail-on worse
    """
    from repro.cli import statsview
    from repro.commands import compare as comparemod
    from repro.record import store

    runs = store.open_here()
    warn_future(runs, left, right)
    report = comparemod.compare_refs(runs, local_ref(runs, left), local_ref(runs, right), metric or [],
                                     fail_on=fail_on, reporter=ui.CliReporter(),
                                     labels=(left, right))
    code = ui.will_exit(ExitCode.DIFFERENT if report.failing else ExitCode.OK)
    if as_json:
        ui.print_json(report.to_dict())
    elif as_markdown:
        sys.stdout.write(statsview.compare_markdown(report))
    else:
        statsview.compare_report(report)
    raise typer.Exit(code)
