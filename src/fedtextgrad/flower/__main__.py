"""`python -m fedtextgrad.flower app CONFIG --out RUN_DIR --dir APP_DIR`: write the Flower app
directory for an experiment, to submit with `flwr run APP_DIR <superlink>` (docs/flower.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fedtextgrad.errors import FedTextGradError
from fedtextgrad.redaction import redact

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
) -> None:
    """Write a Flower app that runs CONFIG, for `flwr run DIR <superlink> --stream`."""
    from fedtextgrad.config import load_config
    from fedtextgrad.flower.app import write_app

    if not Path(out).is_absolute():
        raise FedTextGradError(
            f"--out '{out}' is relative: give an absolute path on the SuperLink's host"
        )
    written = write_app(
        directory, load_config(config, overrides), out, resume=resume, node_wait=node_wait
    )
    typer.echo(
        f"wrote {written / 'pyproject.toml'}; submit it with: flwr run {written} <superlink> --stream"
    )


def run() -> None:
    try:
        cli()
    except FedTextGradError as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
