"""Reading the requests a scripted engine receives: which template a request was made from, the
tagged parts, and the answer format the update must keep, all found through the templates' own
constants rather than copies of their prose (editing a template's wording breaks no fake)."""

from __future__ import annotations

import re

from fedtextgrad.textgrad import templates


def tagged(text: str, tag: str) -> str:
    """The content between <TAG> and </TAG> (each on its own line)."""
    return re.search(rf"<{tag}>\n(.*?)\n</{tag}>", text, re.DOTALL).group(1)


def kept_format(request: str) -> str:
    """The answer-format sentence our update request says the prompt must end with."""
    return re.search(rf"{re.escape(templates.FORMAT_RULE)} (.*)\n", request).group(1)


def made_from(request: str, template: str) -> bool:
    """Whether `request` was filled in from `template`: it holds the template's longest fixed
    part (a line, or the text between two placeholders)."""
    fixed = max(re.split(r"\{\w+\}|\n", template), key=len).strip()
    return fixed in request


def filled_in(request: str, template: str, name: str) -> str:
    """The value the placeholder `{name}` took in `request` (read off the template's line that
    holds it; the value ends that line)."""
    line = next(line for line in template.splitlines() if f"{{{name}}}" in line)
    before = line.split(f"{{{name}}}")[0]
    return re.search(rf"{re.escape(before)}(.*)\n", request).group(1)


def all_tagged(text: str, tag: str) -> list[str]:
    """Every numbered <TAG N> ... </TAG N> block's content, in order (the merge's listing)."""
    return re.findall(rf"<{tag} \d+>\n(.*?)\n</{tag}", text, re.DOTALL)
