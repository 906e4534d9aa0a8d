"""manifest: round trips, validation, and hostile files that must never execute."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repro import errors
from repro.record import manifest

# Every code point, lone surrogates included: argv and file names carry them for bytes that
# are not UTF-8 (hypothesis leaves surrogates out of st.characters() unless asked).
ANY_CHAR = st.characters(exclude_categories=())


def sample(**run: object) -> manifest.Manifest:
    info = {"run_id": "20261123T142501.123456Z-3f2a", "status": "succeeded",
            "started_at": "2026-11-23T14:25:01.123456Z", **run}
    return manifest.Manifest(
        run=manifest.RunInfo(**info),  # type: ignore[arg-type]
        command=manifest.Command(argv=("python", "train.py", "--lr", "0.01")),
        seed=manifest.Seed(value=7, source="flag"),
        code=manifest.Code(commit="a" * 40, branch="main"),
        metrics=manifest.Metrics(final={"loss": 0.5}),
    )


def test_manifest_round_trips_through_yaml(tmp_path: Path) -> None:
    m = sample(tags={"team": "vision"}, exit_code=0, duration_s=1.5)
    path = tmp_path / "manifest.yaml"
    manifest.write(path, m)
    assert manifest.read(path) == m
    assert path.read_text().startswith("schema: repro/run/v1\n")


@settings(max_examples=50, deadline=None)
@given(argv=st.lists(st.text(alphabet=ANY_CHAR, min_size=1), min_size=1, max_size=5),
       note=st.one_of(st.none(), st.text(alphabet=ANY_CHAR)))
def test_manifest_any_text_round_trips(argv: list[str], note: str | None) -> None:
    m = manifest.Manifest(run=manifest.RunInfo(run_id="x", status="running", started_at="t",
                                               note=note),
                          command=manifest.Command(argv=tuple(argv)),
                          seed=manifest.Seed(1, "generated"), code=manifest.Code(commit="c"))
    assert manifest.from_dict(manifest.loads(manifest.dumps(manifest.to_dict(m)), "x")) == m


@pytest.mark.parametrize(("text", "fragment"), [
    ("schema: repro/run/v1\nrun: {run_id: x, status: succ", "not valid YAML"),
    ("schema: repro/run/v1\nrun:\n  run_id: x\n", "section 'command' is missing"),
    ("schema: repro/run/v9\n", "unknown schema 'repro/run/v9'"),
    ("- just\n- a list\n", "is not a mapping"),
    ("\x00\x01garbage", "not valid YAML"),
    ("schema: repro/run/v1\nrun: !!python/object/apply:os.system ['touch PWNED']\n",
     "not valid YAML"),
])
def test_manifest_bad_files_are_one_line_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    with pytest.raises(errors.ManifestError) as e:
        manifest.read(path)
    assert fragment in e.value.message
    assert "\n" not in e.value.message
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_manifest_wrong_types_are_named() -> None:
    d = manifest.to_dict(sample())
    d["seed"]["value"] = "seven"
    with pytest.raises(errors.ManifestError, match="'value' must be int"):
        manifest.from_dict(d, "m.yaml")
    d = manifest.to_dict(sample())
    d["run"]["status"] = "exploded"
    with pytest.raises(errors.ManifestError, match="'status' is 'exploded'"):
        manifest.from_dict(d, "m.yaml")


def test_write_text_atomic_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    manifest.write_text_atomic(path, "a: 1\n")
    manifest.write_text_atomic(path, "a: 2\n")
    assert path.read_text() == "a: 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.yaml"]


_scalars = (st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64)
            | st.floats(allow_nan=False) | st.text(alphabet=ANY_CHAR, max_size=20))
_plain_data = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(alphabet=ANY_CHAR, max_size=10), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.text(max_size=8), _plain_data, max_size=5))
def test_dumps_round_trips_through_pyyaml_safe_load(data: dict) -> None:  # type: ignore[type-arg]
    import yaml

    text = manifest.dumps(data)
    assert yaml.safe_load(text) == data  # any YAML reader of the manifest
    assert manifest.loads(text, "m") == data  # repro's own, libyaml first


@pytest.mark.parametrize("value", [
    "yes", "No", "null", "~", "1e5", "0x1F", "3.11", "-", "- x", "a: b", "#c", "@x", "!tag",
    "[x]", "{x}", "*ref", "&anchor", "%TAG", "'q'", '"q"', "x\u2028y", "\udc80abc", "\ufeff",
    "tab\there", "", " lead", "trail ", "new\nline", ".inf", ".nan", "2026-11-23",
])
def test_dumps_quotes_ambiguous_strings(value: str) -> None:
    import yaml

    assert yaml.safe_load(manifest.dumps({"k": value, value: [value]})) == {"k": value,
                                                                              value: [value]}


@pytest.mark.parametrize("value", [1e-05, 1e16, -0.0, 2.5e-300, float("inf"), float("-inf")])
def test_dumps_floats_read_back_as_floats(value: float) -> None:
    import yaml

    assert yaml.safe_load(manifest.dumps({"x": value})) == {"x": value}


@pytest.mark.parametrize(("section", "key", "bad"), [
    ("determinism", "hook", "x"), ("determinism", "user_set", ["LD_PRELOAD"]),
    ("determinism", "env", 5), ("determinism", "threads", "two"),
    ("environment", "python", "3.11"), ("environment", "packages", []),
    ("hardware", "cpu", "fast"), ("hardware", "gpus", {"0": "x"}), ("metrics", "final", [1]),
])
def test_nested_fields_of_the_wrong_type_are_one_clear_error(section: str, key: str,
                                                             bad: object) -> None:
    d = manifest.to_dict(sample())
    d[section] = {**d[section], key: bad}
    with pytest.raises(errors.ManifestError, match=rf"{section}\.{key} must be a"):
        manifest.from_dict(d, "m.yaml")


def test_hook_lists_and_path_entries_are_checked() -> None:
    d = manifest.to_dict(sample())
    d["determinism"] = {"hook": {"seeded": "random"}}
    with pytest.raises(errors.ManifestError, match=r"hook\.seeded must be a list"):
        manifest.from_dict(d, "m.yaml")
    d = manifest.to_dict(sample())
    d["outputs"] = {"out": "blake3:00"}
    with pytest.raises(errors.ManifestError, match=r"outputs\['out'\] must be a mapping"):
        manifest.from_dict(d, "m.yaml")


@pytest.mark.parametrize("commit", ["--output=/tmp/x", "HEAD", "abc def", "ABC"])
def test_a_commit_id_that_is_not_hex_is_refused(tmp_path: Path, commit: str) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text("schema: repro/run/v1\nrun: {run_id: x, status: succeeded, started_at: t}\n"
                    "command: {argv: [python]}\nseed: {value: 1, source: flag}\n"
                    f"code: {{commit: {commit!r}}}\n")
    with pytest.raises(errors.ManifestError, match="hexadecimal commit id"):
        manifest.read(path)


# ------------------------------------------------------------------------------ typed sections


def test_a_real_run_reads_typed_and_writes_back_byte_for_byte(repo: Path) -> None:
    from repro.cli.main import main
    from tests.conftest import PYTHON

    (repo / "out").mkdir()
    script = ("import json, pathlib; pathlib.Path('out/w.txt').write_text('1');"
              "pathlib.Path('m.json').write_text(json.dumps({'loss': 0.5, 'val': {'acc': 1}}))")
    assert main(["run", "--seed", "5", "--output", "out", "--metrics", "m.json", "--",
                 PYTHON, "-c", script]) == 0
    (path,) = (repo / ".repro" / "runs").glob("*/manifest.yaml")
    text = path.read_text(encoding="utf-8")
    m = manifest.read(path)
    assert manifest.dumps(manifest.to_dict(m)) == text
    assert isinstance(m.determinism, manifest.Determinism) and m.determinism.level == "strict"
    assert m.determinism.hook is not None and m.determinism.hook.ran is True
    assert m.environment.python is not None and m.environment.python.executable
    assert m.environment.packages and isinstance(m.hardware.gpus, tuple)
    assert m.outputs["out"].kind == "dir" and m.outputs["out"].files == 1
    assert m.metrics.final == {"loss": 0.5, "val.acc": 1} and m.metrics.source == "m.json"


def test_keys_a_section_does_not_declare_are_kept_in_place() -> None:
    d = manifest.to_dict(sample())
    d["hardware"] = {"cpu": {"model": "x"}, "future_field": [1, {"a": None}], "gpus": [],
                     "nvml_error": None}
    d["metrics"] = {"final": {"loss": 1.0}, "extra_key": "kept", "source": None}
    d["outputs"] = {"o": {"kind": "file", "hash": "blake3:00", "size": 1, "mode": 0o644}}
    d["determinism"] = {"level": "seed", "env": None, "hook": None}
    m = manifest.from_dict(d, "m.yaml")
    assert m.hardware.extra == {"future_field": [1, {"a": None}]}
    assert m.metrics.extra == {"extra_key": "kept"} and m.outputs["o"].extra == {"mode": 0o644}
    assert m.determinism.env == {} and m.determinism.hook is None
    text = manifest.dumps(d)
    assert manifest.dumps(manifest.to_dict(m)) == text  # order, nulls and extras as read


def test_sections_built_in_code_write_only_what_is_set() -> None:
    m = sample()
    assert manifest.to_dict(m)["metrics"] == {"final": {"loss": 0.5}}
    assert manifest.to_dict(m)["determinism"] == {} and manifest.to_dict(m)["outputs"] == {}


@pytest.mark.parametrize(("section", "value", "fragment"), [
    ("outputs", {"o": {"kind": 3}}, r"outputs\['o'\]\.kind must be a string"),
    ("data", {"d": {"size": "big"}}, r"data\['d'\]\.size must be an integer"),
    ("hardware", {"gpus": ["H100"]}, r"hardware\.gpus\[0\] must be a mapping"),
    ("determinism", {"env": {"A": 1}}, r"determinism\.env\['A'\] must be a string"),
    ("environment", {"lockfile": {"matches": "yes"}}, r"environment\.lockfile\.matches must be"),
])
def test_typed_fields_are_checked_where_they_are_read(section: str, value: object,
                                                      fragment: str) -> None:
    d = manifest.to_dict(sample())
    d[section] = value
    with pytest.raises(errors.ManifestError, match=fragment):
        manifest.from_dict(d, "m.yaml")


def test_every_schema_dataclass_has_a_docstring() -> None:
    """Without one, dataclasses computes `inspect.signature(cls)` for `__doc__` when the class
    is made: ~1 ms of `repro run`'s start-up over the schema's classes."""
    import dataclasses as dc

    from repro.record import schema

    classes = [c for c in vars(schema).values()
               if isinstance(c, type) and dc.is_dataclass(c) and c.__module__ == schema.__name__]
    assert len(classes) > 10
    # the generated one reads `Name(field: type, ...)`
    assert [c.__name__ for c in classes
            if not c.__doc__ or c.__doc__.startswith(c.__name__ + "(")] == []


def test_records_compare_hash_and_show_like_generated_dataclasses() -> None:
    # The shared __eq__/__hash__/__repr__ (record/fields.plain_methods) keep dataclass meaning:
    # fields marked compare=False (the keys as read) do not count, another class never equals.
    from repro.record import schema

    a = schema.Seed(value=1, source="flag")
    assert a == schema.Seed(value=1, source="flag") and a != schema.Seed(value=2, source="flag")
    assert hash(a) == hash(schema.Seed(value=1, source="flag")) and repr(a) == \
        "Seed(value=1, source='flag')"
    p = schema.Patch.from_dict({"file": "p.diff", "hash": "ab"}, "code.patch")
    q = schema.Patch.from_dict({"hash": "ab", "file": "p.diff"}, "code.patch")
    assert p.keys != q.keys and p == q  # (a record with `extra` is unhashable, as before)
    assert "keys=" not in repr(p) and p != schema.Seed(value=1, source="flag")
