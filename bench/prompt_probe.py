"""Is there room for an optimizer to find? Score prompts and compare.

A config's initial prompt against hand-written ones, on its validation examples
(docs/reproduction.md: for the 1.5B model on object counting, every prompt we wrote did worse
than "Think step by step."):

    FEDTEXTGRAD_DATA=../shared/data .venv/bin/python bench/prompt_probe.py \\
        configs/centralized/object_counting.toml bench/prompts/object_counting/*.txt --examples 20

Each prompt file holds a system prompt without the answer-format sentence, which is appended.

Instruction induction (`--ii`): for every ii_* task and model, the neutral initial prompt against
the benchmark's first human instruction, on the test examples, with Wilson 95% intervals (token
F1 tasks: a bootstrap interval) and the cost. Results are written after each task, and tasks
already in the output file are skipped, so an interrupted probe resumes:

    .venv/bin/python bench/prompt_probe.py --ii --models local:qwen2.5-coder-0.5b --examples 100

Calls go through the response cache, so prompts already scored cost nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from benchlib import RESULTS_DIR, machine, write_json
from scipy import stats

from fedtextgrad import load_config
from fedtextgrad.federated import Engines, prepare_data
from fedtextgrad.llm import LLMSettings, open_engine
from fedtextgrad.stats import paired
from fedtextgrad.tasks import instruction_induction, load_task
from fedtextgrad.tasks.scoring import answer_segment
from fedtextgrad.textgrad import Objective, accuracy, evaluate

II_MODELS = ["local:qwen2.5-coder-0.5b", "local:qwen2.5-coder-1.5b"]
HEADROOM = 0.20  # a task has room for an optimizer when the human instruction gains this much


async def probe(config_path: Path, prompt_files: list[Path], examples: int, sets: list[str]):
    config = load_config(config_path, sets)
    data = prepare_data(config)
    engines = Engines.open(config)
    objective = data.objective
    prompts = {"initial": objective.initial_prompt}
    prompts |= {f.stem: f"{f.read_text().strip()}\n{objective.answer_format}" for f in prompt_files}
    val = data.val[:examples]
    scores, per_example, differences = {}, {}, {}
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
            per_example[name] = [a.score for a in attempts]
            versus = ""
            if name != "initial":  # paired with the initial prompt on the same examples
                diff = paired(per_example["initial"], per_example[name])
                versus = f"; vs initial {diff.describe()}"
                differences[name] = diff.to_dict()
            print(f"{name:>20}: {scores[name]:.3f} on {len(val)} examples{versus}", flush=True)
    finally:
        for engine in engines.distinct():
            await engine.aclose()
    return {"config": str(config_path), "engine": config.engines.forward, "prompts": prompts} | {
        "examples": len(val),
        "accuracy": scores,
        "vs_initial": differences,
    }


def interval(scores: list[float]) -> tuple[float, float]:
    """95%: Wilson's for right/wrong scores, a percentile bootstrap for fractional ones (F1)."""
    if all(s in (0.0, 1.0) for s in scores):
        ci = stats.binomtest(int(sum(scores)), len(scores)).proportion_ci(method="wilson")
        return ci.low, ci.high
    if len(set(scores)) == 1:
        return scores[0], scores[0]
    boot = stats.bootstrap((np.array(scores),), np.mean, method="percentile", random_state=0)
    return boot.confidence_interval.low, boot.confidence_interval.high


async def score_prompt(llm, prompt: str, task, max_tokens: int) -> dict:
    before, started = llm.usage.total(), time.perf_counter()
    attempts = await evaluate(llm, prompt, task.test, Objective.of(task), max_tokens=max_tokens)
    after, scores = llm.usage.total(), [a.score for a in attempts]
    low, high = interval(scores)
    return {
        "accuracy": round(accuracy(attempts), 4),
        "ci95": [round(low, 4), round(high, 4)],
        "answer_lines": sum(answer_segment(a.response) is not None for a in attempts),
        "calls": after.calls - before.calls,
        "cache_hits": after.cache_hits - before.cache_hits,
        "seconds": round(time.perf_counter() - started, 1),
    }


async def probe_ii(args: argparse.Namespace) -> None:
    """Neutral prompt vs the first human instruction, per model and task; resumable."""
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    results: dict[str, dict] = done.get("results", {})
    settings = LLMSettings(n_parallel=4, n_ctx=1024, threads=args.threads)
    for model in args.models:
        llm = open_engine(model, settings)
        try:
            for name in args.tasks or instruction_induction.NAMES:
                key = f"{model} {name}"
                if key in results:
                    continue
                task = load_task(name, test_size=args.examples)
                if args.format:  # measure another format sentence
                    body = task.initial_prompt.removesuffix(task.answer_format)
                    task = replace(
                        task, initial_prompt=body + args.format, answer_format=args.format
                    )
                human = f"{instruction_induction.instructions(name)[0]} {task.answer_format}"
                entry = {"model": model, "task": name, "examples": len(task.test)}
                for label, prompt in (("neutral", task.initial_prompt), ("human", human)):
                    entry[label] = await score_prompt(llm, prompt, task, args.max_tokens)
                gain = entry["human"]["accuracy"] - entry["neutral"]["accuracy"]
                entry["headroom"] = gain >= HEADROOM
                results[key] = entry
                print(
                    f"{model} {name}: neutral {entry['neutral']['accuracy']:.2f} "
                    f"human {entry['human']['accuracy']:.2f}",
                    flush=True,
                )
                write_json(args.out, ii_record(args, results))
        finally:
            await llm.aclose()


def ii_table(record: dict) -> str:
    """The learnability table (markdown): a row per task, the models side by side."""
    results = record["results"].values()
    models = list(dict.fromkeys(e["model"] for e in results))
    cells = {(e["task"], e["model"]): e for e in results}

    def cell(e: dict | None) -> str:
        if e is None:
            return "not run"
        n, h = e["neutral"], e["human"]
        mark = " **headroom**" if e["headroom"] else ""
        return f"{_ci(n)} → {_ci(h)}{mark}"

    def cost(e: dict | None) -> str:
        if e is None:
            return ""
        calls = e["neutral"]["calls"] + e["human"]["calls"]
        return f"{calls}, {e['neutral']['seconds'] + e['human']['seconds']:.0f} s"

    short = [m.removeprefix("local:qwen2.5-coder-") for m in models]
    heads = [f"{m}: neutral → human" for m in short] + [f"{m}: calls, time" for m in short]
    lines = ["| task | n | " + " | ".join(heads) + " |", "| --- | --- |" + " --- |" * len(heads)]
    for task in instruction_induction.NAMES:
        row = [cells.get((task, m)) for m in models]
        n = next((e["examples"] for e in row if e), 0)
        parts = [cell(e) for e in row] + [cost(e) for e in row]
        lines.append(f"| {task} | {n} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def _ci(score: dict) -> str:
    low, high = score["ci95"]
    return f"{score['accuracy']:.2f} [{low:.2f}, {high:.2f}]"


def ii_record(args: argparse.Namespace, results: dict) -> dict:
    task = load_task(instruction_induction.NAMES[0])
    return {
        "benchmark": "prompt_probe_ii",
        "machine": machine(),
        "neutral_prompt": task.initial_prompt.removesuffix(task.answer_format)
        + (args.format or task.answer_format),
        "human_prompt": "the task's first human instruction + the same format sentence",
        "max_tokens": args.max_tokens,
        "headroom_rule": f"human >= neutral + {HEADROOM:.2f}",
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ii", action="store_true", help="instruction induction, every task")
    parser.add_argument("--models", nargs="+", default=II_MODELS, help="--ii: engines")
    parser.add_argument("--tasks", nargs="*", help="--ii: these ii_* tasks only")
    parser.add_argument("--max-tokens", type=int, default=48, help="--ii: answer tokens")
    parser.add_argument("--format", help="--ii: another answer-format sentence")
    parser.add_argument("--threads", type=int, help="--ii: CPU threads of the local engine")
    parser.add_argument("config", type=Path, nargs="?")
    parser.add_argument("prompts", type=Path, nargs="*", help="prompt files (no format sentence)")
    parser.add_argument("--examples", type=int, default=20, help="examples scored")
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", action="store_true", help="--ii: print the table of --out")
    args = parser.parse_args()
    if args.ii and args.table:
        print(ii_table(json.loads((args.out or RESULTS_DIR / "prompt_probe_ii.json").read_text())))
        return
    if args.ii:
        args.out = args.out or RESULTS_DIR / "prompt_probe_ii.json"
        asyncio.run(probe_ii(args))
        return
    if args.config is None:
        parser.error("give a config, or --ii")
    args.out = args.out or RESULTS_DIR / "prompt_probe.json"
    result = asyncio.run(probe(args.config, args.prompts, args.examples, args.set))
    write_json(args.out, {"benchmark": "prompt_probe", "machine": machine(), **result})


if __name__ == "__main__":
    main()
