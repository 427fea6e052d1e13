"""What any merge can keep (issue 31): the three heterogeneous tasks' human instructions in one
prompt, concatenated, routed by the input's form ("If the input is two numbers: ...") or routed
by example (the first two validation inputs: 'If the input looks like "88 99" or "44 82": ...'),
against each instruction alone on its own task; 100 test examples per task, paired 95%
intervals.

    python bench/merge_bound.py local:qwen2.5-coder-0.5b
    python bench/merge_bound.py local:qwen2.5-coder-1.5b

Prints one line per task; calls go through the response cache."""

from __future__ import annotations

import asyncio
import sys

from fedtextgrad.llm import LLMSettings, open_engine
from fedtextgrad.stats import paired
from fedtextgrad.tasks import instruction_induction, load_task
from fedtextgrad.textgrad import Objective, evaluate

FORMS = {  # the task of the findings sweep -> how its inputs look
    "ii_singular_to_plural": "If the input is a single word:",
    "ii_sum": "If the input is two numbers:",
    "ii_word_in_context": "If the input is two sentences and a word:",
}


async def main(model: str) -> None:
    tasks = [load_task(name, test_size=100) for name in FORMS]
    fmt = tasks[0].answer_format
    human = {t.name: instruction_induction.instructions(t.name)[0] for t in tasks}
    looks = {
        t.name: " or ".join(f'"{" ".join(x.input.split())}"' for x in t.val[:2]) for t in tasks
    }
    prompts = {
        "concat": " ".join(human.values()) + f" {fmt}",
        "routed": "\n".join(f"{FORMS[name]} {text}" for name, text in human.items()) + f"\n{fmt}",
        "by example": "\n".join(
            f"If the input looks like {looks[name]}: {text}" for name, text in human.items()
        )
        + f"\n{fmt}",
    }
    llm = open_engine(model, LLMSettings(n_parallel=4, n_ctx=1024))
    try:
        for task in tasks:
            alone = f"{human[task.name]} {fmt}"
            scores = {}
            for label, prompt in {"alone": alone, **prompts}.items():
                attempts = await evaluate(llm, prompt, task.test, Objective.of(task), max_tokens=24)
                scores[label] = [a.score for a in attempts]
            lines = [
                f"{label} {paired(scores['alone'], scores[label]).describe()}" for label in prompts
            ]
            print(f"{model} {task.name}: " + "; ".join(lines), flush=True)
    finally:
        await llm.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "local:qwen2.5-coder-0.5b"))
