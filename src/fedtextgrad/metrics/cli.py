"""`fedtextgrad uid PROMPT_FILE`: the information-density metrics of a prompt."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from fedtextgrad.errors import FedTextGradError


def uid(
    prompt_file: Annotated[Path, typer.Argument(help="A text file holding the prompt.")],
    engine: Annotated[
        str, typer.Option("--engine", help="The model that reads the prompt: local:<model>, ...")
    ] = "local:qwen2.5-coder-1.5b",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON, with the per-token surprisals.")
    ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not reuse cached results.")] = (
        False
    ),
) -> None:
    """Per-token surprisal of a prompt (bits) and its statistics: mean, variance, max, per
    sentence. Uniform information density means low variance and no large spikes."""
    from fedtextgrad.llm import LLMSettings, open_engine
    from fedtextgrad.metrics import measure

    if not prompt_file.is_file():
        raise FedTextGradError(f"prompt file not found: {prompt_file}")
    try:
        text = prompt_file.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise FedTextGradError(
            f"{prompt_file} is not UTF-8 text: give a file that holds a prompt"
        ) from None
    if not text:
        raise FedTextGradError(f"{prompt_file} is empty: give a file that holds a prompt")

    async def main():
        llm = open_engine(engine, LLMSettings(cache=not no_cache))
        try:
            return await measure(llm, text)
        finally:
            await llm.aclose()

    profile = asyncio.run(main())
    if as_json:
        typer.echo(json.dumps(profile.to_dict(), ensure_ascii=False, indent=2))
        return
    typer.echo(f"engine             {engine}")
    typer.echo(f"length             {profile.length} tokens")
    typer.echo(f"surprisal mean     {profile.mean:.3f} bits")
    typer.echo(f"surprisal variance {profile.variance:.3f}")
    typer.echo(f"surprisal max      {profile.max:.3f} bits")
    typer.echo(f"sentence variance  {profile.sentence_variance:.3f}")
    for index, sentence in enumerate(profile.sentences(), 1):
        text = sentence["text"].replace("\n", " ")
        text = text if len(text) <= 70 else text[:67] + "..."
        typer.echo(f"  {index:>3}  {sentence['mean']:6.3f}  {sentence['tokens']:>4} tok  {text}")
