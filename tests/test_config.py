"""config: both file forms, and errors that name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from repro import errors
from repro.judge.compare import Tolerance
from repro.record import config


def test_defaults_without_a_file(tmp_path: Path) -> None:
    assert config.load(tmp_path) == config.Config()


def test_repro_yaml(tmp_path: Path) -> None:
    (tmp_path / "repro.yaml").write_text(
        "seed: 7\ndeterminism: warn\ndata: [data/]\noutputs: out.pt\nmetrics: m.json\n"
        "tolerance: {rtol: 0.01, metrics: {loss: 0.001}}\n")
    cfg = config.load(tmp_path)
    assert (cfg.seed, cfg.determinism, cfg.data, cfg.outputs, cfg.metrics) == (
        7, "warn", ("data/",), ("out.pt",), "m.json")
    assert cfg.tolerance == Tolerance(rtol=0.01, atol=0.0, per_metric={"loss": 0.001})
    assert cfg.source == "repro.yaml"


def test_pyproject_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname="x"\n[tool.repro]\nseed = 3\n'
                                             'env_allow = ["WANDB_MODE"]\n')
    cfg = config.load(tmp_path)
    assert cfg.seed == 3 and cfg.env_allow == ("WANDB_MODE",)
    assert cfg.source == "pyproject.toml"


@pytest.mark.parametrize(("text", "fragment"), [
    ("sede: 3\n", "repro.yaml: unknown key 'sede'"),
    ("seed: three\n", "repro.yaml: 'seed' must be an integer from 0 to 4294967295, got 'three'"),
    ("determinism: max\n", "repro.yaml: 'determinism' must be one of off, seed, warn, strict"),
    ("data: 3\n", "repro.yaml: 'data' must be a list of paths"),
    ("tolerance: {rtol: big}\n", "repro.yaml: 'tolerance' must be"),
    ("- 1\n", "repro.yaml must be a mapping"),
    ("seed: [\n", "not valid YAML"),
])
def test_config_errors_name_key_and_file(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "repro.yaml").write_text(text)
    with pytest.raises(errors.ConfigError) as e:
        config.load(tmp_path)
    assert fragment in e.value.message


def test_two_config_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "repro.yaml").write_text("seed: 1\n")
    (tmp_path / "pyproject.toml").write_text("[tool.repro]\nseed = 2\n")
    with pytest.raises(errors.ConfigError, match=r"both repro\.yaml and"):
        config.load(tmp_path)


def test_unquoted_off_is_the_off_level(tmp_path: Path) -> None:
    (tmp_path / "repro.yaml").write_text("determinism: off\n")  # YAML 1.1 reads it as false
    assert config.load(tmp_path).determinism == "off"


def test_data_stats_keys(tmp_path: Path) -> None:
    (tmp_path / "repro.yaml").write_text("data_stats: true\ndata_stats_seconds: 5\n")
    cfg = config.load(tmp_path)
    assert cfg.data_stats is True and cfg.data_stats_seconds == 5.0
    assert config.Config().data_stats is False


@pytest.mark.parametrize(("text", "fragment"), [
    ("data_stats: yes please\n", "'data_stats' must be true or false"),
    ("data_stats: 1\n", "'data_stats' must be true or false"),
    ("data_stats_seconds: 0\n", "'data_stats_seconds' must be a number of seconds"),
    ("data_stats_seconds: .inf\n", "'data_stats_seconds' must be a number of seconds"),
])
def test_data_stats_keys_refused(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "repro.yaml").write_text(text)
    with pytest.raises(errors.ConfigError) as e:
        config.load(tmp_path)
    assert fragment in e.value.message
