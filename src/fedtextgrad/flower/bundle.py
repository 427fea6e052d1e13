"""The Flower app directory that `flwr run` bundles: a pyproject.toml naming our components and
carrying the experiment in `[tool.flwr.app.config]`. The code itself is the installed
fedtextgrad package, present on every host (the bundle holds no Python files)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import tomli_w

from fedtextgrad import __version__
from fedtextgrad.config import ExperimentConfig
from fedtextgrad.flower.messages import config_to_text

COMPONENTS = {
    "serverapp": "fedtextgrad.flower.apps:server_app",
    "clientapp": "fedtextgrad.flower.apps:client_app",
}


def app_pyproject(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    node_wait: float = 300.0,
    nodes: Mapping[int, str] | None = None,
) -> dict:
    return {
        "project": {
            "name": "fedtextgrad-run",
            "version": __version__,
            "description": "A FedTextGrad experiment (federated prompt optimization)",
            "license": "MIT",
            # fedtextgrad itself is installed on every host beforehand (models, data, keys).
            "dependencies": ["flwr>=1.42.0"],
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "fedtextgrad",
                    "components": COMPONENTS,
                    "config": {
                        "experiment": config_to_text(config),
                        "out-dir": str(out_dir),
                        "resume": resume,
                        "node-wait": float(node_wait),
                        # client -> the key fingerprint of the one SuperNode that may serve it
                        "nodes": json.dumps({str(c): k for c, k in sorted((nodes or {}).items())}),
                    },
                }
            }
        },
    }


def write_app(
    directory: str | Path,
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    node_wait: float = 300.0,
    nodes: Mapping[int, str] | None = None,
) -> Path:
    """Write the app directory for `flwr run DIRECTORY <superlink>`. `out_dir` is a path on the
    SuperLink's host, where the ServerApp writes the run directory; `nodes` maps each client to
    the key fingerprint of its SuperNode (none: any SuperNode may claim a partition)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pyproject = app_pyproject(config, out_dir, resume=resume, node_wait=node_wait, nodes=nodes)
    (directory / "pyproject.toml").write_text(tomli_w.dumps(pyproject))
    return directory


def read_nodes(run_config: Mapping[str, object]) -> dict[int, str]:
    """The `nodes` run config as {client: key fingerprint} (empty: an open federation)."""
    return {int(c): str(k) for c, k in json.loads(str(run_config.get("nodes") or "{}")).items()}
