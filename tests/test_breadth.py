"""judge/breadth.py and compare: conda packages, containers, native libraries, data statistics."""

from __future__ import annotations

from typing import Any

import pytest

from repro.judge import breadth, compare
from tests.test_compare import diff_runs, run

CONDA = {"name": "ml", "prefix": "/opt/conda/envs/ml", "source": "interpreter",
         "packages": {"mkl": {"version": "2023.1.0", "build": "h213fc3f_46344",
                              "channel": "pkgs/main"},
                      "python": {"version": "3.11.9", "build": "hb806964_0_cpython",
                                 "channel": "conda-forge"}}}
CONTAINER = {"runtime": "docker", "image": "pytorch/pytorch:2.3.0", "digest": "sha256:" + "a" * 64,
             "id": "1" * 64, "source": "--image"}
NATIVE = {"cuda_runtime": "12.1", "cudnn": 8902, "nccl": "2.21.5", "mkl": "2024.2",
          "libraries": {"libgomp.so.1": None, "libopenblas.so.0": "0.3.27"}}


def env_run(**environment: Any) -> dict[str, Any]:
    return run(environment={"conda": CONDA, "container": CONTAINER, "native": NATIVE,
                            **environment})


def _counted(report: compare.DiffReport) -> list[tuple[str, Any, Any]]:
    return [(c.key, c.a, c.b) for c in report.sections["environment"].changes if c.counted]


def test_same_environment_breadth_is_same() -> None:
    report = diff_runs(env_run(), env_run())
    assert report.verdict == "same recipe, same results"


def test_conda_package_changes_are_one_change_each() -> None:
    packages = {"mkl": {"version": "2023.2.0", "build": "h84fe81f_50496",
                        "channel": "pkgs/main"},
                "libstdcxx-ng": {"version": "13.2.0", "build": "hc0a3c3a_7",
                                 "channel": "conda-forge"}}
    b = env_run(conda={**CONDA, "packages": {**CONDA["packages"], **packages}})
    report = diff_runs(env_run(), b)
    assert _counted(report) == [
        ("conda.packages.libstdcxx-ng", None, packages["libstdcxx-ng"]),
        ("conda.packages.mkl", CONDA["packages"]["mkl"], packages["mkl"])]
    assert report.verdict == "different conda packages (2), same results"


def test_conda_prefix_and_name_are_noise_and_a_missing_channel_is_not_a_change() -> None:
    no_channel = {n: {k: v for k, v in p.items() if k != "channel"}
                  for n, p in CONDA["packages"].items()}
    b = env_run(conda={"name": "ml2", "prefix": "/home/u/envs/ml2", "source": "CONDA_PREFIX",
                       "packages": no_channel})
    report = diff_runs(env_run(), b)
    assert _counted(report) == []
    assert {c.key for c in report.sections["environment"].info} == {
        "conda.name", "conda.prefix", "conda.source"}


def test_conda_channel_change_counts_when_both_sides_have_one() -> None:
    moved = {**CONDA["packages"], "mkl": {**CONDA["packages"]["mkl"], "channel": "conda-forge"}}
    report = diff_runs(env_run(), env_run(conda={**CONDA, "packages": moved}))
    assert [k for k, _, _ in _counted(report)] == ["conda.packages.mkl"]


def test_container_image_change_counts_and_its_instance_id_does_not() -> None:
    b = env_run(container={**CONTAINER, "digest": "sha256:" + "b" * 64, "id": "2" * 64})
    report = diff_runs(env_run(), b)
    assert [k for k, _, _ in _counted(report)] == ["container.digest"]
    assert [c.key for c in report.sections["environment"].info] == ["container.id"]
    assert report.verdict == "different container, same results"


def test_native_library_change() -> None:
    native = {**NATIVE, "libraries": {"libgomp.so.1": None, "libopenblas.so.0": "0.3.28"}}
    report = diff_runs(env_run(), env_run(native=native))
    assert _counted(report) == [("native.libraries.libopenblas.so.0", "0.3.27", "0.3.28")]
    assert report.verdict == "different native libraries, same results"


CSV_A = {"format": "csv", "rows": 10_000,
         "columns": {"x": {"type": "int", "nulls": 0}, "y": {"type": "float", "nulls": 3}}}
CSV_B = {"format": "csv", "rows": 9_874,
         "columns": {"x": {"type": "float", "nulls": 0}, "y": {"type": "float", "nulls": 5},
                     "label": {"type": "string", "nulls": 0}}}


@pytest.mark.parametrize(("a", "b", "expected"), [
    (CSV_A, CSV_B, {"rows": [10_000, 9_874], "columns_added": ["label"],
                    "types": {"x": ["int", "float"]}, "nulls": {"y": [3, 5]}}),
    (CSV_B, CSV_A, {"rows": [9_874, 10_000], "columns_removed": ["label"],
                    "types": {"x": ["float", "int"]}, "nulls": {"y": [5, 3]}}),
    (CSV_A, CSV_A, None),
    (CSV_A, None, None),
    (CSV_A, {"format": "csv", "error": "Permission denied"}, None),
    ({**CSV_A, "partial": True}, CSV_A, None),
    ({**CSV_A, "partial": True}, {**CSV_A, "rows": 5}, {"rows": [10_000, 5], "partial": True}),
    ({"format": "dir", "files": 2, "tables": {"t.csv": CSV_A, "gone.csv": CSV_A}},
     {"format": "dir", "files": 2, "tables": {"t.csv": CSV_B, "new.csv": CSV_B}},
     {"tables": {"t.csv": {"rows": [10_000, 9_874], "columns_added": ["label"],
                           "types": {"x": ["int", "float"]}, "nulls": {"y": [3, 5]}}}}),
    ({"format": "dir", "files": 3, "top_files": 0, "subdirs": {"cat": 2, "dog": 1}},
     {"format": "dir", "files": 4, "top_files": 0, "subdirs": {"cat": 1, "bird": 3}},
     {"files": [3, 4], "subdirs_added": {"bird": 3}, "subdirs_removed": {"dog": 1},
      "subdirs": {"cat": [2, 1]}}),
])
def test_stats_change(a: Any, b: Any, expected: Any) -> None:
    assert breadth.stats_change(a, b) == expected


def test_data_change_carries_how_the_statistics_moved() -> None:
    a = run(data={"data/train.csv": {"stats": CSV_A}})
    b = run(data={"data/train.csv": {"hash": "blake3:bb", "stats": CSV_B}})
    report = diff_runs(a, b)
    (change,) = report.sections["data"].changes
    assert change.key == "data/train.csv"
    assert change.detail["stats"]["rows"] == [10_000, 9_874]
    assert "stats" not in change.a and "stats" not in change.b  # the entry compares by hash
    assert report.to_dict()["sections"]["data"]["changes"][0]["stats"]["columns_added"] == \
        ["label"]


def test_statistics_alone_never_make_a_difference() -> None:
    # Same content (hash): one run computed statistics, the other did not, or was cut short.
    a = run(data={"data/train.csv": {"stats": CSV_A}})
    b = run(data={"data/train.csv": {"stats": {**CSV_A, "rows": 5, "partial": True}}})
    assert diff_runs(a, b).verdict == "same recipe, same results"
    assert diff_runs(a, run()).verdict == "same recipe, same results"


# ----------------------------------------------------------------------------- rendering


def test_diff_view_shows_conda_packages_and_statistics() -> None:
    from repro.cli import diffview
    from tests.test_ui_diff import rendered, row

    packages = {**CONDA["packages"], "mkl": {"version": "2023.2.0", "build": "h84fe81f_50496",
                                             "channel": "conda-forge"}}
    b = env_run(conda={**CONDA, "packages": packages})
    b["data"]["data/train.csv"].update(hash="blake3:bb", stats=CSV_B)
    a = env_run()
    a["data"]["data/train.csv"]["stats"] = CSV_A
    report = diff_runs(a, b)
    text = rendered(report)
    assert row(text, "conda package", "a", "b")
    assert row(text, "mkl", "2023.1.0 h213fc3f_46344 (pkgs/main)",
               "2023.2.0 h84fe81f_50496 (conda-forge)")
    assert ("data/train.csv: 10,000 → 9,874 rows; column `label` added; `x` int → float; "
            "nulls in `y` 3 → 5") in " ".join(text.split())
    md = diffview.markdown(report)
    assert "| conda package | a | b |" in md
    assert "`data/train.csv`: 10,000 → 9,874 rows; column `label` added" in md


def test_stats_text_of_a_class_folder() -> None:
    from repro.cli import diffview

    change = breadth.stats_change(
        {"format": "dir", "files": 1000, "subdirs": {"cat": 500, "dog": 500}},
        {"format": "dir", "files": 1020, "subdirs": {"cat": 480, "dog": 500, "bird": 40}})
    assert change is not None
    assert diffview.stats_text(change) == ("1,000 → 1,020 files; class `bird` added (40 files); "
                                           "class `cat` 500 → 480 files")
