"""`retain` (ours) against the real embedded 0.5B model: two clients with different tasks."""

from __future__ import annotations

import asyncio

import pytest
from helpers.models import SMALL_MODEL

from fedtextgrad.federated.aggregators import AggregationContext, Upload, aggregate
from fedtextgrad.llm import open_engine
from fedtextgrad.tasks import instruction_induction, load_task
from fedtextgrad.textgrad import Objective, evaluate

pytestmark = pytest.mark.model
TASKS = ("ii_singular_to_plural", "ii_sum")


def test_retain_merges_two_clients_tasks_and_checks_each(llm_settings):
    tasks = [load_task(name, train_size=1, val_size=3, test_size=1) for name in TASKS]
    objective = Objective.of(tasks[0])
    fmt = objective.answer_format
    uploads = [
        Upload(i, f"{instruction_induction.instructions(t.name)[0]}\n{fmt}", 3)
        for i, t in enumerate(tasks)
    ]

    async def main():
        llm = open_engine(SMALL_MODEL, llm_settings)

        async def validate_tasks(prompt: str) -> dict[str, float]:
            scores = {}
            for task in tasks:
                attempts = await evaluate(llm, prompt, task.val, Objective.of(task), max_tokens=16)
                scores[task.name] = sum(a.score for a in attempts) / len(attempts)
            return scores

        try:
            context = AggregationContext(objective, llm, "", validate_tasks=validate_tasks)
            return await aggregate("retain", uploads, context), llm.usage
        finally:
            await llm.aclose()

    result, usage = asyncio.run(main())
    info = result.info
    assert "fallback" not in info, info  # the merge is within the length cap
    assert info["merge"]["merged"] == 2 and 1 <= info["merge"]["paragraphs"] <= 2
    assert result.prompt.endswith(fmt) and result.prompt.count(fmt) == 1
    if info["lost"]:  # the kept option loses least on its worst task, then the next
        assert info["retention"][info["kept"]] == max(info["retention"].values())
    assert usage.by_purpose["aggregation"].calls == 2  # a routing request per client
    assert usage.by_purpose["evaluation"].calls >= 3 * 2 * 3  # uploads and merge, 2 tasks x 3
