"""docs/manifest.md names every key a real run's manifest has (`repro show --json`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from repro.cli.main import main
from tests.conftest import PYTHON

DOC = Path(__file__).resolve().parent.parent / "docs" / "manifest.md"
# Mappings whose keys are the record's data (paths, package names, variables), not its format.
DATA_KEYS = {"run.tags", "determinism.env", "determinism.user_set", "determinism.hook.rank_seeds",
             "environment.packages", "environment.package_sources", "environment.env",
             "hardware.threads", "data", "outputs", "metrics.final", "params.values",
             "params.sources", "params.ambiguous", "params.truncated",
             "environment.conda.packages", "environment.native.libraries"}


def documented() -> dict[str, Any]:
    block = DOC.read_text(encoding="utf-8").split("```yaml", 1)[1].split("```", 1)[0]
    doc: dict[str, Any] = yaml.safe_load(block)
    return doc


def undocumented(written: dict[str, Any], doc: dict[str, Any], prefix: str = "") -> list[str]:
    missing = []
    for key, value in written.items():
        name = prefix + key
        if key not in doc:
            missing.append(name)
        elif (isinstance(value, dict) and isinstance(doc[key], dict)
              and name not in DATA_KEYS):
            missing += undocumented(value, doc[key], name + ".")
    return missing


@pytest.mark.slow
def test_every_key_a_run_writes_is_documented(repo: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    code = "import json, torch; json.dump({'loss': 1.0}, open('m.json', 'w'))"
    assert main(["run", "--quiet", "--metrics", "m.json", "--", PYTHON, "-c", code]) == 0
    capsys.readouterr()
    assert main(["show", "latest", "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written["hardware"]["torch"]  # the torch section is there to be checked
    assert undocumented(written, documented()) == []
