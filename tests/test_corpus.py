"""The corpus: realistic training scripts run under repro, verified, and the checkout untouched.

Each scenario is a fresh git repository holding one script from tests/corpus/ (committed), a
requirements lock pinned to what is installed, and git-ignored data and results where a real
project would ignore them. The script runs once under `repro run --seed S`; then `repro verify`
replays it. The verdict must be `bitwise` (or `within-tolerance` where the only difference is a
checkpoint's embedded absolute path) and no file of the user's checkout may change: every file,
git-ignored ones and inputs included, is hashed with its size and mtime before and after, along
with `git status`, HEAD, refs, worktrees and the index.

repro runs as a real process (`python -m repro`), as a user would run it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import PYTHON, git, pinned_lock, snapshot_tree

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).parent / "corpus"
SEED = "20261201"
LOCKED = ["torch", "numpy", "scikit-learn", "scipy", "joblib", "matplotlib"]


# ---------------------------------------------------------------------------- helpers


def checkout_state(repo: Path) -> dict[str, object]:
    """Everything of the user's checkout that replay/verify must leave alone: conftest's
    snapshot_tree (every file with hash, size, mode and mtime, git status, HEAD, worktrees,
    index) plus the refs and the stash."""
    state = snapshot_tree(repo)
    state[":refs"] = git(repo, "for-each-ref")
    state[":stash"] = git(repo, "stash", "list")
    return state


def changed(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """The keys that differ between two checkout states, each with what happened to it."""
    out = []
    for key in sorted(before.keys() | after.keys()):
        if key not in after:
            out.append(f"{key}: removed")
        elif key not in before:
            out.append(f"{key}: created")
        elif before[key] != after[key]:
            out.append(f"{key}: {before[key]!r} -> {after[key]!r}")
    return out


def repro(repo: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run repro as a real process in `repo`, as a user would."""
    return subprocess.run([PYTHON, "-m", "repro", *args], cwd=repo, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def run_ok(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = repro(repo, "run", "--seed", SEED, *args)
    assert done.returncode == 0, f"repro run {args} exited {done.returncode}:\n{done.stderr}"
    return done


@dataclass
class Verified:
    """What one `repro verify --json` said, and whatever was wrong with it."""

    code: int
    report: dict  # type: ignore[type-arg]
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return str(self.report.get("verdict"))

    def checks(self, status: str | None = None) -> dict[str, dict]:  # type: ignore[type-arg]
        return {c["name"]: c for c in self.report.get("checks", [])
                if status is None or c["status"] == status}


def verify(repo: Path, *args: str) -> Verified:
    """`repro verify --json ARGS`; stdout must be exactly one JSON document (CI pipes it to jq).

    When it is not, the report is still dug out of the output so that the test's failure names
    the verdict too, not just the malformed output.
    """
    done = repro(repo, "verify", "--json", *args)
    problems = []
    if not done.stdout.strip():
        return Verified(done.returncode, {}, [f"verify gave no report (exit {done.returncode}); "
                                              f"stderr: {done.stderr[-1500:]!r}"])
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = {}
        start = done.stdout.rfind("\n{\n")
        if start >= 0:
            with contextlib.suppress(json.JSONDecodeError):
                report = json.loads(done.stdout[start:])
        problems.append(f"`repro verify --json` stdout is not one JSON document "
                        f"(exit {done.returncode}); stdout starts {done.stdout[:300]!r}; "
                        f"stderr: {done.stderr[-1500:]!r}")
    if not report:
        problems.append(f"no verify report (exit {done.returncode}); stderr: "
                        f"{done.stderr[-1500:]!r}")
    return Verified(done.returncode, report, problems)


def describe(v: Verified) -> str:
    checks = [f"{c['kind']} {c['name']}: {c['status']} ({c.get('detail', '')})"
              for c in v.report.get("checks", []) if c["status"] != "same"]
    return f"exit {v.code}, verdict {v.verdict!r}; differing checks: {checks}"


def verified_untouched(repo: Path, *args: str, verdicts: tuple[str, ...] = ("bitwise",)
                       ) -> Verified:
    """Verify with a snapshot of the checkout around it; fail with every problem found."""
    before = checkout_state(repo)
    v = verify(repo, *args)
    problems = list(v.problems)
    touched = changed(before, checkout_state(repo))
    if touched:
        problems.append("verify changed the user's checkout: " + "; ".join(touched))
    if v.report and (v.verdict not in verdicts or v.code != 0):
        problems.append(f"expected {' or '.join(verdicts)} with exit 0, got {describe(v)}")
    assert not problems, "\n".join(problems)
    return v


def project(repo: Path, script: str, ignore: str = "") -> None:
    """Turn the fixture's repo into a small project: the corpus script, a full lock, .gitignore."""
    (repo / "train.py").unlink()
    shutil.copy(CORPUS / script, repo / script)
    lock = pinned_lock() + "".join(f"{n}=={metadata.version(n)}\n" for n in LOCKED)
    (repo / "requirements.lock").write_text(lock)
    (repo / ".gitignore").write_text(".repro/\n__pycache__/\n" + ignore)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"Add {script}")


def manifest(repo: Path, ref: str = "latest") -> dict:  # type: ignore[type-arg]
    done = repro(repo, "show", ref, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def write_train_csv(path: Path) -> None:
    """A small regression data set, the same bytes every time (the user's data, not seeded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x1", "x2", "x3", "y"])
        for i in range(96):
            a, b, c = (i % 7) / 7, (i % 5) / 5, (i % 11) / 11
            w.writerow([f"{a:.6f}", f"{b:.6f}", f"{c:.6f}", f"{2 * a - b + 0.5 * c:.6f}"])


# ---------------------------------------------------------------------------- the corpus


def test_dataloader_workers_and_checkpoint_dict(repo: Path) -> None:
    """(a) torch, DataLoader(num_workers=2, shuffle=True), a checkpoint dict and metrics.json."""
    project(repo, "dataloader_ckpt.py", "checkpoints/\nmetrics.json\n")
    run_ok(repo, "--output", "checkpoints", "--metrics", "metrics.json", "--",
           PYTHON, "dataloader_ckpt.py", "--epochs", "2")
    v = verified_untouched(repo, "latest")
    assert "train_loss" in v.checks(), describe(v)


def test_checkpoint_embedding_its_absolute_directory(repo: Path) -> None:
    """(b) a Lightning-style .ckpt whose callback state holds os.path.abspath('checkpoints').

    The replay runs in another directory, so the bytes differ; every tensor is identical and
    the only difference is the embedded checkout path: reproduced (within tolerance).
    """
    project(repo, "lightning_ckpt.py", "checkpoints/\nmetrics.json\n")
    run_ok(repo, "--output", "checkpoints", "--metrics", "metrics.json", "--",
           PYTHON, "lightning_ckpt.py", "--max-epochs", "2")
    v = verified_untouched(repo, "latest", verdicts=("within-tolerance", "bitwise"))
    if v.verdict == "within-tolerance":
        tolerated = {n: c for n, c in v.checks().items() if c["status"] != "same"}
        assert tolerated, describe(v)
        for name, check in tolerated.items():
            assert name.endswith(".ckpt") and "path" in check.get("detail", ""), describe(v)


def test_sklearn_without_random_state(repo: Path) -> None:
    """(c) train_test_split + RandomForest + SGD, no random_state: repro's numpy seeding decides."""
    project(repo, "sklearn_forest.py", "models/\nmetrics.json\n")
    run_ok(repo, "--output", "models", "--metrics", "metrics.json", "--",
           PYTHON, "sklearn_forest.py", "--n-estimators", "10")
    v = verified_untouched(repo, "latest")
    assert "forest.accuracy" in v.checks(), describe(v)


def test_sklearn_verify_runs_into_a_reused_output_directory(repo: Path) -> None:
    """(c) again, as `repro verify --runs 2 -- CMD` into an output directory an earlier
    experiment left files in: those are stale, not this run's, and never compared."""
    project(repo, "sklearn_forest.py", "outputs/\nmetrics.json\n")
    run_ok(repo, "--output", "outputs", "--metrics", "metrics.json", "--",
           PYTHON, "sklearn_forest.py", "--n-estimators", "5", "--model-dir", "outputs/small")
    v = verify(repo, "--runs", "2", "--seed", SEED, "--output", "outputs", "--metrics",
               "metrics.json", "--", PYTHON, "sklearn_forest.py", "--n-estimators", "10",
               "--model-dir", "outputs/forest")
    assert not v.problems, "\n".join(v.problems)
    assert (v.code, v.verdict) == (0, "bitwise"), describe(v)
    assert not [n for n in v.checks() if "small" in n], describe(v)
    recorded = manifest(repo, v.report["run"])["outputs"]["outputs"]
    assert recorded["files"] == 2 and recorded.get("stale") == 2, recorded


def test_matplotlib_pdf_and_png(repo: Path) -> None:
    """(d) a figure saved as PDF (embeds /CreationDate) and PNG with the Agg backend."""
    project(repo, "figure.py", "figures/\nmetrics.json\n")
    run_ok(repo, "--output", "figures", "--metrics", "metrics.json", "--",
           PYTHON, "figure.py")
    verified_untouched(repo, "latest")


def test_script_writing_beside_its_inputs(repo: Path) -> None:
    """(e) `--train data/train.csv` (git-ignored): the script resolves the path and writes a
    feature cache and appends a log beside it; the replay's must stay out of the user's data/."""
    project(repo, "cache_beside.py", "data/\noutputs/\n")
    write_train_csv(repo / "data" / "train.csv")
    run_ok(repo, "--output", "outputs", "--metrics", "outputs/metrics.json", "--",
           PYTHON, "cache_beside.py", "--train", "data/train.csv", "--log-runs")
    assert (repo / "data" / "train.csv.cache.pt").exists()
    assert len((repo / "data" / "runs.log").read_text().splitlines()) == 1
    assert "data/train.csv" in manifest(repo)["data"]
    verified_untouched(repo, "latest")
    assert len((repo / "data" / "runs.log").read_text().splitlines()) == 1


def test_data_directory_in_config_and_a_file_inside_it_on_the_command_line(repo: Path) -> None:
    """(e, the layout `repro init` writes) `data: [data/]` in repro.yaml plus `--train
    data/train.csv`: one recipe, replayed without refusal, nothing written into data/."""
    project(repo, "cache_beside.py", "data/\noutputs/\n")
    (repo / "repro.yaml").write_text("data: [data/]\noutputs: [outputs/]\n"
                                     "metrics: outputs/metrics.json\n")
    git(repo, "add", "repro.yaml")
    git(repo, "commit", "-qm", "Configure repro")
    write_train_csv(repo / "data" / "train.csv")
    # The user ran the script once before using repro: the cache exists, and the repro run
    # only reads it.
    subprocess.run([PYTHON, "cache_beside.py", "--train", "data/train.csv", "--epochs", "1"],
                   cwd=repo, check=True, capture_output=True, timeout=300)
    shutil.rmtree(repo / "outputs")
    run_ok(repo, "--", PYTHON, "cache_beside.py", "--train", "data/train.csv")
    m = manifest(repo)
    assert "data" in m["data"] and "outputs" in m["outputs"], (m["data"], m["outputs"])
    verified_untouched(repo, "latest")


def test_save_path_that_exists_from_an_earlier_run(repo: Path) -> None:
    """(f) `--save model.pt` where model.pt (git-ignored) is left from an earlier run: it is what
    this run wrote (an output), not an input, and verify never writes the user's copy."""
    project(repo, "save_path.py", "*.pt\nmetrics.json\n")
    run_ok(repo, "--metrics", "metrics.json", "--", PYTHON, "save_path.py", "--save", "model.pt",
           "--steps", "20")
    earlier = (repo / "model.pt").read_bytes()
    done = repro(repo, "run", "--seed", str(int(SEED) + 1), "--metrics", "metrics.json", "--",
                 PYTHON, "save_path.py", "--save", "model.pt", "--steps", "20")
    assert done.returncode == 0, done.stderr
    assert "will be overwritten" in done.stdout
    assert (repo / "model.pt").read_bytes() != earlier
    v = verified_untouched(repo, "latest")
    m = manifest(repo)
    assert "model.pt" not in (m.get("data") or {}), m.get("data")
    assert "model.pt" in (m.get("outputs") or {}), m.get("outputs")
    assert "model.pt" in v.checks(), describe(v)
