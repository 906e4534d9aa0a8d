"""Seed and determinism level -> the child's environment (design §3). Pure: no I/O but one stat.

Owns which variables each level injects, how user-set values are kept, and where the hook lives.
It must not spawn, print, read `os.environ` (the caller passes the parent environment), or import
anything heavier than the standard library.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from repro import errors

LEVELS = ("off", "seed", "warn", "strict")
DEFAULT_LEVEL = "strict"
SEED_MAX = 2**32 - 1  # PYTHONHASHSEED and numpy's legacy global RNG both take 0..2**32-1
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
XLA_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
# Threads pinned when the caller has no better idea: see default_threads().
MAX_DEFAULT_THREADS = 8

# The hook's own variables: always set by repro, whatever the parent environment holds (a nested
# `repro run` must not inherit the outer run's seed or probe directory).
HOOK_VARS = ("REPRO_SEED", "REPRO_DETERMINISM", "REPRO_HOOK_OUT")
# Internal to the hook (nesting depth of Python processes); never passed down from the parent.
HOOK_INTERNAL_VARS = ("REPRO_HOOK_DEPTH",)
# Injected values that depend on this run's directory or on where repro is installed, not on
# the recipe: leave them out of fingerprints and out of run-to-run comparisons.
VOLATILE_VARS = frozenset({"REPRO_HOOK_OUT", "PYTHONPATH"})

# Variables set from `seed` upwards, in the order they are recorded.
_SEED_VARS = ("PYTHONHASHSEED", "PL_GLOBAL_SEED", "PL_SEED_WORKERS", *THREAD_VARS)
# Variables set at `warn` and `strict`. warn differs from strict only inside the hook (torch's
# warn_only); TensorFlow and XLA have no warn-only mode, so for them warn is strict.
_KERNEL_VARS = {
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # needed by deterministic cuBLAS (torch, TF)
    "TF_DETERMINISTIC_OPS": "1",
    "TF_CUDNN_DETERMINISTIC": "1",
    "TORCHINDUCTOR_DETERMINISTIC": "1",
    "NVIDIA_TF32_OVERRIDE": "0",  # TF32 changes matmul results; the hook also turns it off in torch
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to run the child with, and what to record about it (manifest `determinism`)."""

    env: Mapping[str, str]  # the complete child environment: parent environment + injected
    injected: Mapping[str, str]  # every variable repro set, with the value it set
    user_set: Mapping[str, str]  # variables repro would set that the user had set: kept as given
    threads: int  # the OMP/MKL/OPENBLAS count pinned in the child (`off` pins none: the given one)


def new_seed() -> int:
    """A fresh random seed in 0..2**32-1, from the OS's entropy source."""
    # os.urandom, not `secrets`: the same entropy source without ~7 ms of imports per run.
    return int.from_bytes(os.urandom(4), "little")


def default_threads(cpu_count: int | None) -> int:
    """The thread count to pin when neither the user nor a recorded run chose one.

    The usable CPU count (pass `len(os.sched_getaffinity(0))` where available), capped at 8:
    the count is recorded and pinned again on replay, where a higher one would oversubscribe a
    smaller machine, and past 8 threads BLAS gains on training workloads are small. An unknown
    count gives 1, which every machine can honour.
    """
    if cpu_count is None or cpu_count < 1:
        return 1
    return min(cpu_count, MAX_DEFAULT_THREADS)


def hook_dir() -> Path:
    """The directory holding only the hook (prepended to PYTHONPATH): its `sitecustomize.py`
    and the `_repro_hook_probe.py` that imports at exit."""
    here = Path(__file__).resolve().parent / "hook"
    for name in ("sitecustomize.py", "_repro_hook_probe.py"):
        if not (here / name).is_file():
            raise errors.HookError(
                f"the determinism hook is missing: {here / name}",
                hint="reinstall repro (pip install --force-reinstall repro)",
            )
    return here


def managed_variables() -> frozenset[str]:
    """Every variable `plan` may set or keep for the child, by name (run paths excluded).

    Replay takes only these from a manifest: a manifest is data and must not choose, say,
    LD_PRELOAD for the replayed command.
    """
    sample = plan(0, "strict", {}, threads=1, hook_out=Path("/nonexistent"),
                  hook_dir=Path("/nonexistent"), source_date_epoch=0)
    return frozenset(set(sample.injected) | set(THREAD_VARS)) - VOLATILE_VARS


def plan(
    seed: int,
    level: str,
    parent_env: Mapping[str, str],
    *,
    threads: int,
    hook_out: Path,
    hook_dir: Path,
    source_date_epoch: int | None = None,
) -> Plan:
    """The child environment for `seed` at determinism `level`.

    `off` records only: the hook's variables (REPRO_SEED, so a script may read it; nothing is
    seeded), REPRO_DETERMINISM, REPRO_HOOK_OUT and PYTHONPATH. `seed` adds the hash seed,
    Lightning's seed variables and pinned thread counts. `warn` and `strict` add the kernel
    variables (cuBLAS workspace, TF/XLA/Inductor determinism, TF32 off). From `seed` upwards,
    `source_date_epoch` (the commit's time; None: unknown) becomes SOURCE_DATE_EPOCH, the
    reproducible-builds convention that matplotlib (PDF/PS dates), zip and tar writers and
    others honour instead of the clock.

    A variable the user already set to a non-empty value is kept and listed in `user_set`, not
    overwritten; XLA_FLAGS and PYTHONPATH are extended instead (the user's value recorded too).
    If the user pinned one of OMP/MKL/OPENBLAS_NUM_THREADS to a positive integer, that count is
    used for the other two as well, so every library in the child agrees on one count.
    """
    if level not in LEVELS:
        raise errors.UsageError(
            f"unknown determinism level {level!r}",
            hint=f"use one of: {', '.join(LEVELS)}",
        )
    if not 0 <= seed <= SEED_MAX:
        raise errors.UsageError(
            f"seed {seed} is out of range",
            hint=f"use an integer from 0 to {SEED_MAX}",
        )
    if threads < 1:
        raise errors.UsageError(
            f"thread count {threads} is out of range", hint="use a positive integer"
        )

    def given(key: str) -> str | None:
        value = parent_env.get(key)
        return value if value else None  # an empty variable counts as unset (as Python does)

    injected: dict[str, str] = {}
    user_set: dict[str, str] = {}

    def put(key: str, value: str) -> None:
        user_value = given(key)
        if user_value is None:
            injected[key] = value
        else:
            user_set[key] = user_value

    injected["REPRO_SEED"] = str(seed)
    injected["REPRO_DETERMINISM"] = level
    injected["REPRO_HOOK_OUT"] = str(_absolute(hook_out))
    hook_entry = str(_absolute(hook_dir))
    user_path = given("PYTHONPATH")
    if user_path is None:
        injected["PYTHONPATH"] = hook_entry
    else:
        # Keep the user's entries exactly (an empty entry means the working directory); only
        # drop the hook directory itself, which a nested run would otherwise add twice.
        kept = [entry for entry in user_path.split(os.pathsep) if entry != hook_entry]
        injected["PYTHONPATH"] = os.pathsep.join([hook_entry, *kept])
        user_set["PYTHONPATH"] = user_path

    if level != "off":
        threads = _user_threads(parent_env) or threads
        seed_values = {
            "PYTHONHASHSEED": str(seed),
            "PL_GLOBAL_SEED": str(seed),
            "PL_SEED_WORKERS": "1",
            **{key: str(threads) for key in THREAD_VARS},
        }
        for key in _SEED_VARS:
            put(key, seed_values[key])
        if source_date_epoch is not None:
            put("SOURCE_DATE_EPOCH", str(source_date_epoch))

    if level in ("warn", "strict"):
        for key, value in _KERNEL_VARS.items():
            put(key, value)
        xla = given("XLA_FLAGS")
        if xla is None:
            injected["XLA_FLAGS"] = XLA_DETERMINISTIC_FLAG
        elif "--xla_gpu_deterministic_ops" in xla:
            user_set["XLA_FLAGS"] = xla  # the user chose a value for the flag: theirs wins
        else:
            injected["XLA_FLAGS"] = f"{xla.strip()} {XLA_DETERMINISTIC_FLAG}"
            user_set["XLA_FLAGS"] = xla

    env = {k: v for k, v in parent_env.items() if k not in HOOK_INTERNAL_VARS}
    env.update(injected)
    return Plan(env=env, injected=injected, user_set=user_set, threads=threads)


def _user_threads(parent_env: Mapping[str, str]) -> int | None:
    """The first of OMP/MKL/OPENBLAS_NUM_THREADS the user set to a positive integer, if any."""
    for key in THREAD_VARS:
        value = parent_env.get(key, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _absolute(path: Path) -> Path:
    # The child may change directory before the hook reads these paths.
    return path if path.is_absolute() else path.absolute()
