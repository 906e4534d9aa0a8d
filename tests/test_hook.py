"""The hook in real child interpreters, with the environment seeding.plan gives them.

Each test starts `sys.executable` children (torch ones are marked slow) and checks what they
print and what the hook wrote, read back through repro/child/hookprobe.py. The last tests check
hookprobe itself on literal probe files.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from repro.capture import cmdline, git
from repro.child import hookprobe, seeding

PY = sys.executable
TIMEOUT_S = 180
SEED = 1234

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,  # finds it without importing it
    reason="torch is not installed in the test interpreter",
)


@dataclasses.dataclass
class Ran:
    """One finished child: exit code, output, and where its hook wrote."""

    argv: Sequence[str]
    code: int
    out: str
    err: str
    hook_out: Path

    def summary(self) -> dict[str, Any]:
        return hookprobe.summarize(self.hook_out, self.argv)

    def top(self) -> dict[str, Any]:
        probe = hookprobe.top_probe(self.hook_out)
        assert probe is not None, f"no top-level probe; stderr: {self.err}"
        return probe

    def probes(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.hook_out.glob("*.probe.json"))]


def hooked_env(tmp_path: Path, *, seed: int = SEED, level: str = "strict",
               extra: Mapping[str, str] | None = None) -> tuple[dict[str, str], Path]:
    hook_out = Path(tempfile.mkdtemp(dir=tmp_path, prefix="hook-"))
    parent = {**os.environ, **(extra or {})}
    plan = seeding.plan(seed, level, parent, threads=2, hook_out=hook_out,
                        hook_dir=seeding.hook_dir())
    return dict(plan.env), hook_out


def plain_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child environment without repro, with the same thread count."""
    return {**os.environ, **{k: "2" for k in seeding.THREAD_VARS}, **(extra or {})}


def start(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(list(argv), env=dict(env), cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], hook_out: Path) -> Ran:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=TIMEOUT_S)
        pytest.fail(f"child {proc.args!r} timed out")
    return Ran(list(proc.args), proc.returncode, out, err, hook_out)  # type: ignore[arg-type]


def run_many(tmp_path: Path, argv: Sequence[str], runs: Sequence[Mapping[str, Any]]) -> list[Ran]:
    """Run `argv` once per keyword set of hooked_env, two at a time (the machine has 2 cores)."""
    results: list[Ran] = []
    for i in range(0, len(runs), 2):
        started = []
        for options in runs[i:i + 2]:
            env, hook_out = hooked_env(tmp_path, **options)
            started.append((start(argv, env, tmp_path), hook_out))
        results.extend(finish(proc, hook_out) for proc, hook_out in started)
    return results


def run(tmp_path: Path, argv: Sequence[str], **options: Any) -> Ran:
    return run_many(tmp_path, argv, [options])[0]


def run_plain(tmp_path: Path, argv: Sequence[str],
              extra: Mapping[str, str] | None = None) -> Ran:
    return finish(start(argv, plain_env(extra), tmp_path), tmp_path / "no-hook")


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def ok(ran: Ran) -> Ran:
    assert ran.code == 0, f"exit {ran.code}; stderr:\n{ran.err}"
    return ran


# -- 1. unmodified scripts get the same random streams for the same seed ------------------------

RNG_SCRIPT = """\
import random
import numpy as np
words = {f"word{i}" for i in range(40)}
print(random.random())
print(np.random.rand(3).tolist())
print(list(words))
"""


def test_hook_seeds_random_numpy_and_hash_order(tmp_path: Path) -> None:
    argv = [PY, str(script(tmp_path, "rng.py", RNG_SCRIPT))]
    first, again, other = run_many(tmp_path, argv, [{}, {}, {"seed": SEED + 1}])
    lines = [ok(r).out.splitlines() for r in (first, again, other)]
    assert lines[0] == lines[1]
    for line, (a, b) in enumerate(zip(lines[0], lines[2], strict=True)):
        assert a != b, f"line {line} is the same under a different seed"
    # The control: without repro the same script differs from run to run.
    control = [ok(run_plain(tmp_path, argv)).out.splitlines() for _ in range(2)]
    assert all(a != b for a, b in zip(*control, strict=True))
    summary = first.summary()
    assert summary["ran"] is True
    assert summary["seeded"] == ["random", "numpy"]
    assert summary["processes"] == 1 and summary["finished"] == 1
    assert summary["errors"] == [] and summary["warnings"] == []
    assert summary["deterministic_algorithms"] is None  # torch never imported
    assert first.top()["hash_seed"] == str(SEED)


TORCH_SCRIPT = """\
import torch
from torch.utils.data import DataLoader, Dataset

class Noisy(Dataset):
    def __len__(self):
        return 16
    def __getitem__(self, i):
        return i, torch.rand(1).item()  # drawn in a worker process

print(torch.rand(3).tolist())
for index, noise in DataLoader(Noisy(), batch_size=4, shuffle=True, num_workers=2):
    print(index.tolist(), noise.tolist())
"""


@pytest.mark.slow
@needs_torch
def test_hook_seeds_torch_and_dataloader_workers(tmp_path: Path) -> None:
    argv = [PY, str(script(tmp_path, "loader.py", TORCH_SCRIPT))]
    first, again, other = run_many(tmp_path, argv, [{}, {}, {"seed": SEED + 1}])
    assert ok(first).out == ok(again).out
    first_lines, other_lines = first.out.splitlines(), ok(other).out.splitlines()
    assert first_lines[0] != other_lines[0]  # the unseeded torch.rand
    assert first_lines[1:] != other_lines[1:]  # shuffle order and worker draws
    assert len(first_lines) == 5
    summary = first.summary()
    assert {"random", "torch"} <= set(summary["seeded"])  # numpy.random only if torch used it
    assert summary["processes"] == 1  # forked workers do not run the hook again
    assert summary["script_seeds"] == []  # the workers' own reseeding is torch's, not the script's
    assert summary["deterministic_algorithms"] is True


# -- 2. a training loop through index_put's backward is bitwise identical at strict -------------

TRAIN_SCRIPT = """\
import hashlib
import torch

n_rows, dim, batch = 64, 32, 2048
table = torch.nn.Parameter(torch.randn(n_rows, dim))  # unseeded: repro seeds it
optimizer = torch.optim.SGD([table], lr=0.1)
for step in range(15):
    index = torch.randint(0, n_rows, (batch,))  # many repeats: index_put accumulates
    features = torch.randn(batch, dim)
    target = torch.randn(batch)
    loss = (((table[index] * features).sum(1) - target) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step == 0:
        print("first loss", loss.item())
print("weights", hashlib.sha256(table.detach().numpy().tobytes()).hexdigest())
print("threads", torch.get_num_threads())
"""


@pytest.mark.slow
@needs_torch
def test_hook_strict_training_is_bitwise_identical(tmp_path: Path) -> None:
    argv = [PY, str(script(tmp_path, "train.py", TRAIN_SCRIPT))]
    strict_a, strict_b, seed_a, seed_b = run_many(
        tmp_path, argv, [{}, {}, {"level": "seed"}, {"level": "seed"}])
    for ran in (strict_a, strict_b, seed_a, seed_b):
        ok(ran)
        assert "threads 2" in ran.out
    assert strict_a.out == strict_b.out  # bitwise: the weights' sha256 is in the output
    assert strict_a.summary()["deterministic_algorithms"] is True
    assert strict_a.top()["torch_settings"]["deterministic_algorithms"] is True
    # At `seed` the same seeds give the same start, but deterministic algorithms are off, so
    # CPU index_put with 2 threads accumulates in whatever order the threads finish. On the
    # 2-core development machine the weights differed on every run; the test records what
    # happened rather than asserting a race.
    assert seed_a.summary()["deterministic_algorithms"] is False
    assert seed_a.out.splitlines()[0] == seed_b.out.splitlines()[0] == \
        strict_a.out.splitlines()[0]
    print(f"seed level, two runs bitwise equal: {seed_a.out == seed_b.out}")  # pytest -rP


INDUCTOR_SCRIPT = """\
import sys
import torch
print("enabled", torch.are_deterministic_algorithms_enabled())
print("warn_only", torch.is_deterministic_algorithms_warn_only_enabled())
print("compiler loaded at start", "torch._inductor.config" in sys.modules)
import torch._inductor.config
print("inductor", torch._inductor.config.deterministic)
"""


@pytest.mark.slow
@needs_torch
@pytest.mark.parametrize("level", ["strict", "warn"])
def test_hook_deterministic_without_loading_the_compiler(tmp_path: Path, level: str) -> None:
    # The hook turns deterministic algorithms on without `import torch._inductor.config`
    # (over a second); inductor gets its flag once the program loads it, from the hook and
    # not only from TORCHINDUCTOR_DETERMINISTIC, which the user may have set to 0.
    argv = [PY, str(script(tmp_path, "inductor.py", INDUCTOR_SCRIPT))]
    ran = ok(run(tmp_path, argv, level=level, extra={"TORCHINDUCTOR_DETERMINISTIC": "0"}))
    assert ran.out.splitlines() == [
        "enabled True", f"warn_only {level == 'warn'}", "compiler loaded at start False",
        "inductor True"]
    assert ran.top()["torch_settings"]["inductor.deterministic"] is True
    assert ran.summary()["overridden"] == []
    plain = ok(run_plain(tmp_path, argv, {"TORCHINDUCTOR_DETERMINISTIC": "0"}))
    assert plain.out.splitlines()[0] == "enabled False"
    assert plain.out.splitlines()[-1] == "inductor False"


PUT_SCRIPT = """\
import torch
values = torch.zeros(8)
values.put_(torch.tensor([1, 1, 2]), torch.tensor([1.0, 2.0, 3.0]))  # no deterministic kernel
print("done")
"""


@pytest.mark.slow
@needs_torch
def test_hook_strict_error_names_warn_level(tmp_path: Path) -> None:
    argv = [PY, str(script(tmp_path, "put.py", PUT_SCRIPT))]
    strict, warn = run_many(tmp_path, argv, [{}, {"level": "warn"}])
    assert strict.code == 1 and strict.out == ""
    assert "put_ does not have a deterministic implementation" in strict.err
    hint = [line for line in strict.err.splitlines() if line.startswith("repro:")]
    assert len(hint) == 1 and "--determinism warn" in hint[0]
    assert strict.summary()["nondeterministic_error"].startswith(
        "put_ does not have a deterministic implementation")
    assert ok(warn).out == "done\n"  # warn: the op runs and torch only warns
    assert "put_ does not have a deterministic implementation" in warn.err
    assert "repro:" not in warn.err
    assert warn.top()["torch_settings"]["deterministic_warn_only"] is True
    assert warn.summary()["deterministic_algorithms"] is True


# -- 3. seeds the script sets itself, and a script switching determinism off -------------------

OWN_SEEDS_SCRIPT = """\
import random
import numpy as np
random.seed(5)
np.random.seed(np.int64(6))
print(random.random(), np.random.rand())
"""


def test_hook_records_script_seeds_without_changing_them(tmp_path: Path) -> None:
    argv = [PY, str(script(tmp_path, "own.py", OWN_SEEDS_SCRIPT))]
    hooked = ok(run(tmp_path, argv))
    assert hooked.out == ok(run_plain(tmp_path, argv)).out  # the script's seeds still rule
    assert hooked.summary()["script_seeds"] == [
        {"call": "random.seed", "value": 5, "caller": "__main__"},
        {"call": "numpy.random.seed", "value": 6, "caller": "__main__"},
    ]


SWITCH_OFF_SCRIPT = """\
import torch
torch.manual_seed(42)
print(torch.rand(2).tolist())
torch.use_deterministic_algorithms(False)
torch.backends.cudnn.benchmark = True
"""


@pytest.mark.slow
@needs_torch
def test_hook_flags_script_that_turns_determinism_off(tmp_path: Path) -> None:
    argv = [PY, str(script(tmp_path, "off.py", SWITCH_OFF_SCRIPT))]
    hooked = ok(run(tmp_path, argv))
    # torch.manual_seed(42) still rules: torch's CPU generator's first two draws after it.
    assert hooked.out == "[0.8822692632675171, 0.9150039553642273]\n"
    summary = hooked.summary()
    assert summary["script_seeds"] == [
        {"call": "torch.manual_seed", "value": 42, "caller": "__main__"}]
    assert summary["deterministic_algorithms"] is False
    # use_deterministic_algorithms(False) also loads torch's compiler and turns its flag off.
    assert summary["overridden"] == ["cudnn.benchmark", "deterministic_algorithms",
                                     "inductor.deterministic"]


LIGHTNING_PACKAGE = {
    "lightning/__init__.py": "from lightning.fabric.utilities.seed import seed_everything\n",
    "lightning/fabric/__init__.py": "",
    "lightning/fabric/utilities/__init__.py": "",
    "lightning/fabric/utilities/seed.py": """\
        import os
        import random

        def seed_everything(seed=None, workers=False):
            if seed is None:
                seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
            random.seed(seed)
            return seed
        """,
    "lightning/pytorch/__init__.py":
        "from lightning.fabric.utilities.seed import seed_everything\n",
}


def test_hook_records_lightning_seed_everything(tmp_path: Path) -> None:
    # A stand-in with Lightning's layout: one definition, re-exported by two packages.
    packages = tmp_path / "site"
    for name, body in LIGHTNING_PACKAGE.items():
        script(packages, name, body)
    body = """\
        import lightning as L
        from lightning.pytorch import seed_everything
        L.seed_everything(7)
        print(seed_everything())
        """
    argv = [PY, str(script(tmp_path, "pl.py", body))]
    ran = ok(run(tmp_path, argv, extra={"PYTHONPATH": str(packages)}))
    assert ran.out == f"{SEED}\n"  # PL_GLOBAL_SEED reached Lightning
    assert ran.summary()["script_seeds"] == [
        {"call": "seed_everything", "value": 7, "caller": "__main__"},
        {"call": "seed_everything", "value": SEED, "caller": "__main__"},
    ]  # and its inner random.seed calls are not counted again


FAKE_TENSORFLOW = """\
import types
calls = []
random = types.SimpleNamespace(set_seed=lambda seed: calls.append(["set_seed", seed]))
config = types.SimpleNamespace(experimental=types.SimpleNamespace(
    enable_op_determinism=lambda: calls.append(["enable_op_determinism"])))
"""


@pytest.mark.parametrize(
    ("level", "calls"),
    [
        ("strict", [["set_seed", SEED], ["enable_op_determinism"], ["set_seed", 9]]),
        ("warn", [["set_seed", SEED], ["enable_op_determinism"], ["set_seed", 9]]),
        ("seed", [["set_seed", SEED], ["set_seed", 9]]),
        ("off", [["set_seed", 9]]),
    ],
)
def test_hook_seeds_tensorflow(tmp_path: Path, level: str, calls: list[list[object]]) -> None:
    # TensorFlow is not installed here: a stand-in with the two functions the hook calls.
    packages = tmp_path / "site"
    script(packages, "tensorflow/__init__.py", FAKE_TENSORFLOW)
    body = """\
        import json
        import tensorflow as tf
        tf.random.set_seed(9)
        print(json.dumps(tf.calls))
        """
    argv = [PY, str(script(tmp_path, "tf.py", body))]
    ran = ok(run(tmp_path, argv, level=level, extra={"PYTHONPATH": str(packages)}))
    assert json.loads(ran.out) == calls
    summary = ran.summary()
    assert ("tensorflow" in summary["seeded"]) == (level != "off")
    assert summary["script_seeds"] == [
        {"call": "tensorflow.random.set_seed", "value": 9, "caller": "__main__"}]
    assert summary["errors"] == []


def test_hook_seeds_after_an_availability_check(tmp_path: Path) -> None:
    # Libraries ask importlib.util.find_spec("numpy") before importing it; that spec is never
    # executed, and the hook must still react to the real import that follows.
    probe_first = "import importlib.util\nassert importlib.util.find_spec('numpy')\n"
    body = "import numpy as np\nprint(np.random.rand())\n"
    checked = ok(run(tmp_path, [PY, str(script(tmp_path, "c.py", probe_first + body))]))
    direct = ok(run(tmp_path, [PY, str(script(tmp_path, "d.py", body))]))
    assert checked.out == direct.out
    assert "numpy" in checked.summary()["seeded"]


def test_hook_reports_import_it_did_not_see(tmp_path: Path) -> None:
    body = """\
        import importlib.machinery, sys

        class First:  # another import hook, placed ahead of repro's
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == "numpy":
                    return importlib.machinery.PathFinder.find_spec(name, path)
                return None

        sys.meta_path.insert(0, First())
        import numpy
        print("imported")
        """
    ran = ok(run(tmp_path, [PY, str(script(tmp_path, "first.py", body))]))
    assert ran.out == "imported\n"
    assert ran.summary()["errors"] == [{
        "stage": "import numpy",
        "error": "imported without the hook (another import hook loaded it first): not "
                 "seeded, settings not applied"}]


# -- 4. the shadowed sitecustomize, and interpreters that skip the hook ------------------------

SHADOW = """\
import sys
sys.stderr.write("shadow ran\\n")
"""
INSPECT = """\
import sys
print(sys.modules["sitecustomize"].__file__)
print(any(p.rstrip("/").endswith("repro/hook") for p in sys.path))
"""


def test_hook_chain_loads_shadowed_sitecustomize(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    script(shadow, "sitecustomize.py", SHADOW)
    argv = [PY, str(script(tmp_path, "inspect.py", INSPECT))]
    ran = ok(run(tmp_path, argv, extra={"PYTHONPATH": str(shadow)}))
    assert ran.err == "shadow ran\n"
    assert ran.out == f"{shadow / 'sitecustomize.py'}\nFalse\n"
    assert ran.summary()["ran"] is True
    assert ran.top()["errors"] == []


def test_hook_without_seed_only_chain_loads(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    script(shadow, "sitecustomize.py", SHADOW)
    env = plain_env({"PYTHONPATH": os.pathsep.join([str(seeding.hook_dir()), str(shadow)])})
    argv = [PY, str(script(tmp_path, "rng.py", RNG_SCRIPT))]
    runs = [finish(start(argv, env, tmp_path), tmp_path) for _ in range(2)]
    assert all(r.err == "shadow ran\n" for r in runs)
    assert runs[0].out != runs[1].out  # nothing seeded
    assert not list(tmp_path.glob("**/*.marker.json"))


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        (["-I"], "python -I in the command"),
        (["-E"], "python -E in the command"),
        (["-S"], "python -S in the command"),
        (["-s", "-I"], "python -I in the command"),
    ],
)
def test_hook_defeated_by_interpreter_flags(tmp_path: Path, flags: list[str],
                                            reason: str) -> None:
    ran = ok(run(tmp_path, [PY, *flags, "-c", "print('hi')"]))
    assert ran.out == "hi\n"
    summary = ran.summary()
    assert summary["ran"] is False
    assert summary["reason"].startswith(reason)
    assert summary["processes"] == 0
    assert not list(ran.hook_out.iterdir())


def test_hook_not_run_by_a_non_python_command(tmp_path: Path) -> None:
    ran = ok(run(tmp_path, ["sh", "-c", "echo hi"]))
    assert ran.summary()["reason"] == hookprobe.NO_PYTHON


def test_hook_counts_nested_processes(tmp_path: Path) -> None:
    # The top-level process runs two children; only it lists packages.
    body = """\
        import subprocess, sys
        for _ in range(2):
            subprocess.run([sys.executable, "-c", "import random"], check=True, timeout=60)
        """
    ran = ok(run(tmp_path, [PY, str(script(tmp_path, "parent.py", body))]))
    assert ran.summary()["processes"] == 3
    depths = sorted(p["depth"] for p in ran.probes())
    assert depths == [0, 1, 1]
    assert all(("packages" in p) == (p["depth"] == 0) for p in ran.probes())
    top = ran.top()
    assert top["depth"] == 0 and top["python"]["executable"] == PY
    assert top["package_sources"]["repro"]["editable"] is True


def test_hook_lists_packages_as_importlib_metadata_does(tmp_path: Path) -> None:
    body = """\
        import json, re
        from importlib import metadata
        found = {}  # the first of two copies on sys.path wins, as in metadata.version()
        for d in metadata.distributions():
            found.setdefault(re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(), d.version)
        print(json.dumps(found))
        """
    ran = ok(run(tmp_path, [PY, str(script(tmp_path, "meta.py", body))]))
    assert ran.top()["packages"] == json.loads(ran.out)


# -- 5. the hook never breaks the program -------------------------------------------------------

FAKE_TORCH = """\
def manual_seed(seed):
    raise RuntimeError("boom in manual_seed")
"""  # and no use_deterministic_algorithms, no backends: every torch step fails
FAULT_SCRIPT = """\
import sys
import torch
print("script output")
sys.exit(3)
"""


def test_hook_failures_are_recorded_not_raised(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    script(fake, "torch/__init__.py", FAKE_TORCH)
    argv = [PY, str(script(tmp_path, "fault.py", FAULT_SCRIPT))]
    hooked = run(tmp_path, argv, extra={"PYTHONPATH": str(fake)})
    plain = run_plain(tmp_path, argv, {"PYTHONPATH": str(fake)})
    assert (hooked.code, hooked.out, hooked.err) == (plain.code, plain.out, plain.err) == (
        3, "script output\n", "")
    errors = hooked.summary()["errors"]
    stages = {e["stage"] for e in errors}
    assert stages == {"seed torch", "torch deterministic algorithms", "torch cudnn.deterministic",
                      "torch cudnn.benchmark", "torch cuda.matmul.allow_tf32",
                      "torch cudnn.allow_tf32"}
    assert {"stage": "seed torch", "error": "RuntimeError: boom in manual_seed"} in errors
    assert hooked.summary()["seeded"] == []


@pytest.mark.parametrize(
    "extra",
    [
        {"REPRO_SEED": "not-a-number"},
        {"REPRO_DETERMINISM": "bogus"},
        {"REPRO_HOOK_DEPTH": "x"},
        {"RANK": "first"},
    ],
)
def test_hook_survives_bad_variables(tmp_path: Path, extra: dict[str, str]) -> None:
    argv = [PY, "-c", "import random; print('ok'); raise SystemExit(4)"]
    env, hook_out = hooked_env(tmp_path)
    env.update(extra)
    ran = finish(start(argv, env, tmp_path), hook_out)
    assert (ran.code, ran.out, ran.err) == (4, "ok\n", "")
    assert ran.summary()["errors"], "the bad variable is recorded"


def test_hook_survives_unwritable_probe_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env, _ = hooked_env(tmp_path)
    env["REPRO_HOOK_OUT"] = str(blocker / "hook")  # cannot be created: a file is in the way
    ran = finish(start([PY, "-c", "print('ok')"], env, tmp_path), blocker)
    assert (ran.code, ran.out, ran.err) == (0, "ok\n", "")


def test_hook_writes_marker_even_when_killed(tmp_path: Path) -> None:
    ran = run(tmp_path, [PY, "-c", "import os; os._exit(7)"])
    assert ran.code == 7
    summary = ran.summary()
    assert summary["ran"] is True and summary["processes"] == 1 and summary["finished"] == 0
    assert summary["warnings"] == [
        "1 of 1 hook process(es) ended without writing their probe (killed by a signal, or "
        "os._exit)"]
    assert hookprobe.top_probe(ran.hook_out) is None


# -- 6. ranks -----------------------------------------------------------------------------------

RANK_SCRIPT = """\
import random
import numpy as np
print(random.random(), np.random.rand())
"""


def test_hook_seeds_each_rank_independently_and_repeatably(tmp_path: Path) -> None:
    argv = [PY, str(script(tmp_path, "rank.py", RANK_SCRIPT))]
    ranks = [{"extra": {"RANK": "0"}}, {"extra": {"RANK": "1"}}]
    r0, r1, r0_again, r1_again = run_many(tmp_path, argv, ranks + ranks)
    assert ok(r0).out == ok(r0_again).out
    assert ok(r1).out == ok(r1_again).out
    assert r0.out != r1.out
    unranked = ok(run(tmp_path, argv))
    assert unranked.out not in (r0.out, r1.out)
    # The derivation is part of what a replay must reproduce: pinned to literal values (the
    # low 32 bits of SplitMix64's outputs 1 and 2 from state 1234; from state 0 its first
    # output is the reference vector 0xE220A8397B1DCDAF).
    assert r0.summary()["rank_seeds"] == {"0": 790109403}
    assert r1.summary()["rank_seeds"] == {"1": 1307600164}


# -- on a GPU ----------------------------------------------------------------------------------

def cuda_available() -> bool:
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and b"GPU" in done.stdout


CUDA_SCRIPT = """\
import torch
print(torch.cuda.is_initialized())  # the hook seeded CUDA without initialising it
a = torch.rand(4, device="cuda")
w = torch.randn(512, 512, device="cuda")
print(a.tolist(), (w @ w).sum().item())
"""


@pytest.mark.gpu
@pytest.mark.slow
@needs_torch
@pytest.mark.skipif(not cuda_available(), reason="needs CUDA")
def test_hook_seeds_cuda_without_initialising_it(tmp_path: Path) -> None:
    argv = [PY, str(script(tmp_path, "cuda.py", CUDA_SCRIPT))]
    first, again, other = run_many(tmp_path, argv, [{}, {}, {"seed": SEED + 1}])
    assert ok(first).out.splitlines()[0] == "False"
    assert first.out == ok(again).out
    assert first.out.splitlines()[1] != ok(other).out.splitlines()[1]
    torch_info = first.top()["torch"]
    assert torch_info["cuda_initialized"] is True and torch_info["devices"]
    assert first.top()["torch_settings"]["cuda.matmul.allow_tf32"] is False
    cuda_put = PUT_SCRIPT.replace("torch.zeros(8)", "torch.zeros(8, device='cuda')").replace(
        "torch.tensor([1, 1, 2])", "torch.tensor([1, 1, 2], device='cuda')").replace(
        "torch.tensor([1.0, 2.0, 3.0])", "torch.tensor([1.0, 2.0, 3.0], device='cuda')")
    strict = run(tmp_path, [PY, str(script(tmp_path, "cuda_put.py", cuda_put))])
    assert strict.code == 1 and "--determinism warn" in strict.err


# -- hookprobe on literal files -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["python", "-I", "x.py"], {"I"}),
        (["python3.11", "-IS", "x.py"], {"I", "S"}),
        (["/usr/bin/python3", "-W", "ignore", "-E", "x.py"], {"E"}),
        (["python", "-Wignore", "-E", "x.py"], {"E"}),
        (["python", "-X", "dev", "-S"], {"S"}),
        (["python", "-bb", "x.py"], {"b"}),
        (["python", "-c", "-I"], set()),
        (["python", "-m", "mod", "-S"], set()),
        (["python", "x.py", "-I"], set()),
        (["python", "--check-hash-based-pycs", "always", "-E", "x.py"], {"E"}),
        (["env", "A=1", "python3", "-E", "t.py"], {"E"}),
        (["uv", "run", "python", "-I", "t.py"], {"I"}),
        (["sh", "-c", "python -I x.py"], {"I"}),
        (["bash", "train.sh"], set()),
        ([], set()),
    ],
)
def test_interpreter_flags(argv: list[str], flags: set[str]) -> None:
    assert cmdline.interpreter_flags(argv) == flags


def test_interpreter_flags_reads_shebang(tmp_path: Path) -> None:
    tool = script(tmp_path, "tool", "#!/usr/bin/env -S python3 -I\nprint(1)\n")
    assert cmdline.interpreter_flags([str(tool), "--lr", "1"]) == {"I"}


def write_json(directory: Path, name: str, data: object) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(data))


def probe(pid: int, depth: int, started: float, **fields: Any) -> dict[str, Any]:
    return {"schema": "repro/hook-probe/v1", "pid": pid, "depth": depth, "rank": None,
            "started_at": started, "seeded": [], "script_seeds": [], "errors": [],
            "deterministic_algorithms": None, "overridden": [], **fields}


def test_summarize_merges_processes(tmp_path: Path) -> None:
    seed42 = {"call": "torch.manual_seed", "value": 42, "caller": "__main__"}
    write_json(tmp_path, "hook-20-1.probe.json", probe(
        20, 1, 2.0, seeded=["torch", "random"], script_seeds=[seed42], rank=1,
        effective_seed=11, deterministic_algorithms=False, overridden=["cudnn.benchmark"],
        errors=[{"stage": "wrap torch", "error": "E"}]))
    write_json(tmp_path, "hook-10-1.probe.json", probe(
        10, 0, 1.0, seeded=["random"], packages={"x": "1"}, deterministic_algorithms=True))
    write_json(tmp_path, "hook-30-1.probe.json", probe(
        30, 1, 3.0, seeded=["numpy"], script_seeds=[seed42], rank=0, effective_seed=10,
        errors=[{"stage": "wrap torch", "error": "E"}]))
    for pid in (10, 20, 30, 40):
        write_json(tmp_path, f"hook-{pid}-1.marker.json", {"pid": pid, "depth": 1})
    (tmp_path / "hook-50-1.probe.json").write_text("{truncated")
    (tmp_path / "hook-60-1.probe.json.tmp").write_text("ignored")
    assert hookprobe.summarize(tmp_path, ["python", "train.py"]) == {
        "ran": True,
        "reason": None,
        "processes": 5,
        "finished": 3,
        "seeded": ["random", "numpy", "torch"],
        "deterministic_algorithms": True,  # the top-level process's, not the workers'
        "overridden": ["cudnn.benchmark"],
        "script_seeds": [seed42],
        "rank_seeds": {"0": 10, "1": 11},
        "nondeterministic_error": None,
        "errors": [
            {"stage": "wrap torch", "error": "E"},
            {"stage": "read",
             "error": "hook-50-1.probe.json: unreadable (Expecting property name enclosed in "
                      "double quotes: line 1 column 2 (char 1))"},
        ],
        "warnings": ["2 of 5 hook process(es) ended without writing their probe (killed by "
                     "a signal, or os._exit)"],
    }
    top = hookprobe.top_probe(tmp_path)
    assert top is not None and top["pid"] == 10


def test_summarize_without_top_level_torch_uses_workers(tmp_path: Path) -> None:
    write_json(tmp_path, "hook-1-1.probe.json", probe(1, 0, 1.0))
    write_json(tmp_path, "hook-2-1.probe.json", probe(2, 1, 2.0, deterministic_algorithms=True))
    write_json(tmp_path, "hook-3-1.probe.json", probe(3, 1, 3.0, deterministic_algorithms=False))
    assert hookprobe.summarize(tmp_path, ["torchrun", "t.py"])["deterministic_algorithms"] is False


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["python", "-I", "t.py"], hookprobe.DEFEATING_FLAGS["I"]),
        (["python", "-E", "-S", "t.py"], hookprobe.DEFEATING_FLAGS["E"]),
        (["./run.sh"], hookprobe.NO_PYTHON),
    ],
)
def test_summarize_explains_missing_hook(tmp_path: Path, argv: list[str], reason: str) -> None:
    for directory in (tmp_path / "empty", tmp_path / "missing"):
        if directory.name == "empty":
            directory.mkdir()
        summary = hookprobe.summarize(directory, argv)
        assert (summary["ran"], summary["reason"], summary["processes"]) == (False, reason, 0)
        assert hookprobe.top_probe(directory) is None


def test_summarize_notes_flags_when_children_ran_the_hook(tmp_path: Path) -> None:
    write_json(tmp_path, "hook-5-1.marker.json", {"pid": 5, "depth": 0})
    write_json(tmp_path, "hook-5-1.probe.json", probe(5, 0, 1.0))
    summary = hookprobe.summarize(tmp_path, ["python", "-I", "launcher.py"])
    assert summary["ran"] is True
    assert summary["warnings"] == [
        f"{hookprobe.DEFEATING_FLAGS['I']} for the command's own interpreter; only 1 "
        "process(es) it started ran the hook"]


# -- the hook's exit stays cheap: no re, no json package for a plain command line ---------------


def _hook_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "repro_hook_exit_copy", seeding.hook_dir() / "_repro_hook_probe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the hook's exit-time helper: defines, runs nothing
    return module


def test_hook_exit_imports_neither_re_nor_json_for_a_plain_command(tmp_path: Path) -> None:
    """`re` and the json package cost ~5 ms at the exit of every Python process (each DDP rank,
    each DataLoader worker); the probe is complete without them."""
    # A fresh venv: the test's own has editable installs, whose direct_url.json is read with
    # json (as it should be).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True, timeout=TIMEOUT_S)
    python = str(tmp_path / "venv" / "bin" / "python")
    # A package installed from a directory, as `pip install -e .` leaves one.
    (dist,) = (tmp_path / "venv").glob("lib/python*/site-packages")
    (dist / "demo-1.0.dist-info").mkdir()
    (dist / "demo-1.0.dist-info" / "METADATA").write_text("Name: demo\nVersion: 1.0\n")
    (dist / "demo-1.0.dist-info" / "direct_url.json").write_text(
        '{"url": "file:///src/demo", "dir_info": {"editable": true}}\n')

    def imports(env: Mapping[str, str]) -> set[str]:
        done = subprocess.run([python, "-X", "importtime", "-c", "pass"], env=dict(env),
                              cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S)
        assert done.returncode == 0, done.stderr
        return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}

    env, hook_out = hooked_env(tmp_path)
    added = imports(env) - imports(plain_env())  # an editable install imports re itself
    assert not added & {"re", "json", "json.encoder", "json.decoder", "enum"}, added
    (probe_file,) = hook_out.glob("*.probe.json")
    probe = json.loads(probe_file.read_text())
    assert probe["seed"] == SEED and probe["errors"] == []
    assert probe["packages"] == {"demo": "1.0"}
    assert probe["package_sources"]["demo"]["url"] == "file:///src/demo"


def test_hook_json_and_names_match_the_json_and_re_they_replace() -> None:
    import re

    hook = _hook_module()
    value = {"b": [1, 2.5, float("nan"), float("-inf"), True, None, "é\n\"\\\x01\U0001f600"],
             "a": {"z": object, "3": "x", "y": (1, 2)}, "c": -0.0, "d": {}}
    assert hook.json_text(value) == json.dumps(value, default=repr, sort_keys=True)
    for text in ['{"url": "file:///x", "dir_info": {"editable": true}}', ' [1, 2.5e3, "\\u00e9"]\n',
                 '{"a": NaN, "b": -Infinity, "c": null, "d": false}', '"x"', '7']:
        assert json.dumps(hook._json_value(text)) == json.dumps(json.loads(text))
    for bad in ['{"a": 1} x', '{"a": }', '\ufeff{}', '']:
        with pytest.raises(json.JSONDecodeError):
            hook._json_value(bad)
    for url in ["file:///src/demo", "https://u:p@h/x?t=1#f", "git@host:o/r.git", "a:b@c:d"]:
        assert hook.strip_credentials(url) == git.strip_credentials(url)
    for name in ["torch", "Typing_Extensions", "zope.interface", "a--b__c..d", "_x_", "-", ""]:
        assert hook._normalized(name) == re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("argv", [
    ["python", "-c", "pass"], ["python", "t.py", "--api-key", "X", "--lr=1"],
    ["python", "t.py", "PASSWORD=x", "+auth.token=Z"], ["python", "t.py", "--max-tokens", "64"],
    ["python", "t.py", "--data", "https://u:p@host/x"], ["python", "t.py", "ftp://anon@host/"],
])
def test_hook_redaction_without_re_is_the_same(argv: list[str]) -> None:
    """The check that lets a plain argv skip `re` never skips a word the full rule redacts."""
    import re

    hook = _hook_module()
    expected = [str(a) for a in argv]
    for i, prefix, _name in hook.secret_spans(expected):
        expected[i] = prefix + "<secret>"
    for i, word in enumerate(expected):
        if i and "://" in word and "@" in word:
            expected[i] = re.sub(hook._URL_PASSWORD_PATTERN, r"\1<secret>@", word)
    assert hook.redact_argv(argv) == expected
