"""Shipped shell completions are current, and RUN arguments complete to run ids.

Regenerate the files with:  python tests/test_completions.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = {"bash": "repro.bash", "zsh": "_repro", "fish": "repro.fish"}


def generate(shell: str) -> str:
    env = {**os.environ, "_REPRO_COMPLETE": f"source_{shell}"}
    done = subprocess.run([sys.executable, "-m", "repro"], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout


@pytest.mark.parametrize("shell", sorted(FILES))
def test_completion_files_are_current(shell: str) -> None:
    shipped = (ROOT / "completions" / FILES[shell]).read_text()
    assert shipped == generate(shell), "stale: run `python tests/test_completions.py`"


def test_run_arguments_complete_to_run_ids(repo: Path) -> None:
    for run_id in ("20261123T142501.000001Z-aaaa", "20261124T000000.000000Z-bbbb"):
        (repo / ".repro" / "runs" / run_id).mkdir(parents=True)
    env = {**os.environ, "_REPRO_COMPLETE": "complete_bash", "COMP_WORDS": "repro show 2026",
           "COMP_CWORD": "2"}
    done = subprocess.run([sys.executable, "-m", "repro"], env=env, capture_output=True,
                          text=True, timeout=60, cwd=repo)
    assert done.stdout.split() == ["20261124T000000.000000Z-bbbb", "20261123T142501.000001Z-aaaa"]


if __name__ == "__main__":
    for shell, name in FILES.items():
        (ROOT / "completions" / name).write_text(generate(shell))
        print(f"wrote completions/{name}")
