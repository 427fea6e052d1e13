"""Reading the requests a scripted engine receives: the tagged parts, and the answer format the
update must keep, found through the templates' own constants rather than copies of their prose."""

from __future__ import annotations

import re

from fedtextgrad.textgrad import templates


def tagged(text: str, tag: str) -> str:
    """The content between <TAG> and </TAG> (each on its own line)."""
    return re.search(rf"<{tag}>\n(.*?)\n</{tag}>", text, re.DOTALL).group(1)


def kept_format(request: str) -> str:
    """The answer-format sentence our update request says the prompt must end with."""
    return re.search(rf"{re.escape(templates.FORMAT_RULE)} (.*)\n", request).group(1)


def all_tagged(text: str, tag: str) -> list[str]:
    """Every numbered <TAG N> ... </TAG N> block's content, in order (the merge's listing)."""
    return re.findall(rf"<{tag} \d+>\n(.*?)\n</{tag}", text, re.DOTALL)
