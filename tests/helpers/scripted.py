"""A deterministic toy world for testing the logic around the models.

The forward "model" answers an object-counting question correctly only when its system prompt
contains RULE; the critic proposes RULE (and a hint that differs
between questions); the optimizer adds what the critic proposes. So a working pipeline learns."""

from __future__ import annotations

import re

from fedtextgrad.llm import Message
from fedtextgrad.textgrad import paper_templates as paper
from helpers.requests import all_tagged, filled_in, kept_format, made_from, tagged

RULE = "Count only the items of the asked kind."


def toy_responder(messages: list[Message], *, targets: dict[str, str], wrong: str = "999") -> str:
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    user = messages[-1]["content"]
    if "<VARIABLE>" in user:  # the paper's update: adds what the feedback asks for
        current = tagged(user, "VARIABLE")
        fmt = filled_in(user, paper.UPDATE, "answer_format")
        advice = dict.fromkeys(re.findall(r"Add the rule: (.*)", user))
        body = current.replace(fmt, "").strip()
        return f"<IMPROVED_VARIABLE>{body} {' '.join(advice)}\n{fmt}</IMPROVED_VARIABLE>"
    if "<RESPONSE_FEEDBACK>" in user:  # the paper's second hop: to the system prompt
        return f"Add the rule: {RULE}"
    if made_from(user, paper.RESPONSE_FEEDBACK):  # the paper's first hop: to the response
        return "The response counted items of another kind."
    if made_from(user, paper.SUMMARIZE):  # the paper's merge
        return f"{RULE} Merged."
    if "<CURRENT_PROMPT>" in user:
        current = tagged(user, "CURRENT_PROMPT")
        fmt = kept_format(user)
        body = current.replace(fmt, "").strip()
        advice = dict.fromkeys(re.findall(r"Instruction: (.*)", user))
        return f"<IMPROVED_VARIABLE>{body} {' '.join(advice)}\n{fmt}</IMPROVED_VARIABLE>"
    if "<SYSTEM_PROMPT>" in user:
        question = tagged(user, "QUESTION")
        hint = f"Check list {len(question) % 7}."  # makes clients' prompts differ
        return f"Solution: count.\nMistake: counted distractors.\nInstruction: {RULE} {hint}"
    if "<CLIENT_PROMPT" in user:
        bodies = all_tagged(user, "CLIENT_PROMPT")
        return "<MERGED_PROMPT>" + " ".join(dict.fromkeys(bodies)) + "</MERGED_PROMPT>"
    answer = targets.get(user, wrong) if RULE in system else wrong
    return f"Let me think.\nAnswer: {answer}"
