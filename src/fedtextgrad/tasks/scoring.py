"""Answer extraction and scoring.

Answer types: "number" (BBH counting/arithmetic, GSM8K), "words" (word sorting), "text"
(custom tasks), and the instruction-induction benchmark's "exact", "f1", "word_set" and
"contains" (see `score_benchmark`). Unlike TextGrad's parser, minus signs are kept, "1,234" is
1234, "12.0" equals "12", and a response with no answer scores 0 (it is never read as 0).
On an "Answer:" line the first number is the answer ("12 = 3 x 4" is 12), unless the line is
a calculation ("5 + 3 = 8" is 8).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

ANSWER_SEP = "\n"  # a target with several acceptable answers holds one per line

# "Answer:", "**Answer:**", "*Answer*:", "Final answer:" ... the last one wins.
_ANSWER_MARK = re.compile(r"\banswer\b[*_`\s]*[:：]", re.IGNORECASE)
_ANSWER_IS = re.compile(r"\banswer\s+is\b[*_`\s:]*", re.IGNORECASE)
# A minus sign counts only when it cannot be a binary minus ("10-3" gives 10 and 3).
_NUMBER_PATTERN = r"(?<![A-Za-z0-9)\]}.])-?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
_NUMBER = re.compile(_NUMBER_PATTERN)
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_BOLD_NUMBER = re.compile(r"\*\*[\s$]*(" + _NUMBER_PATTERN + r")[\s$]*\*\*")
# "Answer: - 35": a minus spaced off the number on the marker's own line is a sign (on the
# next line, "- 35" is a list bullet).
_SPACED_SIGN = re.compile(
    r"(" + _ANSWER_MARK.pattern + r"[ \t*_`$]*)-[ \t]+(?=\.?\d)", re.IGNORECASE
)
_EXPLANATION = re.compile(r"[=(]")
_MINUS_SIGNS = str.maketrans({"\u2212": "-", "\ufe63": "-", "\uff0d": "-"})
_EDGE_JUNK = "*_`\"'“”‘’$"
_TRAILING_PUNCT = ".,;:!?"
# Python prints no integer of 4300+ digits; no answer is that long, so such text is no number.
_MAX_DIGITS = 4000


def canonical_number(text: str) -> str | None:
    """'1,234' -> '1234', '12.0' -> '12', '-0.50' -> '-0.5'; None if not a number."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        return None
    if not value.is_finite() or abs(value.adjusted()) > _MAX_DIGITS:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _first_number(text: str) -> str | None:
    match = _NUMBER.search(text)
    return canonical_number(match.group()) if match else None


def _last_number(text: str) -> str | None:
    matches = _NUMBER.findall(text)
    return canonical_number(matches[-1]) if matches else None


def _segment_number(segment: str) -> str | None:
    """The answer line's number: the first one ("12 = 3 x 4", "7 (= 3 + 4)": what follows an
    "=" or "(" explains it), unless more numbers come before the "=": then the line is a
    calculation ("5 + 3 = 8") and the answer is its result, the last "=" followed by a number."""
    first = _NUMBER.search(segment)
    if first is None:
        return None
    rest = segment[first.end() :]
    head = _EXPLANATION.split(rest, maxsplit=1)[0]
    if "=" in rest and _NUMBER.search(head):
        for result in reversed(segment.split("=")[1:]):
            if (number := _first_number(result)) is not None:
                return number
    return canonical_number(first.group())


def _has_content(line: str) -> bool:
    return bool(line.strip(" \t" + _EDGE_JUNK))


def _first_content_line(text: str) -> str:
    """The rest of the marker's line, or the next non-empty line ("**Answer:**\\n12")."""
    return next((line for line in text.split("\n") if _has_content(line)), "")


def _answer_block(text: str) -> str:
    """The rest of the marker's line, or else the paragraph under it (a list, one per line)."""
    first, *rest = text.split("\n")
    if _has_content(first):
        return first
    block: list[str] = []
    for line in rest:
        if _has_content(line):
            block.append(line)
        elif block:
            break
    return " ".join(block)


def answer_segment(response: str, *, block: bool = False) -> str | None:
    """The answer after the last 'Answer:' marker, or None if the response has none."""
    marks = list(_ANSWER_MARK.finditer(response))
    if not marks:
        return None
    after = response[marks[-1].end() :]
    return (_answer_block(after) if block else _first_content_line(after)).strip()


def extract_number(response: str) -> str | None:
    """The final numeric answer in canonical form, or None."""
    text = _SPACED_SIGN.sub(r"\1-", response.translate(_MINUS_SIGNS))
    segment = answer_segment(text)
    if segment is not None:  # the answer line is authoritative
        return _segment_number(segment)
    if boxed := _BOXED.findall(text):
        return _first_number(boxed[-1])
    for mark in reversed(list(_ANSWER_IS.finditer(text))):
        if (number := _first_number(_first_content_line(text[mark.end() :]))) is not None:
            return number
    if bold := _BOLD_NUMBER.findall(text):
        return canonical_number(bold[-1])
    return _last_number(text)


def normalize_words(text: str) -> str:
    """Lowercase, whitespace-split, strip markdown and trailing punctuation of each word.

    Bullets and list numbers ("-", "1.") are dropped: they are layout, not words.
    """
    words = []
    for token in text.lower().split():
        word = token.strip(_EDGE_JUNK).rstrip(_TRAILING_PUNCT).strip(_EDGE_JUNK)
        if re.search(r"[^\W_]", word) and not re.fullmatch(r"\d+[.)]", token):
            words.append(word)
    return " ".join(words)


def _final_line(response: str) -> str:
    segment = answer_segment(response, block=True)
    if segment is not None:
        return segment
    lines = [line for line in response.split("\n") if line.strip()]
    return lines[-1] if lines else ""


def extract_words(response: str) -> str | None:
    """The answered word sequence, normalized; None if empty. A preamble ending in a colon
    ("Answer: The sorted words are: apple banana") is not part of it."""
    line = _final_line(response)
    return normalize_words(line.rsplit(":", 1)[-1] if ":" in line else line) or None


def normalize_text(text: str) -> str:
    """Case, whitespace, markdown and trailing punctuation normalized; '(A)' -> 'a'."""
    text = " ".join(text.lower().split()).strip(_EDGE_JUNK + " ")
    text = text.rstrip(_TRAILING_PUNCT).strip(_EDGE_JUNK + " ")
    if re.fullmatch(r"\(\w\)", text):
        text = text[1]
    return text


def extract_text(response: str) -> str | None:
    """The answered text, normalized; None if empty."""
    return normalize_text(_final_line(response)) or None


# --- instruction induction: the benchmark's normalization and metrics -------------------------

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_benchmark(text: str) -> str:
    """The benchmark's normalization: ' and ' and 'Sentence 1:'/'Sentence 2:' dropped, first
    line, up to the first '.', lowercase, '-' -> ' ', no punctuation, single spaces."""
    text = text.replace(" and ", " ").replace("Sentence 1:", " ").replace("Sentence 2:", " ")
    text = text.strip().split("\n")[0].split(".")[0].lower().replace("-", " ")
    return " ".join(text.translate(_PUNCTUATION).split())


def extract_benchmark(response: str) -> str | None:
    """The text after the last 'Answer:' marker, else the first non-empty line; normalized."""
    segment = answer_segment(response)
    if segment is None:
        segment = next((line for line in response.split("\n") if line.strip()), "")
    return normalize_benchmark(segment) or None


def _token_f1(predicted: str, answer: str) -> float:
    common = sum((Counter(predicted.split()) & Counter(answer.split())).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted.split()), common / len(answer.split())
    return 2 * precision * recall / (precision + recall)


def _contains(predicted: str, answer: str) -> float:
    # Whole words only: "process" is not in "processing".
    return float(bool(answer) and re.search(rf"\b{re.escape(answer)}\b", predicted) is not None)


# Each compares a normalized prediction with one normalized acceptable answer.
_BENCHMARK_METRICS: dict[str, Callable[[str, str], float]] = {
    "exact": lambda predicted, answer: float(predicted == answer),
    "f1": _token_f1,
    "word_set": lambda predicted, answer: float(set(predicted.split()) == set(answer.split())),
    "contains": _contains,
}
ANSWER_TYPES = ("number", "words", "text", *_BENCHMARK_METRICS)


def score_benchmark(answer_type: str, response: str, target: str) -> float:
    """The best score over the target's acceptable answers (one per line); 0.0 if no answer."""
    predicted = extract_benchmark(response)
    if predicted is None:
        return 0.0
    metric = _BENCHMARK_METRICS[answer_type]
    answers = [normalize_benchmark(answer) for answer in target.split(ANSWER_SEP)]
    return max(metric(predicted, answer) for answer in answers)


def shown_target(answer_type: str, target: str, limit: int = 5) -> str:
    """The target as an optimizer model reads it: with several acceptable answers, the first
    `limit` of them quoted and joined by "or" (a translation may have twenty)."""
    answers = target.split(ANSWER_SEP) if answer_type in _BENCHMARK_METRICS else [target]
    if len(answers) == 1:
        return answers[0]
    return " or ".join(f'"{answer}"' for answer in answers[:limit])


def extract(answer_type: str, response: str) -> str | None:
    """Dispatch on the task's answer type."""
    if answer_type == "number":
        return extract_number(response)
    if answer_type == "words":
        return extract_words(response)
    if answer_type == "text":
        return extract_text(response)
    if answer_type in _BENCHMARK_METRICS:
        return extract_benchmark(response)
    raise ValueError(f"unknown answer type {answer_type!r}")


def score(answer_type: str, response: str, target: str) -> float:
    """1.0 if the response's final answer matches the target, else 0.0 ("f1": a fraction)."""
    if answer_type in _BENCHMARK_METRICS:
        return score_benchmark(answer_type, response, target)
    target_number = canonical_number(target)
    if answer_type == "number" or (answer_type == "text" and target_number is not None):
        predicted = extract_number(response)
        expected = target_number if target_number is not None else target.strip()
    elif answer_type == "words":
        predicted, expected = extract_words(response), normalize_words(target)
    else:
        predicted, expected = extract_text(response), normalize_text(target)
    return float(predicted is not None and predicted == expected)
