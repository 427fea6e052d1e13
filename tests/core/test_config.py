"""Config files, overrides and their one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fedtextgrad import FedTextGradError, load_config
from fedtextgrad.config import same_experiment

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.toml"))


def test_defaults_and_engine_resolution():
    cfg = load_config({"task": {"name": "bbh_object_counting"}})
    assert cfg.engines.resolved == {
        "forward": "local:qwen2.5-coder-1.5b",
        "feedback": "local:qwen2.5-coder-1.5b",
        "aggregator": "local:qwen2.5-coder-1.5b",
    }
    assert (cfg.train.batch_size, cfg.train.resolved_gate, cfg.federation.clients) == (
        3,
        "select",
        1,
    )
    paper = load_config({"task": {"name": "bbh_object_counting"}, "train": {"method": "paper"}})
    assert paper.train.resolved_gate == "batch"


def test_overrides_parse_toml_values_and_bare_words(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[task]\nname = "bbh_object_counting"\n')
    cfg = load_config(
        path,
        [
            "train.local_steps=5",
            "federation.sample_fraction=0.5",
            "task.name=bbh_word_sorting",
            "engines.feedback=local:qwen2.5-coder-0.5b",
            "llm.cache=false",
        ],
    )
    assert cfg.train.local_steps == 5 and cfg.federation.sample_fraction == 0.5
    assert cfg.task.name == "bbh_word_sorting" and cfg.llm.cache is False
    assert cfg.engines.feedback == "local:qwen2.5-coder-0.5b"


@pytest.mark.parametrize(
    "data, overrides, message",
    [
        ({"task": {"name": "x"}, "trian": {}}, [], "unknown key 'trian'"),
        (
            {"task": {"name": "x"}},
            ["train.batch_size=0"],
            "train.batch_size: Input should be greater",
        ),
        ({"task": {"name": "x"}}, ["federation.clients=0"], "federation.clients"),
        ({"task": {"name": "x"}}, ["train.gate=sometimes"], "train.gate: Input should be 'select'"),
        ({"task": {"name": "x"}}, ["federation.min_clients=4"], "min_clients (4) exceeds"),
        ({}, [], "missing key 'task'"),
        ({"task": {"name": "a", "names": ["b"]}}, [], "set exactly one of task.name or task.names"),
        ({"task": {"name": "x"}}, ["oops"], "invalid override 'oops'"),
        ({"task": {"name": "x"}}, ["eval.server_val_size=5"], "needs eval.val_size: set both"),
    ],
)
def test_bad_configs_get_one_line(data, overrides, message):
    with pytest.raises(FedTextGradError) as info:
        load_config(data, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FedTextGradError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[task\nname=")
    with pytest.raises(FedTextGradError, match="is not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    if "base" in tomllib.loads(path.read_text()):
        pytest.skip("a sweep file: tested with the sweeps")
    load_config(path)


def test_a_setting_added_since_a_run_counts_at_its_default():
    cfg = load_config({"task": {"name": "x"}})
    stored = cfg.public_dict()
    del stored["eval"]["server_val_size"]  # a run stored before the setting existed
    assert same_experiment(stored, cfg)
    assert not same_experiment(stored, load_config({"task": {"name": "x"}}, ["eval.val_size=3"]))
    stored["eval"]["removed_setting"] = 1
    assert not same_experiment(stored, cfg)
