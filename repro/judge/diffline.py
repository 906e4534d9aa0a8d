"""The one-line verdict of `repro diff` ("same recipe, different metrics"), from the report's
sections: what differs in the recipe and conditions, most important first, then the results.

Part of the diff engine (repro/judge/compare.py, which calls `verdict`); never prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from repro.judge import breadth

if TYPE_CHECKING:
    from repro.judge.compare import Change, Section

# run.* fields that are results, reported in the `command` section (how the command ended).
RESULT_FIELDS = ("status", "exit_code", "signal")

_MAX_CAUSES = 3  # the verdict names at most this many differences, then "+N more"


def verdict(sections: Mapping[str, Section], fp_a: str | None, fp_b: str | None,
             has_results: bool, params_explain_command: bool = False) -> str:
    """One line: what differs in the recipe and conditions (most important first), then results.

    "same recipe, same results" / "same recipe, different outputs" /
    "same recipe, different GPU, different metrics" / "different code (2 files), different
    metrics" / "different seed, same results" / "different code (2 files), seed, data +1 more,
    different outputs and metrics". Recipe differences come in the order code, command, data,
    seed, environment, determinism; conditions (hardware, platform) after them.
    "different params" replaces "different command" when the two command lines differ only
    in parameters (same program, same other words: `params_explain_command`).
    """
    def counted(name: str) -> list[Change]:
        return [c for c in sections[name].changes if c.counted]

    command = counted("command")
    recipe_cmd = [c for c in command if c.key not in RESULT_FIELDS]
    env = counted("environment")
    env_recipe = [c for c in env if not c.key.startswith("platform.")]
    data = counted("data")

    params = counted("params")
    causes: list[str] = []
    if code := counted("code"):
        causes.append(_code_phrase(code))
    if params:
        causes.append("params")
    if recipe_cmd and not (params and params_explain_command
                           and all(c.key == "argv" for c in recipe_cmd)):
        causes.append("command")
    if data:
        causes.append("data")
    if counted("seed"):
        causes.append("seed")
    causes += breadth.environment_causes([c.key for c in env_recipe])
    if counted("determinism"):
        causes.append("determinism settings")

    conditions: list[str] = []
    if hardware := counted("hardware"):
        if any(c.key.startswith("gpus") for c in hardware):
            conditions.append("GPU")
        elif any(c.key.startswith("cpu.") for c in hardware):
            conditions.append("CPU")
        else:
            conditions.append("hardware")
    if len(env) > len(env_recipe):
        conditions.append("platform")
    if counted("topology"):
        conditions.append("topology")

    if causes == ["data"] and len(data) == 1 and len(data[0].key) <= 40:
        causes = [f"data ({data[0].key})"]  # the one input that changed, when it is all
    differences = [*causes, *conditions]
    if len(differences) > _MAX_CAUSES:
        hidden = len(differences) - _MAX_CAUSES
        differences = differences[:_MAX_CAUSES]
        differences[-1] += f" +{hidden} more"
    parts = [f"different {', '.join(differences)}"] if differences else []
    if not causes:  # nothing in the recipe differs; the fingerprint should agree
        same = fp_a is None or fp_b is None or fp_a == fp_b
        parts.insert(0, "same recipe" if same else "same settings but different fingerprints")

    results = []
    if len(command) > len(recipe_cmd):
        results.append("exit status")
    if counted("outputs"):
        results.append("outputs")
    if counted("metrics"):
        results.append("metrics")
    if results:
        parts.append("different " + (results[0] if len(results) == 1 else
                                     ", ".join(results[:-1]) + " and " + results[-1]))
    elif any(c.within_tolerance for c in sections["metrics"].changes):
        parts.append("metrics within tolerance")
    elif has_results:
        parts.append("same results")
    elif not differences:
        parts.append("no outputs or metrics to compare")
    return ", ".join(parts)


def _code_phrase(code: list[Change]) -> str:
    files: set[str] = set()
    for c in code:
        if c.key == "commit":
            files.update(f["path"] for f in c.detail.get("files", ()))
        elif c.key == "untracked":
            for group in c.detail.get("files", {}).values():
                files.update(group)
    if files:
        return f"code ({_plural(len(files), 'file')})"
    if any(c.key == "commit" for c in code):
        return "commit"
    return "uncommitted changes"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
