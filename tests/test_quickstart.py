"""The README's Quickstart, run verbatim in a fresh repository, step by step.

Each `$ ` line of the Quickstart's console block runs in bash with this interpreter's `repro`
and `python` first on PATH; each must succeed (exit 0, or the exit code the command documents:
`diff` 1 for different runs) and, where the README comments on a step with a quoted text, print
that text.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git

README = Path(__file__).resolve().parent.parent / "README.md"
BIN = str(Path(sys.executable).parent)

TRAIN = """\
import argparse
import json
import os

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
args = parser.parse_args()
model = torch.nn.Linear(8, 1)  # unseeded: repro seeds it
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
x, y = torch.randn(64, 8), torch.randn(64, 1)
for step in range(20):
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
os.makedirs("checkpoints", exist_ok=True)
torch.save(model.state_dict(), "checkpoints/model.pt")
with open("metrics.json", "w") as f:
    json.dump({"loss": loss.item()}, f)
print(f"loss={loss.item():.4f}")
"""

# Exit codes other than 0 that a step documents (README, "Exit codes").
EXPECTED_CODE = {"diff": 1}


def quickstart_steps() -> list[tuple[str, str | None]]:
    """(command, the quoted text of its comment or None) for each `$ ` line of the Quickstart."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    block = section.split("```console", 1)[1].split("```", 1)[0]
    steps = []
    for line in block.splitlines():
        if not line.startswith("$ "):
            continue
        command, _, comment = line[2:].partition("  #")
        quoted = re.search(r'"([^"]+)"', comment)
        steps.append((command.strip(), quoted.group(1) if quoted else None))
    return steps


def test_quickstart_steps_are_found() -> None:
    commands = [c for c, _ in quickstart_steps()]
    assert commands[0] == "repro init" and any(c.startswith("repro verify") for c in commands)


@pytest.mark.slow
def test_readme_quickstart_runs_verbatim(repo: Path) -> None:
    pytest.importorskip("torch")
    (repo / "train.py").write_text(TRAIN)
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "train")
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
    for command, expected in quickstart_steps():
        done = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=600)
        words = command.split()
        code = EXPECTED_CODE.get(words[1], 0) if words[0] == "repro" else 0
        assert done.returncode == code, (
            f"step `{command}` exited {done.returncode}\nstdout:\n{done.stdout}\n"
            f"stderr:\n{done.stderr}")
        if words[:2] == ["repro", "run"]:  # the run confirms what it recorded
            assert re.search(r"^repro: run \S+ succeeded in ", done.stderr, re.M), done.stderr
        if expected is not None:
            assert expected in done.stdout, f"step `{command}`: {expected!r} not in\n{done.stdout}"
