"""`repro doctor`: determinism hazards of this project and machine, each with a hint.

Inspects (git, lockfile, environment variables, the interpreter, GPUs); never changes anything
and never prints.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repro import errors
from repro.capture import cmdline, environment, git, hardware, hashing
from repro.child import seeding
from repro.commands import preflight
from repro.record import config, store

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclasses.dataclass(frozen=True)
class Hazard:
    code: str  # stable identifier for scripts: "no-lockfile", "dirty-tree", ...
    message: str
    hint: str
    # "hazard": `repro run` would record a run that may not reproduce; "note": a hazard for
    # commands run without repro, which `repro run` neutralises itself (unpinned threads).
    severity: str = "hazard"

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def failing(found: Sequence[Hazard]) -> bool:
    """Whether `repro doctor` exits 1: notes alone do not fail it."""
    return any(h.severity != "note" for h in found)


def examine(cwd: Path, env: Mapping[str, str], python: str | None = None) -> list[Hazard]:
    """Every hazard found, most important first."""
    root = store.find_root(cwd)
    cfg = config.load(root)
    found: list[Hazard] = []
    try:
        state: git.TreeState | None = git.status(root)
    except errors.NotAGitRepoError as e:  # no commits yet: still report the machine's hazards
        state = None
        found.append(Hazard("no-commits", e.message, e.hint or ""))
    if state is not None and state.dirty:
        paths = ", ".join(d.path for d in state.dirt[:preflight.SHOWN])
        more = len(state.dirt) - preflight.SHOWN
        found.append(Hazard(
            "dirty-tree", f"uncommitted or untracked files: {paths}"
                          + (f" and {more} more" if more > 0 else ""),
            "commit them or add them to .gitignore; `repro run` refuses a dirty tree"))
    # A new store ignores itself (store.ignore_store); one made before that, with runs in it,
    # is dirt unless .gitignore names it.
    if (root / ".repro" / "runs").is_dir() and not _ignored(root, ".repro/runs/x/manifest.yaml"):
        found.append(Hazard(
            "repro-not-ignored", ".repro/ is not in .gitignore: recorded runs make the tree dirty",
            "run `repro init`, or add `.repro/` to .gitignore"))
    interp_path = python or sys.executable
    interp = environment.finish_inspect(environment.start_inspect(interp_path, env),
                                        interp_path, "repro")
    installed = environment.installed_packages(interp.sys_path)
    try:
        if state is not None:
            preflight.check_lock(root, state, cfg.lockfile, installed, False, hashing.hash_file)
    except errors.LockfileError as e:
        found.append(Hazard("lockfile", e.message, e.hint or ""))
    found.extend(_environment_hazards(env))
    shadowed = _shadowed_sitecustomize(interp_path, env)
    if shadowed:
        found.append(Hazard(
            "sitecustomize", f"{interp_path} loads a sitecustomize.py ({shadowed})",
            "repro's start-up hook shadows it and chain-loads it; if it seeds or patches RNGs, "
            "check the manifest's determinism.hook section after a run"))
    found.extend(_isolated_commands(root))
    gpu = _gpu_without_nvml(env)
    if gpu:
        found.append(gpu)
    return found


def _environment_hazards(env: Mapping[str, str]) -> list[Hazard]:
    found = []
    unpinned = [v for v in THREAD_VARS if not env.get(v)]
    if unpinned:
        found.append(Hazard(
            "threads-unpinned", f"{', '.join(unpinned)} not set: outside repro, the thread "
                                "count (and so float reduction order on CPU) follows the machine",
            "`repro run` pins them (--threads N); set them in scripts that run without repro",
            severity="note"))
    if env.get("NVIDIA_TF32_OVERRIDE") == "1" or env.get("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE") == "1":
        found.append(Hazard(
            "tf32-forced", "TF32 is forced on (NVIDIA_TF32_OVERRIDE=1 or "
                           "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1): matmuls lose precision and "
                           "results change across GPU models",
            "unset the variable; repro's strict level sets NVIDIA_TF32_OVERRIDE=0"))
    if env.get("PYTHONHASHSEED") == "random":
        found.append(Hazard("hashseed-random", "PYTHONHASHSEED=random: set/dict order of strings "
                                               "changes on every run",
                            "unset it; repro injects a hash seed derived from the run seed"))
    if env.get("CUBLAS_WORKSPACE_CONFIG") not in (None, ":4096:8", ":16:8"):
        found.append(Hazard(
            "cublas-workspace", f"CUBLAS_WORKSPACE_CONFIG={env['CUBLAS_WORKSPACE_CONFIG']} does "
                                "not make cuBLAS deterministic",
            "use :4096:8 or :16:8, or unset it and let repro set it"))
    fixed = _fixed_values()
    for key in sorted(fixed):
        if key in env and env[key] != fixed[key]:
            found.append(Hazard(
                "user-override", f"{key}={env[key]} is set: repro keeps your value instead of "
                                 f"its own ({fixed[key]})",
                f"unset {key} unless you mean it; the manifest records it under "
                "determinism.user_set"))
    for key in ("PL_GLOBAL_SEED",):
        if key in env:
            found.append(Hazard("user-seed", f"{key}={env[key]} is set: it overrides the run seed "
                                             "inside Lightning",
                                f"unset {key}; repro sets it from --seed"))
    return found


def _fixed_values() -> dict[str, str]:
    """What `seeding.plan` injects at the strict level that does not depend on the seed."""
    probe = seeding.plan(0, "strict", {}, threads=1, hook_out=Path("/nonexistent"),
                         hook_dir=seeding.hook_dir())
    # Those with a check of their own above are left out, so nothing is reported twice.
    varying = {"PYTHONHASHSEED", "PL_GLOBAL_SEED", "PYTHONPATH", "XLA_FLAGS", *THREAD_VARS,
               "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE"}
    return {k: v for k, v in probe.injected.items()
            if not k.startswith("REPRO_") and k not in varying}


def _ignored(root: Path, rel: str) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", rel], cwd=root,
                          capture_output=True, timeout=30)
    return done.returncode == 0


_REPRO_RUN_RE = re.compile(r"\brepro\s+run\b")


def _isolated_commands(root: Path) -> list[Hazard]:
    """`repro run ... python -I/-E/-S` in the project's Makefile, dvc.yaml or CI workflows."""
    candidates = [root / "Makefile", root / "dvc.yaml", root / "justfile",
                  *sorted((root / ".github" / "workflows").glob("*.y*ml")),
                  root / ".gitlab-ci.yml"]
    found = []
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            m = _REPRO_RUN_RE.search(line)
            flags = _defeating_flags(line[m.end():], root) if m else ""
            if flags:
                rel = path.relative_to(root).as_posix()
                found.append(Hazard(
                    "isolated-python", f"{rel}:{lineno} runs `python -{flags}` under repro: "
                                       "-I, -E and -S stop the seeding hook from loading",
                    "drop the flag; the run would be recorded with hook.ran: false"))
    return found


def _defeating_flags(command: str, root: Path) -> str:
    """Which of -I, -E, -S the Python interpreter in `command` (the words after `repro run`
    on a line of a Makefile or a CI file) is given, read as capture/cmdline reads argv."""
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:  # an unbalanced quote: a line continued on the next one
        words = command.split()
    flags = cmdline.interpreter_flags(words, root)
    return "".join(f for f in "IES" if f in flags)


def _shadowed_sitecustomize(python: str, env: Mapping[str, str]) -> str | None:
    code = ("import sys; m = sys.modules.get('sitecustomize'); "
            "print(getattr(m, '__file__', '') or '')")
    clean = {k: v for k, v in env.items() if not k.startswith("REPRO_")}
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=clean,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = done.stdout.strip()
    return path or None


def _gpu_without_nvml(env: Mapping[str, str]) -> Hazard | None:
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        return None
    info: Mapping[str, Any] = hardware.collect(env)
    if info.get("gpus"):
        return None
    return Hazard("gpu-without-nvml", "NVIDIA devices exist but NVML reports no GPU: manifests "
                                      "will not record the GPU model, driver or CUDA version",
                  "install the NVIDIA driver's NVML library (libnvidia-ml.so) and nvidia-ml-py")
