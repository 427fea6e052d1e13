"""An instruction-induction task on the real 0.5B model: the answers are a few tokens, the
format sentence is followed, and the benchmark's human instruction beats the neutral prompt (the
headroom an optimizer is meant to find)."""

from __future__ import annotations

import asyncio

import pytest
from helpers.models import SMALL_MODEL

from fedtextgrad.llm import open_engine
from fedtextgrad.tasks import instruction_induction, load_task
from fedtextgrad.textgrad import Objective, accuracy, evaluate

pytestmark = pytest.mark.model


def test_the_human_instruction_beats_the_neutral_prompt_on_singular_to_plural(llm_settings):
    task = load_task("ii_singular_to_plural", test_size=6)
    human = f"{instruction_induction.instructions(task.name)[0]} {task.answer_format}"

    async def main():
        llm = open_engine(SMALL_MODEL, llm_settings)
        try:
            return [
                await evaluate(llm, prompt, task.test, Objective.of(task), max_tokens=32)
                for prompt in (task.initial_prompt, human)
            ]
        finally:
            await llm.aclose()

    neutral, instructed = asyncio.run(main())
    assert all(task.extract(a.response) is not None for a in instructed)  # the format is kept
    assert accuracy(instructed) >= accuracy(neutral) + 0.5
