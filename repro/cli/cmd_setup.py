"""The project and machine: `repro init` (a starter repro.yaml) and `repro doctor` (hazards).

Typer functions only; they register on `repro.cli.app.app`, which imports this module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from repro.cli import ui
from repro.cli.app import JsonFlag, app
from repro.errors import ExitCode


@app.command()
def init(force: Annotated[bool, typer.Option("--force", help="Overwrite repro.yaml.")] = False,
         ) -> None:
    """Write a starter repro.yaml from what the project has; ignore .repro/ and results in git.

    Example:

        repro init && git add repro.yaml .gitignore && git commit -m "Configure repro"
    """
    from repro.commands import init as scaffold

    result = scaffold.init(Path.cwd(), force=force)
    sys.stdout.write(result.config_text)
    ui.info(f"wrote {result.config_path}")
    if result.ignored:
        ui.info(f"added {', '.join(result.ignored)} to .gitignore")


@app.command()
def doctor(as_json: JsonFlag = False) -> None:
    """Report determinism hazards of this project and machine. Exit 0 none, 1 hazards, 2 trouble.

    Notes (hazards that `repro run` neutralises itself, such as unpinned threads) are listed
    but do not make it exit 1.

    Example:

        repro doctor --json | jq -r '.hazards[].code'
    """
    from repro.commands import doctor as doctor_mod

    hazards = doctor_mod.examine(Path.cwd(), dict(os.environ))
    code = ui.will_exit(ExitCode.DIFFERENT if doctor_mod.failing(hazards) else ExitCode.OK)
    if as_json:
        ui.print_json({"schema": "repro/doctor/v1", "hazards": [h.to_dict() for h in hazards]})
    else:
        ui.hazards(hazards)
    raise typer.Exit(code)
