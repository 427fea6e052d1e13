"""`python -m fedtextgrad.flower app CONFIG --out RUN_DIR --dir APP_DIR`: write the Flower app
directory for an experiment, to submit with `flwr run APP_DIR <superlink>`;
`python -m fedtextgrad.flower superlink ...`: a closed SuperLink (docs/flower.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedtextgrad.errors import ConfigError, FedTextGradError, fail

cli = typer.Typer(
    help="FedTextGrad on a Flower deployment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@cli.callback()
def main() -> None:
    """FedTextGrad on a Flower deployment (see docs/flower.md)."""


@cli.command()
def app(
    config: Annotated[Path, typer.Argument(help="Experiment config (TOML).")],
    out: Annotated[
        str, typer.Option("--out", help="Run directory on the SuperLink's host (absolute path).")
    ],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the app.")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set train.local_steps=5"),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run in --out.")
    ] = False,
    node_wait: Annotated[
        float, typer.Option("--node-wait", help="Seconds the server waits for all SuperNodes.")
    ] = 300.0,
    nodes: Annotated[
        list[str] | None,
        typer.Option(
            "--node",
            help="CLIENT=KEY: only the SuperNode with this public key (.pub file or SHA256: "
            "fingerprint) serves CLIENT. Give one per client, or none (open federation).",
        ),
    ] = None,
) -> None:
    """Write a Flower app that runs CONFIG, for `flwr run DIR <superlink> --stream`."""
    from fedtextgrad.config import load_config
    from fedtextgrad.flower.bundle import write_app
    from fedtextgrad.flower.identity import assignments

    if not Path(out).is_absolute():
        raise ConfigError(
            f"--out '{out}' is relative: give an absolute path on the SuperLink's host"
        )
    experiment = load_config(config, overrides)
    keys = assignments(nodes or [], experiment.federation.clients)
    written = write_app(
        directory, experiment, out, resume=resume, node_wait=node_wait, nodes=keys or None
    )
    typer.echo(
        f"wrote {written / 'pyproject.toml'}; submit it with: flwr run {written} <superlink> --stream"
    )


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def superlink(
    context: typer.Context,
    operator_port: Annotated[
        int,
        typer.Option(
            "--operator-port",
            help="Port of the operator's listener (127.0.0.1 only): Control and Runtime APIs.",
        ),
    ] = 9093,
) -> None:
    """Start a closed SuperLink: --host/--port serve the Fleet API only, 127.0.0.1:OPERATOR_PORT
    everything else. Other options are flower-superlink's (TLS and --enable-supernode-auth
    required)."""
    from fedtextgrad.flower.superlink import serve

    serve(context.args, operator_port)


def run() -> None:
    try:
        cli()
    except FedTextGradError as error:
        fail(str(error), error.exit_status)


if __name__ == "__main__":
    run()
