"""A scripted world whose optimizer leaks: the critic quotes the question it saw, and the update
copies every quote into the new prompt — the worst case the privacy tools must catch."""

from __future__ import annotations

import re

from helpers.requests import all_tagged, kept_format, made_from, tagged

from fedtextgrad.federated import Engines
from fedtextgrad.llm import Message, scripted_engine
from fedtextgrad.privacy import sanitize

RULE = "Count only the items of the asked kind."
INVENTED_NAME = "Zorblaxia"  # the LLM rewrite "adds" this, to check it is scrubbed again


def copycat(messages: list[Message]) -> str:
    user = messages[-1]["content"]
    if "<QUESTION>" in user:  # feedback: quotes the question
        question = tagged(user, "QUESTION")
        return f"Mistake: miscounted.\nQuote: {question}\nInstruction: {RULE}"
    if "<CURRENT_PROMPT>" in user:  # update or sanitizer rewrite
        current = tagged(user, "CURRENT_PROMPT")
        fmt = kept_format(user)
        body = current.replace(fmt, "").strip()
        if made_from(user, sanitize.REWRITE):
            cleaned = re.sub(r"\[[A-Z]+\]", "", body)
            return f"<IMPROVED_VARIABLE>{cleaned} Ask {INVENTED_NAME}.\n{fmt}</IMPROVED_VARIABLE>"
        quotes = " ".join(dict.fromkeys(re.findall(r"Quote: (.*)", user)))
        return f"<IMPROVED_VARIABLE>{body} {RULE} For example: {quotes}\n{fmt}</IMPROVED_VARIABLE>"
    if "<CLIENT_PROMPT" in user:
        bodies = all_tagged(user, "CLIENT_PROMPT")
        return "<MERGED_PROMPT>" + " ".join(dict.fromkeys(bodies)) + "</MERGED_PROMPT>"
    return "Let me think.\nAnswer: 999"  # always wrong: every step has feedback


def copycat_engines(cache=None) -> Engines:
    llm = scripted_engine(copycat, cache=cache)
    return Engines(llm, llm, llm)
