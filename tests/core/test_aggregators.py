"""The aggregators on their own: parsing the merge reply, fallbacks and the length cap."""

from __future__ import annotations

import asyncio

import pytest

from fedtextgrad.federated import aggregators
from fedtextgrad.federated.aggregators import (
    AggregationContext,
    Upload,
    aggregate,
    concat,
)
from fedtextgrad.llm import scripted_engine
from fedtextgrad.tasks import load_task
from fedtextgrad.textgrad import Objective

PREVIOUS = "The global prompt the round started from."


@pytest.fixture(scope="module")
def objective() -> Objective:
    return Objective.of(load_task("bbh_object_counting", train_size=3, val_size=1, test_size=1))


def uploads(objective: Objective) -> list[Upload]:
    # The second upload claims the best accuracy: a fallback must not trust that claim.
    fmt = objective.answer_format
    return [Upload(0, f"A.\n{fmt}", 3, 0.5, 0.5), Upload(1, f"B.\n{fmt}", 3, 0.5, 1.0)]


def merge_with(objective: Objective, reply: str, **ctx) -> dict:
    llm = scripted_engine(lambda messages: reply)
    context = AggregationContext(objective, llm, PREVIOUS, **ctx)
    result = asyncio.run(aggregate("summarize", uploads(objective), context))
    return {"prompt": result.prompt, **result.info}


def test_the_last_complete_span_is_the_merge(objective):
    reply = (
        "I will put it between <MERGED_PROMPT> and </MERGED_PROMPT> as asked.\n"
        "<MERGED_PROMPT>Count each item once.</MERGED_PROMPT>"
    )
    merged = merge_with(objective, reply)
    assert merged["prompt"] == f"Count each item once.\n{objective.answer_format}"
    assert "fallback" not in merged


@pytest.mark.parametrize("method", ["summarize", "uid_summarize"])
@pytest.mark.parametrize("paper", [False, True])
def test_only_the_uid_merge_asks_for_uniform_information_density(objective, method, paper):
    # The 1.5B model answered both requests alike in 5 of 6 merges (issue 31): the requests differ.
    asked = []
    llm = scripted_engine(lambda messages: asked.append(messages[-1]["content"]) or "merged")
    context = AggregationContext(objective, llm, PREVIOUS, method="paper" if paper else "ours")
    asyncio.run(aggregate(method, uploads(objective), context))
    assert ("Uniform Information Density" in asked[0]) == (method == "uid_summarize")


def test_a_merge_cut_off_before_the_closing_tag_falls_back_to_the_previous_prompt(objective):
    merged = merge_with(objective, "<MERGED_PROMPT>Count each item once. Then chec")
    assert merged["prompt"] == PREVIOUS
    assert merged["truncated"] is True
    assert "previous global prompt" in merged["fallback"]


def test_a_complete_span_then_a_cut_off_one_is_truncated(objective):
    reply = "Draft: <MERGED_PROMPT>Count.</MERGED_PROMPT>\nFinal: <MERGED_PROMPT>Count each ite"
    merged = merge_with(objective, reply)
    assert merged["prompt"] == PREVIOUS and merged["truncated"] is True


def test_a_malformed_merge_keeps_the_previous_prompt_not_the_best_claimed_upload(objective):
    merged = merge_with(objective, "Sorry, I cannot merge these.")
    assert merged["prompt"] == PREVIOUS
    assert "previous global prompt" in merged["fallback"]
    assert "truncated" not in merged


def test_a_merge_longer_than_the_cap_falls_back_with_the_reason(objective):
    long_body = " ".join(f"Rule {n}: count the items of kind {n} once." for n in range(10))
    merged = merge_with(objective, f"<MERGED_PROMPT>{long_body}</MERGED_PROMPT>", max_chars=200)
    assert merged["prompt"] == PREVIOUS
    assert "too long" in merged["fallback"] and "> 200" in merged["fallback"]


def test_the_cap_defaults_to_the_client_update_cap(objective):
    assert AggregationContext(objective, scripted_engine(lambda m: ""), PREVIOUS).max_chars == 4000


def test_concat_longer_than_the_cap_falls_back_to_the_previous_prompt(objective):
    llm = scripted_engine(lambda messages: "unused")
    context = AggregationContext(objective, llm, PREVIOUS, max_chars=20)
    result = asyncio.run(aggregate("concat", uploads(objective), context))
    assert result.prompt == PREVIOUS
    assert "too long" in result.info["fallback"] and result.info["method"] == "concat"


def test_concat_within_the_cap_joins_the_prompts(objective):
    llm = scripted_engine(lambda messages: "unused")
    result = asyncio.run(concat(uploads(objective), AggregationContext(objective, llm, PREVIOUS)))
    assert result.prompt == "\n".join(u.prompt for u in uploads(objective))
    assert "fallback" not in result.info


def test_a_failed_merge_keeps_the_best_upload_on_the_servers_validation(objective):
    # The server's own scores decide (B scores 0.6 there, the previous prompt 0.2), not the
    # uploads' claims; the clients' learning survives a merge reply cut off at max_tokens.
    scores = {PREVIOUS: 0.2, uploads(objective)[0].prompt: 0.4, uploads(objective)[1].prompt: 0.6}

    async def validate(prompt: str) -> float:
        return scores[prompt]

    merged = merge_with(
        objective, "<MERGED_PROMPT>Count each item once. Then chec", validate=validate
    )
    assert merged["prompt"] == uploads(objective)[1].prompt and merged["truncated"] is True
    assert "kept an upload, the best on validation" in merged["fallback"]


def test_a_tie_on_validation_keeps_the_previous_prompt(objective):
    async def validate(prompt: str) -> float:
        return 0.5

    merged = merge_with(objective, "Sorry, I cannot merge these.", validate=validate)
    assert merged["prompt"] == PREVIOUS
    assert "kept the previous global prompt, the best on validation" in merged["fallback"]


def test_a_merge_may_be_as_long_as_the_prompts_it_merges(objective):
    long = [Upload(i, f"{f'Rule {i}. ' * 800}\n{objective.answer_format}", 3) for i in range(2)]
    llm = scripted_engine(lambda messages: "<MERGED_PROMPT>Rule.</MERGED_PROMPT>")
    asked: list[int] = []
    chat = llm.backend.chat

    async def recording(messages, **kwargs):
        asked.append(kwargs["max_tokens"])
        return await chat(messages, **kwargs)

    llm.backend.chat = recording
    context = AggregationContext(objective, llm, PREVIOUS, max_chars=100_000)
    asyncio.run(aggregate("summarize", long, context))
    assert asked == [sum(len(u.prompt) - len(objective.answer_format) - 1 for u in long) // 3]


@pytest.mark.parametrize("method", ["concat", "summarize", "uid_summarize", "select", "retain"])
@pytest.mark.parametrize("copies", [1, 2])
def test_no_path_to_the_global_prompt_skips_the_cap(objective, method, copies):
    # One upload, or identical ones, skip the merge: a flooding client's prompt is capped too.
    huge = Upload(0, f"{'Count. ' * 2000}\n{objective.answer_format}", 3)
    llm = scripted_engine(lambda messages: f"<MERGED_PROMPT>{huge.prompt}</MERGED_PROMPT>")

    async def validate(prompt: str) -> float:
        return len(prompt) / 1e6  # the longer, the better: only the cap stops the huge one

    async def validate_tasks(prompt: str) -> dict[str, float]:
        return {"t": await validate(prompt)}

    context = AggregationContext(
        objective, llm, PREVIOUS, validate=validate, validate_tasks=validate_tasks
    )
    result = asyncio.run(aggregate(method, [huge] * copies, context))
    assert result.prompt == PREVIOUS
    assert "too long" in result.info["fallback"]


# -- retain (ours) -------------------------------------------------------------------------------

RULES = {
    "plural": "Write the plural.",
    "sum": "Add the two numbers.",
    "antonym": "Give the opposite.",
}


def careful(rule: str) -> str:
    """An upload's explanation: what a merge may drop."""
    return f"Think carefully about how to {rule.lower().rstrip('.')}, then check it twice."


def retain_with(objective: Objective, routed: dict[str, str]) -> dict:
    """Three clients, each holding one task's rule; a task is solved iff its rule is in the
    prompt. Each client's upload comes back routed as `routed[task]`."""
    fmt = objective.answer_format
    ups = [Upload(i, f"{rule} {careful(rule)}\n{fmt}", 3) for i, rule in enumerate(RULES.values())]

    def reply(messages) -> str:
        task = next(t for t, rule in RULES.items() if rule in messages[-1]["content"])
        return f"<ROUTED>{routed[task]}</ROUTED>"

    async def validate_tasks(prompt: str) -> dict[str, float]:
        return {task: float(rule in prompt) for task, rule in RULES.items()}

    context = AggregationContext(
        objective, scripted_engine(reply), PREVIOUS, validate_tasks=validate_tasks
    )
    result = asyncio.run(aggregate("retain", ups, context))
    return {"prompt": result.prompt, **result.info}


ROUTED = {task: f"If the input is {task}: {rule}" for task, rule in RULES.items()}


def test_retain_keeps_a_routed_merge_that_loses_no_task(objective):
    merged = retain_with(objective, ROUTED)
    assert merged["lost"] == [] and "kept" not in merged
    assert merged["prompt"] == "\n".join([*ROUTED.values(), objective.answer_format])
    assert merged["merge"] == {"merged": 3, "paragraphs": 3}


def test_retain_puts_back_what_the_merge_dropped_for_a_client_below_its_paragraphs(objective):
    merged = retain_with(objective, ROUTED | {"sum": "If the input is sum: Sum them."})
    assert merged["lost"] == ["sum"] and merged["kept"] == "repaired merge"
    body = objective.without_format(merged["prompt"]).strip()
    assert body.splitlines() == [
        ROUTED["plural"],
        "If the input is sum: Sum them.",
        ROUTED["antonym"],
        f"Add the two numbers. {careful(RULES['sum'])}",
    ]
    assert merged["retention"] == {  # each option's retentions, the worst task first
        "merge": [0.0, 1.0, 1.0],
        "repaired merge": [1.0, 1.0, 1.0],
        "concatenation": [1.0, 1.0, 1.0],
        **{f"upload {i}": [0.0, 0.0, 1.0] for i in (1, 2, 3)},
    }


def test_among_options_that_each_lose_a_task_retain_keeps_the_one_that_loses_least_next(
    objective,
):
    # As the 1.5B model does: given all three rules it follows the last one only. The merge
    # drops plural and keeps the other two; every other option loses two tasks.
    fmt = objective.answer_format
    ups = [Upload(i, f"{rule}\n{fmt}", 3) for i, rule in enumerate(RULES.values())]

    routed = ROUTED | {"plural": "If the input is plural: Be brief."}

    def reply(messages) -> str:
        task = next(t for t, rule in RULES.items() if rule in messages[-1]["content"])
        return f"<ROUTED>{routed[task]}</ROUTED>"

    async def validate_tasks(prompt: str) -> dict[str, float]:
        held = [(prompt.index(rule), task) for task, rule in RULES.items() if rule in prompt]
        solved = {t for _, t in held} if len(held) < 3 else {max(held)[1]}
        return {task: float(task in solved) for task in RULES}

    context = AggregationContext(
        objective, scripted_engine(reply), PREVIOUS, validate_tasks=validate_tasks
    )
    result = asyncio.run(aggregate("retain", ups, context))
    assert result.info["kept"] == "merge" and result.info["retention"]["merge"] == [0.0, 1.0, 1.0]
    assert all(r[:2] == [0.0, 0.0] for k, r in result.info["retention"].items() if k != "merge")


def test_retentions_equal_but_for_rounding_tie_and_the_next_task_decides(objective):
    # 0.1 / 0.3 and 0.3 / 0.9 are one third each, yet differ in floating point.
    fmt = objective.answer_format
    ups = [Upload(i, f"{rule}\n{fmt}", 3) for i, rule in enumerate(RULES.values())]
    table = {  # per task: (an upload's score, the repaired merge's, the concatenation's)
        "plural": (0.9, 0.9, 0.3),
        "sum": (0.3, 0.1, 0.3),
        "antonym": (1.0, 0.8, 1.0),
    }

    def reply(messages) -> str:
        return "<ROUTED>If the input is plural: Be brief.</ROUTED>"  # loses every rule

    async def validate_tasks(prompt: str) -> dict[str, float]:
        column = 1 if "Be brief." in prompt else 2 if prompt.count("\n") > 1 else 0
        held = [t for t, rule in RULES.items() if rule in prompt]
        return {t: table[t][column] if t in held else 0.0 for t in RULES}

    context = AggregationContext(
        objective, scripted_engine(reply), PREVIOUS, validate_tasks=validate_tasks
    )
    result = asyncio.run(aggregate("retain", ups, context))
    assert result.info["retention"]["concatenation"] == [0.333, 1.0, 1.0]
    assert result.info["kept"] == "concatenation"


def test_a_rewrite_without_its_input_keeps_the_upload_as_it_was(objective):
    merged = retain_with(objective, ROUTED | {"sum": "Be brief."})
    assert f"Add the two numbers. {careful(RULES['sum'])}" in merged["prompt"].splitlines()
    assert "Be brief." not in merged["prompt"] and merged["lost"] == []


@pytest.mark.parametrize(
    ("paragraph", "condition"),
    [
        ("If the input is two numbers: add them.", "two numbers"),
        ("If the input is a word, write its plural. Note: keep case.", "a word"),
        ("If the input is a date, time, or duration: convert it.", "a date, time, or duration"),
        ("if the input is  Two Numbers : add.", "two numbers"),
        ("Add the two numbers.", None),
    ],
)
def test_the_input_a_paragraph_is_for(paragraph, condition):
    assert aggregators._condition(paragraph) == condition


def test_each_upload_is_routed_on_its_own_in_its_share_of_the_words_by_length(objective):
    fmt = objective.answer_format
    bodies = [
        f"Write the plural of the word. {careful('write it')}",
        "Add them.",
        "Give the opposite.",
    ]
    asked = []

    def reply(messages) -> str:
        request = messages[-1]["content"]
        asked.append(request)
        if bodies[0] in request:
            return "If the input is a word: write its plural."  # no tags: taken whole
        if bodies[1] in request:
            return "<ROUTED>If the input is two numbers: add them.</ROUTED>"
        return "<ROUTED>If the input is a wo"  # cut off: the upload is kept as it is

    async def validate_tasks(prompt: str) -> dict[str, float]:
        return {"t": 1.0}

    ups = [Upload(i, f"{body}\n{fmt}", 3) for i, body in enumerate(bodies)]
    context = AggregationContext(
        objective, scripted_engine(reply), PREVIOUS, validate_tasks=validate_tasks
    )
    result = asyncio.run(aggregate("retain", ups, context))
    budgets = [next(w for w in (19, 12) if f"at most {w} words" in r) for r in asked]
    assert sorted(budgets) == [12, 12, 19]  # 1.5x the 17 longest words, shared by words: 17, 2, 3
    assert result.prompt.splitlines() == [
        "If the input is a word: write its plural.",
        "If the input is two numbers: add them.",
        "Give the opposite.",
        fmt,
    ]
    assert result.info["merge"]["paragraphs"] == 3 and result.info["lost"] == []


PLURAL, SUMS = "If the input is a word: write its plural.", "If the input is two numbers: add."


def round_two(
    objective: Objective,
    bodies: list[str],
    previous: str = f"{PLURAL}\n{SUMS}",
    routed: str = "<ROUTED>If the input is a word: keep the irregular plurals.</ROUTED>",
) -> tuple[str, list[str]]:
    """The merge of uploads that edited the global prompt `previous` (by default, the routed
    PLURAL / SUMS), and what was sent to be routed."""
    fmt = objective.answer_format
    asked = []

    def reply(messages) -> str:
        asked.append(messages[-1]["content"])
        return routed

    async def validate_tasks(prompt: str) -> dict[str, float]:
        return {"t": 1.0}

    ups = [Upload(i, f"{body}\n{fmt}", 3) for i, body in enumerate(bodies)]
    context = AggregationContext(
        objective, scripted_engine(reply), f"{previous}\n{fmt}", validate_tasks=validate_tasks
    )
    return asyncio.run(aggregate("retain", ups, context)).prompt, asked


@pytest.mark.parametrize("edited_first", [True, False])
def test_a_clients_edit_of_its_paragraph_wins_and_only_new_text_is_routed(objective, edited_first):
    edited = "If the input is two numbers, add them and give the total only."
    bodies = [f"{PLURAL}\n{edited}", f"{PLURAL}\n{SUMS}\nKeep the irregular plurals."]
    prompt, asked = round_two(objective, bodies if edited_first else bodies[::-1])
    assert len(asked) == 1 and "Keep the irregular plurals." in asked[0]
    fmt = objective.answer_format
    assert prompt.splitlines() == [f"{PLURAL} Keep the irregular plurals.", edited, fmt]


def test_two_edits_of_one_paragraph_are_joined(objective):
    bodies = [
        f"{PLURAL}\nIf the input is two numbers: add. Give the total only.",
        f"{PLURAL}\nIf the input is two numbers: add. Mind negative numbers.",
    ]
    prompt, asked = round_two(objective, bodies)
    assert asked == []
    assert prompt.splitlines()[:2] == [
        PLURAL,
        "If the input is two numbers: add. Give the total only. Mind negative numbers.",
    ]


def test_each_line_kept_of_an_unrouted_global_prompt_is_routed_on_its_own(objective):
    # The previous global prompt was a concatenation: each of its lines is an earlier upload.
    lines = ["Write the plural.", "Add the two numbers."]
    bodies = ["\n".join(lines), "\n".join([*lines, "Be brief.", "Never explain."])]
    _, asked = round_two(objective, bodies, previous=bodies[0], routed="<ROUTED>cut off")
    routed = [next(u for u in [*lines, "Be brief. Never explain."] if u in a) for a in asked]
    assert sorted(routed) == sorted([*lines, "Be brief. Never explain."])
    assert not any(lines[0] in a and lines[1] in a for a in asked)


def test_bullets_under_a_routed_paragraph_or_a_heading_belong_to_it():
    body = "Be brief.\n- Never explain.\nIf the input is a list:\n- sort it\n2. dedupe it\nAdd."
    assert aggregators._paragraphs(body) == [
        "Be brief.",
        "- Never explain.",
        "If the input is a list: - sort it 2. dedupe it",
        "Add.",
    ]
    assert aggregators._paragraphs("Rules:\n- Add them.\n- Be brief.") == [
        "Rules: - Add them. - Be brief."
    ]
