"""The `fedtextgrad` command line. Every user-facing failure ends as one line on stderr."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fedtextgrad.errors import FedTextGradError, fail
from fedtextgrad.metrics.cli import uid as uid_command
from fedtextgrad.report.cli import report as report_command
from fedtextgrad.stats import Paired
from fedtextgrad.sweep import command as sweep_command
from fedtextgrad.tasks.cli import app as tasks_app
from fedtextgrad.tracking import TrackOption, TrackUriOption

app = typer.Typer(
    help="Federated prompt optimization with textual gradients.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(tasks_app, name="tasks")
app.command("uid")(uid_command)
app.command("sweep")(sweep_command)
app.command("report")(report_command)
console = Console(stderr=True)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Experiment config (TOML).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default: runs/<config name>).")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set train.local_steps=5"),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run in --out.")
    ] = False,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            help="in-process, or flower: a local Flower deployment (one process per client).",
        ),
    ] = "in-process",
    canaries: Annotated[
        int | None,
        typer.Option(
            "--canaries",
            min=0,
            help="Plant N made-up secrets in one client's data (privacy.canaries; docs/privacy.md).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print the schedule and estimated calls, tokens and cost."),
    ] = False,
    track: TrackOption = None,
    track_uri: TrackUriOption = None,
) -> None:
    """Run a federated (or, with one client, centralized) experiment."""
    from fedtextgrad.config import load_config
    from fedtextgrad.experiment import run_async

    if canaries is not None:
        overrides = [*(overrides or []), f"privacy.canaries={canaries}"]
    cfg = load_config(config, overrides)
    if dry_run:
        _print_estimate(cfg)
        return
    if track:
        from fedtextgrad.tracking import check_tracker

        check_tracker(track)
    out = out or Path("runs") / config.stem
    from fedtextgrad.estimate import estimate
    from fedtextgrad.federated import prepare_data

    est = estimate(cfg, prepare_data(cfg))  # the bar counts scheduled calls: it gives an ETA
    with _progress() as progress:
        bar = progress.add_task("initial evaluation", total=est.total_calls)

        def show(event: dict) -> None:
            kind = event["event"]
            if kind == "resume" and (done := event["completed_rounds"]):
                progress.reset(bar, completed=est.after_round[done - 1])  # speed: from now
            elif kind == "initial":
                progress.update(bar, completed=est.after_initial)
                progress.console.print(
                    f"initial prompt: val {event['val_accuracy']:.3f}  test {event['test_accuracy']:.3f}"
                )
            elif kind == "round_start":
                progress.update(
                    bar, description=f"round {event['round']}: clients {event['clients']}"
                )
            elif kind == "step":
                verdict = "accepted" if event["accepted"] else "kept the prompt"
                progress.update(
                    bar,
                    description=f"round {event['round']}: client {event['client']} "
                    f"step {event['step']} {verdict}",
                    advance=est.per_step[event["round"] - 1],
                )
            elif kind == "round":
                progress.update(bar, completed=est.after_round[event["round"] - 1])
                progress.console.print(
                    f"round {event['round']}: val {event['val_accuracy']:.3f}  "
                    f"prompt {event['prompt_tokens']} tokens  {event['seconds']:.0f} s"
                )
            elif kind == "client_failure":
                progress.console.print(
                    f"[yellow]client {event['client']} failed: {escape(event['error'])}"
                )
            elif kind == "canary":
                where = (
                    f"client {event['client']}'s upload" if "client" in event else "global prompt"
                )
                progress.console.print(
                    f"[magenta]canary {event['canary']} ({', '.join(event['parts'])}) in {where}"
                )

        results = asyncio.run(run_async(cfg, out, resume=resume, on_event=show, runtime=runtime))
    run = results.record
    if run.status == "budget":
        spent, done = run.usage.total_tokens, len(run.rounds)
        typer.echo(
            f"stopped at the token budget after round {done} of {cfg.federation.rounds} "
            f"({spent} tokens, llm.budget_tokens={cfg.llm.budget_tokens}): continue with --resume "
            "and a larger --set llm.budget_tokens=N"
        )
        return
    if track:
        from fedtextgrad.tracking import log_run

        typer.echo(f"tracked: MLflow run {log_run(out, track_uri)}")
    final = run.final
    chosen = "the initial prompt" if final.round == 0 else f"round {final.round}'s prompt"
    typer.echo(f"results: {out / 'results.json'}")
    typer.echo(
        f"final prompt ({chosen}, the best on validation: {final.val_accuracy:.2f}): "
        f"{out / 'prompts' / 'final.txt'}"
    )
    typer.echo(
        f"{run.usage.calls} calls, {run.usage.total_tokens} tokens, {run.wall_seconds:.0f} s"
    )
    typer.echo(Paired(**final.paired.model_dump()).describe())


def _print_estimate(cfg) -> None:
    from fedtextgrad.estimate import estimate
    from fedtextgrad.federated import prepare_data

    est = estimate(cfg, prepare_data(cfg))
    fed = cfg.federation
    typer.echo(
        f"{fed.rounds} rounds of {len(est.clients[0])} of {fed.clients} clients, "
        f"{cfg.train.local_steps} local steps of {cfg.train.batch_size} examples, "
        f"{fed.aggregation} ({cfg.train.method} method); expected with every answer wrong:"
    )
    for purpose, calls in est.calls.most_common():
        typer.echo(f"  {purpose:<11} {calls:>7,.0f} calls  ~{est.tokens[purpose]:>11,} tokens")
    total = sum(est.tokens.values())
    typer.echo(f"  {'total':<11} {sum(est.calls.values()):>7,.0f} calls  ~{total:>11,} tokens")
    paid = [spec for spec in cfg.engines.resolved.values() if spec.startswith("openai:")]
    cost = est.cost(cfg.llm.price_per_mtok)
    if paid and cost is not None:
        typer.echo(
            f"  at most ~${cost:,.2f} at ${cfg.llm.price_per_mtok}/M tokens (every engine's)"
        )
    elif not paid:
        typer.echo("  local engines only: no money, only time")


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="The question.")],
    engine: Annotated[str, typer.Option("--engine", help="local:<model> or openai:<model>")] = (
        "local:qwen2.5-coder-1.5b"
    ),
    system: Annotated[str | None, typer.Option("--system", help="A system prompt.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens")] = 512,
    usage: Annotated[
        bool, typer.Option("--usage", help="Also print calls, tokens and latency.")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not reuse a cached answer.")
    ] = False,
) -> None:
    """Ask an engine one question and print its reply."""
    from fedtextgrad.llm import LLMSettings, open_engine

    async def main() -> None:
        llm = open_engine(engine, LLMSettings(cache=not no_cache))
        try:
            reply = await llm.ask(text, system=system, purpose="ask", max_tokens=max_tokens)
        finally:
            await llm.aclose()
        typer.echo(reply)
        if usage:
            total = llm.usage.total()
            typer.echo(
                f"usage: calls={total.calls} cache_hits={total.cache_hits} "
                f"prompt_tokens={total.prompt_tokens} completion_tokens={total.completion_tokens} "
                f"seconds={total.seconds:.2f}",
                err=True,
            )

    asyncio.run(main())


def _progress() -> Progress:
    """Calls done of those scheduled (`--dry-run`'s estimate), elapsed time and time left."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("~{task.completed:,.0f}/{task.total:,.0f} calls"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def main() -> None:
    try:
        code = app(standalone_mode=False)  # errors come to us, to be told in one line
    except FedTextGradError as error:
        fail(str(error), error.exit_status)
    except click.exceptions.NoArgsIsHelpError:  # the help was shown
        sys.exit(2)
    except click.UsageError as error:  # bad arguments: one line, not click's boxed panel
        where = error.ctx.command_path if error.ctx else "fedtextgrad"
        fail(f"{error.format_message()} (see '{where} --help')", error.exit_code)
    except click.ClickException as error:
        fail(error.format_message(), error.exit_code)
    except OSError as error:  # an unusable --out, an unreadable file, a full disk
        where = f": {error.filename} (check the path and its permissions)" if error.filename else ""
        fail(f"{error.strerror or error}{where}", 1)
    except (KeyboardInterrupt, click.exceptions.Abort):
        console.print("interrupted: continue the run with --resume", highlight=False)
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)
