"""Each part of one textual-gradient step, including every malformed-reply path."""

from __future__ import annotations

import asyncio

import pytest
from helpers.requests import made_from
from helpers.scripted import RULE, toy_responder

from fedtextgrad.config import TrainConfig
from fedtextgrad.llm import Completion, scripted_engine
from fedtextgrad.tasks import Example, load_task
from fedtextgrad.textgrad import (
    LocalTrainer,
    Objective,
    feedback,
    forward,
    parse_update,
    score,
    templates,
    tidy,
    update,
)
from fedtextgrad.textgrad import step as step_module

TASK = load_task("bbh_object_counting", train_size=9, val_size=6, test_size=3)
OBJECTIVE = Objective.of(TASK)
FMT = TASK.answer_format
TARGETS = {ex.input: ex.target for ex in TASK.train + TASK.val + TASK.test}


def toy(**kw):
    return scripted_engine(lambda m: toy_responder(m, targets=TARGETS), **kw)


def replies(*texts: str) -> list[Completion]:
    return [Completion(text, 0, 0) for text in texts]


def test_forward_and_score():
    async def main():
        llm = toy()
        good = await forward(llm, f"{RULE} {FMT}", TASK.train[:3], max_tokens=64)
        bad = await forward(llm, TASK.initial_prompt, TASK.train[:3], max_tokens=64)
        assert [a.score for a in score(OBJECTIVE, TASK.train[:3], good)] == [1.0] * 3
        attempts = score(OBJECTIVE, TASK.train[:3], bad)
        assert [a.score for a in attempts] == [0.0] * 3 and attempts[0].answer == "999"
        cut = Completion("Answer: 1", 5, 24, finish_reason="length")  # kept, to audit
        assert score(OBJECTIVE, TASK.train[:1], [cut])[0].finish_reason == "length"

    asyncio.run(main())


def test_feedback_is_asked_only_for_wrong_answers():
    async def main():
        llm = toy()
        responses = [f"Answer: {TASK.train[0].target}", "Answer: 999", "no idea"]
        attempts = score(OBJECTIVE, TASK.train[:3], replies(*responses))
        pieces = await feedback(llm, TASK.initial_prompt, OBJECTIVE, attempts, max_tokens=64)
        assert len(pieces) == 2
        asked = [m[-1]["content"] for m in llm.backend.requests]
        assert "Its final answer was '999'" in asked[0] and "was missing" in asked[1]
        assert all(
            f"correct answer is {ex.target}" in q
            for q, ex in zip(asked, TASK.train[1:3], strict=True)
        )

    asyncio.run(main())


@pytest.mark.parametrize(
    "reply, problem",
    [
        ("Here is a better prompt: be careful.", "no <IMPROVED_VARIABLE> tags"),
        ("<IMPROVED_VARIABLE>Be careful. " + FMT, "cut off before </IMPROVED_VARIABLE>"),
        ("<IMPROVED_VARIABLE>   </IMPROVED_VARIABLE>", "empty"),
        (f"<IMPROVED_VARIABLE>{FMT}</IMPROVED_VARIABLE>", "empty"),
        (
            f"<IMPROVED_VARIABLE>{'Be careful! ' * 10}{'x' * 500} {FMT}</IMPROVED_VARIABLE>",
            "too long",
        ),
    ],
)
def test_parse_update_rejects_malformed_replies(reply, problem):
    prompt, why = parse_update(reply, OBJECTIVE, max_chars=400)
    assert prompt is None and problem in why


def test_parse_update_tidies_repeats_and_puts_the_format_last():
    reply = f"<IMPROVED_VARIABLE>{FMT}\nCount carefully. Count carefully.\nCount carefully.\nList items.</IMPROVED_VARIABLE>"
    prompt, _ = parse_update(reply, OBJECTIVE, max_chars=1000)
    assert prompt == f"Count carefully.\nList items.\n{FMT}"


def scripted_update(replies: list[str], gradient: str = "fb", **kw):
    """Run a one-candidate `update` against an engine that answers with `replies` in turn;
    (result, requests)."""
    answers = iter(replies)
    llm = scripted_engine(lambda m: next(answers))
    result = asyncio.run(
        update(
            llm,
            TASK.initial_prompt,
            OBJECTIVE,
            gradient,
            wrong=1,
            total=3,
            max_chars=1000,
            max_tokens=64,
            **kw,
        )
    )
    return result[0], llm.backend.requests


def test_update_retries_once_then_rejects_without_crashing():
    result, requests = scripted_update(["no tags here", "still no tags"])
    assert result.prompt is None and result.reason.startswith("rejected: the reply has no")
    assert len(requests) == 2
    assert made_from(requests[1][-1]["content"], templates.UPDATE_RETRY)


def test_update_succeeds_on_the_retry():
    reply = f"<IMPROVED_VARIABLE>Be exact. {FMT}</IMPROVED_VARIABLE>"
    result, requests = scripted_update(["oops", reply], rules=["Never quote examples."])
    assert result.prompt == f"Be exact.\n{FMT}"
    assert "- Never quote examples." in requests[0][-1]["content"]


def trainer(gate: str, llm=None, **kw) -> LocalTrainer:
    llm = llm or toy()
    config = TrainConfig(batch_size=3, gate=gate, **kw)
    return LocalTrainer(llm, llm, OBJECTIVE, TASK.train, TASK.val, config, seed="s")


def test_batches_are_a_pure_function_of_seed_and_round():
    a, b = trainer("batch"), trainer("batch")
    assert a.batches(2, 5) == b.batches(2, 5)
    assert a.batches(1, 5) != a.batches(2, 5)
    first_epoch = [ex for batch in a.batches(1, 3) for ex in batch]
    assert sorted(first_epoch, key=str) == sorted(TASK.train, key=str)  # no repeats in an epoch


@pytest.mark.parametrize("gate", ["select", "none", "batch", "validation"])
def test_the_toy_world_learns_through_every_gate(gate):
    async def main():
        result = await trainer(gate).train(TASK.initial_prompt, steps=2)
        assert RULE in result.prompt and result.prompt.endswith(FMT)
        first, second = result.steps
        assert first.accepted and first.batch_accuracy == 0.0
        assert second.reason == "no errors in the batch: nothing to learn"
        assert (result.accuracy_before, result.accuracy_after) == (0.0, 1.0)
        assert first.tokens > 0

    asyncio.run(main())


def test_a_worse_prompt_is_reverted_by_the_gates():
    known = {ex.input: ex.target for ex in TASK.val[::2]}  # right on some validation questions

    def harmful(messages):
        if "<CURRENT_PROMPT>" in messages[-1]["content"]:
            return f"<IMPROVED_VARIABLE>Always answer 0. {FMT}</IMPROVED_VARIABLE>"
        if "Always answer 0" in messages[0]["content"]:
            return "Answer: 0"
        return (
            toy_responder(messages, targets=known)
            if RULE in messages[0]["content"]
            else (f"Answer: {known.get(messages[-1]['content'], 999)}")
        )

    async def main():
        for gate in ("batch", "validation"):
            result = await trainer(gate, llm=scripted_engine(harmful)).train(
                TASK.initial_prompt, steps=1
            )
            step = result.steps[0]
            assert not step.accepted and step.reason.startswith("reverted"), step.reason
            assert "Always answer 0" not in result.prompt

    asyncio.run(main())


def test_a_rewrite_that_changes_nothing_is_not_an_update():
    def echo(messages):
        if "<CURRENT_PROMPT>" in messages[-1]["content"]:
            return f"<IMPROVED_VARIABLE>{TASK.initial_prompt}</IMPROVED_VARIABLE>"
        return "Answer: 999"  # always wrong: every step has something to learn

    async def main():
        llm = scripted_engine(echo)
        result = await trainer("validation", llm=llm, candidates=1, induce=False).train(
            TASK.initial_prompt, steps=1
        )
        step = result.steps[0]
        assert not step.accepted and step.candidate_accuracy is None
        assert step.outcome == "unchanged"
        assert step.reason == "the rewrite is the current prompt: nothing to update"
        assert llm.usage.by_purpose["update"].calls == 2  # asked again once, then given up
        assert llm.usage.by_purpose["gate"].calls == 0

    asyncio.run(main())


def test_a_copied_prompt_is_asked_for_again_with_a_warning():
    # Seen with the 1.5B model: handed a merge with ten rules, it returned it verbatim.
    better = f"Count each item listed, one by one.\n{FMT}"

    def copier(messages):
        request = messages[-1]["content"]
        if "<CURRENT_PROMPT>" not in request:
            return "Answer: 999"
        if made_from(request, templates.COPIED):
            return f"<IMPROVED_VARIABLE>{better}</IMPROVED_VARIABLE>"
        return f"<IMPROVED_VARIABLE>{TASK.initial_prompt}</IMPROVED_VARIABLE>"

    async def main():
        result = await trainer("none", llm=scripted_engine(copier)).train(
            TASK.initial_prompt, steps=1
        )
        assert result.steps[0].accepted and result.prompt == better

    asyncio.run(main())


def test_update_drops_the_request_rules_the_model_copied_into_its_prompt():
    # Seen with the 1.5B model on GSM8K: the request's own rules came back as the prompt's rules.
    copied = (
        "<IMPROVED_VARIABLE>Rules:\n- Keep it under 110 words\n- Do not copy questions, numbers, "
        "names or answers from the examples: state general rules.\n- Never quote examples.\n"
        "1. List every item.\n- The last sentence must be exactly:\n"
        f"{FMT}</IMPROVED_VARIABLE>"
    )
    result, requests = scripted_update([copied], rules=["Never quote examples."])
    assert "- Keep it under 110 words." in requests[0][-1]["content"]
    assert result.prompt == f"Rules:\n1. List every item.\n{FMT}"


def test_update_drops_pasted_diagnoses_but_keeps_the_instructions():
    gradient = (
        "Feedback 1:\nMistake: It said 800,000 feet instead of 600,000 feet.\n"
        "Instruction: Multiply the trips by the height once."
    )
    pasted = (
        "<IMPROVED_VARIABLE>Solve the problem.\nFeedback 1:\nMistake: It said 800,000 feet "
        "instead of 600,000 feet.\nInstruction: Multiply the trips by the height once.\n"
        f"{FMT}</IMPROVED_VARIABLE>"
    )
    result, _ = scripted_update([pasted], gradient)
    assert result.prompt == (
        f"Solve the problem.\nInstruction: Multiply the trips by the height once.\n{FMT}"
    )


def test_tidy_undoes_numbered_loops_empty_items_and_bare_headings():
    looped = "\n".join(
        ["You count things.", "Task Description:", "Rules:", "1. List items.", "2. Add them."]
        + [f"{n}. Skip other kinds." for n in range(3, 25)]
        + ["25.", "- ", "3.5 apples count as 3.5.", "Answer Format:"]
        + ["Answer: The system prompt should say to count each object once."]
    )
    assert tidy(looped) == (
        "You count things.\nRules:\n1. List items.\n2. Add them.\n3. Skip other kinds.\n"
        "3.5 apples count as 3.5."
    )


PLURALS = load_task("ii_singular_to_plural", train_size=12, val_size=2, test_size=1)


def induction_world(task, seen: list[str]):
    """Induction finds the task; a feedback rewrite adds a rule that does not help."""
    plural = {ex.input: ex.target for ex in task.train}

    def responder(messages):
        request = messages[-1]["content"]
        if made_from(request, templates.INDUCE):
            seen.append(request)
            return f"<IMPROVED_VARIABLE>Write the plural of the word. {task.answer_format}</IMPROVED_VARIABLE>"
        if "<CURRENT_PROMPT>" in request:  # the feedback rewrite: a rule that does not help
            return f"<IMPROVED_VARIABLE>Be careful. {task.answer_format}</IMPROVED_VARIABLE>"
        if "plural" in messages[0]["content"]:
            return f"Answer: {plural[request]}"
        return "Answer: maybe"

    return scripted_engine(responder)


def induction_step(llm, **config):
    task = PLURALS
    config = TrainConfig(**{"batch_size": 3, "candidates": 1, "holdout": 4, **config})
    learner = LocalTrainer(llm, llm, Objective.of(task), task.train, task.val, config, "s")
    return asyncio.run(learner.train(task.initial_prompt, steps=1))


def test_an_instruction_induced_from_the_batch_is_a_candidate_the_gate_can_keep():
    task, seen = PLURALS, []
    result = induction_step(induction_world(task, seen))
    (step,) = result.steps
    assert step.accepted and step.candidates == 2 and step.chosen == "induced"
    assert result.prompt.startswith("Write the plural of the word.")
    (request,) = seen  # every pair of the batch, right or wrong, with its expected output
    assert request.count("Expected output:") == 3 and task.initial_prompt not in request


def test_the_induce_baseline_makes_one_request_and_keeps_its_answer_ungated():
    seen: list[str] = []
    llm = induction_world(PLURALS, seen)
    result = induction_step(llm, method="induce", batch_size=5)
    (step,) = result.steps
    assert len(seen) == 1 and seen[0].count("Expected output:") == 5
    assert set(llm.usage.by_purpose) == {"forward", "update"}  # no feedback, no gate
    assert step.accepted and step.chosen == "induced" and step.reason == "accepted (no gate)"
    assert result.prompt.startswith("Write the plural of the word.")


def test_a_label_that_several_targets_share_is_not_example_specific():
    task = load_task("ii_word_in_context", train_size=6, val_size=2, test_size=1)
    batch = [
        Example("first sentence pair", "zygote", task.name),
        Example("second sentence pair", "zygote", task.name),
        Example("third sentence pair", "quokka", task.name),
    ]
    learner = LocalTrainer(None, None, Objective.of(task), task.train, task.val, TrainConfig(), 0)
    attempts = score(Objective.of(task), batch, replies(*["Answer: x"] * 3))
    specific = learner._specific(attempts, task.initial_prompt)
    assert "quokka" in specific and "zygote" not in specific  # a label is the task's, not one's


def test_the_fakes_tell_every_template_apart():
    """The scripted engines recognise a request by its template's longest fixed part: no
    template may hold another's."""
    from fedtextgrad.privacy import sanitize
    from fedtextgrad.textgrad import paper_templates as paper

    used = {
        "paper.RESPONSE_FEEDBACK": paper.RESPONSE_FEEDBACK,
        "paper.SUMMARIZE": paper.SUMMARIZE,
        "paper.UPDATE": paper.UPDATE,
        "INDUCE": templates.INDUCE,
        "UPDATE_RETRY": templates.UPDATE_RETRY,
        "COPIED": templates.COPIED,
        "JUDGE": templates.JUDGE,
        "REWRITE": sanitize.REWRITE,
    }
    for name, template in used.items():
        holders = [other for other, text in used.items() if made_from(text, template)]
        assert holders == [name], f"{name}'s fixed part is also in {holders}"


def test_an_induced_prompt_that_pastes_the_request_keeps_only_its_instruction():
    """Seen in a findings run: the 1.5B model answered the induction request with its own
    lines, the listed rules inline and a "System prompt:" heading in front."""
    echoes = step_module.echoes_of(templates.INDUCE, ["Keep it under 183 words."])
    pasted = (
        "System prompt: A language model was given each input below and should have replied "
        "with the expected output. The instruction is to convert every input into its plural "
        "form. Rules: - Keep it under 183 words. - The last sentence must be exactly:"
    )
    assert tidy(pasted, echoes) == "The instruction is to convert every input into its plural form."
