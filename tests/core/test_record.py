"""The run record: results.json is written and read through typed models, and its JSON Schema
in docs/ describes what runs really write."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from helpers.federation import config, run

from fedtextgrad.record import RecordError, dump_run, read_run, schema

ROOT = Path(__file__).parents[2]
SCHEMA = ROOT / "docs" / "results.schema.json"
REAL_RUNS = sorted((ROOT / "docs" / "results" / "learning_runs").glob("*/results.json"))


def test_the_schema_in_docs_is_generated_from_the_models():
    assert SCHEMA.read_text() == schema(), (
        "regenerate it: python -c 'from fedtextgrad.record import schema; "
        'print(schema(), end="")\' > docs/results.schema.json'
    )


def test_a_runs_results_validate_against_the_schema_and_read_back_unchanged(tmp_path):
    run(config(federation={"rounds": 2}), tmp_path)
    written = json.loads((tmp_path / "results.json").read_text())
    jsonschema.validate(written, json.loads(SCHEMA.read_text()))
    assert json.loads(dump_run(read_run(written))) == written


@pytest.mark.skipif(not REAL_RUNS, reason="no archived runs")
@pytest.mark.parametrize("path", REAL_RUNS[:3], ids=lambda p: p.parent.name)
def test_real_runs_of_the_embedded_models_validate_against_the_schema(path):
    jsonschema.validate(json.loads(path.read_text()), json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: [r], "not a JSON object"),
        (lambda r: r | {"status": "paused"}, "'status': input should be"),
        (lambda r: r | {"final": {"prompt": 3}}, "'final.prompt': input should be a valid string"),
        (lambda r: {k: v for k, v in r.items() if k != "final"}, "a complete run without 'final'"),
        (lambda r: r | {"rounds": [{"round": 1}]}, "'rounds.0.sampled': field required"),
        (lambda r: r | {"schema_version": 9}, "'schema_version': input should be 1"),
        (lambda r: r | {"surprise": 1}, "'surprise': extra inputs are not permitted"),
    ],
)
def test_what_is_wrong_is_said_in_one_line(tmp_path, change, problem):
    run(config(federation={"rounds": 1}), tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    with pytest.raises(RecordError) as caught:
        read_run(change(results))
    assert str(caught.value).startswith(problem) and "\n" not in str(caught.value)
