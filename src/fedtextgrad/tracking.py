"""Experiment tracking (`--track mlflow`, the `track` extra): a finished run, or a sweep as a
parent run with one child per run, logged to MLflow from the run directories it wrote.

Logged: the resolved config as params, each round's validation accuracy, prompt length and
tokens (step = round), the result and the usage as metrics, and the run directory's prompts,
results.json and reports as artifacts. The tracking URI is `--track-uri`, else
MLFLOW_TRACKING_URI, else a SQLite store `mlflow.db` in the current directory (MLflow 3 keeps its
file store in maintenance mode)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from fedtextgrad.config import flatten
from fedtextgrad.errors import ConfigError
from fedtextgrad.federated.store import read_results
from fedtextgrad.record import Run

EXPERIMENT = "fedtextgrad"
# The command-line options of `run` and `sweep`.
TrackOption = Annotated[str | None, typer.Option("--track", help="Log the runs to: mlflow.")]
TrackUriOption = Annotated[
    str | None, typer.Option("--track-uri", help="MLflow tracking URI (default: ./mlflow.db).")
]
ARTIFACTS = ("results.json", "report.md", "report.html", "accuracy.png", "prompts")


def require_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ConfigError("--track mlflow needs MLflow: pip install 'fedtextgrad[track]'") from None
    return mlflow


def check_tracker(track: str) -> None:
    """Before a run, not after it: an unknown tracker, or MLflow missing."""
    if track != "mlflow":
        raise ConfigError(f"--track {track}: the tracker can be mlflow")
    require_mlflow()


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


@contextmanager
def _session(uri: str | None) -> Iterator[Any]:
    mlflow, uri = require_mlflow(), uri or default_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(EXPERIMENT) is None:
        store = Path(uri.removeprefix("sqlite:///")).resolve().parent  # artifacts beside it
        mlflow.create_experiment(EXPERIMENT, artifact_location=(store / "mlartifacts").as_uri())
    mlflow.set_experiment(EXPERIMENT)
    yield mlflow


def log_run(run_dir: str | Path, uri: str | None = None) -> str:
    """Log one run directory; returns the MLflow run id."""
    with _session(uri) as mlflow:
        return _log(mlflow, Path(run_dir))


def log_sweep(sweep_dir: str | Path, run_dirs: list[Path], uri: str | None = None) -> str:
    """Log a sweep as a parent run and its finished runs as children; returns the parent's id."""
    sweep_dir = Path(sweep_dir)
    with _session(uri) as mlflow, mlflow.start_run(run_name=sweep_dir.name) as parent:
        mlflow.set_tag("fedtextgrad.sweep", str(sweep_dir))
        for run_dir in run_dirs:
            if (run_dir / "results.json").exists():
                _log(mlflow, run_dir, nested=True)
        return parent.info.run_id


def _log(mlflow: Any, run_dir: Path, nested: bool = False) -> str:
    record = read_results(run_dir / "results.json", "remove it, or track another run")
    with mlflow.start_run(run_name=run_dir.name, nested=nested) as run:
        mlflow.set_tags({"fedtextgrad.status": record.status, "fedtextgrad.dir": str(run_dir)})
        # Params are text of at most 6,000 characters.
        params = {k: json.dumps(v)[:6000] for k, v in flatten(record.config).items()}
        mlflow.log_params(params)
        for entry in record.rounds:
            mlflow.log_metrics(
                {
                    "val_accuracy": entry.val_accuracy,
                    "prompt_tokens": entry.prompt_tokens,
                    "round_tokens": entry.usage.tokens_used,
                },
                step=entry.round,
            )
        mlflow.log_metrics(_summary(record))
        for name in ARTIFACTS:
            path = run_dir / name
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=name)
            elif path.is_file():
                mlflow.log_artifact(str(path))
        return run.info.run_id


def _summary(record: Run) -> dict[str, float]:
    usage = record.usage
    metrics = {
        "calls": usage.calls,
        "tokens_used": usage.tokens_used,
        "paid_tokens": usage.total_tokens,
        "wall_seconds": record.wall_seconds,
    }
    if initial := record.initial:
        metrics |= {
            "initial_val_accuracy": initial.val_accuracy,
            "initial_test_accuracy": initial.test_accuracy,
        }
    if final := record.final:
        metrics |= {
            "final_val_accuracy": final.val_accuracy,
            "final_test_accuracy": final.test_accuracy,
            "test_gain": final.paired.diff,
            "test_gain_low": final.paired.low,
            "test_gain_high": final.paired.high,
        }
    return metrics
