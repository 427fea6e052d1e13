"""Answer extraction and scoring, including the cases TextGrad's parser gets wrong."""

import pytest

from fedtextgrad.tasks import scoring
from fedtextgrad.tasks.scoring import extract_number, extract_text, extract_words, score


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Answer: -12", "-12"),
        ("So we get ((-3) * 4) = -12.\nAnswer: -12", "-12"),
        ("Answer: 1,234", "1234"),
        ("Answer: $1,234,567.", "1234567"),
        ("Answer: 12.0", "12"),
        ("Answer: 12.50", "12.5"),
        ("Answer: 0", "0"),
        ("**Answer:** 42", "42"),
        ("**Answer: 42**", "42"),
        ("*Answer*: 42", "42"),
        ("Answer: $-12$", "-12"),
        ("Answer: \\boxed{-12}", "-12"),
        ("Final Answer: The final answer is 7", "7"),
        ("Answer: 5 + 3 = 8", "8"),
        ("Answer: -12 (= minus twelve)", "-12"),
        ("Answer:\n\n  18", "18"),
        ("Answer: 3\nAnswer: 9", "9"),  # the last answer line wins
        ("Answer: 24\n\nI hope this helps! Ask me about the other 3 questions.", "24"),
        ("Answer: \u221215", "-15"),  # Unicode minus sign
        ("Answer: _12_", "12"),
        ("Answer: 10-3", "10"),  # a binary minus does not make -3
        ("We compute 10 - -4 = 14. \\boxed{14} is it.", "14"),
        ("Thus \\boxed{1,080}. Check: 2 * 540 = 1080", "1080"),
        ("The answer is -39960. Double-check: 2 - 1 = 1.", "-39960"),
        ("so the answer is: 250992", "250992"),
        ("Counting gives **17** fruits, then 2 more notes.", "17"),
        ("Counting gives **$-3$** after 4 steps", "-3"),
        ("I counted 4 apples and 5 pears, so 9", "9"),
        ("The total is -7", "-7"),
    ],
)
def test_extract_number(response: str, expected: str) -> None:
    assert extract_number(response) == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        # The answer is the first number; an "=" or "(" after it starts an explanation.
        ("Answer: 12 = 3 x 4", "12"),
        ("Answer: 7 (= 3 + 4)", "7"),
        ("Answer: 12 apples (= 3 x 4)", "12"),
        ("Answer: 24 (twenty-four = 2 * 12)", "24"),
        # When more numbers come before the "=", the answer is the calculation's result.
        ("Answer: 3 x 4 = 12", "12"),
        ("Answer: 3 apples + 4 pears = 7", "7"),
        ("Answer: 3 + 4 = 7 (= seven)", "7"),
        # A minus sign spaced off the number, right after the marker, is still a sign.
        ("Answer: - 35", "-35"),
        ("**Answer:** - 35", "-35"),
        ("Answer: \u2212 35", "-35"),
        ("Answer:\n- 35", "35"),  # on its own line, "- " is a list bullet
        ("Answer: 40 - 5", "40"),
    ],
)
def test_extract_number_explanations_and_signs(response: str, expected: str) -> None:
    assert extract_number(response) == expected


@pytest.mark.parametrize(
    "response",
    ["", "I am not sure.", "Answer: seven", "Answer: unknown\nbut the sum of 3 and 4 is 7"],
)
def test_no_number_is_none_and_wrong(response: str) -> None:
    assert extract_number(response) is None
    assert score("number", response, "0") == 0.0  # a missing answer never reads as 0


@pytest.mark.parametrize(
    ("response", "target", "expected"),
    [
        ("Answer: -12", "-12", 1.0),
        ("Answer: 12", "-12", 0.0),  # the sign matters
        ("Answer: 1,234", "1234", 1.0),
        ("Answer: 12.0", "12", 1.0),
        ("Answer: 12", "12.0", 1.0),
        ("Answer: 12.5", "12", 0.0),
        ("Answer: 18\nLet me know if 3 more are needed.", "18", 1.0),
        ("The answer is 18.", "18", 1.0),
        ("\\boxed{18}", "18", 1.0),
        ("There are **18** in total.", "18", 1.0),
        ("There are no numbers here.", "0", 0.0),
    ],
)
def test_score_number(response: str, target: str, expected: float) -> None:
    assert score("number", response, target) == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Answer: apple banana cherry", "apple banana cherry"),
        ("Answer: Apple, Banana, Cherry.", "apple banana cherry"),
        ("**Answer:** apple banana", "apple banana"),
        ("Answer: `it&t` o'connell z's", "it&t o'connell z's"),
        ("Sorted:\napple  banana\n\n", "apple banana"),  # no marker: the last non-empty line
        ("Answer:\n\napple banana", "apple banana"),
        ("Answer:\napple\nbanana\ncherry\n\nHope this helps!", "apple banana cherry"),
        ("Answer:\n- apple\n- banana", "apple banana"),
        ("Answer:\n1. apple\n2. banana", "apple banana"),
        ("Answer: apple banana\n\nHope this helps!", "apple banana"),
    ],
)
def test_extract_words(response: str, expected: str) -> None:
    assert extract_words(response) == expected


def test_score_words() -> None:
    target = "apple banana cherry"
    assert score("words", "Thinking...\nAnswer: Apple banana  cherry.", target) == 1.0
    assert score("words", "Answer: apple cherry banana", target) == 0.0
    assert score("words", "Answer: apple banana", target) == 0.0
    assert score("words", "", target) == 0.0


def test_text_scoring() -> None:
    assert extract_text("Reasoning.\n**Answer:** (B).") == "b"
    assert score("text", "Answer: (B)", "(B)") == 1.0
    assert score("text", "Answer: Paris.", "paris") == 1.0
    assert score("text", "Answer: London", "Paris") == 0.0
    # Numeric targets compare as numbers, even in free-text answers.
    assert score("text", "Answer: 1,200 dollars", "1200") == 1.0
    assert score("text", "Answer: none", "0") == 0.0


def test_canonical_number() -> None:
    assert scoring.canonical_number("1,080") == "1080"
    assert scoring.canonical_number("-0.50") == "-0.5"
    assert scoring.canonical_number("-0") == "0"
    assert scoring.canonical_number("twelve") is None
    assert scoring.canonical_number("nan") is None


@pytest.mark.parametrize("text", ["9" * 5000, "1e5000", "-1e-5000"])
def test_a_number_too_long_to_print_is_no_number_and_no_crash(text):
    # A task file's target, or a reply that loops on digits: Python prints no 4300+ digits.
    assert scoring.canonical_number(text) is None
    assert scoring.score("number", f"Answer: {text}", "3") == 0.0


def test_a_preamble_before_the_sorted_words_is_not_part_of_the_answer():
    response = "Answer: The sorted words are: apple banana cherry"
    assert scoring.extract_words(response) == "apple banana cherry"
    assert scoring.score("words", response, "apple banana cherry") == 1.0
