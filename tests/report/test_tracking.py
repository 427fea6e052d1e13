"""`--track mlflow`: runs and sweeps logged to MLflow, read back with MLflow's own client."""

from __future__ import annotations

import asyncio
import json

import pytest
from helpers.scripted import toy_responder
from helpers.sweeps import ToyPool, make_sweep_file
from typer.testing import CliRunner

from fedtextgrad import load_config
from fedtextgrad.cli import app
from fedtextgrad.federated import prepare_data
from fedtextgrad.robustness import FaultServer
from fedtextgrad.sweep import load_sweep, run_sweep
from fedtextgrad.tracking import log_sweep

mlflow = pytest.importorskip("mlflow")


def client(uri: str):
    return mlflow.tracking.MlflowClient(tracking_uri=uri)


def toy_config(url: str) -> dict:
    return {
        "engines": {"forward": "openai:toy"},
        "task": {"name": "bbh_object_counting", "train_size": 6},
        "train": {"batch_size": 2, "local_steps": 1},
        "federation": {"clients": 2, "rounds": 2},
        "eval": {"val_size": 3, "test_size": 3},
        "llm": {"base_url": url, "api_key": "sk-local", "cache": False},
    }


def test_a_tracked_run_holds_its_params_metrics_and_artifacts(tmp_path):
    data = prepare_data(load_config(toy_config("http://unused")))
    targets = {ex.input: ex.target for ex in data.val + data.test}
    targets |= {ex.input: ex.target for part in data.client_train for ex in part}
    uri = f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}"
    with FaultServer(lambda m: toy_responder(m, targets=targets), retry_after=0) as server:
        toml = tmp_path / "toy.toml"
        toml.write_text(_toml(toy_config(server.url)))
        args = ["run", str(toml), "--out", str(tmp_path / "run"), "--track", "mlflow"]
        result = CliRunner().invoke(app, [*args, "--track-uri", uri])
    assert result.exit_code == 0, result.output
    run_id = result.output.split("tracked: MLflow run ")[1].split()[0]
    run = client(uri).get_run(run_id)
    assert run.data.params["federation.rounds"] == "2"
    assert "sk-local" not in json.dumps(run.data.params)
    assert run.data.metrics["final_test_accuracy"] == 1.0
    history = client(uri).get_metric_history(run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for a in client(uri).list_artifacts(run_id)}
    assert {"results.json", "report.md", "prompts"} <= artifacts


def test_a_tracked_sweep_is_a_parent_run_with_a_child_per_run(tmp_path):
    out = tmp_path / "out"
    sweep = load_sweep(make_sweep_file(tmp_path))
    asyncio.run(run_sweep(sweep, out, pool=ToyPool()))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = log_sweep(out, [out / run.name for run in sweep.runs], uri)
    experiment = client(uri).get_run(parent).info.experiment_id
    children = client(uri).search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert sorted(r.info.run_name for r in children) == sorted(r.name for r in sweep.runs)


def test_an_unknown_tracker_fails_before_the_run_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["run", "configs/tiny.toml", "--track", "wandb"])
    assert result.exit_code != 0 and "the tracker can be mlflow" in str(
        result.exception or result.output
    )


def _toml(data: dict) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"
