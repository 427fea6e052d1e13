"""Score hand-written prompts against a config's initial prompt on its validation examples: is
there any room for an optimizer to find? (docs/reproduction.md: for the 1.5B model on object
counting, every prompt we wrote did worse than "Think step by step.")

    FEDTEXTGRAD_DATA=../shared/data .venv/bin/python bench/prompt_probe.py \\
        configs/centralized/object_counting.toml bench/prompts/object_counting/*.txt --examples 20

Each prompt file holds a system prompt without the answer-format sentence, which is appended.
Calls go through the response cache, so prompts already scored cost nothing.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from benchlib import RESULTS_DIR, machine, write_json

from fedtextgrad import load_config
from fedtextgrad.federated import Engines, prepare_data
from fedtextgrad.textgrad import accuracy, evaluate


async def probe(config_path: Path, prompt_files: list[Path], examples: int, sets: list[str]):
    config = load_config(config_path, sets)
    data = prepare_data(config)
    engines = Engines.open(config)
    objective = data.objective
    prompts = {"initial": objective.initial_prompt}
    prompts |= {f.stem: f"{f.read_text().strip()}\n{objective.answer_format}" for f in prompt_files}
    val = data.val[:examples]
    scores = {}
    try:
        for name, prompt in prompts.items():
            attempts = await evaluate(
                engines.forward,
                prompt,
                val,
                objective,
                max_tokens=config.train.forward_max_tokens,
            )
            scores[name] = accuracy(attempts)
            print(f"{name:>20}: {scores[name]:.3f} on {len(val)} validation examples", flush=True)
    finally:
        for engine in engines.distinct():
            await engine.aclose()
    return {"config": str(config_path), "engine": config.engines.forward, "prompts": prompts} | {
        "examples": len(val),
        "accuracy": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("prompts", type=Path, nargs="*", help="prompt files (no format sentence)")
    parser.add_argument("--examples", type=int, default=20, help="validation examples scored")
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "prompt_probe.json")
    args = parser.parse_args()
    result = asyncio.run(probe(args.config, args.prompts, args.examples, args.set))
    write_json(args.out, {"benchmark": "prompt_probe", "machine": machine(), **result})


if __name__ == "__main__":
    main()
