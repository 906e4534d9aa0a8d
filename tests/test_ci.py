"""The test commands: CI and README run everything (slow tests too); a plain pytest does not."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLOW_TEST = "tests/test_hook.py::test_hook_strict_training_is_bitwise_identical"
QUICK_TEST = "tests/test_hook.py::test_hook_counts_nested_processes"


def pytest_args(text: str) -> list[str]:
    """The arguments of the one `python -m pytest` command in a shell text."""
    joined = text.replace("\\\n", " ")
    commands = re.findall(r"^(?:.* && *|\s*)\.venv/bin/python -m pytest(.*)$", joined, re.M)
    assert len(commands) == 1, commands
    return shlex.split(commands[0])


def collected(*args: str, where: str = "tests/test_hook.py") -> set[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *args, where],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return {line for line in done.stdout.splitlines() if "::" in line}


def test_ci_and_readme_give_the_same_test_command() -> None:
    ci = pytest_args((ROOT / ".ci" / "run").read_text())
    readme = pytest_args((ROOT / "README.md").read_text())
    assert ci == readme


@pytest.mark.slow  # two collections in child processes
def test_the_full_command_runs_slow_tests_and_a_plain_pytest_does_not() -> None:
    ci = pytest_args((ROOT / ".ci" / "run").read_text())
    without_workers = re.sub(r"-n \S+ ?", "", shlex.join(ci))  # collection is the same
    everything = collected(*shlex.split(without_workers))
    assert {SLOW_TEST, QUICK_TEST} <= everything
    default = collected()
    assert QUICK_TEST in default and SLOW_TEST not in default
    assert collected(where=SLOW_TEST) == {SLOW_TEST}  # named by its id, it runs


def test_docs_link_only_to_files_in_the_repository() -> None:
    """README.md and CONTRIBUTING.md (and the docs they send readers to) link only to files a
    clone has; README sends new engineers to CONTRIBUTING.md."""
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for doc in docs:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            if not path.exists() or not path.is_relative_to(ROOT):
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []
    assert "](CONTRIBUTING.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
