"""seeding: seed + level -> child environment. Pure: literal tables in, literal tables out."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro import errors
from repro.child import seeding
from repro.record import manifest

HOOK_OUT = Path("/runs/r1/hook")
HOOK_DIR = Path("/opt/repro/hook")

HOOK_VARS = {
    "REPRO_SEED": "7",
    "REPRO_HOOK_OUT": "/runs/r1/hook",
    "PYTHONPATH": "/opt/repro/hook",
}
SEED_VARS = {
    "PYTHONHASHSEED": "7",
    "PL_GLOBAL_SEED": "7",
    "PL_SEED_WORKERS": "1",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
    "OPENBLAS_NUM_THREADS": "2",
}
KERNEL_VARS = {
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    "TF_DETERMINISTIC_OPS": "1",
    "TF_CUDNN_DETERMINISTIC": "1",
    "TORCHINDUCTOR_DETERMINISTIC": "1",
    "NVIDIA_TF32_OVERRIDE": "0",
    "XLA_FLAGS": "--xla_gpu_deterministic_ops=true",
}


def make_plan(level: str = "strict", parent: dict[str, str] | None = None, *, seed: int = 7,
              threads: int = 2) -> seeding.Plan:
    return seeding.plan(seed, level, parent or {}, threads=threads, hook_out=HOOK_OUT,
                        hook_dir=HOOK_DIR)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("off", {**HOOK_VARS, "REPRO_DETERMINISM": "off"}),
        ("seed", {**HOOK_VARS, "REPRO_DETERMINISM": "seed", **SEED_VARS}),
        ("warn", {**HOOK_VARS, "REPRO_DETERMINISM": "warn", **SEED_VARS, **KERNEL_VARS}),
        ("strict", {**HOOK_VARS, "REPRO_DETERMINISM": "strict", **SEED_VARS, **KERNEL_VARS}),
    ],
)
def test_plan_injects_per_level(level: str, expected: dict[str, str]) -> None:
    plan = make_plan(level, {"HOME": "/home/u", "PATH": "/bin"})
    assert plan.injected == expected
    assert plan.user_set == {}
    assert plan.env == {"HOME": "/home/u", "PATH": "/bin", **expected}
    assert plan.threads == 2


@pytest.mark.parametrize(
    ("parent", "injected_changes", "user_set", "threads"),
    [
        # A value the user set is kept and recorded, not overwritten.
        ({"PYTHONHASHSEED": "0"}, {"PYTHONHASHSEED": None}, {"PYTHONHASHSEED": "0"}, 2),
        ({"CUBLAS_WORKSPACE_CONFIG": ":16:8"}, {"CUBLAS_WORKSPACE_CONFIG": None},
         {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}, 2),
        # The user's thread count wins, and the other libraries follow it.
        ({"OMP_NUM_THREADS": "4"},
         {"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4"},
         {"OMP_NUM_THREADS": "4"}, 4),
        ({"MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"},
         {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": None, "OPENBLAS_NUM_THREADS": None},
         {"MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "1"}, 3),
        # Not a count (OpenMP's nested list syntax): kept, but the pinned count stays.
        ({"OMP_NUM_THREADS": "4,2"}, {"OMP_NUM_THREADS": None}, {"OMP_NUM_THREADS": "4,2"}, 2),
        # An empty variable is unset, for Python and for the libraries alike.
        ({"PYTHONHASHSEED": "", "OMP_NUM_THREADS": ""}, {}, {}, 2),
        # XLA_FLAGS and PYTHONPATH are extended, and the user's value recorded.
        ({"XLA_FLAGS": "--xla_dump_to=/tmp/x "},
         {"XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_gpu_deterministic_ops=true"},
         {"XLA_FLAGS": "--xla_dump_to=/tmp/x "}, 2),
        ({"XLA_FLAGS": "--xla_gpu_deterministic_ops=false"}, {"XLA_FLAGS": None},
         {"XLA_FLAGS": "--xla_gpu_deterministic_ops=false"}, 2),
        ({"PYTHONPATH": "/src:"}, {"PYTHONPATH": "/opt/repro/hook:/src:"},
         {"PYTHONPATH": "/src:"}, 2),
        # A nested run does not add the hook directory twice.
        ({"PYTHONPATH": "/opt/repro/hook:/src"}, {"PYTHONPATH": "/opt/repro/hook:/src"},
         {"PYTHONPATH": "/opt/repro/hook:/src"}, 2),
        # An outer run's hook variables never leak into this one.
        ({"REPRO_SEED": "99", "REPRO_DETERMINISM": "off", "REPRO_HOOK_OUT": "/old"}, {}, {}, 2),
    ],
)
def test_plan_respects_user_values(parent: dict[str, str], injected_changes: dict[str, str | None],
                                   user_set: dict[str, str], threads: int) -> None:
    plan = make_plan("strict", parent)
    expected = {**HOOK_VARS, "REPRO_DETERMINISM": "strict", **SEED_VARS, **KERNEL_VARS}
    for key, value in injected_changes.items():
        if value is None:
            del expected[key]
        else:
            expected[key] = value
    assert plan.injected == expected
    assert plan.user_set == user_set
    assert plan.threads == threads
    for key, value in user_set.items():
        if key not in ("XLA_FLAGS", "PYTHONPATH") or key not in plan.injected:
            assert plan.env[key] == value


def test_plan_drops_hook_depth_from_parent() -> None:
    plan = make_plan("seed", {"REPRO_HOOK_DEPTH": "3", "KEEP": "1"})
    assert "REPRO_HOOK_DEPTH" not in plan.env
    assert plan.env["KEEP"] == "1"


def test_plan_off_keeps_thread_count_unpinned() -> None:
    plan = make_plan("off", {"OMP_NUM_THREADS": "6"}, threads=2)
    assert plan.threads == 2
    assert "MKL_NUM_THREADS" not in plan.env
    assert plan.user_set == {}


def test_plan_makes_relative_paths_absolute(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    plan = seeding.plan(1, "off", {}, threads=1, hook_out=Path("out"), hook_dir=Path("h"))
    assert plan.injected["REPRO_HOOK_OUT"] == str(tmp_path / "out")
    assert plan.injected["PYTHONPATH"] == str(tmp_path / "h")


@pytest.mark.parametrize(
    ("seed", "level", "threads", "message", "hint"),
    [
        (1, "paranoid", 2, "unknown determinism level 'paranoid'",
         "use one of: off, seed, warn, strict"),
        (1, "", 2, "unknown determinism level ''", "use one of: off, seed, warn, strict"),
        (-1, "strict", 2, "seed -1 is out of range", "use an integer from 0 to 4294967295"),
        (2**32, "strict", 2, "seed 4294967296 is out of range",
         "use an integer from 0 to 4294967295"),
        (1, "strict", 0, "thread count 0 is out of range", "use a positive integer"),
    ],
)
def test_plan_rejects_bad_input(seed: int, level: str, threads: int, message: str,
                                hint: str) -> None:
    with pytest.raises(errors.UsageError) as caught:
        seeding.plan(seed, level, {}, threads=threads, hook_out=HOOK_OUT, hook_dir=HOOK_DIR)
    assert caught.value.message == message
    assert caught.value.hint == hint


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1])
def test_plan_accepts_seed_bounds(seed: int) -> None:
    assert make_plan("seed", seed=seed).injected["PYTHONHASHSEED"] == str(seed)


@pytest.mark.parametrize(
    ("cpu_count", "expected"),
    [(None, 1), (0, 1), (1, 1), (2, 2), (7, 7), (8, 8), (9, 8), (128, 8)],
)
def test_default_threads_caps_at_eight(cpu_count: int | None, expected: int) -> None:
    assert seeding.default_threads(cpu_count) == expected


def test_new_seed_is_a_fresh_32_bit_integer() -> None:
    seeds = {seeding.new_seed() for _ in range(20)}
    assert all(0 <= s <= 2**32 - 1 for s in seeds)
    assert len(seeds) > 15  # 20 draws from 2**32 values practically never collide


def test_hook_dir_holds_only_the_hook() -> None:
    # The directory is on the child's PYTHONPATH: nothing in it may shadow a user's module.
    directory = seeding.hook_dir()
    assert directory.is_absolute()
    assert {p.name for p in directory.iterdir() if p.name != "__pycache__"} == {
        "sitecustomize.py", "_repro_hook_probe.py"}


def test_levels_match_the_manifest_schema() -> None:
    assert seeding.LEVELS == manifest.LEVELS
    assert seeding.DEFAULT_LEVEL == "strict"
